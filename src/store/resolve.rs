//! Resolving a reference inside a source to an image manifest: the tag in index.json (or the
//! only manifest), the platform's image of a multi-platform index; and reading small blobs
//! and manifests, verified and bounded.

use crate::error::{Error, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::Digest;
use crate::format::media_type::MAX_MANIFEST_BYTES;
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::platform::Platform;
use crate::store::layout::is_referrer;
use crate::store::{BlobRead, Source};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::io::Read;

/// Open a blob and verify its size and digest as it is read.
pub fn open_verified<'a>(src: &'a dyn Source, desc: &Descriptor) -> Result<BlobRead<'a>> {
    let digest = Digest::parse(desc.digest().as_ref()).map_err(Error::Input)?;
    src.open_blob_verified(&digest, desc.size())
}

/// Read a whole (small) blob, verified, refusing anything over `limit`.
pub fn read_blob(src: &dyn Source, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
    if desc.size() > limit {
        return Err(Error::input(format!(
            "{}: blob {} claims {} bytes, more than the {limit} allowed here",
            src.describe(),
            desc.digest(),
            desc.size()
        )));
    }
    let what = src.describe();
    let mut v = Vec::with_capacity(desc.size() as usize);
    open_verified(src, desc)?
        .read_to_end(&mut v)
        .map_err(|e| Error::from_io(&e, format!("{what}: {e}")))?;
    Ok(v)
}

/// Refuse a manifest descriptor whose size is over `MAX_MANIFEST_BYTES` (before reading it).
pub fn check_manifest_size(what: &str, digest: &Digest, size: u64) -> Result<()> {
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::input(format!(
            "{what}: manifest {digest} claims {size} bytes, more than the {MAX_MANIFEST_BYTES} allowed"
        )));
    }
    Ok(())
}

/// The manifest a layout or archive holds for `tag` (or its only one when `tag` is None).
pub struct Resolved {
    /// The image manifest's descriptor (from an index: the image's entry in it, with the
    /// top entry's `org.opencontainers.image.ref.name`, if any).
    pub descriptor: Descriptor,
    pub raw: Vec<u8>,
    pub manifest: ImageManifest,
    /// When the tag names an index (`bundle --platform all`): the index and the image taken.
    pub index: Option<IndexChoice>,
}

/// The image picked from a multi-platform index.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IndexChoice {
    /// The index's digest.
    pub digest: String,
    /// The platform of the image taken (`os/arch[/variant]`).
    pub platform: String,
}

/// What to do when the entry is an index.
enum OnIndex<'a> {
    /// Take one image: `Some(platform)`, else the host's (or the only image).
    Pick(Option<&'a Platform>),
    /// Refuse (push, copy, sign work on one image manifest).
    Refuse(&'a str),
}

/// Resolve `tag` to an image manifest; an index gives this machine's image (or its only one).
pub fn resolve(src: &dyn Source, tag: Option<&str>) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Pick(None))
}

/// Resolve `tag` to an image manifest; an index gives the image of `platform` (None: this
/// machine's Linux platform, or the index's only image).
pub fn resolve_platform(
    src: &dyn Source,
    tag: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Pick(platform))
}

/// Resolve `tag` to an image manifest, refusing an index (`doing`: what is refused, for the
/// message, e.g. "push").
pub fn resolve_image(src: &dyn Source, tag: Option<&str>, doing: &str) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Refuse(doing))
}

fn is_index_type(mt: &str) -> bool {
    mt == INDEX_MEDIA_TYPE || mt == crate::format::media_type::DOCKER_LIST_MEDIA_TYPE
}

fn resolve_inner(src: &dyn Source, tag: Option<&str>, on_index: OnIndex) -> Result<Resolved> {
    let what = src.describe();
    let raw_index = src.index_bytes()?;
    let index: ImageIndex = serde_json::from_slice(&raw_index)
        .map_err(|e| Error::input(format!("{what}: index.json is not a valid OCI index: {e}")))?;
    let manifests = index.manifests();
    let tags: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
        .collect();
    let desc = match tag {
        Some(t) => manifests
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|r| r == t)
            })
            .ok_or_else(|| {
                Error::input(format!(
                    "{what} has no manifest tagged {t:?}; its tags: {}",
                    list_or_none(&tags)
                ))
            })?,
        None => match manifests.iter().filter(|d| !is_referrer(d)).count() {
            0 => return Err(Error::input(format!("{what} holds no manifest"))),
            1 => manifests.iter().find(|d| !is_referrer(d)).expect("one"),
            n => return Err(ambiguous(&what, n, &tags)),
        },
    };
    let mt = desc.media_type().to_string();
    if is_index_type(&mt) {
        return match on_index {
            OnIndex::Refuse(doing) => Err(Error::input(format!(
                "{what}: {} is a multi-platform index ({mt}); {doing} takes one image manifest: name one platform's image by digest (REF@sha256:…), or rebuild with `bundle --platform os/arch`",
                desc.digest()
            ))),
            OnIndex::Pick(want) => pick_from_index(src, desc, want),
        };
    }
    read_image(src, desc.clone(), None)
}

/// The refusal to guess which of a layout's (or archive's) `n` images is meant, with the
/// ways to name one.
fn ambiguous(what: &str, n: usize, tags: &[String]) -> Error {
    let (scheme, path) = match what.strip_suffix(" (archive)") {
        Some(p) => ("oci-archive", p),
        None => ("oci", what),
    };
    let example = tags.first().map_or("TAG", String::as_str);
    Error::input(format!(
        "{what} holds {n} images (tags: {}): name one as `{scheme}:{path}:TAG`, e.g. `{scheme}:{path}:{example}`, or with `--tag TAG` where the command has it",
        list_or_none(tags)
    ))
}

/// Read the image manifest `desc` names (it must be an OCI image manifest).
fn read_image(src: &dyn Source, desc: Descriptor, index: Option<IndexChoice>) -> Result<Resolved> {
    let what = src.describe();
    let mt = desc.media_type().to_string();
    if mt != MANIFEST_MEDIA_TYPE {
        return Err(Error::input(not_oci(src, &desc, &mt, index.as_ref())));
    }
    let raw = match &index {
        None => read_blob(src, &desc, MAX_MANIFEST_BYTES)?,
        Some(_) => {
            let d = Digest::parse(desc.digest().as_ref()).map_err(Error::Input)?;
            let raw = src.read_manifest(&d, desc.size())?;
            // A registry serves it by digest (hash checked there): check the size as well.
            if raw.len() as u64 != desc.size() {
                return Err(Error::input(format!(
                    "{what}: manifest {d} is {} bytes, its index entry says {}",
                    raw.len(),
                    desc.size()
                )));
            }
            raw
        }
    };
    let manifest: ImageManifest = serde_json::from_slice(&raw).map_err(|e| {
        Error::input(format!(
            "{what}: manifest {} is not a valid OCI manifest: {e}",
            desc.digest()
        ))
    })?;
    Ok(Resolved {
        descriptor: desc,
        raw,
        manifest,
        index,
    })
}

/// Why a manifest that is not an OCI image manifest cannot be read, and for a Docker image
/// manifest (schema 2), the skopeo command that converts it.
fn not_oci(src: &dyn Source, desc: &Descriptor, mt: &str, index: Option<&IndexChoice>) -> String {
    let what = src.describe();
    let digest = desc.digest();
    let of_list = index
        .map(|c| format!(" (the {} image of index {})", c.platform, c.digest))
        .unwrap_or_default();
    if mt != crate::format::media_type::DOCKER_MANIFEST_MEDIA_TYPE {
        return format!("{what}: {digest}{of_list} is not an OCI image manifest (its media type is {mt:?}): mlart reads OCI image manifests only");
    }
    let tag = desc
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str);
    let from = src.skopeo_name(tag).unwrap_or_else(|| "SOURCE".to_string());
    // A registry's tag is rewritten in place; a layout or archive goes to a new layout.
    let to = if from.starts_with("docker://") {
        from.clone()
    } else {
        format!("oci:converted.oci:{}", tag.unwrap_or("latest"))
    };
    format!(
        "{what}: {digest}{of_list} is a Docker image manifest ({mt}), not an OCI image manifest: convert it with `skopeo copy --format oci {from} {to}`{}, then use that",
        if index.is_some() {
            " (this platform's image only; add --override-arch ARCH for another)"
        } else {
            ""
        }
    )
}

/// Read the index `top` names and resolve its image for `want` (None: the host's platform,
/// or the only image).
fn pick_from_index(
    src: &dyn Source,
    top: &Descriptor,
    want: Option<&Platform>,
) -> Result<Resolved> {
    let what = src.describe();
    let index_digest = Digest::parse(top.digest().as_ref()).map_err(Error::Input)?;
    check_manifest_size(&what, &index_digest, top.size())?;
    let raw = read_blob(src, top, MAX_MANIFEST_BYTES)?;
    let doc: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::input(format!("{what}: index {index_digest} is not JSON: {e}")))?;
    let entries = doc
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            Error::input(format!(
                "{what}: index {index_digest} has no `manifests` list: it is not an OCI index"
            ))
        })?;
    // The images with a platform (signatures, attestations — no platform or unknown/unknown —
    // are skipped).
    let mut images: Vec<(Platform, &serde_json::Value)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let d: Descriptor = serde_json::from_value(e.clone()).map_err(|err| {
            Error::input(format!(
                "{what}: entry {i} of index {index_digest} is not a valid descriptor: {err}"
            ))
        })?;
        Digest::parse(d.digest().as_ref()).map_err(|err| {
            Error::input(format!("{what}: entry {i} of index {index_digest}: {err}"))
        })?;
        if is_referrer(&d) {
            continue;
        }
        let Some(p) = e
            .get("platform")
            .and_then(Platform::from_json)
            .filter(|p| !p.is_unknown())
        else {
            continue;
        };
        images.push((p, e));
    }
    let listing = || {
        images
            .iter()
            .map(|(p, e)| {
                format!(
                    "{p} ({})",
                    e.get("digest").and_then(|d| d.as_str()).unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (platform, entry) = match want {
        None if images.len() == 1 => images[0].clone(),
        _ => {
            let (wanted, whose) = match want {
                Some(p) => (p.clone(), ""),
                None => (Platform::host(), " (the platform of this machine)"),
            };
            match images.iter().find(|(p, _)| wanted.matches(p)) {
                Some(found) => found.clone(),
                None => {
                    return Err(Error::input(format!(
                        "{what}: the multi-platform index {index_digest} has no {wanted} image{whose}; it has: {}. Pick one with `--platform os/arch[/variant]`, or name its image by digest (REF@sha256:…)",
                        if images.is_empty() {
                            "no image with a platform".to_string()
                        } else {
                            listing()
                        }
                    )))
                }
            }
        }
    };
    let mut desc: Descriptor = serde_json::from_value(entry.clone()).expect("parsed above");
    let mt = desc.media_type().to_string();
    if is_index_type(&mt) {
        return Err(Error::input(format!(
            "{what}: the {platform} entry {} of index {index_digest} is itself an index: nested indexes are not read",
            desc.digest()
        )));
    }
    // Keep the top entry's tag on the image's descriptor.
    if let Some(t) = top.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
        desc = crate::store::layout::with_ref_name(&desc, t);
    }
    read_image(
        src,
        desc,
        Some(IndexChoice {
            digest: index_digest.to_string(),
            platform: platform.to_string(),
        }),
    )
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
