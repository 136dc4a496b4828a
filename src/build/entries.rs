//! The files of a bundle being built, held on disk past a few MiB: a bundle's memory does not
//! grow with its file count here.
//!
//! - `Table`: what reading each file produced (its sha256, size and layer), at its place in
//!   the bundle's file list. The layers fill it on all threads, each file as it is read; it
//!   is read back once, in order, when the list is complete.
//! - `Streamed`: mlart.json's `files` serialized from the finished list
//!   (`store::entries::Entries`) as they are read.
//!
//! The table is a temp file of `$TMPDIR` (unlinked at once: nothing is left behind, even on a
//! crash) once it passes `SPILL` bytes, and memory below it (past it, what stays in memory is
//! a bit a file, and a few runs of records waiting to be written).

use crate::error::{Error, Result};
use crate::store::entries::{internal, io_err, Entries};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// (filled, pad, layer u32, size u64, sha256)
const RECORD: usize = 48;

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
