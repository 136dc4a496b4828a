//! Gate policies: `gates:` in mlart.yaml or a file of its own. The types and their checks;
//! `check::gate` evaluates them.

use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A gate policy: `gates:` in mlart.yaml or its own file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub metrics: Vec<MetricGate>,
    #[serde(default)]
    pub validation: Option<Requirement>,
    #[serde(default)]
    pub signature: Option<Requirement>,
    #[serde(default)]
    pub schema: Option<SchemaRule>,
    /// A signed SLSA provenance attestation must be attached (`mlart attest`).
    #[serde(default)]
    pub provenance: Option<Requirement>,
    /// A signed CycloneDX ML-BOM attestation must be attached.
    #[serde(default)]
    pub sbom: Option<Requirement>,
    /// What the (verified) provenance must say.
    #[serde(default)]
    pub provenance_checks: Option<ProvenanceChecks>,
}

/// `provenance_checks:` of a gate policy; each `true` is a check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceChecks {
    /// A source revision (git commit) is recorded.
    #[serde(default)]
    pub source_revision: bool,
    /// The work tree was clean (no uncommitted changes) when the bundle was made.
    #[serde(default)]
    pub clean_tree: bool,
    /// Datasets are named, each with a digest.
    #[serde(default)]
    pub dataset_digests: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    pub metric: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Default true (higher is better); false for losses and errors.
    #[serde(default)]
    pub greater_is_better: Option<bool>,
    /// Against the baseline: the worst allowed move, absolute.
    #[serde(default)]
    pub max_change: Option<f64>,
    /// Against the baseline: the worst allowed move, relative to |baseline|.
    #[serde(default)]
    pub max_relative_change: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    Required,
    Optional,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaRule {
    Compatible,
    Any,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    gates: Policy,
}

/// Read a policy file: a YAML/JSON document with `gates:` at the top.
pub fn load_policy(path: &Path) -> Result<Policy> {
    let bytes = std::fs::read(path).ctx("reading the policy", path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::input(format!("{} is not UTF-8 text", path.display())))?;
    let f: PolicyFile = serde_saphyr::from_str(&text).map_err(|e| {
        let (l, c) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        Error::input(format!(
            "{}:{l}:{c}: {}. The policy is `gates:` with `metrics:` (metric, min, max, greater_is_better, max_change, max_relative_change), `validation: required`, `signature: required`, `schema: compatible`, `provenance: required`, `sbom: required`, `provenance_checks:` (source_revision, clean_tree, dataset_digests) (README: \"Release gates\")",
            path.display(),
            super::yaml_message(&e)
        ))
    })?;
    check_policy(&f.gates).map_err(|m| Error::input(format!("{}: {m}", path.display())))?;
    Ok(f.gates)
}

pub fn check_policy(p: &Policy) -> std::result::Result<(), String> {
    for g in &p.metrics {
        if g.metric.is_empty() {
            return Err("a metric gate has an empty `metric`".into());
        }
        if g.min.is_none()
            && g.max.is_none()
            && g.max_change.is_none()
            && g.max_relative_change.is_none()
        {
            return Err(format!("the gate on {:?} sets no threshold: give min, max, max_change or max_relative_change", g.metric));
        }
        for (k, v) in [
            ("max_change", g.max_change),
            ("max_relative_change", g.max_relative_change),
        ] {
            if v.is_some_and(|v| v.is_nan() || v < 0.0) {
                return Err(format!("{:?}: {k} must be a number >= 0", g.metric));
            }
        }
        for (k, v) in [("min", g.min), ("max", g.max)] {
            if v.is_some_and(f64::is_nan) {
                return Err(format!(
                    "{:?}: {k} is NaN, which no value can be compared with: give a number",
                    g.metric
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (g.min, g.max) {
            if lo > hi {
                return Err(format!("{:?}: min {lo} is above max {hi}", g.metric));
            }
        }
    }
    Ok(())
}
