//! A layout as a store of several tagged images, as skopeo, umoci and oras treat it:
//! `copy X oci:DIR:TAG` and `bundle -o oci:DIR:TAG` add the image to the layout at DIR,
//! keeping its other tags (their index.json entries and blobs) and the signatures and
//! attestations of what is kept; an entry of the same tag is replaced. A plain path (`-o
//! DIR`, `copy X DIR`) is replaced whole, as before, and the tags it held besides the one
//! written are said ([`Placed::replaced_tags`]).
//!
//! Either way the result is staged beside DIR ([`Staging`]) and swapped into place at the
//! end: the kept blobs are hard-linked (else copied) into the staged layout, so an
//! interrupted or failed write leaves the old layout as it was.

use crate::error::{Error, IoContext, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::Digest;
use crate::format::media_type::{
    DOCKER_LIST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
};
use crate::store::layout::{self, Staging};
use crate::store::resolve::read_blob;
use crate::store::Source;
use oci_spec::image::{Descriptor, ImageIndex};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A layout or archive being written to `dest`: staged, then added to the layout there
/// (`add`) or put in place of what is there.
pub struct Output {
    staging: Staging,
    dest: PathBuf,
    tag: String,
    /// Adding: the layout there now (None: nothing there yet, or replacing).
    existing: Option<Box<dyn Source>>,
    /// Replacing: the tags what is there held besides `tag`.
    replaced_tags: Vec<String>,
}

/// What writing an output did to what was there.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Placed {
    /// Added to a layout: its other tags, all still there.
    pub kept_tags: Vec<String>,
    /// Replaced a layout or archive: the tags it held besides the one written (gone now).
    pub replaced_tags: Vec<String>,
    /// Added to a layout whose tag named another manifest: that manifest's digest.
    pub moved_from: Option<String>,
}

impl Output {
    /// Stage an output for `dest` (`archive` as for [`Staging::with_form`]) to hold `tag`.
    /// `add`: keep the other images of a layout there (the `oci:DIR:TAG` form); an archive,
    /// like a plain path, is replaced.
    pub fn new(dest: &Path, archive: Option<bool>, tag: &str, add: bool) -> Result<Output> {
        let staging = Staging::with_form(dest, archive)?;
        let mut existing = None;
        let mut replaced_tags = Vec::new();
        if add && !staging.is_archive() && dest.is_dir() {
            existing = Some(layout::open(dest)?);
        } else {
            replaced_tags = held_besides(dest, tag);
        }
        Ok(Output {
            staging,
            dest: dest.to_path_buf(),
            tag: tag.to_string(),
            existing,
            replaced_tags,
        })
    }

    /// The temp layout directory to write (not yet created).
    pub fn layout_dir(&self) -> PathBuf {
        self.staging.layout_dir()
    }

    pub fn is_archive(&self) -> bool {
        self.staging.is_archive()
    }

    /// Move the finished layout into place: when adding, with the images of the layout there
    /// that it keeps (their blobs linked in, their entries listed before the new ones).
    pub fn commit(self) -> Result<Placed> {
        let mut placed = Placed {
            replaced_tags: self.replaced_tags,
            ..Placed::default()
        };
        if let Some(old) = &self.existing {
            let dir = self.staging.layout_dir();
            let new = layout::open(&dir)?;
            let new_entries = entries(new.as_ref())?;
            let kept = keep(old.as_ref(), &self.tag, new.as_ref(), &new_entries)
                .map_err(|e| cannot_add(&self.dest, &self.tag, e))?;
            link_blobs(&self.dest, &dir, &kept.blobs)?;
            let mut seen: HashSet<(String, Option<String>)> =
                kept.entries.iter().map(key).collect();
            let mut all = kept.entries;
            all.extend(new_entries.into_iter().filter(|d| seen.insert(key(d))));
            layout::write_index_file(&dir, all)?;
            placed.kept_tags = kept.tags;
            placed.moved_from = kept.moved_from;
        }
        self.staging.commit()?;
        Ok(placed)
    }
}

/// The refusal to add to a layout whose contents cannot be followed, with the way out.
fn cannot_add(dest: &Path, tag: &str, e: Error) -> Error {
    Error::of(
        e.kind(),
        format!(
            "cannot add {tag} to the layout {}, which is left as it was: {e}. Repair or remove it, or replace it whole by writing to its plain path (without `oci:…:{tag}`)",
            dest.display()
        ),
    )
}

/// The tag of an index entry.
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// The tags the layout or archive at `path` holds besides `tag` (what replacing it loses);
/// none when nothing readable is there (what cannot be read holds no tag worth naming).
pub fn held_besides(path: &Path, tag: &str) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    layout::open(path)
        .and_then(|s| s.index_bytes())
        .map(|b| tags_besides(&b, tag))
        .unwrap_or_default()
}

/// The tags of an index.json besides `tag`, in its order, each once.
fn tags_besides(index: &[u8], tag: &str) -> Vec<String> {
    let Ok(index) = serde_json::from_slice::<ImageIndex>(index) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    index
        .manifests()
        .iter()
        .filter_map(ref_name)
        .filter(|t| *t != tag && seen.insert(t.to_string()))
        .map(str::to_string)
        .collect()
}

fn key(d: &Descriptor) -> (String, Option<String>) {
    (d.digest().to_string(), ref_name(d).map(str::to_string))
}

fn entries(src: &dyn Source) -> Result<Vec<Descriptor>> {
    let index: ImageIndex = serde_json::from_slice(&src.index_bytes()?).map_err(|e| {
        Error::input(format!(
            "{}: index.json is not a valid OCI index: {e}",
            src.describe()
        ))
    })?;
    Ok(index.manifests().clone())
}

/// What the old layout keeps when `tag` is written with `new_entries`.
struct Kept {
    entries: Vec<Descriptor>,
    tags: Vec<String>,
    blobs: BTreeSet<Digest>,
    moved_from: Option<String>,
}

/// Keep every entry of `old` but those tagged `tag`, and of the untagged referrers
/// (signatures, attestations: manifests with a `subject`) those whose subject is still there
/// (in a kept image, or in the new one).
fn keep(old: &dyn Source, tag: &str, new: &dyn Source, new_entries: &[Descriptor]) -> Result<Kept> {
    let old_entries = entries(old)?;
    let new_root = new_entries
        .iter()
        .find(|d| ref_name(d) == Some(tag))
        .map(|d| d.digest().to_string());
    let mut moved_from = None;
    // (entry, its subject when it is an untagged referrer)
    let mut candidates = Vec::new();
    for d in &old_entries {
        if ref_name(d) == Some(tag) {
            if new_root.as_deref() != Some(d.digest().as_ref()) {
                moved_from = Some(d.digest().to_string());
            }
            continue;
        }
        let subject = match ref_name(d) {
            Some(_) => None,
            None => subject_of(old, d)?,
        };
        candidates.push((d.clone(), subject));
    }
    // Manifests there after the write: the new graph's and the kept roots'.
    let mut there = Graph::default();
    for d in new_entries {
        there.walk(new, d)?;
    }
    let mut kept_graph = Graph::default();
    let mut keep = vec![false; candidates.len()];
    for (i, (d, subject)) in candidates.iter().enumerate() {
        if subject.is_none() {
            keep[i] = true;
            kept_graph.walk(old, d)?;
        }
    }
    // Referrers whose subject is there, then referrers of those (a signature of an
    // attestation), until nothing changes.
    loop {
        let mut more = false;
        for (i, (d, subject)) in candidates.iter().enumerate() {
            let Some(s) = subject else { continue };
            if !keep[i] && (there.manifests.contains(s) || kept_graph.manifests.contains(s)) {
                keep[i] = true;
                more = true;
                kept_graph.walk(old, d)?;
            }
        }
        if !more {
            break;
        }
    }
    let entries: Vec<Descriptor> = candidates
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((d, _), _)| d)
        .collect();
    let mut seen = HashSet::new();
    let tags = entries
        .iter()
        .filter_map(ref_name)
        .filter(|t| seen.insert(t.to_string()))
        .map(str::to_string)
        .collect();
    Ok(Kept {
        entries,
        tags,
        blobs: kept_graph.blobs,
        moved_from,
    })
}

fn is_manifest_type(mt: &str) -> bool {
    mt == MANIFEST_MEDIA_TYPE || mt == DOCKER_MANIFEST_MEDIA_TYPE
}

fn is_index_type(mt: &str) -> bool {
    mt == INDEX_MEDIA_TYPE || mt == DOCKER_LIST_MEDIA_TYPE
}

fn sha256_of(d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref()).map_err(|e| {
        Error::input(format!(
            "its entry {} is not a sha256 digest mlart can copy ({e})",
            d.digest()
        ))
    })
}

/// An untagged entry's `subject` (a referrer's), read from its manifest.
fn subject_of(src: &dyn Source, d: &Descriptor) -> Result<Option<String>> {
    if !is_manifest_type(d.media_type().as_ref()) {
        return Ok(None);
    }
    let raw = read_blob(src, d, MAX_MANIFEST_BYTES)?;
    let v: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::input(format!("manifest {} is not valid JSON: {e}", d.digest())))?;
    Ok(v["subject"]["digest"].as_str().map(str::to_string))
}

/// The blobs an entry reaches: manifests and indexes followed, every other blob a leaf.
#[derive(Default)]
struct Graph {
    blobs: BTreeSet<Digest>,
    manifests: HashSet<String>,
}

impl Graph {
    fn walk(&mut self, src: &dyn Source, d: &Descriptor) -> Result<()> {
        let digest = sha256_of(d)?;
        if !self.blobs.insert(digest.clone()) {
            return Ok(());
        }
        let mt = d.media_type().to_string();
        if !is_manifest_type(&mt) && !is_index_type(&mt) {
            return Ok(());
        }
        self.manifests.insert(digest.to_string());
        let raw = read_blob(src, d, MAX_MANIFEST_BYTES)?;
        let v: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::input(format!("manifest {digest} is not valid JSON: {e}")))?;
        let children = std::iter::once(&v["config"])
            .filter(|c| c.is_object())
            .chain(
                ["layers", "manifests", "blobs"]
                    .iter()
                    .flat_map(|k| v[*k].as_array().map(|a| a.as_slice()).unwrap_or_default()),
            );
        for c in children {
            let child: Descriptor = serde_json::from_value(c.clone()).map_err(|e| {
                Error::input(format!("manifest {digest} has a bad descriptor: {e}"))
            })?;
            self.walk(src, &child)?;
        }
        Ok(())
    }
}

/// Hard-link (else copy) `blobs` of the layout `from` into the layout `to`, each that `to`
/// lacks and `from` has (a layer another tool left out, as a foreign layer, stays out).
fn link_blobs(from: &Path, to: &Path, blobs: &BTreeSet<Digest>) -> Result<()> {
    let (src, dst) = (from.join("blobs/sha256"), to.join("blobs/sha256"));
    fs::create_dir_all(&dst).ctx("creating", &dst)?;
    for d in blobs {
        let (a, b) = (src.join(d.hex()), dst.join(d.hex()));
        if b.exists() || !a.is_file() {
            continue;
        }
        if fs::hard_link(&a, &b).is_ok() {
            continue;
        }
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dst)
            .ctx("creating a blob in", &dst)?;
        fs::copy(&a, tmp.path()).ctx("copying", &a)?;
        tmp.persist(&b).map_err(|e| Error::Io {
            context: format!("storing blob {}", b.display()),
            source: e.error,
        })?;
    }
    Ok(())
}
