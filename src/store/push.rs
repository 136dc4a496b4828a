//! push (any location to a registry) and copy to a local layout or archive: both resolve the
//! source's image, pick the destination's tag, and hand the graph to the one copy.

use crate::error::{Error, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::Digest;
use crate::format::reference::{Location, Reference};
use crate::registry::{Options, Remote};
use crate::store::copy::{copy_graph, CopyOptions, PARALLEL_BLOBS};
use crate::store::layout::LayoutWriter;
use crate::store::layout_tags::{Output, Placed};
use crate::store::registry::open_location;
use crate::store::registry_sink::RegistrySink;
use std::path::Path;
use std::sync::Arc;

pub use crate::store::copy::{BlobCounts, ResumedBlob};
pub use crate::store::{BlobEvent, BlobRef};

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub blobs: BlobCounts,
    /// Bytes sent for uploaded blobs.
    pub bytes_uploaded: u64,
    /// Bytes not sent again: upload sessions of an interrupted push held them (continued).
    pub bytes_resumed: u64,
    /// The blobs whose upload continued such a session, and where.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<ResumedBlob>,
    /// OCI signatures (referrers of the manifest) pushed with it.
    pub signatures: usize,
    /// Attestations (provenance, ML-BOM referrers of the manifest) pushed with it.
    #[serde(skip_serializing_if = "is_zero")]
    pub attestations: usize,
    /// The referrers fallback tag updated (registries without the referrers API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers_tag: Option<String>,
    /// The tag pointed to another manifest before this push (it moved from that digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Progress callback of a push: (blob, event), called from several threads.
pub type PushProgress = Arc<dyn Fn(&Digest, BlobEvent) + Send + Sync>;

/// Push what `src` holds (layout, archive or another registry) to the registry `dst`: blobs
/// (skip existing, mount from another repository of the same registry, else upload; several
/// at a time), the config, the manifest last, then the source's signatures of it.
pub fn push(
    src: &Location,
    dst: &Reference,
    dst_explicit_tag: bool,
    immutable: bool,
    opts: &Options,
    progress: PushProgress,
    on_total: &dyn Fn(u64),
) -> Result<PushReport> {
    let (source, tag) = open_location(src, opts)?;
    let resolved = crate::store::resolve::resolve_image(source.as_ref(), tag.as_deref(), "push")?;
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
    let remote = Remote::new(dst.clone(), opts)?;
    let digest = Digest::of(&resolved.raw);
    // Where the tag points now: a move is said, and refused with `immutable`, before any
    // blob is sent.
    let moved_from = match (dst.tag(), dst.digest()) {
        (Some(_), None) => remote.tag_digest()?.filter(|d| *d != digest),
        _ => None,
    };
    if let (Some(prev), true) = (&moved_from, immutable) {
        return Err(Error::Check(format!(
            "{}: the tag {} points to {prev}; this push would move it to {digest}, and --immutable refuses to move a tag. Push under a new tag (a new version), or drop --immutable to move it",
            remote.describe(),
            dst.tag().unwrap_or_default()
        )));
    }
    let sink = RegistrySink::new(remote);
    let m = &resolved.manifest;
    on_total(m.layers().iter().map(|l| l.size()).sum::<u64>() + m.config().size());
    let read_error =
        |d: &Digest, e: std::io::Error| Error::from_io(&e, format!("reading blob {d}: {e}"));
    let observer = |d: &Digest, e: BlobEvent| progress(d, e);
    let copied = copy_graph(
        source.as_ref(),
        &sink,
        &resolved.descriptor,
        &resolved.raw,
        &CopyOptions {
            tag: dst.tag(),
            referrers: true,
            parallel: PARALLEL_BLOBS,
            observer: &observer,
            read_error: Some(&read_error),
            cancel: opts.cancel.clone(),
        },
    )?;
    Ok(PushReport {
        reference: sink.remote().describe(),
        digest: digest.to_string(),
        size: resolved.raw.len() as u64,
        blobs: copied.blobs,
        bytes_uploaded: copied.bytes,
        bytes_resumed: copied.bytes_resumed,
        resumed: copied.resumed,
        signatures: copied.signatures,
        attestations: copied.attestations,
        referrers_tag: copied.referrers_tag,
        moved_from: moved_from.map(|d| d.to_string()),
    })
}

/// What `copy_to_local` wrote.
pub struct LocalCopy {
    pub digest: Digest,
    pub tag: String,
    /// What it did to the layout or archive that was there.
    pub placed: Placed,
}

/// Copy a bundle from any location to a local layout or archive (`dst` path), tagged `tag`
/// (else the source's tag, else `latest`), with the source's signatures of it. `add`: keep
/// the other images of a layout at `dst` (`oci:DIR:TAG`), else replace it. `progress` gets
/// each blob's events.
pub fn copy_to_local(
    src: &Location,
    dst: &Path,
    dst_archive: Option<bool>,
    dst_tag: Option<&str>,
    add: bool,
    opts: &Options,
    progress: &(dyn Fn(&Digest, BlobEvent) + Sync),
) -> Result<LocalCopy> {
    let (source, tag) = open_location(src, opts)?;
    let resolved = crate::store::resolve::resolve_image(source.as_ref(), tag.as_deref(), "copy")?;
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
    let out = Output::new(dst, dst_archive, &tag, add)?;
    let w = LayoutWriter::create(&out.layout_dir())?;
    let copied = copy_graph(
        source.as_ref(),
        &w,
        &resolved.descriptor,
        &resolved.raw,
        &CopyOptions {
            tag: Some(&tag),
            referrers: true,
            parallel: PARALLEL_BLOBS,
            observer: progress,
            read_error: None,
            cancel: opts.cancel.clone(),
        },
    )?;
    w.finish_index()?;
    let placed = out.commit()?;
    Ok(LocalCopy {
        digest: copied.digest.expect("a root was copied"),
        tag,
        placed,
    })
}
