//! Safe extraction of layers into a target directory.
//!
//! Every entry path is checked by hand (no `unpack_in`): absolute paths, `..`, links that leave
//! the target, devices, fifos and duplicate entries are refused. Parent directories are created
//! one component at a time and must be real directories (never symlinks), and files are opened
//! with `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing is ever written outside the target.

pub mod attestations;
mod bounded;
mod derived;
pub mod listing;
mod overlay;
pub mod pull;
pub mod select;

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::interrupt::Cancel;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// What a tar entry is, as `Visit::entry` is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    File,
    Symlink,
    Hardlink,
}

/// What a tar stream's entries are checked against as they come (`Extractor::tar`): which
/// to write, and what each file written turned out to be. Nothing is kept per entry by the
/// extractor itself, so a layer of a million files costs no more memory than one of ten.
pub trait Visit {
    /// A non-directory entry `rel` (relative, cleaned, `strip` removed): whether to write it
    /// (an error stops the extraction).
    fn entry(&mut self, rel: &str, kind: EntryType) -> Result<bool>;
    /// A regular file written (or a hard link made to one): its sha256 and size, as it went
    /// to disk.
    fn written(&mut self, rel: &str, digest: Digest, size: u64) -> Result<()>;
    /// Whether the stream's own directory entries are made (else directories are made only
    /// as the parents of what is written).
    fn dirs(&self) -> bool {
        false
    }
}

/// Writes every entry (another tool's tar layer, tests), and keeps nothing.
pub struct All;

impl Visit for All {
    fn entry(&mut self, _: &str, _: EntryType) -> Result<bool> {
        Ok(true)
    }
    fn written(&mut self, _: &str, _: Digest, _: u64) -> Result<()> {
        Ok(())
    }
    fn dirs(&self) -> bool {
        true
    }
}

/// Extracts entries into `root` (an existing, empty directory of this process).
pub struct Extractor {
    root: PathBuf,
    /// Directories known to be real ones made by this extraction: a cache only (what is on
    /// disk decides), cut back when it grows past `MADE_CACHE`.
    made: HashSet<String>,
    cancel: Cancel,
    /// Small files written and not yet on disk: `sync` puts them there, all at once.
    unsynced: usize,
}

/// Directories remembered at most (one path each): past it the cache starts again.
const MADE_CACHE: usize = 16_384;

/// A file of at least this many bytes is on disk (fsync) before `Extractor::file` returns;
/// smaller ones wait for `Extractor::sync`, one call for all (an fsync each made 200,000
/// small files 4x slower to pull).
const SYNC_EACH: u64 = 8 << 20;

/// Check an entry path and return its normalised relative form (`a/b/c`).
pub fn clean_path(raw: &str) -> std::result::Result<String, String> {
    if raw.is_empty() {
        return Err("an empty path".into());
    }
    if raw.contains('\0') {
        return Err(format!("{raw:?} contains a NUL byte"));
    }
    if raw.contains('\\') {
        return Err(format!("{raw:?} contains a backslash"));
    }
    let p = Path::new(raw);
    let mut parts: Vec<&str> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str().ok_or_else(|| format!("{raw:?} is not UTF-8"))?;
                parts.push(s);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{raw:?} contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{raw:?} is an absolute path"))
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("{raw:?} names no file"));
    }
    Ok(parts.join("/"))
}

pub(crate) fn refuse(what: &str, why: impl std::fmt::Display) -> Error {
    Error::input(format!(
        "{what}: refusing to extract: {why}. Nothing was written outside the target"
    ))
}

/// Creating the entry `rel` at `path` failed: something is already there (an entry twice in
/// the layer, or in two layers) is refused; anything else is an I/O error on the path.
fn creating(what: &str, rel: &str, path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        refuse(what, format!("{rel} already exists in the target"))
    } else {
        Error::Io {
            context: format!("creating {}", path.display()),
            source: e,
        }
    }
}

impl Extractor {
    pub fn new(root: &Path) -> Self {
        Extractor {
            root: root.to_path_buf(),
            made: HashSet::new(),
            cancel: Cancel::default(),
            unsynced: 0,
        }
    }

    /// Put every file written on disk (the small ones `file` left to this): one `syncfs` of
    /// the root's filesystem, which also makes the directories durable. Call it before the
    /// files are moved into place.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced == 0 {
            return Ok(());
        }
        let dir = fs::File::open(&self.root).ctx("opening", &self.root)?;
        // SAFETY: `dir` is an open descriptor for the duration of the call.
        let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
        if rc != 0 {
            return Err(io::Error::last_os_error()).ctx("writing to disk the files in", &self.root);
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Stop at the next piece of a file once `cancel` is cancelled (Ctrl-C).
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Create the parent directories of `rel` (relative, cleaned) one by one, refusing any
    /// component that exists and is not a real directory.
    fn make_parents(&mut self, what: &str, rel: &str) -> Result<PathBuf> {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut acc = String::new();
        let mut path = self.root.clone();
        for part in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            path.push(part);
            if self.made.contains(&acc) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(refuse(
                        what,
                        format!("{acc} is a file or link in this bundle, not a directory"),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path).ctx("creating", &path)?;
                }
                Err(e) => return Err(e).ctx("reading", &path),
            }
            if self.made.len() >= MADE_CACHE {
                self.made.clear();
            }
            self.made.insert(acc.clone());
        }
        Ok(path.join(parts[parts.len() - 1]))
    }

    /// Write one regular file of exactly `size` bytes from `r` (an earlier end is an error),
    /// and return its sha256 and size. The hash is computed on this thread as the bytes land
    /// in the writer's chunks, and a file of `SYNC_EACH` bytes or more is on disk (fsync)
    /// before this returns (a smaller one at `sync`). A big file is written by a second
    /// thread that also starts the kernel's writeback as it goes (crate::offload), so reading,
    /// hashing and the disk work side by side. Something already at `rel` (an entry twice) is
    /// refused: the file is created with `O_EXCL`.
    pub fn file(
        &mut self,
        what: &str,
        rel: &str,
        mode: u32,
        size: u64,
        r: &mut dyn Read,
    ) -> Result<(Digest, u64)> {
        let rel = clean_path(rel).map_err(|e| refuse(what, e))?;
        let path = self.make_parents(what, &rel)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
            .open(&path)
            .map_err(|e| creating(what, &rel, &path, e))?;
        let writing = |e: io::Error| Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        };
        // The file's hash on this thread, over each piece as it lands in the writer's chunk
        // (still in this core's cache); the worker only writes and starts the writeback.
        let mut h = Sha256::new();
        let ((), f, size) = crate::offload::write_behind(
            f,
            size,
            crate::offload::Writeback::default(),
            |w| {
                w.copy_from(r, size, &mut |piece| {
                    self.cancel.check()?;
                    h.update(piece);
                    Ok(())
                })
                .map_err(|e| {
                    if self.cancel.is_cancelled() {
                        Error::Interrupted
                    } else {
                        Error::from_io(&e, format!("{what}: reading {rel}: {e}"))
                    }
                })
            },
            writing,
        )?;
        let digest = Digest::from_hasher(h);
        if size >= SYNC_EACH {
            f.sync_all().ctx("writing", &path)?;
        } else {
            self.unsynced += 1;
        }
        Ok((digest, size))
    }

    fn dir(&mut self, what: &str, rel: &str) -> Result<()> {
        let rel = clean_path(rel).map_err(|e| refuse(what, e))?;
        if self.made.contains(&rel) {
            return Ok(());
        }
        let path = self.make_parents(what, &rel)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => Ok(()),
            Ok(_) => Err(refuse(what, format!("{rel} exists and is not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).ctx("creating", &path)?;
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
                Ok(())
            }
            Err(e) => Err(e).ctx("reading", &path),
        }
    }

    /// A symlink is allowed only when it is relative and stays inside the target.
    fn symlink(&mut self, what: &str, rel: &str, target: &str) -> Result<()> {
        let rel = clean_path(rel).map_err(|e| refuse(what, e))?;
        check_symlink_target(&rel, target).map_err(|w| refuse(what, w))?;
        let path = self.make_parents(what, &rel)?;
        std::os::unix::fs::symlink(target, &path).map_err(|e| creating(what, &rel, &path, e))
    }

    /// A hard link is allowed only to a regular file this extraction already wrote (every
    /// component of its path a real directory, itself a regular file: nothing else is in the
    /// target but what this extraction made). Returns the file's sha256 and size (read again:
    /// another tool's tar layers only).
    fn hardlink(&mut self, what: &str, rel: &str, target: &str) -> Result<(Digest, u64)> {
        let rel = clean_path(rel).map_err(|e| refuse(what, e))?;
        let tgt = clean_path(target)
            .map_err(|e| refuse(what, format!("hard link {rel} -> {target}: {e}")))?;
        let not_ours = || {
            refuse(
                what,
                format!("hard link {rel} -> {target} does not point to a file of this bundle"),
            )
        };
        let mut at = self.root.clone();
        let parts: Vec<&str> = tgt.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            let is_last = i + 1 == parts.len();
            match fs::symlink_metadata(&at) {
                Ok(m) if !is_last && m.file_type().is_dir() => {}
                Ok(m) if is_last && m.file_type().is_file() => {}
                _ => return Err(not_ours()),
            }
        }
        let path = self.make_parents(what, &rel)?;
        fs::hard_link(&at, &path).map_err(|e| creating(what, &rel, &path, e))?;
        let mut h = crate::format::digest::HashWriter::new(io::sink());
        let mut f = fs::File::open(&path).ctx("reading", &path)?;
        io::copy(&mut f, &mut h).ctx("reading", &path)?;
        let (_, d, n) = h.finish();
        Ok((d, n))
    }

    /// Extract a tar stream. Entry paths must start with `strip` (e.g. `models/`), which is
    /// removed; `v` picks the entries to write (the others are still checked) and is told what
    /// each file written holds.
    pub fn tar(
        &mut self,
        what: &str,
        r: &mut dyn Read,
        strip: Option<&str>,
        v: &mut dyn Visit,
    ) -> Result<()> {
        let bad = |e: io::Error| Error::from_io(&e, format!("{what}: not a valid tar layer: {e}"));
        let mut ar = tar::Archive::new(r);
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let et = e.header().entry_type();
            if matches!(
                et,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
                    | tar::EntryType::GNULongLink
            ) {
                continue;
            }
            let raw = String::from_utf8(e.path_bytes().into_owned())
                .map_err(|_| refuse(what, "an entry path is not UTF-8"))?;
            // A root directory entry (`./`) carries nothing.
            if et.is_dir() && raw.split('/').all(|c| c.is_empty() || c == ".") {
                continue;
            }
            let cleaned = clean_path(&raw).map_err(|why| refuse(what, why))?;
            let rel = match strip {
                Some(prefix) => {
                    let prefix = prefix.trim_end_matches('/');
                    if cleaned == prefix && et.is_dir() {
                        continue;
                    }
                    match cleaned
                        .strip_prefix(prefix)
                        .and_then(|r| r.strip_prefix('/'))
                    {
                        Some(r) => r.to_string(),
                        None => {
                            return Err(refuse(what, format!("{raw:?} is not under {prefix}/")))
                        }
                    }
                }
                None => cleaned,
            };
            if rel
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".wh."))
            {
                return Err(refuse(what, format!("{raw:?} is a whiteout entry")));
            }
            match et {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if v.entry(&rel, EntryType::File)? {
                        let mode = e.header().mode().unwrap_or(0o644);
                        let size = e.size();
                        let (d, n) = self.file(what, &rel, mode, size, &mut e)?;
                        v.written(&rel, d, n)?;
                    }
                }
                tar::EntryType::Directory => {
                    if v.dirs() {
                        self.dir(what, &rel)?;
                    }
                }
                tar::EntryType::Symlink => {
                    let target = link_name(&e).map_err(|w| refuse(what, w))?;
                    check_symlink_target(&rel, &target).map_err(|w| refuse(what, w))?;
                    if v.entry(&rel, EntryType::Symlink)? {
                        self.symlink(what, &rel, &target)?;
                    }
                }
                tar::EntryType::Link => {
                    let target = link_name(&e).map_err(|w| refuse(what, w))?;
                    let target = match strip {
                        Some(prefix) => {
                            let t = clean_path(&target)
                                .map_err(|w| refuse(what, format!("hard link {raw:?}: {w}")))?;
                            let prefix = prefix.trim_end_matches('/');
                            t.strip_prefix(prefix)
                                .and_then(|r| r.strip_prefix('/'))
                                .map(str::to_string)
                                .ok_or_else(|| {
                                    refuse(
                                        what,
                                        format!("hard link {raw:?} -> {target:?} leaves {prefix}/"),
                                    )
                                })?
                        }
                        None => target,
                    };
                    if v.entry(&rel, EntryType::Hardlink)? {
                        let (d, n) = self.hardlink(what, &rel, &target)?;
                        v.written(&rel, d, n)?;
                    }
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    return Err(refuse(
                        what,
                        format!("{raw:?} is a device or fifo, not a file"),
                    ))
                }
                other => {
                    return Err(refuse(
                        what,
                        format!("{raw:?} has an unsupported entry type {other:?}"),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn link_name<R: Read>(e: &tar::Entry<R>) -> std::result::Result<String, String> {
    let t = e
        .link_name_bytes()
        .ok_or_else(|| "a link entry without a target".to_string())?;
    String::from_utf8(t.into_owned()).map_err(|_| "a link target is not UTF-8".to_string())
}

fn check_symlink_target(rel: &str, target: &str) -> std::result::Result<(), String> {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return Err(format!(
            "symlink {rel} -> {target} points outside the target"
        ));
    }
    let mut depth: i64 = rel.split('/').count() as i64 - 1;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!(
                        "symlink {rel} -> {target} points outside the target"
                    ));
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, et, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            {
                let gnu = h.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(l) = link {
                    gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
                }
            }
            h.set_entry_type(*et);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            out.extend(std::iter::repeat_n(0u8, pad));
        }
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }

    fn run(
        entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    ) -> (tempfile::TempDir, Result<()>) {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("out");
        fs::create_dir(&target).unwrap();
        let bytes = tar_with(entries);
        let mut x = Extractor::new(&target);
        let r = x.tar("layer", &mut &bytes[..], Some("models/"), &mut All);
        (t, r)
    }

    use tar::EntryType as E;

    #[test]
    fn good_layer() {
        let (t, r) = run(&[
            ("models/", E::Directory, b"", None),
            ("models/a/", E::Directory, b"", None),
            ("models/a/b.txt", E::Regular, b"hello", None),
            ("models/a/c", E::Symlink, b"", Some("b.txt")),
        ]);
        r.unwrap();
        assert_eq!(fs::read(t.path().join("out/a/b.txt")).unwrap(), b"hello");
    }

    #[test]
    fn hostile_layers() {
        for entries in [
            vec![("models/../evil", E::Regular, &b"x"[..], None)],
            vec![("/etc/evil", E::Regular, &b"x"[..], None)],
            vec![("evil", E::Regular, &b"x"[..], None)],
            vec![
                ("models/l", E::Symlink, &b""[..], Some("/etc")),
                ("models/l/evil", E::Regular, &b"x"[..], None),
            ],
            vec![("models/l", E::Symlink, &b""[..], Some("../.."))],
            vec![
                ("models/l", E::Symlink, &b""[..], Some(".")),
                ("models/l/evil", E::Regular, &b"x"[..], None),
            ],
            vec![("models/dev", E::Char, &b""[..], None)],
            vec![("models/fifo", E::Fifo, &b""[..], None)],
            vec![
                ("models/a", E::Regular, &b"x"[..], None),
                ("models/a", E::Regular, &b"y"[..], None),
            ],
            vec![("models/h", E::Link, &b""[..], Some("/etc/passwd"))],
        ] {
            let (t, r) = run(&entries);
            assert!(r.is_err(), "{entries:?} was accepted");
            assert!(!t.path().join("evil").exists());
            assert!(!t.path().join("out/l/evil").exists());
        }
    }
}
