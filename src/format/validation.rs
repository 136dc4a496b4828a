//! The validation report (`mlart.validation.v1`) and the model I/O description stored in the
//! bundle metadata. Compiled in every build: bundles and gates read them without a runtime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: &str = "mlart.validation.v1";

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `mlart.validation.v1`.
    pub format: String,
    /// No check of any validated model failed (models not validated do not count).
    pub passed: bool,
    /// The ONNX Runtime that ran the models (absent when no model was ONNX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeInfo>,
    /// The feature schema file the models were compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The samples files used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    pub settings: Settings,
    pub models: Vec<ModelReport>,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// ONNX Runtime's version, e.g. `1.31.1`.
    pub version: String,
    /// The library file (absent in the report stored in a bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub batch_sizes: Vec<usize>,
    /// Timed runs per latency figure (0: latency not measured).
    pub runs: usize,
    pub tolerance: f64,
    /// Latency measured (false in the report stored in a bundle).
    pub timings: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub models: usize,
    pub validated: usize,
    pub passed: usize,
    pub failed: usize,
    pub not_validated: usize,
}

/// One model's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub path: String,
    /// `onnx`, `pickle`, ...; null when unknown.
    pub format: Option<String>,
    /// False for formats mlart cannot run (everything but ONNX): see `reason`.
    pub validated: bool,
    /// Validated models: every check passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// Why a model was not validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_version: Option<i64>,
    /// Operator set domain -> version (`ai.onnx` for the default domain).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opset: BTreeMap<String, i64>,
    /// The model's producer, e.g. `skl2onnx 1.20.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<IoInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<IoInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `load`, `inputs`, `outputs`, `run[batch=N]` (or `run` for fixed shapes), `finite`,
    /// `samples`.
    pub name: String,
    pub passed: bool,
    /// The check did not apply (e.g. no schema); it counts as passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    pub message: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: true,
            skipped: false,
            message: message.into(),
        }
    }
    pub fn fail(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: false,
            skipped: false,
            message: message.into(),
        }
    }
    pub fn skip(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: true,
            skipped: true,
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub batch_size: usize,
    pub runs: usize,
    /// One intra-op and one inter-op thread.
    pub single_thread: Percentiles,
    /// ONNX Runtime's default thread pools.
    pub default_threads: Percentiles,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of durations in seconds.
    pub fn of(mut secs: Vec<f64>) -> Percentiles {
        if secs.is_empty() {
            return Percentiles {
                p50_ms: 0.0,
                p95_ms: 0.0,
            };
        }
        secs.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = ((p / 100.0) * secs.len() as f64).ceil() as usize;
            let ms = secs[rank.clamp(1, secs.len()) - 1] * 1e3;
            (ms * 1e4).round() / 1e4
        };
        Percentiles {
            p50_ms: at(50.0),
            p95_ms: at(95.0),
        }
    }
}

/// One input or output of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoInfo {
    /// Tensors: the element type, in mlart's dtype names (`float32`, `int64`, `string`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// `tensor`, `sequence`, `map` or `optional`.
    pub kind: String,
    pub name: String,
    /// Tensors: each dimension is a number, a symbolic name, or null (dynamic, unnamed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<Dim>>,
    /// The whole type, e.g. `tensor(float32)[N,4]` or `sequence(map(int64,float32))`.
    #[serde(rename = "type")]
    pub type_: String,
}

/// A tensor dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(i64),
    Symbol(String),
    Dynamic,
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_i64(*n),
            Dim::Symbol(n) => s.serialize_str(n),
            Dim::Dynamic => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => Dim::Fixed(n.as_i64().unwrap_or(-1)),
            serde_json::Value::String(s) => Dim::Symbol(s),
            _ => Dim::Dynamic,
        })
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Dynamic => f.write_str("?"),
        }
    }
}

/// The type of an input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Tensor { dtype: String, dims: Vec<Dim> },
    Sequence(Box<ValueKind>),
    Map { key: String, value: String },
    Optional(Box<ValueKind>),
}

impl ValueKind {
    pub fn describe(&self) -> String {
        match self {
            ValueKind::Tensor { dtype, dims } => format!(
                "tensor({dtype})[{}]",
                dims.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ValueKind::Sequence(t) => format!("sequence({})", t.describe_short()),
            ValueKind::Map { key, value } => format!("map({key},{value})"),
            ValueKind::Optional(t) => format!("optional({})", t.describe_short()),
        }
    }

    fn describe_short(&self) -> String {
        match self {
            ValueKind::Tensor { dtype, .. } => format!("tensor({dtype})"),
            other => other.describe(),
        }
    }

    pub fn io_info(&self, name: &str) -> IoInfo {
        let (kind, dtype, shape) = match self {
            ValueKind::Tensor { dtype, dims } => {
                ("tensor", Some(dtype.clone()), Some(dims.clone()))
            }
            ValueKind::Sequence(_) => ("sequence", None, None),
            ValueKind::Map { .. } => ("map", None, None),
            ValueKind::Optional(_) => ("optional", None, None),
        };
        IoInfo {
            name: name.to_string(),
            kind: kind.into(),
            dtype,
            shape,
            type_: self.describe(),
        }
    }
}

/// What the bundle metadata records about an ONNX model when `bundle --validate` ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelIo {
    pub inputs: Vec<IoInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_version: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opset: BTreeMap<String, i64>,
    pub outputs: Vec<IoInfo>,
}

/// What `bundle --validate` hands to the bundle: the report for the metadata's `validation`
/// and the I/O of each validated model (by path) for its `models` entry.
#[derive(Clone, Debug, Default)]
pub struct BundleRecord {
    pub report: serde_json::Value,
    pub io: BTreeMap<String, ModelIo>,
}

impl BundleRecord {
    pub fn of(report: &Report) -> BundleRecord {
        BundleRecord {
            report: serde_json::to_value(report).unwrap_or_default(),
            io: report
                .models
                .iter()
                .filter_map(|m| m.io().map(|io| (m.path.clone(), io)))
                .collect(),
        }
    }
}

impl ModelReport {
    pub fn not_validated(path: &str, format: Option<&str>) -> ModelReport {
        let reason = match format {
            Some("onnx") => "ONNX Runtime was not loaded".to_string(),
            Some(f) => format!("{f} models are not run: only ONNX models are validated"),
            None => "unknown format: only ONNX models are validated".to_string(),
        };
        ModelReport {
            path: path.to_string(),
            format: format.map(str::to_string),
            validated: false,
            passed: None,
            reason: Some(reason),
            ir_version: None,
            opset: BTreeMap::new(),
            producer: None,
            inputs: vec![],
            outputs: vec![],
            checks: vec![],
            latency: None,
        }
    }

    /// The I/O description for the bundle metadata (validated models that loaded).
    pub fn io(&self) -> Option<ModelIo> {
        (self.validated && !self.inputs.is_empty()).then(|| ModelIo {
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
            opset: self.opset.clone(),
            ir_version: self.ir_version,
        })
    }

    /// The failed checks, as `name: message`.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect()
    }
}

impl Report {
    pub fn new(
        models: Vec<ModelReport>,
        runtime: Option<RuntimeInfo>,
        schema: Option<String>,
        samples: Vec<String>,
        settings: Settings,
    ) -> Report {
        let mut s = Summary {
            models: models.len(),
            ..Default::default()
        };
        for m in &models {
            match (m.validated, m.passed) {
                (true, Some(true)) => {
                    s.validated += 1;
                    s.passed += 1
                }
                (true, _) => {
                    s.validated += 1;
                    s.failed += 1
                }
                (false, _) => s.not_validated += 1,
            }
        }
        Report {
            format: FORMAT.into(),
            passed: s.failed == 0,
            runtime,
            schema,
            samples,
            settings,
            models,
            summary: s,
        }
    }

    /// One line per failed check: `model: check: message`.
    pub fn failures(&self) -> Vec<String> {
        self.models
            .iter()
            .flat_map(|m| {
                m.failures()
                    .into_iter()
                    .map(move |f| format!("{}: {f}", m.path))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let p = Percentiles::of((1..=100).map(|i| i as f64 / 1000.0).collect());
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p95_ms, 95.0);
        let p = Percentiles::of(vec![0.002]);
        assert_eq!((p.p50_ms, p.p95_ms), (2.0, 2.0));
        assert_eq!(Percentiles::of(vec![]).p50_ms, 0.0);
    }

    #[test]
    fn dims_serialize_as_number_name_or_null() {
        let v = serde_json::to_value(vec![Dim::Dynamic, Dim::Symbol("N".into()), Dim::Fixed(4)])
            .unwrap();
        assert_eq!(v, serde_json::json!([null, "N", 4]));
        let back: Vec<Dim> = serde_json::from_value(v).unwrap();
        assert_eq!(back[1], Dim::Symbol("N".into()));
        let k = ValueKind::Sequence(Box::new(ValueKind::Map {
            key: "int64".into(),
            value: "float32".into(),
        }));
        assert_eq!(k.describe(), "sequence(map(int64,float32))");
        assert_eq!(k.io_info("p").kind, "sequence");
    }
}
