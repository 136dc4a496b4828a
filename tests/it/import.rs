//! `mlart init --from …` and `mlart bundle FOLDER` on what teams already have: MLflow models
//! saved by the real `mlflow` package, a sharded Hugging Face folder written by the real
//! `safetensors` package, a Kitfile and a Modelfile written from their docs (issue #21).
//! The Python inputs need MLART_VENV with mlflow-skinny, safetensors, pandas, scikit-learn,
//! skl2onnx and onnxruntime (scripts/requirements-test.txt): without them the tests SKIP,
//! with MLART_REQUIRE_INTEROP=1 they fail.

use crate::support::fixtures::bundle_cmd;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run tests/it/import_make.py WHAT OUT with the venv's Python; None (SKIP) without the
/// packages it needs.
fn make(what: &str, out: &Path) -> Option<()> {
    let py = python()?;
    let probe = Command::new(&py)
        .args([
            "-c",
            "import mlflow, safetensors, sklearn, skl2onnx, onnxruntime, pandas",
        ])
        .output()
        .expect("run python");
    if !probe.status.success() {
        if std::env::var("MLART_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!(
                "mlflow/safetensors are required (MLART_REQUIRE_INTEROP=1) but not in {}: {}",
                py.display(),
                String::from_utf8_lossy(&probe.stderr)
            );
        }
        eprintln!(
            "SKIP: mlflow or safetensors not in {} (scripts/requirements-test.txt)",
            py.display()
        );
        return None;
    }
    ok(Command::new(&py)
        .arg(repo().join("tests/it/import_make.py"))
        .args([what, &out.display().to_string()]));
    Some(())
}

/// The ONNX Runtime library of the venv's onnxruntime package.
fn ort_lib() -> PathBuf {
    let py = python().expect("venv");
    let out = ok(Command::new(py).args([
        "-c",
        "import onnxruntime, os, glob; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so.1.*'))[0])",
    ]));
    PathBuf::from(String::from_utf8(out).unwrap().trim())
}

fn init_json(dir: &Path, from: &str) -> Value {
    json_ok(mlart().args(["init", "--from", from]).arg(dir))
}

fn bundle(dir: &Path, out: &Path) -> String {
    let o = run(mlart().arg("bundle").arg(dir).arg("-o").arg(out));
    assert!(
        o.status.success(),
        "bundle: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn metadata(layout: &Path) -> Value {
    json_ok(mlart().arg("inspect").arg(layout))
}

#[test]
fn mlflow_onnx_imports_bundles_and_validates() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("mlflow-onnx");
    if make("mlflow-onnx", &m).is_none() {
        return;
    }
    // Without mlart.yaml: an in-memory spec, and the same one `init` writes.
    let direct = t.path().join("direct.oci");
    let note = bundle(&m, &direct);
    assert!(note.contains("mlflow folder"), "{note}");
    assert!(!m.join("mlart.yaml").exists());
    let r = init_json(&m, "mlflow");
    assert_eq!(r["from"], "mlflow");
    assert_eq!(r["sections"]["model"], serde_json::json!(["model.onnx"]));
    let yaml = fs::read_to_string(m.join("mlart.yaml")).unwrap();
    assert!(yaml.contains("samples: input_example.json"), "{yaml}");
    assert!(yaml.contains("model_uuid"), "{yaml}");
    let via_spec = t.path().join("spec.oci");
    bundle(&m, &via_spec);
    let digest = |p: &Path| {
        let idx: Value = read_json_file(&p.join("index.json"));
        idx["manifests"][0]["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(
        digest(&direct),
        digest(&via_spec),
        "in-memory spec = written spec"
    );
    let md = metadata(&direct);
    let text = md.to_string();
    // The tensor signature [-1, 4]: per row [4]; unnamed: by position.
    assert!(text.contains("\"input[0]\""), "{text}");
    // The signature validates against the real model, and the input example runs.
    let lib = ort_lib();
    let v = run(mlart()
        .env("ORT_DYLIB_PATH", &lib)
        .env_remove("VIRTUAL_ENV")
        .arg("validate")
        .arg("-f")
        .arg(m.join("mlart.yaml")));
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        out.contains("pass  inputs") && out.contains("pass  samples"),
        "{out}"
    );
    let v = run(mlart()
        .env("ORT_DYLIB_PATH", &lib)
        .env_remove("VIRTUAL_ENV")
        .arg("validate")
        .arg(&direct));
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn mlflow_sklearn_column_signature() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("mlflow-sklearn");
    if make("mlflow-sklearn", &m).is_none() {
        return;
    }
    init_json(&m, "mlflow");
    let yaml = fs::read_to_string(m.join("mlart.yaml")).unwrap();
    assert!(
        yaml.contains("{path: model.pkl, format: pickle, framework: scikit-learn}"),
        "{yaml}"
    );
    for env in ["conda.yaml", "python_env.yaml", "requirements.txt"] {
        assert!(yaml.contains(&format!("  - {env}")), "{yaml}");
    }
    let out = t.path().join("sk.oci");
    bundle(&m, &out);
    let text = metadata(&out).to_string();
    assert!(
        text.contains("sepal length (cm)") && text.contains("float64"),
        "{text}"
    );
    assert!(text.contains("scikit-learn"), "{text}");
}

#[test]
fn huggingface_sharded_folder() {
    let t = tempfile::tempdir().unwrap();
    let h = t.path().join("tiny-llama");
    if make("hf", &h).is_none() {
        return;
    }
    let r = init_json(&h, "huggingface");
    let warnings = r["warnings"].to_string();
    assert!(warnings.contains("tags"), "{warnings}");
    let yaml = fs::read_to_string(h.join("mlart.yaml")).unwrap();
    for want in [
        "license: apache-2.0",
        "architecture: \"LlamaForCausalLM\"",
        "precision: \"fp16\"",
        "param_size: \"2.6k\"",
        "task: \"text-generation\"",
        "https://huggingface.co/datasets/tatsu-lab/alpaca",
        "model-*-of-*.safetensors",
        // the README's base model, by URI (no digest), with a note saying so
        "base_model: {uri: \"https://huggingface.co/meta-llama/Llama-3.2-1B\"}",
        "base_model meta-llama/Llama-3.2-1B: no digest",
    ] {
        assert!(yaml.contains(want), "{want}:\n{yaml}");
    }
    let out = t.path().join("mp.oci");
    let o = run(mlart()
        .arg("bundle")
        .arg(&h)
        .args(["--format", "modelpack", "-o"])
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The ModelPack config carries what the headers and config.json said.
    let idx: Value = read_json_file(&out.join("index.json"));
    let blob = |d: &str| {
        fs::read(
            out.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let man: Value =
        serde_json::from_slice(&blob(idx["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let cfg: Value =
        serde_json::from_slice(&blob(man["config"]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(cfg["config"]["paramSize"], "2.6k", "{cfg}");
    assert_eq!(cfg["config"]["precision"], "fp16");
    assert_eq!(cfg["config"]["architecture"], "LlamaForCausalLM");
    // Both shards (one glob entry) and the index are in the bundle.
    let layers = man["layers"].to_string();
    for f in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ] {
        assert!(layers.contains(f), "{f}: {layers}");
    }
}

#[test]
fn huggingface_hostile_header_is_an_error_naming_the_file() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("config.json"), r#"{"architectures": ["X"]}"#).unwrap();
    let mut b = (1u64 << 62).to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    fs::write(t.path().join("model.safetensors"), b).unwrap();
    let err = fails(mlart().arg("init").arg(t.path()), 2);
    assert!(
        err.contains("model.safetensors") && err.contains("100 MB"),
        "{err}"
    );
    fs::write(t.path().join("config.json"), "{not json").unwrap();
    let err = fails(mlart().args(["init", "--force"]).arg(t.path()), 2);
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );
}

#[test]
fn kitfile_maps_and_reports_unknown_keys() {
    let t = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/import/kitfile"),
        t.path(),
        false,
    );
    fs::copy(
        example().join("model/iris.onnx"),
        t.path().join("model.onnx"),
    )
    .unwrap();
    let o = run(mlart().arg("--json").arg("init").arg(t.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["from"], "kitfile");
    assert_eq!(r["name"], "iris-kit");
    assert!(
        r["warnings"].to_string().contains("model.extra_field"),
        "{r}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: Kitfile: model.extra_field"));
    let yaml = fs::read_to_string(t.path().join("mlart.yaml")).unwrap();
    for want in [
        "version: 1.0.0",
        "license: Apache-2.0",
        "{path: model.onnx, format: onnx, framework: onnx}",
        "data/train.csv",
        "name: \"iris-train\"",
        "parameters: {\"C\":1.0}",
    ] {
        assert!(yaml.contains(want), "{want}:\n{yaml}");
    }
    bundle(t.path(), &t.path().join("build/k.oci"));
    // A Kitfile that is not YAML: an error naming it.
    fs::write(t.path().join("Kitfile"), "model: [").unwrap();
    let err = fails(mlart().args(["init", "--force"]).arg(t.path()), 2);
    assert!(
        err.contains("Kitfile") && err.contains("invalid YAML"),
        "{err}"
    );
}

#[test]
fn modelfile_maps_and_reports_unknown_instructions() {
    let t = tempfile::tempdir().unwrap();
    copy_tree(
        &repo().join("tests/fixtures/import/modelfile"),
        t.path(),
        false,
    );
    // A minimal valid safetensors file: one BF16 tensor of 2 values.
    let hdr = br#"{"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut b = (hdr.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(hdr);
    b.extend_from_slice(&[0; 4]);
    fs::write(t.path().join("model.safetensors"), b).unwrap();
    let r = init_json(t.path(), "modelfile");
    assert_eq!(r["name"], "tiny-llama");
    assert!(r["warnings"].to_string().contains("FROBNICATE"), "{r}");
    let yaml = fs::read_to_string(t.path().join("mlart.yaml")).unwrap();
    for want in [
        "param_size: \"8b\"",
        "precision: \"bf16\"",
        "quantization: \"awq\"",
        "architecture: \"transformer\"",
        "{path: \"*.safetensors\", format: safetensors}",
    ] {
        assert!(yaml.contains(want), "{want}:\n{yaml}");
    }
    bundle(t.path(), &t.path().join("build/m.oci"));
    // --from a kind the folder is not: an input error.
    let err = fails(
        mlart()
            .args(["init", "--force", "--from", "mlflow"])
            .arg(t.path()),
        2,
    );
    assert!(err.contains("no MLmodel"), "{err}");
}

#[test]
fn init_writes_git_source_and_revision_without_credentials() {
    let Some(git) = tool("git") else { return };
    let t = example_copy();
    fs::remove_file(t.path().join("mlart.yaml")).unwrap();
    let g = |args: &[&str]| ok(Command::new(&git).arg("-C").arg(t.path()).args(args));
    g(&["init", "-q"]);
    g(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x",
    ]);
    g(&[
        "remote",
        "add",
        "origin",
        "https://user:s3cret@example.com/org/repo.git",
    ]);
    let commit = String::from_utf8(g(&["rev-parse", "HEAD"])).unwrap();
    run(mlart().arg("init").arg(t.path()));
    let yaml = fs::read_to_string(t.path().join("mlart.yaml")).unwrap();
    assert!(
        yaml.contains("source: \"https://example.com/org/repo.git\""),
        "{yaml}"
    );
    assert!(
        yaml.contains(&format!("revision: {}", commit.trim())),
        "{yaml}"
    );
    assert!(!yaml.contains("s3cret"));
}

#[test]
fn secrets_junk_and_gitignored_files_are_left_out_unless_listed() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path();
    fs::create_dir_all(p.join("model/__pycache__")).unwrap();
    fs::create_dir_all(p.join("model/sub")).unwrap();
    fs::copy(example().join("model/iris.onnx"), p.join("model/iris.onnx")).unwrap();
    for f in [
        "model/.env",
        "model/key.pem",
        "model/__pycache__/x.pyc",
        "model/.DS_Store",
        "model/scratch.tmp",
        "model/sub/keep.txt",
        "model/sub/drop.txt",
        "model/tls.key",
    ] {
        fs::write(p.join(f), "x").unwrap();
    }
    fs::write(p.join(".gitignore"), "*.tmp\n").unwrap();
    fs::write(p.join("model/sub/.gitignore"), "drop.txt\n").unwrap();
    fs::write(
        p.join("mlart.yaml"),
        "name: m\nversion: '1'\nmodel: [model/]\nconfig: [model/tls.key]\n",
    )
    .unwrap();
    let o = run(bundle_cmd(&mut mlart(), &p.join("mlart.yaml"))
        .arg("-o")
        .arg(p.join("out.oci")));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("model/.env")
            && err.contains("model/key.pem")
            && err.contains("model/__pycache__/"),
        "{err}"
    );
    let md = metadata(&p.join("out.oci")).to_string();
    for gone in [
        ".env",
        "key.pem",
        "x.pyc",
        ".DS_Store",
        "scratch.tmp",
        "drop.txt",
    ] {
        assert!(!md.contains(gone), "{gone} bundled: {md}");
    }
    // Listed by its own path: bundled on purpose.
    assert!(
        md.contains("model/tls.key") && md.contains("model/sub/keep.txt"),
        "{md}"
    );
}

/// An MLflow logged model as the real mlflow's file store keeps it: `init` finds the model in
/// `artifacts/` and the `metrics/` folder beside it, and the bundle's metrics are the last
/// values logged, so `gate` can use them (#21).
#[test]
fn mlflow_metrics_folder_becomes_metrics() {
    let t = tempfile::tempdir().unwrap();
    if make("mlflow-run", t.path()).is_none() {
        return;
    }
    let m = t.path().join("model");
    assert!(m.join("artifacts/MLmodel").is_file() && m.join("metrics/accuracy").is_file());
    let r = json_ok(mlart().arg("init").arg(&m));
    assert_eq!(r["from"], "mlflow", "{r}");
    assert_eq!(
        r["sections"]["eval"],
        serde_json::json!(["metrics/"]),
        "{r}"
    );
    assert_eq!(
        r["sections"]["schema"],
        serde_json::json!(["artifacts/MLmodel"]),
        "{r}"
    );
    let yaml = fs::read_to_string(m.join("mlart.yaml")).unwrap();
    assert!(
        yaml.contains("each metric is the value MLflow reports"),
        "{yaml}"
    );
    let out = t.path().join("b.oci");
    let warnings = bundle(&m, &out);
    assert!(!warnings.contains("no metrics read"), "{warnings}");
    let meta = metadata(&out)["metadata"].clone();
    assert_eq!(meta["metrics"]["accuracy"], 0.9, "{meta}");
    assert_eq!(meta["metrics"]["f1"], 0.8, "{meta}");
    // a gate on them
    let policy = t.path().join("gates.yaml");
    fs::write(
        &policy,
        "gates:\n  metrics:\n    - {metric: accuracy, min: 0.85}\n",
    )
    .unwrap();
    let g = json_ok(mlart().arg("gate").arg(&out).arg("--policy").arg(&policy));
    assert_eq!(g["passed"], true, "{g}");
}

/// A Kitfile whose parts lie inside its model folder, or whose model file lies inside a part
/// folder, drafts a spec `bundle` takes (each file once, a note saying where it went), with
/// `init` and without it.
#[test]
fn kitfile_parts_inside_the_model_folder_bundle() {
    for (name, kitfile) in [
        (
            "part-in-model",
            "manifestVersion: \"1.0\"\npackage: {name: iris-kit, version: 1.2.3}\nmodel:\n  name: iris\n  path: models\n  parts:\n    - path: models/tokenizer.json\n",
        ),
        (
            "model-in-part",
            "manifestVersion: \"1.0\"\npackage: {name: iris-kit, version: 1.2.3}\nmodel:\n  name: iris\n  path: models/iris.onnx\n  framework: onnx\n  parts:\n    - path: models/\n",
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join(name);
        fs::create_dir_all(dir.join("models")).unwrap();
        fs::copy(example().join("model/iris.onnx"), dir.join("models/iris.onnx")).unwrap();
        fs::write(dir.join("models/tokenizer.json"), "{}").unwrap();
        fs::write(dir.join("Kitfile"), kitfile).unwrap();
        // without init: the spec in memory
        bundle(&dir, &t.path().join("mem.oci"));
        init_json(&dir, "kitfile");
        let yaml = fs::read_to_string(dir.join("mlart.yaml")).unwrap();
        assert!(yaml.contains("is inside models/"), "{name}:\n{yaml}");
        bundle(&dir, &t.path().join("init.oci"));
        let m = metadata(&t.path().join("init.oci"));
        let files: Vec<&str> = m["metadata"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        for want in ["models/iris.onnx", "models/tokenizer.json"] {
            assert_eq!(files.iter().filter(|f| **f == want).count(), 1, "{name}: {files:?}");
        }
    }
}
