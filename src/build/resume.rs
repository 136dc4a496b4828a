//! Layers into a registry that a run again after an interruption need not send again
//! (`store::resumable` has the registry's side). A raw layer is hashed first, then skipped or
//! uploaded resumably. A tar layer is looked up by its plan: when an earlier run recorded what
//! it came out as and the registry has that blob, its files are hashed (their digests go into
//! the metadata as they would have from the tar writer) and, when their content is the
//! recorded one, the layer is not written again.

use crate::build::collect::SourceFile;
use crate::build::layer::{self, FileDigest, LayerDigests};
use crate::build::layers::{Built, Context, Plan};
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::store::place::{Method, Stamp};
use crate::store::resumable::Resumable;
use sha2::{Digest as _, Sha256};

/// A tar layer of more files than this is written again rather than looked up (the files'
/// digests are held until the content is compared: about 100 bytes each).
const MAX_RECALLED_FILES: usize = 100_000;

/// Raw layer `p` (file `f`, at `at` in the bundle's list): hashed, then skipped when the
/// registry has it, else uploaded from the file, continuing an interrupted upload.
pub(super) fn raw(
    r: &Resumable,
    i: usize,
    at: usize,
    f: &SourceFile,
    cx: &Context<'_>,
) -> Result<Built> {
    let path = f.abs();
    let stamp = Stamp::of(&path)?;
    // (the bar counts what is sent, skipped or held, not this first read)
    let mut fd = layer::hash_file(f, (cx.capture)(f), &|_| {}, cx.cancel)?;
    stamp.check(&path)?;
    let digest = fd.digest();
    r.put_file(&path, &digest, f.size, cx.progress, cx.cancel)?;
    fd.at = at;
    (cx.done)(i, f, fd)?;
    Ok(Built {
        digests: LayerDigests {
            digest: digest.clone(),
            size: f.size,
            diff_id: digest,
        },
        method: Method::Written,
    })
}

/// The hashes that name a tar layer: its plan (settings, and each file's path, mode, size and
/// mtime: known without reading a byte) and its content (the same with each file's sha256).
#[derive(Clone)]
pub(super) struct LayerHash {
    key: Sha256,
    content: Sha256,
}

impl LayerHash {
    /// The settings the layer's bytes depend on (and mlart's version: a tar writer that
    /// changes makes other bytes of the same files).
    fn new(p: &Plan, cx: &Context<'_>) -> LayerHash {
        let mut h = Sha256::new();
        for part in [
            "mlart tar layer v1",
            env!("CARGO_PKG_VERSION"),
            cx.prefix,
            p.compression.suffix(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(cx.mtime.to_le_bytes());
        h.update((p.files.len() as u64).to_le_bytes());
        LayerHash {
            key: h.clone(),
            content: h,
        }
    }

    fn file(h: &mut Sha256, f: &SourceFile, size: u64) {
        h.update(f.rel.as_bytes());
        h.update([0, u8::from(f.executable)]);
        h.update(size.to_le_bytes());
    }

    /// The plan's key: one `stat` per file.
    pub(super) fn key(p: &Plan, cx: &Context<'_>) -> Result<(LayerHash, Digest)> {
        use std::os::unix::fs::MetadataExt;
        let mut h = LayerHash::new(p, cx);
        for item in p.files.iter() {
            let (_, f) = item?;
            let m = std::fs::metadata(f.abs()).map_err(|e| Error::Io {
                context: format!("reading {}", f.abs().display()),
                source: e,
            })?;
            Self::file(&mut h.key, &f, m.len());
            h.key.update(m.mtime().to_le_bytes());
            h.key.update(m.mtime_nsec().to_le_bytes());
        }
        let key = Digest::from_hasher(h.key.clone());
        Ok((h, key))
    }

    /// One more file read, in the layer's order.
    pub(super) fn add(&mut self, f: &SourceFile, fd: &FileDigest) {
        Self::file(&mut self.content, f, fd.size);
        self.content.update(fd.sha256);
    }

    pub(super) fn content(self) -> Digest {
        Digest::from_hasher(self.content)
    }
}

/// Tar layer `p` (`i` in the plan), when an earlier run to this repository recorded it under
/// `key`, the registry has the blob and the files' content is the recorded one: their
/// digests go to `done` and the layer is not written. None: write it (the files are read
/// again).
pub(super) fn recall_tar(
    r: &Resumable,
    i: usize,
    p: &Plan,
    mut h: LayerHash,
    key: &Digest,
    cx: &Context<'_>,
) -> Result<Option<Built>> {
    let Some(rec) = r.recall(key) else {
        return Ok(None);
    };
    if p.files.len() > MAX_RECALLED_FILES || !r.has_blob(&rec.digest, rec.size)? {
        return Ok(None);
    }
    let mut read = Vec::new();
    let mut bytes = 0;
    for item in p.files.iter() {
        let (at, f) = item?;
        let mut fd = layer::hash_file(&f, (cx.capture)(&f), &|_| {}, cx.cancel)?;
        fd.at = at;
        h.add(&f, &fd);
        bytes += fd.size;
        read.push((f, fd));
    }
    if h.content() != rec.content {
        tracing::debug!(
            "layer {i}: its files changed since it was recorded as {}; writing it",
            rec.digest
        );
        return Ok(None);
    }
    for (f, fd) in read {
        (cx.done)(i, &f, fd)?;
    }
    (cx.progress)(bytes);
    r.skipped(&rec.digest, rec.size);
    tracing::debug!("layer {i}: the registry has it as {}", rec.digest);
    Ok(Some(Built {
        digests: LayerDigests {
            digest: rec.digest,
            size: rec.size,
            diff_id: rec.diff_id,
        },
        method: Method::Written,
    }))
}
