//! `pull`: fetch the layers a selection of files needs (through a content-addressed cache for
//! registries), extract them safely into a temp directory beside the destination, check every
//! file against the metadata's sha256, then move the directory into place.

use super::bounded::{max_expansion, Bounded};
use crate::error::{Error, IoContext, Result};
use crate::extract::listing::{LayerJoin, Listing, Mode, Plan, Written};
use crate::extract::{EntryType, Extractor, Visit};
use crate::format::compression::Compression;
use crate::format::digest::Digest;
use crate::format::metadata::FileEntry;
use crate::format::metadata::{Form, Metadata};
use crate::store::cache::BlobCache;
use crate::store::copy::{copy_blobs, CopyOptions, Outcome};
use crate::store::entries::Entries;
use crate::store::layout::{self, Source};
use crate::store::runs::Peeked;
use crate::store::{BlobEvent, BlobRef};
use oci_spec::image::Descriptor;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

/// What to pull and where.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    pub out: PathBuf,
    /// Only files of these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Only files whose path matches one of these globs (empty: all).
    pub paths: Vec<String>,
    /// The blob cache directory (`…/mlart`); None: no cache. With one, the layers needed are
    /// copied into it (several at a time; those it has are verified and kept) before
    /// extraction, and afterwards the cache is cut to `MLART_CACHE_MAX_SIZE` when that is set
    /// (least recently used blobs first).
    pub cache: Option<PathBuf>,
    /// Trusted keys: when given, nothing is written unless an OCI signature and model.sig
    /// verify with them.
    pub verify_keys: Vec<crate::sign::PublicKey>,
    /// With `verify_keys`: an OCI signature by every key.
    pub require_all: bool,
    /// From a multi-platform index: the platform to take (None: this machine's).
    pub platform: Option<crate::format::platform::Platform>,
    /// Cancelled on Ctrl-C: downloads and extraction stop, nothing is moved into place.
    pub cancel: crate::interrupt::Cancel,
    /// A layer entry the metadata does not list, or one that appears twice, is an error
    /// (nothing is written) instead of a warning.
    pub strict: bool,
    /// Also write the bundle's attestations beside `out`, into `OUT.attestations/` (`mlart
    /// pull`; not the pulls into temp directories of serve, validate and convert).
    pub attestations: bool,
    /// What a refusal says was not done ("" for `not pulled`; serve's `not served`).
    pub refused: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct PullReport {
    pub reference: String,
    pub digest: String,
    pub output: String,
    pub form: Option<Form>,
    /// The files written, in path order (mlart.json and model.sig aside, and the mlart.json
    /// written for another tool's artifact: `derived`).
    pub files: Files,
    pub layers: LayerCounts,
    /// Bytes fetched by this run (a resumed blob counts only what it still needed).
    pub bytes_downloaded: u64,
    /// Bytes of blobs an earlier, interrupted pull left in the cache (`.partial`), which this
    /// run continued with a Range request instead of fetching again.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub bytes_resumed: u64,
    /// Those blobs, and how far the earlier pull had got.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<crate::store::copy::ResumedBlob>,
    /// Blobs removed from the cache afterwards to keep it under `MLART_CACHE_MAX_SIZE`.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_pruned: usize,
    /// With `verify_keys`: the keys whose signatures verified.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified_by: Vec<String>,
    /// When the source is a multi-platform index: the index and the platform pulled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<crate::store::layout::IndexChoice>,
    /// The bundle's metadata (made from the manifest for another tool's artifact).
    #[serde(skip)]
    pub metadata: Option<Metadata<Entries>>,
    /// A ModelPack or a dialect of another tool, as the metadata says (`modelpack`, `kitops`…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    /// The bundle's attestations written beside the files (`OUT.attestations/`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<super::attestations::Pulled>,
    /// The folder they are in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestations_dir: Option<String>,
    /// Another tool's artifact (no mlart.json): the mlart.json written beside its files, made
    /// from them and its manifest (`extract::derived`), and what it was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived: Option<crate::format::metadata::Derived>,
    /// What was refused without failing the pull (entries the metadata does not list, or
    /// that appear twice): an error with `--strict`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The files a pull wrote, in path order, each with its kind, size, sha256 and layer (on disk
/// past a few MiB: a million files cost no more memory than ten). Serialized as their paths.
#[derive(Debug, Default)]
pub struct Files(Option<Entries>);

impl Files {
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, Entries::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The files, in path order (an entry that cannot be read back from its temp file is an
    /// error).
    pub fn iter(&self) -> impl Iterator<Item = Result<FileEntry>> + '_ {
        self.0.iter().flat_map(Entries::iter)
    }
}

impl Serialize for Files {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for f in self.iter() {
            seq.serialize_element(&f.map_err(S::Error::custom)?.path)?;
        }
        seq.end()
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LayerCounts {
    /// Layers in the manifest.
    pub total: usize,
    /// Layers needed for the selection.
    pub needed: usize,
    /// Of those, fetched from the source.
    pub fetched: usize,
    /// Of those, found (and verified) in the local cache.
    pub cached: usize,
}

/// The default cache: `$XDG_CACHE_HOME/mlart`, else `~/.cache/mlart`.
pub fn default_cache() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("mlart"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("mlart"))
}

/// Pull from `src` (a registry source, a layout or an archive).
pub fn pull(
    src: &mut dyn Source,
    tag: Option<&str>,
    opts: &PullOptions,
    progress: &(dyn Fn(&Digest, BlobEvent) + Sync),
    on_total: &dyn Fn(u64),
) -> Result<PullReport> {
    // A bad cap is an error before anything is fetched.
    let cap = match &opts.cache {
        Some(_) => crate::store::cache::cap_from_env()?,
        None => None,
    };
    let what = src.describe();
    let not = [opts.refused, "not pulled"]
        .into_iter()
        .find(|s| !s.is_empty());
    let not = not.unwrap_or_default();
    let resolved = layout::resolve_platform(src, tag, opts.platform.as_ref())?;
    // The metadata's list stays on disk past a few MiB: read as it streams, twice (the plan,
    // then the sorted list the layers are read beside), never held whole.
    let meta = crate::store::metadata::read_metadata(src, &resolved.manifest)?;
    let sel = super::select::Selector::new(&opts.kinds, &opts.paths)?;
    let plan = Plan::of(&meta, &sel)?;
    let mut needed_layers: HashSet<&str> = plan
        .layers
        .iter()
        .filter(|(_, l)| l.needed)
        .map(|(d, _)| &**d)
        .collect();
    let manifest_digest =
        Digest::parse(resolved.descriptor.digest().as_ref()).map_err(Error::Input)?;

    // Signatures first: with trusted keys, an unsigned or wrongly signed bundle is refused
    // before a byte of it is downloaded.
    let mut verified_by = Vec::new();
    if !opts.verify_keys.is_empty() {
        let (sigs, problems) = crate::check::verify::oci_signatures(
            src,
            &manifest_digest,
            &opts.verify_keys,
            opts.require_all,
        )?;
        if !problems.is_empty() {
            return Err(Error::Check(format!(
                "{what}: {not}: {}",
                problems.join("; ")
            )));
        }
        verified_by.extend(sigs.iter().filter_map(|s| s.key.clone()));
    }

    // A whole pull also writes what the signature covers: mlart.json (image form) and
    // model.sig, so `model_signing verify` and `mlart verify DIR` work on the result.
    let full = sel.is_all();
    if full {
        for l in resolved.manifest.layers() {
            let kind = l
                .annotations()
                .as_ref()
                .and_then(|a| a.get(crate::format::annotations::KIND_ANNOTATION))
                .map(String::as_str);
            match (kind, meta.form) {
                (Some("metadata"), Form::Image | Form::Modelpack)
                | (Some("signature"), Form::Artifact | Form::Modelpack) => {}
                _ => continue,
            }
            needed_layers.insert(l.digest().as_ref());
        }
    }
    // Each layer's place in the manifest: what the sorted list is keyed by.
    let mut place: HashMap<String, u32> = HashMap::new();
    for (i, l) in resolved.manifest.layers().iter().enumerate() {
        place.entry(l.digest().to_string()).or_insert(i as u32);
    }
    // A layer the metadata names that the manifest does not: a copy that compressed it
    // (`skopeo copy` without `--preserve-digests` gzips the uncompressed model layers) keeps
    // the image config, whose `rootfs.diff_ids[i]` is the digest of layer i uncompressed. That
    // layer is taken instead, and its uncompressed stream must hash to the diff_id.
    let mut missing: Vec<&str> = needed_layers
        .iter()
        .copied()
        .filter(|d| !place.contains_key(*d))
        .collect();
    missing.sort_unstable();
    // The manifest digest of such a layer -> the diff_id its uncompressed stream must have.
    let mut diff_checks: HashMap<String, Digest> = HashMap::new();
    if let Some(first) = missing.first() {
        let diff_ids = match meta.form {
            Form::Image => super::overlay::config_diff_ids(src, &resolved.manifest)?,
            Form::Artifact | Form::Modelpack => Err(String::new()),
        };
        let diff_ids = diff_ids.map_err(|why| not_in_manifest(&what, first, &why))?;
        for m in missing {
            let i = diff_ids.iter().position(|d| d.as_str() == m).ok_or_else(|| {
                not_in_manifest(
                    &what,
                    m,
                    " (nor is it in the image config's rootfs.diff_ids: it is no layer of this image, compressed or not)",
                )
            })?;
            let l = &resolved.manifest.layers()[i];
            needed_layers.remove(m);
            needed_layers.insert(l.digest().as_ref());
            place.insert(m.to_string(), i as u32);
            diff_checks.insert(l.digest().to_string(), diff_ids[i].clone());
        }
    }
    let left = super::overlay::unaccounted(src, &resolved.manifest, &meta, &|d| {
        plan.layers.contains_key(d)
    })?;
    if !left.is_empty() {
        return Err(super::overlay::refuse(&what, &left));
    }
    // The layers read, each once, in the manifest's order.
    let mut taken = HashSet::new();
    let layers: Vec<(u32, &Descriptor)> = resolved
        .manifest
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| needed_layers.contains(l.digest().as_ref() as &str))
        .filter(|(_, l)| taken.insert(l.digest().to_string()))
        .map(|(i, l)| (i as u32, l))
        .collect();
    on_total(layers.iter().map(|(_, l)| l.size()).sum());

    // The destination: must not exist, or be an empty directory.
    let out = &opts.out;
    if occupied(out)? {
        return Err(Error::input(format!(
            "{} exists and is not an empty directory: mlart pull will not overwrite it. Choose another `-o`, or remove it",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).ctx("creating", &parent)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    // The attestations of the bundle: read (and checked) now, written beside the files.
    let dest = out.with_file_name(format!("{name}{}", super::attestations::SUFFIX));
    let mut carry = match opts.attestations {
        true => super::attestations::Carry::read(&*src, &manifest_digest, &opts.verify_keys, dest)?,
        false => Default::default(),
    };
    let staging = crate::interrupt::temp_dir_in(&parent, "pull", &name)
        .ctx("creating a temp directory in", &parent)?;
    let root = staging.path().join("out");
    fs::create_dir(&root).ctx("creating", &root)?;

    let mut report = PullReport {
        reference: what.clone(),
        digest: resolved.descriptor.digest().to_string(),
        output: out.display().to_string(),
        form: Some(meta.form),
        layers: LayerCounts {
            total: resolved.manifest.layers().len(),
            needed: layers.len(),
            ..Default::default()
        },
        index: resolved.index.clone(),
        ..Default::default()
    };
    // With a cache: the layers go into it first, through the one copy (those it has are
    // re-hashed and kept), then each is extracted from there (not hashed again).
    let cache = opts.cache.as_deref().map(BlobCache::new);
    if let Some(cache) = &cache {
        let blobs = layers
            .iter()
            .map(|(_, l)| BlobRef::of(l))
            .collect::<Result<Vec<_>>>()?;
        // The cache's words: fetched blobs were "downloaded", those it had were "cached".
        let observer = |d: &Digest, e: BlobEvent| {
            progress(
                d,
                match e {
                    BlobEvent::Done("skipped") => BlobEvent::Done("cached"),
                    BlobEvent::Done(_) => BlobEvent::Done("downloaded"),
                    e => e,
                },
            )
        };
        let copied = copy_blobs(
            &*src,
            cache,
            &blobs,
            &CopyOptions {
                observer: &observer,
                cancel: opts.cancel.clone(),
                ..CopyOptions::default()
            },
        )?;
        for (b, o) in copied {
            match o {
                Outcome::Skipped => report.layers.cached += 1,
                Outcome::Resumed(at) => {
                    report.layers.fetched += 1;
                    report.bytes_downloaded += b.size - at.min(b.size);
                    report.bytes_resumed += at;
                    report.resumed.push(crate::store::copy::ResumedBlob {
                        digest: b.digest.to_string(),
                        at,
                    });
                }
                _ => {
                    report.layers.fetched += 1;
                    report.bytes_downloaded += b.size;
                }
            }
        }
    }
    let spill = crate::store::entries::memory_limit()?.max(64 << 10);
    let reading: HashSet<u32> = layers.iter().map(|(i, _)| *i).collect();
    let mut listing = Listing::of(
        &meta,
        &sel,
        &|d| place.get(d).copied().filter(|i| reading.contains(i)),
        spill,
    )?;
    let mut written = Written::new(spill);
    let mut x = Extractor::new(&root).with_cancel(opts.cancel.clone());
    for &(pos, l) in &layers {
        if opts.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let digest = Digest::parse(l.digest().as_ref()).map_err(Error::Input)?;
        let mt = l.media_type().to_string();
        let label = format!("{what}: layer {}", digest.short());
        // A verified reader of the layer: from the cache (filled above) or straight from the source.
        let mut reader: Box<dyn Read + '_> = match &cache {
            Some(cache) => {
                let path = cache.path(&digest);
                Box::new(File::open(&path).ctx("reading", &path)?)
            }
            None => {
                report.layers.fetched += 1;
                report.bytes_downloaded += l.size();
                progress(&digest, BlobEvent::Start(l.size()));
                Box::new(Progress {
                    inner: layout::open_verified(src, l)?,
                    digest: digest.clone(),
                    f: progress,
                })
            }
        };
        let bad = |e: io::Error| Error::from_io(&e, format!("{label}: {e}"));
        // A layer matched by its diff_id: hash what it decompresses to.
        let diff_id = diff_checks.get(l.digest().as_ref() as &str);
        // The digest the metadata knows the layer by (its diff_id for one compressed since).
        let original = diff_id.map_or(digest.to_string(), |d| d.to_string());
        let info = plan.layers.get(original.as_str());
        // Another tool's tar layer (an `archive` entry): all of it, checked by its digest.
        let archive = info.and_then(|i| i.archive);
        let mode = match archive {
            Some(kind) => Mode::Archive(kind),
            None => Mode::Listed { whole: full },
        };
        let is_raw = mt.ends_with(".raw") || (meta.dialect.is_some() && archive.is_none());
        let mut join = LayerJoin::new(
            &mut listing,
            &mut written,
            pos,
            mode,
            &root,
            &label,
            &what,
            digest.as_str(),
        );
        if is_raw {
            let mut reader = MaybeHash::new(&mut reader, diff_id.is_some());
            let title = join
                .first_path()?
                .or_else(|| {
                    crate::format::dialect::layer_path(l.annotations().as_ref()).map(String::from)
                })
                .ok_or_else(|| {
                    Error::input(format!(
                        "{label}: a raw layer without a file path (annotation {} or {})",
                        crate::format::modelpack::FILEPATH_ANNOTATION,
                        crate::format::annotations::TITLE_ANNOTATION
                    ))
                })?;
            let wrote = match join.entry(&title, EntryType::File)? {
                true => Some(x.file(&label, &title, 0o644, l.size(), &mut reader)?),
                false => None,
            };
            // The blob's digest (and diff_id) first: a corrupt layer is the better message.
            io::copy(&mut reader, &mut io::sink()).map_err(bad)?;
            reader.check(&what, l, diff_id)?;
            if let Some((d, n)) = wrote {
                join.written(&title, d, n)?;
                join.copies(&mut x, &title)?;
            }
            join.finish()?;
        } else {
            let comp = crate::format::modelpack::classify_layer(&mt)
                .and_then(|(_, p)| match p {
                    crate::format::modelpack::Packing::Tar(c) => Some(c),
                    crate::format::modelpack::Packing::Raw => None,
                })
                .or_else(|| Compression::from_media_type(&mt))
                .ok_or_else(|| Error::input(format!("{label}: unknown layer media type {mt}")))?;
            let strip = if mt.starts_with("application/vnd.oci.image.layer.")
                || mt.starts_with("application/vnd.docker.image.rootfs.")
            {
                Some("models/")
            } else {
                None
            };
            // The most an mlart layer may expand to: the files the metadata puts in it, their
            // tar headers and padding, and slack for directories and long names. A stream that
            // decompresses beyond that is stopped (a decompression bomb).
            let is_metadata_layer = l
                .annotations()
                .as_ref()
                .and_then(|a| a.get(crate::format::annotations::KIND_ANNOTATION))
                .is_some_and(|k| k == "metadata");
            let own = meta.dialect.is_none() && archive.is_none();
            let limit = if own {
                let (n, bytes) = info.map_or((0, 0), |i| (i.files, i.bytes));
                let extra = if is_metadata_layer {
                    // mlart.json and model.sig: each a few hundred bytes a file
                    2 * crate::format::metadata::MAX_METADATA_BYTES + 2048 * meta.files.len() as u64
                } else {
                    0
                };
                Some((bytes + extra + 4096 * (n + 64) + (1 << 20), None))
            } else if comp != Compression::None {
                // Another tool's compressed tar layer lists no sizes: a ratio bounds it
                // (gzip's most is about 1000:1; real model code and data stay far below).
                let ratio = max_expansion()?;
                Some((
                    l.size().saturating_mul(ratio).saturating_add(64 << 20),
                    Some(ratio),
                ))
            } else {
                None
            };
            let unpacked = (|| -> Result<()> {
                let dec = crate::format::compression::decoder(&mut reader, comp).map_err(bad)?;
                let dec = Bounded {
                    inner: dec,
                    left: limit.map_or(u64::MAX, |l| l.0),
                    ratio: limit.and_then(|l| l.1),
                    what: label.clone(),
                };
                let mut dec = MaybeHash::new(dec, diff_id.is_some());
                if let Err(e) = x.tar(&label, &mut dec, strip, &mut join) {
                    // A layer that is not what its diff_id says is the better message.
                    if diff_id.is_some()
                        && !matches!(e, Error::Interrupted)
                        && io::copy(&mut dec, &mut io::sink()).is_ok()
                    {
                        dec.check(&what, l, diff_id)?;
                    }
                    return Err(e);
                }
                // Drain the decompressor (trailing padding) ...
                io::copy(&mut dec, &mut io::sink()).map_err(bad)?;
                dec.check(&what, l, diff_id)
            })();
            if let Err(e) = unpacked {
                // A layer that does not unpack may be a corrupt one: its digest (checked at
                // the end of the blob) is the better message.
                if !matches!(e, Error::Interrupted) {
                    io::copy(&mut reader, &mut io::sink()).map_err(bad)?;
                }
                return Err(e);
            }
            // ... and the blob, so its digest is checked at EOF (before what the layer lacks
            // is said: a corrupt layer is the better message).
            io::copy(&mut reader, &mut io::sink()).map_err(bad)?;
            join.finish()?;
        }
        if cache.is_none() {
            progress(&digest, BlobEvent::Done("downloaded"));
        }
    }

    // Entries the metadata does not list, or that appear twice: never written; said, and
    // an error under --strict (before anything is moved into place).
    let refused = written.refusals();
    if !refused.is_empty() && opts.strict {
        return Err(Error::integrity(format!(
            "{what}: {not} (--strict): {}. The bundle was changed after `mlart bundle`, or was not made by it; check it with `mlart verify`",
            refused.join("; ")
        )));
    }
    report.warnings = refused;

    // model.sig over what was written: all files on a whole pull (as model_signing checks
    // the folder), the selected ones else. Read as it streams and sorted on disk beside
    // the files written.
    let not_pulled = |e: String| Error::Check(format!("{what}: {not}: model.sig: {e}"));
    let no_sig = || {
        Error::Check(format!(
            "{what}: {not}: the bundle has no model.sig, which --verify-key checks the files against: it was built without --sign, or converted by `mlart copy --format` without --sign (`mlart sign` adds only the manifest's signature). Sign it when building (`mlart bundle --sign KEY`) or converting (`mlart copy SRC DST --format FORM --sign KEY`), or pull without --verify-key and check the manifest's signature with `mlart verify REF --key`"
        ))
    };
    let mut signed = None;
    if !opts.verify_keys.is_empty() {
        type Signed = (Peeked<[u8; 32]>, Vec<String>);
        let open = |r: &mut dyn Read| -> Result<(Signed, String)> {
            let (mut payload, key) =
                crate::sign::open_streamed(r, &opts.verify_keys).map_err(not_pulled)?;
            let key = key
                .map(|k| k.path.display().to_string())
                .unwrap_or_default();
            let r = payload
                .reader()
                .map_err(|e| not_pulled(format!("reading the statement back: {e}")))?;
            let (sorted, ignore) =
                crate::sign::oms_resources_sorted(r, spill).map_err(not_pulled)?;
            Ok(((Peeked::new(sorted)?, ignore), key))
        };
        if full {
            let sig_path = root.join(crate::format::signature::OMS_FILE);
            let mut f = File::open(&sig_path).map_err(|_| no_sig())?;
            let (resources, key) = open(&mut f)?;
            signed = Some(resources);
            verified_by.push(format!("{key} (model.sig)"));
        } else {
            let (resources, key) = with_oms(src, &resolved.manifest, meta.form, &mut |r| open(r))?
                .ok_or_else(no_sig)?;
            if let Some(p) = super::listing::unsigned_selected(&meta, &sel, resources.0)? {
                return Err(Error::Check(format!(
                    "{what}: {not}: {p} is not signed as it is by model.sig"
                )));
            }
            verified_by.push(format!("{key} (model.sig)"));
        }
    }
    let layer_digests = resolved
        .manifest
        .layers()
        .iter()
        .map(|l| Arc::from(l.digest().as_ref() as &str))
        .collect();
    let (files, problems) = written.finish(layer_digests, signed)?;
    if let Some(p) = problems {
        return Err(Error::Check(format!(
            "{what}: {not}: the files do not match model.sig: {p}"
        )));
    }
    // Another tool's artifact has no mlart.json: one made from what was written, so that
    // `mlart verify DIR` and `mlart serve DIR` work on the folder (none over its own file).
    if meta.dialect.is_some() {
        match super::derived::write(&root, &meta, &files, &manifest_digest, &what)? {
            Ok(d) => report.derived = Some(d),
            Err(why) => report.warnings.push(why),
        }
    }
    report.files = Files(Some(files));
    report.dialect = meta.dialect.clone();
    report.verified_by = verified_by;

    report.attestations = carry.stage(staging.path())?;
    report.attestations_dir = carry.dest();
    report.warnings.append(&mut carry.warnings);

    // On disk before anything moves into place (the small files at once: one syncfs).
    x.sync()?;
    // Into place: the attestations, then the files (which, failing, take them away again).
    carry.place()?;
    if let Err(e) = move_into(&root, out) {
        carry.unplace();
        return Err(e);
    }
    drop(staging);
    report.metadata = Some(meta);
    if let (Some(root), Some(max)) = (&opts.cache, cap) {
        let rule = crate::store::cache::Rule {
            max_size: Some(max),
            older_than: None,
        };
        match crate::store::cache::prune(root, rule, std::time::SystemTime::now(), false) {
            Ok(p) => report.cache_pruned = p.removed.len(),
            Err(e) => report.warnings.push(format!(
                "the cache was not cut to MLART_CACHE_MAX_SIZE: {e}"
            )),
        }
    }
    Ok(report)
}

/// Whether `p` exists and is not an empty directory (a pull will not write there).
pub(crate) fn occupied(p: &std::path::Path) -> Result<bool> {
    Ok(match fs::symlink_metadata(p) {
        Ok(m) => !(m.is_dir() && fs::read_dir(p).ctx("reading", p)?.next().is_none()),
        Err(_) => false,
    })
}

/// Rename the staged `from` to `to` (an empty directory there is replaced).
pub(crate) fn move_into(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    if to.is_dir() {
        fs::remove_dir(to).ctx("replacing the empty directory", to)?;
    }
    fs::rename(from, to).ctx("moving the pulled files to", to)
}

/// `read` over the model.sig of a bundle as it streams, from its metadata layer (image form)
/// or its signature layer (None: the bundle has none).
fn with_oms<T>(
    src: &dyn Source,
    manifest: &oci_spec::image::ImageManifest,
    form: Form,
    read: &mut dyn FnMut(&mut dyn Read) -> Result<T>,
) -> Result<Option<T>> {
    match form {
        Form::Image => crate::store::metadata::with_metadata_layer_file(
            src,
            manifest,
            crate::format::signature::OMS_FILE,
            read,
        ),
        Form::Artifact | Form::Modelpack => {
            let layer = manifest.layers().iter().find(|l| {
                l.annotations()
                    .as_ref()
                    .and_then(|a| a.get(crate::format::annotations::KIND_ANNOTATION))
                    .is_some_and(|k| k == "signature")
            });
            let Some(l) = layer else {
                return Ok(None);
            };
            let mut r = layout::open_verified(src, l)?;
            let t = read(&mut r)?;
            // (the rest, so the blob's digest is checked at its end)
            io::copy(&mut r, &mut io::sink())
                .map_err(|e| Error::from_io(&e, format!("{}: model.sig: {e}", src.describe())))?;
            Ok(Some(t))
        }
    }
}

/// The "not in the manifest" error, with `why` the mapping by diff_id failed appended.
fn not_in_manifest(what: &str, layer: &str, why: &str) -> Error {
    Error::input(format!(
        "{what}: the metadata names layer {layer}, which is not in the manifest{why}: the layers were changed after `mlart bundle` (`skopeo copy` without `--preserve-digests`, say, compresses the uncompressed model layers). Copy the bundle again with `mlart copy` or `skopeo copy --preserve-digests`"
    ))
}

/// A reader that hashes what is read through it, when asked to: the uncompressed stream of a
/// layer matched by its diff_id.
enum MaybeHash<R> {
    Plain(R),
    Hashed(crate::format::digest::HashReader<R>),
}

impl<R: Read> MaybeHash<R> {
    fn new(inner: R, hash: bool) -> Self {
        if hash {
            MaybeHash::Hashed(crate::format::digest::HashReader::new(inner))
        } else {
            MaybeHash::Plain(inner)
        }
    }

    /// With a diff_id: the stream read (to its end) must hash to it.
    fn check(self, what: &str, layer: &Descriptor, diff_id: Option<&Digest>) -> Result<()> {
        let (MaybeHash::Hashed(h), Some(want)) = (self, diff_id) else {
            return Ok(());
        };
        let (_, got, _) = h.finish();
        if &got != want {
            return Err(Error::integrity(format!(
                "{what}: layer {} ({}) decompresses to {got}, not to {want}, its entry in the image config's rootfs.diff_ids and the layer the metadata names: its content was changed after `mlart bundle`. Nothing was written",
                layer.digest(),
                layer.media_type()
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for MaybeHash<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MaybeHash::Plain(r) => r.read(buf),
            MaybeHash::Hashed(r) => r.read(buf),
        }
    }
}

struct Progress<'a, R> {
    inner: R,
    digest: Digest,
    f: &'a (dyn Fn(&Digest, BlobEvent) + Sync),
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.f)(&self.digest, BlobEvent::Bytes(n as u64));
        Ok(n)
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
