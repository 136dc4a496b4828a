//! Unit tests of `check::gate` (kept beside it; gate.rs stays under the 800-line limit).
use super::*;
use crate::spec::policy::check_policy;

fn meta(metrics: &[(&str, Option<f64>)]) -> Metadata {
    let m: serde_json::Value = serde_json::json!({
        "format_version": 1, "name": "x", "version": "1", "form": "image", "files": [], "models": [],
        "metrics": metrics.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    serde_json::from_value(m).unwrap()
}

fn gate(yaml: &str) -> Policy {
    let p: Policy = serde_saphyr::from_str(yaml).unwrap();
    check_policy(&p).unwrap();
    p
}

#[test]
fn thresholds_and_baselines() {
    let p = gate("metrics:\n  - {metric: accuracy, min: 0.9, max_change: 0.01}\n  - {metric: log_loss, max: 0.3, greater_is_better: false, max_relative_change: 0.05}\n");
    let base = meta(&[("accuracy", Some(0.93)), ("log_loss", Some(0.20))]);
    let ok = evaluate(
        &p,
        &meta(&[("accuracy", Some(0.925)), ("log_loss", Some(0.205))]),
        Some(&base),
        None,
    );
    assert!(ok.iter().all(|c| c.passed), "{ok:?}");
    let bad = evaluate(
        &p,
        &meta(&[("accuracy", Some(0.915)), ("log_loss", Some(0.22))]),
        Some(&base),
        None,
    );
    assert!(
        !bad[0].passed && bad[0].reason.contains("worse than the allowed 0.01"),
        "{:?}",
        bad[0]
    );
    assert!(
        !bad[1].passed && bad[1].reason.contains("10.00%"),
        "{:?}",
        bad[1]
    );
    let low = evaluate(
        &p,
        &meta(&[("accuracy", Some(0.5)), ("log_loss", Some(0.4))]),
        None,
        None,
    );
    assert!(
        low[0].reason.contains("below the minimum 0.9")
            && low[1].reason.contains("above the maximum")
    );
    // improvements always pass
    let better = evaluate(
        &p,
        &meta(&[("accuracy", Some(0.99)), ("log_loss", Some(0.01))]),
        Some(&base),
        None,
    );
    assert!(better.iter().all(|c| c.passed));
}

#[test]
fn missing_and_nan_metrics_fail() {
    let p = gate("metrics: [{metric: auc, min: 0.5}]\n");
    let c = evaluate(&p, &meta(&[]), None, None);
    assert!(!c[0].passed && c[0].reason.contains("no metric"));
    let c = evaluate(&p, &meta(&[("auc", None)]), None, None);
    assert!(!c[0].passed && c[0].reason.contains("NaN"));
    let p = gate("metrics: [{metric: auc, max_change: 0.1}]\n");
    let c = evaluate(&p, &meta(&[("auc", Some(0.7))]), Some(&meta(&[])), None);
    assert!(!c[0].passed && c[0].reason.contains("baseline has no metric"));
    let c = evaluate(&p, &meta(&[("auc", Some(0.7))]), None, None);
    assert!(c[0].passed && c[0].skipped);
}

#[test]
fn bad_policies() {
    for y in [
        "metrics: [{metric: a}]\n",
        "metrics: [{metric: a, min: 2, max: 1}]\n",
        "metrics: [{metric: a, max_change: -1}]\n",
    ] {
        let p: Policy = serde_saphyr::from_str(y).unwrap();
        assert!(check_policy(&p).is_err(), "{y}");
    }
    assert!(serde_saphyr::from_str::<Policy>("metrics: [{metric: a, minimum: 2}]\n").is_err());
    assert!(serde_saphyr::from_str::<Policy>("validation: maybe\n").is_err());
}

#[test]
fn validation_required_needs_a_validated_model() {
    use crate::format::validation::{Check as VCheck, ModelReport, Report, Settings};
    let p = gate("validation: required\n");
    let settings = Settings {
        batch_sizes: vec![1],
        runs: 0,
        tolerance: 1e-4,
        timings: false,
    };
    let with = |models: Vec<ModelReport>| {
        let mut m = meta(&[]);
        let r = Report::new(models, None, None, vec![], settings.clone());
        m.validation = Some(serde_json::to_value(r).unwrap());
        m
    };
    // no model at all: passed=true in the report, but nothing was validated
    let c = evaluate(&p, &with(vec![]), None, None);
    assert!(
        !c[0].passed && c[0].reason.contains("no model was validated"),
        "{:?}",
        c[0]
    );
    // only a pickle: named with the reason it was not run
    let c = evaluate(
        &p,
        &with(vec![ModelReport::not_validated(
            "model/m.pkl",
            Some("pickle"),
        )]),
        None,
        None,
    );
    assert!(
        !c[0].passed
            && c[0].reason.contains("model/m.pkl")
            && c[0].reason.contains("only ONNX models are validated"),
        "{:?}",
        c[0]
    );
    // one ONNX model validated and passed, next to a pickle: passes
    let mut ok = ModelReport::not_validated("model/m.onnx", Some("onnx"));
    ok.validated = true;
    ok.passed = Some(true);
    ok.reason = None;
    ok.checks = vec![VCheck::pass("load", "loaded")];
    let c = evaluate(
        &p,
        &with(vec![
            ok.clone(),
            ModelReport::not_validated("model/m.pkl", Some("pickle")),
        ]),
        None,
        None,
    );
    assert!(
        c[0].passed && c[0].reason.contains("model/m.onnx"),
        "{:?}",
        c[0]
    );
    // a failed model fails, named
    let mut bad = ok.clone();
    bad.path = "model/b.onnx".into();
    bad.passed = Some(false);
    bad.checks = vec![VCheck::fail("load", "corrupt")];
    let c = evaluate(&p, &with(vec![ok, bad]), None, None);
    assert!(
        !c[0].passed && c[0].reason.contains("model/b.onnx"),
        "{:?}",
        c[0]
    );
    // no report
    let c = evaluate(&p, &meta(&[]), None, None);
    assert!(!c[0].passed && c[0].reason.contains("--validate"));
}
