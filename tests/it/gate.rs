//! `mlart gate` and `mlart diff` on real bundles (layouts and a registry baseline).

use crate::support::fixtures::{bundle_cmd, iris_spec};
use crate::support::registry::Registry;
use crate::support::*;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example project with `gates:` and edits applied, bundled to `out`.
fn release(dir: &Path, out: &Path, edit: &dyn Fn(&Path)) -> serde_json::Value {
    let p = dir.join(format!(
        "proj-{}",
        out.file_name().unwrap().to_string_lossy()
    ));
    copy_tree(&example(), &p, false);
    edit(&p);
    json_ok(
        bundle_cmd(&mut mlart(), &p.join("mlart.yaml"))
            .arg("-o")
            .arg(out),
    )
}

/// `release` of the example with `from` replaced by `to` in eval/metrics.json, at `dir/NAME`.
fn metrics_release(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let out = dir.join(name);
    release(dir, &out, &|p| {
        replace(&p.join("eval/metrics.json"), from, to)
    });
    out
}

/// `metrics_release` with the accuracy (0.911111 in the example) set to `accuracy`.
fn accuracy_release(dir: &Path, name: &str, accuracy: &str) -> PathBuf {
    let to = format!("\"accuracy\": {accuracy}");
    metrics_release(dir, name, "\"accuracy\": 0.911111", &to)
}

/// POLICY written to `dir`/gates.yaml, and the example released unchanged as `dir`/v1.oci.
fn policy_and_v1(dir: &Path) -> (PathBuf, PathBuf) {
    let policy = dir.join("gates.yaml");
    fs::write(&policy, POLICY).unwrap();
    let v1 = dir.join("v1.oci");
    release(dir, &v1, &|_| {});
    (policy, v1)
}

/// The check named `name` of a gate result.
fn named_check<'a>(result: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    result["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

const POLICY: &str = "gates:
  metrics:
    - metric: accuracy
      min: 0.85
      max_change: 0.01
    - metric: log_loss
      max: 0.30
      greater_is_better: false
      max_relative_change: 0.05
  schema: compatible
";

/// `mlart gate BUNDLE --policy POLICY` (more arguments may follow).
fn gate(bundle: impl AsRef<OsStr>, policy: &Path) -> Command {
    let mut c = mlart();
    c.arg("gate").arg(bundle).arg("--policy").arg(policy);
    c
}

/// `mlart gate BUNDLE -f SPEC`: the gates of a project's spec.
fn gate_by_spec(bundle: impl AsRef<OsStr>, spec: &Path) -> Command {
    let mut c = mlart();
    c.arg("gate").arg(bundle).arg("-f").arg(spec);
    c
}

/// `gate` against a baseline: `mlart gate BUNDLE --policy POLICY --baseline BASELINE`.
fn gate_against(bundle: impl AsRef<OsStr>, baseline: impl AsRef<OsStr>, policy: &Path) -> Command {
    let mut c = gate(bundle, policy);
    c.arg("--baseline").arg(baseline);
    c
}

fn replace(p: &Path, from: &str, to: &str) {
    let s = fs::read_to_string(p).unwrap();
    assert!(s.contains(from), "{from} in {}", p.display());
    fs::write(p, s.replace(from, to)).unwrap();
}

#[test]
fn gates_pass_fail_and_explain() {
    let t = tempfile::tempdir().unwrap();
    let (policy, v1) = policy_and_v1(t.path());
    // better accuracy, same loss: passes against v1
    let v2 = accuracy_release(t.path(), "v2.oci", "0.95");
    let r = json_ok(&mut gate_against(&v2, &v1, &policy));
    assert_eq!(r["passed"], true, "{r}");
    // a regression beyond max_change fails with exit 1, naming the check
    let v3 = metrics_release(
        t.path(),
        "v3.oci",
        "\"log_loss\": 0.209595",
        "\"log_loss\": 0.25",
    );
    let md = t.path().join("summary.md");
    let r = json_exit(
        gate_against(&v3, &v1, &policy).arg("--markdown").arg(&md),
        1,
    );
    let loss = named_check(&r, "metric:log_loss");
    assert_eq!(loss["passed"], false);
    assert!(
        loss["reason"].as_str().unwrap().contains("wrong way"),
        "{loss}"
    );
    let summary = fs::read_to_string(&md).unwrap();
    assert!(summary.contains("**FAIL**"), "{summary}");
    // a delta is signed as in the terminal's table
    assert!(
        summary.contains("| +0.") && !summary.contains("| 0.04"),
        "{summary}"
    );
    // a policy that checks nothing passes, with a notice saying so
    let empty = t.path().join("empty.yaml");
    fs::write(&empty, "gates: {}\n").unwrap();
    let r = json_ok(&mut gate(&v3, &empty));
    assert_eq!(r["passed"], true, "{r}");
    assert!(r["notices"].to_string().contains("checks nothing"), "{r}");
    // without a baseline the change limits are skipped, thresholds still hold
    let r = json_ok(&mut gate(&v3, &policy));
    assert_eq!(r["passed"], true, "{r}");
    // human output is a table
    let out = run(&mut gate_against(&v3, &v1, &policy));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  metric:log_loss") && text.contains("gate FAILED"),
        "{text}"
    );
}

#[test]
fn missing_and_nan_metrics_missing_baseline_and_schema_breaks() {
    let t = tempfile::tempdir().unwrap();
    let (policy, v1) = policy_and_v1(t.path());
    let nan = accuracy_release(t.path(), "nan.oci", "NaN");
    let out = run(gate(&nan, &policy).arg("--json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("NaN or infinite"));
    let gone = metrics_release(t.path(), "gone.oci", "\"log_loss\": 0.209595,", "");
    let out = run(gate(&gone, &policy).arg("--json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no metric \\\"log_loss\\\""));
    // a baseline that does not exist: a usage error, not a gate result
    let err = fails(
        &mut gate_against(&v1, t.path().join("nope.oci"), &policy),
        2,
    );
    assert!(
        err.contains("baseline") && err.contains("--baseline-optional"),
        "{err}"
    );
    // the first release: --baseline-optional makes a missing baseline a notice
    let out = run(gate_against(&v1, t.path().join("nope.oci"), &policy).arg("--baseline-optional"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("notice: the baseline") && text.contains("does not exist"),
        "{text}"
    );
    let g =
        json_ok(gate_against(&v1, t.path().join("nope.oci"), &policy).arg("--baseline-optional"));
    assert!(
        g["baseline_digest"].is_null() && g["notices"][0].is_string(),
        "{g}"
    );
    // a baseline that exists but cannot be read stays an error, optional or not
    fs::write(t.path().join("junk.tar"), b"not a tar").unwrap();
    fails(
        gate_against(&v1, t.path().join("junk.tar"), &policy).arg("--baseline-optional"),
        2,
    );
    // a removed feature and a new required one break `schema: compatible`
    let s2 = t.path().join("schema2.oci");
    release(t.path(), &s2, &|p| {
        replace(
            &p.join("schema/features.yaml"),
            "  - name: petal_width\n",
            "  - name: petal_area\n",
        );
    });
    let out = run(gate_against(&s2, &v1, &policy).arg("--json"));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("feature \\\"petal_width\\\" was removed")
            && text.contains("petal_area\\\" is required"),
        "{text}"
    );
    // policy errors are usage errors with the position
    fs::write(
        &policy,
        "gates:\n  metrics:\n    - {metric: accuracy, minimum: 1}\n",
    )
    .unwrap();
    let err = fails(&mut gate(&v1, &policy), 2);
    assert!(
        err.contains("gates.yaml:3:") && err.contains("minimum"),
        "{err}"
    );
    // gates in mlart.yaml, with signature required and no key: fails with the reason
    let p = t.path().join("proj-sig");
    copy_tree(&example(), &p, false);
    let mut spec = fs::read_to_string(p.join("mlart.yaml")).unwrap();
    spec.push_str("gates:\n  signature: required\n  validation: required\n");
    fs::write(p.join("mlart.yaml"), spec).unwrap();
    let out = run(gate_by_spec(&v1, &p.join("mlart.yaml")).arg("--json"));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no trusted key") && text.contains("no validation report"),
        "{text}"
    );
    // the same policy's validation gate passes on a bundle built with --validate
    let Some(lib) =
        crate::validate::ort_lib("missing_and_nan_metrics_missing_baseline_and_schema_breaks")
    else {
        return;
    };
    let validated = t.path().join("validated.oci");
    json_ok(
        bundle_cmd(&mut crate::validate::mlart_ort(&lib), &p.join("mlart.yaml"))
            .arg("-o")
            .arg(&validated)
            .arg("--validate"),
    );
    // still fails (exit 1) on the missing key alone
    let r = json_exit(&mut gate_by_spec(&validated, &p.join("mlart.yaml")), 1);
    let checks = r["checks"].as_array().unwrap();
    let v = named_check(&r, "validation");
    assert_eq!(v["passed"], true, "{r}");
    assert_eq!(v["reason"], "passed: model/iris.onnx");
    assert!(checks
        .iter()
        .all(|c| c["passed"] == true || c["name"] == "signature"));
}

#[test]
fn diff_and_a_remote_baseline() {
    let t = tempfile::tempdir().unwrap();
    let v1 = t.path().join("v1.oci");
    release(t.path(), &v1, &|_| {});
    let v2 = t.path().join("v2.oci");
    release(t.path(), &v2, &|p| {
        replace(
            &p.join("eval/metrics.json"),
            "\"accuracy\": 0.911111",
            "\"accuracy\": 0.95",
        );
        replace(&p.join("requirements.txt"), "numpy==2.4.6", "numpy==2.5.0");
        fs::write(p.join("docs/extra.md"), "# more\n").unwrap();
    });
    let d = json_ok(mlart().arg("diff").arg(&v1).arg(&v2));
    let files = d["diff"]["files"].as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["path"] == "docs/extra.md" && f["change"] == "added" && f["size_delta"] == 7));
    assert!(files
        .iter()
        .any(|f| f["path"] == "eval/metrics.json" && f["change"] == "changed"));
    assert!(
        !files.iter().any(|f| f["path"] == "model/iris.onnx"),
        "unchanged model is not listed"
    );
    // (the two lists are read side by side in path order: the other way round, removed; the
    // count of the rest is the same)
    let back = json_ok(mlart().arg("diff").arg(&v2).arg(&v1));
    let bf = back["diff"]["files"].as_array().unwrap();
    assert!(bf.iter().any(|f| f["path"] == "docs/extra.md"
        && f["change"] == "removed"
        && f["size_delta"] == -7));
    assert_eq!(bf.len(), files.len(), "{back}");
    assert_eq!(
        back["diff"]["unchanged_files"],
        d["diff"]["unchanged_files"]
    );
    assert!(d["diff"]["unchanged_files"].as_u64().unwrap() > 5, "{d}");
    let acc = d["diff"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "accuracy")
        .unwrap();
    assert!((acc["delta"].as_f64().unwrap() - 0.038889).abs() < 1e-9);
    assert_eq!(
        d["diff"]["env"],
        serde_json::json!(["~ numpy ==2.4.6 -> ==2.5.0"])
    );

    // --exit-code: 1 when they differ (text and --json alike), 0 for the same bundle
    let v = json_exit(mlart().args(["diff", "--exit-code"]).arg(&v1).arg(&v2), 1);
    assert!(v["diff"]["files"].is_array(), "{v}");
    fails(mlart().args(["diff", "--exit-code"]).arg(&v1).arg(&v2), 1);
    let out = run(mlart().args(["diff", "--exit-code"]).arg(&v1).arg(&v1));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        run(mlart().arg("diff").arg(&v1).arg(&v2)).status.code(),
        Some(0)
    );

    // the baseline in a real registry: gate and diff read the manifest and metadata only
    let Some(reg) = Registry::start("diff_and_a_remote_baseline") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");
    json_ok(mlart().arg("push").arg(&v1).arg(&r));
    let d = json_ok(mlart().arg("diff").arg(&r).arg(&v2));
    assert_eq!(
        d["old_digest"],
        json_ok(mlart().arg("inspect").arg(&v1))["manifest_digest"]
    );
    let policy = t.path().join("gates.yaml");
    fs::write(&policy, POLICY).unwrap();
    let g = json_ok(&mut gate_against(&v2, &r, &policy));
    assert_eq!(g["passed"], true, "{g}");
    // a tag the registry does not have: not-found (3), or a notice with --baseline-optional
    let prod = reg.reference("ml/iris:prod");
    let err = fails(&mut gate_against(&v2, &prod, &policy), 3);
    assert!(err.contains("--baseline-optional"), "{err}");
    let g = json_ok(gate_against(&v2, &prod, &policy).arg("--baseline-optional"));
    assert!(
        g["notices"][0].as_str().unwrap().contains("ml/iris:prod"),
        "{g}"
    );
}

#[test]
fn push_gate_refuses_to_push_a_failing_release() {
    let Some(reg) = Registry::start("push_gate_refuses_to_push_a_failing_release") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (policy, v1) = policy_and_v1(t.path());
    let bad = accuracy_release(t.path(), "bad.oci", "0.5");
    let r = reg.reference("ml/gated:1.0.0");
    let push_gated = || {
        let mut c = mlart();
        c.arg("push").arg(&bad).arg(&r).arg("--gate");
        c.arg("--policy").arg(&policy);
        c
    };
    let err = fails(&mut push_gated(), 1);
    assert!(
        err.contains("not pushed") && err.contains("metric:accuracy"),
        "{err}"
    );
    let v = json_exit(&mut push_gated(), 1);
    assert_eq!(v["pushed"], false);
    let tags = run(mlart().args(["tags", &reg.reference("ml/gated")]));
    assert!(
        !String::from_utf8_lossy(&tags.stdout).contains("1.0.0"),
        "nothing was pushed"
    );
    // a passing release (against a registry baseline) is pushed
    json_ok(mlart().arg("push").arg(&v1).arg(&r));
    let v2 = accuracy_release(t.path(), "v2.oci", "0.93");
    let p = json_ok(
        mlart()
            .arg("push")
            .arg(&v2)
            .arg(reg.reference("ml/gated:1.1.0"))
            .arg("--gate")
            .arg("--baseline")
            .arg(&r)
            .arg("--policy")
            .arg(&policy),
    );
    assert!(p["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn gating_a_remote_1_gib_bundle_downloads_under_1_mib() {
    let Some(reg) = Registry::start("gating_a_remote_1_gib_bundle_downloads_under_1_mib") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    // the example with a 1 GiB model next to it (sparse on disk)
    let p = t.path().join("big");
    copy_tree(&example(), &p, false);
    fs::File::create(p.join("model/weights.safetensors"))
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let mut spec = fs::read_to_string(p.join("mlart.yaml")).unwrap();
    spec = spec.replace(
        "  - path: model/iris.onnx\n",
        "  - model/weights.safetensors\n  - path: model/iris.onnx\n",
    );
    spec.push_str(POLICY);
    fs::write(p.join("mlart.yaml"), spec).unwrap();
    let r = reg.reference("ml/big:1.0.0");
    json_ok(
        bundle_cmd(&mut mlart(), &p.join("mlart.yaml"))
            .arg("--push")
            .arg(&r),
    );
    let before = reg.bytes_served();
    let g = json_ok(
        gate_by_spec(&r, &p.join("mlart.yaml"))
            .arg("--baseline")
            .arg(&r),
    );
    assert_eq!(g["passed"], true, "{g}");
    let d = json_ok(mlart().arg("diff").arg(&r).arg(&r));
    assert_eq!(d["diff"]["files"].as_array().unwrap().len(), 0);
    let served = reg.bytes_served() - before;
    assert!(served > 0, "the registry log reports bytes served");
    assert!(
        served < 1 << 20,
        "gate + diff of a remote 1 GiB bundle fetched {served} bytes"
    );
    eprintln!("gate + diff of a 1 GiB remote bundle: {served} bytes from the registry");
}

#[test]
fn signature_gate_passes_with_the_signing_key_only() {
    let t = tempfile::tempdir().unwrap();
    let (k_key, k_pub) = keygen(t.path(), "k");
    let (_, o_pub) = keygen(t.path(), "o");
    let signed = t.path().join("s.oci");
    json_ok(
        bundle_cmd(&mut mlart(), &iris_spec())
            .arg("-o")
            .arg(&signed)
            .arg("--sign")
            .arg(&k_key),
    );
    let policy = t.path().join("gates.yaml");
    fs::write(&policy, "gates:\n  signature: required\n").unwrap();
    let g = json_ok(gate(&signed, &policy).arg("--key").arg(&k_pub));
    assert_eq!(g["passed"], true, "{g}");
    let out = run(gate(&signed, &policy)
        .arg("--json")
        .arg("--key")
        .arg(&o_pub));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no OCI signature verifies"));
}

/// The gate's flags on `push` without `--gate` are a usage error that says to add it (they
/// would otherwise be ignored and the push go ungated).
#[test]
fn push_gate_flags_need_gate() {
    for flag in [
        &["--baseline", "x.oci"][..],
        &["--policy", "p.yaml"],
        &["-f", "s.yaml"],
        &["--key", "k.pub"],
    ] {
        let err = crate::support::fails(
            crate::support::mlart()
                .args(["push", "missing.oci", "localhost:5000/ml/iris:1"])
                .args(flag),
            2,
        );
        assert!(err.contains("add --gate"), "{flag:?}: {err}");
    }
}
