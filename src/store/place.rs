//! Storing a file as a blob without copying its bytes: a raw layer's blob is the file itself
//! (ModelPack weights, `--format artifact`), so a layout gets it by a reflink (`FICLONE`: no
//! data copied, copy-on-write) where the filesystem has them, or, opt-in, by a hard link
//! (`--link`: the blob *is* the source file). Elsewhere the layer writer copies the file as it
//! hashes it: on this project's ext4 VM that one read beat hashing beside the kernel's
//! `copy_file_range` (4.7 s against 6.6 s for 4 GiB, docs/performance.md).

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use serde::Serialize;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// How a blob reached the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Written through the layer writer (tar layers, compressed layers, registries).
    Written,
    /// A reflink of the source file (copy-on-write, no data copied).
    Cloned,
    /// Copied into the layout as it was hashed (one read; no reflinks there).
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

    /// A reflink of `src` under a temp name in the blob directory (no data copied); None
    /// where the filesystem has no reflinks (ext4, tmpfs, another filesystem): the caller
    /// copies the file as it hashes it, in one read.
    pub fn clone_file(&self, src: &Path) -> Result<Option<Placed>> {
        let from = File::open(src).ctx("opening", src)?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.blobs)
            .ctx("creating a blob in", &self.blobs)?;
        match reflink(&from, tmp.as_file()) {
            Ok(()) => Ok(Some(Placed {
                tmp,
                method: Method::Cloned,
            })),
            Err(e) => {
                tracing::debug!("reflink of {}: {e}; copying", src.display());
                Ok(None)
            }
        }
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
    fn a_clone_is_the_file_or_nothing_is_left() {
        let d = tempfile::tempdir().unwrap();
        let blobs = d.path().join("blobs");
        std::fs::create_dir(&blobs).unwrap();
        let src = d.path().join("w.bin");
        let data: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let p = Placer::new(&blobs);
        let digest = Digest::of(&data);
        match p.clone_file(&src).unwrap() {
            // a filesystem with reflinks (btrfs, XFS): the blob is the file's content
            Some(placed) => {
                assert_eq!(p.commit(placed, &digest).unwrap(), Method::Cloned);
                assert_eq!(digest_of(&blobs.join(digest.hex())), digest);
                assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 1);
            }
            // ext4, tmpfs: no temp file left behind
            None => assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0),
        }
        assert!(p.clone_file(&d.path().join("missing")).is_err());
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
