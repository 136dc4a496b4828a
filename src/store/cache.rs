//! The local blob cache (`$XDG_CACHE_HOME/mlart/blobs/sha256/`): a sink for `pull`, which
//! fetches a bundle's layers into it through the one copy, then extracts them from there.

use crate::error::Result;
use crate::format::digest::{Digest, VerifyReader};
use crate::store::layout::{write_blob_file, write_bytes_file};
use crate::store::referrers::Referrer;
use crate::store::{BlobRef, Opener, PutError, Sent, Sink};
use oci_spec::image::Descriptor;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Blobs by digest under `dir`; what it has is re-hashed before it counts.
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// The cache rooted at `root` (blobs in `root/blobs/sha256`).
    pub fn new(root: &Path) -> Self {
        BlobCache {
            dir: root.join("blobs").join("sha256"),
        }
    }

    /// Where the blob is (or would be).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }
}

impl Sink for BlobCache {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    /// There and intact (hashed again); a corrupt one is removed and fetched again.
    fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
        let path = self.path(&blob.digest);
        if !path.is_file() {
            return Ok(false);
        }
        let ok = File::open(&path)
            .map(|f| {
                let mut v = VerifyReader::new(f, blob.digest.clone(), blob.size);
                io::copy(&mut v, &mut io::sink()).is_ok()
            })
            .unwrap_or(false);
        if !ok {
            tracing::warn!("cached blob {} is corrupt; fetching it again", blob.digest);
            let _ = fs::remove_file(&path);
        }
        Ok(ok)
    }

    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        write_blob_file(&self.dir, blob, open, sent)
    }

    /// The cache holds blobs only: a manifest is stored as one, untagged.
    fn put_manifest(&self, _desc: &Descriptor, raw: &[u8], _tag: Option<&str>) -> Result<()> {
        write_bytes_file(&self.dir, raw)
    }

    /// Referrers are not cached.
    fn put_referrers(&self, _subject: &Digest, _referrers: &[Referrer]) -> Result<Option<String>> {
        Ok(None)
    }
}
