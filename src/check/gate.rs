//! Release gates (`mlart gate`) and version diffs (`mlart diff`), computed from the metadata
//! documents of two bundles: nothing but manifests and metadata is read.

use crate::check::inspect::{open_bundle, OpenLocation};
use crate::error::{Error, Result};
use crate::format::feature_schema::{Feature, FeatureSchema};
use crate::format::metadata::Metadata;
use crate::spec::policy::{Policy, Requirement, SchemaRule};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One check of the gate.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `metric:accuracy`, `validation`, `signature`, `schema`
    pub name: String,
    pub passed: bool,
    /// skipped: not applicable (e.g. a change gate without --baseline)
    pub skipped: bool,
    pub value: Option<f64>,
    pub threshold: Option<String>,
    pub baseline: Option<f64>,
    pub delta: Option<f64>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct GateReport {
    pub candidate: String,
    pub candidate_digest: String,
    pub baseline: Option<String>,
    pub baseline_digest: Option<String>,
    pub passed: bool,
    pub checks: Vec<Check>,
    /// Things worth saying that are not failures (a missing optional baseline).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// A number for people: at most 6 decimals, no float noise.
pub fn num(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

impl Check {
    /// A check named `name` that passes until its evaluation says otherwise.
    pub fn passing(name: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            passed: true,
            skipped: false,
            value: None,
            threshold: None,
            baseline: None,
            delta: None,
            reason: String::new(),
        }
    }
}

/// What `mlart gate` (and `push --gate`) is asked.
pub struct Request<'a> {
    /// The candidate: a layout, an archive or a registry REF.
    pub target: &'a str,
    /// The bundle to compare with, for change limits and schema.
    pub baseline: Option<&'a str>,
    /// The policy file; None: `gates:` of `spec`.
    pub policy: Option<&'a Path>,
    pub spec: &'a Path,
    /// Trusted public keys for `signature: required`.
    pub keys: &'a [PathBuf],
    /// A baseline that does not exist (the first release) is a notice, not an error.
    pub baseline_optional: bool,
}

/// The policy: the file given, else the `gates:` section of the spec.
pub fn load_policy(policy: Option<&Path>, spec: &Path) -> Result<Policy> {
    match policy {
        Some(p) => crate::spec::policy::load_policy(p),
        None => {
            let s = crate::spec::load(spec).map_err(|e| match e {
                Error::Input(m) if m.starts_with("no spec file") => Error::input(format!(
                    "no policy: give --policy FILE, or run where mlart.yaml (with `gates:`) is, or -f SPEC ({m})"
                )),
                other => other,
            })?;
            s.gates.ok_or_else(|| {
                Error::input(format!(
                    "{} has no `gates:` section: add one or give --policy FILE",
                    spec.display()
                ))
            })
        }
    }
}

/// The baseline is not there at all (as opposed to unreadable): a registry's "not found", or
/// a local path that does not exist.
fn baseline_missing(b: &str, e: &Error) -> bool {
    use crate::error::Kind;
    match e.kind() {
        Kind::NotFound => true,
        Kind::Input => {
            let path = b
                .strip_prefix("oci-archive:")
                .or_else(|| b.strip_prefix("oci:"))
                .map(|p| p.rsplit_once(':').map_or(p, |(p, _)| p))
                .unwrap_or(b);
            !Path::new(path).exists() && e.to_string().contains("does not exist")
        }
        _ => false,
    }
}

/// Gate a bundle: load the policy, read the candidate's (and the baseline's) manifest and
/// metadata, check its signatures when the policy requires them and keys are given, and
/// evaluate. Reads manifests, metadata and signatures only.
pub fn gate(req: &Request, open: OpenLocation) -> Result<GateReport> {
    let policy = load_policy(req.policy, req.spec)?;
    let mut cand = open_bundle(req.target, open)?;
    let mut notices = Vec::new();
    let base = match req.baseline {
        Some(b) => match open_bundle(b, open) {
            Ok(o) => Some(o),
            Err(e) if baseline_missing(b, &e) => {
                if !req.baseline_optional {
                    return Err(Error::of(
                        e.kind(),
                        format!("the baseline {b} does not exist ({e}). On a first release there is nothing to compare with: pass --baseline-optional to gate without it (change limits and the schema check are then skipped)"),
                    ));
                }
                notices.push(format!("the baseline {b} does not exist (a first release?): change limits and the schema check are skipped"));
                None
            }
            Err(e) => return Err(Error::of(e.kind(), format!("the baseline {b}: {e}"))),
        },
        None => None,
    };
    let signature = if policy.signature == Some(Requirement::Required) && !req.keys.is_empty() {
        let keys = req
            .keys
            .iter()
            .map(|k| crate::sign::load_public(k))
            .collect::<Result<Vec<_>>>()?;
        let (sigs, problems) =
            crate::check::verify::oci_signatures(cand.source.as_mut(), &cand.digest, &keys, false)?;
        Some(if problems.is_empty() {
            Ok(sigs
                .iter()
                .filter_map(|s| s.key.clone())
                .collect::<Vec<_>>()
                .join(", "))
        } else {
            Err(problems.join("; "))
        })
    } else {
        None
    };
    let mut checks = evaluate(
        &policy,
        &cand.metadata,
        base.as_ref().map(|b| &b.metadata),
        signature,
    );
    if crate::check::attestations::wanted(&policy) {
        let found = match req.keys.is_empty() {
            true => None,
            false => {
                let keys = req
                    .keys
                    .iter()
                    .map(|k| crate::sign::load_public(k))
                    .collect::<Result<Vec<_>>>()?;
                Some(crate::attest::read(
                    cand.source.as_ref(),
                    &cand.digest,
                    &keys,
                )?)
            }
        };
        checks.extend(crate::check::attestations::evaluate(
            &policy,
            found.as_deref(),
        ));
    }
    if checks.is_empty() {
        notices.push("the policy checks nothing (no metrics, signature, validation, schema or attestation gate): the gate passes whatever the bundle holds; add gates under `gates:`".into());
    }
    Ok(GateReport {
        candidate: req.target.to_string(),
        candidate_digest: cand.digest.to_string(),
        baseline: req.baseline.map(String::from),
        baseline_digest: base.as_ref().map(|b| b.digest.to_string()),
        passed: checks.iter().all(|c| c.passed),
        checks,
        notices,
    })
}

/// `validation: required`: the stored report must show at least one validated model and no
/// failed one. A report with nothing validated (no ONNX model, or every model skipped) is a
/// failure that says which models were found and why none ran.
fn validation_gate(report: Option<&serde_json::Value>) -> (bool, String) {
    use crate::format::validation::Report;
    let Some(v) = report else {
        return (
            false,
            "the bundle has no validation report (bundle it with --validate)".into(),
        );
    };
    let r: Report = match serde_json::from_value(v.clone()) {
        Ok(r) => r,
        Err(e) => {
            return (
                false,
                format!("the bundle's validation report cannot be read ({e}); bundle it again with --validate"),
            )
        }
    };
    let failed: Vec<&str> = r
        .models
        .iter()
        .filter(|m| m.validated && m.passed != Some(true))
        .map(|m| m.path.as_str())
        .collect();
    let passed: Vec<&str> = r
        .models
        .iter()
        .filter(|m| m.validated && m.passed == Some(true))
        .map(|m| m.path.as_str())
        .collect();
    if !failed.is_empty() || !r.passed {
        let which = if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join(", "))
        };
        return (
            false,
            format!("the validation report says it failed{which}"),
        );
    }
    if passed.is_empty() {
        let reason = if r.models.is_empty() {
            "no model was validated: the bundle has no model files (validation: required needs at least one ONNX model that was run)".to_string()
        } else {
            let found: Vec<String> = r
                .models
                .iter()
                .map(|m| {
                    format!(
                        "{} ({})",
                        m.path,
                        m.reason.as_deref().unwrap_or("not validated")
                    )
                })
                .collect();
            format!(
                "no model was validated (validation: required needs at least one ONNX model that was run and passed); found {}",
                found.join("; ")
            )
        };
        return (false, reason);
    }
    (true, format!("passed: {}", passed.join(", ")))
}

/// Evaluate the metric, validation and schema gates. The signature gate needs the bundle
/// itself and is added by the caller (`signature` = Some(result) when it was checked).
pub fn evaluate<F>(
    policy: &Policy,
    cand: &Metadata<F>,
    base: Option<&Metadata<F>>,
    signature: Option<std::result::Result<String, String>>,
) -> Vec<Check> {
    let mut out = Vec::new();
    for g in &policy.metrics {
        let mut c = Check::passing(format!("metric:{}", g.metric));
        let higher = g.greater_is_better.unwrap_or(true);
        let mut limits = Vec::new();
        if let Some(v) = g.min {
            limits.push(format!(">= {v}"));
        }
        if let Some(v) = g.max {
            limits.push(format!("<= {v}"));
        }
        if let Some(v) = g.max_change {
            limits.push(format!(
                "change {}{}",
                if higher { ">= -" } else { "<= +" },
                num(v)
            ));
        }
        if let Some(v) = g.max_relative_change {
            limits.push(format!(
                "relative change {}{}%",
                if higher { ">= -" } else { "<= +" },
                num(v * 100.0)
            ));
        }
        c.threshold = Some(limits.join(", "));
        let value = match cand.metrics.get(&g.metric) {
            None => {
                c.passed = false;
                c.reason = format!("the bundle has no metric {:?}", g.metric);
                out.push(c);
                continue;
            }
            Some(None) => {
                c.passed = false;
                c.reason = format!("{} is NaN or infinite", g.metric);
                out.push(c);
                continue;
            }
            Some(Some(v)) => *v,
        };
        c.value = Some(value);
        let mut fails = Vec::new();
        if let Some(min) = g.min.filter(|m| value < *m) {
            fails.push(format!("{} is below the minimum {}", num(value), num(min)));
        }
        if let Some(max) = g.max.filter(|m| value > *m) {
            fails.push(format!("{} is above the maximum {}", num(value), num(max)));
        }
        if g.max_change.is_some() || g.max_relative_change.is_some() {
            match base.map(|b| b.metrics.get(&g.metric)) {
                None => {
                    if fails.is_empty() && g.min.is_none() && g.max.is_none() {
                        c.skipped = true;
                    }
                    c.reason = "no --baseline: change limits not checked".into();
                }
                Some(None) => fails.push(format!("the baseline has no metric {:?}", g.metric)),
                Some(Some(None)) => {
                    fails.push(format!("the baseline's {} is NaN or infinite", g.metric))
                }
                Some(Some(Some(b))) => {
                    let b = *b;
                    c.baseline = Some(b);
                    let delta = value - b;
                    c.delta = Some(delta);
                    // the move in the bad direction (positive = worse)
                    let worse = if higher { -delta } else { delta };
                    if let Some(m) = g.max_change.filter(|m| worse > *m + 1e-12) {
                        fails.push(format!(
                            "moved {}{} from the baseline {}: worse than the allowed {}",
                            if delta >= 0.0 { "+" } else { "" },
                            num(delta),
                            num(b),
                            num(m)
                        ));
                    }
                    if let Some(r) = g.max_relative_change {
                        let allowed = r * b.abs();
                        if worse > allowed + 1e-12 {
                            let rel = if b != 0.0 {
                                worse / b.abs() * 100.0
                            } else {
                                f64::INFINITY
                            };
                            fails.push(format!("moved {rel:.2}% the wrong way from the baseline {}: more than the allowed {}%", num(b), num(r * 100.0)));
                        }
                    }
                }
            }
        }
        if !fails.is_empty() {
            c.passed = false;
            c.reason = fails.join("; ");
        } else if c.reason.is_empty() {
            c.reason = "ok".into();
        }
        out.push(c);
    }
    if policy.validation == Some(Requirement::Required) {
        let mut c = Check::passing("validation");
        let (passed, reason) = validation_gate(cand.validation.as_ref());
        c.passed = passed;
        c.reason = reason;
        out.push(c);
    }
    if policy.signature == Some(Requirement::Required) {
        let mut c = Check::passing("signature");
        match signature {
            None => {
                c.passed = false;
                c.reason = "signature: required, but no trusted key was given (--key PUB)".into();
            }
            Some(Ok(k)) => c.reason = format!("signed by {k}"),
            Some(Err(e)) => {
                c.passed = false;
                c.reason = e;
            }
        }
        out.push(c);
    }
    if policy.schema == Some(SchemaRule::Compatible) {
        let mut c = Check::passing("schema");
        match (base.map(|b| &b.schema), &cand.schema) {
            (None, _) => {
                c.skipped = true;
                c.reason = "no --baseline: nothing to compare".into();
            }
            (Some(None), _) => c.reason = "the baseline has no feature schema".into(),
            (Some(Some(_)), None) => {
                c.passed = false;
                c.reason = "the baseline has a feature schema and this bundle has none".into();
            }
            (Some(Some(b)), Some(n)) => {
                let breaking = breaking_changes(b, n);
                if breaking.is_empty() {
                    c.reason = "compatible".into();
                } else {
                    c.passed = false;
                    c.reason = breaking.join("; ");
                }
            }
        }
        out.push(c);
    }
    out
}

/// Changes that break a client of `old`: removed or retyped features, new required ones.
pub fn breaking_changes(old: &FeatureSchema, new: &FeatureSchema) -> Vec<String> {
    let nm: BTreeMap<&str, &Feature> = new.features.iter().map(|f| (f.name.as_str(), f)).collect();
    let om: BTreeMap<&str, &Feature> = old.features.iter().map(|f| (f.name.as_str(), f)).collect();
    let mut out = Vec::new();
    for f in &old.features {
        match nm.get(f.name.as_str()) {
            None => out.push(format!("feature {:?} was removed", f.name)),
            Some(n) if n.dtype != f.dtype => out.push(format!(
                "feature {:?} changed dtype {} -> {}",
                f.name, f.dtype, n.dtype
            )),
            Some(n) if n.shape != f.shape => out.push(format!(
                "feature {:?} changed shape {:?} -> {:?}",
                f.name, f.shape, n.shape
            )),
            _ => {}
        }
    }
    for f in &new.features {
        if !om.contains_key(f.name.as_str()) && !f.nullable && f.default.is_none() {
            out.push(format!(
                "new feature {:?} is required and has no default",
                f.name
            ));
        }
    }
    out
}

// ---------------- diff ----------------

#[derive(Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub kind: String,
    /// added | removed | changed
    pub change: String,
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    pub size_delta: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct MetricChange {
    pub metric: String,
    pub old: Option<f64>,
    pub new: Option<f64>,
    pub delta: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub old: String,
    pub new: String,
    pub files: Vec<FileChange>,
    pub unchanged_files: usize,
    pub metrics: Vec<MetricChange>,
    pub schema: Vec<String>,
    pub schema_breaking: Vec<String>,
    pub env: Vec<String>,
    pub models: Vec<String>,
}

/// What changed from `old` to `new`: their files' lists (both in path order, on disk past a
/// few MiB) read side by side, so only the changes are held; metrics, schema, environment and
/// models. An error only when a list cannot be read back from its temp file.
pub fn diff(
    old_name: &str,
    old: &Metadata<crate::store::entries::Entries>,
    new_name: &str,
    new: &Metadata<crate::store::entries::Entries>,
) -> Result<Diff> {
    use crate::format::metadata::FileEntry;
    let mut files = Vec::new();
    let mut unchanged = 0;
    let mut of = old.files.iter();
    let mut nf = new.files.iter();
    let (mut o, mut n) = (of.next().transpose()?, nf.next().transpose()?);
    loop {
        let (a, b): (Option<&FileEntry>, Option<&FileEntry>) = match (&o, &n) {
            (None, None) => break,
            (Some(a), Some(b)) if a.path == b.path => (Some(a), Some(b)),
            (Some(a), Some(b)) if a.path < b.path => (Some(a), None),
            (Some(a), None) => (Some(a), None),
            (_, Some(b)) => (None, Some(b)),
        };
        let change = match (a, b) {
            (Some(_), None) => Some("removed"),
            (None, Some(_)) => Some("added"),
            (Some(a), Some(b)) if a.sha256 != b.sha256 => Some("changed"),
            _ => None,
        };
        match change {
            None => unchanged += 1,
            Some(change) => files.push(FileChange {
                path: b.or(a).map(|f| f.path.clone()).unwrap_or_default(),
                kind: b.or(a).map(|f| f.kind.to_string()).unwrap_or_default(),
                change: change.into(),
                old_size: a.map(|f| f.size),
                new_size: b.map(|f| f.size),
                size_delta: Some(
                    b.map(|f| f.size as i64).unwrap_or(0) - a.map(|f| f.size as i64).unwrap_or(0),
                ),
            }),
        }
        if a.is_some() {
            o = of.next().transpose()?;
        }
        if b.is_some() {
            n = nf.next().transpose()?;
        }
    }
    let mut metrics = Vec::new();
    let names: BTreeSet<&String> = old.metrics.keys().chain(new.metrics.keys()).collect();
    for m in names {
        let (a, b) = (
            old.metrics.get(m).copied().flatten(),
            new.metrics.get(m).copied().flatten(),
        );
        let in_old = old.metrics.contains_key(m);
        let in_new = new.metrics.contains_key(m);
        if in_old && in_new && a == b {
            continue;
        }
        metrics.push(MetricChange {
            metric: m.clone(),
            old: a,
            new: b,
            delta: a.zip(b).map(|(a, b)| b - a),
        });
    }
    let mut schema = Vec::new();
    let mut schema_breaking = Vec::new();
    match (&old.schema, &new.schema) {
        (Some(a), Some(b)) => {
            schema_breaking = breaking_changes(a, b);
            let am: BTreeMap<&str, &Feature> =
                a.features.iter().map(|f| (f.name.as_str(), f)).collect();
            for f in &b.features {
                match am.get(f.name.as_str()) {
                    None => schema.push(format!("+ feature {} ({})", f.name, f.dtype)),
                    Some(o) if *o != f => schema.push(format!("~ feature {} changed", f.name)),
                    _ => {}
                }
            }
            for f in &a.features {
                if !b.features.iter().any(|x| x.name == f.name) {
                    schema.push(format!("- feature {} ({})", f.name, f.dtype));
                }
            }
            if a.outputs != b.outputs {
                schema.push("~ outputs changed".into());
            }
        }
        (None, Some(_)) => schema.push("+ a feature schema".into()),
        (Some(_), None) => schema.push("- the feature schema".into()),
        (None, None) => {}
    }
    let mut env = Vec::new();
    let empty = BTreeMap::new();
    // (pip's packages, then conda's, each marked)
    type Pick = fn(&crate::format::metadata::EnvSummary) -> &BTreeMap<String, String>;
    let sides: [(Pick, &str); 2] = [(|e| &e.packages, ""), (|e| &e.conda, " (conda)")];
    for (pick, mark) in sides {
        let (ae, be) = (
            old.env.as_ref().map(pick).unwrap_or(&empty),
            new.env.as_ref().map(pick).unwrap_or(&empty),
        );
        let pk: BTreeSet<&String> = ae.keys().chain(be.keys()).collect();
        for p in pk {
            match (ae.get(p), be.get(p)) {
                (Some(a), Some(b)) if a != b => env.push(format!("~ {p}{mark} {a} -> {b}")),
                (None, Some(b)) => env.push(format!("+ {p}{mark} {b}")),
                (Some(a), None) => env.push(format!("- {p}{mark} {a}")),
                _ => {}
            }
        }
    }
    let mut models = Vec::new();
    let om: BTreeMap<&str, &crate::format::metadata::ModelEntry> =
        old.models.iter().map(|m| (m.path.as_str(), m)).collect();
    for m in &new.models {
        match om.get(m.path.as_str()) {
            None => models.push(format!(
                "+ {} ({})",
                m.path,
                m.format.as_deref().unwrap_or("unknown")
            )),
            Some(o) if o.format != m.format => models.push(format!(
                "~ {} format {:?} -> {:?}",
                m.path, o.format, m.format
            )),
            Some(o) if o.sha256 != m.sha256 => {
                models.push(format!("~ {} retrained (new weights)", m.path))
            }
            _ => {}
        }
    }
    for m in &old.models {
        if !new.models.iter().any(|x| x.path == m.path) {
            models.push(format!("- {}", m.path));
        }
    }
    Ok(Diff {
        old: old_name.into(),
        new: new_name.into(),
        files,
        unchanged_files: unchanged,
        metrics,
        schema,
        schema_breaking,
        env,
        models,
    })
}

pub const MARKDOWN_TEMPLATE: &str = include_str!("../../templates/gate.md.j2");

/// The gate report as Markdown (for a CI job summary or a PR comment).
pub fn markdown(r: &GateReport) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("gate.md", MARKDOWN_TEMPLATE)
        .map_err(|e| Error::input(format!("template: {e}")))?;
    env.get_template("gate.md")
        .and_then(|t| {
            t.render(
                minijinja::context! { r => minijinja::Value::from(minijinja::value::Serde(r)) },
            )
        })
        .map_err(|e| Error::input(format!("template: {e}")))
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
