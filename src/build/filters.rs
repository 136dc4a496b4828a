//! What directory and glob expansion leaves out: `.mlartignore` (every entry), `.gitignore`
//! files (git's rules, nested ones too) and the default excludes of secrets and junk.

use super::collect::{DEFAULT_EXCLUDES, IGNORE_FILE};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What directory and glob expansion leaves out besides `.mlartignore`.
pub(super) struct Filters {
    /// (folder, its .gitignore), shallowest first.
    git: Vec<(PathBuf, ignore::gitignore::Gitignore)>,
    junk: ignore::gitignore::Gitignore,
}

impl Filters {
    pub(super) fn load(root: &Path) -> Result<Filters> {
        let mut git = Vec::new();
        let mut found = crate::build::walk::gitignores(root)?;
        found.sort();
        for path in found {
            let dir = path.parent().unwrap_or(root).to_path_buf();
            let mut b = ignore::gitignore::GitignoreBuilder::new(&dir);
            if let Some(err) = b.add(&path) {
                return Err(Error::input(format!(
                    "{}: {err}. Fix the pattern (gitignore syntax)",
                    path.display()
                )));
            }
            let g = b
                .build()
                .map_err(|err| Error::input(format!("{}: {err}", path.display())))?;
            git.push((dir, g));
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
        if self.git.is_empty() {
            return false;
        }
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

/// The filters, once loaded.
pub(super) enum Lazy {
    Loading(std::thread::JoinHandle<Result<Filters>>),
    Loaded(Filters),
    Taken,
}

impl Lazy {
    pub(super) fn get(&mut self) -> Result<&Filters> {
        if let Lazy::Loading(_) = self {
            let Lazy::Loading(h) = std::mem::replace(self, Lazy::Taken) else {
                unreachable!()
            };
            let filters = h.join().map_err(|_| {
                Error::of(
                    crate::error::Kind::Internal,
                    "reading the .gitignore files: the thread panicked",
                )
            })??;
            *self = Lazy::Loaded(filters);
        }
        match self {
            Lazy::Loaded(f) => Ok(f),
            _ => Err(Error::of(
                crate::error::Kind::Internal,
                "reading the .gitignore files failed before",
            )),
        }
    }
}

/// Left out of a directory or glob expansion by a .gitignore or the default excludes (noted
/// in `junk` for the warning). `last` keeps the verdict on the last file's folders: files
/// come folder by folder, and a folder's verdict is the same for all of its files.
pub(super) fn filtered(
    filters: &Filters,
    root: &Path,
    rel: &str,
    junk: &mut Vec<String>,
    last: &mut Option<FolderVerdict>,
) -> bool {
    let folder = rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let v = match last {
        Some(v) if v.folder == folder => v,
        _ => last.insert(FolderVerdict::of(filters, root, folder)),
    };
    if let Some(j) = &v.junk {
        junk.push(j.clone());
        return true;
    }
    // (its folders are not junk: the file alone decides; the excludes have no `!` patterns)
    if filters.junk.matched(rel, false).is_ignore() {
        junk.push(rel.to_string());
        return true;
    }
    v.git_ignored || filters.git_ignored(root, rel, false)
}

/// What `filtered` found for the folders above a file (`folder` and its parents).
pub(super) struct FolderVerdict {
    folder: String,
    /// The outermost junk folder, as `dir/`.
    junk: Option<String>,
    git_ignored: bool,
}

impl FolderVerdict {
    fn of(filters: &Filters, root: &Path, folder: &str) -> FolderVerdict {
        let parents: Vec<&str> = if folder.is_empty() {
            Vec::new()
        } else {
            folder
                .match_indices('/')
                .map(|(i, _)| &folder[..i])
                .chain([folder])
                .collect()
        };
        FolderVerdict {
            folder: folder.to_string(),
            junk: parents
                .iter()
                .find(|d| filters.junk(d, true))
                .map(|d| format!("{d}/")),
            git_ignored: parents.iter().any(|d| filters.git_ignored(root, d, true)),
        }
    }
}

pub(super) fn load_ignore(root: &Path) -> Result<ignore::gitignore::Gitignore> {
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
