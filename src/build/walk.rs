//! Walking a project folder for `collect`: the symlink rules of
//! `walkdir::WalkDir::new(dir).follow_links(true)`, at the cost of one `getdents` per
//! directory and a `stat` per directory and symlink: a file's type comes from its directory
//! entry, and its size is read later, on all cores (`collect::make_file`). Entries come in the
//! directory's own order, not sorted: `collect` sorts what it keeps (an external sort,
//! `build/runs.rs`), and a folder of a million files is walked without a list of its names.

use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// An entry below the top of the walk.
pub(super) struct Entry<'a> {
    pub path: &'a Path,
    /// Its name, and its path: `rel_top` (the top's), then `/`-separated names (lossy for
    /// names that are not UTF-8).
    pub name: &'a str,
    pub rel: &'a str,
    /// The entry is a directory (through a symlink too): `visit` decides if it is entered.
    pub is_dir: bool,
    /// The entry itself is a symlink.
    pub is_symlink: bool,
    /// A symlink's target's metadata, when it is not a directory (a regular file's is read
    /// by whoever needs it: `collect` reads them on all cores).
    pub meta: Option<&'a fs::Metadata>,
}

/// Walk below `top` (not yielding it; its path in the project is `rel_top`), each directory's
/// entries in the order it lists them, a directory before what it holds. `visit` returns whether to keep the entry: false for a directory
/// leaves it unentered. Symlinks are followed; one that leads back to a directory being
/// walked is `on_loop`'s error.
pub(super) fn walk(
    top: &Path,
    rel_top: &str,
    visit: &mut dyn FnMut(&Entry) -> Result<bool>,
    on_loop: &dyn Fn(&Path) -> Error,
) -> Result<()> {
    walk_below(top, rel_top, &[], visit, on_loop)
}

/// As `walk`, for a folder found by a walk of its own: `above` are the folders it is in
/// (their ids, `folder_id`); a symlink back to one of them is a loop.
pub(super) fn walk_below(
    top: &Path,
    rel_top: &str,
    above: &[(u64, u64)],
    visit: &mut dyn FnMut(&Entry) -> Result<bool>,
    on_loop: &dyn Fn(&Path) -> Error,
) -> Result<()> {
    let meta = fs::metadata(top).map_err(|e| io_err(top, e))?;
    let me = id(&meta);
    if above.contains(&me) {
        return Err(on_loop(top));
    }
    let mut ancestors = above.to_vec();
    ancestors.push(me);
    dir(top, rel_top, visit, on_loop, &mut ancestors)
}

/// The id of the folder at `path` (through symlinks), as `walk_below`'s `above` wants it.
pub(super) fn folder_id(path: &Path) -> Result<(u64, u64)> {
    Ok(id(&fs::metadata(path).map_err(|e| io_err(path, e))?))
}

#[cfg(unix)]
fn id(m: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}
#[cfg(not(unix))]
fn id(_: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    super::unreadable::walk_error(path, e)
}

/// Visit `path`'s entries as they are read, then enter the directories kept, one after the
/// other: only one directory is open at a time, and what is held is the kept directories of
/// the directories being walked (their paths), never a list of files.
fn dir(
    path: &Path,
    rel: &str,
    visit: &mut dyn FnMut(&Entry) -> Result<bool>,
    on_loop: &dyn Fn(&Path) -> Error,
    ancestors: &mut Vec<(u64, u64)>,
) -> Result<()> {
    let mut below: Vec<(PathBuf, String, (u64, u64))> = Vec::new();
    for e in fs::read_dir(path).map_err(|e| io_err(path, e))? {
        let e = e.map_err(|e| io_err(path, e))?;
        let name = e.file_name();
        let child = path.join(&name);
        let lossy = name.to_string_lossy();
        let child_rel = if rel.is_empty() {
            lossy.to_string()
        } else {
            format!("{rel}/{lossy}")
        };
        let ft = e.file_type().map_err(|err| io_err(&child, err))?;
        let is_symlink = ft.is_symlink();
        // The link's target's metadata (a broken link is an error once it is kept: an
        // excluded one is never looked at).
        let (meta, broken) = if is_symlink {
            match fs::metadata(&child) {
                Ok(m) => (Some(m), None),
                Err(err) => (None, Some(err)),
            }
        } else {
            (None, None)
        };
        let is_dir = match &meta {
            Some(m) => m.is_dir(),
            None => !is_symlink && ft.is_dir(),
        };
        let entry = Entry {
            path: &child,
            name: &lossy,
            rel: &child_rel,
            is_dir,
            is_symlink,
            meta: meta.as_ref().filter(|m| !m.is_dir()),
        };
        if !visit(&entry)? {
            continue;
        }
        if let Some(err) = broken {
            return Err(Error::input(format!(
                "{}: a symlink whose target cannot be read ({err}). Fix or remove the link, or exclude it in .mlartignore",
                child.display()
            )));
        }
        if !is_dir {
            continue;
        }
        let me = match &meta {
            Some(m) => id(m),
            None => id(&e.metadata().map_err(|err| io_err(&child, err))?),
        };
        // (only directories are `stat`ed here: a few, against ten thousand files)
        if is_symlink && ancestors.contains(&me) {
            return Err(on_loop(&child));
        }
        below.push((child, child_rel, me));
    }
    for (child, child_rel, me) in below {
        ancestors.push(me);
        dir(&child, &child_rel, visit, on_loop, ancestors)?;
        ancestors.pop();
    }
    Ok(())
}

/// Every `.gitignore` below `top` (not under `.git`), in no particular order: names only,
/// from the directory entries (no `stat`), symlinks not followed.
pub(super) fn gitignores(top: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(d) = todo.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            // (walkdir skipped what it could not read here too: the walk proper reports it)
            Err(_) if d != top => continue,
            Err(e) => return Err(io_err(&d, e)),
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let name = e.file_name();
            if ft.is_dir() && name != ".git" {
                todo.push(e.path());
            } else if ft.is_file() && name == ".gitignore" {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(top: &Path) -> Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        walk(
            top,
            "",
            &mut |e| {
                let rel = e
                    .path
                    .strip_prefix(top)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                assert_eq!(rel, e.rel);
                if e.meta.is_some() {
                    assert!(e.is_symlink && !e.is_dir, "{rel}");
                }
                if let Some(m) = e.meta {
                    assert_eq!(m.len(), fs::metadata(e.path).unwrap().len());
                }
                out.push((rel, e.is_dir));
                Ok(!e.name.starts_with("skip"))
            },
            &|p| Error::input(format!("loop at {}", p.display())),
        )?;
        Ok(out)
    }

    /// walkdir's entries (sorted by name) and symlink handling, which `collect` used before.
    fn walkdir_order(top: &Path) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut it = walkdir::WalkDir::new(top)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter();
        while let Some(e) = it.next() {
            let e = e.unwrap();
            if e.depth() == 0 {
                continue;
            }
            let rel = e
                .path()
                .strip_prefix(top)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let is_dir = e.file_type().is_dir();
            if is_dir && e.file_name().to_string_lossy().starts_with("skip") {
                it.skip_current_dir();
            }
            out.push((rel, is_dir));
        }
        out
    }

    /// The same entries as walkdir's, each directory before what it holds.
    fn same_as_walkdir(top: &Path) {
        let got = walked(top).unwrap();
        for (i, (rel, _)) in got.iter().enumerate() {
            if let Some((parent, _)) = rel.rsplit_once('/') {
                let at = got.iter().position(|(r, d)| r == parent && *d);
                assert!(at.is_some_and(|at| at < i), "{rel} before its folder");
            }
        }
        let mut got = got;
        got.sort();
        let mut want = walkdir_order(top);
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn same_entries_as_walkdir_folders_first() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for p in [
            "b/z", "b/a.txt", "a", "B", "b/c/d/e", "skipme/x", "é", "a.b", "a-b", "a_b",
        ] {
            let p = r.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, p.to_string_lossy().as_bytes()).unwrap();
        }
        fs::create_dir_all(r.join("empty")).unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(r.join("b/c"), r.join("linkdir")).unwrap();
            std::os::unix::fs::symlink(r.join("a"), r.join("b/linkfile")).unwrap();
        }
        same_as_walkdir(r);
        assert!(walked(r).unwrap().contains(&("linkdir/d/e".into(), false)));
        // a folder of many files and folders, in the directory's order
        for i in 0..300 {
            let p = r.join(format!("many/{}/{i}", i % 7));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, b"x").unwrap();
            fs::write(r.join(format!("many/f{i}")), b"x").unwrap();
        }
        same_as_walkdir(r);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_and_a_broken_link_are_errors() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("x/y")).unwrap();
        std::os::unix::fs::symlink(d.path().join("x"), d.path().join("x/y/up")).unwrap();
        let err = walked(d.path()).unwrap_err().to_string();
        assert!(err.contains("loop at") && err.contains("up"), "{err}");

        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(d.path().join("gone"), d.path().join("dangling")).unwrap();
        let err = walked(d.path()).unwrap_err().to_string();
        assert!(
            err.contains("dangling") && err.contains("symlink whose target cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn gitignores_are_found_outside_dot_git() {
        let d = tempfile::tempdir().unwrap();
        for p in [".gitignore", "a/b/.gitignore", ".git/.gitignore", "c/x"] {
            let p = d.path().join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, "x\n").unwrap();
        }
        let mut found = gitignores(d.path()).unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![d.path().join(".gitignore"), d.path().join("a/b/.gitignore")]
        );
    }
}
