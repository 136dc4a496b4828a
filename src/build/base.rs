//! Runnable images (`bundle --base`): a bundle's layers on top of a base image.
//!
//! The base is read from a registry, a layout or an archive; it is an image manifest (OCI, or
//! Docker schema 2) or an index (OCI, or a Docker manifest list) from which one platform — or
//! every platform — is picked. Everything read is verified by digest and checked before it is
//! trusted: it must be a container image (an image config with `rootfs.diff_ids`, one per
//! layer), not an artifact. The base's layers are copied to the sink (or mounted, or skipped,
//! in a registry) unchanged; the bundle's config is the base's, merged (`image_config`).

use crate::build::bundle::{Built, Options};
use crate::format::annotations::BASE_DIGEST_ANNOTATION;
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::metadata::LayerInfo;
use crate::spec::Spec;
use crate::store::base::BaseImage;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Labels with this prefix describe an image; the base's are dropped (they describe the base).
const OCI_LABEL_PREFIX: &str = "org.opencontainers.image.";

// ---------------- platforms ----------------

// ---------------- the resolved base ----------------

// ---------------- the merged config ----------------

/// Set `key=value` in an Env list: replace the first entry for `key` (dropping later ones),
/// else append.
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let prefix = format!("{key}=");
    let entry = format!("{key}={value}");
    match env.iter().position(|e| e.starts_with(&prefix) || e == key) {
        Some(i) => {
            env[i] = entry;
            let mut j = i + 1;
            while j < env.len() {
                if env[j].starts_with(&prefix) || env[j] == key {
                    env.remove(j);
                } else {
                    j += 1;
                }
            }
        }
        None => env.push(entry),
    }
}

/// The image config of a bundle: the base's config (or, without a base, a config for
/// `opts`' platform) with `MODEL_DIR=/models` and the spec's `image:` settings, the base's
/// `org.opencontainers.image.*` labels replaced by `labels`, the bundle's layers appended to
/// `rootfs.diff_ids` and `history`, and `created` from SOURCE_DATE_EPOCH (else none).
pub fn image_config(
    spec: &Spec,
    opts: &Options,
    base: Option<&BaseImage>,
    layers: &[LayerInfo],
    labels: &BTreeMap<String, String>,
    created: Option<&str>,
) -> Vec<u8> {
    let ours: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut h = json!({
                "created_by": format!("mlart bundle: {} ({})", l.kind, l.title),
                "comment": format!("{} file(s)", l.files),
            });
            if let Some(c) = created {
                h["created"] = c.into();
            }
            h
        })
        .collect();
    let mut c = match base {
        Some(b) => b.config.clone(),
        None => {
            let mut m = Map::new();
            m.insert("architecture".into(), opts.arch.clone().into());
            m.insert("os".into(), opts.os.clone().into());
            if let Some(v) = &opts.variant {
                m.insert("variant".into(), v.clone().into());
            }
            m
        }
    };
    c.remove("created");
    if let Some(cr) = created {
        c.insert("created".into(), cr.into());
    }

    let mut rc = match c.remove("config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut env: Vec<String> = match rc.get("Env") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    set_env(
        &mut env,
        "MODEL_DIR",
        &format!("/{}", crate::format::metadata::MODEL_DIR),
    );
    let settings = spec.image.clone().unwrap_or_default();
    for (k, v) in &settings.env {
        set_env(&mut env, k, v);
    }
    rc.insert("Env".into(), env.into());
    let mut all_labels: BTreeMap<String, Value> = match rc.get("Labels") {
        Some(Value::Object(l)) => l
            .iter()
            .filter(|(k, _)| !k.starts_with(OCI_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => BTreeMap::new(),
    };
    for (k, v) in labels {
        all_labels.insert(k.clone(), v.clone().into());
    }
    rc.insert("Labels".into(), json!(all_labels));
    if let Some(ep) = &settings.entrypoint {
        rc.insert("Entrypoint".into(), json!(ep));
        if settings.cmd.is_none() {
            // As in a Dockerfile: a new ENTRYPOINT drops the base's CMD.
            rc.remove("Cmd");
        }
    }
    if let Some(cmd) = &settings.cmd {
        rc.insert("Cmd".into(), json!(cmd));
    }
    if let Some(w) = &settings.workdir {
        rc.insert("WorkingDir".into(), w.clone().into());
    }
    if let Some(u) = &settings.user {
        rc.insert("User".into(), u.clone().into());
    }
    c.insert("config".into(), Value::Object(rc));

    let mut diff_ids: Vec<Value> = base
        .map(|b| {
            b.layers
                .iter()
                .map(|l| l.diff_id.to_string().into())
                .collect()
        })
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|l| Value::from(l.diff_id.to_string())));
    let mut rootfs = match c.remove("rootfs") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    rootfs.insert("type".into(), "layers".into());
    rootfs.insert("diff_ids".into(), diff_ids.into());
    c.insert("rootfs".into(), Value::Object(rootfs));
    let mut history = match c.remove("history") {
        Some(Value::Array(h)) => h,
        _ => Vec::new(),
    };
    history.extend(ours);
    c.insert("history".into(), history.into());
    crate::format::json::to_canonical_bytes(&Value::Object(c))
}

// ---------------- the index of a multi-platform bundle ----------------

/// The OCI index of one bundle per platform (`--platform all`): the images in the base's
/// order, each with the base's platform, and the manifests' `org.opencontainers.image.*`
/// annotations (but the per-image base digest).
pub fn index(built: &[Built], images: &[BaseImage]) -> Vec<u8> {
    let manifests: Vec<Value> = built
        .iter()
        .zip(images)
        .map(|(b, i)| {
            json!({
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": b.manifest_digest.as_str(),
                "size": b.manifest.len(),
                "platform": i.platform_json(),
            })
        })
        .collect();
    let mut annotations: BTreeMap<String, Value> = built
        .first()
        .and_then(|b| serde_json::from_slice::<Value>(&b.manifest).ok())
        .and_then(|m| m.get("annotations").and_then(Value::as_object).cloned())
        .map(|a| a.into_iter().collect())
        .unwrap_or_default();
    annotations.remove(BASE_DIGEST_ANNOTATION);
    crate::format::json::to_canonical_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
        "annotations": annotations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_are_replaced_in_place() {
        let mut e = vec![
            "PATH=/bin".to_string(),
            "MODEL_DIR=/old".to_string(),
            "A=1".to_string(),
            "MODEL_DIR=/older".to_string(),
        ];
        set_env(&mut e, "MODEL_DIR", "/models");
        set_env(&mut e, "B", "2");
        assert_eq!(e, ["PATH=/bin", "MODEL_DIR=/models", "A=1", "B=2"]);
    }
}
