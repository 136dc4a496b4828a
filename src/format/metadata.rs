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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub format_version: u32,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub form: Form,
    /// Every file of the bundle, sorted by path.
    pub files: Vec<FileEntry>,
    pub models: Vec<ModelEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<FeatureSchema>,
    /// Flat name -> value; null for NaN/infinite.
    #[serde(default)]
    pub metrics: Metrics,
    /// Metric name -> the report it came from.
    #[serde(default)]
    pub metric_sources: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<serde_json::Value>,
    /// The base image of a runnable image (`bundle --base`): its manifest digest and platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::format::platform::BaseRecord>,
    /// Set when this document was not read from the bundle but made from the manifest of
    /// another tool's model artifact (`format::modelpack::Dialect`): `modelpack`, `cnai`,
    /// `kitops`, `docker-ai`. Never written by mlart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
    /// Where the model came from (`datasets`, `base_model`, `training` in the spec): absent
    /// when the spec declares none.
    #[serde(
        default,
        skip_serializing_if = "crate::format::lineage::Lineage::is_empty"
    )]
    pub lineage: crate::format::lineage::Lineage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path in the project (and under /models in the image form).
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    pub sha256: String,
    /// Digest of the layer that holds the file.
    pub layer: String,
    /// The entry stands for a whole tar layer of another tool's artifact whose files are only
    /// known once it is read (`path` is the layer's file path, a directory or a file; `sha256`
    /// is the layer's digest). Never written by mlart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archive: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub path: String,
    /// Detected or declared format; null when unknown.
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// ONNX models, with `bundle --validate`: inputs, outputs, opset, IR version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<crate::format::validation::ModelIo>,
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
    /// The env files that were read.
    pub files: Vec<String>,
    /// package name (lowercase) -> version constraint as written ("" when unpinned).
    pub packages: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

/// name -> value; `None` for a metric that is NaN or infinite.
pub type Metrics = BTreeMap<String, Option<f64>>;
