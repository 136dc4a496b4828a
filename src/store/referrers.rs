//! Referrers of a bundle (signatures, attestations): read them from any source, push them to a
//! registry, add them to a layout directory or an archive.

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::reference::Reference;
use crate::registry::*;
use crate::store::layout;
use crate::store::Source;

/// A referrer to push (a signature or attestation manifest): its raw manifest and the blobs
/// it names (config and layers: in memory when small, an attestation's envelope of a large
/// bundle in a temp file, `Blob`).
#[derive(Clone, Debug)]
pub struct Referrer {
    pub manifest: Vec<u8>,
    pub blobs: Vec<Blob>,
}

/// Blobs up to this size stay in memory; past it they go to an unlinked temp file.
pub const BLOB_SPILL: usize = 4 << 20;

/// One blob of a referrer: its digest, size and bytes (held in memory, or in an unlinked
/// temp file of `$TMPDIR` that goes with the last clone). Cheap to clone.
#[derive(Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    data: std::sync::Arc<BlobData>,
}

enum BlobData {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = match *self.data {
            BlobData::Memory(_) => "memory",
            BlobData::File(_) => "temp file",
        };
        write!(f, "Blob({} {} bytes, {on})", self.digest, self.size)
    }
}

impl Blob {
    /// A blob held in memory.
    pub fn of(bytes: Vec<u8>) -> Blob {
        Blob {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            data: std::sync::Arc::new(BlobData::Memory(bytes)),
        }
    }

    /// The blob as a `BlobRef` (digest and size).
    pub fn blob_ref(&self) -> crate::store::BlobRef {
        crate::store::BlobRef {
            digest: self.digest.clone(),
            size: self.size,
        }
    }

    /// Its bytes when they are in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &*self.data {
            BlobData::Memory(b) => Some(b),
            BlobData::File(_) => None,
        }
    }

    /// Whether it is in a temp file, not in memory.
    pub fn on_disk(&self) -> bool {
        matches!(*self.data, BlobData::File(_))
    }

    /// Its bytes from the start (each call a new reader; a file is read at offsets, so
    /// readers of clones do not disturb each other).
    pub fn open(&self) -> crate::store::BlobRead<'_> {
        match &*self.data {
            BlobData::Memory(b) => Box::new(&b[..]),
            BlobData::File(f) => Box::new(std::io::BufReader::with_capacity(
                64 << 10,
                At { f, pos: 0 },
            )),
        }
    }

    /// All its bytes (tests, and small blobs).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut self.open(), &mut v)?;
        Ok(v)
    }
}

/// Reads a file from `pos` with positional reads.
struct At<'a> {
    f: &'a std::fs::File,
    pos: u64,
}

impl std::io::Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(self.f, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes a `Blob`, hashing and counting on the way: memory up to `BLOB_SPILL` bytes, an
/// unlinked temp file past it.
pub struct BlobWriter {
    memory: Vec<u8>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    hash: sha2::Sha256,
    size: u64,
    spill: usize,
}

impl Default for BlobWriter {
    fn default() -> Self {
        Self::new(BLOB_SPILL)
    }
}

impl BlobWriter {
    /// Up to `spill` bytes stay in memory.
    pub fn new(spill: usize) -> BlobWriter {
        BlobWriter {
            memory: Vec::new(),
            file: None,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
            size: 0,
            spill,
        }
    }

    pub fn finish(self) -> std::io::Result<Blob> {
        let data = match self.file {
            Some(w) => BlobData::File(w.into_inner().map_err(|e| e.into_error())?),
            None => BlobData::Memory(self.memory),
        };
        Ok(Blob {
            digest: Digest::from_hasher(self.hash),
            size: self.size,
            data: std::sync::Arc::new(data),
        })
    }
}

impl std::io::Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.hash, buf);
        self.size += buf.len() as u64;
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => {
                self.memory.extend_from_slice(buf);
                if self.memory.len() > self.spill {
                    let mut f = std::io::BufWriter::with_capacity(64 << 10, tempfile::tempfile()?);
                    f.write_all(&self.memory)?;
                    self.memory = Vec::new();
                    self.file = Some(f);
                }
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Referrer {
    pub fn from_signature(sig: &crate::format::signature::OciSignature) -> Referrer {
        Referrer {
            manifest: sig.manifest.clone(),
            blobs: vec![Blob::of(sig.config.clone()), Blob::of(sig.bundle.clone())],
        }
    }

    /// Whether it holds an attestation (its artifactType names one), not a signature.
    pub fn is_attestation(&self) -> bool {
        self.descriptor()
            .ok()
            .and_then(|d| d["artifactType"].as_str().map(String::from))
            .is_some_and(|a| {
                crate::format::attestation::AttestationKind::of_artifact_type(&a).is_some()
            })
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// Its entry in a referrers index: mediaType, digest, size, artifactType (the manifest's,
    /// else its config's media type) and annotations, as the distribution spec lists them.
    pub(crate) fn descriptor(&self) -> Result<serde_json::Value> {
        let m: serde_json::Value = serde_json::from_slice(&self.manifest).map_err(|e| {
            Error::input(format!(
                "signature manifest {} is not JSON: {e}",
                self.digest()
            ))
        })?;
        let mut d = serde_json::json!({
            "mediaType": m.get("mediaType").and_then(|v| v.as_str()).unwrap_or(MANIFEST_MEDIA_TYPE),
            "digest": self.digest().as_str(),
            "size": self.manifest.len(),
        });
        let at = m
            .get("artifactType")
            .or_else(|| m.get("config").and_then(|c| c.get("mediaType")));
        if let Some(at) = at {
            d["artifactType"] = at.clone();
        }
        if let Some(a) = m.get("annotations").filter(|a| a.is_object()) {
            d["annotations"] = a.clone();
        }
        Ok(d)
    }

    /// The same entry as an OCI descriptor (a layout's index.json lists it).
    pub(crate) fn oci_descriptor(&self) -> Result<oci_spec::image::Descriptor> {
        serde_json::from_value(self.descriptor()?)
            .map_err(|e| Error::input(format!("signature {}: {e}", self.digest())))
    }
}

/// The signature referrers of `subject` that `src` holds (index.json of a layout, the
/// referrers of a registry), with their blobs. Signatures of other manifests are skipped.
pub fn signatures_of(src: &dyn Source, subject: &Digest) -> Result<Vec<Referrer>> {
    let found: Vec<_> = src
        .referrers(subject)?
        .into_iter()
        .filter(layout::is_signature)
        .collect();
    read_referrers(src, subject, found)
}

/// The attestation referrers (provenance, ML-BOM) of `subject` that `src` holds.
pub fn attestations_of(src: &dyn Source, subject: &Digest) -> Result<Vec<Referrer>> {
    let found = src.attestation_referrers(subject)?;
    read_referrers(src, subject, found)
}

/// Every referrer of `subject` a copy carries: its signatures, then its attestations.
pub fn referrers_of(src: &dyn Source, subject: &Digest) -> Result<Vec<Referrer>> {
    let mut out = signatures_of(src, subject)?;
    out.extend(attestations_of(src, subject)?);
    Ok(out)
}

/// Read the referrer manifests listed in `found` whose subject is `subject`, with their blobs.
fn read_referrers(
    src: &dyn Source,
    subject: &Digest,
    found: Vec<oci_spec::image::Descriptor>,
) -> Result<Vec<Referrer>> {
    let what = src.describe();
    let mut out = Vec::new();
    for d in found {
        let raw = layout::read_blob(src, &d, crate::format::media_type::MAX_MANIFEST_BYTES)?;
        let m: oci_spec::image::ImageManifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::input(format!(
                "{what}: signature {} is not a valid OCI manifest: {e}",
                d.digest()
            ))
        })?;
        let signs_subject = m
            .subject()
            .as_ref()
            .is_some_and(|s| s.digest().to_string() == subject.as_str());
        if !signs_subject {
            continue;
        }
        let mut blobs = Vec::new();
        for b in std::iter::once(m.config()).chain(m.layers().iter()) {
            // (streamed: an attestation's envelope of a large bundle is tens of MB, kept in a
            // temp file past `BLOB_SPILL`)
            let r = crate::store::BlobRef::of(b)?;
            let mut w = BlobWriter::default();
            let mut from = src.open_blob_verified(&r.digest, r.size)?;
            std::io::copy(&mut from, &mut w)
                .and_then(|_| w.finish())
                .map(|blob| blobs.push(blob))
                .map_err(|e| Error::from_io(&e, format!("{what}: blob {}: {e}", r.digest)))?;
        }
        out.push(Referrer {
            manifest: raw,
            blobs,
        });
    }
    Ok(out)
}

/// Add referrers of a bundle to a layout directory or an archive (`mlart attest`): their blobs
/// and index.json entries. A layout is changed in place (blobs first, then index.json renamed
/// over the old one); an archive is written again beside itself and renamed over it. Returns
/// how many were not listed yet.
pub fn add_to_local(path: &std::path::Path, refs: &[Referrer]) -> Result<usize> {
    if path.is_dir() {
        layout::add_referrers(path, refs)
    } else {
        crate::store::archive::add_referrers(path, refs)
    }
}

/// The blobs of `refs` (configs, layers, manifests) that `src` lacks or holds damaged (other
/// bytes, cut short): they are content-addressed, so the good copy is written again.
pub(crate) fn blobs_to_write(src: &dyn Source, refs: &[Referrer]) -> Vec<Blob> {
    let mut out: Vec<Blob> = Vec::new();
    for b in refs.iter().flat_map(|r| {
        r.blobs
            .iter()
            .cloned()
            .chain(std::iter::once(Blob::of(r.manifest.clone())))
    }) {
        let intact = src
            .open_blob_verified(&b.digest, b.size)
            .is_ok_and(|mut r| std::io::copy(&mut r, &mut std::io::sink()).is_ok());
        if !intact && !out.iter().any(|o| o.digest == b.digest) {
            out.push(b);
        }
    }
    out
}

/// `index` (a layout's index.json, `what` for messages) listing `refs` as well: the new
/// bytes and how many entries were added, or None when it lists them all already.
pub(crate) fn index_listing(
    what: &str,
    index: &[u8],
    refs: &[Referrer],
) -> Result<Option<(Vec<u8>, usize)>> {
    let mut index: serde_json::Value = serde_json::from_slice(index)
        .map_err(|e| Error::input(format!("{what}: index.json is not JSON: {e}")))?;
    let manifests = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| Error::input(format!("{what}: index.json has no `manifests` list")))?;
    let mut added = 0;
    for r in refs {
        let d = r.descriptor()?;
        if !manifests.iter().any(|x| x["digest"] == d["digest"]) {
            manifests.push(d);
            added += 1;
        }
    }
    Ok((added > 0).then(|| (crate::format::json::to_canonical_bytes(&index), added)))
}

/// What `push_referrers` did.
#[derive(Clone, Debug, Default)]
pub struct ReferrersPushed {
    /// Signature manifests pushed.
    pub pushed: usize,
    /// The fallback tag (`sha256-<hex>`) updated because the registry has no referrers API.
    pub tag: Option<String>,
}

/// Push referrers (signature manifests) of `subject` to `dst`'s repository: their blobs, each
/// manifest by digest, then, where the registry has no referrers API, the fallback index at
/// tag `sha256-<hex>` (the one graph copy's referrer step).
pub fn push_referrers(
    dst: &Remote,
    subject: &Digest,
    referrers: &[Referrer],
) -> Result<ReferrersPushed> {
    if referrers.is_empty() {
        return Ok(ReferrersPushed::default());
    }
    let sink = crate::store::registry_sink::RegistrySink::new(dst.clone());
    let tag = crate::store::copy::copy_referrers(&sink, subject, referrers)?;
    Ok(ReferrersPushed {
        pushed: referrers.len(),
        tag,
    })
}

/// The registry side of storing referrers whose blobs are in: each manifest by digest, then,
/// where the registry does not list them (no referrers API), add them to the fallback index
/// at tag `sha256-<hex>`. Returns that tag when it was updated.
pub(crate) fn put_referrer_manifests(
    dst: &Remote,
    subject: &Digest,
    referrers: &[Referrer],
) -> Result<Option<String>> {
    let what = dst.describe();
    block_on(async {
        dst.prime().await;
        for r in referrers {
            let desc = r.descriptor()?;
            let mt = desc["mediaType"].as_str().unwrap_or(MANIFEST_MEDIA_TYPE);
            dst.at_digest(&r.digest())
                .put_manifest(
                    &r.manifest,
                    mt,
                    &format!("pushing signature {}", r.digest()),
                )
                .await?;
        }
        Ok::<(), Error>(())
    })?;

    // Does the registry list them now (referrers API, or already in the fallback index)?
    let listed: std::collections::HashSet<String> = dst
        .referrers(subject, None)?
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    let missing: Vec<&Referrer> = referrers
        .iter()
        .filter(|r| !listed.contains(r.digest().as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }

    // The referrers tag schema: fetch the index (none yet: empty), add, push.
    let tag = format!("sha256-{}", subject.hex());
    let tagged = dst.at(Reference::with_tag(
        dst.reference.registry().to_string(),
        dst.reference.repository().to_string(),
        tag.clone(),
    ));
    let existing = block_on(async {
        retry(&dst.cancel, &what, || async {
            dst.client
                .pull_manifest_raw(&tagged.reference, &dst.auth, &[INDEX_MEDIA_TYPE])
                .await
        })
        .await
    });
    let mut index = match existing {
        Ok((raw, _)) => serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .filter(|v| v["manifests"].is_array())
            .ok_or_else(|| {
                Error::input(format!(
                    "{what}: the referrers tag {tag} holds something else than an image index: remove it, or push to a registry with the referrers API"
                ))
            })?,
        Err(e) if is_not_found(&e) => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [],
        }),
        Err(e) => {
            return Err(dst.map_err(&what,
                &format!("fetching the referrers tag {tag}"),
                e,
            ))
        }
    };
    let manifests = index["manifests"].as_array_mut().expect("checked above");
    for r in missing {
        let d = r.descriptor()?;
        if !manifests.iter().any(|m| m["digest"] == d["digest"]) {
            manifests.push(d);
        }
    }
    let body = crate::format::json::to_canonical_bytes(&index);
    block_on(tagged.put_manifest(
        &body,
        INDEX_MEDIA_TYPE,
        &format!("pushing the referrers tag {tag}"),
    ))?;
    Ok(Some(tag))
}
