//! An external sort: records keyed by a path (and a number), sorted in runs of at most
//! `spill` bytes of memory that go to unlinked temp files, then merged into one stream in
//! key order. What a million records cost in memory is then `spill`, a few read buffers and a
//! heap of one record per run, not a list of a million paths. `collect` sorts the files its
//! walks find with it; `verify` the files its layers hold.
//!
//! A record is its path (length-prefixed bytes), a number (`entry`: LEB128, like every
//! length) and what the caller's `Payload` writes. Runs are written and read back by this
//! process only, but a short or damaged temp file (a full disk, a bug) must be an internal
//! error, not a panic nor a wrong list: every length is bounded, the payload checked, each
//! run holds the count written, and the merged stream is checked to be in order.

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::marker::PhantomData;

/// What a record carries after its key (its path and a number): written by `encode`, read
/// back by `decode`, which must refuse damaged bytes (`corrupt`), never panic.
pub trait Payload: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(r: &mut dyn Read) -> Result<Self>;
}

/// A sha256: its 32 bytes.
impl Payload for [u8; 32] {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode(r: &mut dyn Read) -> Result<[u8; 32]> {
        let mut d = [0u8; 32];
        r.read_exact(&mut d).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => corrupt("cut in a digest"),
            _ => io_err(e),
        })?;
        Ok(d)
    }
}

/// One record: its key (path bytes, then `entry`) and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<P> {
    pub rel: String,
    /// The second part of the key: `collect`'s spec entry, a layer's place.
    pub entry: u32,
    pub data: P,
}

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
        context: "keeping a sorted list of paths in a temp file of $TMPDIR (set TMPDIR to a folder with room)".into(),
        source: e,
    }
}

/// A damaged record (an internal error: runs are written and read by this process only).
pub fn corrupt(what: &str) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("a sorted run of paths in a temp file is damaged ({what})"),
    )
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a record's bytes to `out`.
fn encode<P: Payload>(out: &mut Vec<u8>, rel: &str, entry: u32, data: &P) {
    put_varint(out, rel.len() as u64);
    out.extend_from_slice(rel.as_bytes());
    put_varint(out, u64::from(entry));
    data.encode(out);
}

pub fn read_byte<R: Read + ?Sized>(r: &mut R) -> Result<Option<u8>> {
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

pub fn read_varint<R: Read + ?Sized>(r: &mut R, first: u8) -> Result<u64> {
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

pub fn next_varint<R: Read + ?Sized>(r: &mut R) -> Result<u64> {
    let first = read_byte(r)?.ok_or_else(|| corrupt("cut in a record"))?;
    read_varint(r, first)
}

/// The next record of `r`, None at its end (cleanly between two records).
pub fn read_record<P: Payload>(r: &mut impl Read) -> Result<Option<Record<P>>> {
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
    let data = P::decode(r)?;
    Ok(Some(Record { rel, entry, data }))
}

/// The order of the stream: path bytes, then entry.
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
pub struct Batch<P> {
    bytes: Vec<u8>,
    starts: Vec<u32>,
    payload: PhantomData<P>,
}

impl<P> Default for Batch<P> {
    fn default() -> Self {
        Batch {
            bytes: Vec::new(),
            starts: Vec::new(),
            payload: PhantomData,
        }
    }
}

impl<P: Payload> Batch<P> {
    pub fn push(&mut self, rel: &str, entry: u32, data: &P) {
        self.starts.push(self.bytes.len() as u32);
        encode(&mut self.bytes, rel, entry, data);
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
pub struct Runs<P> {
    mem: Batch<P>,
    spill: usize,
    disk: Vec<Run>,
}

impl<P: Payload> Runs<P> {
    /// Runs of at most about `spill` bytes of records in memory.
    pub fn new(spill: usize) -> Runs<P> {
        Runs {
            mem: Batch::default(),
            spill: spill.min(MAX_SPILL),
            disk: Vec::new(),
        }
    }

    /// Take `batch`'s records (it is left empty), writing a sorted run to disk each time the
    /// one in memory grows past `spill`.
    pub fn add(&mut self, batch: &mut Batch<P>) -> Result<()> {
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
            w.write_all(record_at::<P>(&self.mem.bytes, s as usize)?)
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
            let mut merged: Merged<P> = Merged::of(runs.into_iter().map(Source::disk).collect())?;
            let file = tempfile::tempfile().map_err(io_err)?;
            let mut w = BufWriter::with_capacity(BUFFER, file);
            let (mut count, mut buf) = (0u64, Vec::new());
            while let Some(r) = merged.next()? {
                buf.clear();
                encode(&mut buf, &r.rel, r.entry, &r.data);
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
    pub fn merged(mut self) -> Result<Merged<P>> {
        self.mem.sort();
        let mut sources: Vec<Source<P>> = self.disk.into_iter().map(Source::disk).collect();
        sources.push(Source::Mem {
            batch: self.mem,
            next: 0,
        });
        Merged::of(sources)
    }
}

/// The record of `bytes` starting at `at`.
fn record_at<P: Payload>(bytes: &[u8], at: usize) -> Result<&[u8]> {
    let mut r = bytes.get(at..).unwrap_or_default();
    let before = r.len();
    read_record::<P>(&mut r)?.ok_or_else(|| corrupt("a record missing in memory"))?;
    Ok(&bytes[at..at + before - r.len()])
}

/// The run's file, written out and rewound for reading.
fn finish(w: BufWriter<File>) -> Result<File> {
    let mut file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.rewind().map_err(io_err)?;
    Ok(file)
}

enum Source<P> {
    Mem { batch: Batch<P>, next: usize },
    Disk { r: BufReader<File>, left: u64 },
}

impl<P: Payload> Source<P> {
    fn disk(run: Run) -> Source<P> {
        Source::Disk {
            r: BufReader::with_capacity(BUFFER, run.file),
            left: run.count,
        }
    }

    fn next(&mut self) -> Result<Option<Record<P>>> {
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
struct Head<P> {
    rec: Record<P>,
    src: usize,
}

impl<P> Head<P> {
    fn key(&self) -> (&[u8], u32, usize) {
        (self.rec.rel.as_bytes(), self.rec.entry, self.src)
    }
}

impl<P> PartialEq for Head<P> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<P> Eq for Head<P> {}
impl<P> PartialOrd for Head<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Head<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        // (reversed: `BinaryHeap` pops its greatest)
        other.key().cmp(&self.key())
    }
}

/// The runs' records merged in order (a k-way merge through a heap of one record a run).
pub struct Merged<P> {
    sources: Vec<Source<P>>,
    heap: BinaryHeap<Head<P>>,
    /// The key of the last record handed out, to check the order.
    last: Option<(Vec<u8>, u32)>,
}

impl<P: Payload> Merged<P> {
    fn of(mut sources: Vec<Source<P>>) -> Result<Merged<P>> {
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
    pub fn next(&mut self) -> Result<Option<Record<P>>> {
        let Some(Head { rec, src }) = self.heap.pop() else {
            return Ok(None);
        };
        if let Some(next) = self.sources[src].next()? {
            self.heap.push(Head { rec: next, src });
        }
        // (a damaged run can decode into records out of order; equal keys are for the
        // caller: a path that one entry found twice, for `collect` to report)
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

/// A sorted stream's next record, looked at before it is taken (the joins of `verify` and
/// `pull`, which read two or three sorted lists side by side).
pub struct Peeked<P: Payload> {
    m: Merged<P>,
    head: Option<Record<P>>,
}

impl<P: Payload> Peeked<P> {
    pub fn new(mut m: Merged<P>) -> Result<Self> {
        let head = m.next()?;
        Ok(Peeked { m, head })
    }

    /// The next record, not taken.
    pub fn peek(&self) -> Option<&Record<P>> {
        self.head.as_ref()
    }

    /// The next record if `take` says so.
    pub fn next_if(&mut self, take: impl FnOnce(&Record<P>) -> bool) -> Result<Option<Record<P>>> {
        match &self.head {
            Some(h) if take(h) => {
                let next = self.m.next()?;
                Ok(std::mem::replace(&mut self.head, next))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
#[path = "runs_tests.rs"]
mod tests;
