//! The lineage fields of mlart.yaml (`datasets`, `base_model`, `training`) and `attest`:
//! parsed with their positions, checked, and turned into `format::lineage` values.

use super::{pos_of, Spec};
use crate::error::Result;
use crate::format::lineage::{parse_digest, BaseModel, Dataset, Lineage, Training};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataset {
    name: String,
    uri: Option<String>,
    digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBaseModel {
    #[serde(rename = "ref")]
    reference: Option<String>,
    uri: Option<String>,
    digest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTraining {
    command: Option<String>,
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    task: Option<String>,
    architecture: Option<String>,
    param_size: Option<String>,
    precision: Option<String>,
    quantization: Option<String>,
}

/// The raw lineage sections, as read.
#[derive(Default)]
pub(super) struct RawLineage {
    pub datasets: Option<Vec<Spanned<RawDataset>>>,
    pub base_model: Option<Spanned<RawBaseModel>>,
    pub training: Option<Spanned<RawTraining>>,
}

/// A URI has a scheme (`https:`, `s3:`, `hf:`, `file:` ...) and no whitespace.
fn is_uri(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme.as_bytes()[0].is_ascii_alphabetic()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !rest.is_empty()
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Check the lineage sections; each error names the field and its position.
pub(super) fn check(spec: &Spec, raw: RawLineage) -> Result<Lineage> {
    let mut out = Lineage::default();
    for d in raw.datasets.unwrap_or_default() {
        let pos = pos_of(&d);
        let RawDataset { name, uri, digest } = d.value;
        if name.trim().is_empty() {
            return Err(spec.error_at(
                pos,
                "datasets: a dataset with an empty `name`",
                "name it, e.g. `name: iris`",
            ));
        }
        if out.datasets.iter().any(|x| x.name == name) {
            return Err(spec.error_at(
                pos,
                format!("datasets: {name:?} is listed twice"),
                "give each dataset once (or different names)",
            ));
        }
        if let Some(u) = &uri {
            if !is_uri(u) {
                return Err(spec.error_at(
                    pos,
                    format!("datasets: the uri {u:?} of {name:?} is not a URI"),
                    "write it with its scheme, e.g. `https://…`, `s3://bucket/key` or `hf://datasets/owner/name`",
                ));
            }
        }
        if let Some(dg) = &digest {
            parse_digest(dg).map_err(|m| {
                spec.error_at(
                    pos,
                    format!("datasets: {name:?}: {m}"),
                    "compute it with `sha256sum FILE` and write `sha256:<hex>`",
                )
            })?;
        }
        out.datasets.push(Dataset { name, uri, digest });
    }
    if let Some(b) = raw.base_model {
        let pos = pos_of(&b);
        let RawBaseModel {
            reference,
            uri,
            digest,
        } = b.value;
        let hint = "give `ref: registry/repo@sha256:…` (an OCI reference) or `uri: https://…` (with `digest: sha256:<hex>` to pin it)";
        let pinned = match (&reference, &uri) {
            (Some(_), Some(_)) => {
                return Err(spec.error_at(pos, "base_model has both `ref` and `uri`", hint))
            }
            (None, None) => {
                return Err(spec.error_at(pos, "base_model has neither `ref` nor `uri`", hint))
            }
            (Some(r), None) => {
                crate::format::reference::parse_reference(r).map_err(|e| {
                    spec.error_at(
                        pos,
                        format!("base_model.ref {r:?} is not an OCI reference: {e}"),
                        hint,
                    )
                })?;
                r.split_once('@').map(|(_, d)| d.to_string())
            }
            (None, Some(u)) => {
                if !is_uri(u) {
                    return Err(spec.error_at(
                        pos,
                        format!("base_model.uri {u:?} is not a URI"),
                        hint,
                    ));
                }
                None
            }
        };
        let digest = match (digest, pinned) {
            (Some(d), Some(p)) if d != p => {
                return Err(spec.error_at(
                    pos,
                    format!(
                        "base_model: `digest: {d}` differs from the digest in the reference ({p})"
                    ),
                    "keep one of them, or make them agree",
                ))
            }
            (Some(d), _) | (None, Some(d)) => Some(d),
            // Allowed, as for datasets (a Hugging Face README's `base_model:` names a repo, not
            // content): the provenance then names it without pinning it; `bundle` warns.
            (None, None) => None,
        };
        if let Some(d) = &digest {
            parse_digest(d).map_err(|m| spec.error_at(pos, format!("base_model: {m}"), hint))?;
        }
        out.base_model = Some(BaseModel {
            reference,
            uri,
            digest,
        });
    }
    if let Some(t) = raw.training {
        let pos = pos_of(&t);
        let RawTraining {
            command,
            parameters,
            task,
            architecture,
            param_size,
            precision,
            quantization,
        } = t.value;
        for (field, v) in [
            ("command", &command),
            ("task", &task),
            ("architecture", &architecture),
            ("param_size", &param_size),
            ("precision", &precision),
            ("quantization", &quantization),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(spec.error_at(
                    pos,
                    format!("training.{field} is empty"),
                    format!("give a value or remove `{field}:`"),
                ));
            }
        }
        let parameters = parameters.unwrap_or_default();
        if parameters.keys().any(|k| k.trim().is_empty()) {
            return Err(spec.error_at(
                pos,
                "training.parameters has an empty name",
                "name every parameter, e.g. `learning_rate: 0.01`",
            ));
        }
        out.training = Some(Training {
            command,
            parameters,
            task,
            architecture,
            param_size,
            precision,
            quantization,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const HEAD: &str = "name: m\nversion: '1'\nmodel: [m.onnx]\n";

    fn parse(extra: &str) -> crate::Result<crate::spec::Spec> {
        crate::spec::parse(Path::new("p/mlart.yaml"), &format!("{HEAD}{extra}"))
    }

    #[test]
    fn lineage_is_parsed() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let s = parse(&format!(
            "attest: true\ndatasets:\n  - {{name: iris, uri: 'https://archive.ics.uci.edu/iris.data', digest: '{d}'}}\n  - {{name: extra}}\nbase_model: {{ref: 'reg.io/base/m@{d}'}}\ntraining:\n  command: python train.py\n  parameters: {{lr: 0.1, epochs: 3, opt: adam}}\n  task: classification\n"
        ))
        .unwrap();
        assert!(s.attest);
        assert_eq!(s.lineage.datasets.len(), 2);
        assert_eq!(s.lineage.datasets[0].digest.as_deref(), Some(d.as_str()));
        assert_eq!(
            s.lineage.base_model.as_ref().unwrap().digest.as_deref(),
            Some(d.as_str())
        );
        let t = s.lineage.training.unwrap();
        assert_eq!(t.parameters["epochs"], serde_json::json!(3));
        assert_eq!(t.task.as_deref(), Some("classification"));
        // a base model named by URI only (a Hugging Face README's `base_model:`): allowed,
        // unpinned; a bad digest is still an error
        let s = parse("base_model: {uri: 'https://huggingface.co/org/base'}\n").unwrap();
        let b = s.lineage.base_model.unwrap();
        assert_eq!(
            (b.locator(), b.digest.as_deref()),
            ("https://huggingface.co/org/base", None)
        );
        assert!(parse("base_model: {uri: 'https://x', digest: 'sha256:00'}\n").is_err());
        // none given: empty, and `attest` is off
        let s = parse("").unwrap();
        assert!(s.lineage.is_empty() && !s.attest);
    }

    #[test]
    fn bad_lineage_names_the_field_and_line() {
        let d = format!("sha256:{}", "ab".repeat(32));
        for (extra, want) in [
            (
                "datasets:\n  - {name: a, digest: 'md5:00'}\n",
                "unsupported algorithm",
            ),
            (
                "datasets:\n  - {name: a, digest: 'sha256:00'}\n",
                "64 lowercase hex",
            ),
            (
                "datasets:\n  - {name: a, uri: 'not a uri'}\n",
                "is not a URI",
            ),
            ("datasets:\n  - {name: a}\n  - {name: a}\n", "listed twice"),
            ("datasets:\n  - {name: a, url: x}\n", "unknown field"),
            (
                &format!("base_model: {{ref: 'r.io/a/b', uri: 'https://x', digest: '{d}'}}\n"),
                "both",
            ),
            (
                &format!(
                    "base_model: {{ref: 'r.io/a/b@sha256:{}', digest: '{d}'}}\n",
                    "cd".repeat(32)
                ),
                "differs",
            ),
            ("training: {command: ''}\n", "training.command is empty"),
            ("attest: maybe\n", "4:9: invalid boolean"),
        ] {
            let e = parse(extra).unwrap_err().to_string();
            assert!(e.contains(want), "{extra}: {e}");
            assert!(e.starts_with("p/mlart.yaml:"), "{e}");
        }
    }
}
