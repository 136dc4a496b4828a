//! Turn the spec's entries into the list of files to bundle: globs and directories expanded,
//! every path checked to stay inside the project, `.git` and `.mlartignore` patterns
//! excluded, and each file listed exactly once. Directory and glob expansion also leaves out
//! what `.gitignore` files ignore (the root's and nested ones, git's rules) and secrets and
//! junk ([`DEFAULT_EXCLUDES`], with a warning naming them); a path the spec lists itself is
//! always bundled.

use crate::error::{Error, IoContext, Result};
use crate::format::metadata::Kind;
use crate::spec::{Entry, Pos, Spec};
use std::collections::BTreeMap;
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

/// What directory and glob expansion leaves out besides `.mlartignore`.
struct Filters {
    /// (folder, its .gitignore), shallowest first.
    git: Vec<(PathBuf, ignore::gitignore::Gitignore)>,
    junk: ignore::gitignore::Gitignore,
}

impl Filters {
    fn load(root: &Path) -> Result<Filters> {
        let mut git = Vec::new();
        let mut it = walkdir::WalkDir::new(root).sort_by_file_name().into_iter();
        while let Some(Ok(e)) = it.next() {
            if e.file_type().is_dir() && e.file_name() == ".git" {
                it.skip_current_dir();
                continue;
            }
            if e.file_type().is_file() && e.file_name() == ".gitignore" {
                let dir = e.path().parent().unwrap_or(root).to_path_buf();
                let mut b = ignore::gitignore::GitignoreBuilder::new(&dir);
                if let Some(err) = b.add(e.path()) {
                    return Err(Error::input(format!(
                        "{}: {err}. Fix the pattern (gitignore syntax)",
                        e.path().display()
                    )));
                }
                let g = b
                    .build()
                    .map_err(|err| Error::input(format!("{}: {err}", e.path().display())))?;
                git.push((dir, g));
            }
        }
        git.sort_by_key(|(d, _)| d.components().count());
        let mut b = ignore::gitignore::GitignoreBuilder::new(root);
        for p in DEFAULT_EXCLUDES {
            b.add_line(None, p).map_err(|e| {
                Error::of(
                    crate::error::Kind::Internal,
                    format!("default exclude {p}: {e}"),
                )
            })?;
        }
        let junk = b.build().map_err(|e| {
            Error::of(
                crate::error::Kind::Internal,
                format!("default excludes: {e}"),
            )
        })?;
        Ok(Filters { git, junk })
    }

    /// Ignored by a .gitignore (the deepest one with a say decides, as in git).
    fn git_ignored(&self, root: &Path, rel: &str, is_dir: bool) -> bool {
        let abs = root.join(rel);
        for (dir, g) in self.git.iter().rev() {
            if !abs.starts_with(dir) || abs == *dir {
                continue;
            }
            let m = g.matched_path_or_any_parents(&abs, is_dir);
            if m.is_ignore() {
                return true;
            }
            if m.is_whitelist() {
                return false;
            }
        }
        false
    }

    fn junk(&self, rel: &str, is_dir: bool) -> bool {
        self.junk
            .matched_path_or_any_parents(rel, is_dir)
            .is_ignore()
    }
}

/// A file that goes into the bundle.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the project root, `/`-separated: the path inside the bundle.
    pub rel: String,
    /// Where to read it.
    pub abs: PathBuf,
    pub kind: Kind,
    pub size: u64,
    pub executable: bool,
    /// Model format (declared or detected); only for model files.
    pub format: Option<String>,
    pub framework: Option<String>,
    /// Eval reports only: parse metrics from this file.
    pub metrics: bool,
}

/// Files looked at by one job of `collect`.
const FILES_PER_JOB: usize = 512;

/// Collect the spec's files. `exclude` are absolute paths never to include (the output).
pub fn collect(spec: &Spec, exclude: &[PathBuf]) -> Result<Vec<SourceFile>> {
    let root = fs::canonicalize(&spec.root).ctx("opening the project folder", &spec.root)?;
    let ignore = load_ignore(&root)?;
    let filters = Filters::load(&root)?;
    let mut junk: Vec<String> = Vec::new();
    let exclude: Vec<PathBuf> = exclude
        .iter()
        .map(|p| absolute(p).unwrap_or_else(|| p.clone()))
        .collect();
    let mut all_files: Option<Vec<String>> = None; // lazily walked, for globs
    let mut seen: BTreeMap<String, (Kind, Pos)> = BTreeMap::new();
    // (rel, kind, entry) of each file, looked at (`make_file`) once all are known
    let mut pending: Vec<(String, Kind, &Entry)> = Vec::new();

    for (kind, entries) in &spec.sections {
        for entry in entries {
            let mut matched: Vec<String> = Vec::new();
            if is_glob(&entry.path) {
                if all_files.is_none() {
                    let walked = walk(&root, &root, &ignore, &exclude, spec, entry)?;
                    all_files = Some(
                        walked
                            .into_iter()
                            .filter(|f| !filtered(&filters, &root, f, &mut junk))
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
                matched.extend(files.iter().filter(|f| glob.is_match(f.as_str())).cloned());
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
                        matched.extend(
                            walk(&root, &path, &ignore, &exclude, spec, entry)?
                                .into_iter()
                                .filter(|f| !filtered(&filters, &root, f, &mut junk)),
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
                        matched.push(rel);
                    }
                } else {
                    matched.push(rel);
                }
            }
            for rel in matched {
                if rel.split('/').any(|c| c == ".git")
                    || ignore.matched_path_or_any_parents(&rel, false).is_ignore()
                {
                    if !is_glob(&entry.path) && normalize(&entry.path) == rel {
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
                if let Some((k, p)) = seen.get(&rel) {
                    let (k, p) = (*k, *p);
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
                seen.insert(rel.clone(), (*kind, entry.pos));
                pending.push((rel, *kind, entry));
            }
        }
    }
    // Each file's lstat (and a model's format sniff), on all cores: ten thousand small files
    // are ten thousand system calls of latency.
    let chunks: Vec<_> = pending.chunks(FILES_PER_JOB).collect();
    let made =
        crate::build::layers::map_ordered(chunks.len(), crate::build::layers::jobs(), |i| {
            let mut dirs = std::collections::HashSet::new();
            chunks[i]
                .iter()
                .map(|(rel, kind, entry)| {
                    make_file(&root, rel.clone(), *kind, entry, spec, &exclude, &mut dirs)
                })
                .collect::<Result<Vec<_>>>()
        })?;
    let mut out: Vec<SourceFile> = made.into_iter().flatten().collect();
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

fn make_file(
    root: &Path,
    rel: String,
    kind: Kind,
    entry: &Entry,
    spec: &Spec,
    exclude: &[PathBuf],
    dirs: &mut std::collections::HashSet<PathBuf>,
) -> Result<SourceFile> {
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
    let meta = inside_file(root, &abs, spec, entry, dirs)?;
    if !meta.is_file() {
        return Err(spec.error_at(
            entry.pos,
            format!("{rel:?} in `{kind}` is not a regular file (a device, socket or fifo)"),
            "bundle only regular files; remove the entry or exclude the path in .mlartignore",
        ));
    }
    if exclude.iter().any(|x| abs.starts_with(x)) {
        return Err(spec.error_at(
            entry.pos,
            format!("{rel:?} is the bundle's own output"),
            "write the bundle outside the listed paths (`-o`)",
        ));
    }
    #[cfg(unix)]
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    };
    #[cfg(not(unix))]
    let executable = false;
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
        abs,
        kind,
        size: meta.len(),
        executable,
        format,
        framework: entry.framework.clone(),
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

/// Walk `dir` (inside `root`) and return the relative paths of its files, following
/// symlinks that stay inside the project and refusing those that leave it.
fn walk(
    root: &Path,
    dir: &Path,
    ignore: &ignore::gitignore::Gitignore,
    exclude: &[PathBuf],
    spec: &Spec,
    entry: &Entry,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut it = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter();
    loop {
        let ent = match it.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                let path = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if e.loop_ancestor().is_some() {
                    return Err(spec.error_at(
                        entry.pos,
                        format!("a symlink loop at {path}"),
                        "remove the looping symlink",
                    ));
                }
                return Err(Error::Io {
                    context: format!("walking {path}"),
                    source: e
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("walk error")),
                });
            }
        };
        let path = ent.path();
        let rel = match path.strip_prefix(root) {
            Ok(r) => to_rel(r),
            Err(_) => continue,
        };
        let is_dir = ent.file_type().is_dir();
        if ent.depth() > 0 {
            let name = ent.file_name().to_string_lossy();
            let skip = name == ".git"
                || exclude.iter().any(|x| path.starts_with(x))
                || name.starts_with(".mlart-tmp")
                || ignore.matched_path_or_any_parents(&rel, is_dir).is_ignore();
            if skip {
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
        }
        if ent.path_is_symlink() {
            inside(root, path, spec, entry)?;
        }
        if !is_dir {
            out.push(rel);
        }
    }
    Ok(out)
}

/// Left out of a directory or glob expansion by a .gitignore or the default excludes (noted
/// in `junk` for the warning).
fn filtered(filters: &Filters, root: &Path, rel: &str, junk: &mut Vec<String>) -> bool {
    let parents = || {
        let parts: Vec<&str> = rel.split('/').collect();
        (1..parts.len()).map(move |i| parts[..i].join("/"))
    };
    if let Some(j) = parents()
        .find(|d| filters.junk(d, true))
        .map(|d| format!("{d}/"))
        .or_else(|| filters.junk(rel, false).then(|| rel.to_string()))
    {
        junk.push(j);
        return true;
    }
    filters.git_ignored(root, rel, false) || parents().any(|d| filters.git_ignored(root, &d, true))
}

/// Refuse a path whose real location is outside the project (a symlink pointing out).
fn inside(root: &Path, path: &Path, spec: &Spec, entry: &Entry) -> Result<()> {
    let real = fs::canonicalize(path).map_err(|e| {
        spec.error_at(
            entry.pos,
            format!("cannot resolve {}: {e}", path.display()),
            "fix or remove the broken symlink",
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

fn load_ignore(root: &Path) -> Result<ignore::gitignore::Gitignore> {
    let mut b = ignore::gitignore::GitignoreBuilder::new(root);
    let file = root.join(IGNORE_FILE);
    if file.exists() {
        if let Some(e) = b.add(&file) {
            return Err(Error::input(format!(
                "{}: {e}. Fix the pattern (gitignore syntax)",
                file.display()
            )));
        }
    }
    b.build().map_err(|e| {
        Error::input(format!(
            "{}: {e}. Fix the pattern (gitignore syntax)",
            file.display()
        ))
    })
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
mod tests {
    use super::*;
    use crate::spec::parse;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, c).unwrap();
        }
        d
    }

    fn run(d: &tempfile::TempDir, spec: &str) -> Result<Vec<SourceFile>> {
        let f = d.path().join("mlart.yaml");
        fs::write(&f, spec).unwrap();
        collect(&parse(&f, spec)?, &[])
    }

    #[test]
    fn dirs_globs_and_ignore() {
        let d = project(&[
            ("model/m.onnx", "x"),
            ("eval/a.json", "{}"),
            ("eval/b.csv", "a,1"),
            ("eval/skip.tmp", ""),
            (".mlartignore", "*.tmp\n"),
            ("docs/x.md", "#"),
            ("docs/.git/config", ""),
        ]);
        let files = run(
            &d,
            "name: a\nversion: '1'\nmodel: [model/m.onnx]\neval: [eval/]\ndocs: ['docs/**/*']\n",
        )
        .unwrap();
        let names: Vec<_> = files.iter().map(|f| (f.rel.as_str(), f.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("docs/x.md", Kind::Docs),
                ("eval/a.json", Kind::Eval),
                ("eval/b.csv", Kind::Eval),
                ("model/m.onnx", Kind::Model)
            ]
        );
        assert_eq!(files[3].format.as_deref(), Some("onnx"));
    }

    #[test]
    fn test_data_sets_in_a_model_folder_are_eval_samples() {
        let d = project(&[
            ("resnet/model.onnx", "x"),
            ("resnet/test_data_set_0/input_0.pb", "\x08\x01"),
            ("resnet/test_data_set_0/output_0.pb", "\x08\x01"),
            ("resnet/saved_model.pb", "x"),
        ]);
        let files = run(&d, "name: a\nversion: '1'\nmodel: [resnet/]\n").unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.rel.as_str(), f.kind, f.format.as_deref(), f.metrics))
            .collect();
        assert_eq!(
            got,
            vec![
                ("resnet/model.onnx", Kind::Model, Some("onnx"), true),
                (
                    "resnet/saved_model.pb",
                    Kind::Model,
                    Some("tensorflow"),
                    true
                ),
                ("resnet/test_data_set_0/input_0.pb", Kind::Eval, None, false),
                (
                    "resnet/test_data_set_0/output_0.pb",
                    Kind::Eval,
                    None,
                    false
                ),
            ]
        );
        // listed under eval (as init writes them): kept, never read as metrics
        let files = run(
            &d,
            "name: a\nversion: '1'\nmodel: [resnet/model.onnx]\neval: [resnet/test_data_set_0/]\n",
        )
        .unwrap();
        assert!(files[1..]
            .iter()
            .all(|f| f.kind == Kind::Eval && !f.metrics));
    }

    #[test]
    fn duplicates_missing_and_escapes_are_errors() {
        let d = project(&[("m.onnx", "x"), ("e/a.json", "{}")]);
        let e = run(
            &d,
            "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: ['*.onnx']\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("under both `model` (line 3) and `docs`"), "{e}");
        let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx, ./m.onnx]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = run(&d, "name: a\nversion: '1'\nmodel: [nope.onnx]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:9:") && e.contains("does not exist"), "{e}");
        let e = run(&d, "name: a\nversion: '1'\nmodel: ['*.pt']\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("matches no file"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leaving_the_project_are_refused() {
        let outside = project(&[("secret", "s")]);
        let d = project(&[("m.onnx", "x")]);
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        fs::create_dir_all(d.path().join("dir")).unwrap();
        let e = run(&d, "name: a\nversion: '1'\nmodel: [link]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("points outside the project"), "{e}");
        std::os::unix::fs::symlink(outside.path(), d.path().join("dir/out")).unwrap();
        let e = run(&d, "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [dir]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("points outside the project"), "{e}");
        // A link that stays inside is followed.
        std::os::unix::fs::symlink(d.path().join("m.onnx"), d.path().join("alias.onnx")).unwrap();
        let files = run(&d, "name: a\nversion: '1'\nmodel: [alias.onnx]\n").unwrap();
        assert_eq!(files[0].rel, "alias.onnx");
    }
}
