//! Reading a base image (`bundle --base`) from a registry, a layout or an archive: the image
//! manifest or index, the platform(s) picked, every document verified and checked before it is
//! trusted; and copying its layers into a sink.

use crate::error::{Error, Result};
use crate::format::annotations::{KIND_ANNOTATION, REF_NAME};
use crate::format::digest::{Digest, VerifyReader};
use crate::format::media_type::*;
use crate::format::metadata::LayerInfo;
use crate::format::platform::{BaseRecord, Platform, PlatformChoice};
use crate::format::reference::{self, Location};
use crate::registry;
use crate::store::layout::{self, Source};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::io::Read;

/// The OCI media type a base layer gets in the bundle's manifest (None: not accepted). Docker's
/// layer types are the same bytes under another name (the OCI image spec lists them as
/// interchangeable), so the bundle's manifest stays a pure OCI manifest and the blobs (and
/// their digests) are unchanged.
fn oci_layer_type(mt: &str) -> Option<&'static str> {
    match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => {
            Some("application/vnd.oci.image.layer.v1.tar")
        }
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            Some("application/vnd.oci.image.layer.v1.tar+zstd")
        }
        _ => None,
    }
}

/// A base as resolved: what the reference names, and the image(s) picked from it.
#[derive(Clone, Debug)]
pub struct Base {
    /// The base as the user gave it (for messages and the summary only).
    pub given: String,
    pub location: Location,
    /// The digest of what the reference names (an index or an image manifest).
    pub digest: Digest,
    /// Whether that is an index (OCI index or Docker manifest list).
    pub is_index: bool,
    /// The picked images, in the order of the base's index.
    pub images: Vec<BaseImage>,
}

/// One platform's image of the base.
#[derive(Clone, Debug)]
pub struct BaseImage {
    pub manifest_digest: Digest,
    pub platform: Platform,
    /// The base index's `platform` of this image (OCI fields only), for the bundle's index.
    pub index_platform: Option<Value>,
    /// The base's config, checked: `rootfs.diff_ids` has one digest per layer.
    pub config: Map<String, Value>,
    pub layers: Vec<BaseLayer>,
}

#[derive(Clone, Debug)]
pub struct BaseLayer {
    /// The descriptor for the bundle's manifest (OCI media type, the base's annotations).
    pub descriptor: Descriptor,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

impl BaseImage {
    pub fn record(&self) -> BaseRecord {
        BaseRecord {
            digest: self.manifest_digest.to_string(),
            platform: self.platform.to_string(),
        }
    }

    /// The base layers as the summary lists them.
    pub fn layer_infos(&self) -> Vec<LayerInfo> {
        let n = self.layers.len();
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerInfo {
                digest: l.digest.clone(),
                size: l.size,
                diff_id: l.diff_id.clone(),
                media_type: l.descriptor.media_type().to_string(),
                kind: "base".into(),
                title: format!("base layer {} of {n}", i + 1),
                files: 0,
            })
            .collect()
    }

    pub fn platform_json(&self) -> Value {
        self.index_platform.clone().unwrap_or_else(|| {
            let mut p = json!({"os": self.platform.os, "architecture": self.platform.architecture});
            if let Some(v) = &self.platform.variant {
                p["variant"] = v.clone().into();
            }
            p
        })
    }
}

impl Base {
    /// Every base layer blob, once, in order.
    pub fn blobs(&self) -> Vec<crate::store::BlobRef> {
        let mut seen = std::collections::HashSet::new();
        self.images
            .iter()
            .flat_map(|i| i.layers.iter())
            .filter(|l| seen.insert(l.digest.clone()))
            .map(|l| crate::store::BlobRef {
                digest: l.digest.clone(),
                size: l.size,
            })
            .collect()
    }

    /// Copy the base layers into `sink` (a layout) through the one copy: each verified
    /// against its digest and size as it streams, several at a time. `progress` gets the
    /// bytes copied.
    pub fn copy_into(
        &self,
        sink: &dyn crate::store::Sink,
        opts: &registry::Options,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        use crate::store::copy::{copy_blobs, CopyOptions};
        let (src, _) = crate::store::registry::open_location(&self.location, opts)?;
        let observer = |_: &Digest, e: crate::store::BlobEvent| {
            if let crate::store::BlobEvent::Bytes(n) = e {
                progress(n)
            }
        };
        let read_error = |d: &Digest, e: std::io::Error| {
            Error::from_io(
                &e,
                format!(
                "base {}: layer {d}: {e}. The base is corrupt or incomplete: fetch or rebuild it",
                self.given
            ),
            )
        };
        copy_blobs(
            src.as_ref(),
            sink,
            &self.blobs(),
            &CopyOptions {
                observer: &observer,
                read_error: Some(&read_error),
                cancel: opts.cancel.clone(),
                ..CopyOptions::default()
            },
        )?;
        Ok(())
    }

    /// Whether the bundle is an index (one image per platform) rather than one image.
    pub fn makes_index(&self, choice: &PlatformChoice) -> bool {
        self.is_index && *choice == PlatformChoice::All
    }
}

/// The reader of a base: manifests by digest (from a registry's manifests endpoint for the
/// images of an index), blobs verified.
struct Reader {
    src: Box<dyn Source>,
    remote: Option<registry::Remote>,
    what: String,
}

impl Reader {
    fn manifest(&mut self, d: &Digest, size: u64, top: bool) -> Result<Vec<u8>> {
        if size > crate::format::media_type::MAX_MANIFEST_BYTES {
            return Err(Error::input(format!(
                "{}: manifest {d} claims {size} bytes, more than the {} allowed",
                self.what,
                crate::format::media_type::MAX_MANIFEST_BYTES
            )));
        }
        let raw = match (&self.remote, top) {
            (Some(remote), false) => remote.manifest_by_digest(d)?,
            _ => {
                let what = self.what.clone();
                let mut v = Vec::new();
                VerifyReader::new(self.src.open_blob(d)?, d.clone(), size)
                    .read_to_end(&mut v)
                    .map_err(|e| Error::from_io(&e, format!("{what}: manifest {d}: {e}")))?;
                v
            }
        };
        if raw.len() as u64 != size {
            return Err(Error::input(format!(
                "{}: manifest {d} is {} bytes, its descriptor says {size}",
                self.what,
                raw.len()
            )));
        }
        Ok(raw)
    }

    fn blob(&mut self, d: &Digest, size: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
        if size > limit {
            return Err(Error::input(format!(
                "{}: the {what} {d} claims {size} bytes, more than the {limit} allowed",
                self.what
            )));
        }
        let src_what = self.what.clone();
        let mut v = Vec::new();
        VerifyReader::new(self.src.open_blob(d)?, d.clone(), size)
            .read_to_end(&mut v)
            .map_err(|e| Error::from_io(&e, format!("{src_what}: the {what}: {e}")))?;
        Ok(v)
    }
}

/// A descriptor's media type, digest and size, checked.
fn descriptor_parts(v: &Value, what: &str, base: &str) -> Result<(String, Digest, u64)> {
    let bad = |why: &str| Error::input(format!("base {base}: {what}: {why}"));
    if !v.is_object() {
        return Err(bad("is not a descriptor (a JSON object)"));
    }
    let mt = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no mediaType"))?
        .to_string();
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("has no digest"))?;
    let digest = Digest::parse(digest).map_err(|e| bad(&e))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("has no size (a non-negative integer)"))?;
    Ok((mt, digest, size))
}

/// What a manifest document is.
enum DocKind {
    Index,
    Image,
}

fn doc_kind(doc: &Value, listed_as: &str, base: &str, digest: &Digest) -> Result<DocKind> {
    if doc.get("schemaVersion").and_then(Value::as_u64) == Some(1) {
        return Err(Error::input(format!(
            "base {base}: {digest} is a Docker schema 1 manifest, which mlart does not read: push the base again with a current docker, skopeo or crane (they write schema 2 or OCI)"
        )));
    }
    let mt = doc
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(listed_as);
    match mt {
        INDEX_MEDIA_TYPE | DOCKER_LIST_MEDIA_TYPE => Ok(DocKind::Index),
        MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE => Ok(DocKind::Image),
        _ if doc.get("manifests").is_some() => Ok(DocKind::Index),
        _ if doc.get("layers").is_some() && doc.get("config").is_some() => Ok(DocKind::Image),
        other => Err(Error::input(format!(
            "base {base}: {digest} is a {other}, not an image manifest or index: the base must be a container image such as busybox"
        ))),
    }
}

/// Resolve `given` (a registry REF, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, a layout or an
/// archive) to the base image(s) for `choice`, reading and checking manifests and configs
/// (not layers).
pub fn resolve(given: &str, choice: &PlatformChoice, opts: &registry::Options) -> Result<Base> {
    let location = reference::parse_location(given)?;
    let (src, tag, remote): (Box<dyn Source>, Option<String>, Option<registry::Remote>) =
        match &location {
            Location::Registry { reference, .. } => {
                let remote = registry::Remote::new(reference.clone(), opts)?;
                let src = crate::store::registry::RegistrySource::new(remote.clone());
                let tag = src.tag();
                (Box::new(src), tag, Some(remote))
            }
            Location::Local { path, tag } => (layout::open(path)?, tag.clone(), None),
        };
    let mut r = Reader {
        what: src.describe(),
        src,
        remote,
    };
    let base = given.to_string();

    // The entry of index.json (a registry's is synthesised from its manifest).
    let index: Value = serde_json::from_slice(&r.src.index_bytes()?).map_err(|e| {
        Error::input(format!(
            "base {base}: index.json is not JSON: {e}. Is it an OCI layout?"
        ))
    })?;
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::input(format!(
                "base {base}: index.json has no `manifests` list: not an OCI layout"
            ))
        })?;
    let ref_name = |e: &Value| -> Option<String> {
        e.get("annotations")?
            .get(REF_NAME)?
            .as_str()
            .map(str::to_string)
    };
    let tags: Vec<String> = entries.iter().filter_map(ref_name).collect();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let entry = match &tag {
        Some(t) => entries
            .iter()
            .find(|e| ref_name(e).as_deref() == Some(t))
            .ok_or_else(|| {
                Error::input(format!(
                    "base {base} has no image tagged {t:?}; its tags: {}",
                    list(&tags)
                ))
            })?,
        None => {
            let candidates: Vec<&Value> = entries
                .iter()
                .filter(|e| {
                    e.get("artifactType").and_then(Value::as_str)
                        != Some(crate::format::media_type::BUNDLE_MEDIA_TYPE)
                })
                .collect();
            match candidates.len() {
                0 => return Err(Error::input(format!("base {base} holds no image"))),
                1 => candidates[0],
                n => {
                    return Err(Error::input(format!(
                        "base {base} holds {n} images: name one as oci:PATH:TAG (tags: {})",
                        list(&tags)
                    )))
                }
            }
        }
    };
    let (listed_as, digest, size) = descriptor_parts(entry, "the index.json entry", &base)?;
    let raw = r.manifest(&digest, size, true)?;
    let doc: Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::input(format!("base {base}: manifest {digest} is not JSON: {e}")))?;
    match doc_kind(&doc, &listed_as, &base, &digest)? {
        DocKind::Image => {
            let img = load_image(&mut r, &base, &digest, &doc, None)?;
            if let PlatformChoice::One(want) = choice {
                if !want.matches(&img.platform) {
                    return Err(Error::input(format!(
                        "base {base} is a single {} image, not {want}: drop --platform, or pick a base that has {want}",
                        img.platform
                    )));
                }
            }
            Ok(Base {
                given: base,
                location,
                digest,
                is_index: false,
                images: vec![img],
            })
        }
        DocKind::Index => {
            let manifests = doc
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Error::input(format!(
                        "base {base}: index {digest} has no `manifests` list"
                    ))
                })?;
            // The images of the index with a known platform (attestations and nested indexes
            // are not images to build on).
            let mut listed: Vec<(Digest, u64, Platform, Value)> = Vec::new();
            for (i, m) in manifests.iter().enumerate() {
                let (mt, d, s) =
                    descriptor_parts(m, &format!("entry {i} of index {digest}"), &base)?;
                if mt != MANIFEST_MEDIA_TYPE && mt != DOCKER_MANIFEST_MEDIA_TYPE {
                    continue;
                }
                let Some(pv) = m.get("platform") else {
                    continue;
                };
                let Some(p) = Platform::from_json(pv).filter(|p| !p.is_unknown()) else {
                    continue;
                };
                listed.push((d, s, p, oci_platform(pv)));
            }
            if listed.is_empty() {
                return Err(Error::input(format!(
                    "base {base}: index {digest} lists no image with a platform: it is not a multi-platform image"
                )));
            }
            let available = || {
                listed
                    .iter()
                    .map(|l| l.2.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let picked: Vec<&(Digest, u64, Platform, Value)> = match choice {
                PlatformChoice::All => listed.iter().collect(),
                PlatformChoice::Host | PlatformChoice::One(_) => {
                    let want = match choice {
                        PlatformChoice::One(p) => p.clone(),
                        _ => Platform::host(),
                    };
                    let found = listed.iter().find(|l| want.matches(&l.2)).ok_or_else(|| {
                        Error::input(format!(
                            "base {base} has no {want} image{}; it has: {}. Pick one with --platform (or `--platform all`)",
                            if *choice == PlatformChoice::Host {
                                " (the platform of this machine)"
                            } else {
                                ""
                            },
                            available()
                        ))
                    })?;
                    vec![found]
                }
            };
            let mut images = Vec::new();
            for (d, s, p, pv) in picked {
                let raw = r.manifest(d, *s, false)?;
                let doc: Value = serde_json::from_slice(&raw).map_err(|e| {
                    Error::input(format!("base {base}: manifest {d} is not JSON: {e}"))
                })?;
                if !matches!(
                    doc_kind(&doc, MANIFEST_MEDIA_TYPE, &base, d)?,
                    DocKind::Image
                ) {
                    return Err(Error::input(format!(
                        "base {base}: the {p} entry {d} of index {digest} is not an image manifest"
                    )));
                }
                let img = load_image(&mut r, &base, d, &doc, Some(pv.clone()))?;
                if img.platform.os != p.os || img.platform.architecture != p.architecture {
                    return Err(Error::input(format!(
                        "base {base}: index {digest} lists {d} as {p}, but its config says {}: the base is inconsistent",
                        img.platform
                    )));
                }
                images.push(img);
            }
            Ok(Base {
                given: base,
                location,
                digest,
                is_index: true,
                images,
            })
        }
    }
}

/// The OCI fields of a `platform` object (Docker's lists carry a deprecated `features`).
fn oci_platform(v: &Value) -> Value {
    let mut out = Map::new();
    for k in ["architecture", "os", "os.version", "os.features", "variant"] {
        if let Some(x) = v.get(k) {
            out.insert(k.to_string(), x.clone());
        }
    }
    Value::Object(out)
}

/// Read and check one image manifest of the base and its config.
fn load_image(
    r: &mut Reader,
    base: &str,
    digest: &Digest,
    doc: &Value,
    index_platform: Option<Value>,
) -> Result<BaseImage> {
    let bad = |why: String| Error::input(format!("base {base}: manifest {digest}: {why}"));
    if let Some(at) = doc.get("artifactType").and_then(Value::as_str) {
        return Err(bad(format!(
            "is an artifact ({at}), not a runnable image: the base must be a container image such as busybox"
        )));
    }
    let config = doc
        .get("config")
        .ok_or_else(|| bad("has no config".into()))?;
    let (cmt, cdigest, csize) = descriptor_parts(config, "the config descriptor", base)?;
    if cmt != IMAGE_CONFIG_MEDIA_TYPE && cmt != DOCKER_CONFIG_MEDIA_TYPE {
        return Err(bad(format!(
            "its config is a {cmt}, not an image config: it is an artifact, not a runnable image. The base must be a container image such as busybox"
        )));
    }
    let layers = doc
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no `layers` list".into()))?;
    let mut parts = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (mt, d, s) = descriptor_parts(l, &format!("layer {i} of {digest}"), base)?;
        let has_urls = l
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty());
        if has_urls || mt.contains("nondistributable") || mt.contains("foreign") {
            return Err(bad(format!(
                "layer {d} is a foreign (non-distributable) layer ({mt}): mlart cannot copy it; pick a Linux base without foreign layers"
            )));
        }
        let oci = oci_layer_type(&mt).ok_or_else(|| {
            bad(format!(
                "layer {d} has the media type {mt}, which is not an image layer (tar, tar+gzip, tar+zstd)"
            ))
        })?;
        let mut desc = Descriptor::new(
            MediaType::from(oci),
            s,
            crate::format::digest::oci_digest(&d),
        );
        let ann: HashMap<String, String> = l
            .get("annotations")
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| k.as_str() != KIND_ANNOTATION)
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if !ann.is_empty() {
            desc.set_annotations(Some(ann));
        }
        parts.push((desc, d, s));
    }

    let raw = r.blob(&cdigest, csize, MAX_CONFIG_BYTES, "config")?;
    let cbad = |why: String| Error::input(format!("base {base}: config {cdigest}: {why}"));
    let config: Map<String, Value> = match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(cbad("is not a JSON object".into())),
        Err(e) => return Err(cbad(format!("is not JSON: {e}"))),
    };
    let platform = Platform::from_json(&Value::Object(config.clone()))
        .ok_or_else(|| cbad("has no `os` and `architecture`: not an image config".into()))?;
    let rootfs = config
        .get("rootfs")
        .and_then(Value::as_object)
        .ok_or_else(|| cbad("has no `rootfs`: not an image config".into()))?;
    if rootfs.get("type").and_then(Value::as_str) != Some("layers") {
        return Err(cbad("rootfs.type is not \"layers\"".into()));
    }
    let diff_ids = rootfs
        .get("diff_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| cbad("has no rootfs.diff_ids list".into()))?;
    if diff_ids.len() != parts.len() {
        return Err(cbad(format!(
            "rootfs.diff_ids lists {} layers, the manifest {}: the base is inconsistent",
            diff_ids.len(),
            parts.len()
        )));
    }
    let diff_ids = diff_ids
        .iter()
        .map(|d| {
            d.as_str()
                .ok_or_else(|| "not a string".to_string())
                .and_then(Digest::parse)
                .map_err(|e| cbad(format!("rootfs.diff_ids: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    match config.get("history") {
        None | Some(Value::Null) => {}
        Some(Value::Array(h)) if h.iter().all(Value::is_object) => {}
        Some(_) => return Err(cbad("`history` is not a list of objects".into())),
    }
    match config.get("config") {
        None | Some(Value::Null) => {}
        Some(Value::Object(c)) => {
            match c.get("Env") {
                None | Some(Value::Null) => {}
                Some(Value::Array(e)) if e.iter().all(Value::is_string) => {}
                Some(_) => return Err(cbad("config.Env is not a list of strings".into())),
            }
            match c.get("Labels") {
                None | Some(Value::Null) => {}
                Some(Value::Object(l)) if l.values().all(Value::is_string) => {}
                Some(_) => return Err(cbad("config.Labels is not a map of strings".into())),
            }
        }
        Some(_) => return Err(cbad("`config` is not an object".into())),
    }
    Ok(BaseImage {
        manifest_digest: digest.clone(),
        platform,
        index_platform,
        config,
        layers: parts
            .into_iter()
            .zip(diff_ids)
            .map(|((descriptor, digest, size), diff_id)| BaseLayer {
                descriptor,
                digest,
                size,
                diff_id,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_layer_types_become_oci() {
        assert_eq!(
            oci_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        );
        assert_eq!(
            oci_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some("application/vnd.oci.image.layer.v1.tar+zstd")
        );
        assert_eq!(oci_layer_type("application/vnd.mlart.model.v1.raw"), None);
    }
}
