//! Attestations: a SLSA Provenance v1 statement (where a bundle came from) and a CycloneDX 1.6
//! ML-BOM (what is in it), each an in-toto Statement v1 signed into a DSSE envelope (in a
//! Sigstore bundle v0.3, with `sign`'s keys) and stored as an OCI referrer of the bundle's
//! manifest whose artifactType names the predicate.
//!
//! A library of documents and envelopes: it reads and writes through `store` (a layout, an
//! archive or a registry as a `Source`/`Sink`), never through `build`, `registry` or `check`.
//! The documents are deterministic: they are made of the bundle's metadata, the spec file's
//! digest and the git state, never of the clock.

pub mod git;
pub mod mlbom;
pub mod provenance;
pub mod referrer;

use crate::format::attestation::AttestationKind;
use crate::format::digest::Digest;
use crate::format::metadata::Metadata;
use crate::sign::PrivateKey;
use crate::store::referrers::Referrer;
use serde_json::Value;

pub use referrer::{attach_local, read, Found};

/// What the attestations are about: the bundle's manifest (and its config).
#[derive(Clone, Debug)]
pub struct Subject {
    pub manifest: Digest,
    pub media_type: String,
    pub size: u64,
    pub config: Digest,
}

/// The spec file a bundle was made from (path relative to the project, sha256 hex).
#[derive(Clone, Debug)]
pub struct SpecFile {
    pub path: String,
    pub sha256: String,
}

/// Everything the two documents are made of.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub metadata: &'a Metadata,
    pub subject: Subject,
    /// The spec file: known to `bundle`, and to `attest -f SPEC`.
    pub spec: Option<SpecFile>,
    /// The project's git state at build time (provenance only).
    pub git: Option<git::GitState>,
}

impl Inputs<'_> {
    /// The in-toto subjects: the manifest, then the config.
    fn subjects(&self) -> Value {
        let m = self.metadata;
        serde_json::json!([
            {"name": format!("{}:{}", m.name, m.version), "digest": {"sha256": self.subject.manifest.hex()}},
            {"name": format!("{}:{}/config", m.name, m.version), "digest": {"sha256": self.subject.config.hex()}},
        ])
    }
}

/// The statement of `kind` for `inputs`.
pub fn statement(kind: AttestationKind, inputs: &Inputs) -> Value {
    match kind {
        AttestationKind::Provenance => provenance::statement(inputs),
        AttestationKind::Sbom => mlbom::statement(inputs),
    }
}

/// One attestation made: its kind, statement and the referrer that stores it.
#[derive(Clone, Debug)]
pub struct Made {
    pub kind: AttestationKind,
    pub statement: Value,
    pub referrer: Referrer,
}

/// Make and sign both attestations (deterministic: the same inputs and key give the same
/// bytes, RFC 6979); each DSSE signature names its key by `sign::key_id`.
pub fn make(key: &PrivateKey, inputs: &Inputs) -> Vec<Made> {
    AttestationKind::ALL
        .into_iter()
        .map(|kind| {
            let statement = statement(kind, inputs);
            let envelope = crate::sign::sign_attestation(key, &statement);
            Made {
                kind,
                referrer: referrer::referrer(kind, envelope, &inputs.subject),
                statement,
            }
        })
        .collect()
}

/// The digest `algorithm:hex` as an in-toto DigestSet (`{"sha256": hex}`).
pub(crate) fn digest_set(d: &str) -> Option<Value> {
    let (alg, hex) = crate::format::lineage::parse_digest(d).ok()?;
    Some(serde_json::json!({ alg: hex }))
}

/// `sha256:<hex>` or `<hex>` -> `<hex>`.
pub(crate) fn hex_of(sha256: &str) -> &str {
    sha256.strip_prefix("sha256:").unwrap_or(sha256)
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::*;
    use crate::format::lineage::{BaseModel, Dataset, Lineage, Training};

    /// A metadata document as the iris example's, with lineage.
    pub fn metadata() -> Metadata {
        let mut m: Metadata = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "iris", "version": "1.0.0", "form": "image",
            "license": "Apache-2.0", "description": "iris classifier",
            "source": "https://github.com/mlart-dev/mlart", "revision": "abc",
            "created": "1970-01-01T00:00:00Z",
            "files": [
                {"path": "model/iris.onnx", "kind": "model", "size": 10, "sha256": format!("sha256:{}", "11".repeat(32)), "layer": format!("sha256:{}", "aa".repeat(32))},
                {"path": "requirements.txt", "kind": "env", "size": 5, "sha256": format!("sha256:{}", "22".repeat(32)), "layer": format!("sha256:{}", "bb".repeat(32))},
                {"path": "data/train.csv", "kind": "data", "size": 5, "sha256": format!("sha256:{}", "33".repeat(32)), "layer": format!("sha256:{}", "bb".repeat(32))},
            ],
            "models": [{"path": "model/iris.onnx", "format": "onnx", "framework": "scikit-learn", "size": 10, "sha256": format!("sha256:{}", "11".repeat(32)),
                "io": {"inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "type": "tensor(float32)[N,4]"}], "outputs": [{"name": "label", "kind": "tensor", "dtype": "int64", "type": "tensor(int64)[N]"}]}}],
            "schema": {"source": "mlart", "file": "schema/features.yaml", "features": [{"name": "sepal_length", "dtype": "float32"}], "outputs": [{"name": "species", "dtype": "string"}]},
            "metrics": {"accuracy": 0.97, "f1": 0.96, "broken": null},
            "metric_sources": {"accuracy": "eval/metrics.json"},
            "env": {"files": ["requirements.txt", "environment.yml"], "packages": {"numpy": "==2.1.0", "scikit-learn": ">=1.5", "pandas": "=2.2.3=py311_0", "onnx": "==1.17"}, "python": "3.11"},
        }))
        .unwrap();
        m.lineage = Lineage {
            datasets: vec![
                Dataset {
                    name: "iris".into(),
                    uri: Some("https://archive.ics.uci.edu/iris.data".into()),
                    digest: Some(format!("sha256:{}", "44".repeat(32))),
                },
                Dataset {
                    name: "holdout".into(),
                    uri: None,
                    digest: None,
                },
            ],
            base_model: Some(BaseModel {
                reference: None,
                uri: Some("https://huggingface.co/org/base".into()),
                digest: Some(format!("sha256:{}", "55".repeat(32))),
            }),
            training: Some(Training {
                command: Some("python train.py --seed 0".into()),
                parameters: [("C".to_string(), serde_json::json!(1.0))].into(),
                task: Some("classification".into()),
                architecture: Some("logistic-regression".into()),
                ..Default::default()
            }),
        };
        m
    }

    pub fn inputs(m: &Metadata) -> Inputs<'_> {
        Inputs {
            metadata: m,
            subject: Subject {
                manifest: Digest::of(b"manifest"),
                media_type: crate::format::media_type::MANIFEST_MEDIA_TYPE.into(),
                size: 8,
                config: Digest::of(b"config"),
            },
            spec: Some(SpecFile {
                path: "mlart.yaml".into(),
                sha256: "66".repeat(32),
            }),
            git: Some(git::GitState {
                commit: "77".repeat(20),
                remote: Some("https://github.com/mlart-dev/mlart.git".into()),
                dirty: false,
            }),
        }
    }
}
