//! The files to bundle, in path order, held on disk past a few MiB (`spool`): from `collect`
//! to the last layer, a bundle's memory does not grow with its file count. The bundle's list
//! is read once to plan the layers (`layers::plan`), which writes each tar layer's files into
//! a list of its own; a layer then reads its list in batches. Each record keeps its file's
//! place in the bundle's list (`at`), where what reading it gave is put (`entries::Table`).

use crate::build::collect::{ModelInfo, SourceFile};
use crate::error::{Error, Result};
use crate::format::metadata::Kind;
use crate::store::spool::{Reader, Spool, Writer};
use std::io;
use std::path::Path;
use std::sync::Arc;

const EXEC: u8 = 1;
const METRICS: u8 = 2;
const FORMAT: u8 = 4;
const FRAMEWORK: u8 = 8;
const SAMPLES: u8 = 16;

fn io_err(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return internal("it ends early".into());
    }
    Error::Io {
        context: "keeping the list of files to bundle in a temp file of $TMPDIR (set TMPDIR to a folder with room)".into(),
        source: e,
    }
}

fn internal(what: String) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("the list of files to bundle: {what}"),
    )
}

/// Files in path order, each with its place in the bundle's list.
pub struct FileList {
    /// The folders the files are in (a record names its own by its place here).
    roots: Vec<Arc<Path>>,
    spool: Spool,
    count: usize,
    total: u64,
    largest: u64,
}

impl std::fmt::Debug for FileList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileList")
            .field("count", &self.count)
            .field("on_disk", &self.spool.on_disk())
            .finish()
    }
}

impl FileList {
    /// A list of `files` (in any order: sorted here, each path once), in memory, each at its
    /// place in the sorted list.
    pub fn of(mut files: Vec<SourceFile>) -> Result<FileList> {
        files.sort_by(|a, b| a.rel.cmp(&b.rel));
        let mut w = ListWriter::new(usize::MAX);
        for f in &files {
            w.push_next(f)?;
        }
        w.finish()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// The size of the largest file.
    pub fn largest(&self) -> u64 {
        self.largest
    }

    pub fn on_disk(&self) -> bool {
        self.spool.on_disk()
    }

    /// The files, in path order, each with its place in the bundle's list.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            l: self,
            r: self.spool.reader(),
            left: self.count,
        }
    }

    /// The first file.
    pub fn first(&self) -> Result<Option<SourceFile>> {
        self.iter().next().transpose().map(|f| f.map(|(_, f)| f))
    }

    /// Every file in memory, for what needs them all at once (`bundle --validate`).
    pub fn to_vec(&self) -> Result<Vec<SourceFile>> {
        self.iter().map(|r| r.map(|(_, f)| f)).collect()
    }
}

/// Writes a `FileList`, in path order.
pub struct ListWriter {
    roots: Vec<Arc<Path>>,
    w: Writer,
    count: usize,
    total: u64,
    largest: u64,
    last: Option<String>,
}

impl ListWriter {
    /// Up to `spill` bytes of records stay in memory.
    pub fn new(spill: usize) -> ListWriter {
        ListWriter {
            roots: Vec::new(),
            w: Writer::new(spill),
            count: 0,
            total: 0,
            largest: 0,
            last: None,
        }
    }

    /// The next file, at the next place in the list.
    pub fn push_next(&mut self, f: &SourceFile) -> Result<()> {
        self.push(self.count, f)
    }

    /// The next file (after the last in path order), at place `at` in the bundle's list.
    pub fn push(&mut self, at: usize, f: &SourceFile) -> Result<()> {
        if self.last.as_deref().is_some_and(|l| l >= f.rel.as_str()) {
            return Err(internal(format!(
                "{} comes after {} (not in path order, or twice)",
                f.rel,
                self.last.as_deref().unwrap_or_default()
            )));
        }
        let root = match self.roots.iter().position(|r| **r == *f.root) {
            Some(i) => i,
            None => {
                self.roots.push(f.root.clone());
                self.roots.len() - 1
            }
        };
        let root = u16::try_from(root).map_err(|_| internal("too many folders".into()))?;
        let len = u32::try_from(f.rel.len())
            .map_err(|_| internal(format!("a path of {} bytes", f.rel.len())))?;
        let short = |s: Option<&str>| -> Result<u16> {
            u16::try_from(s.map_or(0, str::len)).map_err(|_| {
                internal(format!(
                    "{}: a model format, framework or samples path too long",
                    f.rel
                ))
            })
        };
        let (format, framework, samples) = (f.format(), f.framework(), f.samples());
        let (flen, wlen, slen) = (short(format)?, short(framework)?, short(samples)?);
        let flags = (if f.executable { EXEC } else { 0 })
            | (if f.metrics { METRICS } else { 0 })
            | (if format.is_some() { FORMAT } else { 0 })
            | (if framework.is_some() { FRAMEWORK } else { 0 })
            | (if samples.is_some() { SAMPLES } else { 0 });
        let kind = Kind::ALL.iter().position(|&k| k == f.kind).expect("a kind") as u8;
        self.w
            .record(|w| {
                w.write_all(&(at as u64).to_le_bytes())?;
                w.write_all(&f.size.to_le_bytes())?;
                w.write_all(&root.to_le_bytes())?;
                w.write_all(&[kind, flags])?;
                w.write_all(&len.to_le_bytes())?;
                w.write_all(f.rel.as_bytes())?;
                if let Some(s) = format {
                    w.write_all(&flen.to_le_bytes())?;
                    w.write_all(s.as_bytes())?;
                }
                if let Some(s) = framework {
                    w.write_all(&wlen.to_le_bytes())?;
                    w.write_all(s.as_bytes())?;
                }
                if let Some(s) = samples {
                    w.write_all(&slen.to_le_bytes())?;
                    w.write_all(s.as_bytes())?;
                }
                Ok(())
            })
            .map_err(io_err)?;
        self.count += 1;
        self.total += f.size;
        self.largest = self.largest.max(f.size);
        match &mut self.last {
            Some(l) => {
                l.clear();
                l.push_str(&f.rel);
            }
            None => self.last = Some(f.rel.clone()),
        }
        Ok(())
    }

    pub fn finish(self) -> Result<FileList> {
        Ok(FileList {
            roots: self.roots,
            spool: self.w.finish().map_err(io_err)?,
            count: self.count,
            total: self.total,
            largest: self.largest,
        })
    }
}

/// Reads a `FileList` in order: `(place in the bundle's list, file)`.
pub struct Iter<'a> {
    l: &'a FileList,
    r: Reader<'a>,
    left: usize,
}

/// (at u64, size u64, root u16, kind u8, flags u8, path length u32)
const HEAD: usize = 24;

impl Iter<'_> {
    fn next_file(&mut self) -> Result<(usize, SourceFile)> {
        let h = self.r.fill(HEAD).map_err(io_err)?;
        let at = u64::from_le_bytes(h[0..8].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        let root = u16::from_le_bytes(h[16..18].try_into().expect("2 bytes")) as usize;
        let (kind, flags) = (h[18], h[19]);
        let len = u32::from_le_bytes(h[20..24].try_into().expect("4 bytes")) as usize;
        let kind = *Kind::ALL
            .get(kind as usize)
            .ok_or_else(|| internal("a kind that is none".into()))?;
        let root = self
            .l
            .roots
            .get(root)
            .ok_or_else(|| internal("a folder that is none".into()))?
            .clone();
        let at = usize::try_from(at).map_err(|_| internal("a place past the end".into()))?;
        let mut n = HEAD + len;
        let rel = text(self.r.fill(n).map_err(io_err)?, HEAD)?;
        let mut extra = |on: bool| -> Result<Option<String>> {
            if !on {
                return Ok(None);
            }
            let b = self.r.fill(n + 2).map_err(io_err)?;
            let l = u16::from_le_bytes(b[n..n + 2].try_into().expect("2 bytes")) as usize;
            let s = text(self.r.fill(n + 2 + l).map_err(io_err)?, n + 2)?;
            n += 2 + l;
            Ok(Some(s))
        };
        let format = extra(flags & FORMAT != 0)?;
        let framework = extra(flags & FRAMEWORK != 0)?;
        let samples = extra(flags & SAMPLES != 0)?;
        self.r.take(n);
        Ok((
            at,
            SourceFile {
                rel,
                root,
                kind,
                size,
                executable: flags & EXEC != 0,
                model: ModelInfo::of(format, framework, samples),
                metrics: flags & METRICS != 0,
            },
        ))
    }

    /// Up to `n` more files into `out` (emptied first): none when the list is done.
    pub fn batch(&mut self, n: usize, out: &mut Vec<(usize, SourceFile)>) -> Result<()> {
        out.clear();
        for f in self.by_ref().take(n) {
            out.push(f?);
        }
        Ok(())
    }
}

/// The UTF-8 text of `b[from..]`.
fn text(b: &[u8], from: usize) -> Result<String> {
    std::str::from_utf8(&b[from..])
        .map(str::to_string)
        .map_err(|_| internal("a path that is not UTF-8".into()))
}

impl Iterator for Iter<'_> {
    type Item = Result<(usize, SourceFile)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = self.next_file();
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

#[cfg(test)]
#[path = "filelist_tests.rs"]
mod tests;
