//! Reading a tar layer's small files ahead of the tar writer: a thread of their own opens,
//! reads, hashes and closes them in order, into batches of about 1 MiB that the writer hands
//! back for reuse. Ten thousand 4 KiB files are then some forty hand-overs and no allocation
//! per file, and their system calls run beside the tar writing and the layer's hash instead
//! of one after the other.

use super::layer::FileDigest;
use super::source::{close_source, open_source};
use crate::build::collect::SourceFile;
use crate::error::{Error, Result};
use crate::interrupt::Cancel;
use std::collections::VecDeque;
use std::io::Read;
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
    /// The next files' bytes, one after the other, and their digests with their lengths.
    Batch(Vec<u8>, VecDeque<(FileDigest, usize)>),
    /// The next file is large: the writer reads it itself.
    Large,
}

/// The writer's end.
pub(super) struct Ahead {
    rx: Option<Receiver<Result<Msg>>>,
    back: Option<SyncSender<Vec<u8>>>,
    batch: Vec<u8>,
    items: VecDeque<(FileDigest, usize)>,
    at: usize,
}

/// Start reading `files` ahead (when there are enough to be worth a thread).
pub(super) fn start<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    files: &'scope [&'scope SourceFile],
    capture: &'scope (dyn Fn(&SourceFile) -> bool + Sync),
    progress: &'scope (dyn Fn(u64) + Sync),
    cancel: &'scope Cancel,
) -> Ahead {
    let mut ahead = Ahead {
        rx: None,
        back: None,
        batch: Vec::new(),
        items: VecDeque::new(),
        at: 0,
    };
    if files.len() < MIN_FILES {
        return ahead;
    }
    let (tx, rx) = sync_channel::<Result<Msg>>(IN_FLIGHT);
    let (back, returned) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    s.spawn(move || {
        let fresh = |returned: &Receiver<Vec<u8>>| {
            returned
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(BATCH))
        };
        let mut buf = fresh(&returned);
        let mut items = VecDeque::new();
        for f in files {
            if f.size > MAX_FILE || buf.len() + f.size as usize > BATCH {
                if !items.is_empty() {
                    let full = std::mem::replace(&mut buf, fresh(&returned));
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
            match read_into(f, capture(f), progress, cancel, &mut buf) {
                Ok(fd) => items.push_back((fd, f.size as usize)),
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

impl Ahead {
    /// The next file's bytes and digest, or None when the caller reads it itself (a large
    /// file, or no reading ahead). Call once per file, in order.
    pub(super) fn next(&mut self) -> Result<Option<(&[u8], FileDigest)>> {
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        if self.items.is_empty() {
            let old = std::mem::take(&mut self.batch);
            if old.capacity() > 0 {
                if let Some(back) = &self.back {
                    let mut old = old;
                    old.clear();
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
        let (fd, len) = self.items.pop_front().expect("a batch is never empty");
        let start = self.at;
        self.at += len;
        Ok(Some((&self.batch[start..self.at], fd)))
    }
}

/// Append a small file to `buf` (hashed, counted, captured as `open_source` does).
fn read_into(
    f: &SourceFile,
    capture: bool,
    progress: &dyn Fn(u64),
    cancel: &Cancel,
    buf: &mut Vec<u8>,
) -> Result<FileDigest> {
    let mut r = open_source(f, capture, progress, cancel)?;
    let before = buf.len();
    if let Err(e) = r.read_to_end(buf) {
        buf.truncate(before);
        return Err(super::layer::io_err_file(f, e));
    }
    close_source(f, r)
}
