//! Reading a tar layer's small files ahead of the tar writer: a thread of their own opens,
//! reads and closes them in order, into batches of about 1 MiB that the writer hands back for
//! reuse. Ten thousand 4 KiB files are then some forty hand-overs and no allocation per file,
//! and their system calls run beside the tar writing and the hashes instead of one after the
//! other. Each file is hashed by the writer, as it takes the file: the system calls alone
//! keep this thread busy (three per file: one `read` asks for a byte more than the file's
//! size, so that a file that grew is seen without another call).

use super::layer::{FileDigest, CAPTURE_LIMIT};
use crate::build::collect::SourceFile;
use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::interrupt::Cancel;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Files up to this size are read ahead.
const MAX_FILE: u64 = 128 << 10;
/// A batch holds this many bytes of files, at most (one file above `MAX_FILE` never joins).
const BATCH: usize = 1 << 20;
/// Batches read and not yet written, at most: about 4 MiB held.
const IN_FLIGHT: usize = 3;
/// A layer with fewer files is read on the writer's thread.
const MIN_FILES: usize = 4;

enum Msg {
    /// A buffer holding the next files' bytes one after the other, and their lengths.
    Batch(Vec<u8>, VecDeque<usize>),
    /// The next file is large: the writer reads it itself.
    Large,
}

/// The writer's end.
pub(super) struct Ahead<'a> {
    rx: Option<Receiver<Result<Msg>>>,
    back: Option<SyncSender<Vec<u8>>>,
    batch: Vec<u8>,
    items: VecDeque<usize>,
    at: usize,
    capture: &'a (dyn Fn(&SourceFile) -> bool + Sync),
}

/// Start reading `files` ahead (when there are enough to be worth a thread).
pub(super) fn start<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    files: &'scope [&'scope SourceFile],
    capture: &'scope (dyn Fn(&SourceFile) -> bool + Sync),
    progress: &'scope (dyn Fn(u64) + Sync),
    cancel: &'scope Cancel,
) -> Ahead<'scope> {
    let mut ahead = Ahead {
        rx: None,
        back: None,
        batch: Vec::new(),
        items: VecDeque::new(),
        at: 0,
        capture,
    };
    if files.len() < MIN_FILES {
        return ahead;
    }
    let (tx, rx) = sync_channel::<Result<Msg>>(IN_FLIGHT);
    let (back, returned) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    s.spawn(move || {
        // Buffers are zeroed once, when made, and filled by `read` from then on.
        let fresh = |returned: &Receiver<Vec<u8>>| {
            returned.try_recv().unwrap_or_else(|_| vec![0; BATCH + 1])
        };
        let mut buf = fresh(&returned);
        let mut used = 0;
        let mut folder = Folder::default();
        let mut items = VecDeque::new();
        for f in files {
            // (+1: the byte more each read asks for)
            if f.size > MAX_FILE || used + f.size as usize + 1 > buf.len() {
                if !items.is_empty() {
                    let full = std::mem::replace(&mut buf, fresh(&returned));
                    used = 0;
                    if tx
                        .send(Ok(Msg::Batch(full, std::mem::take(&mut items))))
                        .is_err()
                    {
                        return;
                    }
                }
                if f.size > MAX_FILE {
                    if tx.send(Ok(Msg::Large)).is_err() {
                        return;
                    }
                    continue;
                }
            }
            match read_into(f, cancel, &mut folder, &mut buf[used..]) {
                Ok(()) => {
                    progress(f.size);
                    used += f.size as usize;
                    items.push_back(f.size as usize);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if !items.is_empty() {
            let _ = tx.send(Ok(Msg::Batch(buf, items)));
        }
    });
    ahead.rx = Some(rx);
    ahead.back = Some(back);
    ahead
}

impl Ahead<'_> {
    /// The next file's bytes and digest (hashed here, and captured if asked), or None when
    /// the caller reads it itself (a large file, or no reading ahead). Call once per file, in
    /// order.
    pub(super) fn next(&mut self, f: &SourceFile) -> Result<Option<(&[u8], FileDigest)>> {
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        if self.items.is_empty() {
            let old = std::mem::take(&mut self.batch);
            if !old.is_empty() {
                if let Some(back) = &self.back {
                    // (kept whole: the reader fills it again from the start)
                    let _ = back.try_send(old);
                }
            }
            match rx.recv() {
                Ok(Ok(Msg::Batch(batch, items))) => {
                    self.batch = batch;
                    self.items = items;
                    self.at = 0;
                }
                Ok(Ok(Msg::Large)) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::of(
                        crate::error::Kind::Internal,
                        "reading the layer's files: the reading thread stopped",
                    ))
                }
            }
        }
        let len = self.items.pop_front().expect("a batch is never empty");
        let start = self.at;
        self.at += len;
        let data = &self.batch[start..self.at];
        let fd = FileDigest {
            rel: f.rel.clone(),
            sha256: Digest::of(data),
            size: f.size,
            captured: ((self.capture)(f) && f.size <= CAPTURE_LIMIT).then(|| data.to_vec()),
        };
        Ok(Some((data, fd)))
    }
}

/// Read the small file `f` into the start of `into` (which has room for a byte more): a
/// file that is not `f.size` bytes long any more is an error, as with `open_source`.
fn read_into(f: &SourceFile, cancel: &Cancel, folder: &mut Folder, into: &mut [u8]) -> Result<()> {
    cancel
        .check()
        .map_err(|e| super::layer::io_err_file(f, e))?;
    let mut file = folder.open(&f.abs).ctx("opening", &f.abs)?;
    let end = f.size as usize;
    let mut at = 0;
    loop {
        let n = match file.read(&mut into[at..=end]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(super::layer::io_err_file(f, e)),
        };
        if n == 0 {
            if at < end {
                return Err(super::layer::io_err_file(
                    f,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the file shrank while it was bundled ({} bytes missing)",
                            end - at
                        ),
                    ),
                ));
            }
            return Ok(());
        }
        at += n;
        if at > end {
            return Err(super::source::grew(f));
        }
        if at == end {
            // The read stopped short of the byte more it asked for: the end of the file.
            return Ok(());
        }
    }
}

/// The folder of the last file opened, kept open: the next file of the same folder is opened
/// relative to it (`openat`), without resolving its whole path again.
#[derive(Default)]
struct Folder {
    #[cfg(unix)]
    open: Option<(std::path::PathBuf, std::fs::File)>,
}

impl Folder {
    #[cfg(unix)]
    fn open(&mut self, abs: &std::path::Path) -> io::Result<std::fs::File> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::io::{AsRawFd, FromRawFd};
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return std::fs::File::open(abs);
        };
        let same = matches!(&self.open, Some((p, _)) if p.as_os_str() == parent.as_os_str());
        if !same {
            use std::os::unix::fs::OpenOptionsExt;
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY)
                .open(parent)?;
            self.open = Some((parent.to_path_buf(), dir));
        }
        let dir = &self.open.as_ref().expect("just opened").1;
        let name = std::ffi::CString::new(name.as_bytes())?;
        // SAFETY: a valid directory descriptor and a NUL-terminated name; the descriptor
        // returned is owned by the File alone.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }

    #[cfg(not(unix))]
    fn open(&mut self, abs: &std::path::Path) -> io::Result<std::fs::File> {
        std::fs::File::open(abs)
    }
}
