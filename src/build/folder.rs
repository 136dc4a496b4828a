//! Files looked at relative to their folder: ten thousand small files in a few folders are
//! ten thousand `openat`/`fstatat` calls on a kept folder descriptor, not ten thousand walks
//! of the whole path through the kernel's lookup.

use std::io;
use std::path::{Path, PathBuf};

/// What `collect` needs of a file, read without following a final symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stat {
    pub is_file: bool,
    pub len: u64,
    pub executable: bool,
}

impl Stat {
    pub fn of(m: &std::fs::Metadata) -> Stat {
        #[cfg(unix)]
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o111 != 0
        };
        #[cfg(not(unix))]
        let executable = false;
        Stat {
            is_file: m.is_file(),
            len: m.len(),
            executable,
        }
    }
}

/// The folder of the last file looked at, kept open: the next file of the same folder is
/// opened (`openat`) or read (`fstatat`) relative to it.
#[derive(Default)]
pub(super) struct Folder {
    #[cfg(unix)]
    open: Option<(PathBuf, std::fs::File)>,
}

#[cfg(unix)]
impl Folder {
    /// The kept descriptor of `abs`'s folder, and `abs`'s name; None for a path without both.
    fn split(&mut self, abs: &Path) -> io::Result<Option<(i32, std::ffi::CString)>> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Ok(None);
        };
        let same = matches!(&self.open, Some((p, _)) if p.as_os_str() == parent.as_os_str());
        if !same {
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(parent)?;
            self.open = Some((parent.to_path_buf(), dir));
        }
        let dir = &self.open.as_ref().expect("just opened").1;
        Ok(Some((
            dir.as_raw_fd(),
            std::ffi::CString::new(name.as_bytes())?,
        )))
    }

    /// Open `abs` for reading.
    pub fn open(&mut self, abs: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::io::FromRawFd;
        let Some((dir, name)) = self.split(abs)? else {
            return std::fs::File::open(abs);
        };
        // SAFETY: a valid directory descriptor and a NUL-terminated name; the descriptor
        // returned is owned by the File alone.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }

    /// `lstat` of `abs`.
    pub fn lstat(&mut self, abs: &Path) -> io::Result<Stat> {
        let Some((dir, name)) = self.split(abs)? else {
            return std::fs::symlink_metadata(abs).map(|m| Stat::of(&m));
        };
        // SAFETY: `st` is written by fstatat before it is read (checked by its result); the
        // descriptor and the NUL-terminated name are valid for the call.
        let st = unsafe {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            if libc::fstatat(
                dir,
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            st.assume_init()
        };
        Ok(Stat {
            is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
            len: st.st_size as u64,
            executable: st.st_mode & 0o111 != 0,
        })
    }
}

#[cfg(not(unix))]
impl Folder {
    pub fn open(&mut self, abs: &Path) -> io::Result<std::fs::File> {
        std::fs::File::open(abs)
    }
    pub fn lstat(&mut self, abs: &Path) -> io::Result<Stat> {
        std::fs::symlink_metadata(abs).map(|m| Stat::of(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstat_and_open_agree_with_std_across_folders_and_for_symlinks() {
        let d = tempfile::tempdir().unwrap();
        for (p, body) in [("a/x.bin", &b"12345"[..]), ("a/y.sh", b""), ("b/z", b"zz")] {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let sh = d.path().join("a/y.sh");
            std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::symlink("x.bin", d.path().join("a/link")).unwrap();
        }
        let mut f = Folder::default();
        for p in ["a/x.bin", "a/y.sh", "b/z", "a/link", "a/x.bin"] {
            let abs = d.path().join(p);
            let Ok(m) = std::fs::symlink_metadata(&abs) else {
                continue;
            };
            assert_eq!(f.lstat(&abs).unwrap(), Stat::of(&m), "{p}");
            if m.is_file() {
                let mut s = String::new();
                io::Read::read_to_string(&mut f.open(&abs).unwrap(), &mut s).unwrap();
                assert_eq!(s.as_bytes(), std::fs::read(&abs).unwrap(), "{p}");
            }
        }
        #[cfg(unix)]
        assert!(!f.lstat(&d.path().join("a/link")).unwrap().is_file);
        let missing = f.lstat(&d.path().join("a/none")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(f.lstat(&d.path().join("nofolder/none")).is_err());
    }
}

/// What `collect` keeps of a file found (`store::runs`' payload): whether a walk found it
/// (else the spec lists it) and what the walk read, if it did: a flag byte, then the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    pub walked: bool,
    pub meta: Option<Stat>,
}

const WALKED: u8 = 1;
const META: u8 = 2;
const IS_FILE: u8 = 4;
const EXECUTABLE: u8 = 8;

impl crate::store::runs::Payload for Seen {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut flags = if self.walked { WALKED } else { 0 };
        if let Some(m) = self.meta {
            flags |= META;
            if m.is_file {
                flags |= IS_FILE;
            }
            if m.executable {
                flags |= EXECUTABLE;
            }
        }
        out.push(flags);
        if let Some(m) = self.meta {
            crate::store::runs::put_varint(out, m.len);
        }
    }

    fn decode(r: &mut dyn std::io::Read) -> crate::error::Result<Seen> {
        use crate::store::runs::{corrupt, next_varint, read_byte};
        let flags = read_byte(r)?.ok_or_else(|| corrupt("cut in a record"))?;
        if flags & !(WALKED | META | IS_FILE | EXECUTABLE) != 0
            || (flags & META == 0 && flags & (IS_FILE | EXECUTABLE) != 0)
        {
            return Err(corrupt("unknown flags"));
        }
        let meta = if flags & META != 0 {
            Some(Stat {
                is_file: flags & IS_FILE != 0,
                len: next_varint(r)?,
                executable: flags & EXECUTABLE != 0,
            })
        } else {
            None
        };
        Ok(Seen {
            walked: flags & WALKED != 0,
            meta,
        })
    }
}

#[cfg(test)]
mod seen_tests {
    use super::*;
    use crate::store::runs::Payload;

    #[test]
    fn seen_comes_back_as_written_and_damaged_bytes_are_errors() {
        let all = [
            Seen {
                walked: false,
                meta: None,
            },
            Seen {
                walked: true,
                meta: None,
            },
            Seen {
                walked: true,
                meta: Some(Stat {
                    is_file: true,
                    len: u64::MAX,
                    executable: true,
                }),
            },
            Seen {
                walked: false,
                meta: Some(Stat {
                    is_file: false,
                    len: 0,
                    executable: false,
                }),
            },
        ];
        for s in all {
            let mut b = Vec::new();
            s.encode(&mut b);
            assert_eq!(Seen::decode(&mut b.as_slice()).unwrap(), s);
            for cut in 0..b.len() {
                let e = Seen::decode(&mut &b[..cut]).unwrap_err();
                assert!(e.to_string().contains("damaged"), "{e}");
            }
        }
        // unknown bits, or file bits without the metadata's
        for flags in [0x10u8, 0x80, IS_FILE, EXECUTABLE | WALKED] {
            let e = Seen::decode(&mut &[flags, 0][..]).unwrap_err();
            assert!(e.to_string().contains("flags"), "{flags:#x}: {e}");
        }
    }
}
