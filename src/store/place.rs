//! Storing a file as a blob without writing its bytes through user space: a raw layer's blob
//! is the file itself (ModelPack weights, `--format artifact`), so a layout gets it by a
//! reflink (`FICLONE`: no data copied, copy-on-write), else the kernel's copy
//! (`copy_file_range`, through `std::io::copy`), else a streamed copy; or, opt-in, by a hard
//! link (`--link`: no copy at all, the blob *is* the source file, see docs/performance.md).

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::interrupt::Cancel;
use serde::Serialize;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How a blob reached the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Written through the layer writer (tar layers, compressed layers, registries).
    Written,
    /// A reflink of the source file (copy-on-write, no data copied).
    Cloned,
    /// Copied by the kernel (`copy_file_range`) or streamed.
    Copied,
    /// A hard link to the source file (`--link`).
    Linked,
}

/// Per method, how many layer blobs were stored so (bundle's `stored` in `--json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub written: usize,
    pub cloned: usize,
    pub copied: usize,
    pub linked: usize,
}

impl Counts {
    pub fn add(&mut self, m: Method) {
        match m {
            Method::Written => self.written += 1,
            Method::Cloned => self.cloned += 1,
            Method::Copied => self.copied += 1,
            Method::Linked => self.linked += 1,
        }
    }
}

/// Bytes the kernel copies between checks of the cancel token.
const STEP: u64 = 64 << 20;

/// Places files into a blob directory (`blobs/sha256` of a layout).
#[derive(Clone, Debug)]
pub struct Placer {
    blobs: PathBuf,
}

/// A source file's copy (or clone) under a temp name, waiting for its digest.
pub struct Placed {
    tmp: tempfile::NamedTempFile,
    method: Method,
}

impl Placer {
    pub fn new(blobs: &Path) -> Self {
        Placer {
            blobs: blobs.to_path_buf(),
        }
    }

    /// Clone or copy `src` (`size` bytes) to a temp file in the blob directory.
    pub fn copy(&self, src: &Path, size: u64, cancel: &Cancel) -> Result<Placed> {
        let mut from = File::open(src).ctx("opening", src)?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.blobs)
            .ctx("creating a blob in", &self.blobs)?;
        if reflink(&from, tmp.as_file()).is_ok() {
            return Ok(Placed {
                tmp,
                method: Method::Cloned,
            });
        }
        // std's File-to-File copy is copy_file_range on Linux (sendfile or read/write where
        // that is refused); in steps, so that a Ctrl-C stops a copy of a 5 GiB shard.
        let mut to = tmp.as_file();
        let mut done = 0u64;
        loop {
            cancel.check().map_err(|e| io_err(src, e))?;
            let n = io::copy(&mut (&mut from).take(STEP), &mut to).map_err(|e| io_err(src, e))?;
            done += n;
            if n < STEP {
                break;
            }
        }
        if done != size {
            return Err(changed(src));
        }
        Ok(Placed {
            tmp,
            method: Method::Copied,
        })
    }

    /// Store a placed copy as the blob `digest`.
    pub fn commit(&self, placed: Placed, digest: &Digest) -> Result<Method> {
        let dest = self.blobs.join(digest.hex());
        placed.tmp.persist(&dest).map_err(|e| Error::Io {
            context: format!("storing blob {}", dest.display()),
            source: e.error,
        })?;
        Ok(placed.method)
    }

    /// Hard-link `src` as the blob `digest`; false when the filesystem cannot (another
    /// filesystem, links not supported): the caller copies instead.
    pub fn link(&self, src: &Path, digest: &Digest) -> Result<bool> {
        let dest = self.blobs.join(digest.hex());
        match std::fs::hard_link(src, &dest) {
            Ok(()) => Ok(true),
            // the same content twice in one bundle: already there
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
            Err(e) if cannot_link(&e) => {
                tracing::debug!("linking {}: {e}; copying instead", src.display());
                Ok(false)
            }
            Err(e) => Err(Error::Io {
                context: format!("linking {} as {}", src.display(), dest.display()),
                source: e,
            }),
        }
    }
}

/// What a file looked like before it was read: compared after the copy and the hash, which
/// read it separately (a file written meanwhile would leave a blob that is not its digest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    pub fn of(path: &Path) -> Result<Stamp> {
        let m = std::fs::metadata(path).ctx("reading", path)?;
        Ok(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
        })
    }

    /// Error unless `path` still looks as it did.
    pub fn check(&self, path: &Path) -> Result<()> {
        if Stamp::of(path)? != *self {
            return Err(changed(path));
        }
        Ok(())
    }
}

fn changed(path: &Path) -> Error {
    Error::Io {
        context: format!("reading {}", path.display()),
        source: io::Error::other(
            "the file changed while it was bundled: bundle again once it is written",
        ),
    }
}

fn io_err(path: &Path, e: io::Error) -> Error {
    if crate::error::kind_of_io(&e) == Some(crate::error::Kind::Interrupted) {
        return Error::Interrupted;
    }
    Error::Io {
        context: format!("copying {}", path.display()),
        source: e,
    }
}

/// A hard link the filesystem refuses (rather than a failure to report).
fn cannot_link(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV) | Some(libc::EPERM) | Some(libc::EMLINK) | Some(libc::ENOTSUP)
    ) || e.kind() == io::ErrorKind::CrossesDevices
        || e.kind() == io::ErrorKind::Unsupported
}

/// `ioctl(FICLONE)`: the destination shares the source's extents (btrfs, XFS with reflink,
/// bcachefs, ZFS 2.2+). Fails with EOPNOTSUPP/EXDEV/EINVAL elsewhere (ext4, tmpfs, across
/// filesystems).
#[cfg(target_os = "linux")]
fn reflink(from: &File, to: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open files.
    let r = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn reflink(_: &File, _: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(p: &Path) -> Digest {
        Digest::of(&std::fs::read(p).unwrap())
    }

    #[test]
    fn copy_then_commit_stores_the_file_under_its_digest() {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let src = d.path().join("w.bin");
        let data: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let p = Placer::new(&blobs);
        let placed = p.copy(&src, data.len() as u64, &Cancel::default()).unwrap();
        let digest = Digest::of(&data);
        let m = p.commit(placed, &digest).unwrap();
        assert!(matches!(m, Method::Cloned | Method::Copied));
        let blob = blobs.join(digest.hex());
        assert_eq!(digest_of(&blob), digest);
        // no temp file left beside it
        let names: Vec<_> = std::fs::read_dir(&blobs).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_copy_of_a_file_that_is_not_its_listed_size_fails_and_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let src = d.path().join("w.bin");
        std::fs::write(&src, b"12345").unwrap();
        let p = Placer::new(&blobs);
        let e = p.copy(&src, 9, &Cancel::default()).err().unwrap();
        assert!(
            e.to_string().contains("changed while it was bundled"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    }

    #[test]
    fn link_shares_the_inode_and_tolerates_a_second_link() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let src = d.path().join("w.bin");
        std::fs::write(&src, b"weights").unwrap();
        let digest = Digest::of(b"weights");
        let p = Placer::new(&blobs);
        assert!(p.link(&src, &digest).unwrap());
        assert!(p.link(&src, &digest).unwrap());
        let a = std::fs::metadata(&src).unwrap();
        let b = std::fs::metadata(blobs.join(digest.hex())).unwrap();
        assert_eq!(a.ino(), b.ino());
    }

    #[test]
    fn a_cancelled_copy_stops() {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let src = d.path().join("w.bin");
        std::fs::write(&src, b"weights").unwrap();
        let cancel = Cancel::default();
        cancel.cancel();
        let p = Placer::new(&blobs);
        // (a filesystem with reflinks clones at once, before any copy step)
        if let Err(e) = p.copy(&src, 7, &cancel) {
            assert!(matches!(e, Error::Interrupted), "{e}");
            assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_stamp_sees_a_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("w.bin");
        std::fs::write(&src, b"weights").unwrap();
        let s = Stamp::of(&src).unwrap();
        s.check(&src).unwrap();
        std::fs::write(&src, b"weights, longer").unwrap();
        assert!(s.check(&src).is_err());
    }
}
