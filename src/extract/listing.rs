//! What a pull writes, checked as it comes, in memory that does not grow with the file count.
//!
//! The metadata's list (path order, on disk past a few MiB) is read twice: once to plan (the
//! layers the selection needs, what each may expand to), once into an external sort by
//! (layer, path) (`store::runs`). mlart writes each tar layer's entries in path order, so
//! each layer is then read beside its own sorted part of the list (`LayerJoin`): an entry is
//! written when the list has it and the selection wants it, and its sha256 (computed as it
//! was written) is compared at once. What was written goes into a second sorted list, read
//! back at the end as the pull's report and beside model.sig's resources (`Written`).

use super::{refuse, EntryType, Visit};
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::metadata::{FileEntry, Kind, Metadata, METADATA_FILE};
use crate::format::signature::OMS_FILE;
use crate::store::entries::Entries;
use crate::store::runs::{
    corrupt, next_varint, put_varint, read_byte, Batch, Payload, Peeked, Runs,
};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

/// What the plan knows of one layer the metadata names.
#[derive(Debug, Default)]
pub struct LayerInfo {
    /// The files the metadata puts in it, and their sizes rounded up to tar blocks.
    pub files: u64,
    pub bytes: u64,
    /// The kind of its `archive` entry: another tool's tar layer, taken whole.
    pub archive: Option<Kind>,
    /// Whether a selected file is in it.
    pub needed: bool,
}

/// One pass over the metadata's list: the selection's size and each layer's part.
pub struct Plan {
    pub selected: usize,
    pub layers: HashMap<Arc<str>, LayerInfo>,
}

impl Plan {
    pub fn of(meta: &Metadata<Entries>, sel: &super::select::Selector) -> Result<Plan> {
        let mut plan = Plan {
            selected: 0,
            layers: HashMap::new(),
        };
        let mut first_files: Vec<(String, Kind)> = Vec::new();
        for f in meta.files.iter() {
            let f = f?;
            if first_files.len() < 50 {
                first_files.push((f.path.clone(), f.kind));
            }
            let selected = sel.matches(&f);
            let l = plan.layers.entry(f.layer.clone()).or_default();
            l.files += 1;
            l.bytes += f.size.div_ceil(512) * 512;
            if f.archive {
                l.archive.get_or_insert(f.kind);
            }
            if selected {
                l.needed = true;
                plan.selected += 1;
            }
        }
        if plan.selected == 0 {
            return Err(sel.none_matched(&first_files, meta.files.len()));
        }
        Ok(plan)
    }
}

/// A metadata entry in the sorted list: whether it is selected, its kind, size and sha256.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Listed {
    selected: bool,
    archive: bool,
    kind: Kind,
    size: u64,
    sha: [u8; 32],
}

const SELECTED: u8 = 0x40;
const ARCHIVE: u8 = 0x80;

fn kind_byte(k: Kind) -> u8 {
    Kind::ALL.iter().position(|x| *x == k).unwrap_or(0) as u8
}

fn kind_of(b: u8) -> Result<Kind> {
    Kind::ALL
        .get((b & 0x3f) as usize)
        .copied()
        .ok_or_else(|| corrupt("a kind that is none"))
}

fn read_sha(r: &mut dyn Read) -> Result<[u8; 32]> {
    let mut d = [0u8; 32];
    r.read_exact(&mut d)
        .map_err(|_| corrupt("cut in a digest"))?;
    Ok(d)
}

impl Payload for Listed {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut b = kind_byte(self.kind);
        if self.selected {
            b |= SELECTED;
        }
        if self.archive {
            b |= ARCHIVE;
        }
        out.push(b);
        put_varint(out, self.size);
        out.extend_from_slice(&self.sha);
    }

    fn decode(r: &mut dyn Read) -> Result<Self> {
        let b = read_byte(r)?.ok_or_else(|| corrupt("cut in an entry"))?;
        Ok(Listed {
            selected: b & SELECTED != 0,
            archive: b & ARCHIVE != 0,
            kind: kind_of(b)?,
            size: next_varint(r)?,
            sha: read_sha(r)?,
        })
    }
}

/// A layer's place in the manifest, as the first characters of a sorted record's key: the
/// list sorts by layer, then by path.
fn key(layer: u32, path: &str) -> String {
    format!("{layer:08x}{path}")
}

fn sha_of(f: &FileEntry) -> Result<[u8; 32]> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(f.sha256.trim_start_matches("sha256:"), &mut d)
        .map_err(|_| Error::input(format!("{}: sha256 {:?} is not one", f.path, f.sha256)))?;
    Ok(d)
}

/// The metadata's entries of the layers a pull reads, sorted by (layer, path).
pub struct Listing {
    cur: Peeked<Listed>,
}

impl Listing {
    /// `place(layer digest)`: the place in the manifest of the layer the pull reads for it
    /// (None: a layer the pull does not read).
    pub fn of(
        meta: &Metadata<Entries>,
        sel: &super::select::Selector,
        place: &dyn Fn(&str) -> Option<u32>,
        spill: usize,
    ) -> Result<Listing> {
        let mut runs: Runs<Listed> = Runs::new(spill);
        let mut batch: Batch<Listed> = Batch::default();
        for f in meta.files.iter() {
            let f = f?;
            let Some(at) = place(&f.layer) else {
                continue;
            };
            let listed = Listed {
                selected: sel.matches(&f),
                archive: f.archive,
                kind: f.kind,
                size: f.size,
                sha: sha_of(&f)?,
            };
            batch.push(&key(at, &f.path), 0, &listed);
            if batch.size() > 64 << 10 {
                runs.add(&mut batch)?;
            }
        }
        runs.add(&mut batch)?;
        Ok(Listing {
            cur: Peeked::new(runs.merged()?)?,
        })
    }
}

/// What a pull wrote (sorted by path on disk), and what it refused.
pub struct Written {
    runs: Runs<Wrote>,
    batch: Batch<Wrote>,
    /// Links made (another tool's tar layers): the first, and how many.
    symlinks: (Option<String>, usize),
    unlisted: crate::error::Capped,
    repeated: crate::error::Capped,
}

/// A file written: its kind, whether the metadata lists it (not mlart.json and model.sig),
/// its size, sha256 and the place of its layer.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wrote {
    kind: Kind,
    listed: bool,
    size: u64,
    sha: [u8; 32],
    layer: u32,
}

impl Payload for Wrote {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(kind_byte(self.kind) | if self.listed { SELECTED } else { 0 });
        put_varint(out, self.size);
        out.extend_from_slice(&self.sha);
        put_varint(out, self.layer as u64);
    }

    fn decode(r: &mut dyn Read) -> Result<Self> {
        let b = read_byte(r)?.ok_or_else(|| corrupt("cut in an entry"))?;
        Ok(Wrote {
            kind: kind_of(b)?,
            listed: b & SELECTED != 0,
            size: next_varint(r)?,
            sha: read_sha(r)?,
            layer: u32::try_from(next_varint(r)?).map_err(|_| corrupt("a layer past 2^32"))?,
        })
    }
}

impl Written {
    pub fn new(spill: usize) -> Written {
        Written {
            runs: Runs::new(spill),
            batch: Batch::default(),
            symlinks: (None, 0),
            unlisted: Default::default(),
            repeated: Default::default(),
        }
    }

    fn push(&mut self, rel: &str, w: &Wrote) -> Result<()> {
        self.batch.push(rel, 0, w);
        if self.batch.size() > 64 << 10 {
            self.runs.add(&mut self.batch)?;
        }
        Ok(())
    }

    fn refused(&mut self, repeated: bool, what: String) {
        match repeated {
            true => self.repeated.push(what),
            false => self.unlisted.push(what),
        }
    }

    /// What was refused (entries the metadata does not list, or that appear twice): never
    /// written; warnings, or an error under `--strict`.
    pub fn refusals(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(l) = self.unlisted.joined() {
            out.push(format!(
                "layer entries that mlart.json does not list (in that layer) were not written: {l}"
            ));
        }
        if let Some(l) = self.repeated.joined() {
            out.push(format!(
                "layer entries that appear more than once were not written again: {l}"
            ));
        }
        out
    }

    /// Read back in path order: the pull's list of files (`layers`: the manifest's, which a
    /// file's layer place names), and, when `signed` is given (model.sig's resources, sorted),
    /// each file against it as model_signing checks a folder (but for its `ignore_paths`, the
    /// second part): a whole pull wrote every file
    /// of the bundle, so one the signature lists and the pull did not write is missing, one
    /// written and not listed added. What does not match: the second value.
    pub fn finish(
        mut self,
        layers: Vec<Arc<str>>,
        mut signed: Option<(Peeked<[u8; 32]>, Vec<String>)>,
    ) -> Result<(Entries, Option<String>)> {
        self.runs.add(&mut self.batch)?;
        let mut list =
            crate::store::entries::Writer::new(layers, crate::store::entries::memory_limit()?);
        let mut problems = crate::error::Capped::default();
        if let (Some(first), Some(_)) = (&self.symlinks.0, &signed) {
            problems.push(format!(
                "{first} is a symlink (the signature does not allow them){}",
                match self.symlinks.1 {
                    1 => String::new(),
                    n => format!(", and {} more", n - 1),
                }
            ));
        }
        let mut merged = self.runs.merged()?;
        while let Some(rec) = merged.next()? {
            if let Some((it, ignore)) = signed.as_mut() {
                let ignored = ignore
                    .iter()
                    .any(|i| rec.rel == *i || rec.rel.starts_with(&format!("{i}/")));
                if !ignored {
                    while let Some(p) = it.next_if(|p| p.rel < rec.rel)? {
                        problems.push(format!("{} is missing", p.rel));
                    }
                    match it.next_if(|p| p.rel == rec.rel)? {
                        Some(p) if p.data == rec.data.sha => {}
                        Some(_) => problems.push(format!("{} changed", rec.rel)),
                        None => {
                            problems.push(format!("{} is not in the signature (added)", rec.rel))
                        }
                    }
                    while let Some(p) = it.next_if(|p| p.rel == rec.rel)? {
                        problems.push(format!("{} is listed twice", p.rel));
                    }
                }
            }
            if rec.data.listed {
                let w = &rec.data;
                list.push(&rec.rel, w.kind, w.size, &w.sha, w.layer)?;
            }
        }
        if let Some((mut it, _)) = signed {
            while let Some(p) = it.next_if(|_| true)? {
                problems.push(format!("{} is missing", p.rel));
            }
        }
        Ok((list.finish()?, problems.joined()))
    }
}

/// A partial pull's check against model.sig (`signed`, its resources sorted): each selected
/// file of the metadata is signed as the metadata lists it (and the files written were each
/// checked against the metadata as they were written). The first that is not, if any.
pub fn unsigned_selected(
    meta: &Metadata<Entries>,
    sel: &super::select::Selector,
    mut signed: Peeked<[u8; 32]>,
) -> Result<Option<String>> {
    for f in meta.files.iter() {
        let f = f?;
        if !sel.matches(&f) {
            continue;
        }
        while signed.next_if(|p| p.rel < f.path)?.is_some() {}
        match signed.next_if(|p| p.rel == f.path)? {
            Some(p) if p.data == sha_of(&f)? => {}
            _ => return Ok(Some(f.path)),
        }
    }
    Ok(None)
}

/// How a layer's entries are taken.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// An mlart layer: each entry against the metadata's list for it. `whole`: mlart.json
    /// and model.sig are written too (a whole pull).
    Listed { whole: bool },
    /// Another tool's tar layer (an `archive` entry of this kind): every entry written.
    Archive(Kind),
}

/// One layer's entries read beside its part of the sorted list (a `Visit` for the
/// extractor; a raw layer's one file goes through it the same way).
pub struct LayerJoin<'a> {
    cur: &'a mut Listing,
    out: &'a mut Written,
    layer: u32,
    prefix: String,
    mode: Mode,
    /// The folder written to.
    root: &'a std::path::Path,
    /// For messages: the layer, as the user knows it.
    label: &'a str,
    what: &'a str,
    digest: &'a str,
    /// The last entry of the list taken (a second copy of it that was not written is a
    /// repeat, not an unlisted entry).
    last: Option<String>,
    /// The list's entry for the file being written.
    pending: Option<Listed>,
}

impl<'a> LayerJoin<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cur: &'a mut Listing,
        out: &'a mut Written,
        layer: u32,
        mode: Mode,
        root: &'a std::path::Path,
        label: &'a str,
        what: &'a str,
        digest: &'a str,
    ) -> Self {
        LayerJoin {
            cur,
            out,
            layer,
            prefix: key(layer, ""),
            mode,
            root,
            label,
            what,
            digest,
            last: None,
            pending: None,
        }
    }

    /// The path of the layer's first listed file that is selected (what a raw layer is
    /// written to; the ones before it, not selected, are passed over).
    pub fn first_path(&mut self) -> Result<Option<String>> {
        let prefix = &self.prefix;
        while self
            .cur
            .cur
            .next_if(|r| r.rel.starts_with(prefix.as_str()) && !r.data.selected)?
            .is_some()
        {}
        Ok(self
            .cur
            .cur
            .peek()
            .filter(|r| r.rel.starts_with(&self.prefix) && !r.data.archive)
            .map(|r| r.rel[self.prefix.len()..].to_string()))
    }

    /// A raw layer's blob is every file listed with it: files of the same bytes are one blob
    /// (a manifest names it once per file, and it is read once). The rest of this layer's
    /// selected files are written as copies of `from` (the blob, written and checked just
    /// before), each created and checked as any file is.
    pub fn copies(&mut self, x: &mut super::Extractor, from: &str) -> Result<()> {
        if !matches!(self.mode, Mode::Listed { .. }) {
            return Ok(());
        }
        while let Some((path, l)) = self.take_before(None)? {
            if !l.selected || l.archive {
                continue;
            }
            let src = self.root.join(from);
            let mut f = std::fs::File::open(&src).map_err(|e| Error::Io {
                context: format!("reading {}", src.display()),
                source: e,
            })?;
            let (d, n) = x.file(self.label, &path, 0o644, l.size, &mut f)?;
            self.pending = Some(l);
            self.written(&path, d, n)?;
        }
        Ok(())
    }

    /// The next entry of this layer's list if its path is before `rel` (all of them: None).
    fn take_before(&mut self, rel: Option<&str>) -> Result<Option<(String, Listed)>> {
        let prefix = &self.prefix;
        let rec = self.cur.cur.next_if(|r| {
            r.rel
                .strip_prefix(prefix.as_str())
                .is_some_and(|p| rel.is_none_or(|rel| p < rel))
        })?;
        Ok(rec.map(|r| (r.rel[prefix.len()..].to_string(), r.data)))
    }

    fn missing(&self, path: &str) -> Error {
        Error::input(format!(
            "{}: {path} is listed in the metadata but not in its layer {} (or not where mlart writes it: a layer's entries are in path order)",
            self.what, self.digest
        ))
    }

    /// The layer is read: the list's entries of it not found are an error when selected.
    pub fn finish(mut self) -> Result<()> {
        while let Some((path, l)) = self.take_before(None)? {
            if l.selected && !l.archive && matches!(self.mode, Mode::Listed { .. }) {
                return Err(self.missing(&path));
            }
        }
        Ok(())
    }
}

impl Visit for LayerJoin<'_> {
    fn entry(&mut self, rel: &str, kind: EntryType) -> Result<bool> {
        let whole = match self.mode {
            Mode::Archive(_) => {
                if kind == EntryType::Symlink {
                    self.out.symlinks.1 += 1;
                    self.out.symlinks.0.get_or_insert_with(|| rel.to_string());
                }
                return Ok(true);
            }
            Mode::Listed { whole } => whole,
        };
        // the list's entries before this one: not in the layer
        while let Some((path, l)) = self.take_before(Some(rel))? {
            if l.selected && !l.archive {
                return Err(self.missing(&path));
            }
        }
        let here = self.cur.cur.next_if(|r| {
            r.rel.len() == self.prefix.len() + rel.len()
                && r.rel.starts_with(&self.prefix)
                && r.rel.ends_with(rel)
        })?;
        if let Some(r) = here {
            let l = r.data;
            let write = l.selected && !l.archive;
            if write && kind != EntryType::File {
                return Err(Error::input(format!(
                    "{}: {rel} is listed in the metadata as a file but is a {} in its layer {}",
                    self.what,
                    match kind {
                        EntryType::Symlink => "symlink",
                        _ => "hard link",
                    },
                    self.digest
                )));
            }
            self.last = Some(rel.to_string());
            self.pending = write.then_some(l);
            return Ok(write);
        }
        // Written before (in this layer or another): refused as it always was. (A stat of
        // the entries the list does not have here only.)
        if std::fs::symlink_metadata(self.root.join(rel)).is_ok() {
            return Err(refuse(self.label, format!("{rel} appears more than once")));
        }
        match &self.last {
            Some(last) if last == rel => {
                self.out
                    .refused(true, format!("{rel} (layer {})", short(self.digest)));
                Ok(false)
            }
            _ if (rel == METADATA_FILE || rel == OMS_FILE) && kind == EntryType::File => {
                self.last = Some(rel.to_string());
                self.pending = None;
                Ok(whole)
            }
            _ => {
                self.out
                    .refused(false, format!("{rel} (layer {})", short(self.digest)));
                Ok(false)
            }
        }
    }

    /// Another tool's tar layer keeps its (empty) directories; mlart's layers make only the
    /// parents of what is written.
    fn dirs(&self) -> bool {
        matches!(self.mode, Mode::Archive(_))
    }

    fn written(&mut self, rel: &str, digest: Digest, size: u64) -> Result<()> {
        let mut sha = [0u8; 32];
        hex::decode_to_slice(digest.hex(), &mut sha).map_err(|_| corrupt("a digest"))?;
        let (kind, listed) = match self.mode {
            Mode::Archive(kind) => (kind, true),
            Mode::Listed { .. } => match self.pending.take() {
                Some(l) => {
                    if l.sha != sha || l.size != size {
                        return Err(Error::integrity(format!(
                            "{}: {rel} does not match the metadata (sha256 {digest}, {size} bytes; expected sha256:{}, {} bytes)",
                            self.what,
                            hex::encode(l.sha),
                            l.size
                        )));
                    }
                    (l.kind, true)
                }
                // mlart.json or model.sig
                None => (Kind::Config, false),
            },
        };
        self.out.push(
            rel,
            &Wrote {
                kind,
                listed,
                size,
                sha,
                layer: self.layer,
            },
        )
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}
