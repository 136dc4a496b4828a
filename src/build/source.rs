//! Reading one source file exactly once: hashed as it is read (inline, or on a second thread
//! for big files), counted against its listed size, reported to the progress callback,
//! captured when small, stopped by the cancel token.

use super::layer::{FileDigest, CAPTURE_LIMIT, READ_BUF};
use crate::build::collect::SourceFile;
use crate::error::{Error, IoContext, Result};
use crate::interrupt::Cancel;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, BufReader, Read};

/// Files at least this large are hashed on a second thread while the layer's own hash (and
/// the write) go on in this one: on two cores, a big model's two sha256 passes (the file's, for
/// the metadata, and the tar stream's, for the layer) run side by side.
pub(super) const THREADED_HASH_MIN: u64 = 8 << 20;

pub(super) const HASH_CHUNK: usize = 1 << 20;

/// The sha256 of a source file: inline, or on its own thread (bytes sent in 1 MiB chunks,
/// at most 4 in flight).
pub(super) enum FileHasher {
    Inline(Sha256),
    Thread {
        buf: Vec<u8>,
        tx: std::sync::mpsc::SyncSender<Vec<u8>>,
        handle: std::thread::JoinHandle<Sha256>,
    },
}

impl FileHasher {
    fn new(size: u64) -> Self {
        if size < THREADED_HASH_MIN || crate::offload::cores() < 2 {
            return FileHasher::Inline(Sha256::new());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let handle = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for chunk in rx {
                h.update(&chunk);
            }
            h
        });
        FileHasher::Thread {
            buf: Vec::with_capacity(HASH_CHUNK),
            tx,
            handle,
        }
    }

    fn update(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            FileHasher::Inline(h) => h.update(data),
            FileHasher::Thread { buf, tx, .. } => {
                buf.extend_from_slice(data);
                if buf.len() >= HASH_CHUNK {
                    let full = std::mem::replace(buf, Vec::with_capacity(HASH_CHUNK));
                    tx.send(full)
                        .map_err(|_| io::Error::other("the hashing thread stopped"))?;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<[u8; 32]> {
        match self {
            FileHasher::Inline(h) => Ok(h.finalize().into()),
            FileHasher::Thread { buf, tx, handle } => {
                if !buf.is_empty() {
                    tx.send(buf)
                        .map_err(|_| io::Error::other("the hashing thread stopped"))?;
                }
                drop(tx);
                let h = handle
                    .join()
                    .map_err(|_| io::Error::other("the hashing thread failed"))?;
                Ok(h.finalize().into())
            }
        }
    }
}

/// Reads a source file exactly once: hashes it, counts it against its expected size (a file
/// that shrinks or grows while it is bundled is an error), reports progress, and can keep a
/// copy of small files.
pub(super) struct SourceReader<'a> {
    inner: BufReader<File>,
    hasher: FileHasher,
    remaining: u64,
    capture: Option<Vec<u8>>,
    progress: &'a dyn Fn(u64),
    cancel: &'a Cancel,
}

impl Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        self.cancel.check()?;
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while it was bundled ({} bytes missing)",
                    self.remaining
                ),
            ));
        }
        self.hasher.update(&buf[..n])?;
        if let Some(c) = &mut self.capture {
            c.extend_from_slice(&buf[..n]);
        }
        self.remaining -= n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}

pub(super) fn open_source<'a>(
    f: &SourceFile,
    capture: bool,
    progress: &'a dyn Fn(u64),
    cancel: &'a Cancel,
) -> Result<SourceReader<'a>> {
    open_source_with(f, capture, progress, cancel, Direct::No)
}

/// How the reader of a source file is used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Direct {
    /// Small reads through its buffer; big files hashed on a thread of their own.
    No,
    /// Big reads straight into the caller's buffers (they bypass a small read buffer); the
    /// file hashed on this thread, while the bytes are in its cache.
    HashHere,
}

pub(super) fn open_source_with<'a>(
    f: &SourceFile,
    capture: bool,
    progress: &'a dyn Fn(u64),
    cancel: &'a Cancel,
    direct: Direct,
) -> Result<SourceReader<'a>> {
    let abs = f.abs();
    let file = File::open(&abs).map_err(|e| super::unreadable::open_error(f, e))?;
    let cap = if direct == Direct::No {
        READ_BUF
    } else {
        64 << 10
    };
    Ok(SourceReader {
        inner: BufReader::with_capacity(cap.min(f.size.max(4096) as usize), file),
        hasher: match direct {
            Direct::No => FileHasher::new(f.size),
            Direct::HashHere => FileHasher::Inline(Sha256::new()),
        },
        remaining: f.size,
        capture: (capture && f.size <= CAPTURE_LIMIT).then(|| Vec::with_capacity(f.size as usize)),
        progress,
        cancel,
    })
}

/// A file must end where its size said it would.
pub(super) fn check_end(f: &SourceFile, r: &mut SourceReader<'_>) -> Result<()> {
    let mut probe = [0u8; 1];
    if r.inner.read(&mut probe).ctx_with("reading", || f.abs())? != 0 {
        return Err(grew(f));
    }
    Ok(())
}

/// The error for a file that grew while it was read.
pub(super) fn grew(f: &SourceFile) -> Error {
    Error::Io {
        context: format!("reading {}", f.abs().display()),
        source: io::Error::other(
            "the file grew while it was bundled: bundle again once it is written",
        ),
    }
}

/// `at`: the file's place in its layer's files (`FileDigest::at`).
pub(super) fn close_source(
    f: &SourceFile,
    at: usize,
    mut r: SourceReader<'_>,
) -> Result<FileDigest> {
    check_end(f, &mut r)?;
    Ok(FileDigest {
        at,
        sha256: r.hasher.finish().ctx_with("hashing", || f.abs())?,
        size: f.size,
        captured: r.capture,
    })
}
