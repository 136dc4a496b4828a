//! `mlart pull` of another tool's artifact (no mlart.json inside: a ModelPack pushed by the
//! reference client `modelpack-client`, a KitOps ModelKit) writes an `mlart.json` of what it
//! wrote, marked as derived from the manifest, so that `mlart verify DIR` checks the folder and
//! `mlart serve DIR` serves its ONNX model; a file of the artifact named `mlart.json` is never
//! replaced by it.

use crate::modelpack::{hand_layout, modelpack_python, tar_of};
use crate::serve::{infer, serve_cmd, Server};
use crate::support::registry::{Env, Registry};
use crate::support::{
    example, fails, json_exit, json_ok, ok, pull_to, read_json_file, sha256, tree_digests,
};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::Command;

/// `(path, kind)` of an mlart.json's files.
fn listed(meta: &Value) -> Vec<(String, String)> {
    crate::compat::listed_field(meta, "kind")
}

/// `(path, format)` of an mlart.json's models.
fn models(meta: &Value) -> Vec<(String, Value)> {
    meta["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["path"].as_str().unwrap().to_string(), m["format"].clone()))
        .collect()
}

/// Flip the last byte of `p`.
fn tamper(p: &Path) {
    let mut b = fs::read(p).unwrap();
    let n = b.len() - 1;
    b[n] ^= 1;
    fs::write(p, b).unwrap();
}

/// A ModelPack pushed to a real registry by the reference client (a raw ONNX weight, whose
/// format the config gives, and a tar of docs), pulled by mlart: the folder gets an mlart.json
/// listing every file (those unpacked from the tar too) and the model, marked as derived from
/// the manifest pulled. `verify DIR` passes (no signature checked, and it says so; with
/// `--key` it is refused), fails once a byte changes or a file is added; `serve DIR` answers
/// an inference request.
#[test]
fn modelpack_client_artifact_pulled_verifies_and_serves() {
    let test = "modelpack_client_artifact_pulled_verifies_and_serves";
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let Some(py) = modelpack_python(test) else {
        return;
    };
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(src.join("docs")).unwrap();
    let onnx = fs::read(example().join("model/iris.onnx")).unwrap();
    fs::write(src.join("iris.onnx"), &onnx).unwrap();
    fs::write(src.join("docs/README.md"), "# iris\n").unwrap();
    fs::write(src.join("docs/LICENSE"), "Apache-2.0\n").unwrap();
    fs::write(
        src.join("config.json"),
        json!({"descriptor": {"name": "iris-foreign", "version": "2.0.1", "licenses": ["MIT"]},
               "config": {"format": "onnx"},
               "modelfs": {"type": "layers", "diffIds": []}})
        .to_string(),
    )
    .unwrap();
    let r = reg.reference("ml/foreign:2.0.1");
    ok(Command::new(&py)
        .current_dir(&src)
        .args(["-m", "modelpack_client", "--insecure", "push", &r])
        .args(["--config", "config.json"])
        .args([
            "--layer",
            "iris.onnx:application/vnd.cncf.model.weight.v1.raw",
        ])
        .args(["--layer", "docs:application/vnd.cncf.model.doc.v1.tar"]));

    let out = env.path("out");
    let p = env.pull(&r, &out, &[]);
    assert_eq!(p["dialect"], "modelpack", "{p}");
    let digest = p["digest"].as_str().unwrap();
    assert_eq!(p["derived"]["manifest"], digest, "{p}");

    // the mlart.json: every file written, the model with its format, marked as derived
    let meta: Value = read_json_file(&out.join("mlart.json"));
    assert_eq!(
        listed(&meta),
        [
            ("docs/LICENSE".to_string(), "docs".to_string()),
            ("docs/README.md".into(), "docs".into()),
            ("iris.onnx".into(), "model".into())
        ]
    );
    assert_eq!(models(&meta), [("iris.onnx".to_string(), json!("onnx"))]);
    assert_eq!(meta["models"][0]["sha256"], sha256(&onnx));
    let got = tree_digests(&out);
    for f in meta["files"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        assert_eq!(f["sha256"], format!("sha256:{}", got[path]), "{path}");
        assert!(f["layer"].as_str().unwrap().starts_with("sha256:"), "{f}");
    }
    assert_eq!(
        (meta["name"].as_str(), meta["version"].as_str()),
        (Some("iris-foreign"), Some("2.0.1"))
    );
    assert_eq!(meta["dialect"], "modelpack");
    assert_eq!(
        meta["derived"],
        json!({"by": "mlart pull", "dialect": "modelpack", "manifest": digest, "reference": r})
    );
    assert!(meta.get("signature").is_none() && !out.join("model.sig").exists());
    // mlart reads it as its own (inspect of the folder is not a verb; verify and serve are)

    // verify DIR: every file against that list, no signature checked, and said so
    let v = json_ok(env.cmd().arg("verify").arg(&out));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["signatures_checked"], false);
    assert_eq!(v["checked_against"], "mlart.json");
    assert_eq!(v["derived"]["manifest"], digest);
    let text = String::from_utf8(ok(env.cmd().arg("verify").arg(&out))).unwrap();
    assert!(
        text.contains("NO SIGNATURE CHECKED") && text.contains(digest),
        "{text}"
    );
    // with a key: nothing signs these files, so the folder is refused (exit 1)
    let (_, public) = env.keygen("k");
    let err = fails(
        env.cmd().arg("verify").arg(&out).arg("--key").arg(&public),
        1,
    );
    assert!(
        err.contains("no model.sig") && err.contains("mlart verify"),
        "{err}"
    );

    // serve DIR: the ONNX model of the foreign artifact answers
    if let Some(lib) = crate::validate::ort_lib(test) {
        let srv = Server::start(serve_cmd(&lib, &out, &[])).unwrap();
        assert_eq!(srv.started["models"][0]["name"], "iris", "{}", srv.started);
        let (s, v) = infer(srv.port, &[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["model_name"], "iris", "{v}");
        assert_eq!(v["outputs"][0]["name"], "label", "{v}");
        assert_eq!(v["outputs"][0]["data"], json!([0, 2]), "{v}");
        assert_eq!(srv.stop(), 0);
    }

    // a byte of a file unpacked from the tar layer changed: verify fails, naming it
    let readme = out.join("docs/README.md");
    let before = fs::read(&readme).unwrap();
    tamper(&readme);
    let v = json_exit(env.cmd().arg("verify").arg(&out), 1);
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("docs/README.md changed"),
        "{v}"
    );
    let err = fails(env.cmd().arg("verify").arg(&out), 1);
    assert!(err.contains("docs/README.md changed"), "{err}");
    fs::write(&readme, before).unwrap();
    json_ok(env.cmd().arg("verify").arg(&out));
    // a file added: fails too
    fs::write(out.join("docs/extra.md"), "x").unwrap();
    let err = fails(env.cmd().arg("verify").arg(&out), 1);
    assert!(
        err.contains("docs/extra.md is not in mlart.json (added)"),
        "{err}"
    );
    fs::remove_file(out.join("docs/extra.md")).unwrap();
    // the model changed: verify fails, and serve refuses it (an integrity error)
    tamper(&out.join("iris.onnx"));
    let err = fails(env.cmd().arg("verify").arg(&out), 1);
    assert!(err.contains("iris.onnx changed"), "{err}");
    if let Some(lib) = crate::validate::ort_lib(test) {
        let (code, err) = Server::start(serve_cmd(&lib, &out, &[])).err().unwrap();
        assert_eq!(code, 4, "{err}");
        assert!(err.contains("does not match its sha256"), "{err}");
    }
}

/// A KitOps ModelKit (tar layers only): the mlart.json lists every file unpacked, the model
/// its name says is ONNX under `models` (not the README beside it in the model tar); a pull
/// of `--kind model` lists what it wrote and verifies too.
#[test]
fn kitops_tar_layers_are_listed_file_by_file() {
    let t = tempfile::tempdir().unwrap();
    let onnx = fs::read(example().join("model/iris.onnx")).unwrap();
    let kit = hand_layout(
        &t.path().join("kit.oci"),
        "application/vnd.kitops.modelkit.config.v1+json",
        json!({"manifestVersion": "1.0.0",
               "package": {"name": "iris-kit", "version": "1.0.0"},
               "model": {"name": "iris", "path": "model"}}),
        &[
            (
                "application/vnd.kitops.modelkit.model.v1.tar",
                tar_of(&[("model/README.md", b"about\n"), ("model/iris.onnx", &onnx)]),
                json!({}),
            ),
            (
                "application/vnd.kitops.modelkit.dataset.v1.tar",
                tar_of(&[("data/a.csv", b"x,y\n1,2\n")]),
                json!({}),
            ),
        ],
        None,
    );
    let out = t.path().join("out");
    let p = pull_to(&kit, &out);
    assert_eq!(p["derived"]["dialect"], "kitops", "{p}");
    let meta: Value = read_json_file(&out.join("mlart.json"));
    assert_eq!(
        listed(&meta),
        [
            ("data/a.csv".to_string(), "data".to_string()),
            ("model/README.md".into(), "model".into()),
            ("model/iris.onnx".into(), "model".into())
        ]
    );
    assert_eq!(
        models(&meta),
        [("model/iris.onnx".to_string(), json!("onnx"))]
    );
    assert_eq!(meta["form"], "artifact");
    json_ok(crate::support::mlart().arg("verify").arg(&out));
    tamper(&out.join("data/a.csv"));
    let err = fails(crate::support::mlart().arg("verify").arg(&out), 1);
    assert!(err.contains("data/a.csv changed"), "{err}");

    let only = t.path().join("only");
    json_ok(
        crate::support::mlart()
            .arg("pull")
            .arg(&kit)
            .args(["--kind", "model", "-o"])
            .arg(&only),
    );
    let meta: Value = read_json_file(&only.join("mlart.json"));
    assert_eq!(
        listed(&meta)
            .into_iter()
            .map(|(p, _)| p)
            .collect::<Vec<_>>(),
        ["model/README.md", "model/iris.onnx"]
    );
    json_ok(crate::support::mlart().arg("verify").arg(&only));
}

/// Hostile: another tool's artifact with a file named `mlart.json` of its own (a raw layer, or
/// an entry of a tar layer) that claims other files. The pull writes that file as it is, never
/// one of its own over it, and says so; `verify DIR` does not take it for one mlart made.
#[test]
fn a_foreign_file_named_mlart_json_is_never_replaced() {
    let t = tempfile::tempdir().unwrap();
    let onnx = fs::read(example().join("model/iris.onnx")).unwrap();
    // what it claims: another model, and no such file
    let theirs = serde_json::to_vec(&json!({
        "format_version": 1, "name": "forged", "version": "9", "form": "image",
        "files": [{"path": "evil.onnx", "kind": "model", "size": 1, "layer": sha256(b"x"), "sha256": sha256(b"x")}],
        "models": [{"path": "evil.onnx", "format": "onnx", "size": 1, "sha256": sha256(b"x")}],
    }))
    .unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(theirs.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "mlart.json", &theirs[..]).unwrap();
    let tar = tar.into_inner().unwrap();
    let weight = (
        "application/vnd.cncf.model.weight.v1.raw",
        onnx.clone(),
        json!({"org.cncf.model.filepath": "iris.onnx"}),
    );
    for (name, layer) in [
        (
            "raw",
            (
                "application/vnd.cncf.model.doc.v1.raw",
                theirs.clone(),
                json!({"org.cncf.model.filepath": "mlart.json"}),
            ),
        ),
        (
            "tar",
            (
                "application/vnd.cncf.model.doc.v1.tar",
                tar.clone(),
                json!({"org.cncf.model.filepath": "notes"}),
            ),
        ),
    ] {
        let layout = hand_layout(
            &t.path().join(format!("{name}.oci")),
            "application/vnd.cncf.model.config.v1+json",
            json!({"descriptor": {"name": "collide", "version": "1"}}),
            &[weight.clone(), (layer.0, layer.1, layer.2)],
            Some("application/vnd.cncf.model.manifest.v1+json"),
        );
        let out = t.path().join(format!("{name}-out"));
        let p = pull_to(&layout, &out);
        assert!(p.get("derived").is_none(), "{name}: {p}");
        let warned = p["warnings"].as_array().unwrap();
        assert!(
            warned.iter().any(|w| {
                let w = w.as_str().unwrap();
                w.contains("mlart.json is one of the artifact's files")
                    && w.contains("never overwritten")
            }),
            "{name}: {p}"
        );
        // their bytes, as they are
        assert_eq!(fs::read(out.join("mlart.json")).unwrap(), theirs, "{name}");
        assert_eq!(fs::read(out.join("iris.onnx")).unwrap(), onnx, "{name}");
        // the human output says it too
        let again = t.path().join(format!("{name}-again"));
        let o = crate::support::run(
            crate::support::mlart()
                .arg("pull")
                .arg(&layout)
                .arg("-o")
                .arg(&again),
        );
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("never overwritten"), "{name}: {err}");
        // not an mlart.json mlart made (no `derived`), and no model.sig: nothing to check
        // the files against, and verify says so (exit 1), never passes on their list
        let err = fails(crate::support::mlart().arg("verify").arg(&out), 1);
        assert!(err.contains("no model.sig"), "{name}: {err}");
    }
}
