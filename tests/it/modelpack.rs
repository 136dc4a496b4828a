//! The CNCF ModelPack form (`bundle --format modelpack`) and the other tools' dialects mlart
//! reads: checked with the ModelPack reference client (`modelpack-client`, PyPI), the
//! ModelPack config schema, model_signing, and hand-made KitOps / older-ModelPack fixtures.

use crate::support::fixtures::{blob_path, bundle_iris, put_blob, read_json};
use crate::support::registry::{Env, Registry};
use crate::support::{
    example, fails, field_strs, json_ok, missing, model_signing_verify, ok, pull_to, python,
    read_json_file, repo, sha256, sign, tree_digests,
};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The project's files (what `mlart.yaml` lists) by path -> sha256.
fn project_files() -> std::collections::BTreeMap<String, String> {
    let mut t = tree_digests(&example());
    t.remove("mlart.yaml");
    t
}

fn manifest_of(layout: &Path) -> Value {
    let index: Value = read_json_file(&layout.join("index.json"));
    read_json(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

/// An OCI layout made by hand (another tool's artifact): the config, the layers (media type,
/// bytes, annotations), the manifest with `artifactType` if given, tagged `v1`.
pub(crate) fn hand_layout(
    dir: &Path,
    config_mt: &str,
    config: Value,
    layers: &[(&str, Vec<u8>, Value)],
    at: Option<&str>,
) -> std::path::PathBuf {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (cd, cs) = put_blob(dir, &serde_json::to_vec(&config).unwrap());
    let ls: Vec<Value> = layers
        .iter()
        .map(|(mt, data, ann)| {
            let (d, s) = put_blob(dir, data);
            json!({"mediaType": mt, "digest": d, "size": s, "annotations": ann})
        })
        .collect();
    let mut m = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_mt, "digest": cd, "size": cs}, "layers": ls});
    if let Some(at) = at {
        m["artifactType"] = at.into();
    }
    let (md, ms) = put_blob(dir, &serde_json::to_vec(&m).unwrap());
    fs::write(
        dir.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})
        .to_string(),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The venv's Python if it has modelpack-client (else a skip; a failure under
/// MLART_REQUIRE_INTEROP=1).
pub(crate) fn modelpack_python(test: &str) -> Option<std::path::PathBuf> {
    let py = python()?;
    let has = Command::new(&py)
        .args(["-c", "import modelpack_client, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        missing(
            &format!(
                "{test}: modelpack-client is required (MLART_REQUIRE_INTEROP=1): run scripts/test"
            ),
            &format!("SKIP {test}: modelpack-client not installed"),
        );
        return None;
    }
    Some(py)
}

#[test]
fn modelpack_form_is_reproducible_and_follows_the_spec() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.oci");
    let b = t.path().join("b.oci");
    let fmt = [OsStr::new("--format"), OsStr::new("modelpack")];
    let ra = bundle_iris(
        crate::support::mlart().env("SOURCE_DATE_EPOCH", "1700000000"),
        &a,
        &fmt,
    );
    // another cwd, another umask, another thread count: the same bytes
    let rb = bundle_iris(
        crate::support::mlart()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("RAYON_NUM_THREADS", "1")
            .current_dir(t.path()),
        &b,
        &fmt,
    );
    assert_eq!(ra["manifest_digest"], rb["manifest_digest"]);
    assert_eq!(ra["form"], "modelpack");

    let m = manifest_of(&a);
    assert_eq!(
        m["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    let config = read_json(&a, m["config"]["digest"].as_str().unwrap());
    // one diff_id per layer; a raw layer's diff_id is its digest
    let diff_ids = config["modelfs"]["diffIds"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    let mut paths = Vec::new();
    for (l, d) in layers.iter().zip(diff_ids) {
        let mt = l["mediaType"].as_str().unwrap();
        assert!(
            mt.starts_with("application/vnd.cncf.model.") && mt.ends_with(".v1.raw"),
            "{mt}"
        );
        assert_eq!(&l["digest"], d);
        let path = l["annotations"]["org.cncf.model.filepath"]
            .as_str()
            .unwrap();
        let meta: Value = serde_json::from_str(
            l["annotations"]["org.cncf.model.file.metadata+json"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (meta["uid"].as_u64(), meta["gid"].as_u64()),
            (Some(0), Some(0)),
            "{path}"
        );
        assert_eq!(meta["mtime"], "2023-11-14T22:13:20Z");
        assert_eq!(meta["size"], l["size"]);
        assert_eq!(meta["typeflag"], 48);
        // the blob is the file
        if let Some(f) = project_files().get(path) {
            let blob = fs::read(blob_path(&a, l["digest"].as_str().unwrap())).unwrap();
            assert_eq!(sha256(&blob), format!("sha256:{f}"));
        }
        paths.push(path.to_string());
    }
    let want_type = |p: &str| {
        let l = layers
            .iter()
            .find(|l| l["annotations"]["org.cncf.model.filepath"] == p)
            .unwrap();
        l["mediaType"].as_str().unwrap().to_string()
    };
    assert_eq!(
        want_type("model/iris.onnx"),
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        want_type("samples/samples.json"),
        "application/vnd.cncf.model.dataset.v1.raw"
    );
    assert_eq!(
        want_type("docs/model_card.md"),
        "application/vnd.cncf.model.doc.v1.raw"
    );
    assert_eq!(
        want_type("train.py"),
        "application/vnd.cncf.model.code.v1.raw"
    );
    assert_eq!(
        want_type("mlart.json"),
        "application/vnd.cncf.model.doc.v1.raw"
    );
    // paths as in the project: no `models/` root
    let mut want: Vec<String> = project_files().into_keys().collect();
    want.push("mlart.json".into());
    want.sort();
    paths.sort();
    assert_eq!(paths, want);
    assert_eq!(config["descriptor"]["name"], "iris");
    assert_eq!(config["descriptor"]["version"], "1.0.0");
    assert_eq!(config["descriptor"]["createdAt"], "2023-11-14T22:13:20Z");
    assert_eq!(config["descriptor"]["licenses"], json!(["Apache-2.0"]));
    assert_eq!(config["config"]["format"], "onnx");

    // The config validates against the ModelPack schema (tests/fixtures/modelpack).
    let Some(py) = modelpack_python("modelpack_form_is_reproducible_and_follows_the_spec") else {
        return;
    };
    ok(Command::new(&py).args([
        "-c",
        "import json,sys,jsonschema; jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(json.load(open(sys.argv[2])))",
    ])
    .arg(repo().join("tests/fixtures/modelpack/config-schema.json"))
    .arg(blob_path(&a, m["config"]["digest"].as_str().unwrap())));

    // Every mlart verb reads it as it reads its own dialect: inspect (metrics), gate, diff.
    let i = json_ok(crate::support::mlart().arg("inspect").arg(&a));
    assert_eq!(i["metadata"]["form"], "modelpack");
    assert!(
        i["metadata"]["metrics"]["accuracy"].is_number(),
        "{}",
        i["metadata"]["metrics"]
    );
    let img = t.path().join("img.oci");
    bundle_iris(&mut crate::support::mlart(), &img, &[]);
    let d = json_ok(crate::support::mlart().arg("diff").arg(&img).arg(&a));
    assert_eq!(d["diff"]["files"], json!([]), "{d}");
    assert_eq!(d["diff"]["metrics"], json!([]), "{d}");
    assert_eq!(d["diff"]["unchanged_files"], 11, "{d}");
    let policy = t.path().join("gates.yaml");
    fs::write(
        &policy,
        "gates:\n  metrics:\n    - metric: accuracy\n      min: 0.85\n  schema: compatible\n",
    )
    .unwrap();
    let g = json_ok(
        crate::support::mlart()
            .arg("gate")
            .arg(&a)
            .arg("--baseline")
            .arg(&img)
            .arg("--policy")
            .arg(&policy),
    );
    assert_eq!(g["passed"], true, "{g}");
    fs::write(
        &policy,
        "gates:\n  metrics:\n    - metric: accuracy\n      min: 0.99\n",
    )
    .unwrap();
    fails(
        crate::support::mlart()
            .arg("gate")
            .arg(&a)
            .arg("--policy")
            .arg(&policy),
        1,
    );

    // signed afterwards (`mlart sign`): the OCI signature covers the ModelPack manifest
    let (key, public) = crate::support::keygen(t.path(), "k");
    sign(&a, &key);
    let v = json_ok(
        crate::support::mlart()
            .args(["verify", "--key"])
            .arg(&public)
            .arg(&a),
    );
    assert_eq!(v["ok"], true, "{v}");
    // validate runs the bundled ONNX model
    if let Some(lib) =
        crate::validate::ort_lib("modelpack_form_is_reproducible_and_follows_the_spec")
    {
        let v = json_ok(crate::validate::mlart_ort(&lib).arg("validate").arg(&a));
        assert_eq!(v["summary"]["passed"], 1, "{v}");
    }
}

/// Pushed to a registry, the ModelPack reference client pulls the project's files byte for
/// byte (it checks the config against the schema and every diff_id); signed, `verify`,
/// `pull --verify-key` and model_signing accept it.
#[test]
fn modelpack_client_pulls_what_mlart_pushed() {
    let Some(reg) = Registry::start("modelpack_client_pulls_what_mlart_pushed") else {
        return;
    };
    let Some(py) = modelpack_python("modelpack_client_pulls_what_mlart_pushed") else {
        return;
    };
    let env = Env::new();
    let (key, public) = env.keygen("release");
    let r = reg.reference("ml/iris-mp:1.0.0");
    let v = json_ok(
        env.cmd()
            .current_dir(example())
            .args(["bundle", "--format", "modelpack", "--sign"])
            .arg(&key)
            .args(["--push", &r]),
    );
    let digest = v["manifest_digest"]
        .as_str()
        .or(v["digest"].as_str())
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let out = env.path("mp-out");
    ok(Command::new(&py)
        .args(["-m", "modelpack_client", "--insecure", "pull", &r])
        .arg(&out));
    let mut got = tree_digests(&out);
    assert!(got.remove("mlart.json").is_some());
    assert!(got.remove("model.sig").is_some());
    assert_eq!(got, project_files());
    // model_signing accepts what the reference client wrote
    let ms = python().unwrap().parent().unwrap().join("model_signing");
    ok(&mut model_signing_verify(&ms, &out, &public));

    let v = json_ok(env.cmd().args(["verify", "--key"]).arg(&public).arg(&r));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["manifest_digest"], digest.as_str());
    let pulled = env.path("mlart-out");
    let p = env.pull(&r, &pulled, &["--verify-key", public.to_str().unwrap()]);
    assert_eq!(p["form"], "modelpack");
    assert_eq!(tree_digests(&pulled), tree_digests(&out));
    // --kind selects by the mlart kinds the ModelPack layers carry
    let only = env.path("only-model");
    env.pull(&r, &only, &["--kind", "model"]);
    assert_eq!(
        tree_digests(&only).into_keys().collect::<Vec<_>>(),
        ["model/iris.onnx"]
    );
    // a selection carries no model.sig: verify of the folder says why, and what to do
    let err = fails(
        env.cmd().args(["verify", "--key"]).arg(&public).arg(&only),
        1,
    );
    assert!(
        err.contains("--kind or --path writes no model.sig") && err.contains("mlart verify REF"),
        "{err}"
    );
}

/// What the reference client pushed (no mlart.json: the manifest is the listing) is read by
/// inspect, pull (raw and tar layers), and verify checks every layer against its digest.
#[test]
fn mlart_reads_what_modelpack_client_pushed() {
    let Some(reg) = Registry::start("mlart_reads_what_modelpack_client_pushed") else {
        return;
    };
    let Some(py) = modelpack_python("mlart_reads_what_modelpack_client_pushed") else {
        return;
    };
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::copy(example().join("model/iris.onnx"), src.join("iris.onnx")).unwrap();
    fs::write(src.join("docs/README.md"), "# iris\n").unwrap();
    fs::write(src.join("docs/LICENSE"), "Apache-2.0\n").unwrap();
    let cfg = src.join("config.json");
    fs::write(
        &cfg,
        json!({"descriptor": {"name": "iris-from-modelpack", "version": "3.1.4", "licenses": ["MIT"]},
               "config": {"format": "onnx"},
               "modelfs": {"type": "layers", "diffIds": []}})
        .to_string(),
    )
    .unwrap();
    let r = reg.reference("ml/foreign:3.1.4");
    ok(Command::new(&py)
        .current_dir(&src)
        .args([
            "-m",
            "modelpack_client",
            "--insecure",
            "push",
            &r,
            "--config",
            "config.json",
        ])
        .args([
            "--layer",
            "iris.onnx:application/vnd.cncf.model.weight.v1.raw",
        ])
        .args(["--layer", "docs:application/vnd.cncf.model.doc.v1.tar"]));

    let i = json_ok(env.cmd().args(["inspect", &r]));
    let m = &i["metadata"];
    assert_eq!(m["dialect"], "modelpack", "{m}");
    assert_eq!(m["name"], "iris-from-modelpack");
    assert_eq!(m["version"], "3.1.4");
    assert_eq!(m["license"], "MIT");
    let files: Vec<(&str, &str)> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(files, [("docs", "docs"), ("iris.onnx", "model")]);
    assert_eq!(m["models"][0]["format"], "onnx");
    // human output names the dialect's files too
    let text = String::from_utf8(ok(env.cmd().args(["inspect", &r]))).unwrap();
    assert!(text.contains("iris.onnx"), "{text}");

    let out = env.path("out");
    let p = env.pull(&r, &out, &[]);
    assert_eq!(
        p["files"],
        json!(["docs/LICENSE", "docs/README.md", "iris.onnx"]),
        "{p}"
    );
    let mut want = tree_digests(&src);
    want.remove("config.json");
    // (and the mlart.json the pull made of them: tests/it/foreign_pull.rs)
    let mut got = tree_digests(&out);
    assert!(got.remove("mlart.json").is_some());
    assert_eq!(got, want);
    // selection by kind and path works on the manifest's listing
    let only = env.path("only");
    env.pull(&r, &only, &["--kind", "model"]);
    assert_eq!(
        tree_digests(&only).into_keys().collect::<Vec<_>>(),
        ["iris.onnx", "mlart.json"]
    );

    // validate runs the ONNX model of another tool's artifact (skipped without ONNX Runtime)
    // and copy keeps it byte for byte
    let copy = env.path("copy.oci");
    json_ok(env.cmd().args(["copy", &r]).arg(&copy));
    assert_eq!(
        manifest_of(&copy)["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    let i2 = json_ok(env.cmd().arg("inspect").arg(&copy));
    assert_eq!(i2["manifest_digest"], i["manifest_digest"]);
}

/// A KitOps ModelKit made by hand from its published spec (Kitfile config, tar layers), and an
/// older ModelPack (`vnd.cnai.model.*`): inspect names the package and the kinds, pull unpacks
/// the tars and checks each layer's digest, a tampered layer is refused.
#[test]
fn kitops_and_cnai_artifacts_are_read() {
    let t = tempfile::tempdir().unwrap();
    let onnx = fs::read(example().join("model/iris.onnx")).unwrap();
    let kit = hand_layout(
        &t.path().join("kit.oci"),
        "application/vnd.kitops.modelkit.config.v1+json",
        json!({"manifestVersion": "1.0.0",
               "package": {"name": "iris-kit", "version": "1.0.0", "authors": ["ml team"], "license": "Apache-2.0"},
               "model": {"name": "iris", "path": "model/iris.onnx"},
               "datasets": [{"name": "samples", "path": "data"}]}),
        &[
            (
                "application/vnd.kitops.modelkit.model.v1.tar",
                tar_of(&[("model/iris.onnx", &onnx)]),
                json!({}),
            ),
            (
                "application/vnd.kitops.modelkit.dataset.v1.tar",
                tar_of(&[("data/a.csv", b"x,y\n1,2\n"), ("data/b.csv", b"x,y\n3,4\n")]),
                json!({}),
            ),
        ],
        None,
    );
    let i = json_ok(crate::support::mlart().arg("inspect").arg(&kit));
    assert_eq!(i["metadata"]["dialect"], "kitops");
    assert_eq!(i["metadata"]["name"], "iris-kit");
    assert_eq!(i["metadata"]["authors"], json!(["ml team"]));
    let kinds: Vec<&str> = field_strs(&i["metadata"]["files"], "kind");
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.contains(&"model") && kinds.contains(&"data"),
        "{kinds:?}"
    );
    let out = t.path().join("kit-out");
    pull_to(&kit, &out);
    let mut got = tree_digests(&out);
    assert!(got.remove("mlart.json").is_some());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["data/a.csv", "data/b.csv", "model/iris.onnx"]
    );
    assert_eq!(format!("sha256:{}", got["model/iris.onnx"]), sha256(&onnx));
    let only = t.path().join("kit-model");
    json_ok(
        crate::support::mlart()
            .arg("pull")
            .arg(&kit)
            .args(["--kind", "model", "-o"])
            .arg(&only),
    );
    assert_eq!(
        tree_digests(&only).into_keys().collect::<Vec<_>>(),
        ["mlart.json", "model/iris.onnx"]
    );

    // older ModelPack: one layer type, file path annotation of its own
    let cnai = hand_layout(
        &t.path().join("cnai.oci"),
        "application/vnd.cnai.model.config.v1+json",
        json!({"descriptor": {"name": "old", "version": "0.1"}, "modelfs": {"type": "layers", "diffIds": []}}),
        &[(
            "application/vnd.cnai.model.layer.v1.tar",
            tar_of(&[("weights/iris.onnx", &onnx)]),
            json!({"org.cnai.model.filepath": "weights"}),
        )],
        Some("application/vnd.cnai.model.manifest.v1+json"),
    );
    let i = json_ok(crate::support::mlart().arg("inspect").arg(&cnai));
    assert_eq!(i["metadata"]["dialect"], "cnai");
    assert_eq!(i["metadata"]["files"][0]["path"], "weights");
    let out = t.path().join("cnai-out");
    pull_to(&cnai, &out);
    assert_eq!(
        format!("sha256:{}", tree_digests(&out)["weights/iris.onnx"]),
        sha256(&onnx)
    );

    // converted to ModelPack without a project folder: the same files, another tool's
    // dialect no more (mlart.json written), the package's name kept
    let conv = t.path().join("kit-mp.oci");
    let c = json_ok(
        crate::support::mlart()
            .arg("copy")
            .arg(&kit)
            .arg(&conv)
            .args(["--format", "modelpack"]),
    );
    assert_eq!(c["form"], "modelpack");
    assert!(c["note"].as_str().unwrap().contains("sign"), "{c}");
    let i = json_ok(crate::support::mlart().arg("inspect").arg(&conv));
    assert!(i["metadata"]["dialect"].is_null());
    assert_eq!(i["metadata"]["name"], "iris-kit");
    let conv_out = t.path().join("kit-mp-out");
    pull_to(&conv, &conv_out);
    let mut got2 = tree_digests(&conv_out);
    assert!(got2.remove("mlart.json").is_some());
    assert_eq!(got2, got);

    // one byte of a layer changed: refused, nothing written
    let m = manifest_of(&kit);
    let layer = blob_path(&kit, m["layers"][1]["digest"].as_str().unwrap());
    let mut b = fs::read(&layer).unwrap();
    let n = b.len();
    b[n / 3] ^= 1;
    fs::write(&layer, b).unwrap();
    let bad = t.path().join("bad-out");
    let err = fails(
        crate::support::mlart()
            .arg("pull")
            .arg(&kit)
            .arg("-o")
            .arg(&bad),
        4,
    );
    assert!(err.contains("digest") || err.contains("sha256"), "{err}");
    assert!(!bad.exists());
}

/// A manifest of no dialect mlart knows is refused with the media types it has; a ModelPack
/// raw layer whose file path leaves the output is refused, nothing written.
#[test]
fn unknown_dialects_and_hostile_paths_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let mk = |name: &str, config_mt: &str, layer_mt: &str, ann: Value| {
        let layer = (layer_mt, b"payload".to_vec(), ann);
        hand_layout(&t.path().join(name), config_mt, json!({}), &[layer], None)
    };
    let odd = mk(
        "odd.oci",
        "application/vnd.example.thing.config+json",
        "application/vnd.example.thing.layer",
        json!({}),
    );
    let err = fails(crate::support::mlart().arg("inspect").arg(&odd), 2);
    assert!(
        err.contains("application/vnd.example.thing.config+json")
            && err.contains("application/vnd.example.thing.layer"),
        "{err}"
    );
    assert!(err.contains("ModelPack"), "{err}");

    for evil in ["../evil.bin", "/etc/evil.bin", "a/../../evil.bin"] {
        let dir = mk(
            "evil.oci",
            "application/vnd.cncf.model.config.v1+json",
            "application/vnd.cncf.model.weight.v1.raw",
            json!({"org.cncf.model.filepath": evil}),
        );
        let out = t.path().join("evil-out");
        let err = fails(
            crate::support::mlart()
                .arg("pull")
                .arg(&dir)
                .arg("-o")
                .arg(&out),
            2,
        );
        assert!(err.contains("evil.bin"), "{evil}: {err}");
        assert!(
            !out.exists() && !t.path().join("evil.bin").exists(),
            "{evil}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// `copy --format` re-expresses a bundle without its project: ModelPack -> image gives the
/// digest `bundle --format image` gives on the project, and back gives the ModelPack digest.
#[test]
fn copy_converts_between_forms_to_the_digest_a_bundle_gets() {
    let t = tempfile::tempdir().unwrap();
    let epoch = |c: &mut Command| {
        c.env("SOURCE_DATE_EPOCH", "1700000000");
    };
    let mut c = crate::support::mlart();
    epoch(&mut c);
    let mp = bundle_iris(
        &mut c,
        &t.path().join("mp.oci"),
        &[OsStr::new("--format"), OsStr::new("modelpack")],
    );
    let mut c = crate::support::mlart();
    epoch(&mut c);
    let img = bundle_iris(&mut c, &t.path().join("img.oci"), &[]);
    let mut c = crate::support::mlart();
    epoch(&mut c);
    let art = bundle_iris(
        &mut c,
        &t.path().join("art.oci"),
        &[OsStr::new("--format"), OsStr::new("artifact")],
    );
    let conv = |src: &str, dst: &str, form: &str| {
        json_ok(
            crate::support::mlart()
                .arg("copy")
                .arg(t.path().join(src))
                .arg(t.path().join(dst))
                .args(["--format", form]),
        )
    };
    assert_eq!(
        conv("mp.oci", "mp-img.oci", "image")["digest"],
        img["manifest_digest"]
    );
    assert_eq!(
        conv("mp-img.oci", "mp-img-mp.oci", "modelpack")["digest"],
        mp["manifest_digest"]
    );
    assert_eq!(
        conv("img.oci", "img-art.oci", "artifact")["digest"],
        art["manifest_digest"]
    );
    assert_eq!(
        conv("art.oci", "art-mp.oci", "modelpack")["digest"],
        mp["manifest_digest"]
    );
    // the source's signature does not carry over: verify says the copy is unsigned
    let env = Env::new();
    let (key, public) = env.keygen("k");
    let signed = t.path().join("signed.oci");
    bundle_iris(
        &mut crate::support::mlart(),
        &signed,
        &[OsStr::new("--sign"), key.as_os_str()],
    );
    let c = conv("signed.oci", "signed-mp.oci", "modelpack");
    assert!(
        c["note"].as_str().unwrap().contains("--sign KEY"),
        "the note says the source's model.sig was left behind: {c}"
    );
    let out = crate::support::run(
        crate::support::mlart()
            .args(["verify", "--key"])
            .arg(&public)
            .arg(t.path().join("signed-mp.oci")),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and `mlart sign` adds only the manifest's signature: pull --verify-key still wants
    // a model.sig, and its error says how to sign a conversion
    json_ok(
        crate::support::mlart()
            .arg("sign")
            .arg(t.path().join("signed-mp.oci"))
            .arg("--key")
            .arg(&key),
    );
    let err = fails(
        crate::support::mlart()
            .arg("pull")
            .arg(t.path().join("signed-mp.oci"))
            .arg("-o")
            .arg(t.path().join("signed-mp-out"))
            .arg("--verify-key")
            .arg(&public),
        1,
    );
    assert!(
        err.contains("no model.sig") && err.contains("--format FORM --sign KEY"),
        "{err}"
    );
    assert!(!t.path().join("signed-mp-out").exists());
    // converted with --sign: a new model.sig over the same files and a signature of the new
    // manifest; pull --verify-key and model_signing take it, and the bytes are a signed
    // bundle's of the project in that form
    let c = json_ok(
        crate::support::mlart()
            .arg("copy")
            .arg(&signed)
            .arg(t.path().join("resigned-mp.oci"))
            .args(["--format", "modelpack", "--sign"])
            .arg(&key),
    );
    assert!(
        c["note"].as_str().unwrap().starts_with("signed with"),
        "{c}"
    );
    let v = json_ok(
        crate::support::mlart()
            .args(["verify", "--key"])
            .arg(&public)
            .arg(t.path().join("resigned-mp.oci")),
    );
    assert_eq!(v["ok"], true, "{v}");
    let pulled = t.path().join("resigned-out");
    json_ok(
        crate::support::mlart()
            .arg("pull")
            .arg(t.path().join("resigned-mp.oci"))
            .arg("-o")
            .arg(&pulled)
            .arg("--verify-key")
            .arg(&public),
    );
    let mut got = tree_digests(&pulled);
    assert!(got.remove("mlart.json").is_some());
    assert!(got.remove("model.sig").is_some());
    assert_eq!(got, project_files());
    if let Some(py) = python() {
        let ms = py.parent().unwrap().join("model_signing");
        ok(&mut model_signing_verify(&ms, &pulled, &public));
    }
    // a wrong key path fails before anything is read or written
    let err = fails(
        crate::support::mlart()
            .arg("copy")
            .arg(&signed)
            .arg(t.path().join("never.oci"))
            .args(["--format", "modelpack", "--sign"])
            .arg(t.path().join("no-such.key")),
        2,
    );
    assert!(err.contains("no-such.key"), "{err}");
    assert!(!t.path().join("never.oci").exists());
    // --sign without --format: refused by the command line
    fails(
        crate::support::mlart()
            .arg("copy")
            .arg(&signed)
            .arg(t.path().join("never.oci"))
            .arg("--sign")
            .arg(&key),
        2,
    );
    // a source that is not there: an error naming it, nothing written
    let err = fails(
        crate::support::mlart()
            .arg("copy")
            .arg(t.path().join("nope.oci"))
            .arg(t.path().join("x.oci"))
            .args(["--format", "modelpack"]),
        2,
    );
    assert!(err.contains("nope.oci"), "{err}");
    assert!(!t.path().join("x.oci").exists());
}

/// Many small files of one kind in one directory share a tar layer (a manifest of thousands of
/// layers is one no registry takes); the ModelPack client still unpacks them; `form:` in the
/// spec chooses the form.
#[test]
fn many_small_files_share_a_tar_layer_and_form_comes_from_the_spec() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("proj");
    fs::create_dir_all(p.join("data/shards")).unwrap();
    fs::create_dir_all(p.join("model")).unwrap();
    fs::copy(example().join("model/iris.onnx"), p.join("model/iris.onnx")).unwrap();
    for i in 0..40 {
        fs::write(
            p.join(format!("data/shards/part-{i:03}.csv")),
            format!("x\n{i}\n"),
        )
        .unwrap();
    }
    fs::write(
        p.join("mlart.yaml"),
        "name: shards\nversion: 1.0.0\nform: modelpack\nmodel: [model/iris.onnx]\ndata: [data/]\n",
    )
    .unwrap();
    let out = t.path().join("shards.oci");
    let v = json_ok(
        crate::support::mlart()
            .current_dir(&p)
            .arg("bundle")
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(v["form"], "modelpack");
    let m = manifest_of(&out);
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{m}"); // the model, one tar of 40 shards, mlart.json
    let tar = layers
        .iter()
        .find(|l| l["mediaType"].as_str().unwrap().contains(".tar"))
        .unwrap();
    assert_eq!(
        tar["mediaType"],
        "application/vnd.cncf.model.dataset.v1.tar"
    );
    assert_eq!(tar["annotations"]["org.cncf.model.filepath"], "data");
    let pulled = t.path().join("pulled");
    pull_to(&out, &pulled);
    let mut got = tree_digests(&pulled);
    got.remove("mlart.json");
    let mut want = tree_digests(&p);
    want.remove("mlart.yaml");
    assert_eq!(got, want);
    // --format on the command line wins over the spec
    let img = t.path().join("img.oci");
    let v = json_ok(
        crate::support::mlart()
            .current_dir(&p)
            .args(["bundle", "--format", "image", "-o"])
            .arg(&img),
    );
    assert_eq!(v["form"], "image");
    // a form that does not exist: the spec error names the field
    fs::write(
        p.join("mlart.yaml"),
        "name: shards\nversion: 1.0.0\nform: zip\nmodel: [model/iris.onnx]\n",
    )
    .unwrap();
    let err = fails(
        crate::support::mlart()
            .current_dir(&p)
            .arg("bundle")
            .arg("-o")
            .arg(t.path().join("z.oci")),
        2,
    );
    assert!(err.contains("zip") && err.contains("modelpack"), "{err}");
}

/// Another tool's manifest with two layers for one path: other bytes are refused by every
/// verb (exit 4, the path and both layers named, nothing written, `--strict` or not); the
/// same bytes twice are one file.
#[test]
fn two_layers_for_one_path_are_refused_unless_the_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    let raw = "application/vnd.cncf.model.weight.v1.raw";
    let at = json!({"org.cncf.model.filepath": "a.bin"});
    let mk = |name: &str, second: &[u8]| {
        hand_layout(
            &t.path().join(name),
            "application/vnd.cncf.model.config.v1+json",
            json!({"descriptor": {"name": "dup", "version": "1"}}),
            &[
                (raw, b"one".to_vec(), at.clone()),
                (raw, second.to_vec(), at.clone()),
            ],
            Some("application/vnd.cncf.model.manifest.v1+json"),
        )
    };
    let evil = mk("evil.oci", b"two");
    for verb in [
        &["inspect"][..],
        &["verify"],
        &["pull", "--strict", "-o"],
        &["pull", "-o"],
    ] {
        let mut c = crate::support::mlart();
        c.arg(verb[0]).arg(&evil).args(&verb[1..]);
        if verb.contains(&"-o") {
            c.arg(t.path().join("out"));
        }
        let err = fails(&mut c, 4);
        assert!(
            err.contains("\"a.bin\"") && err.contains("two layers"),
            "{verb:?}: {err}"
        );
        assert!(!t.path().join("out").exists(), "{verb:?}");
    }
    let same = mk("same.oci", b"one");
    let out = t.path().join("same-out");
    pull_to(&same, &out);
    assert_eq!(fs::read(out.join("a.bin")).unwrap(), b"one");
}

/// Another tool's compressed tar layer lists no sizes: it may unpack to 100 times its size
/// (plus 64 MiB), `MLART_MAX_EXPANSION` times when set; past that the pull stops (exit 4),
/// nothing written.
#[test]
fn another_tools_compressed_layer_cannot_unpack_without_bound() {
    use std::io::Read as _;
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(100 << 20);
    h.set_mode(0o644);
    b.append_data(&mut h, "code/zeros.bin", std::io::repeat(0).take(100 << 20))
        .unwrap();
    let gz = b.into_inner().unwrap().finish().unwrap();
    assert!(gz.len() < 200 << 10, "{}", gz.len());
    let bomb = hand_layout(
        &t.path().join("bomb.oci"),
        "application/vnd.cncf.model.config.v1+json",
        json!({"descriptor": {"name": "bomb", "version": "1"}}),
        &[(
            "application/vnd.cncf.model.code.v1.tar+gzip",
            gz,
            json!({"org.cncf.model.filepath": "code"}),
        )],
        Some("application/vnd.cncf.model.manifest.v1+json"),
    );
    let out = t.path().join("out");
    let err = fails(
        crate::support::mlart()
            .arg("pull")
            .arg(&bomb)
            .arg("-o")
            .arg(&out),
        4,
    );
    assert!(
        err.contains("100 times its size") && err.contains("MLART_MAX_EXPANSION"),
        "{err}"
    );
    assert!(!out.exists());
    // trusted and that compressible: allowed when asked
    pull_to_with(&bomb, &out, &[("MLART_MAX_EXPANSION", "2000")]);
    assert_eq!(
        fs::metadata(out.join("code/zeros.bin")).unwrap().len(),
        100 << 20
    );
    let err = fails(
        crate::support::mlart()
            .env("MLART_MAX_EXPANSION", "lots")
            .arg("pull")
            .arg(&bomb)
            .arg("-o")
            .arg(t.path().join("x")),
        2,
    );
    assert!(err.contains("MLART_MAX_EXPANSION"), "{err}");
}

fn pull_to_with(src: &Path, out: &Path, env: &[(&str, &str)]) {
    let mut c = crate::support::mlart();
    for (k, v) in env {
        c.env(k, v);
    }
    json_ok(c.arg("pull").arg(src).arg("-o").arg(out));
}

/// A tar of `entries` (path, bytes), mode 0644: another tool's tar layer.
pub(crate) fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, *data).unwrap();
    }
    b.into_inner().unwrap()
}
