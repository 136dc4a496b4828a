//! Turn the spec's entries into the list of files to bundle: globs and directories expanded,
//! every path checked to stay inside the project, `.git` and `.mlartignore` patterns
//! excluded, and each file listed exactly once. Directory and glob expansion also leaves out
//! what `.gitignore` files ignore (the root's and nested ones, git's rules) and secrets and
//! junk ([`DEFAULT_EXCLUDES`], with a warning naming them); a path the spec lists itself is
//! always bundled.

use super::filters::{filtered, load_ignore, Filters, Lazy};
use super::folder::{Folder, Stat};
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
}

impl ModelInfo {
    /// The info, or None when it says nothing.
    pub fn of(format: Option<String>, framework: Option<String>) -> Option<Box<ModelInfo>> {
        (format.is_some() || framework.is_some()).then(|| Box::new(ModelInfo { format, framework }))
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

/// Collect the spec's files. `exclude` are absolute paths never to include (the output).
pub fn collect(spec: &Spec, exclude: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let root = fs::canonicalize(&spec.root).ctx("opening the project folder", &spec.root)?;
    let ignore = load_ignore(&root)?;
    // The .gitignore files are looked for on another thread while the entries are walked.
    let mut filters = Lazy::Loading({
        let root = root.clone();
        std::thread::spawn(move || Filters::load(&root))
    });
    let mut junk: Vec<String> = Vec::new();
    let mut last = None; // (`filtered`'s)
    let exclude: Vec<PathBuf> = exclude
        .iter()
        .map(|p| absolute(p).unwrap_or_else(|| p.clone()))
        .collect();
    let mut all_files: Option<Vec<Walked>> = None; // lazily walked, for globs
    let mut seen: Seen = Seen::default();
    // (file, kind, entry) of each file, looked at (`make_file`) once all are known
    let mut pending: Vec<(Walked, Kind, &Entry)> = Vec::new();

    for (kind, entries) in &spec.sections {
        for entry in entries {
            let mut matched: Vec<Walked> = Vec::new();
            if is_glob(&entry.path) {
                if all_files.is_none() {
                    let walked = walk(&root, &root, &ignore, &exclude, spec, entry, false)?;
                    let filters = filters.get()?;
                    all_files = Some(
                        walked
                            .into_iter()
                            .filter(|f| !filtered(filters, &root, &f.rel, &mut junk, &mut last))
                            .collect(),
                    );
                }
                let files = all_files.as_deref().unwrap_or_default();
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
                matched.extend(
                    files
                        .iter()
                        .filter(|f| glob.is_match(f.rel.as_str()))
                        .map(Walked::clone),
                );
                if matched.is_empty() {
                    return Err(spec.error_at(
                        entry.pos,
                        format!("the glob {:?} in `{kind}` matches no file", entry.path),
                        "check the pattern (globs are relative to the spec's folder; `**` crosses directories) or remove the entry",
                    ));
                }
            } else {
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
                if lmeta.file_type().is_symlink() || lmeta.is_dir() {
                    let meta = fs::metadata(&path).ctx("reading", &path)?;
                    if meta.is_dir() {
                        let walked = walk(&root, &path, &ignore, &exclude, spec, entry, true)?;
                        let filters = filters.get()?;
                        matched.extend(
                            walked.into_iter().filter(|f| {
                                !filtered(filters, &root, &f.rel, &mut junk, &mut last)
                            }),
                        );
                        if matched.is_empty() {
                            return Err(spec.error_at(
                                entry.pos,
                                format!(
                                    "the directory {:?} in `{kind}` holds no file to bundle",
                                    entry.path
                                ),
                                "add files to it, check .mlartignore, or remove the entry",
                            ));
                        }
                    } else {
                        matched.push(Walked {
                            rel,
                            meta: None,
                            walked: false,
                        });
                    }
                } else {
                    matched.push(Walked {
                        rel,
                        meta: None,
                        walked: false,
                    });
                }
            }
            for found in matched {
                let rel = &found.rel;
                if rel.split('/').any(|c| c == ".git")
                    || (!ignore.is_empty()
                        && ignore.matched_path_or_any_parents(rel, false).is_ignore())
                {
                    if !is_glob(&entry.path) && normalize(&entry.path) == *rel {
                        return Err(spec.error_at(
                            entry.pos,
                            format!("{rel:?} is excluded by .git or {IGNORE_FILE}"),
                            format!(
                                "remove the entry or the {IGNORE_FILE} pattern that matches it"
                            ),
                        ));
                    }
                    continue;
                }
                if let Some(first) = seen.first(rel, pending.len(), &pending) {
                    let (k, p) = (pending[first].1, pending[first].2.pos);
                    let what = if k == *kind {
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
                pending.push((found, *kind, entry));
            }
        }
    }
    // Each file's lstat (and a model's format sniff), on all cores: ten thousand small files
    // are ten thousand system calls of latency.
    // Each job takes its files (their paths move into the SourceFiles) and fills its own part
    // of the output: the list is never held twice.
    drop(seen);
    let mut made: Vec<Option<SourceFile>> = Vec::with_capacity(pending.len());
    made.resize_with(pending.len(), || None);
    let shared: std::sync::Arc<Path> = root.as_path().into();
    let parts: Vec<_> = pending
        .chunks_mut(FILES_PER_JOB)
        .zip(made.chunks_mut(FILES_PER_JOB))
        .map(std::sync::Mutex::new)
        .collect();
    crate::build::layers::map_ordered(parts.len(), crate::build::layers::jobs(), |i| {
        let (files, out) = &mut *parts[i].lock().unwrap_or_else(|e| e.into_inner());
        let mut dirs = std::collections::HashSet::new();
        let mut folder = Folder::default();
        for (slot, (found, kind, entry)) in out.iter_mut().zip(files.iter_mut()) {
            let found = Walked {
                rel: std::mem::take(&mut found.rel),
                ..*found
            };
            *slot = Some(make_file(
                &shared,
                found,
                *kind,
                entry,
                spec,
                &exclude,
                &mut dirs,
                &mut folder,
            )?);
        }
        Ok(())
    })?;
    drop(parts);
    // (in place, in the same memory: an `Option<SourceFile>` is a `SourceFile`'s size, and
    // `filter_map` collects in place where `flatten` allocates a second list)
    #[allow(clippy::filter_map_identity)]
    let mut out: Vec<SourceFile> = made.into_iter().filter_map(|f| f).collect();
    out.retain(|f| !f.rel.is_empty());
    junk.sort();
    junk.dedup();
    if !junk.is_empty() {
        tracing::warn!(
            "not bundled (secrets or junk by default: {}): {}. List a file by its own path in {} to bundle it on purpose",
            DEFAULT_EXCLUDES.join(" "),
            junk.join(", "),
            spec.file.display()
        );
    }
    if out.is_empty() {
        return Err(Error::input(format!(
            "{}: every entry was excluded: the bundle would be empty. Check .mlartignore and the spec's paths",
            spec.file.display()
        )));
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
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
        model: ModelInfo::of(format, entry.framework.clone()),
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

/// Walk `dir` (inside `root`) and return the relative paths of its files, with their
/// metadata (read through symlinks), following symlinks that stay inside the project and
/// refusing those that leave it. `dir`'s folders are walked side by side (one per core) and,
/// with `stat`, their files `lstat`ed as they are found; the parts are put back in walk order:
/// a folder of folders of ten thousand files is listed and `lstat`ed on all cores.
#[allow(clippy::too_many_arguments)]
fn walk(
    root: &Path,
    dir: &Path,
    ignore: &ignore::gitignore::Gitignore,
    exclude: &[PathBuf],
    spec: &Spec,
    entry: &Entry,
    stat: bool,
) -> Result<Vec<Walked>> {
    let top = match dir.strip_prefix(root) {
        Ok(r) => to_rel(r),
        Err(_) => return Ok(Vec::new()),
    };
    let keep = |e: &crate::build::walk::Entry| -> Result<bool> {
        let skip = e.name == ".git"
            || exclude.iter().any(|x| is_under(e.path, x))
            || e.name.starts_with(".mlart-tmp")
            || (!ignore.is_empty()
                && ignore
                    .matched_path_or_any_parents(e.rel, e.is_dir)
                    .is_ignore());
        if !skip && e.is_symlink {
            inside(root, e.path, spec, entry)?;
        }
        Ok(!skip)
    };
    // (a symlink's metadata is its target's; a file not `lstat`ed here, or whose `lstat`
    // failed, is read again, and an error reported, by `make_file`, on all cores)
    let file = |e: &crate::build::walk::Entry, folder: Option<&mut Folder>| Walked {
        rel: e.rel.to_string(),
        meta: match (e.meta, folder) {
            (Some(m), _) => Some(Stat::of(m)),
            (None, Some(folder)) if !e.is_symlink => folder.lstat(e.path).ok(),
            _ => None,
        },
        walked: true,
    };
    let on_loop = |p: &Path| {
        spec.error_at(
            entry.pos,
            format!("a symlink loop at {}", p.display()),
            "remove the looping symlink",
        )
    };
    let jobs = crate::build::layers::jobs();
    let mut out = Vec::new();
    // (where in `out` each of `dir`'s folders goes, its path and its name in the project)
    let mut folders: Vec<(usize, PathBuf, String)> = Vec::new();
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
                    folders.push((out.len(), e.path.to_path_buf(), e.rel.to_string()));
                    return Ok(false);
                }
                return Ok(true);
            }
            out.push(file(e, None));
            Ok(true)
        },
        &on_loop,
    )?;
    if folders.is_empty() {
        return Ok(out);
    }
    let above = [crate::build::walk::folder_id(dir)?];
    let parts = crate::build::layers::map_ordered(folders.len(), jobs, |i| {
        let (_, path, rel) = &folders[i];
        let mut part = Vec::new();
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
                    part.push(file(e, stat.then_some(&mut folder)));
                }
                Ok(true)
            },
            &on_loop,
        )?;
        Ok(part)
    })?;
    let mut all = Vec::with_capacity(out.len() + parts.iter().map(Vec::len).sum::<usize>());
    let mut own = out.into_iter();
    let mut taken = 0;
    for ((at, _, _), part) in folders.iter().zip(parts) {
        all.extend(own.by_ref().take(at - taken));
        taken = *at;
        all.extend(part);
    }
    all.extend(own);
    Ok(all)
}

/// Each path's first listing in `collect`, by the path's hash (the path itself is in the
/// pending list): a few bytes a file, not a copy of every path.
#[derive(Default)]
struct Seen<S = std::hash::RandomState> {
    first: std::collections::HashMap<u64, usize>,
    /// (paths whose hash an earlier, other path has)
    other: std::collections::HashMap<String, usize>,
    hash: S,
}

impl<S: std::hash::BuildHasher> Seen<S> {
    /// Where `rel` was listed first, if before `at` (else it is noted at `at`).
    fn first(&mut self, rel: &str, at: usize, listed: &[(Walked, Kind, &Entry)]) -> Option<usize> {
        use std::collections::hash_map::Entry as Slot;
        match self.first.entry(self.hash.hash_one(rel)) {
            Slot::Vacant(v) => {
                v.insert(at);
                None
            }
            Slot::Occupied(o) if listed[*o.get()].0.rel == rel => Some(*o.get()),
            Slot::Occupied(_) => match self.other.entry(rel.to_string()) {
                Slot::Vacant(v) => {
                    v.insert(at);
                    None
                }
                Slot::Occupied(o) => Some(*o.get()),
            },
        }
    }
}

/// A file of an entry: listed, or found by a directory or glob expansion (`walked`: then it
/// is known to be inside the project); `meta` (through symlinks) when already read.
#[derive(Clone)]
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
fn normalize(p: &str) -> String {
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
