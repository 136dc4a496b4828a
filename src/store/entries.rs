//! The file list of a bundle (mlart.json's `files`), held on disk past a few MiB: written
//! once, in path order, by a bundle being built (`build::bundle`) or by a metadata document
//! being read (`store::metadata`), and read back as often as needed (mlart.json, the
//! signature's statement, the attestations, a pull). Its memory does not grow with the file
//! count: a temp file of `$TMPDIR` (unlinked at once: nothing is left behind, even on a
//! crash) once it passes `SPILL` bytes.

use crate::error::{Error, Result};
use crate::format::metadata::{FileEntry, Kind};
use std::io;
use std::sync::Arc;

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

pub(crate) fn io_err(e: io::Error) -> Error {
    Error::Io {
        context: "keeping the bundle's file list in a temp file of $TMPDIR (set TMPDIR to a folder with room)".into(),
        source: e,
    }
}

pub(crate) fn internal(what: String) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("building the metadata: {what}"),
    )
}

/// The file list of a built bundle, in path order: written once (`Writer`), read as often
/// as needed (`iter`).
pub struct Entries {
    /// The layers' digests (a record names its layer by its place here).
    layers: Vec<Arc<str>>,
    spool: crate::store::spool::Spool,
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
pub struct Writer {
    layers: Vec<Arc<str>>,
    /// The places of `layers` by digest (`push_entry`: the layers named as they come).
    index: std::collections::HashMap<Arc<str>, u32>,
    w: crate::store::spool::Writer,
    count: usize,
    last: Option<String>,
}

/// A record's kind byte: the kind's place in `Kind::ALL`, and this bit for an `archive` entry.
const ARCHIVE: u8 = 0x80;

impl Writer {
    pub fn new(layers: Vec<Arc<str>>, spill: usize) -> Writer {
        Writer {
            layers,
            index: Default::default(),
            w: crate::store::spool::Writer::new(spill),
            count: 0,
            last: None,
        }
    }

    /// The next entry of a list being read (a metadata document's `files`): its layer is
    /// named by digest, added to the layers when first seen. An input error when it is not
    /// after the last in path order or its sha256 is not one.
    pub fn push_entry(&mut self, f: &FileEntry) -> Result<()> {
        if let Some(l) = self.last.as_deref().filter(|l| *l >= f.path.as_str()) {
            return Err(Error::input(format!(
                "{:?} comes after {l:?}: the files must be sorted by path, each once",
                f.path
            )));
        }
        let mut sha = [0u8; 32];
        let hex = f.sha256.strip_prefix("sha256:").unwrap_or("");
        if hex.len() != 64 || hex::decode_to_slice(hex, &mut sha).is_err() {
            return Err(Error::input(format!(
                "{:?}: sha256 {:?} is not `sha256:` and 64 hex digits",
                f.path, f.sha256
            )));
        }
        if self.index.is_empty() && !self.layers.is_empty() {
            for (i, l) in self.layers.iter().enumerate() {
                self.index.entry(l.clone()).or_insert(i as u32);
            }
        }
        let layer = match self.index.get(&f.layer) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.layers.len())
                    .map_err(|_| Error::input("more than 2^32 layers".to_string()))?;
                self.layers.push(f.layer.clone());
                self.index.insert(f.layer.clone(), i);
                i
            }
        };
        self.put(&f.path, f.kind, f.archive, f.size, &sha, layer)
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
        self.put(path, kind, false, size, sha256, layer)
    }

    fn put(
        &mut self,
        path: &str,
        kind: Kind,
        archive: bool,
        size: u64,
        sha256: &[u8; 32],
        layer: u32,
    ) -> Result<()> {
        if layer as usize >= self.layers.len() {
            return Err(internal(format!(
                "{path} is in layer {layer} of {}",
                self.layers.len()
            )));
        }
        let len = u32::try_from(path.len())
            .map_err(|_| internal(format!("a path of {} bytes", path.len())))?;
        let mut k = Kind::ALL.iter().position(|&x| x == kind).expect("a kind") as u8;
        if archive {
            k |= ARCHIVE;
        }
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

    /// An entry list made from `files` (sorted by path), in memory: another tool's manifest
    /// made into a metadata document (`format::dialect`), tests. An input error as
    /// `Writer::push_entry`'s.
    pub fn of(files: &[FileEntry]) -> Result<Entries> {
        let mut w = Writer::new(Vec::new(), usize::MAX);
        for f in files {
            w.push_entry(f)?;
        }
        w.finish()
    }

    /// The whole document with its list in memory (for what compares or indexes all of it:
    /// `gate` and `diff` between two bundles).
    pub fn in_memory(
        m: crate::format::metadata::Metadata<Entries>,
    ) -> Result<crate::format::metadata::Metadata> {
        let files = m.files.to_vec()?;
        Ok(m.with_files(files))
    }

    /// The document with this list (made from its list in memory).
    pub fn listed(
        m: crate::format::metadata::Metadata,
    ) -> Result<crate::format::metadata::Metadata<Entries>> {
        let files = Entries::of(&m.files)?;
        Ok(m.with_files(files))
    }
}

/// Reads an `Entries` in order.
pub struct Iter<'a> {
    e: &'a Entries,
    r: crate::store::spool::Reader<'a>,
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
        let archive = r[0] & ARCHIVE != 0;
        let kind = *Kind::ALL
            .get((r[0] & !ARCHIVE) as usize)
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
            archive,
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

/// Bytes a metadata document may hold outside its `files`, and in any one of them: the reader
/// of a document (`store::metadata`) counts what it reads since the last `budget::reset`,
/// which the list's reader calls at each file. A document of a million files is read in
/// bounded memory; one whose name or any string is 1 GB is refused.
pub(crate) mod budget {
    use std::cell::Cell;
    use std::io::{self, Read};

    thread_local!(static SINCE: Cell<u64> = const { Cell::new(0) });

    pub fn reset() {
        SINCE.with(|s| s.set(0));
    }

    /// Reads `r`, failing (`InvalidData`) once more than `limit` bytes come between resets.
    pub struct Budget<R> {
        pub r: R,
        pub limit: u64,
    }

    impl<R: Read> Read for Budget<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.r.read(buf)?;
            let since = SINCE.with(|s| {
                let v = s.get() + n as u64;
                s.set(v);
                v
            });
            if since > self.limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("more than {} bytes in one field", self.limit),
                ));
            }
            Ok(n)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Entries, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of files")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Entries, A::Error> {
                use serde::de::Error as _;
                let mut w = Writer::new(Vec::new(), memory_limit().unwrap_or(SPILL));
                budget::reset();
                while let Some(f) = seq.next_element::<FileEntry>()? {
                    w.push_entry(&f)
                        .map_err(|e| A::Error::custom(format!("files[{}]: {e}", w.count)))?;
                    budget::reset();
                }
                w.finish().map_err(A::Error::custom)
            }
        }
        d.deserialize_seq(V)
    }
}

impl serde::Serialize for Entries {
    /// As the list it holds (an entry that cannot be read back fails the serializer).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for e in self.iter() {
            seq.serialize_element(&e.map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

#[cfg(test)]
#[path = "entries_tests.rs"]
pub(crate) mod tests;
