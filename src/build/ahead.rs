//! Reading a tar layer's small files ahead of the tar writer: threads of their own (two where
//! there are two cores; the batches are dealt to them in turn) open, read and close them in
//! order, into batches of about 1 MiB that the writer hands back for reuse. Ten thousand 4 KiB
//! files are then some forty hand-overs and no allocation per file, and their system calls
//! run beside the tar writing and the hashes instead of one after the other. The writer
//! hashes each file as it takes it (`layer::tar_into`). Three system calls per file: one
//! `read` asks for a byte more than the file's size, so that a file that grew is seen without
//! another call.

use super::folder::Folder;
use crate::build::collect::SourceFile;
use crate::error::{Error, Result};
use crate::interrupt::Cancel;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Files up to this size are read ahead.
const MAX_FILE: u64 = 128 << 10;
/// A batch holds this many bytes of files, at most (one file above `MAX_FILE` never joins).
const BATCH: usize = 1 << 20;
/// Batches read and not yet taken, at most, shared out among the readers (at least one each):
/// with the batch each reader fills and the one the writer holds, about 5 MiB.
const IN_FLIGHT: usize = 3;
/// A layer with fewer files is read on the writer's thread.
const MIN_FILES: usize = 4;

/// One hand-over, planned before any file is read: a batch of consecutive small files
/// (`files[from..to]`), or one large file the writer reads itself.
#[derive(Clone, Copy)]
enum Job {
    Batch { from: usize, to: usize },
    Large,
}

/// The batches of `files`, in order: a batch ends where the next file would overflow it.
fn jobs(files: &[&SourceFile]) -> Vec<Job> {
    let mut jobs = Vec::new();
    let (mut from, mut used) = (0, 0usize);
    for (i, f) in files.iter().enumerate() {
        // (+1: the byte more each read asks for)
        if f.size > MAX_FILE || used + f.size as usize + 1 > BATCH + 1 {
            if from < i {
                jobs.push(Job::Batch { from, to: i });
            }
            from = i;
            used = 0;
            if f.size > MAX_FILE {
                jobs.push(Job::Large);
                from = i + 1;
                continue;
            }
        }
        used += f.size as usize;
    }
    if from < files.len() {
        jobs.push(Job::Batch {
            from,
            to: files.len(),
        });
    }
    jobs
}

/// A batch read: the buffer holding its files' bytes one after the other.
type Filled = Result<Vec<u8>>;

/// The writer's end.
pub(super) struct Ahead<'a> {
    files: &'a [&'a SourceFile],
    jobs: Vec<Job>,
    /// The next job to take, and how many batches were taken.
    job: usize,
    taken: usize,
    /// Reader `r` reads the jobs `r`, `r + readers`, …: its channel, and its buffers' way back.
    rx: Vec<Receiver<Filled>>,
    back: Vec<SyncSender<Vec<u8>>>,
    batch: Vec<u8>,
    /// (the reader `batch` came from)
    from: usize,
    /// The files of `batch` left, and where the next one starts.
    left: std::ops::Range<usize>,
    at: usize,
}

/// Every one of a layer's `count` files is read ahead (none is larger than `largest`, and
/// there are enough of them).
pub(super) fn all_ahead(count: usize, largest: u64) -> bool {
    count >= MIN_FILES && largest <= MAX_FILE
}

/// Start reading `files` ahead (when there are enough to be worth a thread, or `always`: a
/// layer whose every file must come read ahead, `all_ahead`, and this its last few), on
/// `readers` threads that take the batches in turn: the system calls of one reader keep a
/// core busy.
pub(super) fn start<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    files: &'scope [&'scope SourceFile],
    readers: usize,
    always: bool,
    progress: &'scope (dyn Fn(u64) + Sync),
    cancel: &'scope Cancel,
) -> Ahead<'scope> {
    let mut ahead = Ahead {
        files,
        jobs: Vec::new(),
        job: 0,
        taken: 0,
        rx: Vec::new(),
        back: Vec::new(),
        batch: Vec::new(),
        from: 0,
        left: 0..0,
        at: 0,
    };
    if files.len() < MIN_FILES && !always {
        return ahead;
    }
    ahead.jobs = jobs(files);
    let batches: Vec<(usize, usize)> = ahead
        .jobs
        .iter()
        .filter_map(|j| match *j {
            Job::Batch { from, to } => Some((from, to)),
            Job::Large => None,
        })
        .collect();
    let readers = readers.clamp(1, batches.len().max(1));
    let batches = std::sync::Arc::new(batches);
    for r in 0..readers {
        let (tx, rx) = sync_channel::<Filled>((IN_FLIGHT / readers).max(1));
        let (back, returned) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
        let batches = batches.clone();
        s.spawn(move || {
            let mut folder = Folder::default();
            for &(from, to) in batches.iter().skip(r).step_by(readers) {
                // Buffers are zeroed once, when made, and filled by `read` from then on.
                let mut buf = returned.try_recv().unwrap_or_else(|_| vec![0; BATCH + 1]);
                let mut used = 0;
                for f in &files[from..to] {
                    if let Err(e) = read_into(f, cancel, &mut folder, &mut buf[used..]) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    progress(f.size);
                    used += f.size as usize;
                }
                if tx.send(Ok(buf)).is_err() {
                    return;
                }
            }
        });
        ahead.rx.push(rx);
        ahead.back.push(back);
    }
    ahead
}

impl Ahead<'_> {
    /// The next file's bytes, or None when the caller reads it itself (a large file, or no
    /// reading ahead). Call once per file, in order; a reading error comes back at its file.
    pub(super) fn next(&mut self, f: &SourceFile) -> Result<Option<&[u8]>> {
        if self.left.is_empty() {
            let old = std::mem::take(&mut self.batch);
            if !old.is_empty() {
                // (kept whole: the reader fills it again from the start)
                let _ = self.back[self.from].try_send(old);
            }
            let Some(job) = self.jobs.get(self.job).copied() else {
                return Ok(None);
            };
            self.job += 1;
            let Job::Batch { from, to } = job else {
                return Ok(None);
            };
            // The batches are dealt to the readers in turn.
            self.from = self.taken % self.rx.len();
            self.taken += 1;
            match self.rx[self.from].recv() {
                Ok(Ok(batch)) => {
                    self.batch = batch;
                    self.left = from..to;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::of(
                        crate::error::Kind::Internal,
                        "reading the layer's files: the reading thread stopped",
                    ))
                }
            }
        }
        let i = self.left.next().expect("a batch is never empty");
        debug_assert!(std::ptr::eq(self.files[i], f));
        let len = f.size as usize;
        let start = self.at;
        self.at += len;
        Ok(Some(&self.batch[start..self.at]))
    }
}

/// Read the small file `f` into the start of `into` (which has room for a byte more): a
/// file that is not `f.size` bytes long any more is an error, as with `open_source`.
fn read_into(f: &SourceFile, cancel: &Cancel, folder: &mut Folder, into: &mut [u8]) -> Result<()> {
    cancel
        .check()
        .map_err(|e| super::layer::io_err_file(f, e))?;
    let abs = f.abs();
    let mut file = folder
        .open(&abs)
        .map_err(|e| super::unreadable::open_error(f, e))?;
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
