//! Reading a bundle's metadata document back from any source.

use crate::error::{Error, Result};
use crate::format::annotations::KIND_ANNOTATION;
use crate::format::compression::Compression;
use crate::format::media_type::METADATA_MEDIA_TYPE;
use crate::format::metadata::{Metadata, MAX_METADATA_BYTES, METADATA_FILE, MODEL_DIR};
use crate::format::modelpack::Dialect;
use crate::store::entries::{budget, Entries};
use std::io::{self, Read};

/// Read the metadata document of a bundle (the config of an artifact, `/models/mlart.json`
/// of an image), reading nothing but the manifest's config or metadata layer. The document is
/// read as it streams in, its `files` into a list on disk past a few MiB (`Entries`): a
/// bundle of a million files is read in bounded memory. Nothing of it is returned unless its
/// blob has its digest.
///
/// (`&mut` only because callers outside the store pass one, e.g. `cli/sign.rs`; reading needs
/// `&self`. Becomes `&dyn Source` once they pass `&src`.)
pub fn read_metadata(
    src: &mut dyn crate::store::Source,
    manifest: &oci_spec::image::ImageManifest,
) -> Result<Metadata<Entries>> {
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
    if config_mt == METADATA_MEDIA_TYPE {
        let mut r = crate::store::resolve::open_verified(src, manifest.config())?;
        return parse(&what, &mut r);
    }
    if let Some(l) = raw_metadata {
        let mut r = crate::store::resolve::open_verified(src, l)?;
        return parse(&what, &mut r);
    }
    if let Some(m) =
        with_metadata_layer_file(src, manifest, METADATA_FILE, &mut |r| parse(&what, r))?
    {
        return Ok(m);
    }
    {
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
        let mut m = crate::format::dialect::synthesize(dialect, manifest, &config);
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        // Two layers for one path: the same bytes twice are one file; other bytes leave which
        // one a reader gets to the layer order, so the artifact is refused (as `verify`
        // refuses it), never half-written.
        if let Some(w) = m
            .files
            .windows(2)
            .find(|w| w[0].path == w[1].path && w[0].sha256 != w[1].sha256)
        {
            return Err(Error::integrity(format!(
                "{what}: two layers of the manifest are the file {:?} ({} and {}): which one is meant is not said, so the artifact is refused. Ask its publisher to push it again with one layer per path",
                w[0].path, w[0].layer, w[1].layer
            )));
        }
        m.files.dedup_by(|a, b| a.path == b.path);
        Entries::listed(m).map_err(|e| Error::input(format!("{what}: {e}")))
    }
}

/// The metadata document `r` holds, read as it streams (its digest checked at the end, when
/// `r` checks one: an integrity error before any other); its list of files on disk past a few
/// MiB. `what` names where it comes from in errors.
pub fn parse(what: &str, r: &mut dyn Read) -> Result<Metadata<Entries>> {
    budget::reset();
    let mut b = budget::Budget {
        r: io::BufReader::with_capacity(64 << 10, &mut *r),
        limit: MAX_METADATA_BYTES,
    };
    let parsed: std::result::Result<Metadata<Entries>, _> = serde_json::from_reader(&mut b);
    // The rest, to its end: the digest is checked there.
    let rest = io::copy(&mut b.r, &mut io::sink());
    match (parsed, rest) {
        (Ok(m), Ok(_)) => Ok(m),
        (Ok(_), Err(e)) => Err(Error::from_io(
            &e,
            format!("{what}: the metadata document: {e}"),
        )),
        (Err(e), rest) if e.is_io() => {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::InvalidData && e.to_string().starts_with("more than") {
                Err(Error::input(format!(
                    "{what}: the metadata document has {e} (more than its files hold: at most {MAX_METADATA_BYTES} bytes outside them, and in each)"
                )))
            } else {
                let _ = rest;
                Err(Error::from_io(
                    &e,
                    format!("{what}: the metadata document: {e}"),
                ))
            }
        }
        (Err(_), Err(e)) => Err(Error::from_io(
            &e,
            format!("{what}: the metadata document: {e}"),
        )),
        (Err(e), Ok(_)) => Err(Error::input(format!(
            "{what}: the metadata document is invalid: {e}"
        ))),
    }
}

/// A file (`mlart.json`, `model.sig`) of an image's small metadata layer, whole (at most
/// `MAX_METADATA_BYTES`), once the layer is verified. None: no metadata layer, or no such file.
pub fn read_metadata_layer_file(
    src: &dyn crate::store::Source,
    manifest: &oci_spec::image::ImageManifest,
    name: &str,
) -> Result<Option<Vec<u8>>> {
    let what = src.describe();
    with_metadata_layer_file(src, manifest, name, &mut |r| {
        let mut v = Vec::new();
        r.take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut v)
            .map_err(|e| Error::from_io(&e, format!("{what}: the metadata layer: {e}")))?;
        if v.len() as u64 > MAX_METADATA_BYTES {
            return Err(Error::input(format!(
                "{what}: {MODEL_DIR}/{name} is larger than {MAX_METADATA_BYTES} bytes"
            )));
        }
        Ok(v)
    })
}

/// `read` of a file of an image's small metadata layer, as the layer streams in. What it
/// gives is returned once the rest of the layer is read and the layer has its digest (an
/// integrity error first). None: no metadata layer, or no such file.
pub fn with_metadata_layer_file<T>(
    src: &dyn crate::store::Source,
    manifest: &oci_spec::image::ImageManifest,
    name: &str,
    read: &mut dyn FnMut(&mut dyn Read) -> Result<T>,
) -> Result<Option<T>> {
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
    let mut blob = crate::store::resolve::open_verified(src, layer)?;
    let bad = |e: std::io::Error| {
        Error::from_io(&e, format!("{what}: the metadata layer is corrupt: {e}"))
    };
    let want = format!("{MODEL_DIR}/{name}");
    let found = (|| {
        let mut ar =
            tar::Archive::new(crate::format::compression::decoder(&mut blob, comp).map_err(bad)?);
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let path = e.path().map_err(bad)?;
            if path.to_string_lossy().trim_start_matches("./") == want {
                return Ok(Some(read(&mut e)));
            }
        }
        Ok(None)
    })();
    // The rest of the layer, to its end, where its digest is checked: an integrity error
    // (a layer changed) comes before anything read from it.
    let rest = io::copy(&mut blob, &mut io::sink());
    let found: Option<Result<T>> = match (found, rest) {
        (_, Err(e)) => {
            return Err(Error::from_io(
                &e,
                format!("{what}: the metadata layer: {e}"),
            ))
        }
        (Err(e), Ok(_)) => return Err(e),
        (Ok(f), Ok(_)) => f,
    };
    found.transpose()
}
