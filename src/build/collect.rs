//! Turn the spec's entries into the list of files to bundle: globs and directories expanded,
//! every path checked to stay inside the project, `.git` and `.mlartignore` patterns
//! excluded, and each file listed exactly once. Directory and glob expansion also leaves out
//! what `.gitignore` files ignore (the root's and nested ones, git's rules) and secrets and
//! junk ([`DEFAULT_EXCLUDES`], with a warning naming them); a path the spec lists itself is
//! always bundled.

use super::filters::{filtered, load_ignore, Filters, Lazy};
use super::folder::Seen;
use super::folder::{Folder, Stat};
use super::samples;
use crate::store::runs::Record;
type Batch = crate::store::runs::Batch<Seen>;
type Runs = crate::store::runs::Runs<Seen>;
use crate::error::{Error, IoContext, Result};
use crate::format::metadata::Kind;
use crate::spec::{Entry, Spec};
use std::fs;
use std::path::{Component, Path, PathBuf};

pub const IGNORE_FILE: &str = ".mlartignore";

/// Never taken into a bundle from a directory or glob entry: secrets and tool junk. List such
/// a file by its own path in mlart.yaml to bundle it on purpose.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    ".env",
    "*.pem",
    "*.key",
    ".git/",
    "__pycache__/",
    ".DS_Store",
    ".ipynb_checkpoints/",
];

/// A file that goes into the bundle.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the project root, `/`-separated: the path inside the bundle.
    pub rel: String,
    /// The folder `rel` is in (shared by the files of a bundle): the file is read at
    /// `abs()`, `root` joined with `rel` (a path built when needed, not held for every file).
    pub root: std::sync::Arc<Path>,
    pub kind: Kind,
    pub size: u64,
    pub executable: bool,
    /// A model's format and framework (None for the many files that have neither: a
    /// pointer instead of two strings in every entry of a long list).
    pub model: Option<Box<ModelInfo>>,
    /// Eval reports only: parse metrics from this file.
    pub metrics: bool,
}

/// What a spec entry or a look at the file says about a model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model format (declared or detected); only for model files.
    pub format: Option<String>,
    pub framework: Option<String>,
    /// The spec entry's `samples:`, as a path in the bundle (`build::samples`).
    pub samples: Option<String>,
}

impl ModelInfo {
    /// The info, or None when it says nothing.
    pub fn of(f: Option<String>, w: Option<String>, s: Option<String>) -> Option<Box<ModelInfo>> {
        let m = ModelInfo {
            format: f,
            framework: w,
            samples: s,
        };
        (m != ModelInfo::default()).then(|| Box::new(m))
    }
}

impl SourceFile {
    /// Where to read it.
    pub fn abs(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// The model format (declared or detected); only for model files.
    pub fn format(&self) -> Option<&str> {
        self.model.as_ref().and_then(|m| m.format.as_deref())
    }

    pub fn framework(&self) -> Option<&str> {
        self.model.as_ref().and_then(|m| m.framework.as_deref())
    }
}

/// Files looked at by one job of `collect`.
const FILES_PER_JOB: usize = 512;

/// Files looked at (`make_file`, on all cores) between two hand-overs to `each`.
const FILES_PER_ROUND: usize = 4096;

/// Bytes of records a walking job holds before it hands them to the shared runs.
const WALK_BATCH: usize = 64 << 10;

/// Junk names the warning lists (then "and N more").
const JUNK_NAMED: usize = 20;

/// Collect the spec's files, sorted by path. `exclude` are absolute paths never to include
/// (the output). The list is held whole: [`collect_each`] hands the files over one by one.
pub fn collect(spec: &Spec, exclude: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    collect_each(spec, exclude, crate::store::entries::SPILL, &mut |f| {
        out.push(f);
        Ok(())
    })?;
    Ok(out)
}

/// How a spec entry finds its files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Found {
    Listed,
    Dir,
    Glob,
}

/// Calls `each` with every file to bundle, each once, in strict path order (`rel` ascending by
/// `str::cmp`, i.e. byte order). Memory does not grow with the file count: the walks' records
/// (path, spec entry, what was read) are sorted in runs of `spill` bytes that go to temp files
/// and are merged back ([`super::runs`]); filters, duplicates and each file's look
/// (`make_file`, on all cores, a few thousand files at a time) work on the merged stream. What
/// grows is what the walk keeps of the folders on its way (their subfolders' paths) and,
/// with a `spill` past the records' size, the one run in memory. `exclude` as for [`collect`].
///
/// An error can come after `each` was given some files (a file that cannot be read, a path
/// listed twice, a glob or directory left without a file once filtered, which is only known
/// at the end): then the files handed over are not a bundle's.
pub fn collect_each(
    spec: &Spec,
    exclude: &[PathBuf],
    spill: usize,
    each: &mut dyn FnMut(SourceFile) -> Result<()>,
) -> Result<()> {
    let root = fs::canonicalize(&spec.root).ctx("opening the project folder", &spec.root)?;
    let ignore = load_ignore(&root)?;
    // The .gitignore files are looked for on another thread while the entries are walked.
    let mut filters = Lazy::Loading({
        let root = root.clone();
        std::thread::spawn(move || Filters::load(&root))
    });
    let exclude: Vec<PathBuf> = exclude
        .iter()
        .chain(&spec.exclude)
        .map(|p| absolute(p).unwrap_or_else(|| p.clone()))
        .collect();
    // Spec order: a record names its entry by its place here. The models' samples last:
    // a path the spec's own entries take is theirs.
    let samples = samples::entries(spec, &root)?;
    let mut entries: Vec<(Kind, &Entry)> = spec
        .sections
        .iter()
        .flat_map(|(k, es)| es.iter().map(move |e| (*k, e)))
        .collect();
    let own = entries.len();
    entries.extend(samples.iter().map(|(k, e)| (*k, e)));
    if u32::try_from(entries.len()).is_err() {
        return Err(Error::input(format!(
            "{}: more than 2^32 entries",
            spec.file.display()
        )));
    }
    let mut found: Vec<Found> = Vec::with_capacity(entries.len());
    let runs = std::sync::Mutex::new(Runs::new(spill));
    let cx = WalkCx {
        root: &root,
        ignore: &ignore,
        exclude: &exclude,
        spec,
        runs: &runs,
    };
    let mut globs: Vec<(u32, globset::GlobMatcher)> = Vec::new();
    let mut listed = Batch::default();
    for (i, (kind, entry)) in entries.iter().enumerate() {
        let i = i as u32;
        if is_glob(&entry.path) {
            let glob = globset::GlobBuilder::new(entry.path.trim_start_matches("./"))
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    spec.error_at(
                        entry.pos,
                        format!("invalid glob {:?}: {e}", entry.path),
                        "see globset syntax: *, **, ?, [abc], {a,b}",
                    )
                })?
                .compile_matcher();
            globs.push((i, glob));
            found.push(Found::Glob);
            continue;
        }
        let rel = normalize(&entry.path);
        let path = root.join(&rel);
        let lmeta = fs::symlink_metadata(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                spec.error_at(
                    entry.pos,
                    format!(
                        "{:?} in `{kind}` does not exist (looked for {})",
                        entry.path,
                        path.display()
                    ),
                    "fix the path (relative to the spec's folder) or remove the entry",
                )
            } else {
                Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                }
            }
        })?;
        inside(&root, &path, spec, entry)?;
        let is_dir = (lmeta.file_type().is_symlink() || lmeta.is_dir())
            && fs::metadata(&path).ctx("reading", &path)?.is_dir();
        if is_dir {
            walk(&cx, &path, entry, true, &|b, rel, meta| {
                b.push(rel, i, &Seen { walked: true, meta })
            })?;
            found.push(Found::Dir);
        } else {
            listed.push(
                &rel,
                i,
                &Seen {
                    walked: false,
                    meta: None,
                },
            );
            found.push(Found::Listed);
        }
    }
    // The project is walked once for all the globs, each file tried against each of them.
    if let Some((first, _)) = globs.first() {
        walk(
            &cx,
            &root,
            entries[*first as usize].1,
            false,
            &|b, rel, meta| {
                for (i, glob) in &globs {
                    if glob.is_match(rel) {
                        b.push(rel, *i, &Seen { walked: true, meta });
                    }
                }
            },
        )?;
    }
    let mut runs = runs.into_inner().unwrap_or_else(|e| e.into_inner());
    runs.add(&mut listed)?;
    let mut stream = runs.merged()?;

    let filters = filters.get()?;
    let shared: std::sync::Arc<Path> = root.as_path().into();
    // (files found per entry, once filtered; the last file kept and its entry, to find a path
    // listed twice: a path's records come one after the other, in spec order)
    let mut counts = vec![0u64; entries.len()];
    let mut kept: Option<u32> = None;
    let mut kept_rel = String::new();
    let mut pending: Vec<(Walked, Kind, &Entry)> = Vec::with_capacity(FILES_PER_ROUND);
    let mut junk = Junk::default();
    let (mut noted, mut last) = (Vec::new(), None); // (`filtered`'s)
    let mut handed = 0u64;
    while let Some(rec) = stream.next()? {
        let Some(&(kind, entry)) = entries.get(rec.entry as usize) else {
            return Err(Error::of(
                crate::error::Kind::Internal,
                format!(
                    "collecting the files: a record of entry {} of {}",
                    rec.entry,
                    entries.len()
                ),
            ));
        };
        let rel = &rec.rel;
        if rec.data.walked {
            if filtered(filters, &root, rel, &mut noted, &mut last) {
                junk.note(&mut noted);
                continue;
            }
            counts[rec.entry as usize] += 1;
        }
        if rel.split('/').any(|c| c == ".git")
            || (!ignore.is_empty() && ignore.matched_path_or_any_parents(rel, false).is_ignore())
        {
            if !is_glob(&entry.path) && normalize(&entry.path) == *rel {
                return Err(spec.error_at(
                    entry.pos,
                    format!("{rel:?} is excluded by .git or {IGNORE_FILE}"),
                    format!("remove the entry or the {IGNORE_FILE} pattern that matches it"),
                ));
            }
            continue;
        }
        if let Some(first) = kept.filter(|_| kept_rel == *rel) {
            if rec.entry as usize >= own {
                continue; // a model's samples, bundled by the spec's own entry
            }
            let (k, p) = (entries[first as usize].0, entries[first as usize].1.pos);
            let what = if k == kind {
                format!(
                    "{rel:?} is listed twice in `{kind}` (also at line {})",
                    p.line
                )
            } else {
                format!(
                    "{rel:?} is listed under both `{k}` (line {}) and `{kind}`",
                    p.line
                )
            };
            return Err(spec.error_at(
                entry.pos,
                what,
                "list each file once, under one kind (narrow the glob or directory)",
            ));
        }
        kept = Some(rec.entry);
        kept_rel.clear();
        kept_rel.push_str(rel);
        let Record {
            rel,
            data: Seen { walked, meta },
            ..
        } = rec;
        pending.push((Walked { rel, meta, walked }, kind, entry));
        if pending.len() == FILES_PER_ROUND {
            handed += make_files(&shared, &mut pending, spec, &exclude, each)?;
        }
    }
    handed += make_files(&shared, &mut pending, spec, &exclude, each)?;
    for (i, (kind, entry)) in entries.iter().enumerate() {
        if counts[i] > 0 {
            continue;
        }
        match found[i] {
            Found::Glob => {
                return Err(spec.error_at(
                    entry.pos,
                    format!("the glob {:?} in `{kind}` matches no file", entry.path),
                    "check the pattern (globs are relative to the spec's folder; `**` crosses directories) or remove the entry",
                ))
            }
            Found::Dir => {
                return Err(spec.error_at(
                    entry.pos,
                    format!("the directory {:?} in `{kind}` holds no file to bundle", entry.path),
                    "add files to it, check .mlartignore, or remove the entry",
                ))
            }
            Found::Listed => {}
        }
    }
    if let Some(names) = junk.names() {
        tracing::warn!(
            "not bundled (secrets or junk by default: {}): {names}. List a file by its own path in {} to bundle it on purpose",
            DEFAULT_EXCLUDES.join(" "),
            spec.file.display()
        );
    }
    if handed == 0 {
        return Err(Error::input(format!(
            "{}: every entry was excluded: the bundle would be empty. Check .mlartignore and the spec's paths",
            spec.file.display()
        )));
    }
    Ok(())
}

/// Look at `pending`'s files (`make_file`: an `lstat` when the walk did not read it, a model's
/// format sniff) on all cores, hand them to `each` in order and empty `pending`. Returns how
/// many were handed over. Ten thousand small files are ten thousand system calls of latency.
fn make_files(
    root: &std::sync::Arc<Path>,
    pending: &mut Vec<(Walked, Kind, &Entry)>,
    spec: &Spec,
    exclude: &[PathBuf],
    each: &mut dyn FnMut(SourceFile) -> Result<()>,
) -> Result<u64> {
    // Each job takes its files (their paths move into the SourceFiles).
    let parts: Vec<_> = pending
        .chunks_mut(FILES_PER_JOB)
        .map(std::sync::Mutex::new)
        .collect();
    let made = crate::build::layers::map_ordered(parts.len(), crate::build::layers::jobs(), |i| {
        let files = &mut *parts[i].lock().unwrap_or_else(|e| e.into_inner());
        let mut dirs = std::collections::HashSet::new();
        let mut folder = Folder::default();
        let mut out = Vec::with_capacity(files.len());
        for (found, kind, entry) in files.iter_mut() {
            let found = Walked {
                rel: std::mem::take(&mut found.rel),
                ..*found
            };
            out.push(make_file(
                root,
                found,
                *kind,
                entry,
                spec,
                exclude,
                &mut dirs,
                &mut folder,
            )?);
        }
        Ok(out)
    })?;
    drop(parts);
    pending.clear();
    let mut handed = 0;
    for f in made.into_iter().flatten() {
        if !f.rel.is_empty() {
            each(f)?;
            handed += 1;
        }
    }
    Ok(handed)
}

/// The junk names for the warning: the first `JUNK_NAMED` (in path order, so the files of a
/// junk folder, which come one after the other, are one name) and how many more.
#[derive(Default)]
struct Junk {
    named: Vec<String>,
    more: u64,
    last: String,
}

impl Junk {
    fn note(&mut self, noted: &mut Vec<String>) {
        for name in noted.drain(..) {
            if name == self.last || self.named.contains(&name) {
                continue;
            }
            if self.named.len() < JUNK_NAMED {
                self.named.push(name.clone());
            } else {
                self.more += 1;
            }
            self.last = name;
        }
    }

    fn names(&self) -> Option<String> {
        if self.named.is_empty() {
            return None;
        }
        let mut names = self.named.join(", ");
        if self.more > 0 {
            names.push_str(&format!(" and {} more", self.more));
        }
        Some(names)
    }
}

#[allow(clippy::too_many_arguments)]
fn make_file(
    root: &std::sync::Arc<Path>,
    found: Walked,
    kind: Kind,
    entry: &Entry,
    spec: &Spec,
    exclude: &[PathBuf],
    dirs: &mut std::collections::HashSet<PathBuf>,
    folder: &mut Folder,
) -> Result<SourceFile> {
    let Walked { rel, meta, walked } = found;
    let abs = root.join(&rel);
    // A name the bundle cannot carry faithfully: `rel` is a lossy copy of a name that is not
    // UTF-8 (no such file), or a path `mlart pull` refuses to extract.
    let why = if rel.contains('\\') {
        Some("has a backslash, which `mlart pull` refuses in paths")
    } else if rel.contains('\u{FFFD}') && fs::symlink_metadata(&abs).is_err() {
        Some("is not UTF-8")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(spec.error_at(
            entry.pos,
            format!("the name of {} {why}", abs.display()),
            format!("rename the file, or exclude it in {IGNORE_FILE}"),
        ));
    }
    // A walked file is inside (its folder was, and every symlink on the way was looked at).
    let meta = match meta {
        Some(m) => m,
        None if walked => folder.lstat(&abs).ctx("reading", &abs)?,
        None => Stat::of(&inside_file(root, &abs, spec, entry, dirs)?),
    };
    if !meta.is_file {
        return Err(spec.error_at(
            entry.pos,
            format!("{rel:?} in `{kind}` is not a regular file (a device, socket or fifo)"),
            "bundle only regular files; remove the entry or exclude the path in .mlartignore",
        ));
    }
    if exclude.iter().any(|x| is_under(&abs, x)) {
        return Err(spec.error_at(
            entry.pos,
            format!("{rel:?} is the bundle's own output"),
            "write the bundle outside the listed paths (`-o`)",
        ));
    }
    let executable = meta.executable;
    // ONNX test data sets (`test_data_set_N/input_I.pb`) in a model folder or glob are the
    // model's samples, not models (nor TensorFlow graphs): kind eval, where `validate BUNDLE`
    // finds them beside the model. They are never metrics reports.
    let test_data = crate::format::test_data::is_test_data(&rel);
    let kind = if test_data && kind == Kind::Model && normalize(&entry.path) != rel {
        Kind::Eval
    } else {
        kind
    };
    let format = if kind == Kind::Model {
        entry.format.clone().or_else(|| detect_format(&abs, &rel))
    } else {
        None
    };
    Ok(SourceFile {
        rel,
        root: root.clone(),
        kind,
        size: meta.len,
        executable,
        model: ModelInfo::of(
            format,
            entry.framework.clone(),
            samples::of_entry(entry, kind),
        ),
        metrics: entry.metrics && !test_data,
    })
}

/// The model format from the extension (and, for json/txt, a look at the first bytes).
pub fn detect_format(abs: &Path, rel: &str) -> Option<String> {
    let ext = rel
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let f = match ext.as_str() {
        "onnx" => "onnx",
        "pkl" | "pickle" => "pickle",
        "joblib" => "joblib",
        "safetensors" => "safetensors",
        "pt" | "pth" => "pytorch",
        "h5" | "keras" => "keras",
        "gguf" => "gguf",
        "ubj" => "xgboost",
        "pb" | "tflite" => "tensorflow",
        "json" | "txt" | "model" => {
            let head = read_head(abs, 4096);
            let s = String::from_utf8_lossy(&head);
            if ext == "json" && s.contains("\"learner\"") {
                "xgboost"
            } else if (ext == "txt" || ext == "model") && s.starts_with("tree\n") {
                "lightgbm"
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(f.to_string())
}

fn read_head(p: &Path, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = fs::File::open(p) {
        let _ = f.take(n as u64).read_to_end(&mut buf);
    }
    buf
}

/// What every walk of `collect` shares.
struct WalkCx<'a> {
    root: &'a Path,
    ignore: &'a ignore::gitignore::Gitignore,
    exclude: &'a [PathBuf],
    spec: &'a Spec,
    runs: &'a std::sync::Mutex<Runs>,
}

/// Walk `dir` (inside the project) and hand each file's relative path and metadata (read
/// through symlinks, when read) to `emit`, which pushes its records into a batch for the
/// shared runs: symlinks that stay inside the project are followed, those that leave it
/// refused. `dir`'s folders are walked side by side (one per core) and, with `stat`, their
/// files `lstat`ed as they are found: a folder of folders of ten thousand files is listed and
/// `lstat`ed on all cores. The files come in no useful order: the runs sort them.
fn walk(
    cx: &WalkCx<'_>,
    dir: &Path,
    entry: &Entry,
    stat: bool,
    emit: &(dyn Fn(&mut Batch, &str, Option<Stat>) + Sync),
) -> Result<()> {
    let (root, spec) = (cx.root, cx.spec);
    let top = match dir.strip_prefix(root) {
        Ok(r) => to_rel(r),
        Err(_) => return Ok(()),
    };
    let keep = |e: &crate::build::walk::Entry| -> Result<bool> {
        let skip = e.name == ".git"
            || cx.exclude.iter().any(|x| is_under(e.path, x))
            || e.name.starts_with(".mlart-tmp")
            || (!cx.ignore.is_empty()
                && cx
                    .ignore
                    .matched_path_or_any_parents(e.rel, e.is_dir)
                    .is_ignore());
        if !skip && e.is_symlink {
            inside(root, e.path, spec, entry)?;
        }
        Ok(!skip)
    };
    // (a symlink's metadata is its target's; a file not `lstat`ed here, or whose `lstat`
    // failed, is read again, and an error reported, by `make_file`, on all cores)
    let meta = |e: &crate::build::walk::Entry, folder: Option<&mut Folder>| match (e.meta, folder) {
        (Some(m), _) => Some(Stat::of(m)),
        (None, Some(folder)) if !e.is_symlink => folder.lstat(e.path).ok(),
        _ => None,
    };
    let flush = |batch: &mut Batch, at: usize| -> Result<()> {
        if batch.size() >= at {
            cx.runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(batch)?;
        }
        Ok(())
    };
    let on_loop = |p: &Path| {
        spec.error_at(
            entry.pos,
            format!("a symlink loop at {}", p.display()),
            "remove the looping symlink",
        )
    };
    let jobs = crate::build::layers::jobs();
    let mut own = Batch::default();
    // (`dir`'s folders: their paths and their names in the project)
    let mut folders: Vec<(PathBuf, String)> = Vec::new();
    // `dir`'s own files are `lstat`ed later, on all cores (a flat folder of 10,000 files has
    // no subfolders to share out); its subfolders' as they are walked, side by side.
    crate::build::walk::walk(
        dir,
        &top,
        &mut |e| {
            if !keep(e)? {
                return Ok(false);
            }
            if e.is_dir {
                if jobs > 1 && e.path.parent() == Some(dir) {
                    folders.push((e.path.to_path_buf(), e.rel.to_string()));
                    return Ok(false);
                }
                return Ok(true);
            }
            emit(&mut own, e.rel, meta(e, None));
            flush(&mut own, WALK_BATCH)?;
            Ok(true)
        },
        &on_loop,
    )?;
    flush(&mut own, 0)?;
    if folders.is_empty() {
        return Ok(());
    }
    let above = [crate::build::walk::folder_id(dir)?];
    crate::build::layers::map_ordered(folders.len(), jobs, |i| {
        let (path, rel) = &folders[i];
        let mut part = Batch::default();
        let mut folder = Folder::default();
        crate::build::walk::walk_below(
            path,
            rel,
            &above,
            &mut |e| {
                if !keep(e)? {
                    return Ok(false);
                }
                if !e.is_dir {
                    emit(&mut part, e.rel, meta(e, stat.then_some(&mut folder)));
                    flush(&mut part, WALK_BATCH)?;
                }
                Ok(true)
            },
            &on_loop,
        )?;
        flush(&mut part, 0)
    })?;
    Ok(())
}

/// A file of an entry: listed, or found by a directory or glob expansion (`walked`: then it
/// is known to be inside the project); `meta` (through symlinks) when already read.
struct Walked {
    rel: String,
    meta: Option<Stat>,
    walked: bool,
}

/// `p` is `dir` or below it, compared as bytes (both absolute and without `..`).
fn is_under(p: &Path, dir: &Path) -> bool {
    let (p, d) = (
        p.as_os_str().as_encoded_bytes(),
        dir.as_os_str().as_encoded_bytes(),
    );
    let d = d.strip_suffix(b"/").unwrap_or(d);
    p.starts_with(d) && (p.len() == d.len() || p[d.len()] == b'/')
}

/// Refuse a path whose real location is outside the project (a symlink pointing out).
fn inside(root: &Path, path: &Path, spec: &Spec, entry: &Entry) -> Result<()> {
    let real = fs::canonicalize(path).map_err(|e| {
        spec.error_at(
            entry.pos,
            format!("cannot resolve {}: {e}", path.display()),
            "fix or remove the broken symlink, or exclude it in .mlartignore",
        )
    })?;
    if !real.starts_with(root) {
        return Err(spec.error_at(
            entry.pos,
            format!("{} points outside the project (to {})", path.display(), real.display()),
            "a bundle holds only files under the spec's folder; copy the file into the project instead of linking it",
        ));
    }
    Ok(())
}

/// `inside` for a file, with what it costs spread over its directory: the directory is
/// resolved once (`dirs` holds those known inside), the file only when it is a symlink.
/// Returns the file's metadata (through a symlink). Ten thousand files in a few directories
/// are ten thousand `lstat`s, not sixty thousand `readlink`s.
fn inside_file(
    root: &Path,
    abs: &Path,
    spec: &Spec,
    entry: &Entry,
    dirs: &mut std::collections::HashSet<PathBuf>,
) -> Result<fs::Metadata> {
    if let Some(parent) = abs.parent() {
        if !dirs.contains(parent) {
            inside(root, parent, spec, entry)?;
            dirs.insert(parent.to_path_buf());
        }
    }
    let lmeta = fs::symlink_metadata(abs).ctx("reading", abs)?;
    if !lmeta.file_type().is_symlink() {
        return Ok(lmeta);
    }
    inside(root, abs, spec, entry)?;
    fs::metadata(abs).ctx("reading", abs)
}

/// Is this spec entry a glob (rather than a file or folder name)?
pub(crate) fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', '{'])
}

/// `./a//b/` -> `a/b`
pub(super) fn normalize(p: &str) -> String {
    p.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn to_rel(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn absolute(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = fs::canonicalize(p) {
        return Some(c);
    }
    // Not yet existing: canonicalize the parent.
    let parent = p
        .parent()
        .filter(|x| !x.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = p.file_name()?;
    fs::canonicalize(parent).ok().map(|c| c.join(name))
}

#[cfg(test)]
#[path = "collect_tests.rs"]
mod tests;
