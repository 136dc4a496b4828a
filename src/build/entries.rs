//! The files of a bundle being built, held on disk past a few MiB: a bundle's memory does not
//! grow with its file count here.
//!
//! - `Table`: what reading each file produced (its sha256, size and layer), at its place in
//!   the bundle's file list. The layers fill it on all threads, each file as it is read; it
//!   is read back once, in order, when the list is complete.
//! - `Entries`: the finished list (mlart.json's `files`, in path order), written once and
//!   read as often as needed: mlart.json, the signature's statement, the attestations.
//!
//! Both are temp files of `$TMPDIR` (unlinked at once: nothing is left behind, even on a
//! crash) once they pass `SPILL` bytes, and memory below it (past it, what stays in memory is
//! a bit a file, and a few runs of records waiting to be written).

use crate::error::{Error, Result};
use crate::format::metadata::{FileEntry, Kind};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Lists up to this many bytes stay in memory (a `Table` of about 40,000 files, `Entries` of
/// about 25,000).
pub const SPILL: usize = 2 << 20;

/// The limit of a list in memory: `MLART_LIST_MEMORY` (a size: `0`, `512K`, `16M`; 0 keeps
/// every list on disk, for machines short of memory and for tests of the disk side), else
/// `SPILL`.
pub fn memory_limit() -> Result<usize> {
    match std::env::var("MLART_LIST_MEMORY") {
        Ok(v) if !v.trim().is_empty() => crate::format::units::parse_size(&v)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map_err(|e| Error::input(format!("MLART_LIST_MEMORY: {e}"))),
        _ => Ok(SPILL),
    }
}

/// (filled, pad, layer u32, size u64, sha256)
const RECORD: usize = 48;

fn io_err(e: io::Error) -> Error {
    Error::Io {
        context: "keeping the bundle's file list in a temp file of $TMPDIR (set TMPDIR to a folder with room)".into(),
        source: e,
    }
}

fn internal(what: String) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("building the metadata: {what}"),
    )
}

enum Store {
    Memory(Vec<u8>),
    /// The file, the files put so far (one bit each: the check for a file put twice), and the
    /// records not yet written: a run of consecutive files per layer being built, written in
    /// one call when it ends (a layer's files are mostly next to each other in the list).
    Disk {
        file: File,
        put: Vec<u64>,
        runs: Vec<Run>,
    },
}

/// Records of files `start..` of one layer, not yet written.
struct Run {
    layer: u32,
    start: usize,
    bytes: Vec<u8>,
}

/// A run is written when it reaches this size, or ends.
const RUN: usize = 64 << 10;
/// Runs kept at most (a layer that ended leaves its last one: the oldest is written first).
const RUNS: usize = 8;

/// One record per file of the bundle, by its place in the list.
pub(super) struct Table {
    store: Mutex<Store>,
    n: usize,
}

/// A file's record in a `Table`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Read {
    /// The layer (its place in the plan) that holds the file.
    pub layer: u32,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl Table {
    /// A table of `n` empty records, on disk when it would pass `spill` bytes.
    pub fn new(n: usize, spill: usize) -> Result<Table> {
        let bytes = n
            .checked_mul(RECORD)
            .ok_or_else(|| internal(format!("{n} files")))?;
        let store = if bytes <= spill {
            Store::Memory(vec![0; bytes])
        } else {
            let file = tempfile::tempfile().map_err(io_err)?;
            // (sparse: the pages appear as they are written)
            file.set_len(bytes as u64).map_err(io_err)?;
            Store::Disk {
                file,
                put: vec![0; n.div_ceil(64)],
                runs: Vec::new(),
            }
        };
        Ok(Table {
            store: Mutex::new(store),
            n,
        })
    }

    /// Record file `i`. Each file is put once (a second put is an error: a file in two layers).
    pub fn put(&self, i: usize, r: &Read) -> Result<()> {
        if i >= self.n {
            return Err(internal(format!("file {i} of {}", self.n)));
        }
        let mut rec = [0u8; RECORD];
        rec[0] = 1;
        rec[4..8].copy_from_slice(&r.layer.to_le_bytes());
        rec[8..16].copy_from_slice(&r.size.to_le_bytes());
        rec[16..48].copy_from_slice(&r.sha256);
        let twice = || internal(format!("file {i} is in two layers"));
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *store {
            Store::Memory(m) => {
                let at = i * RECORD;
                if m[at] != 0 {
                    return Err(twice());
                }
                m[at..at + RECORD].copy_from_slice(&rec);
            }
            Store::Disk { file, put, runs } => {
                let (word, bit) = (i / 64, 1u64 << (i % 64));
                if put[word] & bit != 0 {
                    return Err(twice());
                }
                put[word] |= bit;
                let mine = runs.iter().position(|x| x.layer == r.layer);
                let ended = match mine {
                    Some(k) if runs[k].start + runs[k].bytes.len() / RECORD == i => {
                        runs[k].bytes.extend_from_slice(&rec);
                        (runs[k].bytes.len() >= RUN).then_some(k)
                    }
                    Some(k) => {
                        write_run(file, &runs[k])?;
                        runs[k].start = i;
                        runs[k].bytes.clear();
                        runs[k].bytes.extend_from_slice(&rec);
                        None
                    }
                    None => {
                        if runs.len() >= RUNS {
                            write_run(file, &runs.remove(0))?;
                        }
                        let mut bytes = Vec::with_capacity(RUN);
                        bytes.extend_from_slice(&rec);
                        runs.push(Run {
                            layer: r.layer,
                            start: i,
                            bytes,
                        });
                        None
                    }
                };
                if let Some(k) = ended {
                    write_run(file, &runs[k])?;
                    runs[k].start = i + 1;
                    runs[k].bytes.clear();
                }
            }
        }
        Ok(())
    }

    /// Every record in order, to `each(i, record)`; a file never put is an error.
    pub fn read_all(&self, each: &mut dyn FnMut(usize, Read) -> Result<()>) -> Result<()> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Store::Disk { file, runs, .. } = &mut *store {
            for r in runs.drain(..) {
                write_run(file, &r)?;
            }
        }
        let mut buf = vec![0u8; (256 << 10) / RECORD * RECORD];
        let mut i = 0;
        while i < self.n {
            let count = (self.n - i).min(buf.len() / RECORD);
            let chunk = &mut buf[..count * RECORD];
            match &*store {
                Store::Memory(m) => chunk.copy_from_slice(&m[i * RECORD..(i + count) * RECORD]),
                Store::Disk { file, .. } => file
                    .read_exact_at(chunk, (i * RECORD) as u64)
                    .map_err(io_err)?,
            }
            for rec in chunk.chunks_exact(RECORD) {
                if rec[0] != 1 {
                    return Err(internal(format!("file {i} is in no layer")));
                }
                let mut sha256 = [0u8; 32];
                sha256.copy_from_slice(&rec[16..48]);
                each(
                    i,
                    Read {
                        layer: u32::from_le_bytes(rec[4..8].try_into().expect("4 bytes")),
                        size: u64::from_le_bytes(rec[8..16].try_into().expect("8 bytes")),
                        sha256,
                    },
                )?;
                i += 1;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn on_disk(&self) -> bool {
        matches!(
            *self.store.lock().unwrap_or_else(|e| e.into_inner()),
            Store::Disk { .. }
        )
    }
}

fn write_run(file: &File, r: &Run) -> Result<()> {
    file.write_all_at(&r.bytes, (r.start * RECORD) as u64)
        .map_err(io_err)
}

/// The file list of a built bundle, in path order: written once (`Writer`), read as often
/// as needed (`iter`).
pub struct Entries {
    /// The layers' digests (a record names its layer by its place here).
    layers: Vec<Arc<str>>,
    spool: crate::build::spool::Spool,
    count: usize,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("count", &self.count)
            .field("on_disk", &self.spool.on_disk())
            .finish()
    }
}

/// Writes an `Entries`, in order.
pub(super) struct Writer {
    layers: Vec<Arc<str>>,
    w: crate::build::spool::Writer,
    count: usize,
    last: Option<String>,
}

impl Writer {
    pub fn new(layers: Vec<Arc<str>>, spill: usize) -> Writer {
        Writer {
            layers,
            w: crate::build::spool::Writer::new(spill),
            count: 0,
            last: None,
        }
    }

    /// The next file (after the last in path order), in layer `layer` (its place in `new`'s).
    pub fn push(
        &mut self,
        path: &str,
        kind: Kind,
        size: u64,
        sha256: &[u8; 32],
        layer: u32,
    ) -> Result<()> {
        if self.last.as_deref().is_some_and(|l| l >= path) {
            return Err(internal(format!("{path} out of order")));
        }
        if layer as usize >= self.layers.len() {
            return Err(internal(format!(
                "{path} is in layer {layer} of {}",
                self.layers.len()
            )));
        }
        let len = u32::try_from(path.len())
            .map_err(|_| internal(format!("a path of {} bytes", path.len())))?;
        let k = Kind::ALL.iter().position(|&x| x == kind).expect("a kind") as u8;
        self.w
            .record(|w| {
                w.write_all(&len.to_le_bytes())?;
                w.write_all(path.as_bytes())?;
                w.write_all(&[k])?;
                w.write_all(&size.to_le_bytes())?;
                w.write_all(sha256)?;
                w.write_all(&layer.to_le_bytes())
            })
            .map_err(io_err)?;
        self.count += 1;
        match &mut self.last {
            Some(l) => {
                l.clear();
                l.push_str(path);
            }
            None => self.last = Some(path.to_string()),
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Entries> {
        Ok(Entries {
            layers: self.layers,
            spool: self.w.finish().map_err(io_err)?,
            count: self.count,
        })
    }
}

impl Entries {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The entries, in path order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            e: self,
            r: self.spool.reader(),
            left: self.count,
        }
    }

    /// All of them in memory (for what needs the whole list at once: the attestations).
    pub fn to_vec(&self) -> Result<Vec<FileEntry>> {
        self.iter().collect()
    }

    /// An entry list made from `files` (sorted by path), in memory.
    #[cfg(test)]
    pub fn of(files: &[FileEntry]) -> Result<Entries> {
        let mut layers: Vec<Arc<str>> = Vec::new();
        for f in files {
            if !layers.contains(&f.layer) {
                layers.push(f.layer.clone());
            }
        }
        let mut w = Writer::new(layers.clone(), usize::MAX);
        for f in files {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(f.sha256.trim_start_matches("sha256:"), &mut sha)
                .map_err(|e| Error::input(format!("{}: sha256 {:?}: {e}", f.path, f.sha256)))?;
            let l = layers.iter().position(|l| *l == f.layer).expect("listed") as u32;
            w.push(&f.path, f.kind, f.size, &sha, l)?;
        }
        w.finish()
    }
}

/// Reads an `Entries` in order.
pub struct Iter<'a> {
    e: &'a Entries,
    r: crate::build::spool::Reader<'a>,
    left: usize,
}

impl Iter<'_> {
    /// At least `n` bytes not yet decoded (or an error: the list is shorter than its records).
    fn fill(&mut self, n: usize) -> Result<&[u8]> {
        self.r.fill(n).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                internal("the file list ends early".into())
            } else {
                io_err(e)
            }
        })
    }

    fn next_entry(&mut self) -> Result<FileEntry> {
        let len = u32::from_le_bytes(self.fill(4)?.try_into().expect("4 bytes")) as usize;
        let n = 4 + len + 1 + 8 + 32 + 4;
        let rec = self.fill(n)?;
        let path = std::str::from_utf8(&rec[4..4 + len])
            .map_err(|_| internal("a path that is not UTF-8 in the file list".into()))?
            .to_string();
        let r = &rec[4 + len..];
        let kind = *Kind::ALL
            .get(r[0] as usize)
            .ok_or_else(|| internal("a kind that is none in the file list".into()))?;
        let size = u64::from_le_bytes(r[1..9].try_into().expect("8 bytes"));
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&r[9..41]);
        let layer = u32::from_le_bytes(r[41..45].try_into().expect("4 bytes")) as usize;
        let layer = self
            .e
            .layers
            .get(layer)
            .ok_or_else(|| internal("a layer that is none in the file list".into()))?
            .clone();
        self.r.take(n);
        Ok(FileEntry {
            archive: false,
            kind,
            layer,
            path,
            sha256: crate::format::digest::Digest::from_sha256(sha).into_string(),
            size,
        })
    }
}

impl Iterator for Iter<'_> {
    type Item = Result<FileEntry>;

    fn next(&mut self) -> Option<Result<FileEntry>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_entry();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// mlart.json's `files`, serialized from an `Entries` as they are read. A read error stops
/// the document and is kept in `failed` for the caller.
pub(super) struct Streamed<'a> {
    pub entries: &'a Entries,
    pub failed: Mutex<Option<Error>>,
}

impl serde::Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.entries.len()))?;
        for e in self.entries.iter() {
            match e {
                Ok(e) => seq.serialize_element(&e)?,
                Err(e) => {
                    let msg = e.to_string();
                    *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return Err(S::Error::custom(msg));
                }
            }
        }
        seq.end()
    }
}

#[cfg(test)]
#[path = "entries_tests.rs"]
mod tests;
