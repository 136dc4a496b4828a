//! `mlart bundle`, `inspect` and `init` end to end.

use crate::support::fixtures::bundle_cmd;
use crate::support::*;
use std::fs;
use std::path::Path;

fn bundle_json(spec: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    json_ok(
        bundle_cmd(&mut mlart(), spec)
            .arg("-o")
            .arg(out)
            .args(extra),
    )
}

/// A hand-written project in a temp dir: `(path, text)` per file (parent dirs made).
fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = t.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    t
}

/// `mlart bundle -o o.oci` run in `dir` (the spec found there).
fn bundle_in(dir: &Path) -> std::process::Command {
    let mut c = mlart();
    c.current_dir(dir).args(["bundle", "-o", "o.oci"]);
    c
}

/// Nothing was written in `dir` by a failed `bundle_in`: no o.oci, no temp files.
fn assert_nothing_written(dir: &Path) {
    assert!(!dir.join("o.oci").exists());
    assert!(leftovers(dir).is_empty());
}

#[test]
fn example_bundles_to_layout_and_archive_with_the_same_digest() {
    let t = tempfile::tempdir().unwrap();
    let spec = example().join("mlart.yaml");
    let a = bundle_json(&spec, &t.path().join("iris.oci"), &[]);
    let b = bundle_json(&spec, &t.path().join("iris.tar"), &[]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(a["tag"], "1.0.0");
    assert_eq!(b["archive"], true);
    assert!(t.path().join("iris.tar").is_file());
    assert!(leftovers(t.path()).is_empty());

    for target in ["iris.oci", "iris.tar"] {
        let r = json_ok(mlart().arg("inspect").arg(t.path().join(target)));
        assert_eq!(r["manifest_digest"], a["manifest_digest"]);
        let m = &r["metadata"];
        assert_eq!(m["name"], "iris");
        assert_eq!(m["metrics"]["accuracy"], 0.911111);
        assert_eq!(m["metrics"]["macro avg.precision"], 0.915535);
        assert_eq!(m["schema"]["features"].as_array().unwrap().len(), 4);
        assert_eq!(m["schema"]["outputs"][1]["shape"], serde_json::json!([3]));
        assert_eq!(m["models"][0]["format"], "onnx");
        assert_eq!(m["env"]["packages"]["onnxruntime"], "==1.31.1");
        // the file index matches the sources
        for f in m["files"].as_array().unwrap() {
            let path = f["path"].as_str().unwrap();
            assert_eq!(
                f["sha256"].as_str().unwrap(),
                format!("sha256:{}", sha256_file(&example().join(path))),
                "{path}"
            );
        }
        assert!(
            !m["metrics"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with("setosa")),
            "confusion matrix is not metrics"
        );
    }
    // Human output is a table naming the files.
    let out = run(mlart().arg("inspect").arg(t.path().join("iris.oci")));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("model/iris.onnx")
            && text.contains("accuracy")
            && text.contains("sepal_length"),
        "{text}"
    );
}

#[test]
fn image_form_has_correct_diff_ids_and_annotations() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("iris.oci");
    bundle_json(&example().join("mlart.yaml"), &out, &[]);
    let index: serde_json::Value = read_json_file(&out.join("index.json"));
    let blob = |d: &str| {
        fs::read(
            out.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        "1.0.0"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.licenses"],
        "Apache-2.0"
    );
    assert!(
        manifest["annotations"]
            .get("org.opencontainers.image.created")
            .is_none(),
        "no wall-clock time"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len());
    assert_eq!(config["history"].as_array().unwrap().len(), layers.len());
    for (l, d) in layers.iter().zip(diff_ids) {
        assert!(l["annotations"]["ai.mlart.kind"].is_string());
        assert!(l["annotations"]["org.opencontainers.image.title"].is_string());
        let data = blob(l["digest"].as_str().unwrap());
        let raw = if l["mediaType"].as_str().unwrap().ends_with("+gzip") {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut v)
                .unwrap();
            v
        } else {
            data
        };
        assert_eq!(d.as_str().unwrap(), sha256(&raw));
    }
    // The keys of every JSON document are sorted (canonical form).
    let text = String::from_utf8(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    assert!(text.starts_with("{\"annotations\""), "{text}");
}

#[test]
fn artifact_form_uses_mlart_media_types_and_raw_model_layers() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("iris-art.oci");
    let r = bundle_json(
        &example().join("mlart.yaml"),
        &out,
        &["--format", "artifact"],
    );
    let layers = r["layers"].as_array().unwrap();
    let model = layers.iter().find(|l| l["kind"] == "model").unwrap();
    assert_eq!(model["media_type"], "application/vnd.mlart.model.v1.raw");
    assert_eq!(model["title"], "model/iris.onnx");
    assert_eq!(
        model["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_file(&example().join("model/iris.onnx")))
    );
    assert!(layers
        .iter()
        .any(|l| l["media_type"] == "application/vnd.mlart.eval.v1.tar+gzip"));
    let i = json_ok(mlart().arg("inspect").arg(&out));
    assert_eq!(i["artifact_type"], "application/vnd.mlart.bundle.v1+json");
    assert_eq!(
        i["config"]["media_type"],
        "application/vnd.mlart.bundle.config.v1+json"
    );
    assert_eq!(i["metadata"]["form"], "artifact");
    assert!(i["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["kind"] != "metadata"));
}

#[test]
fn golden_digest_of_the_example() {
    let t = tempfile::tempdir().unwrap();
    for (form, file) in [
        ("image", "iris-image.json"),
        ("artifact", "iris-artifact.json"),
        ("modelpack", "iris-modelpack.json"),
    ] {
        let out = t.path().join(format!("{form}.oci"));
        let r = bundle_json(&example().join("mlart.yaml"), &out, &["--format", form]);
        let got = golden_snapshot(&out);
        let golden_path = repo().join("tests/golden").join(file);
        if std::env::var("MLART_UPDATE_GOLDEN").as_deref() == Ok("1") {
            fs::create_dir_all(golden_path.parent().unwrap()).unwrap();
            fs::write(
                &golden_path,
                serde_json::to_string_pretty(&got).unwrap() + "\n",
            )
            .unwrap();
        }
        let want: serde_json::Value = read_json_file(&golden_path);
        if want["manifest_digest"] != r["manifest_digest"] {
            panic!(
                "the {form} bundle of examples/iris changed: digest {} (golden {}).\nWhat differs:\n{}\nIf the change is intended, run MLART_UPDATE_GOLDEN=1 cargo test golden and commit tests/golden/.",
                r["manifest_digest"],
                want["manifest_digest"],
                explain(&want, &got, "")
            );
        }
    }
}

/// Manifest, config and the listing of every tar layer: what a digest mismatch is explained by.
fn golden_snapshot(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value = read_json_file(&layout.join("index.json"));
    let blob = |d: &str| {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let md = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&md)).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let mut listings = serde_json::Map::new();
    for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let mt = l["mediaType"].as_str().unwrap();
        if !mt.contains("tar") {
            continue;
        }
        let data = blob(l["digest"].as_str().unwrap());
        let raw: Vec<u8> = if mt.ends_with("+gzip") {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut v)
                .unwrap();
            v
        } else {
            data
        };
        let mut ar = tar::Archive::new(&raw[..]);
        let entries: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                format!(
                    "{} mode={:o} uid={} gid={} mtime={} size={}",
                    e.path().unwrap().display(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap()
                )
            })
            .collect();
        // keyed by position and title, so a changed layer shows as a changed listing
        let key = format!(
            "{i}:{}",
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap_or("")
        );
        listings.insert(key, entries.into());
    }
    serde_json::json!({"manifest_digest": md, "manifest": manifest, "config": config, "tar_listings": listings})
}

/// A readable list of the paths where two JSON values differ.
fn explain(want: &serde_json::Value, got: &serde_json::Value, at: &str) -> String {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = String::new();
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                out += &explain(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{at}/{k}"),
                );
            }
            out
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| explain(x, y, &format!("{at}[{i}]")))
            .collect(),
        (a, b) if a != b => format!("  {at}: golden {a} / now {b}\n"),
        _ => String::new(),
    }
}

#[test]
fn same_digest_whatever_mtime_umask_cwd_and_creation_order() {
    let spec_rel = "mlart.yaml";
    let a = example_copy();
    let b = tempfile::tempdir().unwrap();
    copy_tree(&example(), b.path(), true); // created in reverse order
                                           // other permissions (as a 077 umask would give) and other mtimes
    for e in walkdir::WalkDir::new(b.path()) {
        let e = e.unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = if e.file_type().is_dir() { 0o700 } else { 0o600 };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
    }
    set_file_mtimes(b.path(), 1_234_567_890);
    let out = tempfile::tempdir().unwrap();
    // A: relative spec path from the project folder.
    let ra = json_ok(
        mlart()
            .current_dir(a.path())
            .args(["bundle", "-f", spec_rel, "-o"])
            .arg(out.path().join("a.oci")),
    );
    // B: absolute spec path from elsewhere, under umask 077.
    let out_b = out.path().join("b.oci");
    let cmd = format!(
        "umask 077 && exec '{}' --json bundle -f '{}' -o '{}'",
        env!("CARGO_BIN_EXE_mlart"),
        b.path().join(spec_rel).display(),
        out_b.display()
    );
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(out.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rb: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ra["manifest_digest"], rb["manifest_digest"]);
    // And the committed example gives the same digest too.
    let rc = bundle_json(&example().join(spec_rel), &out.path().join("c.oci"), &[]);
    assert_eq!(ra["manifest_digest"], rc["manifest_digest"]);
}

#[test]
fn source_date_epoch_sets_times_and_is_validated() {
    let t = tempfile::tempdir().unwrap();
    let spec = example().join("mlart.yaml");
    let plain = bundle_json(&spec, &t.path().join("a.oci"), &[]);
    // `bundle -f SPEC` with SOURCE_DATE_EPOCH set to `epoch`
    let with_epoch = |epoch: &str| {
        let mut c = mlart();
        c.env("SOURCE_DATE_EPOCH", epoch);
        bundle_cmd(&mut c, &spec);
        c
    };
    let dated = json_ok(
        with_epoch("1700000000")
            .arg("-o")
            .arg(t.path().join("b.oci")),
    );
    assert_ne!(plain["manifest_digest"], dated["manifest_digest"]);
    let i = json_ok(mlart().arg("inspect").arg(t.path().join("b.oci")));
    assert_eq!(
        i["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(i["metadata"]["created"], "2023-11-14T22:13:20Z");
    let again = json_ok(
        with_epoch("1700000000")
            .arg("-o")
            .arg(t.path().join("c.oci")),
    );
    assert_eq!(again["manifest_digest"], dated["manifest_digest"]);
    let err = fails(
        with_epoch("yesterday")
            .arg("-o")
            .arg(t.path().join("d.oci")),
        2,
    );
    assert!(err.contains("SOURCE_DATE_EPOCH"), "{err}");
    assert!(!t.path().join("d.oci").exists());
}

#[test]
fn bad_specs_give_positioned_errors_exit_2_and_json() {
    let t = project(&[("m.onnx", "x")]);
    let cases: &[(&str, &str)] = &[
        (
            "name: a\nversion: '1'\nmodle: [m.onnx]\n",
            "mlart.yaml:3:1: unknown field `modle`",
        ),
        (
            "name: a\nversion: '1'\nmodel: [missing.onnx]\n",
            "mlart.yaml:3:9: \"missing.onnx\" in `model` does not exist",
        ),
        (
            "name: a\nversion: '1'\nmodel: [m.onnx]\ndocs: [m.onnx]\n",
            "listed under both `model` (line 3) and `docs`",
        ),
        (
            "name: a\nversion: '1'\nmodel:\n  - ../etc/passwd\n",
            "mlart.yaml:4:5:",
        ),
        ("name: a\nversion: [1]\nmodel: [m.onnx]\n", "mlart.yaml:2:"),
        ("name: a\nversion: '1'\n", "the bundle would be empty"),
        (
            "name: a\nversion: '1'\nmodel: m.onnx\n",
            "A section is a list",
        ),
        ("\t- :\n[", "mlart.yaml:"),
    ];
    for (text, want) in cases {
        fs::write(t.path().join("mlart.yaml"), text).unwrap();
        let err = fails(mlart().current_dir(t.path()).arg("bundle"), 2);
        assert!(err.contains(want), "spec {text:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let out = run(mlart().current_dir(t.path()).args(["--json", "bundle"]));
        assert_eq!(out.status.code(), Some(2));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON error");
        assert!(v["error"]["message"].as_str().unwrap().contains(want));
        assert!(
            !t.path().join("build").exists(),
            "nothing written on failure"
        );
    }
    // no spec at all
    let e = tempfile::tempdir().unwrap();
    let err = fails(mlart().current_dir(e.path()).arg("bundle"), 2);
    assert!(err.contains("mlart init"), "{err}");
}

#[cfg(unix)]
#[test]
fn symlink_leaving_the_project_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.onnx"), b"s").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.onnx"), t.path().join("m.onnx"))
        .unwrap();
    fs::write(
        t.path().join("mlart.yaml"),
        "name: a\nversion: '1'\nmodel: [m.onnx]\n",
    )
    .unwrap();
    let err = fails(mlart().current_dir(t.path()).arg("bundle"), 2);
    assert!(err.contains("points outside the project"), "{err}");
}

#[test]
fn existing_non_layout_output_is_not_replaced() {
    let p = example_copy();
    let out = p.path().join("precious");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("keep.txt"), b"mine").unwrap();
    let err = fails(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "precious"]),
        2,
    );
    assert!(err.contains("not an OCI layout"), "{err}");
    assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"mine");
    // An existing layout is replaced whole.
    let r1 = json_ok(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "out.oci"]),
    );
    fs::write(p.path().join("eval/metrics.json"), b"{\"accuracy\": 0.5}\n").unwrap();
    let r2 = json_ok(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "out.oci"]),
    );
    assert_ne!(r1["manifest_digest"], r2["manifest_digest"]);
    let i = json_ok(mlart().current_dir(p.path()).args(["inspect", "out.oci"]));
    assert_eq!(i["manifest_digest"], r2["manifest_digest"]);
    assert_eq!(i["metadata"]["metrics"]["accuracy"], 0.5);
    assert!(leftovers(p.path()).is_empty());
    // The default output goes to build/<name>.oci, which is not bundled into itself.
    let r = json_ok(mlart().current_dir(p.path()).args(["bundle"]));
    assert_eq!(r["output"], "build/iris.oci");
    let r = json_ok(mlart().current_dir(p.path()).args(["bundle"]));
    assert_eq!(r["files"], 11);
}

#[test]
fn unparseable_reports_warn_and_stay_files() {
    let t = project(&[
        ("m.onnx", "x"),
        ("broken.json", "{nope"),
        ("good.csv", "metric,value\nauc,0.8\nloss,NaN\n"),
        (
            "mlart.yaml",
            "name: a\nversion: '1'\nmodel: [m.onnx]\neval: [broken.json, good.csv]\n",
        ),
    ]);
    let r = json_ok(&mut bundle_in(t.path()));
    let w = r["warnings"].as_array().unwrap();
    assert!(
        w.iter()
            .any(|w| w.as_str().unwrap().contains("broken.json")),
        "{w:?}"
    );
    assert_eq!(r["metrics"]["auc"], 0.8);
    assert!(r["metrics"]["loss"].is_null());
    assert_eq!(r["files"], 3);
}

#[test]
fn a_headerless_numeric_csv_is_refused_and_floats_are_kept_exact() {
    let t = project(&[("m.onnx", "x"), ("scores.csv", "0.5,0.7\n0.6,0.8\n")]);
    // 0.9646561376073733 read as ...732 with an inexact float parser
    fs::write(
        t.path().join("metrics.json"),
        b"{\"accuracy\": 0.9646561376073733, \"0\": {\"precision\": 0.5}}",
    )
    .unwrap();
    let spec = "name: a\nversion: '1'\nmodel: [m.onnx]\neval: [metrics.json, scores.csv]\n";
    fs::write(t.path().join("mlart.yaml"), spec).unwrap();
    let err = fails(&mut bundle_in(t.path()), 2);
    assert!(
        err.contains("scores.csv") && err.contains("\"0.5\"") && err.contains("metrics: false"),
        "{err}"
    );
    assert_nothing_written(t.path());
    // marked `metrics: false`, it is a plain file; the JSON metrics are exact
    fs::write(
        t.path().join("mlart.yaml"),
        "name: a\nversion: '1'\nmodel: [m.onnx]\neval: [metrics.json, {path: scores.csv, metrics: false}]\ngates:\n  metrics: [{metric: accuracy, min: 0.9646561376073733}]\n",
    )
    .unwrap();
    let r = json_ok(&mut bundle_in(t.path()));
    assert_eq!(r["metrics"]["accuracy"].to_string(), "0.9646561376073733");
    assert_eq!(r["metrics"]["0.precision"], 0.5);
    let out = run(mlart()
        .current_dir(t.path())
        .args(["--json", "inspect", "o.oci"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0.9646561376073733"), "{text}");
    // the gate at exactly the threshold passes
    json_ok(mlart().current_dir(t.path()).args(["gate", "o.oci"]));
}

#[test]
fn compressed_output_names_are_refused_not_written_as_directories() {
    let t = tempfile::tempdir().unwrap();
    for name in ["model.tar.gz", "model.tgz", "out/model.tar.zst"] {
        let err = fails(
            mlart()
                .current_dir(example())
                .args(["bundle", "-o"])
                .arg(t.path().join(name)),
            2,
        );
        assert!(
            err.contains("model.tar`") && err.contains("model.oci`") && err.contains("OCI archive"),
            "{err}"
        );
        assert!(!t.path().join(name).exists(), "{name}");
    }
    assert!(!t.path().join("out").exists());
    assert!(leftovers(t.path()).is_empty());
    // copy too; `.tar` is an archive, oci-archive: any name
    let layout = t.path().join("iris.oci");
    json_ok(
        mlart()
            .current_dir(example())
            .args(["bundle", "-o"])
            .arg(&layout),
    );
    let err = fails(
        mlart()
            .arg("copy")
            .arg(&layout)
            .arg(t.path().join("x.tar.gz")),
        2,
    );
    assert!(err.contains("does not write .gz files"), "{err}");
    json_ok(mlart().arg("copy").arg(&layout).arg(t.path().join("x.tar")));
    assert!(t.path().join("x.tar").is_file());
}

#[test]
fn inspect_of_a_spec_says_what_to_run_and_piped_logs_have_no_colours() {
    let err = fails(
        mlart()
            .current_dir(example())
            .args(["inspect", "mlart.yaml"]),
        2,
    );
    assert!(
        err.contains("is a spec") && err.contains("mlart bundle -f mlart.yaml"),
        "{err}"
    );
    // stderr is a pipe here: logs without ANSI colour codes
    let out = run(mlart().args(["-vv", "inspect", "127.0.0.1:1/ml/iris:1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[test]
fn a_broken_feature_schema_is_an_error_naming_the_file() {
    let t = project(&[
        ("m.onnx", "x"),
        (
            "features.yaml",
            "features:\n  - name: a\n    dtype: complex128\n",
        ),
        (
            "mlart.yaml",
            "name: a\nversion: '1'\nmodel: [m.onnx]\nschema: [features.yaml]\n",
        ),
    ]);
    let err = fails(&mut bundle_in(t.path()), 2);
    assert!(
        err.contains("features.yaml") && err.contains("complex128"),
        "{err}"
    );
    assert_nothing_written(t.path());
}

#[test]
fn mlflow_signature_is_read_as_the_schema() {
    let t = project(&[
        ("model/model.pkl", "pickle"),
        (
            "model/MLmodel",
            "flavors:\n  sklearn: {}\nsignature:\n  inputs: '[{\"type\": \"double\", \"name\": \"x\", \"required\": true}]'\n  outputs: '[{\"type\": \"long\"}]'\n",
        ),
        (
            "mlart.yaml",
            "name: a\nversion: '1'\nmodel: [model/model.pkl]\nschema: [model/MLmodel]\n",
        ),
    ]);
    let r = json_ok(&mut bundle_in(t.path()));
    assert!(r["warnings"].as_array().unwrap().is_empty());
    let i = json_ok(mlart().current_dir(t.path()).args(["inspect", "o.oci"]));
    assert_eq!(i["metadata"]["schema"]["source"], "mlflow");
    assert_eq!(i["metadata"]["schema"]["features"][0]["dtype"], "float64");
    assert_eq!(i["metadata"]["models"][0]["format"], "pickle");
}

/// `mlart ARGS` run in `dir` under GNU time: (exit code, stdout, its peak RSS in KiB). Not
/// `wait4` on a child of this test process: a spawned child's `ru_maxrss` starts from the
/// spawning process's high-water mark (Linux keeps it across exec), and this harness runs
/// other tests beside it, some of which hold hundreds of MiB: the figure was theirs.
fn run_with_peak_rss(time: &Path, dir: &Path, args: &[&str]) -> (i32, Vec<u8>, i64) {
    let rss = tempfile::NamedTempFile::new().unwrap();
    let out = std::process::Command::new(time)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(rss.path())
        .arg(env!("CARGO_BIN_EXE_mlart"))
        .args(args)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let kib = fs::read_to_string(rss.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no peak RSS from GNU time: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code().unwrap_or(128), out.stdout, kib)
}

fn big_model_project(size: u64) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("model")).unwrap();
    let f = fs::File::create(t.path().join("model/big.safetensors")).unwrap();
    f.set_len(size).unwrap(); // sparse: reads as zeros, costs no disk
    fs::write(t.path().join("notes.md"), b"big model\n").unwrap();
    fs::write(
        t.path().join("mlart.yaml"),
        "name: big\nversion: '1'\nmodel: [model/big.safetensors]\ndocs: [notes.md]\n",
    )
    .unwrap();
    t
}

#[test]
fn a_4_gib_model_streams_in_under_64_mib_of_memory() {
    let size: u64 = std::env::var("MLART_BIG_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4 << 30);
    let Some(time) = tool("time") else { return };
    let p = big_model_project(size);
    let (code, out, rss_kib) =
        run_with_peak_rss(&time, p.path(), &["--json", "bundle", "-o", "big.oci"]);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    assert!(
        rss_kib < 64 * 1024,
        "peak RSS {rss_kib} KiB for a {size}-byte model"
    );
    let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let model = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "model")
        .unwrap()
        .clone();
    assert_eq!(
        model["title"], "model/big.safetensors",
        "a large model gets a layer of its own"
    );
    assert_eq!(
        model["media_type"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    assert!(model["size"].as_u64().unwrap() > size);
    eprintln!("bundled {size} bytes with peak RSS {rss_kib} KiB");
}

/// Wait until a bundle in `dir` is under way (its staging directory exists), plus a moment.
fn wait_until_staging(dir: &Path) {
    let start = std::time::Instant::now();
    while leftovers(dir).is_empty() && start.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
}

/// `mlart bundle -o OUT` started in `dir` (stderr piped), once it is under way.
fn bundle_under_way(dir: &Path, out: &str) -> std::process::Child {
    let child = mlart()
        .current_dir(dir)
        .args(["bundle", "-o", out])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_staging(dir);
    child
}

#[test]
fn a_file_that_changes_mid_bundle_leaves_no_output() {
    let p = big_model_project(3 << 30);
    let child = bundle_under_way(p.path(), "big.oci");
    // Once the bundle is under way, cut the model short.
    fs::File::options()
        .write(true)
        .open(p.path().join("model/big.safetensors"))
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("big.safetensors") && err.contains("shrank"),
        "{err}"
    );
    assert!(!p.path().join("big.oci").exists());
    assert!(leftovers(p.path()).is_empty(), "{:?}", leftovers(p.path()));
}

#[test]
fn ctrl_c_leaves_no_output() {
    let p = big_model_project(3 << 30);
    let child = bundle_under_way(p.path(), "big.tar");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert!(!p.path().join("big.tar").exists());
    assert!(leftovers(p.path()).is_empty());
}

#[test]
fn sigterm_and_a_second_ctrl_c_leave_nothing_and_kill_9_leftovers_go_next_run() {
    let p = big_model_project(3 << 30);
    for signals in [&[libc::SIGTERM][..], &[libc::SIGINT, libc::SIGINT][..]] {
        let child = bundle_under_way(p.path(), "big.tar");
        for sig in signals {
            unsafe { libc::kill(child.id() as i32, *sig) };
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(130),
            "{signals:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!p.path().join("big.tar").exists());
        assert!(
            leftovers(p.path()).is_empty(),
            "{signals:?}: {:?}",
            leftovers(p.path())
        );
    }
    // kill -9: the staging directory stays, and the next run in that folder removes it
    let child = mlart()
        .current_dir(p.path())
        .args(["bundle", "-o", "big.tar"])
        .spawn()
        .unwrap();
    wait_until_staging(p.path());
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let mut child = child;
    child.wait().unwrap();
    let left = leftovers(p.path());
    assert_eq!(left.len(), 1, "{left:?}");
    fs::remove_file(p.path().join("model/big.safetensors")).unwrap();
    fs::write(p.path().join("model/big.safetensors"), b"small now").unwrap();
    json_ok(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "big.tar"]),
    );
    assert!(leftovers(p.path()).is_empty(), "{:?}", leftovers(p.path()));
}

#[test]
fn init_writes_a_spec_that_bundles_and_never_overwrites() {
    let p = example_copy();
    fs::remove_file(p.path().join("mlart.yaml")).unwrap();
    let r = json_ok(
        mlart()
            .current_dir(p.path())
            .args(["init", "--name", "iris"]),
    );
    assert_eq!(r["sections"]["model"], serde_json::json!(["model/"]));
    assert_eq!(r["sections"]["schema"], serde_json::json!(["schema/"]));
    assert_eq!(
        r["sections"]["env"],
        serde_json::json!(["requirements.txt"])
    );
    assert!(r["unclassified"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "train.py"));
    let spec = fs::read_to_string(p.path().join("mlart.yaml")).unwrap();
    assert!(
        spec.contains("name: iris") && spec.contains("#   train.py"),
        "{spec}"
    );
    let b = json_ok(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "o.oci"]),
    );
    assert!(b["files"].as_u64().unwrap() >= 9);
    // never overwrite without --force
    fs::write(p.path().join("mlart.yaml"), "# mine\n").unwrap();
    let err = fails(mlart().current_dir(p.path()).arg("init"), 2);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        fs::read_to_string(p.path().join("mlart.yaml")).unwrap(),
        "# mine\n"
    );
    json_ok(
        mlart()
            .current_dir(p.path())
            .args(["init", "--force", "--name", "iris"]),
    );
    assert!(fs::read_to_string(p.path().join("mlart.yaml"))
        .unwrap()
        .contains("name: iris"));
}

#[test]
fn inspect_refuses_corrupt_and_hostile_layouts() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good.oci");
    let r = bundle_json(&example().join("mlart.yaml"), &good, &[]);
    let meta_layer = r["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "metadata")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest_hex = r["manifest_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let variant = |name: &str, f: &dyn Fn(&Path)| {
        let d = t.path().join(name);
        copy_tree(&good, &d, false);
        f(&d);
        d
    };
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (
            variant("flipped", &|d| {
                let p = d.join("blobs/sha256").join(&meta_layer);
                let mut b = fs::read(&p).unwrap();
                let n = b.len() / 2;
                b[n] ^= 0xff;
                fs::write(p, b).unwrap();
            }),
            "does not match its digest",
        ),
        (
            variant("missing", &|d| {
                fs::remove_file(d.join("blobs/sha256").join(&meta_layer)).unwrap()
            }),
            "missing",
        ),
        (
            variant("badindex", &|d| {
                fs::write(d.join("index.json"), b"{\"manifests\": 7}").unwrap()
            }),
            "not a valid OCI index",
        ),
        (
            variant("traversal", &|d| {
                let s = fs::read_to_string(d.join("index.json")).unwrap().replace(
                    &format!("sha256:{manifest_hex}"),
                    "sha256:../../../etc/passwd",
                );
                fs::write(d.join("index.json"), s).unwrap();
            }),
            "index.json",
        ),
        (
            variant("huge", &|d| {
                let s = fs::read_to_string(d.join("index.json")).unwrap();
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                let size = v["manifests"][0]["size"].as_u64().unwrap();
                fs::write(
                    d.join("index.json"),
                    s.replace(&format!("\"size\":{size}"), "\"size\":99999999999"),
                )
                .unwrap();
            }),
            "more than",
        ),
        (
            variant("notmanifest", &|d| {
                fs::write(d.join("blobs/sha256").join(&manifest_hex), b"[]").unwrap()
            }),
            "truncated",
        ),
        (
            variant("nolayout", &|d| {
                fs::remove_file(d.join("oci-layout")).unwrap()
            }),
            "not an OCI layout",
        ),
    ];
    for (path, want) in cases {
        // a blob that does not match its digest or size is an integrity error (4); the rest input (2)
        let code = if want.contains("does not match") || want.contains("truncated") {
            4
        } else {
            2
        };
        let err = fails(mlart().arg("inspect").arg(&path), code);
        assert!(err.contains(want), "{}: {err}", path.display());
        assert!(!err.contains("panicked"), "{err}");
    }
    let junk = t.path().join("junk.tar");
    fs::write(&junk, vec![0x41u8; 3000]).unwrap();
    let err = fails(mlart().arg("inspect").arg(&junk), 2);
    assert!(err.contains("not an OCI archive"), "{err}");
    // binary noise: the message stays plain text
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    fs::write(&junk, noise).unwrap();
    let err = fails(mlart().arg("inspect").arg(&junk), 2);
    assert!(err.contains("not an OCI archive"), "{err}");
    assert!(
        err.chars()
            .all(|c| c.is_ascii() && (!c.is_ascii_control() || c == '\n') || c == '…'),
        "{err:?}"
    );
    let err = fails(mlart().arg("inspect").arg(t.path().join("nope")), 2);
    assert!(err.contains("does not exist"), "{err}");
    let err = fails(mlart().args(["inspect", "--tag", "9.9"]).arg(&good), 2);
    assert!(
        err.contains("no manifest tagged \"9.9\"") && err.contains("1.0.0"),
        "{err}"
    );
}

/// Text kinds are gzip'd on every core (crate::build::pgzip): a 5 MiB training log gives the same
/// layer whatever the thread count, and it reads back with a plain (one-member) gzip reader.
#[test]
fn gzip_layers_are_the_same_whatever_the_thread_count() {
    let p = example_copy();
    let mut log = String::new();
    let mut i = 0u64;
    while log.len() < 5 << 20 {
        log.push_str(&format!(
            "epoch {} step {i} loss {:.6}\n",
            i / 1000,
            1.0 / (i + 1) as f64
        ));
        i += 1;
    }
    fs::write(p.path().join("logs/train.log"), &log).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for threads in ["1", "2", "5"] {
        let o = out.path().join(format!("t{threads}.oci"));
        let v = json_ok(
            mlart()
                .env("MLART_THREADS", threads)
                .current_dir(p.path())
                .args(["bundle", "-o"])
                .arg(&o),
        );
        digests.push(v["manifest_digest"].as_str().unwrap().to_string());
    }
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    // The logs layer holds the log, intact.
    let pulled = out.path().join("pulled");
    json_ok(
        mlart()
            .args(["pull"])
            .arg(out.path().join("t2.oci"))
            .args(["--kind", "logs", "-o"])
            .arg(&pulled),
    );
    assert_eq!(
        fs::read_to_string(pulled.join("logs/train.log")).unwrap(),
        log
    );
}

/// Bytes that are not what their digest says are an integrity failure for `verify` as for
/// `pull` (exit 4, `"integrity": true`), and `verify` names the digest even when the damage is
/// in a tar header (whose parse error is only a symptom); a failed check of another sort
/// (no signature by the key given) stays exit 1.
#[test]
fn verify_says_integrity_with_pulls_exit_code_and_the_root_cause() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good.oci");
    let (key, _) = keygen(t.path(), "k");
    let (_, other) = keygen(t.path(), "other");
    crate::support::fixtures::bundle_iris(
        &mut mlart(),
        &good,
        &["--sign".as_ref(), key.as_os_str()],
    );
    let (_, manifest) = crate::support::fixtures::read_layout(&good);
    let model = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["ai.mlart.kind"] == "model")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    for (name, at) in [("in-data", 1700usize), ("in-header", 1000)] {
        let d = t.path().join(format!("{name}.oci"));
        copy_tree(&good, &d, false);
        let p = d.join("blobs/sha256").join(&model);
        let mut b = fs::read(&p).unwrap();
        b[at] ^= 0x20;
        fs::write(&p, b).unwrap();
        let err = fails(mlart().arg("verify").arg(&d), 4);
        assert!(err.contains("does not match its digest"), "{name}: {err}");
        let out = run(mlart().args(["--json", "verify"]).arg(&d));
        assert_eq!(out.status.code(), Some(4), "{name}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["integrity"], true, "{name}: {v}");
        assert_eq!(v["ok"], false, "{name}: {v}");
        fails(
            mlart()
                .arg("pull")
                .arg(&d)
                .arg("-o")
                .arg(t.path().join(format!("{name}-out"))),
            4,
        );
    }
    // another key: a check that failed, not damage
    let out = run(mlart()
        .args(["--json", "verify", "--key"])
        .arg(&other)
        .arg(&good));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("integrity").is_none(), "{v}");
}

/// A project file the user running mlart cannot read, then a folder it cannot list: exit 2,
/// the error at the spec entry that brought it in (mlart.yaml:LINE:COL), with the fix, and
/// no output left behind. As root
/// (where mode 000 does not stop reads) mlart runs as nobody through `setpriv`; without it,
/// the test is skipped with a message.
#[test]
fn an_unreadable_project_file_names_its_spec_entry_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let t = example_copy();
    let dir = t.path();
    let log = dir.join("logs/train.log");
    let old = dir.join("logs/old");
    fs::create_dir(&old).unwrap();
    fs::write(old.join("first.log"), "epoch 1\n").unwrap();
    let root = unsafe { libc::geteuid() == 0 };
    let mut c = match root {
        false => mlart(),
        true => {
            let Some(setpriv) = find_on_path("setpriv") else {
                eprintln!("SKIP: running as root, where mode 000 does not stop reads, and no setpriv to run mlart as nobody");
                return;
            };
            // nobody reads and writes the project (and reaches it: the temp dir is 0700)
            for e in walkdir::WalkDir::new(dir) {
                let p = e.unwrap().into_path();
                let mode = if p.is_dir() { 0o777 } else { 0o666 };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
            let mut c = std::process::Command::new(setpriv);
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_mlart"))
                .env_remove("SOURCE_DATE_EPOCH")
                .env_remove("RUST_LOG")
                .env("HOME", dir);
            c
        }
    };
    fs::set_permissions(&log, fs::Permissions::from_mode(0o000)).unwrap();
    if !root && fs::read(&log).is_ok() {
        eprintln!("SKIP: this user reads a file of mode 000 (CAP_DAC_OVERRIDE)");
        return;
    }
    let err = fails(c.current_dir(dir).args(["bundle", "-o", "build/x.oci"]), 2);
    // `logs/` is line 24 of examples/iris/mlart.yaml
    assert!(
        err.contains("mlart.yaml:24:")
            && err.contains("\"logs/train.log\" (from `logs/` in `logs`) cannot be read")
            && err.contains("chmod a+r")
            && err.contains(".mlartignore")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let build = dir.join("build");
    assert!(!build.join("x.oci").exists());
    assert!(leftovers(&build).is_empty(), "{:?}", leftovers(&build));
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));

    // a folder it cannot list: said as a folder, with its own fix
    fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o000)).unwrap();
    let err = fails(&mut c, 2);
    fs::set_permissions(&old, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(
        err.contains("mlart.yaml:24:")
            && err.contains("\"logs/old\" (from `logs/` in `logs`) is a folder the user running mlart cannot list")
            && err.contains("chmod a+rx")
            && err.contains("line `logs/old/` in .mlartignore")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!build.join("x.oci").exists());
    assert!(leftovers(&build).is_empty(), "{:?}", leftovers(&build));
    // and that line in .mlartignore is the way out
    fs::write(dir.join(".mlartignore"), "logs/old/\n").unwrap();
    fs::set_permissions(&old, fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&mut c);
    fs::set_permissions(&old, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mlart import …`, a verb users guess: a usage error (exit 2) pointing at `init --from` and
/// `bundle DIR`; not listed in --help.
#[test]
fn import_is_answered_with_the_verbs_that_import() {
    for args in [
        &["import"][..],
        &["import", "./my-mlflow-model"][..],
        &["import", "--from", "mlflow", "x", "--help"][..],
    ] {
        let err = fails(mlart().args(args), 2);
        assert!(
            err.contains("mlart has no `import` command")
                && err.contains("mlart init --from")
                && err.contains("mlart bundle")
                && !err.contains("unrecognized subcommand"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");
    }
    let err = fails(mlart().args(["import", "./my-mlflow-model"]), 2);
    assert!(
        err.contains("init --from mlflow|huggingface|kitfile|modelfile|files ./my-mlflow-model"),
        "{err}"
    );
    // (`--json` before the verb: after it, it is one of the words `import` takes)
    let out = run(mlart().args(["--json", "import", "x"]));
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let help = String::from_utf8_lossy(&run(mlart().arg("--help")).stdout).into_owned();
    assert!(
        help.contains("bundle") && !help.contains("import"),
        "{help}"
    );
}

/// A registry reference with capitals, a bad tag or a bad digest: which part, and the fix.
#[test]
fn bad_references_say_which_part_is_wrong() {
    let err = fails(mlart().args(["inspect", "localhost:5000/ML/Iris:1.0.0"]), 2);
    assert!(
        err.contains("repository names must be lowercase")
            && err.contains("\"localhost:5000/ml/iris:1.0.0\""),
        "{err}"
    );
    let err = fails(mlart().args(["inspect", "localhost:5000/repo:bad!tag"]), 2);
    assert!(err.contains("the tag \"bad!tag\""), "{err}");
    let err = fails(
        mlart().args(["inspect", "localhost:5000/repo@sha256:abc"]),
        2,
    );
    assert!(
        err.contains("the digest \"sha256:abc\"") && err.contains("64"),
        "{err}"
    );
}
