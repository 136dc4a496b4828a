//! Bundles written by release 0.1 (tests/fixtures/release-0.1, never regenerated) still work
//! with today's binary: inspect, verify, push + pull --verify-key and gate. They stand for the
//! bundles users already have in registries, so their digests are hard-coded here.

use crate::support::fixtures::read_blob;
use crate::support::registry::{Env, Registry};
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// One fixture bundle and what release 0.1 recorded when it wrote it.
struct Fixture {
    /// The folder under tests/fixtures/release-0.1, and the `--format` it was bundled with.
    form: &'static str,
    /// The manifest digest `bundle` printed (tag 1.0.0).
    manifest: &'static str,
    /// The OCI signature manifest stored beside it in the layout.
    oci_signature: &'static str,
    /// The blob that holds mlart.json: the config (artifact) or the metadata layer (image).
    metadata_blob: &'static str,
    /// sha256 of the model.sig file.
    model_sig: &'static str,
}

const IMAGE: Fixture = Fixture {
    form: "image",
    manifest: "sha256:3979b6442aea0e17d4676e56e69c4319b6ec38f17dbb912c4a5f0e3450e41a0a",
    oci_signature: "sha256:ea99d647da16815be7106f2f0e054c4f5d83f785c6e06864329936aadeb82a7b",
    metadata_blob: "sha256:c641975cd6d1533b8cd5ecb1b1f57207b36e898217d6cd328d5b30c2bd90122c",
    model_sig: "sha256:d7c54639b9b99c603d89e6c10842d5aefe90a2282526f1ee8acb9e7eb419dcdf",
};

const ARTIFACT: Fixture = Fixture {
    form: "artifact",
    manifest: "sha256:c17d63d90e1c1dbb1132c13bc17746035549b96795f7d37af9f3f9d38323a15f",
    oci_signature: "sha256:15bd4501497b4d0166565d0d3c0453af6ac7d3181224aa3cff7a9df8ade55881",
    metadata_blob: "sha256:0cbc95179d06018a80f361af626e91e2e376b94ec1870f71d17d0d44040a3480",
    model_sig: "sha256:377ac96b7cf8851db64edece324eb449bbea7b4c6aebd0e60c181bdfd4656b2e",
};

/// The project files of the iris example as release 0.1 bundled them.
const FILES: &[&str] = &[
    "README.md",
    "config/params.yaml",
    "docs/model_card.md",
    "eval/confusion_matrix.csv",
    "eval/metrics.json",
    "logs/train.log",
    "model/iris.onnx",
    "requirements.txt",
    "samples/samples.json",
    "schema/features.yaml",
    "train.py",
];

fn fixtures_dir() -> PathBuf {
    repo().join("tests/fixtures/release-0.1")
}

fn public_key() -> PathBuf {
    fixtures_dir().join("key.pub")
}

impl Fixture {
    fn dir(&self) -> PathBuf {
        fixtures_dir().join(self.form)
    }

    /// A copy of the layout in `t`, so no verb can ever write into the committed fixture.
    fn copy(&self, t: &Path) -> PathBuf {
        let d = t.join(format!("{}.oci", self.form));
        copy_tree(&self.dir(), &d, false);
        d
    }

    /// mlart.json as release 0.1 wrote it, read from the fixture's bytes (not by mlart).
    fn metadata(&self) -> Value {
        let blob = read_blob(&self.dir(), self.metadata_blob);
        if self.form == "artifact" {
            return serde_json::from_slice(&blob).unwrap();
        }
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == "models/mlart.json" {
                let mut s = Vec::new();
                e.read_to_end(&mut s).unwrap();
                return serde_json::from_slice(&s).unwrap();
            }
        }
        panic!(
            "no models/mlart.json in the metadata layer {}",
            self.metadata_blob
        );
    }
}

/// The files mlart.json lists: path -> sha256.
fn listed_files(meta: &Value) -> Vec<(String, String)> {
    listed_field(meta, "sha256")
}

/// The files mlart.json lists: path -> `field`.
pub(crate) fn listed_field(meta: &Value, field: &str) -> Vec<(String, String)> {
    meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f[field].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Git must keep the fixtures byte-exact (see .gitattributes): every blob is named by its
/// own digest, and the digests recorded here are the ones in the layouts.
#[test]
fn compat_release_0_1_fixtures_are_byte_exact() {
    for f in [&IMAGE, &ARTIFACT] {
        let blobs = f.dir().join("blobs/sha256");
        let mut n = 0;
        for e in fs::read_dir(&blobs).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                sha256(&fs::read(&p).unwrap()),
                format!("sha256:{name}"),
                "{}: blob {name} is not byte-exact (git attributes?)",
                f.form
            );
            n += 1;
        }
        assert!(n > 0, "{}: no blobs", f.form);
        let index: Value = read_json_file(&f.dir().join("index.json"));
        let listed: Vec<&str> = field_strs(&index["manifests"], "digest");
        assert_eq!(listed, [f.manifest, f.oci_signature], "{}", f.form);
    }
}

fn inspect(f: &Fixture) {
    let t = tempfile::tempdir().unwrap();
    let layout = f.copy(t.path());
    let v = json_ok(mlart().arg("inspect").arg(&layout));
    assert_eq!(v["manifest_digest"], f.manifest, "{v}");
    assert_eq!(v["tag"], "1.0.0");
    let meta = &v["metadata"];
    assert_eq!(meta["name"], "iris");
    assert_eq!(meta["version"], "1.0.0");
    assert_eq!(meta["form"], f.form);
    assert_eq!(meta["created"], "2023-11-14T22:13:20Z");
    let paths: Vec<&str> = field_strs(&meta["files"], "path");
    assert_eq!(paths, FILES);
    assert_eq!(meta["metrics"]["accuracy"], 0.911111);
    assert_eq!(meta["metrics"]["log_loss"], 0.209595);
    assert_eq!(meta["metrics"]["f1_macro"], 0.910714);
    // what inspect reports is what release 0.1 wrote into mlart.json
    assert_eq!(listed_files(meta), listed_files(&f.metadata()));
}

#[test]
fn compat_release_0_1_image_inspect() {
    inspect(&IMAGE);
}

#[test]
fn compat_release_0_1_artifact_inspect() {
    inspect(&ARTIFACT);
}

fn verify(f: &Fixture) {
    let t = tempfile::tempdir().unwrap();
    let layout = f.copy(t.path());
    let v = json_ok(&mut verify_cmd(&layout, &[&public_key()]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["manifest_digest"], f.manifest);
    assert_eq!(v["oci_signatures"][0]["digest"], f.oci_signature);
    assert_eq!(v["oci_signatures"][0]["valid"], true);
    assert_eq!(v["model_signature"]["valid"], true);
    assert_eq!(v["model_signature"]["digest"], f.model_sig);
    assert_eq!(v["files_verified"], FILES.len());
    // a key that did not sign it
    let (_, other) = keygen(t.path(), "other");
    let out = run(&mut verify_cmd(&layout, &[&other]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}: verify with a wrong key passed: {}",
        f.form,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("signature"), "{}: {err}", f.form);
}

#[test]
fn compat_release_0_1_image_verify() {
    verify(&IMAGE);
}

#[test]
fn compat_release_0_1_artifact_verify() {
    verify(&ARTIFACT);
}

fn push_pull(f: &Fixture, test: &str) {
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let env = Env::new();
    let layout = f.copy(env.tmp.path());
    let reference = reg.reference(&format!("compat/iris-{}:1.0.0", f.form));
    // push keeps the manifest byte for byte, and takes the signature along
    let p = env.push(&layout, &reference);
    assert_eq!(p["digest"], f.manifest, "{p}");
    assert_eq!(p["signatures"], 1, "{p}");
    let i = json_ok(env.cmd().arg("inspect").arg(&reference));
    assert_eq!(i["manifest_digest"], f.manifest, "{i}");
    // pull --verify-key: the files mlart.json lists, with the sha256 it lists
    let out = env.path("pulled");
    let r = json_ok(
        env.cmd()
            .arg("pull")
            .arg(&reference)
            .arg("-o")
            .arg(&out)
            .arg("--verify-key")
            .arg(public_key()),
    );
    assert_eq!(r["digest"], f.manifest, "{r}");
    let meta = f.metadata();
    let listed = listed_files(&meta);
    assert_eq!(listed.len(), FILES.len());
    for (path, digest) in &listed {
        let got = sha256(&fs::read(out.join(path)).unwrap());
        assert_eq!(&got, digest, "{}: pulled {path}", f.form);
    }
    assert_eq!(
        sha256(&fs::read(out.join("model.sig")).unwrap()),
        f.model_sig,
        "{}: model.sig",
        f.form
    );
    // nothing else (the image form writes its mlart.json too)
    let mut want: BTreeSet<String> = listed.into_iter().map(|(p, _)| p).collect();
    want.insert("model.sig".into());
    if f.form == "image" {
        want.insert("mlart.json".into());
        let pulled: Value = read_json_file(&out.join("mlart.json"));
        assert_eq!(pulled, meta);
    }
    let got: BTreeSet<String> = tree_digests(&out).into_keys().collect();
    assert_eq!(got, want, "{}", f.form);
}

#[test]
fn compat_release_0_1_image_push_pull_verify_key() {
    push_pull(&IMAGE, "compat_release_0_1_image_push_pull_verify_key");
}

#[test]
fn compat_release_0_1_artifact_push_pull_verify_key() {
    push_pull(
        &ARTIFACT,
        "compat_release_0_1_artifact_push_pull_verify_key",
    );
}

fn gate(f: &Fixture) {
    let t = tempfile::tempdir().unwrap();
    let layout = f.copy(t.path());
    let pass = t.path().join("pass.yaml");
    fs::write(
        &pass,
        "gates:
  metrics:
    - metric: accuracy
      min: 0.9
    - metric: log_loss
      max: 0.25
      greater_is_better: false
",
    )
    .unwrap();
    let r = json_ok(mlart().arg("gate").arg(&layout).arg("--policy").arg(&pass));
    assert_eq!(r["passed"], true, "{}: {r}", f.form);
    let fail = t.path().join("fail.yaml");
    fs::write(
        &fail,
        "gates:
  metrics:
    - metric: accuracy
      min: 0.95
",
    )
    .unwrap();
    let out = run(mlart()
        .args(["--json", "gate"])
        .arg(&layout)
        .arg("--policy")
        .arg(&fail));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: {}",
        f.form,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["passed"], false, "{r}");
    let acc = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "metric:accuracy")
        .unwrap();
    assert_eq!(acc["passed"], false, "{acc}");
}

#[test]
fn compat_release_0_1_image_gate() {
    gate(&IMAGE);
}

#[test]
fn compat_release_0_1_artifact_gate() {
    gate(&ARTIFACT);
}
