//! Parallel gzip that gives the same bytes whatever the number of threads.
//!
//! pigz's scheme, in one gzip member (so every gzip reader, not only multi-member ones, reads
//! it): the input is cut into fixed blocks of [`BLOCK`] bytes; each block is raw-deflated on its
//! own, primed with the 32 KiB before it as the dictionary, and ends with a sync flush (the last
//! one with the final block). The cuts depend only on the position in the stream, and each
//! block's bytes only on (dictionary, block, level), so one thread or eight write the same file.
//! Each block is deflated from one buffer, so the bytes do not depend on how the caller split
//! its writes either (flate2's streaming `GzEncoder`, used before, gave slightly different
//! bytes for the same data written in other pieces: deterministic for one program, fragile).
//!
//! Memory: at most `2 × threads` blocks in flight (input + output), a few MiB.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Fixed block size: part of the format (changing it changes digests of layers above it).
pub const BLOCK: usize = 1 << 20;
/// Deflate's window: the dictionary carried from one block to the next.
const WINDOW: usize = 32 << 10;

/// gzip header: no name, mtime 0, XFL 0 (a middle level), OS 255 ("unknown"), as flate2's
/// `GzBuilder::new().mtime(0).operating_system(255)` writes it.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

struct Job {
    level: u32,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
    done: SyncSender<io::Result<Vec<u8>>>,
}

/// A gzip compressor in front of `W` that deflates blocks on `threads` threads.
pub struct ParGzEncoder<W: Write> {
    inner: Option<W>,
    level: u32,
    buf: Vec<u8>,
    dict: Vec<u8>,
    crc: Crc,
    /// Workers' job queue; None: compress on the calling thread.
    jobs: Option<SyncSender<Job>>,
    threads: usize,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    header_written: bool,
}

/// The default number of compression threads: the machine's cores (at most 8), or
/// `MLART_THREADS`.
pub fn default_threads() -> usize {
    std::env::var("MLART_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(crate::offload::cores)
        .min(8)
}

impl<W: Write> ParGzEncoder<W> {
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let jobs = (threads > 1).then(|| {
            let (tx, rx) = sync_channel::<Job>(threads);
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..threads {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let out = deflate_block(job.level, &job.dict, &job.data, job.last);
                    let _ = job.done.send(out);
                });
            }
            tx
        });
        ParGzEncoder {
            inner: Some(inner),
            level,
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: Crc::new(),
            jobs,
            threads,
            pending: VecDeque::new(),
            header_written: false,
        }
    }

    fn out(&mut self) -> &mut W {
        self.inner.as_mut().expect("ParGzEncoder used after finish")
    }

    /// Hand the full (or last) block to a worker, or deflate it here.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        if !self.header_written {
            self.out().write_all(&HEADER)?;
            self.header_written = true;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK));
        let dict = std::mem::take(&mut self.dict);
        if !last {
            self.dict = data[data.len().saturating_sub(WINDOW)..].to_vec();
        }
        match &self.jobs {
            None => {
                let out = deflate_block(self.level, &dict, &data, last)?;
                self.out().write_all(&out)?;
            }
            Some(tx) => {
                let (done, rx) = sync_channel(1);
                tx.send(Job {
                    level: self.level,
                    dict,
                    data,
                    last,
                    done,
                })
                .map_err(|_| io::Error::other("the gzip workers stopped"))?;
                self.pending.push_back(rx);
                while self.pending.len() > self.threads {
                    self.write_next()?;
                }
            }
        }
        Ok(())
    }

    fn write_next(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let out = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip worker stopped"))??;
            self.out().write_all(&out)?;
        }
        Ok(())
    }

    /// Deflate what is left, write the trailer (CRC-32, size mod 2^32) and return `W`.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_next()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let w = self.out();
        w.write_all(&crc.to_le_bytes())?;
        w.write_all(&len.to_le_bytes())?;
        self.jobs = None; // the workers end when the queue closes
        Ok(self.inner.take().expect("finished twice"))
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        while !data.is_empty() {
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.submit(false)?;
            }
        }
        Ok(n)
    }

    /// Blocks are cut at fixed offsets only, so a flush cannot end one early (the bytes would
    /// depend on when the caller flushed): it writes what is already deflated.
    fn flush(&mut self) -> io::Result<()> {
        self.out().flush()
    }
}

/// Raw deflate of one block, primed with `dict`, ending with a sync flush (or the final block).
fn deflate_block(level: u32, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 256);
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and the output did not fill up.
            _ if !last && all_in && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a changing counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(
                format!("step {i} loss {:.5} acc {}\n", 1.0 / (i + 1) as f64, i % 97).as_bytes(),
            );
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn gz(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let mut e = ParGzEncoder::new(Vec::new(), 6, threads);
        for c in data.chunks(piece.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    fn gunzip(z: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(z).read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn same_bytes_whatever_the_threads_and_write_sizes() {
        let data = sample(3 * BLOCK + 12345);
        let one = gz(&data, 1, 1 << 16);
        for (threads, piece) in [(2, 7), (3, 1 << 20), (8, 4096)] {
            assert_eq!(gz(&data, threads, piece), one, "threads {threads}");
        }
        assert_eq!(gunzip(&one), data);
    }

    #[test]
    fn small_streams_are_one_plain_deflate() {
        for n in [0, 1, 1000, 64 << 10, BLOCK - 1, BLOCK] {
            let data = sample(n);
            let z = gz(&data, 2, 999);
            assert_eq!(z[..10], HEADER);
            assert_eq!(gunzip(&z), data);
            if n < BLOCK {
                // One block: exactly a one-pass deflate of all the data.
                let mut c = Compress::new(Compression::new(6), false);
                let mut raw = Vec::with_capacity(n + 1024);
                c.compress_vec(&data, &mut raw, FlushCompress::Finish)
                    .unwrap();
                assert_eq!(&z[10..z.len() - 8], &raw[..], "n = {n}");
            }
        }
    }

    #[test]
    fn incompressible_and_boundaries() {
        let data = crate::testutil::XorShift(1).bytes(2 * BLOCK + 1);
        for n in [BLOCK + 1, 2 * BLOCK, 2 * BLOCK + 1] {
            let z = gz(&data[..n], 2, 1 << 18);
            assert_eq!(gz(&data[..n], 1, 3), z);
            assert_eq!(gunzip(&z), &data[..n]);
        }
    }

    #[test]
    fn ratio_close_to_one_pass() {
        let data = sample(4 * BLOCK);
        let mut plain = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        plain.write_all(&data).unwrap();
        let plain = plain.finish().unwrap().len();
        let par = gz(&data, 2, 1 << 20).len();
        assert!(
            par * 100 <= plain * 102,
            "parallel {par} vs one pass {plain}"
        );
    }
}
