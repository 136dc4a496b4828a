//! `collect`'s external sort: the files its walks find, as compact records, sorted by path in
//! runs of at most `spill` bytes of memory that go to unlinked temp files, then merged into one
//! stream in path order. What a million files cost in memory is then `spill`, a few read
//! buffers and a heap of one record per run, not a list of a million paths.
//!
//! A record is its path (length-prefixed bytes), its spec entry's index (kind and entry follow
//! from it), whether a walk found it (else the spec lists it) and the metadata the walk read,
//! if any: lengths as LEB128 varints, a flag byte. Runs are written and read back by this
//! process only, but a short or damaged temp file (a full disk, a bug) must be an internal
//! error, not a panic nor a wrong list: every length is bounded, the flags checked, each run
//! holds the count written, and the merged stream is checked to be in order.

use super::folder::Stat;
use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

/// A file found for one spec entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Record {
    pub rel: String,
    /// The entry's index in spec order (sections in order, then their entries).
    pub entry: u32,
    /// Found by a directory or glob walk (else listed by the spec).
    pub walked: bool,
    /// Read by the walk (through symlinks), when it was.
    pub meta: Option<Stat>,
}

const WALKED: u8 = 1;
const META: u8 = 2;
const IS_FILE: u8 = 4;
const EXECUTABLE: u8 = 8;
/// Longer than any path a filesystem hands out: a longer length is a damaged run.
const MAX_REL: u64 = 1 << 20;
/// Runs merged at once: when this many runs of one level are on disk they become one run of
/// the next level, so the final merge reads from a few dozen files at most whatever the count.
const FAN_IN: usize = 16;
/// Each run file's read (and write) buffer.
const BUFFER: usize = 64 << 10;
/// Offsets into a run in memory are `u32`s: a larger `spill` is taken as this.
const MAX_SPILL: usize = 1 << 30;

fn io_err(e: io::Error) -> Error {
    Error::Io {
        context:
            "keeping the walked paths in a temp file of $TMPDIR (set TMPDIR to a folder with room)"
                .into(),
        source: e,
    }
}

fn corrupt(what: &str) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("collecting the files: a sorted run of paths in a temp file is damaged ({what})"),
    )
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a record's bytes to `out`.
fn encode(out: &mut Vec<u8>, rel: &str, entry: u32, walked: bool, meta: Option<Stat>) {
    put_varint(out, rel.len() as u64);
    out.extend_from_slice(rel.as_bytes());
    put_varint(out, u64::from(entry));
    let mut flags = if walked { WALKED } else { 0 };
    if let Some(m) = meta {
        flags |= META;
        if m.is_file {
            flags |= IS_FILE;
        }
        if m.executable {
            flags |= EXECUTABLE;
        }
    }
    out.push(flags);
    if let Some(m) = meta {
        put_varint(out, m.len);
    }
}

fn read_byte(r: &mut impl Read) -> Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

fn read_varint(r: &mut impl Read, first: u8) -> Result<u64> {
    let (mut v, mut b, mut shift) = (0u64, first, 0u32);
    loop {
        if shift > 63 || (shift == 63 && b > 1) {
            return Err(corrupt("a number too large"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        b = read_byte(r)?.ok_or_else(|| corrupt("cut in a number"))?;
    }
}

fn next_varint(r: &mut impl Read) -> Result<u64> {
    let first = read_byte(r)?.ok_or_else(|| corrupt("cut in a record"))?;
    read_varint(r, first)
}

/// The next record of `r`, None at its end (cleanly between two records).
pub(super) fn read_record(r: &mut impl Read) -> Result<Option<Record>> {
    let Some(first) = read_byte(r)? else {
        return Ok(None);
    };
    let len = read_varint(r, first)?;
    if len > MAX_REL {
        return Err(corrupt("a path length out of bounds"));
    }
    let mut rel = vec![0u8; len as usize];
    r.read_exact(&mut rel).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("cut in a path"),
        _ => io_err(e),
    })?;
    let rel = String::from_utf8(rel).map_err(|_| corrupt("a path that is not UTF-8"))?;
    let entry = u32::try_from(next_varint(r)?).map_err(|_| corrupt("an entry out of bounds"))?;
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
    Ok(Some(Record {
        rel,
        entry,
        walked: flags & WALKED != 0,
        meta,
    }))
}

/// The order of the stream: path bytes, then spec order.
fn key(bytes: &[u8]) -> (&[u8], u32) {
    // (records made by `encode` in this process: the fallbacks are never taken)
    let mut r = bytes;
    let len = read_byte(&mut r)
        .ok()
        .flatten()
        .and_then(|b| read_varint(&mut r, b).ok())
        .unwrap_or(0) as usize;
    let rel = r.get(..len).unwrap_or_default();
    let mut rest = r.get(len..).unwrap_or_default();
    let entry = read_byte(&mut rest)
        .ok()
        .flatten()
        .and_then(|b| read_varint(&mut rest, b).ok())
        .unwrap_or(0);
    (rel, entry as u32)
}

/// Records encoded one after the other, and where each starts: a walking job's batch, and
/// the run being filled.
#[derive(Default)]
pub(super) struct Batch {
    bytes: Vec<u8>,
    starts: Vec<u32>,
}

impl Batch {
    pub fn push(&mut self, rel: &str, entry: u32, walked: bool, meta: Option<Stat>) {
        self.starts.push(self.bytes.len() as u32);
        encode(&mut self.bytes, rel, entry, walked, meta);
    }

    /// The memory it holds (about).
    pub fn size(&self) -> usize {
        self.bytes.len() + 4 * self.starts.len()
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.bytes.len(), |&e| e as usize);
        &self.bytes[start..end]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.starts.clear();
    }

    /// Sort `starts` by the records' keys: the records themselves stay where they are (each
    /// is read from its start, its end found by decoding it).
    fn sort(&mut self) {
        let bytes = &self.bytes;
        self.starts
            .sort_unstable_by(|a, b| key(&bytes[*a as usize..]).cmp(&key(&bytes[*b as usize..])));
    }
}

/// A sorted run in a temp file, and how many records it holds.
struct Run {
    level: u32,
    file: File,
    count: u64,
}

/// The runs of records found so far: the one being filled in memory, the sorted ones on disk.
pub(super) struct Runs {
    mem: Batch,
    spill: usize,
    disk: Vec<Run>,
}

impl Runs {
    /// Runs of at most about `spill` bytes of records in memory.
    pub fn new(spill: usize) -> Runs {
        Runs {
            mem: Batch::default(),
            spill: spill.min(MAX_SPILL),
            disk: Vec::new(),
        }
    }

    /// Take `batch`'s records (it is left empty), writing a sorted run to disk each time the
    /// one in memory grows past `spill`.
    pub fn add(&mut self, batch: &mut Batch) -> Result<()> {
        for i in 0..batch.starts.len() {
            let rec = batch.record(i);
            self.mem.starts.push(self.mem.bytes.len() as u32);
            self.mem.bytes.extend_from_slice(rec);
            if self.mem.size() > self.spill {
                self.spill_run()?;
            }
        }
        batch.clear();
        Ok(())
    }

    fn spill_run(&mut self) -> Result<()> {
        self.mem.sort();
        let file = tempfile::tempfile().map_err(io_err)?;
        let mut w = BufWriter::with_capacity(BUFFER, file);
        for &s in &self.mem.starts {
            w.write_all(record_at(&self.mem.bytes, s as usize)?)
                .map_err(io_err)?;
        }
        let count = self.mem.starts.len() as u64;
        self.mem.clear();
        self.disk.push(Run {
            level: 0,
            file: finish(w)?,
            count,
        });
        // (runs of one level are merged into one of the next as a counter carries: each
        // record is rewritten about log16 of the run count times)
        while self.disk.len() >= FAN_IN {
            let tail = &self.disk[self.disk.len() - FAN_IN..];
            let level = tail[0].level;
            if tail.iter().any(|r| r.level != level) {
                break;
            }
            let runs = self.disk.split_off(self.disk.len() - FAN_IN);
            let mut merged = Merged::of(runs.into_iter().map(Source::disk).collect())?;
            let file = tempfile::tempfile().map_err(io_err)?;
            let mut w = BufWriter::with_capacity(BUFFER, file);
            let (mut count, mut buf) = (0u64, Vec::new());
            while let Some(r) = merged.next()? {
                buf.clear();
                encode(&mut buf, &r.rel, r.entry, r.walked, r.meta);
                w.write_all(&buf).map_err(io_err)?;
                count += 1;
            }
            self.disk.push(Run {
                level: level + 1,
                file: finish(w)?,
                count,
            });
        }
        Ok(())
    }

    /// Every record added, in order (path bytes, then entry index).
    pub fn merged(mut self) -> Result<Merged> {
        self.mem.sort();
        let mut sources: Vec<Source> = self.disk.into_iter().map(Source::disk).collect();
        sources.push(Source::Mem {
            batch: self.mem,
            next: 0,
        });
        Merged::of(sources)
    }
}

/// The record of `bytes` starting at `at`.
fn record_at(bytes: &[u8], at: usize) -> Result<&[u8]> {
    let mut r = bytes.get(at..).unwrap_or_default();
    let before = r.len();
    read_record(&mut r)?.ok_or_else(|| corrupt("a record missing in memory"))?;
    Ok(&bytes[at..at + before - r.len()])
}

/// The run's file, written out and rewound for reading.
fn finish(w: BufWriter<File>) -> Result<File> {
    let mut file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.rewind().map_err(io_err)?;
    Ok(file)
}

enum Source {
    Mem { batch: Batch, next: usize },
    Disk { r: BufReader<File>, left: u64 },
}

impl Source {
    fn disk(run: Run) -> Source {
        Source::Disk {
            r: BufReader::with_capacity(BUFFER, run.file),
            left: run.count,
        }
    }

    fn next(&mut self) -> Result<Option<Record>> {
        match self {
            Source::Mem { batch, next } => {
                let Some(&at) = batch.starts.get(*next) else {
                    return Ok(None);
                };
                *next += 1;
                let mut r = batch.bytes.get(at as usize..).unwrap_or_default();
                read_record(&mut r)?
                    .map(Some)
                    .ok_or_else(|| corrupt("a record missing in memory"))
            }
            Source::Disk { r, left } => {
                if *left == 0 {
                    return match read_byte(r)? {
                        None => Ok(None),
                        Some(_) => Err(corrupt("more records than were written")),
                    };
                }
                *left -= 1;
                read_record(r)?
                    .map(Some)
                    .ok_or_else(|| corrupt("fewer records than were written"))
            }
        }
    }
}

/// A run's next record, in the merge's heap: the smallest key first, then the lowest run.
struct Head {
    rec: Record,
    src: usize,
}

impl Head {
    fn key(&self) -> (&[u8], u32, usize) {
        (self.rec.rel.as_bytes(), self.rec.entry, self.src)
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // (reversed: `BinaryHeap` pops its greatest)
        other.key().cmp(&self.key())
    }
}

/// The runs' records merged in order (a k-way merge through a heap of one record a run).
pub(super) struct Merged {
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
    /// The key of the last record handed out, to check the order.
    last: Option<(Vec<u8>, u32)>,
}

impl Merged {
    fn of(mut sources: Vec<Source>) -> Result<Merged> {
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (src, s) in sources.iter_mut().enumerate() {
            if let Some(rec) = s.next()? {
                heap.push(Head { rec, src });
            }
        }
        Ok(Merged {
            sources,
            heap,
            last: None,
        })
    }

    /// The next record: each record once, by path bytes then entry index.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Record>> {
        let Some(Head { rec, src }) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.sources[src].next()? {
            self.heap.push(Head { rec: next, src });
        }
        // (a damaged run can decode into records out of order; equal keys are a path that
        // one entry found twice, for `collect` to report)
        let key = (rec.rel.as_bytes(), rec.entry);
        match &mut self.last {
            Some((rel, entry)) if (rel.as_slice(), *entry) > key => {
                return Err(corrupt("records out of order"));
            }
            Some((rel, entry)) => {
                rel.clear();
                rel.extend_from_slice(key.0);
                *entry = key.1;
            }
            None => self.last = Some((key.0.to_vec(), key.1)),
        }
        Ok(Some(rec))
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
