//! The metadata document of a bundle (`mlart.json`: the config of an artifact, a file of an
//! image) and the values it is made of.

use crate::format::digest::Digest;
use crate::format::feature_schema::FeatureSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const FORMAT_VERSION: u32 = 1;

/// In the image form, files live under this directory.
pub const MODEL_DIR: &str = "models";

pub const METADATA_FILE: &str = "mlart.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    Image,
    Artifact,
    /// The CNCF ModelPack model-spec (`format::modelpack`).
    Modelpack,
}

impl Form {
    /// The word of `--format` and the spec's `form:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Image => "image",
            Form::Artifact => "artifact",
            Form::Modelpack => "modelpack",
        }
    }

    /// Files are raw layers or tars of project-relative paths (no `models/` root).
    pub fn is_artifact_like(self) -> bool {
        self != Form::Image
    }
}

/// Its fields, and those of every struct inside it, are declared in key order: mlart.json is
/// then written straight from them (`format::json`; the test `fields_are_in_key_order`).
///
/// `F` is how `files` is held: a list (read from a bundle), or streamed from disk as the
/// document is written (`build::entries`: a bundle of a million files never holds them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata<F = Vec<FileEntry>> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    /// The base image of a runnable image (`bundle --base`): its manifest digest and platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::format::platform::BaseRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Set when this document was not read from the bundle but made from the manifest of
    /// another tool's model artifact (`format::modelpack::Dialect`): `modelpack`, `cnai`,
    /// `kitops`, `docker-ai`. Never in a bundle mlart writes; in the `mlart.json` that `mlart
    /// pull` writes beside such an artifact's files (with [`DERIVED_KEY`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSummary>,
    /// Every file of the bundle, sorted by path.
    pub files: F,
    pub form: Form,
    pub format_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Where the model came from (`datasets`, `base_model`, `training` in the spec): absent
    /// when the spec declares none.
    #[serde(
        default,
        skip_serializing_if = "crate::format::lineage::Lineage::is_empty"
    )]
    pub lineage: crate::format::lineage::Lineage,
    /// Metric name -> the report it came from.
    #[serde(default)]
    pub metric_sources: BTreeMap<String, String>,
    /// Flat name -> value; null for NaN/infinite.
    #[serde(default)]
    pub metrics: Metrics,
    pub models: Vec<ModelEntry>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FeatureSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<serde_json::Value>,
    pub version: String,
}

impl<F> Metadata<F> {
    /// The same document with `files` instead.
    pub fn with_files<G>(self, files: G) -> Metadata<G> {
        let Metadata {
            authors,
            base,
            created,
            description,
            dialect,
            env,
            files: _,
            form,
            format_version,
            license,
            lineage,
            metric_sources,
            metrics,
            models,
            name,
            revision,
            schema,
            source,
            validation,
            version,
        } = self;
        Metadata {
            authors,
            base,
            created,
            description,
            dialect,
            env,
            files,
            form,
            format_version,
            license,
            lineage,
            metric_sources,
            metrics,
            models,
            name,
            revision,
            schema,
            source,
            validation,
            version,
        }
    }
}

/// The key of an `mlart.json` that `mlart pull` wrote for another tool's artifact (which has
/// none): the document was made from the files the pull wrote and that artifact's manifest,
/// not read from it, and no signature covers it. Not a field of [`Metadata`] (readers ignore
/// it); read apart as [`DerivedDoc`].
pub const DERIVED_KEY: &str = "derived";

/// What the `derived` key of such an `mlart.json` holds (fields in key order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// What wrote it: `mlart pull`.
    pub by: String,
    /// The dialect of the artifact (`modelpack`, `cnai`, `kitops`, `docker-ai`).
    pub dialect: String,
    /// The digest of the manifest pulled.
    pub manifest: String,
    /// Where it was pulled from, as given.
    pub reference: String,
}

/// An `mlart.json` read for its `derived` key only (every other key skipped as it streams).
#[derive(Debug, Default, Deserialize)]
pub struct DerivedDoc {
    #[serde(default)]
    pub derived: Option<Derived>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The entry stands for a whole tar layer of another tool's artifact whose files are only
    /// known once it is read (`path` is the layer's file path, a directory or a file; `sha256`
    /// is the layer's digest). Never written by mlart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive: bool,
    pub kind: Kind,
    /// Digest of the layer that holds the file.
    pub layer: std::sync::Arc<str>,
    /// Path in the project (and under /models in the image form).
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Detected or declared format; null when unknown.
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    /// ONNX models, with `bundle --validate`: inputs, outputs, opset, IR version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<crate::format::validation::ModelIo>,
    pub path: String,
    /// The samples of `mlart validate` for this model (the spec entry's `samples:`): the
    /// path in the bundle of a samples JSON file, or of a folder of ONNX test data sets
    /// (`test_data_set_N/`). Absent when the entry gives none (older bundles never have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<String>,
    pub sha256: String,
    pub size: u64,
}

/// A layer as it appears in the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub media_type: String,
    pub kind: String,
    pub title: String,
    pub files: usize,
}

/// Largest metadata document accepted.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// RFC 3339 UTC time of a Unix epoch.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86400) as i64;
    let secs = epoch % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The kinds of content of a bundle, in the order their layers appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Model,
    Data,
    Schema,
    Env,
    Config,
    Docs,
    Eval,
    Logs,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Model,
        Kind::Data,
        Kind::Schema,
        Kind::Env,
        Kind::Config,
        Kind::Docs,
        Kind::Eval,
        Kind::Logs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Data => "data",
            Kind::Schema => "schema",
            Kind::Env => "env",
            Kind::Config => "config",
            Kind::Docs => "docs",
            Kind::Eval => "eval",
            Kind::Logs => "logs",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Model weights and datasets do not compress; everything else is text-like.
    pub fn is_bulk(self) -> bool {
        matches!(self, Kind::Model | Kind::Data)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Model formats mlart knows; detected from the extension when the spec does not say.
pub const MODEL_FORMATS: &[&str] = &[
    "onnx",
    "pickle",
    "joblib",
    "safetensors",
    "pytorch",
    "keras",
    "gguf",
    "xgboost",
    "lightgbm",
    "tensorflow",
    "other",
];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvSummary {
    /// Conda packages (environment.yml's `dependencies`): `[CHANNEL::]name` (lowercase) ->
    /// the match spec after the name as written (`=1.26`, `==2.2.1`, `=3.9.0=BUILD`; "" when
    /// unpinned). Apart from `packages`: conda's numpy and pip's are two packages. (Bundles
    /// made before this field kept conda's in `packages`, as `=V`.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub conda: BTreeMap<String, String>,
    /// The env files that were read.
    pub files: Vec<String>,
    /// Python packages (requirements, pyproject, environment.yml's `pip:`): name (lowercase)
    /// -> version constraint as written ("" when unpinned).
    pub packages: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

/// name -> value; `None` for a metric that is NaN or infinite.
pub type Metrics = BTreeMap<String, Option<f64>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the document set, nested ones too: written straight (no `Value` tree),
    /// and the bytes are those of the sorted tree. A field added out of key order fails here.
    #[test]
    fn fields_are_in_key_order() {
        let doc = serde_json::json!({
            "authors": ["a"], "base": {"digest": "sha256:00", "platform": "linux/amd64"},
            "created": "2026-01-01T00:00:00Z", "description": "d", "dialect": "kitops",
            "env": {"conda": {"conda-forge::pandas": "==2.2.1"}, "files": ["requirements.txt"],
                    "packages": {"numpy": "==2"}, "python": "3.12"},
            "files": [{"archive": true, "kind": "model", "layer": "sha256:11", "path": "m.onnx",
                       "sha256": "sha256:22", "size": 3}],
            "form": "image", "format_version": 1, "license": "MIT",
            "lineage": {
                "base_model": {"digest": "sha256:33", "ref": "r/b:1", "uri": "hf://b"},
                "datasets": [{"digest": "sha256:44", "name": "ds", "uri": "s3://x"}],
                "training": {"architecture": "mlp", "command": "train", "param_size": "1M",
                             "parameters": {"lr": 0.1}, "precision": "fp32",
                             "quantization": "none", "task": "t"}
            },
            "metric_sources": {"acc": "eval.json"}, "metrics": {"acc": 0.9, "nan": null},
            "models": [{"format": "onnx", "framework": "sklearn",
                        "io": {"inputs": [{"dtype": "float32", "kind": "tensor", "name": "x",
                                           "shape": ["N", 4, null], "type": "tensor(float32)[N,4,?]"}],
                               "ir_version": 8, "opset": {"": 17},
                               "outputs": [{"kind": "sequence", "name": "y", "type": "sequence(int64)"}]},
                        "path": "m.onnx", "samples": "s.json", "sha256": "sha256:22", "size": 3}],
            "name": "n", "revision": "abc",
            "schema": {"features": [{"categories": ["a", 1], "default": 0, "description": "f",
                                     "dtype": "float32", "name": "f", "nullable": true,
                                     "range": {"max": 1.0, "min": 0.0}, "shape": [4]}],
                       "file": "schema.json", "outputs": [{"dtype": "int64", "name": "y", "nullable": false}],
                       "source": "mlart"},
            "source": "https://x", "validation": {"ok": true, "z": [1], "a": {"c": 1, "b": 2}},
            "version": "1"
        });
        let m: Metadata = serde_json::from_value(doc.clone()).unwrap();
        let straight = crate::format::json::in_order(&m, serde_json::ser::PrettyFormatter::new())
            .expect("Metadata is written straight: a field is out of key order");
        let mut sorted = serde_json::to_vec_pretty(&crate::format::json::canonical(doc)).unwrap();
        assert_eq!(
            String::from_utf8(straight).unwrap(),
            String::from_utf8(sorted.clone()).unwrap()
        );
        sorted.push(b'\n');
        assert_eq!(crate::format::json::to_canonical_pretty(&m), sorted);
    }
}
