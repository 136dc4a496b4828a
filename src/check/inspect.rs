//! What a bundle holds: the manifest, its layers and the metadata document, read from a
//! layout directory or archive without touching the model layers.

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::metadata::Metadata;
use crate::store::entries::Entries;
use crate::store::layout::{self, Source};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    /// What was inspected (path or reference).
    pub source: String,
    pub tag: Option<String>,
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub artifact_type: Option<String>,
    pub config: LayerRow,
    pub layers: Vec<LayerRow>,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Its `files` on disk past a few MiB (written out as they are read: `--json` of a
    /// million files holds none of them).
    pub metadata: Metadata<Entries>,
    /// When the source is a multi-platform index: the index and the platform of the image
    /// inspected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<layout::IndexChoice>,
}

#[derive(Debug, Serialize)]
pub struct LayerRow {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub kind: Option<String>,
    pub title: Option<String>,
}

/// Inspect a layout directory or an archive.
pub fn inspect_path(path: &std::path::Path, tag: Option<&str>) -> Result<Report> {
    let mut src = layout::open(path)?;
    inspect_source(src.as_mut(), tag)
}

pub fn inspect_source(src: &mut dyn Source, tag: Option<&str>) -> Result<Report> {
    inspect_platform(src, tag, None)
}

/// Inspect; from a multi-platform index, the image of `platform` (None: this machine's).
pub fn inspect_platform(
    src: &mut dyn Source,
    tag: Option<&str>,
    platform: Option<&crate::format::platform::Platform>,
) -> Result<Report> {
    let r = layout::resolve_platform(src, tag, platform)?;
    let metadata = crate::store::metadata::read_metadata(src, &r.manifest)?;
    let row = |d: &oci_spec::image::Descriptor| LayerRow {
        digest: d.digest().to_string(),
        size: d.size(),
        media_type: d.media_type().to_string(),
        kind: d
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::format::annotations::KIND_ANNOTATION))
            .cloned(),
        title: d
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::format::annotations::TITLE_ANNOTATION))
            .cloned(),
    };
    let digest = Digest::parse(r.descriptor.digest().as_ref()).map_err(Error::Input)?;
    Ok(Report {
        source: src.describe(),
        tag: r
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(crate::format::annotations::REF_NAME))
            .cloned(),
        manifest_digest: digest.to_string(),
        manifest_size: r.raw.len() as u64,
        artifact_type: r.manifest.artifact_type().as_ref().map(|a| a.to_string()),
        config: row(r.manifest.config()),
        layers: r.manifest.layers().iter().map(row).collect(),
        annotations: r
            .manifest
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        metadata,
        index: r.index,
    })
}

/// Opens a location (a layout, an archive or a registry repository) as a source, with the
/// tag its name gives. Opening a registry takes the caller's registry settings.
pub type OpenLocation<'a> =
    &'a dyn Fn(&crate::format::reference::Location) -> Result<(Box<dyn Source>, Option<String>)>;

/// A bundle opened for reading: its source, manifest digest and metadata.
pub struct Opened {
    pub source: Box<dyn Source>,
    pub digest: Digest,
    /// Its files' list on disk past a few MiB (gate and diff read it as it streams).
    pub metadata: Metadata<crate::store::entries::Entries>,
}

/// `mlart inspect mlart.yaml`: a spec is not a bundle; say what to run instead of a tar error.
pub fn refuse_spec(target: &str) -> Result<()> {
    let p = std::path::Path::new(target);
    let yaml = p
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    if yaml && p.is_file() {
        return Err(Error::usage(format!(
            "{target} is a spec (YAML), not a bundle: bundle it first with `mlart bundle -f {target}` (it writes build/NAME.oci), then inspect that; `mlart validate -f {target}` checks its models without bundling"
        )));
    }
    Ok(())
}

/// Open a layout, archive or REF and read its manifest digest and metadata (nothing else).
pub fn open_bundle(target: &str, open: OpenLocation) -> Result<Opened> {
    refuse_spec(target)?;
    let loc = crate::format::reference::parse_location(target)?;
    let (mut source, tag) = open(&loc)?;
    let r = layout::resolve(source.as_mut(), tag.as_deref())?;
    let digest = Digest::parse(r.descriptor.digest().as_ref()).map_err(Error::Input)?;
    let metadata = crate::store::metadata::read_metadata(source.as_mut(), &r.manifest)?;
    Ok(Opened {
        source,
        digest,
        metadata,
    })
}
