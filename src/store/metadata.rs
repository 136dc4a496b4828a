//! Reading a bundle's metadata document back from any source.

use crate::error::{Error, Result};
use crate::format::annotations::KIND_ANNOTATION;
use crate::format::compression::Compression;
use crate::format::media_type::METADATA_MEDIA_TYPE;
use crate::format::metadata::{Metadata, MAX_METADATA_BYTES, METADATA_FILE, MODEL_DIR};
use crate::format::modelpack::Dialect;
use std::io::Read as _;

/// Read the metadata document of a bundle (the config of an artifact, `/models/mlart.json`
/// of an image), reading nothing but the manifest's config or metadata layer.
///
/// (`&mut` only because callers outside the store pass one, e.g. `cli/sign.rs`; reading needs
/// `&self`. Becomes `&dyn Source` once they pass `&src`.)
pub fn read_metadata(
    src: &mut dyn crate::store::Source,
    manifest: &oci_spec::image::ImageManifest,
) -> Result<Metadata> {
    let what = src.describe();
    let config_mt = manifest.config().media_type().to_string();
    // The ModelPack form: mlart.json is a raw `doc` layer annotated as the metadata.
    let raw_metadata = manifest.layers().iter().find(|l| {
        l.media_type().to_string().ends_with(".raw")
            && l.annotations()
                .as_ref()
                .and_then(|a| a.get(KIND_ANNOTATION))
                .is_some_and(|k| k == "metadata")
    });
    let bytes = if config_mt == METADATA_MEDIA_TYPE {
        crate::store::layout::read_blob(src, manifest.config(), MAX_METADATA_BYTES)?
    } else if let Some(l) = raw_metadata {
        crate::store::layout::read_blob(src, l, MAX_METADATA_BYTES)?
    } else if let Some(b) = read_metadata_layer_file(src, manifest, METADATA_FILE)? {
        b
    } else {
        let at = manifest.artifact_type().as_ref().map(|a| a.to_string());
        let Some(dialect) = Dialect::of(at.as_deref(), &config_mt) else {
            let mut types: Vec<String> = manifest
                .layers()
                .iter()
                .map(|l| l.media_type().to_string())
                .collect();
            types.sort();
            types.dedup();
            return Err(Error::input(format!(
                "{what}: not a model artifact mlart reads: artifactType {}, config {config_mt}, layers {}. mlart reads its own bundles (a {METADATA_MEDIA_TYPE} config, or {MODEL_DIR}/{METADATA_FILE} in a layer annotated {KIND_ANNOTATION}=metadata), CNCF ModelPack (also the older vnd.cnai.model.*), KitOps ModelKits and Docker model artifacts",
                at.as_deref().unwrap_or("(none)"),
                if types.is_empty() { "(none)".to_string() } else { types.join(", ") }
            )));
        };
        // The config names the model (verified like every blob); one that is not JSON leaves
        // it to the manifest's annotations.
        let config = crate::store::layout::read_blob(src, manifest.config(), MAX_METADATA_BYTES)?;
        let config = serde_json::from_slice(&config).unwrap_or(serde_json::Value::Null);
        return Ok(crate::format::dialect::synthesize(
            dialect, manifest, &config,
        ));
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::input(format!("{what}: the metadata document is invalid: {e}")))
}

/// A file (`mlart.json`, `model.sig`) of an image's small metadata layer: the layer is read
/// whole and verified before a byte of it is trusted. None: no metadata layer, or no such file.
pub fn read_metadata_layer_file(
    src: &dyn crate::store::Source,
    manifest: &oci_spec::image::ImageManifest,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    let what = src.describe();
    let Some(layer) = manifest.layers().iter().find(|l| {
        l.annotations()
            .as_ref()
            .and_then(|a| a.get(KIND_ANNOTATION))
            .is_some_and(|k| k == "metadata")
    }) else {
        return Ok(None);
    };
    let mt = layer.media_type().to_string();
    let comp = Compression::from_media_type(&mt).ok_or_else(|| {
        Error::input(format!(
            "{what}: the metadata layer has an unknown media type {mt}"
        ))
    })?;
    let blob = crate::store::layout::read_blob(src, layer, MAX_METADATA_BYTES)?;
    let bad = |e: std::io::Error| {
        Error::from_io(&e, format!("{what}: the metadata layer is corrupt: {e}"))
    };
    let mut ar =
        tar::Archive::new(crate::format::compression::decoder(&blob[..], comp).map_err(bad)?);
    let want = format!("{MODEL_DIR}/{name}");
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        if e.path()
            .map_err(bad)?
            .to_string_lossy()
            .trim_start_matches("./")
            == want
        {
            let mut v = Vec::new();
            (&mut e)
                .take(MAX_METADATA_BYTES + 1)
                .read_to_end(&mut v)
                .map_err(bad)?;
            if v.len() as u64 > MAX_METADATA_BYTES {
                return Err(Error::input(format!(
                    "{what}: {want} is larger than {MAX_METADATA_BYTES} bytes"
                )));
            }
            return Ok(Some(v));
        }
    }
    Ok(None)
}
