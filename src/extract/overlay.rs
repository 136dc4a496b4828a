//! Layers of an mlart manifest that its metadata does not account for.
//!
//! A pull writes what mlart.json lists, layer by layer, and skips the layers no selected
//! file is in. A layer added on top after `mlart bundle` (`umoci repack`, a `docker
//! commit`-style edit) is in no file's `layer`: skipping it silently would write the old
//! bytes of a file that layer replaces, and keep one its whiteout deletes, while a container
//! runtime or a Kubernetes image volume mounting the same manifest shows the new ones. So
//! such a manifest is refused before anything is fetched (exit 4, as `verify` reports it).
//!
//! Accounted for: a layer some file of mlart.json is in; the metadata layer and the
//! signature layer (by their `ai.mlart.kind`); a copy of a layer compressed by `skopeo copy`
//! (matched by the image config's `rootfs.diff_ids`); and, in a runnable image (`bundle
//! --base`), the base image's layers, which come before every layer of the bundle. Another
//! tool's artifact (a `dialect`) has metadata made from all of its layers, so it is not
//! checked here.

use crate::error::{Error, Result};
use crate::format::annotations::KIND_ANNOTATION;
use crate::format::digest::Digest;
use crate::format::metadata::{Form, Metadata};
use crate::store::entries::Entries;
use crate::store::layout::Source;
use oci_spec::image::ImageManifest;

/// The manifest's layers that no file, kind or base accounts for: (place, digest, media type).
pub(super) fn unaccounted<'m>(
    src: &dyn Source,
    manifest: &'m ImageManifest,
    meta: &Metadata<Entries>,
    named: &dyn Fn(&str) -> bool,
) -> Result<Vec<(usize, &'m str, String)>> {
    if meta.dialect.is_some() {
        return Ok(Vec::new());
    }
    let kind = |i: usize| {
        manifest.layers()[i]
            .annotations()
            .as_ref()
            .and_then(|a| a.get(KIND_ANNOTATION))
            .cloned()
    };
    let first_own = (0..manifest.layers().len()).find(|i| kind(*i).is_some());
    let mut left = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        let own = matches!(kind(i).as_deref(), Some("metadata" | "signature"));
        let base = meta.base.is_some() && first_own.is_some_and(|f| i < f);
        if !own && !base && !named(l.digest().as_ref()) {
            left.push((i, l.digest().as_ref(), l.media_type().to_string()));
        }
    }
    if left.is_empty() || meta.form != Form::Image {
        return Ok(left);
    }
    // A compressed copy of a named layer: its uncompressed digest is the named one.
    if let Ok(ids) = config_diff_ids(src, manifest)? {
        left.retain(|(i, _, _)| !named(ids[*i].as_str()));
    }
    Ok(left)
}

/// The error for layers `left` of `what`, which the metadata does not account for.
pub(super) fn refuse(what: &str, left: &[(usize, &str, String)]) -> Error {
    let list: Vec<String> = left
        .iter()
        .map(|(i, d, mt)| format!("layer {} ({}, {mt})", i + 1, short(d)))
        .collect();
    let one = left.len() == 1;
    Error::integrity(format!(
        "{what}: {} of the manifest {} not in the bundle's metadata (mlart.json): the image was changed after `mlart bundle` (a layer added on top, as `umoci repack` or a `docker commit`-style edit do). A container runtime or a Kubernetes image volume would show the files added, replaced or deleted there, while `mlart pull` writes only what mlart.json lists; so nothing was pulled. `mlart verify` names the files concerned. Pull the release as it was bundled, or bundle the project again",
        list.join(", "),
        if one { "is" } else { "are" },
    ))
}

fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

/// The image config's `rootfs.diff_ids`, one per manifest layer; Err(why not) when the
/// config has no such list (an error is only returned for a config that cannot be read).
pub(super) fn config_diff_ids(
    src: &dyn Source,
    manifest: &oci_spec::image::ImageManifest,
) -> Result<std::result::Result<Vec<Digest>, String>> {
    let config = manifest.config();
    let mt = config.media_type().to_string();
    if mt != crate::format::media_type::IMAGE_CONFIG_MEDIA_TYPE {
        return Ok(Err(format!(
            " (and its config is a {mt}, not an image config with rootfs.diff_ids)"
        )));
    }
    let raw =
        crate::store::layout::read_blob(src, config, crate::format::media_type::MAX_CONFIG_BYTES)?;
    let v: serde_json::Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!(" (and its image config is not JSON: {e})"))),
    };
    let Some(ids) = v.pointer("/rootfs/diff_ids").and_then(|d| d.as_array()) else {
        return Ok(Err(
            " (and its image config has no rootfs.diff_ids list)".to_string()
        ));
    };
    let n = manifest.layers().len();
    if ids.len() != n {
        return Ok(Err(format!(
            " (and its image config's rootfs.diff_ids has {} entries for the manifest's {n} layers, so no layer can be matched by its uncompressed digest)",
            ids.len()
        )));
    }
    let ids = ids
        .iter()
        .map(|d| d.as_str().map(Digest::parse))
        .collect::<Option<std::result::Result<Vec<_>, _>>>();
    match ids {
        Some(Ok(ids)) => Ok(Ok(ids)),
        Some(Err(e)) => Ok(Err(format!(
            " (and its image config's rootfs.diff_ids holds an invalid digest: {e})"
        ))),
        None => Ok(Err(
            " (and its image config's rootfs.diff_ids holds something that is not a string)"
                .to_string(),
        )),
    }
}
