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
use crate::error::{Error, Kind, Result};
use crate::format::digest::Digest;
use crate::store::place::Method;
use crate::store::previous::Previous;
use crate::store::resumable::{Failed, LayerRef, Resumable};
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// A layer of more files than this is sent again rather than looked up (the files' digests
/// are held until the content is compared: about 100 bytes each).
const MAX_RECALLED_FILES: usize = 100_000;

/// Layer `p` (`i` in the plan) into the registry: skipped when recorded and there, else
/// streamed (continuing an interrupted session), then recorded. A failure the network or the
/// registry is to blame for is tried again, as `push` tries a blob again, continuing the
/// session from what the registry holds; a continued session the registry refuses to commit
/// is sent again whole, in a new one.
pub(super) fn build(r: &Resumable, i: usize, p: &Plan, cx: &Context<'_>) -> Result<Built> {
    let (h, key) = LayerHash::key(p, cx)?;
    if let Some(built) = recall(r, i, p, h.clone(), &key, cx)? {
        return Ok(built);
    }
    if let Some(built) = in_previous(r, i, p, h.clone(), &key, cx)? {
        return Ok(built);
    }
    // What earlier attempts reported (files to `done`, bytes to the bar): a later attempt
    // reads the same files in the same order and reports only what comes after, once it has
    // checked that the files it read again are the ones reported.
    let mut reported = (0usize, Sha256::new());
    let shown = AtomicU64::new(0);
    let (mut attempt, mut fresh) = (0u32, false);
    let (ld, content) = loop {
        let (mut skip, before) = (reported.0, reported.1.clone());
        let mut again = Sha256::new();
        let seen = AtomicU64::new(0);
        let progress = |n: u64| {
            let at = seen.fetch_add(n, Ordering::Relaxed) + n;
            let past = shown.fetch_max(at, Ordering::Relaxed);
            if at > past {
                (cx.progress)(at - past.max(at - n));
            }
        };
        let result = send(
            r,
            i,
            p,
            h.clone(),
            &key,
            fresh,
            cx,
            &progress,
            &mut |f, fd| {
                if skip > 0 {
                    again.update(f.rel.as_bytes());
                    again.update(fd.sha256);
                    skip -= 1;
                    if skip == 0 && again.clone().finalize() != before.clone().finalize() {
                        return Err(Error::input(format!(
                        "{}: the file changed while it was bundled (it read differently when its layer was sent again): bundle again once it is written",
                        f.abs().display()
                    )));
                    }
                    return Ok(());
                }
                reported.0 += 1;
                reported.1.update(f.rel.as_bytes());
                reported.1.update(fd.sha256);
                (cx.done)(i, f, fd)
            },
        );
        let failed = match result {
            Ok(v) => break v,
            Err(f) => f,
        };
        match failed {
            Failed::Refused(e) if !cx.cancel.is_cancelled() && attempt < MAX_ATTEMPTS => {
                // (the files changed under the same plan, or the session went bad)
                tracing::info!(
                    "layer {i}: the registry refused to commit its continued upload ({e}); sending it again"
                );
                fresh = true;
            }
            Failed::Sending(e)
                if e.kind() == Kind::Network && !cx.cancel.is_cancelled() && r.again(attempt) =>
            {
                tracing::warn!("layer {i}: {e}; trying again, continuing its upload");
                fresh = false;
            }
            f => return Err(f.into()),
        }
        attempt += 1;
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

/// Attempts of one layer at most (a refused continuation is one).
const MAX_ATTEMPTS: u32 = 8;

/// One attempt: the layer made into an upload of plan `key` (a continued session unless
/// `fresh`) and committed: its digests and content hash.
#[allow(clippy::too_many_arguments)]
fn send(
    r: &Resumable,
    i: usize,
    p: &Plan,
    mut h: LayerHash,
    key: &Digest,
    fresh: bool,
    cx: &Context<'_>,
    progress: &(dyn Fn(u64) + Sync),
    done: &mut dyn FnMut(&SourceFile, FileDigest) -> Result<()>,
) -> std::result::Result<(LayerDigests, Digest), Failed> {
    let (w, planned) = r
        .begin(key, p.raw.then_some(p.first.size), fresh)
        .map_err(Failed::Sending)?;
    if planned.held > 0 {
        tracing::info!(
            "layer {i}: continuing its upload after {} bytes",
            planned.held
        );
    }
    let made = if p.raw {
        let f = &p.first;
        layer::write_raw(w, f, (cx.capture)(f), progress, cx.cancel).and_then(|(w, ld, mut fd)| {
            fd.at = p.files.iter().next().transpose()?.map_or(0, |(at, _)| at);
            h.add(f, &fd);
            done(f, fd)?;
            Ok((w, ld))
        })
    } else {
        layer::write_tar_each(
            w,
            &p.files,
            cx.prefix,
            p.compression,
            cx.mtime,
            &|f| (cx.capture)(f),
            progress,
            cx.cancel,
            &mut |f, fd| {
                h.add(f, &fd);
                done(f, fd)
            },
        )
    };
    let (w, ld) = made.map_err(Failed::Sending)?;
    r.commit(w, planned, &ld.digest, ld.size)?;
    Ok((ld, h.content()))
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
    for item in p.files.iter() {
        let (at, f) = item?;
        let mut fd = layer::hash_file(&f, (cx.capture)(&f), &|_| {}, cx.cancel)?;
        fd.at = at;
        h.add(&f, &fd);
        read.push((f, fd));
    }
    if h.content() != rec.content {
        tracing::debug!(
            "layer {i}: its files changed since it was recorded as {}; writing it",
            rec.digest
        );
        return Ok(None);
    }
    tracing::debug!("layer {i}: the registry has it as {}", rec.digest);
    not_sent(
        r,
        i,
        cx,
        read,
        LayerDigests {
            digest: rec.digest,
            size: rec.size,
            diff_id: rec.diff_id,
        },
    )
}

/// Layer `i`, which the registry has as `ld`, not sent: its files' digests (`read`) go to
/// `done`, their bytes to the bar, and the blob is counted as skipped.
fn not_sent(
    r: &Resumable,
    i: usize,
    cx: &Context<'_>,
    read: Vec<(SourceFile, FileDigest)>,
    ld: LayerDigests,
) -> Result<Option<Built>> {
    let bytes = read.iter().map(|(_, fd)| fd.size).sum();
    for (f, fd) in read {
        (cx.done)(i, &f, fd)?;
    }
    (cx.progress)(bytes);
    r.skipped(&ld.digest, ld.size);
    Ok(Some(Built {
        digests: ld,
        method: Method::Written,
    }))
}

/// Layers from this size on are compared with the repository's previous bundle: a smaller
/// one is still whole in the upload's first piece (1 MiB) when its digest is known, and the
/// registry is asked for it then (`RegistrySink::already_there`).
const COMPARED_FROM: u64 = 1 << 20;

/// Layer `p` (`i` in the plan), not recorded in this cache, when the repository's previous
/// bundle (`store::previous`) lists its files at the same paths and sizes, all in one layer
/// of exactly these files: made once without sending, and not sent when it comes out as that
/// layer and the registry has it (its files' digests go to `done`; recorded for the next
/// run). None: send it (what the check read is read again).
fn in_previous(
    r: &Resumable,
    i: usize,
    p: &Plan,
    mut h: LayerHash,
    key: &Digest,
    cx: &Context<'_>,
) -> Result<Option<Built>> {
    if p.files.total_size() < COMPARED_FROM || p.files.len() > MAX_RECALLED_FILES {
        return Ok(None);
    }
    let Some(prev) = r.previous() else {
        return Ok(None);
    };
    // Every file there at its size, all in one layer that holds no other file.
    let mut first = None;
    for item in p.files.iter() {
        let (_, f) = item?;
        match (prev.file(&f.rel), first) {
            (Some(pf), None) if pf.size == f.size => first = Some(pf),
            (Some(pf), Some(a)) if pf.size == f.size && Previous::same_layer(a, pf) => {}
            _ => return Ok(None),
        }
    }
    let Some(first) = first else {
        return Ok(None);
    };
    let (want, listed) = prev.layer_of(first);
    if listed != p.files.len() {
        return Ok(None);
    }
    // Made without sending: each file's digest against the previous one's, the layer's
    // against the previous layer (the same files make the same bytes only with the same
    // settings: mlart's version, the compression, the mtime).
    let mut read = Vec::new();
    let mut same = true;
    let mut keep = |f: &SourceFile, fd: FileDigest| -> Result<()> {
        same &= prev.file(&f.rel).is_some_and(|pf| pf.sha256 == fd.sha256);
        read.push((f.clone(), fd));
        Ok(())
    };
    let ld = if p.raw {
        let f = &p.first;
        let mut fd = layer::hash_file(f, (cx.capture)(f), &|_| {}, cx.cancel)?;
        fd.at = p.files.iter().next().transpose()?.map_or(0, |(at, _)| at);
        let d = fd.digest();
        keep(f, fd)?;
        LayerDigests {
            digest: d.clone(),
            size: f.size,
            diff_id: d,
        }
    } else {
        layer::write_tar_each(
            std::io::sink(),
            &p.files,
            cx.prefix,
            p.compression,
            cx.mtime,
            &|f| (cx.capture)(f),
            &|_| {},
            cx.cancel,
            &mut keep,
        )?
        .1
    };
    if !same || &ld.digest != want {
        tracing::info!(
            "layer {i}: its files are not those of {} in {}; sending it",
            want,
            prev.from
        );
        return Ok(None);
    }
    if !r.has_blob(&ld.digest, ld.size)? {
        return Ok(None);
    }
    for (f, fd) in &read {
        h.add(f, fd);
    }
    r.remember(
        key,
        &h.content(),
        &LayerRef {
            digest: &ld.digest,
            size: ld.size,
            diff_id: &ld.diff_id,
        },
    );
    tracing::info!(
        "layer {i}: the registry has it as {} (in {}); not sent",
        ld.digest,
        prev.from
    );
    not_sent(r, i, cx, read, ld)
}
