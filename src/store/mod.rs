//! Where blobs and manifests live: the OCI layout directory, the OCI archive, the registry (via
//! `registry`), the local blob cache; and the one graph copy between any two of them.
//!
//! Two small interfaces carry everything: a [`Source`] resolves a reference to a manifest,
//! opens blobs (verified as they are read) and lists referrers; a [`Sink`] says whether it has
//! a blob, stores one (reading it to its verified end before it counts), stores a manifest
//! (tagged or by digest) and the referrers of one. [`copy::copy_graph`] moves a bundle from
//! any `Source` to any `Sink`; push, pull, copy and the base layers of `bundle` all use it.

pub mod archive;
pub mod base;
pub mod cache;
pub mod copy;
pub mod entries;
pub mod layout;
pub mod layout_tags;
pub mod memory;
pub mod metadata;
pub mod place;
pub mod previous;
pub mod push;
pub mod referrers;
pub mod registry;
pub mod registry_sink;
pub mod resolve;
pub mod resumable;
pub mod runs;
pub mod spool;

use crate::error::{Error, Result};
use crate::format::digest::{Digest, Resume, VerifyReader};
use crate::format::reference::Reference;
use oci_spec::image::{Descriptor, ImageIndex};
use std::io::{self, Read};

/// A blob reader that may move to another thread.
pub type BlobRead<'a> = Box<dyn Read + Send + 'a>;

/// A place to read a bundle from: a layout directory, an archive, a registry repository.
/// Methods take `&self` and implementations are `Send + Sync`, so one copy can read several
/// blobs at once.
pub trait Source: Send + Sync {
    /// A description for messages (`path`, `path (archive)`, a reference).
    fn describe(&self) -> String;
    /// How skopeo names this source (`docker://REF`, `oci:DIR:TAG`, `oci-archive:FILE:TAG`),
    /// for a hint that runs skopeo; None where it has no name.
    fn skopeo_name(&self, _tag: Option<&str>) -> Option<String> {
        None
    }
    /// The raw `index.json` (a registry synthesises a one-entry index from its manifest).
    fn index_bytes(&self) -> Result<Vec<u8>>;
    /// A reader of the raw blob (not verified; use `open_blob_verified`).
    fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>>;
    /// A reader of the blob that fails (`InvalidData`) at its end unless it has `size` bytes
    /// with `digest`. A registry overrides this to hash on its download task.
    fn open_blob_verified(&self, digest: &Digest, size: u64) -> Result<BlobRead<'_>> {
        let r = self.open_blob(digest)?;
        Ok(Box::new(VerifyReader::new(r, digest.clone(), size)))
    }
    /// The rest of the blob after `from.have` bytes, verified at its end as a whole. A
    /// registry overrides this with a Range request; here the first bytes are read and dropped.
    fn open_blob_verified_from(
        &self,
        digest: &Digest,
        size: u64,
        from: Resume,
    ) -> Result<BlobRead<'_>> {
        let mut r = self.open_blob(digest)?;
        let skipped = io::copy(&mut (&mut r).take(from.have), &mut io::sink())
            .map_err(|e| Error::from_io(&e, format!("{}: blob {digest}: {e}", self.describe())))?;
        if skipped != from.have {
            return Err(Error::of(
                crate::error::Kind::Integrity,
                format!(
                    "{}: blob {digest} is shorter ({skipped} bytes) than the part already fetched",
                    self.describe()
                ),
            ));
        }
        Ok(Box::new(VerifyReader::resume(
            r,
            digest.clone(),
            size,
            from,
        )))
    }
    /// The raw bytes of the blob from `offset` on, at most `size - offset` of them, not
    /// verified: for a sink that checks the whole blob itself (a registry continuing an upload
    /// session checks the digest at the commit). Here the first bytes are read and dropped; an
    /// archive seeks, a registry asks for a Range.
    fn open_blob_at(&self, digest: &Digest, size: u64, offset: u64) -> Result<BlobRead<'_>> {
        let mut r = self.open_blob(digest)?;
        let skipped = io::copy(&mut (&mut r).take(offset), &mut io::sink())
            .map_err(|e| Error::from_io(&e, format!("{}: blob {digest}: {e}", self.describe())))?;
        if skipped != offset {
            return Err(Error::of(
                crate::error::Kind::Integrity,
                format!(
                    "{}: blob {digest} is shorter ({skipped} bytes) than the part the registry holds",
                    self.describe()
                ),
            ));
        }
        Ok(Box::new(r.take(size.saturating_sub(offset))))
    }
    /// A manifest by digest, verified against `digest` and `size` (refused above
    /// `MAX_MANIFEST_BYTES`): the images of an index. A layout or archive holds them as blobs;
    /// a registry overrides this with its manifests endpoint.
    fn read_manifest(&self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        let what = self.describe();
        resolve::check_manifest_size(&what, digest, size)?;
        let mut v = Vec::with_capacity(size as usize);
        self.open_blob_verified(digest, size)?
            .read_to_end(&mut v)
            .map_err(|e| Error::from_io(&e, format!("{what}: manifest {digest}: {e}")))?;
        Ok(v)
    }
    /// Candidate signature referrers of `subject` (their manifests still have to be read and
    /// checked). A layout keeps them in index.json; a registry overrides this with the
    /// referrers API or its fallback tag.
    fn referrers(&self, _subject: &Digest) -> Result<Vec<Descriptor>> {
        self.index_entries(layout::is_signature)
    }
    /// Candidate attestation referrers of `subject` (provenance, ML-BOM), as `referrers`
    /// lists signatures. A registry overrides this.
    fn attestation_referrers(&self, _subject: &Digest) -> Result<Vec<Descriptor>> {
        self.index_entries(layout::is_attestation)
    }
    /// The entries of index.json that `keep` keeps.
    fn index_entries(&self, keep: fn(&Descriptor) -> bool) -> Result<Vec<Descriptor>> {
        let what = self.describe();
        let index: ImageIndex = serde_json::from_slice(&self.index_bytes()?).map_err(|e| {
            Error::input(format!("{what}: index.json is not a valid OCI index: {e}"))
        })?;
        Ok(index
            .manifests()
            .iter()
            .filter(|d| keep(d))
            .cloned()
            .collect())
    }
    /// The registry repository this source is, when it is one: a sink on the same registry
    /// can mount blobs from it instead of copying them.
    fn origin(&self) -> Option<Reference> {
        None
    }
}

/// A blob to copy: its digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

impl BlobRef {
    pub fn of(d: &Descriptor) -> Result<BlobRef> {
        Ok(BlobRef {
            digest: Digest::parse(d.digest().as_ref()).map_err(Error::Input)?,
            size: d.size(),
        })
    }
}

/// Opens a blob's verified reader; called again for each retry of an upload.
pub type Opener<'a> = dyn Fn() -> Result<BlobRead<'a>> + Sync + 'a;

/// Where a sink that holds part of a blob wants it read from.
pub enum ReadFrom {
    /// The start, verified at the end.
    Start,
    /// After the bytes the sink holds and hashed (the cache's part of an interrupted pull),
    /// verified as a whole at the end.
    Verified(Resume),
    /// The raw bytes from this offset on, unverified (`Source::open_blob_at`): for a sink
    /// that checks the whole blob itself (a registry, at the commit of an upload session).
    Offset(u64),
}

/// Opens a blob from where the sink says: what `Sink::put_blob_resumable` gets.
pub type ResumeOpener<'a> = dyn Fn(ReadFrom) -> Result<BlobRead<'a>> + Sync + 'a;

/// Why `Sink::put_blob` failed: the source (opening or reading the blob) or the sink.
#[derive(Debug)]
pub enum PutError {
    /// Opening the blob at the source failed (the error as the source gave it).
    Open(Error),
    /// Reading it failed, including its verification at the end.
    Read(io::Error),
    /// Storing it failed.
    Sink(Error),
}

impl From<Error> for PutError {
    fn from(e: Error) -> Self {
        PutError::Sink(e)
    }
}

/// What a sink reports while it stores a blob.
#[derive(Clone, Copy, Debug)]
pub enum Sent {
    /// This many more bytes were read and stored (or sent).
    Bytes(u64),
    /// The upload starts again; this many bytes were sent in vain.
    Restart(u64),
    /// The sink already holds this many bytes of the blob (an upload session continued):
    /// they are not sent again.
    Resumed(u64),
}

/// A place to copy a bundle to: a layout directory (or an archive, which is a layout packed at
/// the end), a registry repository, the local blob cache.
pub trait Sink: Send + Sync {
    fn describe(&self) -> String;
    /// Whether the sink holds the blob (the cache re-hashes what it has, and drops it if bad).
    fn has_blob(&self, blob: &BlobRef) -> Result<bool>;
    /// Mount the blob from another repository of the same registry; Ok(false) when this sink
    /// cannot (the blob is then copied).
    fn mount_blob(&self, _blob: &BlobRef, _from: &Reference) -> Result<bool> {
        Ok(false)
    }
    /// Store a blob read from `open()` (a reader verified at its end): the blob counts only
    /// once it was read to that end. `open` is called again when an upload is retried.
    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError>;
    /// As `put_blob`, for a sink that can continue a blob it holds part of (the cache keeps
    /// what an interrupted pull fetched, a registry an upload session); the others start
    /// from the beginning.
    fn put_blob_resumable(
        &self,
        blob: &BlobRef,
        open: &ResumeOpener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        self.put_blob(blob, &|| open(ReadFrom::Start), sent)
    }
    /// Store a manifest: with `tag`, tagged (a registry PUTs it to the tag, a layout lists it
    /// in index.json); without, by digest only (the images of an index).
    fn put_manifest(&self, desc: &Descriptor, raw: &[u8], tag: Option<&str>) -> Result<()>;
    /// Store the referrers (signature manifests, whose blobs are already in) of `subject`.
    /// Returns the fallback tag updated by a registry without the referrers API.
    fn put_referrers(
        &self,
        subject: &Digest,
        referrers: &[referrers::Referrer],
    ) -> Result<Option<String>>;
}

/// What happens to one blob during a copy, for progress bars.
#[derive(Clone, Copy, Debug)]
pub enum BlobEvent {
    /// Work on a blob of this size starts.
    Start(u64),
    /// This many more bytes were read and sent.
    Bytes(u64),
    /// The upload failed and starts again; this many bytes were sent in vain.
    Retry(u64),
    /// An upload continues where an earlier one stopped: the registry holds this many bytes
    /// of the blob already (progress starts there).
    Resumed(u64),
    /// Finished: "uploaded", "skipped" or "mounted" (pull says "downloaded" and "cached").
    Done(&'static str),
}
