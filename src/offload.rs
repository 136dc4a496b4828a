//! Hash-and-write on a second thread.
//!
//! On a two-core machine a big model costs two sha256 passes (the file's and the layer's, or
//! the blob's and the file's on pull) plus the kernel's copy of every byte on write. Doing
//! them all on the thread that reads leaves a core idle. `HashOffload` is a writer that hands
//! 256 KiB chunks to a scoped worker thread, which hashes each chunk (`hash_write`; or not,
//! `write_behind`, when the caller hashes) and writes it to the inner writer. `copy_from`
//! reads a file straight into the chunks, so the reading thread can hash the bytes while they
//! are in its cache and never copies them. Chunks come from a pool of `POOL`, recycled, so
//! memory stays a few MiB whatever the size.
//!
//! For files that must be durable (`pull`'s output), the worker also starts the kernel's
//! writeback of each 8 MiB it wrote (`sync_file_range`), and a flusher thread `fdatasync`s
//! the file after every 64 MiB, so the disk (and a VM host's cache behind it) works while the
//! bytes still arrive and the final `fsync` finds little left to do: on this project's VM the
//! tail after 1 GiB went from ~1 s (writeback started, never flushed) to ~0.1 s.
//! After each flush the flusher drops the flushed part of the file from the page cache
//! (`POSIX_FADV_DONTNEED`): a pull of a 10 GiB model keeps ~64 MiB of it cached instead of
//! evicting 10 GiB of what the machine had cached, and the kernel writes the rest of the file
//! into the pages it just freed, not into memory it must claim anew (on a VM that hands freed
//! memory back to its host, that claim cost ~1.5 s of system time per GiB here).

use crate::format::digest::{Digest, HashWriter};
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Below this many bytes (expected), hashing inline is cheaper than a thread.
pub const OFFLOAD_MIN: u64 = 8 << 20;
/// Chunks small enough to stay in a core's L2 cache between the read that fills one and the
/// hash that follows (bigger ones made `read` twice as costly here: memory, not CPU, bound).
const CHUNK: usize = 256 << 10;
const IN_FLIGHT: usize = 8;
const POOL: usize = IN_FLIGHT + 2;

/// A chunk: `CHUNK` bytes at `region(&v)..`, placed half a page away from page alignment.
/// Reads from the page cache come from page-aligned memory; into a buffer 16 bytes past a page
/// boundary (what malloc gives) every store lands just ahead of the loads of the same 4 KiB
/// alias and the kernel's copy ran at half speed here (perf: `_copy_to_iter` 35% vs 8%).
fn new_chunk() -> Vec<u8> {
    vec![0; CHUNK + 4096]
}

/// Where a chunk's data starts: at 2048 modulo 4096 in memory.
pub(crate) fn region(v: &[u8]) -> usize {
    (2048 + 4096 - (v.as_ptr() as usize % 4096)) % 4096
}

/// With writeback: start it for every this many bytes written.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// With writeback: flush the file to the device (`fdatasync`, on a flusher thread) every this
/// many bytes. A VM's disk often has a volatile cache that only a flush empties; flushing
/// as the file grows spreads that work over the download instead of leaving it all for the end.
const FLUSH_EVERY: u64 = 64 << 20;

/// What the worker does after writing a chunk (besides hashing it).
pub trait AfterWrite<W>: Send {
    /// `total` bytes have been written so far; `len` of them by the last chunk.
    fn wrote(&mut self, w: &mut W, total: u64, len: usize) -> io::Result<()>;
    /// After the last chunk: finish background work and report its error, if any.
    fn done(&mut self, _w: &mut W) -> io::Result<()> {
        Ok(())
    }
}

/// This machine's cores, read once (`available_parallelism` reads cgroup files at each call:
/// three opens per small file of a layer, when it was asked per file).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Nothing after each write.
pub struct NoKick;

impl<W> AfterWrite<W> for NoKick {
    fn wrote(&mut self, _: &mut W, _: u64, _: usize) -> io::Result<()> {
        Ok(())
    }
}

/// Start the kernel's writeback of each `WRITEBACK_EVERY` bytes written to a file, and flush
/// it to the device every `FLUSH_EVERY` bytes on a flusher thread (never waiting for it: a
/// flush asked for while one runs is merged into the next). An error of a background flush
/// is returned by the next `wrote` or by `done`: it is not lost (the kernel reports a
/// writeback error once per open file, so the caller's final `fsync` might not see it again).
pub struct Writeback {
    /// No writeback is started before this many bytes (`Writeback::starting_at`).
    quiet: u64,
    started: u64,
    flushed: u64,
    every: u64,
    flush_every: u64,
    flusher: Option<Flusher>,
}

struct Flusher {
    ask: SyncSender<()>,
    handle: std::thread::JoinHandle<()>,
    state: std::sync::Arc<std::sync::Mutex<FlushState>>,
}

#[derive(Default)]
struct FlushState {
    error: Option<io::Error>,
    flushes: u64,
    /// Bytes written when the last flush was asked for: a flush that starts covers them all.
    upto: u64,
}

impl Default for Writeback {
    fn default() -> Self {
        Writeback::every(WRITEBACK_EVERY, FLUSH_EVERY)
    }
}

impl Writeback {
    fn every(every: u64, flush_every: u64) -> Self {
        Writeback {
            quiet: 0,
            started: 0,
            flushed: 0,
            every,
            flush_every,
            flusher: None,
        }
    }

    /// As `default`, but nothing is started before `quiet` bytes: a file that stays smaller is
    /// left to the kernel's own writeback. Starting it costs the writer's thread the
    /// filesystem's block allocation (ext4's delayed allocation runs in `sync_file_range`),
    /// which only pays off against the dirty-page throttling of a big file.
    pub fn starting_at(quiet: u64) -> Self {
        let mut w = Writeback::default();
        w.quiet = quiet;
        w
    }

    /// Ask the flusher (started on first use) for a flush of the first `upto` bytes (and to
    /// drop them from the page cache once they are on the device); a clone of `f` that cannot
    /// be made only means no early flush.
    fn ask_flush(&mut self, f: &std::fs::File, upto: u64) {
        if self.flusher.is_none() {
            let Ok(file) = f.try_clone() else { return };
            let (ask, asked) = mpsc::sync_channel::<()>(1);
            let state = std::sync::Arc::new(std::sync::Mutex::new(FlushState::default()));
            let st = state.clone();
            let spawned = std::thread::Builder::new()
                .name("mlart-flush".into())
                .spawn(move || {
                    for () in asked {
                        let upto = st.lock().unwrap_or_else(|p| p.into_inner()).upto;
                        let r = file.sync_data();
                        if r.is_ok() {
                            drop_cached(&file, upto);
                        }
                        let mut st = st.lock().unwrap_or_else(|p| p.into_inner());
                        st.flushes += 1;
                        if let Err(e) = r {
                            st.error.get_or_insert(e);
                            return;
                        }
                    }
                });
            let Ok(handle) = spawned else { return };
            self.flusher = Some(Flusher { ask, handle, state });
        }
        if let Some(fl) = &self.flusher {
            fl.state.lock().unwrap_or_else(|p| p.into_inner()).upto = upto;
            let _ = fl.ask.try_send(()); // full: the flush already asked for covers `upto` too
        }
    }

    /// The first error of a background flush, taken (reported once, by us).
    fn flush_error(&self) -> Option<io::Error> {
        let fl = self.flusher.as_ref()?;
        let mut st = fl.state.lock().unwrap_or_else(|p| p.into_inner());
        st.error.take()
    }

    /// Stop the flusher after the flush it is doing; return its error, if any.
    fn stop(&mut self) -> io::Result<u64> {
        let Some(Flusher { ask, handle, state }) = self.flusher.take() else {
            return Ok(0);
        };
        drop(ask);
        let _ = handle.join();
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        match st.error.take() {
            Some(e) => Err(e),
            None => Ok(st.flushes),
        }
    }
}

impl Drop for Writeback {
    /// On an error path the flusher is still stopped (no thread left holding the file).
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl AfterWrite<std::fs::File> for Writeback {
    fn wrote(&mut self, f: &mut std::fs::File, total: u64, _: usize) -> io::Result<()> {
        if total < self.quiet {
            return Ok(());
        }
        if total - self.started >= self.every {
            start_writeback(f, self.started, total - self.started);
            self.started = total;
        }
        if total - self.flushed >= self.flush_every {
            if let Some(e) = self.flush_error() {
                return Err(e);
            }
            self.ask_flush(f, total);
            self.flushed = total;
        }
        Ok(())
    }

    fn done(&mut self, _: &mut std::fs::File) -> io::Result<()> {
        self.stop().map(|_| ())
    }
}

/// Ask the kernel to start writing a range of `f` to disk, without waiting for it. Advisory:
/// a filesystem that does not support it changes nothing (the final fsync still waits).
fn start_writeback(f: &std::fs::File, off: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
        unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                off as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, off, len);
}

/// Drop the first `len` bytes of `f`, already flushed (so clean), from the page cache.
/// Advisory: where it is not supported the pages simply stay cached.
fn drop_cached(f: &std::fs::File, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
        unsafe {
            libc::posix_fadvise(
                f.as_raw_fd(),
                0,
                len as libc::off64_t,
                libc::POSIX_FADV_DONTNEED,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, len);
}

type Done<W> = io::Result<(W, Option<Sha256>, u64)>;

/// A writer that hashes and counts what goes through it, inline or on a scoped worker thread.
pub enum HashOffload<'s, W: Write + Send + 's> {
    Inline(HashWriter<W>),
    /// `used` bytes of `cur`'s region are filled; chunks are initialised once (recycled, never
    /// zeroed again), so reads can go straight into them.
    Thread {
        cur: Vec<u8>,
        used: usize,
        /// Chunks made so far: at most `POOL`, then this thread waits for one to come back
        /// (a fresh 256 KiB allocation is an mmap and 64 page faults: worse than waiting).
        made: usize,
        tx: SyncSender<(Vec<u8>, usize)>,
        back: Receiver<Vec<u8>>,
        handle: ScopedJoinHandle<'s, Done<W>>,
    },
}

impl<'s, W: Write + Send + 's> HashOffload<'s, W> {
    /// Inline when `expected` is small or there is one core; else on a thread of `scope`.
    /// `hash`: false when the caller hashes the bytes itself (`copy_from`'s `seen`): the
    /// worker only writes.
    fn spawn<'e, K: AfterWrite<W> + 's>(
        scope: &'s Scope<'s, 'e>,
        inner: W,
        expected: u64,
        mut kick: K,
        hash: bool,
    ) -> Self {
        if expected < OFFLOAD_MIN || cores() < 2 {
            return HashOffload::Inline(HashWriter::new(inner));
        }
        let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(IN_FLIGHT);
        let (back_tx, back) = mpsc::sync_channel::<Vec<u8>>(POOL);
        let handle = scope.spawn(move || -> Done<W> {
            let mut inner = inner;
            let mut h = hash.then(Sha256::new);
            let mut total = 0u64;
            for (chunk, used) in rx {
                let at = region(&chunk);
                let data = &chunk[at..at + used];
                if let Some(h) = h.as_mut() {
                    h.update(data);
                }
                inner.write_all(data)?;
                total += used as u64;
                kick.wrote(&mut inner, total, used)?;
                let _ = back_tx.send(chunk); // room for every chunk: never blocks
            }
            kick.done(&mut inner)?;
            Ok((inner, h, total))
        });
        HashOffload::Thread {
            cur: new_chunk(),
            used: 0,
            made: 1,
            tx,
            back,
            handle,
        }
    }

    /// The bytes go to a worker thread in chunks (a flush costs nothing then).
    pub fn is_threaded(&self) -> bool {
        matches!(self, HashOffload::Thread { .. })
    }

    /// Flush what is buffered, wait for the worker, and return the inner writer, the digest
    /// (None from a worker that only writes) and the byte count. A write error of the worker
    /// comes back here.
    fn finish(self) -> io::Result<(W, Option<Digest>, u64)> {
        match self {
            HashOffload::Inline(mut w) => {
                w.flush()?;
                let (w, d, n) = w.finish();
                Ok((w, Some(d), n))
            }
            HashOffload::Thread {
                cur,
                used,
                tx,
                handle,
                ..
            } => {
                let sent = used == 0 || tx.send((cur, used)).is_ok();
                drop(tx);
                let (mut inner, h, n) = join(handle)?;
                if !sent {
                    return Err(io::Error::other("the writing thread stopped"));
                }
                inner.flush()?;
                Ok((inner, h.map(Digest::from_hasher), n))
            }
        }
    }
}

fn join<W>(handle: ScopedJoinHandle<'_, Done<W>>) -> Done<W> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked")))
}

impl<'s, W: Write + Send + 's> HashOffload<'s, W> {
    /// Hand the filled chunk to the worker and take an empty one.
    fn send_chunk(
        cur: &mut Vec<u8>,
        used: &mut usize,
        made: &mut usize,
        tx: &SyncSender<(Vec<u8>, usize)>,
        back: &Receiver<Vec<u8>>,
    ) -> io::Result<()> {
        let stopped = || {
            // The worker stopped on an error: `finish` reports it.
            io::Error::other(
                "the writing thread stopped (its error follows when the write is finished)",
            )
        };
        let full = std::mem::take(cur);
        let n = std::mem::take(used);
        let next = match tx.send((full, n)) {
            Err(_) => Err(stopped()),
            Ok(()) => match back.try_recv() {
                Ok(c) => Ok(c),
                Err(_) if *made < POOL => {
                    *made += 1;
                    Ok(new_chunk())
                }
                Err(_) => back.recv().map_err(|_| stopped()),
            },
        };
        // After an error too, `cur` stays a whole chunk: a caller that writes again gets the
        // error again, never an index out of range.
        match next {
            Ok(c) => {
                *cur = c;
                Ok(())
            }
            Err(e) => {
                *cur = new_chunk();
                Err(e)
            }
        }
    }

    /// Copy exactly `n` bytes of `r` through this writer, reading them straight into the
    /// worker's chunks (no copy on this thread), and show each piece to `seen` as it is read
    /// (the caller's own hash, while the bytes are still in this core's cache; an error from
    /// `seen` stops the copy).
    pub fn copy_from(
        &mut self,
        r: &mut dyn io::Read,
        mut n: u64,
        seen: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        match self {
            HashOffload::Inline(w) => {
                let mut buf = vec![0u8; CHUNK.min(n as usize)];
                while n > 0 {
                    let want = buf.len().min(n.min(usize::MAX as u64) as usize);
                    let got = read_some(r, &mut buf[..want])?;
                    seen(&buf[..got])?;
                    w.write_all(&buf[..got])?;
                    n -= got as u64;
                }
                Ok(())
            }
            HashOffload::Thread {
                cur,
                used,
                made,
                tx,
                back,
                ..
            } => {
                while n > 0 {
                    let want = (CHUNK - *used).min(n.min(usize::MAX as u64) as usize);
                    let at = region(cur) + *used;
                    let got = read_some(r, &mut cur[at..at + want])?;
                    seen(&cur[at..at + got])?;
                    *used += got;
                    n -= got as u64;
                    if *used == CHUNK {
                        Self::send_chunk(cur, used, made, tx, back)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// One `read` that must make progress: the end of `r` before the bytes expected is an error.
fn read_some(r: &mut dyn io::Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input ended before the bytes expected",
                ))
            }
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl<'s, W: Write + Send + 's> Write for HashOffload<'s, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            HashOffload::Inline(w) => w.write(buf),
            HashOffload::Thread {
                cur,
                used,
                made,
                tx,
                back,
                ..
            } => {
                let n = buf.len().min(CHUNK - *used);
                let at = region(cur) + *used;
                cur[at..at + n].copy_from_slice(&buf[..n]);
                *used += n;
                if *used == CHUNK {
                    Self::send_chunk(cur, used, made, tx, back)?;
                }
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are flushed by `finish`: a flush in the middle would only cost a short chunk.
        match self {
            HashOffload::Inline(w) => w.flush(),
            HashOffload::Thread { .. } => Ok(()),
        }
    }
}

/// Run `f` with a writer that hashes and writes `inner` (on a worker thread when `expected`
/// is large), then return `f`'s value with the inner writer, digest and count. A worker's
/// write error wins over the caller's "the writing thread stopped".
pub fn hash_write<W, K, T, E>(
    inner: W,
    expected: u64,
    kick: K,
    f: impl FnOnce(&mut HashOffload<'_, W>) -> Result<T, E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(T, W, Digest, u64), E>
where
    W: Write + Send,
    K: AfterWrite<W>,
{
    let (t, w, d, n) = run(inner, expected, kick, true, f, io_err)?;
    Ok((t, w, d.expect("a hashing writer has a digest"), n))
}

/// As `hash_write`, for a caller that hashes the bytes itself (with `copy_from`'s `seen`,
/// while they are in its core's cache): the worker only writes.
pub fn write_behind<W, K, T, E>(
    inner: W,
    expected: u64,
    kick: K,
    f: impl FnOnce(&mut HashOffload<'_, W>) -> Result<T, E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(T, W, u64), E>
where
    W: Write + Send,
    K: AfterWrite<W>,
{
    let (t, w, _, n) = run(inner, expected, kick, false, f, io_err)?;
    Ok((t, w, n))
}

fn run<W, K, T, E>(
    inner: W,
    expected: u64,
    kick: K,
    hash: bool,
    f: impl FnOnce(&mut HashOffload<'_, W>) -> Result<T, E>,
    io_err: impl Fn(io::Error) -> E,
) -> Result<(T, W, Option<Digest>, u64), E>
where
    W: Write + Send,
    K: AfterWrite<W>,
{
    std::thread::scope(|s| {
        let mut w = HashOffload::spawn(s, inner, expected, kick, hash);
        let r = f(&mut w);
        let fin = w.finish();
        match (r, fin) {
            (Ok(t), Ok((inner, d, n))) => Ok((t, inner, d, n)),
            (_, Err(e)) => Err(io_err(e)),
            (Err(e), Ok(_)) => Err(e),
        }
    })
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
