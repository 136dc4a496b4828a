//! A store in memory: the small blobs of signature referrers on their way to a sink, and the
//! copy's tests (with a counting wrapper).

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::media_type::INDEX_MEDIA_TYPE;
use crate::store::referrers::Referrer;
use crate::store::{BlobRead, BlobRef, Opener, PutError, Sent, Sink, Source};
use bytes::Bytes;
use oci_spec::image::Descriptor;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;

/// Blobs (manifests among them, as in a layout) by digest, and index.json's entries.
#[derive(Default)]
pub struct MemoryStore {
    blobs: Mutex<HashMap<Digest, Bytes>>,
    index: Mutex<Vec<Descriptor>>,
}

impl MemoryStore {
    /// Hold `data`; returns its digest and size.
    pub fn insert(&self, data: impl Into<Bytes>) -> BlobRef {
        let data = data.into();
        let b = BlobRef {
            digest: Digest::of(&data),
            size: data.len() as u64,
        };
        self.lock_blobs().insert(b.digest.clone(), data);
        b
    }

    /// The blob, if held.
    pub fn get(&self, d: &Digest) -> Option<Bytes> {
        self.lock_blobs().get(d).cloned()
    }

    /// Drop a blob (tests: a sink that lost one).
    pub fn remove(&self, d: &Digest) -> Option<Bytes> {
        self.lock_blobs().remove(d)
    }

    /// index.json's entries: tagged manifests, then referrers, in the order stored.
    pub fn entries(&self) -> Vec<Descriptor> {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lock_blobs(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Bytes>> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_entry(&self, d: Descriptor) {
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        index.retain(|e| e.digest() != d.digest() || e.annotations() != d.annotations());
        index.push(d);
    }
}

impl Source for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn index_bytes(&self) -> Result<Vec<u8>> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": self.entries(),
        });
        Ok(serde_json::to_vec(&index).expect("JSON"))
    }
    fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>> {
        let b = self
            .get(digest)
            .ok_or_else(|| Error::input(format!("memory: blob {digest} is missing")))?;
        Ok(Box::new(io::Cursor::new(b)))
    }
}

impl Sink for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }
    fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
        Ok(self.lock_blobs().contains_key(&blob.digest))
    }
    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        let mut r = open().map_err(PutError::Open)?;
        let mut v = Vec::with_capacity(blob.size as usize);
        r.read_to_end(&mut v).map_err(PutError::Read)?;
        sent(Sent::Bytes(v.len() as u64));
        self.lock_blobs().insert(blob.digest.clone(), v.into());
        Ok(())
    }
    fn put_manifest(&self, desc: &Descriptor, raw: &[u8], tag: Option<&str>) -> Result<()> {
        self.insert(raw.to_vec());
        if let Some(t) = tag {
            self.add_entry(crate::store::layout::with_ref_name(desc, t));
        }
        Ok(())
    }
    fn put_referrers(&self, _subject: &Digest, referrers: &[Referrer]) -> Result<Option<String>> {
        for r in referrers {
            self.insert(r.manifest.clone());
            self.add_entry(r.oci_descriptor()?);
        }
        Ok(None)
    }
}
