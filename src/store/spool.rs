//! Bytes written once, in order, and read back in order as often as needed: memory up to a
//! limit, an unlinked temp file of `$TMPDIR` past it (nothing is left behind, even on a
//! crash). The file lists of a bundle being built live in spools (`entries::Entries`,
//! `filelist::FileList`): their memory does not grow with the file count.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// The bytes written.
#[derive(Default)]
pub struct Spool {
    memory: Vec<u8>,
    /// Past the limit: every byte is here instead, this many (tests damage it).
    pub(crate) disk: Option<(File, u64)>,
}

impl Spool {
    pub fn on_disk(&self) -> bool {
        self.disk.is_some()
    }

    /// Reads the bytes from the start.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            s: self,
            buf: Vec::new(),
            at: 0,
            pos: 0,
        }
    }
}

/// Writes a spool.
pub struct Writer {
    s: Spool,
    spill: usize,
    out: Option<io::BufWriter<File>>,
}

impl Writer {
    /// Up to `spill` bytes stay in memory.
    pub fn new(spill: usize) -> Writer {
        Writer {
            s: Spool::default(),
            spill,
            out: None,
        }
    }

    /// Write one record (`put` writes it whole: a record never straddles memory and disk).
    pub fn record(&mut self, put: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        match &mut self.out {
            Some(out) => put(out),
            None => {
                put(&mut self.s.memory)?;
                if self.s.memory.len() > self.spill {
                    let mut out = io::BufWriter::with_capacity(64 << 10, tempfile::tempfile()?);
                    out.write_all(&self.s.memory)?;
                    self.s.memory = Vec::new();
                    self.out = Some(out);
                }
                Ok(())
            }
        }
    }

    pub fn finish(mut self) -> io::Result<Spool> {
        if let Some(out) = self.out.take() {
            let f = out.into_inner().map_err(|e| e.into_error())?;
            let len = f.metadata()?.len();
            self.s.disk = Some((f, len));
        }
        Ok(self.s)
    }
}

/// Reads a spool in order.
pub struct Reader<'a> {
    s: &'a Spool,
    /// Bytes read from disk and not yet taken: `buf[at..]`.
    buf: Vec<u8>,
    at: usize,
    /// Where the next read from disk starts (or, in memory, nothing).
    pos: u64,
}

impl Reader<'_> {
    /// The next `n` bytes, without taking them (`take` does): an `UnexpectedEof` error when
    /// fewer are left.
    pub fn fill(&mut self, n: usize) -> io::Result<&[u8]> {
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "the list ends early");
        let Some((f, len)) = &self.s.disk else {
            let m = &self.s.memory;
            if m.len() - self.at < n {
                return Err(short());
            }
            return Ok(&m[self.at..self.at + n]);
        };
        if self.buf.len() - self.at < n {
            self.buf.drain(..self.at);
            self.at = 0;
            // (at least 64 KiB at a time, at most what the file has left)
            let have = self.buf.len();
            let more = n.max(64 << 10).saturating_sub(have);
            let more = more.min((*len - self.pos) as usize);
            self.buf.resize(have + more, 0);
            f.read_exact_at(&mut self.buf[have..], self.pos)?;
            self.pos += more as u64;
            if self.buf.len() < n {
                return Err(short());
            }
        }
        Ok(&self.buf[self.at..self.at + n])
    }

    /// Move past `n` bytes (filled before).
    pub fn take(&mut self, n: usize) {
        self.at += n;
    }
}
