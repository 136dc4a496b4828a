//! A registry as a store: `RegistrySource` reads a bundle, blob openers for parallel copies.

use crate::error::{Error, IoContext, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::{Digest, VerifyReader};
use crate::format::media_type::INDEX_MEDIA_TYPE;
use crate::format::reference::Location;
use crate::registry::*;
use crate::store::layout::{self, Source};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bundle in a registry, read through the `Source` interface: `index_bytes` is a one-entry
/// index synthesised from the manifest (tagged with the reference's tag), the manifest itself
/// is served from memory, every other blob is streamed.
pub struct RegistrySource {
    remote: Remote,
    manifest: Option<(Vec<u8>, Digest, String)>,
    /// Referrer manifests listed by `referrers`: read from the manifests endpoint.
    referrer_manifests: std::collections::HashSet<Digest>,
}

impl RegistrySource {
    pub fn new(remote: Remote) -> Self {
        RegistrySource {
            remote,
            manifest: None,
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

    fn load(&mut self) -> Result<&(Vec<u8>, Digest, String)> {
        if self.manifest.is_none() {
            self.manifest = Some(self.remote.manifest()?);
        }
        Ok(self.manifest.as_ref().expect("loaded"))
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn index_bytes(&mut self) -> Result<Vec<u8>> {
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

    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        if let Some((raw, d, _)) = &self.manifest {
            if d == digest {
                return Ok(Box::new(io::Cursor::new(raw.clone())));
            }
        }
        if self.referrer_manifests.contains(digest) {
            let raw = self.remote.manifest_by_digest(digest)?;
            return Ok(Box::new(io::Cursor::new(raw)));
        }
        Ok(Box::new(self.remote.open_blob(digest)?))
    }

    fn open_blob_verified(&mut self, digest: &Digest, size: u64) -> Result<Box<dyn Read + '_>> {
        if self.referrer_manifests.contains(digest)
            || self.manifest.as_ref().is_some_and(|(_, d, _)| d == digest)
        {
            let r = self.open_blob(digest)?;
            return Ok(Box::new(VerifyReader::new(r, digest.clone(), size)));
        }
        Ok(Box::new(self.remote.open_blob_verified(digest, size)?))
    }

    /// The images of an index: from the manifests endpoint (registries do not serve
    /// manifests as blobs), by digest, hash checked.
    fn read_manifest(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        layout::check_manifest_size(&self.describe(), digest, size)?;
        if let Some((raw, d, _)) = &self.manifest {
            if d == digest {
                return Ok(raw.clone());
            }
        }
        self.remote.manifest_by_digest(digest)
    }

    /// The signature referrers of `subject`: the referrers API, or the fallback tag.
    fn referrers(&mut self, subject: &Digest) -> Result<Vec<oci_spec::image::Descriptor>> {
        let found = self
            .remote
            .referrers(subject, Some(crate::format::media_type::BUNDLE_MEDIA_TYPE))?;
        for d in &found {
            self.referrer_manifests
                .insert(Digest::parse(d.digest().as_ref()).map_err(Error::Input)?);
        }
        Ok(found)
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

/// Opens blobs for reading from any thread (the `Source` trait is single-threaded).
pub trait BlobOpen: Send + Sync {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
}

pub(crate) struct LayoutBlobs(PathBuf);

impl BlobOpen for LayoutBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let p = self.0.join("blobs/sha256").join(digest.hex());
        Ok(Box::new(File::open(&p).ctx("reading", &p)?))
    }
}

pub(crate) struct ArchiveBlobs {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl ArchiveBlobs {
    fn index(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx("opening", path)?;
        let mut entries = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        let bad =
            |e: io::Error| Error::input(format!("{} is not an OCI archive: {e}", path.display()));
        for e in ar.entries_with_seek().map_err(bad)? {
            let e = e.map_err(bad)?;
            let name = e.path().map_err(bad)?.to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").to_string();
            if e.header().entry_type().is_file() {
                entries.insert(name, (e.raw_file_position(), e.size()));
            }
        }
        Ok(ArchiveBlobs {
            path: path.to_path_buf(),
            entries,
        })
    }
}

impl BlobOpen for ArchiveBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let (off, size) = *self.entries.get(&name).ok_or_else(|| {
            Error::input(format!(
                "{}: {name} is missing from the archive",
                self.path.display()
            ))
        })?;
        let mut f = File::open(&self.path).ctx("opening", &self.path)?;
        f.seek(SeekFrom::Start(off)).ctx("reading", &self.path)?;
        Ok(Box::new(f.take(size)))
    }
}

pub(crate) struct RemoteBlobs(Remote);

impl BlobOpen for RemoteBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }
}

/// A `BlobOpen` for a location.
pub fn blob_opener(loc: &Location, opts: &Options) -> Result<Arc<dyn BlobOpen>> {
    match loc {
        Location::Registry { reference, .. } => {
            Ok(Arc::new(RemoteBlobs(Remote::new(reference.clone(), opts)?)))
        }
        Location::Local { path, .. } => {
            if path.is_dir() {
                Ok(Arc::new(LayoutBlobs(path.clone())))
            } else {
                Ok(Arc::new(ArchiveBlobs::index(path)?))
            }
        }
    }
}
