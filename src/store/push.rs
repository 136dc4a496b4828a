//! Copying a bundle into a registry (push) or out of one into a layout (copy_to_local).

use crate::error::Kind;
use crate::error::{Error, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::{Digest, VerifyReader};
use crate::format::reference::{Location, Reference};
use crate::registry::*;
use crate::store::layout;
use crate::store::{referrers::*, registry::*};
use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::errors::OciDistributionError;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub blobs: BlobCounts,
    /// Bytes sent for uploaded blobs.
    pub bytes_uploaded: u64,
    /// OCI signatures (referrers of the manifest) pushed with it.
    pub signatures: usize,
    /// The referrers fallback tag updated (registries without the referrers API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers_tag: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BlobCounts {
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Uploaded,
    Skipped,
    Mounted,
}

/// What happens to one blob during a push, for progress bars.
#[derive(Clone, Copy, Debug)]
pub enum BlobEvent {
    /// Work on a blob of this size starts.
    Start(u64),
    /// This many more bytes were read and sent.
    Bytes(u64),
    /// The upload failed and starts again; this many bytes were sent in vain.
    Retry(u64),
    /// Finished: "uploaded", "skipped" or "mounted".
    Done(&'static str),
}

/// Progress callback of a push: (blob, event), called from several threads.
pub type PushProgress = Arc<dyn Fn(&Digest, BlobEvent) + Send + Sync>;

/// A blob to push.
#[derive(Clone, Debug)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// Push a manifest and its blobs to `dst`: blobs first (skip existing, mount from
/// `mount_from` when it is another repository of the same registry, else upload; several at a
/// time), the config, then the manifest last, so the tag moves only when every blob is there.
#[allow(clippy::too_many_arguments)]
pub fn push_manifest(
    dst: &Remote,
    manifest: &[u8],
    media_type: &str,
    blobs: &[BlobRef],
    config: &BlobRef,
    opener: Arc<dyn BlobOpen>,
    mount_from: Option<&Reference>,
    progress: PushProgress,
) -> Result<PushReport> {
    let what = dst.describe();
    let mount_from = mount_from
        .filter(|m| {
            m.resolve_registry() == dst.reference.resolve_registry()
                && m.repository() != dst.reference.repository()
        })
        .cloned();
    let mut report = PushReport {
        reference: what.clone(),
        digest: Digest::of(manifest).to_string(),
        size: manifest.len() as u64,
        ..Default::default()
    };
    // Layers (deduplicated), bounded parallelism; then the config.
    let mut seen = std::collections::HashSet::new();
    let layers: Vec<BlobRef> = blobs
        .iter()
        .filter(|b| b.digest != config.digest && seen.insert(b.digest.clone()))
        .cloned()
        .collect();
    let results: Vec<Result<(Outcome, u64)>> = block_on(async {
        dst.prime().await;
        let jobs = futures_util::stream::iter(layers.into_iter().map(|b| {
            let opener = opener.clone();
            let progress = progress.clone();
            let mount_from = mount_from.clone();
            async move { push_blob(dst, &b, opener, mount_from.as_ref(), progress).await }
        }))
        .buffer_unordered(PARALLEL_BLOBS)
        .collect::<Vec<_>>()
        .await;
        jobs
    });
    for r in results {
        count(&mut report, r?);
    }
    let r = block_on(push_blob(
        dst,
        config,
        opener.clone(),
        mount_from.as_ref(),
        progress.clone(),
    ))?;
    count(&mut report, r);
    // The manifest, last (not after a Ctrl-C: the tag must not move).
    if crate::interrupt::requested() {
        return Err(Error::Interrupted);
    }
    block_on(dst.put_manifest(manifest, media_type, "pushing the manifest"))?;
    Ok(report)
}

pub(crate) fn count(r: &mut PushReport, (o, n): (Outcome, u64)) {
    match o {
        Outcome::Uploaded => {
            r.blobs.uploaded += 1;
            r.bytes_uploaded += n;
        }
        Outcome::Skipped => r.blobs.skipped += 1,
        Outcome::Mounted => r.blobs.mounted += 1,
    }
}

pub(crate) async fn push_blob(
    dst: &Remote,
    b: &BlobRef,
    opener: Arc<dyn BlobOpen>,
    mount_from: Option<&Reference>,
    progress: PushProgress,
) -> Result<(Outcome, u64)> {
    let what = dst.describe();
    let d = b.digest.to_string();
    let exists = retry(&what, || async {
        dst.client.blob_exists(&dst.reference, &d).await
    })
    .await
    .map_err(|e| map_err(&what, &format!("checking blob {d}"), e))?;
    progress(&b.digest, BlobEvent::Start(b.size));
    if exists {
        progress(&b.digest, BlobEvent::Done("skipped"));
        return Ok((Outcome::Skipped, 0));
    }
    if let Some(from) = mount_from {
        match dst.client.mount_blob(&dst.reference, from, &d).await {
            Ok(()) => {
                let ok = dst
                    .client
                    .blob_exists(&dst.reference, &d)
                    .await
                    .unwrap_or(false);
                if ok {
                    progress(&b.digest, BlobEvent::Done("mounted"));
                    return Ok((Outcome::Mounted, 0));
                }
            }
            Err(e) => tracing::debug!(
                "mounting {d} from {}: {}",
                from.repository(),
                describe_oci(&e)
            ),
        }
    }
    let mut attempt = 0;
    let mut chunked = false;
    loop {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent2 = sent.clone();
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(2);
        let opener2 = opener.clone();
        let digest = b.digest.clone();
        let size = b.size;
        let progress2 = progress.clone();
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut r = VerifyReader::new(opener2.open(&digest)?, digest.clone(), size);
            loop {
                // Ctrl-C: stop sending; the upload fails and the tag does not move.
                if crate::interrupt::requested() {
                    let _ = tx.blocking_send(Err(OciDistributionError::GenericError(Some(
                        "interrupted by the user".into(),
                    ))));
                    return Err(Error::Interrupted);
                }
                let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
                let mut filled = 0;
                while filled < buf.len() {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let msg = format!("reading blob {digest}: {e}");
                            let _ = tx.blocking_send(Err(OciDistributionError::GenericError(
                                Some(msg.clone()),
                            )));
                            return Err(Error::from_io(&e, msg));
                        }
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                progress2(&digest, BlobEvent::Bytes(filled as u64));
                sent2.fetch_add(filled as u64, std::sync::atomic::Ordering::Relaxed);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // the upload stopped; its error is reported below
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
            );
        // One streamed PUT (as `curl -T`); a registry that refuses a body that large (413)
        // gets the chunked upload from then on.
        let client = if chunked { &dst.client } else { &dst.mono };
        // A Ctrl-C ends the upload at once: dropping the request closes the connection
        // (waiting for the reader would first send what is queued, seconds on a slow link).
        let r = tokio::select! {
            r = client.push_blob_stream(&dst.reference, stream, &d, Some(b.size)) => r,
            () = interrupted() => {
                // The reader stops by itself at its next chunk (it checks for Ctrl-C too) and
                // its error ends the request; not waited for: it may be blocked sending to a
                // connection that drains slowly.
                return Err(Error::Interrupted);
            }
        };
        let read = reader
            .await
            .map_err(|e| Error::of(Kind::Internal, format!("reading blob {d}: {e}")))?;
        read?; // a bad local blob is not worth a retry
        match r {
            Ok(_) => {
                progress(&b.digest, BlobEvent::Done("uploaded"));
                return Ok((Outcome::Uploaded, b.size));
            }
            Err(e) if !chunked && too_large(&e) => {
                tracing::debug!(
                    "uploading {d} in one request: {}; chunked",
                    describe_oci(&e)
                );
                progress(
                    &b.digest,
                    BlobEvent::Retry(sent.load(std::sync::atomic::Ordering::Relaxed)),
                );
                chunked = true;
            }
            Err(e) if attempt < max_retries() && retryable(&e) => {
                let Some(wait) = backoff(&format!("uploading {d}"), attempt, &e) else {
                    return Err(map_err(&what, &format!("uploading blob {d}"), e));
                };
                progress(
                    &b.digest,
                    BlobEvent::Retry(sent.load(std::sync::atomic::Ordering::Relaxed)),
                );
                if !pause(wait).await {
                    return Err(Error::Interrupted);
                }
                attempt += 1;
            }
            Err(e) => return Err(map_err(&what, &format!("uploading blob {d}"), e)),
        }
    }
}

/// Push what `src` holds (layout, archive or another registry) to the registry `dst`.
pub fn push(
    src: &Location,
    dst: &Reference,
    dst_explicit_tag: bool,
    opts: &Options,
    progress: PushProgress,
    on_total: &dyn Fn(u64),
) -> Result<PushReport> {
    let (mut source, tag) = open_location(src, opts)?;
    let resolved = layout::resolve_image(source.as_mut(), tag.as_deref(), "push")?;
    // No tag given: keep the source's tag.
    let mut dst = dst.clone();
    if !dst_explicit_tag {
        if let Some(t) = resolved
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
        {
            dst = Reference::with_tag(
                dst.registry().to_string(),
                dst.repository().to_string(),
                t.clone(),
            );
        }
    }
    let remote = Remote::new(dst, opts)?;
    let blob = |d: &oci_spec::image::Descriptor| -> Result<BlobRef> {
        Ok(BlobRef {
            digest: Digest::parse(d.digest().as_ref()).map_err(Error::Input)?,
            size: d.size(),
        })
    };
    let layers = resolved
        .manifest
        .layers()
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>>>()?;
    let config = blob(resolved.manifest.config())?;
    on_total(layers.iter().map(|b| b.size).sum::<u64>() + config.size);
    let opener = blob_opener(src, opts)?;
    let mount_from = match src {
        Location::Registry { reference, .. } => Some(reference),
        _ => None,
    };
    let mt = resolved.descriptor.media_type().to_string();
    // The source's signatures of this manifest go along, after it.
    let subject = Digest::of(&resolved.raw);
    let signatures = signatures_of(source.as_mut(), &subject)?;
    drop(source);
    let mut report = push_manifest(
        &remote,
        &resolved.raw,
        &mt,
        &layers,
        &config,
        opener,
        mount_from,
        progress,
    )?;
    let sigs = push_referrers(&remote, &subject, &signatures)?;
    report.signatures = sigs.pushed;
    report.referrers_tag = sigs.tag;
    Ok(report)
}

/// Copy a bundle from any location to a local layout or archive (`dst` path), tagged `tag`.
pub fn copy_to_local(
    src: &Location,
    dst: &Path,
    dst_archive: Option<bool>,
    dst_tag: Option<&str>,
    opts: &Options,
    progress: &dyn Fn(u64),
) -> Result<(Digest, String)> {
    use crate::store::layout::{BlobSink, LayoutWriter, Staging};
    let (mut source, tag) = open_location(src, opts)?;
    let resolved = layout::resolve_image(source.as_mut(), tag.as_deref(), "copy")?;
    let staging = Staging::with_form(dst, dst_archive)?;
    let mut w = LayoutWriter::create(&staging.layout_dir())?;
    let mut descs: Vec<oci_spec::image::Descriptor> = resolved.manifest.layers().clone();
    descs.push(resolved.manifest.config().clone());
    let mut seen = std::collections::HashSet::new();
    for d in &descs {
        let digest = Digest::parse(d.digest().as_ref()).map_err(Error::Input)?;
        if !seen.insert(digest.clone()) {
            continue;
        }
        let what = source.describe();
        let mut r = layout::open_verified(source.as_mut(), d)?;
        let mut out = w.begin()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let n = r
                .read(&mut buf)
                .map_err(|e| Error::from_io(&e, format!("{what}: blob {digest}: {e}")))?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut out, &buf[..n]).map_err(|e| Error::Io {
                context: format!("writing blob {digest}"),
                source: e,
            })?;
            progress(n as u64);
        }
        drop(r);
        w.commit(out, &digest, d.size())?;
    }
    let mdigest = w.put(&resolved.raw)?;
    // The source's signatures of this manifest, stored beside it (as `bundle --sign` does).
    let mut entries = Vec::new();
    for sig in signatures_of(source.as_mut(), &mdigest)? {
        for b in &sig.blobs {
            w.put(b)?;
        }
        w.put(&sig.manifest)?;
        entries.push(
            serde_json::from_value::<oci_spec::image::Descriptor>(sig.descriptor()?)
                .map_err(|e| Error::input(format!("signature {}: {e}", sig.digest())))?,
        );
    }
    let tag = dst_tag
        .map(str::to_string)
        .or(tag)
        .or_else(|| {
            resolved
                .descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME).cloned())
        })
        .unwrap_or_else(|| "latest".into());
    let mut desc = resolved.descriptor.clone();
    let mut ann = desc.annotations().clone().unwrap_or_default();
    ann.insert(REF_NAME.to_string(), tag.clone());
    desc.set_annotations(Some(ann));
    entries.insert(0, desc);
    w.write_index(entries)?;
    staging.commit()?;
    Ok((mdigest, tag))
}
