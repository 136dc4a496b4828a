//! A project file that cannot be opened while it is bundled (no read permission, removed
//! meanwhile): the error names the spec entry that brought it in (`file:line:column`, as
//! every spec error does) and the fix, instead of the bare `opening PATH: Permission denied`.
//!
//! The open is far from the spec (the layer writers see only the file), so the failure is
//! marked where it happens ([`open_error`]) and explained where the spec is at hand
//! ([`explain`], by the pipeline, after the staged output was removed).

use super::collect::{is_glob, normalize, SourceFile, IGNORE_FILE};
use crate::error::Error;
use crate::spec::{Entry, Spec};
use std::io;

/// The mark inside the `io::Error` of an [`Error::Io`]: which project file failed to open.
#[derive(Debug)]
struct OpenFailed {
    rel: String,
    source: io::Error,
}

impl std::fmt::Display for OpenFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for OpenFailed {}

/// The mark of a folder of the project (or an entry in it) that could not be listed or
/// read while the project was walked.
#[derive(Debug)]
struct WalkFailed {
    path: std::path::PathBuf,
    source: io::Error,
}

impl std::fmt::Display for WalkFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for WalkFailed {}

/// The error of walking `path` (a folder read, an entry's type or metadata): `walking PATH:
/// …` as before, marked with the path for [`explain`].
pub(super) fn walk_error(path: &std::path::Path, e: io::Error) -> Error {
    Error::Io {
        context: format!("walking {}", path.display()),
        source: io::Error::new(
            e.kind(),
            WalkFailed {
                path: path.to_path_buf(),
                source: e,
            },
        ),
    }
}

/// The error of opening the source file `f` for its layer: `opening PATH: …` as before,
/// marked with the file for [`explain`] (the `io::Error`'s kind is kept).
pub(super) fn open_error(f: &SourceFile, e: io::Error) -> Error {
    Error::Io {
        context: format!("opening {}", f.abs().display()),
        source: io::Error::new(
            e.kind(),
            OpenFailed {
                rel: f.rel.clone(),
                source: e,
            },
        ),
    }
}

/// `e`, when it is a project file that could not be opened, as an error at the spec entry
/// that brought the file in, with the fix; any other error as it is.
pub(super) fn explain(spec: &Spec, e: Error) -> Error {
    let Error::Io { source, .. } = &e else {
        return e;
    };
    let inner = source.get_ref();
    let (rel, failed, folder) = match (
        inner.and_then(|x| x.downcast_ref::<OpenFailed>()),
        inner.and_then(|x| x.downcast_ref::<WalkFailed>()),
    ) {
        (Some(o), _) => (o.rel.clone(), &o.source, false),
        (None, Some(w)) => {
            // (the walk's paths are absolute; the root is as the spec was given)
            let roots = [
                Some(spec.root.clone()),
                std::path::absolute(&spec.root).ok(),
                spec.root.canonicalize().ok(),
            ];
            let Some(r) = roots
                .iter()
                .flatten()
                .find_map(|root| w.path.strip_prefix(root).ok())
                .filter(|r| !r.as_os_str().is_empty())
            else {
                return e;
            };
            (r.to_string_lossy().into_owned(), &w.source, w.path.is_dir())
        }
        (None, None) => return e,
    };
    let Some((kind, entry)) = entry_of(spec, &rel) else {
        return e;
    };
    let rel = &rel;
    let abs = spec.root.join(rel);
    let by_path = normalize(&entry.path) == *rel;
    let leave_out = match by_path {
        true => format!("remove the entry `{}`", entry.path),
        false => format!(
            "leave it out of the entry `{}` with a line `{rel}` in {IGNORE_FILE}",
            entry.path
        ),
    };
    let from = match by_path {
        true => format!("{rel:?} in `{kind}`"),
        false => format!("{rel:?} (from `{}` in `{kind}`)", entry.path),
    };
    let (what, fix) = match failed.kind() {
        io::ErrorKind::PermissionDenied if folder => (
            "is a folder the user running mlart cannot list",
            format!(
                "make it readable (e.g. `chmod a+rx {}`), or, if it does not belong in the bundle, {}",
                abs.display(),
                match by_path {
                    true => format!("remove the entry `{}`", entry.path),
                    false => format!(
                        "leave it out of the entry `{}` with a line `{rel}/` in {IGNORE_FILE}",
                        entry.path
                    ),
                }
            ),
        ),
        io::ErrorKind::PermissionDenied => (
            "cannot be read by the user running mlart",
            format!(
                "make it readable (e.g. `chmod a+r {}`), or, if it does not belong in the bundle, {leave_out}",
                abs.display()
            ),
        ),
        io::ErrorKind::NotFound => (
            "was removed while it was bundled",
            "bundle again once nothing removes files from the project".to_string(),
        ),
        _ => (
            "cannot be opened",
            format!("fix what the system says, or {leave_out}"),
        ),
    };
    spec.error_at(
        entry.pos,
        format!("{from} {what} ({failed}); nothing was written"),
        fix,
    )
}

/// The spec entry that brings in the file `rel`: listed by its path first, else the first
/// folder or glob (in spec order) it is under or matches.
fn entry_of<'s>(spec: &'s Spec, rel: &str) -> Option<(crate::format::metadata::Kind, &'s Entry)> {
    let all = || {
        spec.sections
            .iter()
            .flat_map(|(k, es)| es.iter().map(move |e| (*k, e)))
    };
    let under = |e: &Entry| {
        if is_glob(&e.path) {
            return globset::GlobBuilder::new(e.path.trim_start_matches("./"))
                .literal_separator(true)
                .build()
                .is_ok_and(|g| g.compile_matcher().is_match(rel));
        }
        let p = normalize(&e.path);
        rel.strip_prefix(&p)
            .is_some_and(|rest| rest.starts_with('/') || p.is_empty())
    };
    all()
        .find(|(_, e)| normalize(&e.path) == rel)
        .or_else(|| all().find(|(_, e)| under(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn spec(dir: &std::path::Path, yaml: &str) -> Spec {
        std::fs::write(dir.join("mlart.yaml"), yaml).unwrap();
        crate::spec::load(&dir.join("mlart.yaml")).unwrap()
    }

    fn denied(rel: &str) -> Error {
        let f = SourceFile {
            rel: rel.into(),
            root: std::path::Path::new("/p").into(),
            kind: crate::format::metadata::Kind::Logs,
            size: 1,
            executable: false,
            model: None,
            metrics: false,
        };
        open_error(&f, io::Error::from(io::ErrorKind::PermissionDenied))
    }

    #[test]
    fn an_unreadable_file_names_its_entry_and_the_fix() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("logs")).unwrap();
        std::fs::write(d.path().join("m.onnx"), "x").unwrap();
        let s = spec(
            d.path(),
            "name: x\nversion: 1.0.0\nmodel:\n  - m.onnx\nlogs:\n  - logs/\neval:\n  - \"*.json\"\n",
        );
        // (the error as the layer writer makes it: the bare one, marked)
        let raw = denied("logs/train.log");
        assert!(
            raw.to_string().starts_with("opening /p/logs/train.log: "),
            "{raw}"
        );
        let e = explain(&s, raw);
        assert_eq!(e.kind(), Kind::Input);
        let m = e.to_string();
        assert!(
            m.starts_with(&format!("{}:6:5: ", s.file.display()))
                && m.contains("\"logs/train.log\" (from `logs/` in `logs`) cannot be read")
                && m.contains("chmod a+r")
                && m.contains(".mlartignore"),
            "{m}"
        );
        // listed by its path: the entry itself is what to remove
        let m = explain(&s, denied("m.onnx")).to_string();
        assert!(
            m.contains(":4:5: ") && m.contains("remove the entry `m.onnx`"),
            "{m}"
        );
        // through a glob
        let m = explain(&s, denied("r.json")).to_string();
        assert!(m.contains(":8:5: ") && m.contains("from `*.json`"), "{m}");
        // not a project file's open: as it was
        let other = Error::Io {
            context: "writing x".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            explain(&s, other).to_string(),
            "writing x: permission denied"
        );
    }
}
