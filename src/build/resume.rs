//! Layers into a registry that a run again after an interruption need not send again
//! (`store::resumable` has the registry's side). Each layer is named by its plan
//! (`LayerHash::key`: settings, and each file's path, mode, size and mtime). When an earlier
//! run recorded what the layer came out as and the registry has that blob, its files are
//! hashed (their digests go into the metadata as they would have from the layer writer) and,
//! when their content is the recorded one, the layer is not sent again. Else it streams to
//! the registry as it is made, hashed as it goes (one read of each file), continuing the
//! session an interrupted run recorded under the same plan.

use crate::build::collect::SourceFile;
use crate::build::layer::{self, FileDigest, LayerDigests};
use crate::build::layers::{Built, Context, Plan};
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::store::place::Method;
use crate::store::resumable::{LayerRef, Resumable};
use sha2::{Digest as _, Sha256};

/// A layer of more files than this is sent again rather than looked up (the files' digests
/// are held until the content is compared: about 100 bytes each).
const MAX_RECALLED_FILES: usize = 100_000;

/// Layer `p` (`i` in the plan) into the registry: skipped when recorded and there, else
/// streamed (continuing an interrupted session), then recorded.
pub(super) fn build(r: &Resumable, i: usize, p: &Plan, cx: &Context<'_>) -> Result<Built> {
    let (h, key) = LayerHash::key(p, cx)?;
    if let Some(built) = recall(r, i, p, h.clone(), &key, cx)? {
        return Ok(built);
    }
    // Files reported to `done` by the first attempt: a second one reports only the rest.
    let mut reported = 0usize;
    let first = send(r, i, p, h.clone(), &key, false, cx, &mut |f, fd| {
        reported += 1;
        (cx.done)(i, f, fd)
    });
    let (held, result) = first;
    let (ld, content) = match result {
        Ok(v) => v,
        Err(e) if held == 0 || matches!(e, Error::Interrupted) || cx.cancel.is_cancelled() => {
            return Err(e)
        }
        Err(e) => {
            // The registry held bytes another layer's (the files changed under the same
            // plan), or the session went bad while it was continued: a new one.
            tracing::info!(
                "layer {i}: continuing its upload after {held} bytes failed ({e}); sending it again"
            );
            let mut skip = reported;
            let (_, again) = send(r, i, p, h, &key, true, cx, &mut |f, fd| {
                if skip > 0 {
                    skip -= 1;
                    return Ok(());
                }
                (cx.done)(i, f, fd)
            });
            again?
        }
    };
    let l = LayerRef {
        digest: &ld.digest,
        size: ld.size,
        diff_id: &ld.diff_id,
    };
    r.remember(&key, &content, &l);
    Ok(Built {
        digests: ld,
        method: Method::Written,
    })
}

/// One attempt: the layer made into an upload of plan `key` (a continued session unless
/// `fresh`) and committed. Returns the bytes the session held at the start, and the layer's
/// digests and content hash.
#[allow(clippy::too_many_arguments)]
fn send(
    r: &Resumable,
    i: usize,
    p: &Plan,
    mut h: LayerHash,
    key: &Digest,
    fresh: bool,
    cx: &Context<'_>,
    done: &mut dyn FnMut(&SourceFile, FileDigest) -> Result<()>,
) -> (u64, Result<(LayerDigests, Digest)>) {
    let (w, planned) = match r.begin(key, p.raw.then_some(p.first.size), fresh) {
        Ok(v) => v,
        Err(e) => return (0, Err(e)),
    };
    let held = planned.held;
    if held > 0 {
        tracing::info!("layer {i}: continuing its upload after {held} bytes");
    }
    let made = if p.raw {
        let f = &p.first;
        layer::write_raw(w, f, (cx.capture)(f), cx.progress, cx.cancel).and_then(
            |(w, ld, mut fd)| {
                fd.at = p.files.iter().next().transpose()?.map_or(0, |(at, _)| at);
                h.add(f, &fd);
                done(f, fd)?;
                Ok((w, ld))
            },
        )
    } else {
        layer::write_tar_each(
            w,
            &p.files,
            cx.prefix,
            p.compression,
            cx.mtime,
            &|f| (cx.capture)(f),
            cx.progress,
            cx.cancel,
            &mut |f, fd| {
                h.add(f, &fd);
                done(f, fd)
            },
        )
    };
    let result = made.and_then(|(w, ld)| {
        r.commit(w, planned, &ld.digest, ld.size)?;
        Ok((ld, h.content()))
    });
    (held, result)
}

/// The hashes that name a layer: its plan (settings, and each file's path, mode, size and
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
            if p.raw {
                "mlart raw layer v1"
            } else {
                "mlart tar layer v1"
            },
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

/// Layer `p` (`i` in the plan), when an earlier run to this repository recorded it under
/// `key`, the registry has the blob and the files' content is the recorded one: their
/// digests go to `done` and the layer is not sent. None: send it (the files are read
/// again).
fn recall(
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
