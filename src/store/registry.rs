//! A registry as a store: `RegistrySource` reads a bundle (the `Source` over `registry::Remote`);
//! the sink side is `registry_sink::RegistrySink`.

use crate::error::{Error, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::{Digest, VerifyReader};
use crate::format::media_type::INDEX_MEDIA_TYPE;
use crate::format::reference::{Location, Reference};
use crate::registry::*;
use crate::store::{layout, BlobRead, Source};
use std::collections::HashSet;
use std::io::{self, Read};
use std::sync::{Mutex, OnceLock};

/// A bundle in a registry, read through the `Source` interface: `index_bytes` is a one-entry
/// index synthesised from the manifest (tagged with the reference's tag), the manifest itself
/// is served from memory, every other blob is streamed.
pub struct RegistrySource {
    remote: Remote,
    manifest: OnceLock<(Vec<u8>, Digest, String)>,
    /// Referrer manifests listed by `referrers`: read from the manifests endpoint.
    referrer_manifests: Mutex<HashSet<Digest>>,
}

impl RegistrySource {
    pub fn new(remote: Remote) -> Self {
        RegistrySource {
            remote,
            manifest: OnceLock::new(),
            referrer_manifests: Default::default(),
        }
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The tag the synthesised index carries (the reference's tag, when it has one).
    pub fn tag(&self) -> Option<String> {
        self.remote.reference.tag().map(str::to_string)
    }

    fn load(&self) -> Result<&(Vec<u8>, Digest, String)> {
        if let Some(m) = self.manifest.get() {
            return Ok(m);
        }
        let m = self.remote.manifest()?;
        Ok(self.manifest.get_or_init(|| m))
    }

    /// The manifest the reference names, when it was fetched: served from memory.
    fn cached(&self, digest: &Digest) -> Option<&Vec<u8>> {
        self.manifest
            .get()
            .filter(|(_, d, _)| d == digest)
            .map(|(raw, _, _)| raw)
    }

    fn is_referrer(&self, digest: &Digest) -> bool {
        self.referrer_manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    /// Note the manifests of `found` as referrers (read from the manifests endpoint later).
    fn remember_referrers(
        &self,
        found: Vec<oci_spec::image::Descriptor>,
    ) -> Result<Vec<oci_spec::image::Descriptor>> {
        let mut known = self
            .referrer_manifests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for d in &found {
            known.insert(Digest::parse(d.digest().as_ref()).map_err(Error::Input)?);
        }
        drop(known);
        Ok(found)
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn skopeo_name(&self, _tag: Option<&str>) -> Option<String> {
        Some(format!("docker://{}", self.remote.describe()))
    }

    fn index_bytes(&self) -> Result<Vec<u8>> {
        let tag = self.tag();
        let (raw, digest, mt) = self.load()?;
        let mut d = serde_json::json!({
            "mediaType": mt,
            "digest": digest.as_str(),
            "size": raw.len(),
        });
        if let Some(t) = tag {
            d["annotations"] = serde_json::json!({ REF_NAME: t });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [d],
        });
        Ok(serde_json::to_vec(&index).expect("JSON"))
    }

    fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>> {
        if let Some(raw) = self.cached(digest) {
            return Ok(Box::new(io::Cursor::new(raw.clone())));
        }
        if self.is_referrer(digest) {
            let raw = self.remote.manifest_by_digest(digest)?;
            return Ok(Box::new(io::Cursor::new(raw)));
        }
        Ok(Box::new(self.remote.open_blob(digest)?))
    }

    fn open_blob_verified(&self, digest: &Digest, size: u64) -> Result<BlobRead<'_>> {
        if self.is_referrer(digest) || self.cached(digest).is_some() {
            let r = self.open_blob(digest)?;
            return Ok(Box::new(VerifyReader::new(r, digest.clone(), size)));
        }
        Ok(Box::new(self.remote.open_blob_verified(digest, size)?))
    }

    fn open_blob_verified_from(
        &self,
        digest: &Digest,
        size: u64,
        from: crate::format::digest::Resume,
    ) -> Result<BlobRead<'_>> {
        if self.is_referrer(digest) || self.cached(digest).is_some() {
            // A manifest, held in memory: the rest of it from there.
            let mut r = self.open_blob(digest)?;
            io::copy(&mut (&mut r).take(from.have), &mut io::sink())
                .map_err(|e| Error::from_io(&e, format!("blob {digest}: {e}")))?;
            return Ok(Box::new(VerifyReader::resume(
                r,
                digest.clone(),
                size,
                from,
            )));
        }
        Ok(Box::new(
            self.remote.open_blob_verified_from(digest, size, from)?,
        ))
    }

    /// A Range request (a manifest held in memory: its rest from there).
    fn open_blob_at(&self, digest: &Digest, size: u64, offset: u64) -> Result<BlobRead<'_>> {
        if self.is_referrer(digest) || self.cached(digest).is_some() {
            let mut r = self.open_blob(digest)?;
            io::copy(&mut (&mut r).take(offset), &mut io::sink())
                .map_err(|e| Error::from_io(&e, format!("blob {digest}: {e}")))?;
            return Ok(Box::new(r.take(size.saturating_sub(offset))));
        }
        let r = self.remote.open_blob_from(digest, offset)?;
        Ok(Box::new(r.take(size.saturating_sub(offset))))
    }

    /// The images of an index: from the manifests endpoint (registries do not serve
    /// manifests as blobs), by digest, hash checked.
    fn read_manifest(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        layout::check_manifest_size(&self.describe(), digest, size)?;
        if let Some(raw) = self.cached(digest) {
            return Ok(raw.clone());
        }
        self.remote.manifest_by_digest(digest)
    }

    /// The signature referrers of `subject`: the referrers API, or the fallback tag.
    fn referrers(&self, subject: &Digest) -> Result<Vec<oci_spec::image::Descriptor>> {
        let found = self
            .remote
            .referrers(subject, Some(crate::format::media_type::BUNDLE_MEDIA_TYPE))?;
        self.remember_referrers(found)
    }

    /// The attestation referrers of `subject` (every referrer listed, those of an attestation
    /// artifactType kept).
    fn attestation_referrers(&self, subject: &Digest) -> Result<Vec<oci_spec::image::Descriptor>> {
        let found: Vec<_> = self
            .remote
            .referrers(subject, None)?
            .into_iter()
            .filter(crate::store::layout::is_attestation)
            .collect();
        self.remember_referrers(found)
    }

    fn origin(&self) -> Option<Reference> {
        Some(self.remote.reference.clone())
    }
}

/// Open any location for reading: a registry reference, a layout directory or an archive.
/// Returns the source and the tag to resolve.
pub fn open_location(loc: &Location, opts: &Options) -> Result<(Box<dyn Source>, Option<String>)> {
    match loc {
        Location::Registry { reference, .. } => {
            let remote = Remote::new(reference.clone(), opts)?;
            let src = RegistrySource::new(remote);
            let tag = src.tag();
            Ok((Box::new(src), tag))
        }
        Location::Local { path, tag } => Ok((layout::open(path)?, tag.clone())),
    }
}
