//! Attestations: `bundle --sign --attest`, `mlart attest`, `inspect --attestations`,
//! `verify --require`, carried by push/copy (pull and archives: `attest_carry.rs`); checked by third parties (securesystemslib,
//! in-toto-attestation, cyclonedx-python-lib) and against hostile edits.

use crate::support::fixtures::{
    bundle_cmd, bundle_iris, iris_spec, put_blob, read_blob, read_json,
};
use crate::support::registry::{Env, Registry};
use crate::support::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

pub(crate) const PROVENANCE_AT: &str = "application/vnd.mlart.attestation.slsa-provenance.v1+json";
pub(crate) const SBOM_AT: &str = "application/vnd.mlart.attestation.cyclonedx-bom.v1.6+json";
const BUNDLE_MT: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

pub(crate) fn index(layout: &Path) -> Value {
    read_json_file(&layout.join("index.json"))
}

/// The index.json entry of the attestation of artifactType `at`.
pub(crate) fn entry(layout: &Path, at: &str) -> Value {
    index(layout)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == at)
        .unwrap_or_else(|| panic!("no {at} in {}", layout.display()))
        .clone()
}

/// The envelope (Sigstore bundle) of the attestation of artifactType `at`: its digest.
pub(crate) fn envelope_digest(layout: &Path, at: &str) -> String {
    let m = read_json(layout, entry(layout, at)["digest"].as_str().unwrap());
    assert_eq!(m["layers"][0]["mediaType"], BUNDLE_MT);
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

pub(crate) fn verify_require(target: &Path, key: &Path) -> std::process::Command {
    let mut c = verify_cmd(target, &[key]);
    c.args(["--require", "provenance,sbom"]);
    c
}

pub(crate) fn attested(dir: &Path, key: &Path, out: &str) -> (PathBuf, Value) {
    let p = dir.join(out);
    let v = bundle_iris(
        &mut mlart(),
        &p,
        &["--sign".as_ref(), key.as_os_str(), "--attest".as_ref()],
    );
    (p, v)
}

#[test]
fn bundle_attest_is_deterministic_and_leaves_the_bundle_alone() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (a, va) = attested(t.path(), &key, "a.oci");
    let (b, _) = attested(t.path(), &key, "b.oci");
    let signed = bundle_iris(
        &mut mlart(),
        &t.path().join("s.oci"),
        &["--sign".as_ref(), key.as_os_str()],
    );
    assert_eq!(
        va["manifest_digest"], signed["manifest_digest"],
        "attestations are referrers: the bundle is the same as without them"
    );
    for at in [PROVENANCE_AT, SBOM_AT] {
        assert_eq!(
            entry(&a, at)["digest"],
            entry(&b, at)["digest"],
            "{at}: same bytes twice"
        );
        let m = read_json(&a, entry(&a, at)["digest"].as_str().unwrap());
        assert_eq!(m["subject"]["digest"], va["manifest_digest"]);
        assert_eq!(m["artifactType"], at);
    }
    // one bundle still (inspect needs no --tag), verify --require passes
    let v = json_ok(&mut verify_require(&a, &public));
    assert_eq!(v["ok"], true, "{v}");
    let kinds: Vec<&str> = v["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["verified"] == true)
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["provenance", "sbom"]);
    let i = json_ok(mlart().arg("inspect").arg(&a).arg("--attestations"));
    let atts = i["attestations"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[0]["summary"]["builder"], "https://mlart.dev/cli");
    assert!(atts[1]["summary"]["components"]["file"].as_u64().unwrap() >= 10);
    let human =
        String::from_utf8(ok(mlart().arg("inspect").arg(&a).arg("--attestations"))).unwrap();
    assert!(
        human.contains("ATTESTATIONS") && human.contains("provenance sha256:"),
        "{human}"
    );
    // an archive holds them too
    let (tar, _) = attested(t.path(), &key, "c.tar");
    assert_eq!(json_ok(&mut verify_require(&tar, &public))["ok"], true);
}

/// `tests/it/attest_check.py ENVELOPE PUBLIC KIND` with the test venv's Python `py`: whether
/// securesystemslib, in-toto-attestation, the SLSA protobuf and cyclonedx-python-lib accept it.
pub(crate) fn third_parties_accept(py: &Path, envelope: &Path, public: &Path, kind: &str) -> bool {
    let o = std::process::Command::new(py)
        .arg(repo().join("tests/it/attest_check.py"))
        .arg(envelope)
        .arg(public)
        .arg(kind)
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!("attest_check.py: {}", String::from_utf8_lossy(&o.stderr));
    }
    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok"
}

#[test]
fn third_party_tools_accept_the_documents_and_refuse_a_tampered_one() {
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (_, other) = keygen(t.path(), "other");
    let (a, _) = attested(t.path(), &key, "a.oci");
    for (at, kind) in [(PROVENANCE_AT, "provenance"), (SBOM_AT, "sbom")] {
        let env_path = t.path().join(format!("{kind}.json"));
        fs::write(&env_path, read_blob(&a, &envelope_digest(&a, at))).unwrap();
        // the keyid names the key (the script computes it from the public key alone)
        assert!(
            third_parties_accept(&py, &env_path, &public, kind),
            "{kind}"
        );
        // another key: securesystemslib refuses
        assert!(
            !third_parties_accept(&py, &env_path, &other, kind),
            "{kind}: verified with another key"
        );
        // one byte of the signed payload changed, or the keyid: refused
        let original: Value = read_json_file(&env_path);
        let mut payload = base64_decode(original["dsseEnvelope"]["payload"].as_str().unwrap());
        let i = payload.iter().position(|&c| c == b'1').unwrap();
        payload[i] = b'2';
        let mut changed_payload = original.clone();
        changed_payload["dsseEnvelope"]["payload"] = base64_encode(&payload).into();
        let mut changed_keyid = original.clone();
        changed_keyid["dsseEnvelope"]["signatures"][0]["keyid"] = "ab".repeat(32).into();
        for (what, b) in [("payload", changed_payload), ("keyid", changed_keyid)] {
            let bad = t.path().join(format!("{kind}-{what}.json"));
            fs::write(&bad, serde_json::to_vec(&b).unwrap()).unwrap();
            assert!(
                !third_parties_accept(&py, &bad, &public, kind),
                "{kind}: a changed {what} verified"
            );
        }
    }
}

/// Replace the attestation of `at` in `layout` by a manifest edited with `edit` (blobs and
/// index entry rewritten as a hostile party would).
pub(crate) fn swap_attestation(layout: &Path, at: &str, edit: &dyn Fn(&mut Value)) {
    let old = entry(layout, at);
    let mut m = read_json(layout, old["digest"].as_str().unwrap());
    edit(&mut m);
    let (d, size) = put_blob(layout, &serde_json::to_vec(&m).unwrap());
    let mut idx = index(layout);
    for e in idx["manifests"].as_array_mut().unwrap() {
        if e["digest"] == old["digest"] {
            e["digest"] = d.clone().into();
            e["size"] = size.into();
        }
    }
    fs::write(layout.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
}

/// Two bundles attested with `key` in `dir`: A (`a.oci`, image form) and B (`b.oci`,
/// artifact form), with A's provenance referrer and its blobs copied into B's layout (not
/// listed in its index). Returns (A, B, B's manifest digest).
pub(crate) fn two_attested(dir: &Path, key: &Path) -> (PathBuf, PathBuf, Value) {
    let (a, _) = attested(dir, key, "a.oci");
    let b = dir.join("b.oci");
    let vb = bundle_iris(
        &mut mlart(),
        &b,
        &[
            "--sign".as_ref(),
            key.as_os_str(),
            "--format".as_ref(),
            "artifact".as_ref(),
            "--attest".as_ref(),
        ],
    );
    let a_prov = entry(&a, PROVENANCE_AT);
    let a_manifest = read_json(&a, a_prov["digest"].as_str().unwrap());
    for d in [
        &a_manifest["config"]["digest"],
        &a_manifest["layers"][0]["digest"],
        &a_prov["digest"],
    ] {
        put_blob(&b, &read_blob(&a, d.as_str().unwrap()));
    }
    (a, b, vb["manifest_digest"].clone())
}

/// B's provenance referrer made to hold A's envelope, its subject still B (a hostile edit:
/// the statement signed is about A).
pub(crate) fn repoint_provenance(a: &Path, b: &Path, b_subject: &Value) {
    let a_manifest = read_json(a, entry(a, PROVENANCE_AT)["digest"].as_str().unwrap());
    swap_attestation(b, PROVENANCE_AT, &|m| {
        m["config"] = a_manifest["config"].clone();
        m["layers"] = a_manifest["layers"].clone();
        m["subject"]["digest"] = b_subject.clone();
    });
}

#[test]
fn verify_require_refuses_missing_foreign_wrong_subject_and_tampered() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (other_key, _) = keygen(t.path(), "other");
    // usage errors: --attest without --sign, an unknown kind
    let err = fails(
        bundle_cmd(&mut mlart(), &iris_spec())
            .arg("-o")
            .arg(t.path().join("x.oci"))
            .arg("--attest"),
        2,
    );
    assert!(err.contains("--attest needs --sign KEY"), "{err}");
    assert!(!t.path().join("x.oci").exists());
    // missing: signed but not attested
    let signed = t.path().join("s.oci");
    bundle_iris(&mut mlart(), &signed, &["--sign".as_ref(), key.as_os_str()]);
    let err = fails(
        verify_cmd(&signed, &[&public]).args(["--require", "provenance,bogus"]),
        2,
    );
    assert!(
        err.contains("\"bogus\"") && err.contains("provenance` and `sbom`"),
        "{err}"
    );
    let err = fails(&mut verify_require(&signed, &public), 1);
    assert!(
        err.contains("no provenance attestation") && err.contains("mlart attest"),
        "{err}"
    );
    assert!(err.contains("no sbom attestation"), "{err}");
    // signed by another key: `mlart attest` with it; the bundle's own signature still holds
    let v = json_ok(
        mlart()
            .arg("attest")
            .arg(&signed)
            .arg("--key")
            .arg(&other_key),
    );
    assert_eq!(v["added"], 2);
    let err = fails(&mut verify_require(&signed, &public), 1);
    assert!(
        err.contains("no valid provenance attestation") && err.contains("another key"),
        "{err}"
    );
    // `mlart attest` with the right key: passes (both kept)
    json_ok(mlart().arg("attest").arg(&signed).arg("--key").arg(&key));
    assert_eq!(json_ok(&mut verify_require(&signed, &public))["ok"], true);
    // again: nothing new
    let v = json_ok(mlart().arg("attest").arg(&signed).arg("--key").arg(&key));
    assert_eq!(v["added"], 0);

    // wrong subject: an attestation of bundle A made to point at bundle B
    let (a, b, b_subject) = two_attested(t.path(), &key);
    repoint_provenance(&a, &b, &b_subject);
    let err = fails(&mut verify_require(&b, &public), 1);
    assert!(err.contains("signed subject is another bundle"), "{err}");

    // a tampered byte in an envelope blob (the ML-BOM of A)
    let env = envelope_digest(&a, SBOM_AT);
    let p = crate::support::fixtures::blob_path(&a, &env);
    let mut bytes = fs::read(&p).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let err = fails(&mut verify_require(&a, &public), 1);
    assert!(err.contains("no valid sbom attestation"), "{err}");
    assert!(!err.contains("no valid provenance"), "{err}");

    // the keyid of a good signature changed (it is not signed): said as such, not taken for
    // a signature by another key
    let env = envelope_digest(&a, PROVENANCE_AT);
    let mut e: Value = serde_json::from_slice(&read_blob(&a, &env)).unwrap();
    e["dsseEnvelope"]["signatures"][0]["keyid"] = "ab".repeat(32).into();
    let (d, size) = put_blob(&a, &serde_json::to_vec(&e).unwrap());
    swap_attestation(&a, PROVENANCE_AT, &|m| {
        m["layers"][0]["digest"] = d.clone().into();
        m["layers"][0]["size"] = size.into();
    });
    let err = fails(&mut verify_require(&a, &public), 1);
    assert!(
        err.contains("no valid provenance attestation")
            && err.contains("DSSE keyid")
            && err.contains("changed after signing"),
        "{err}"
    );
}

#[test]
fn registry_push_copy_and_attest_carry_attestations() {
    let Some(reg) = Registry::start("registry_push_copy_and_attest_carry_attestations") else {
        return;
    };
    let env = Env::new();
    let (key, public) = env.keygen("k");
    let layout = env.path("a.oci");
    let v = bundle_iris(
        &mut env.cmd(),
        &layout,
        &["--sign".as_ref(), key.as_os_str(), "--attest".as_ref()],
    );
    let r = reg.reference("ml/iris:1.0.0");
    let p = env.push(&layout, &r);
    assert_eq!(p["signatures"], 1);
    assert_eq!(p["attestations"], 2);
    assert!(
        p["referrers_tag"].as_str().unwrap().starts_with("sha256-"),
        "{p}"
    );
    let check = |target: &str| {
        let v = json_ok(
            env.verify_cmd(target, &[&public])
                .args(["--require", "provenance,sbom"]),
        );
        assert_eq!(v["ok"], true, "{target}: {v}");
    };
    check(&r);
    // copy registry -> registry, and back to a layout
    let r2 = reg.reference("other/iris:1.0.0");
    json_ok(env.cmd().arg("copy").arg(&r).arg(&r2));
    check(&r2);
    let back = env.path("back.oci");
    json_ok(env.cmd().arg("copy").arg(&r2).arg(&back));
    check(back.to_str().unwrap());
    assert_eq!(
        entry(&back, PROVENANCE_AT)["digest"],
        entry(&layout, PROVENANCE_AT)["digest"]
    );
    // `bundle --push --sign --attest`, and `mlart attest REF` on a bundle pushed without them
    let r3 = reg.reference("pushed/iris:1.0.0");
    json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec())
            .arg("--push")
            .arg(&r3)
            .arg("--sign")
            .arg(&key)
            .arg("--attest"),
    );
    check(&r3);
    let r4 = reg.reference("late/iris:1.0.0");
    let plain = env.path("plain.oci");
    bundle_iris(
        &mut env.cmd(),
        &plain,
        &["--sign".as_ref(), key.as_os_str()],
    );
    env.push(&plain, &r4);
    let err = fails(
        env.verify_cmd(&r4, &[&public]).args(["--require", "sbom"]),
        1,
    );
    assert!(err.contains("no sbom attestation"), "{err}");
    let a = json_ok(env.cmd().arg("attest").arg(&r4).arg("--key").arg(&key));
    assert_eq!(a["manifest_digest"], v["manifest_digest"]);
    assert_eq!(a["added"], 2, "{a}");
    check(&r4);
    let i = json_ok(env.cmd().arg("inspect").arg(&r4).arg("--attestations"));
    assert_eq!(i["attestations"].as_array().unwrap().len(), 2);
    // again: the key attested both already, nothing is added (not "2" each run)
    let a = json_ok(env.cmd().arg("attest").arg(&r4).arg("--key").arg(&key));
    assert_eq!(a["added"], 0, "{a}");
    assert_eq!(a["kept"].as_array().unwrap().len(), 2, "{a}");
    // attested when bundled (with the spec's digest and the git state), then `mlart attest`
    // without the spec: the richer statements stay the only ones of this key
    let a = json_ok(env.cmd().arg("attest").arg(&r3).arg("--key").arg(&key));
    assert_eq!(a["added"], 0, "{a}");
    let i = json_ok(env.cmd().arg("inspect").arg(&r3).arg("--attestations"));
    assert_eq!(i["attestations"].as_array().unwrap().len(), 2, "{i}");
    // another key adds its own beside them
    let (other, _) = env.keygen("other");
    let a = json_ok(env.cmd().arg("attest").arg(&r3).arg("--key").arg(&other));
    assert_eq!(a["added"], 2, "{a}");
    let i = json_ok(env.cmd().arg("inspect").arg(&r3).arg("--attestations"));
    assert_eq!(i["attestations"].as_array().unwrap().len(), 4, "{i}");
    check(&r3);
    let _ = json!(null);
}

/// A gate policy can demand the attestations (`provenance: required`, `sbom: required`) and
/// check what the provenance says (`provenance_checks`): it passes on an attested bundle with
/// the key that signed them, and fails (exit 1, the reason named) on a bundle without them or
/// with another key.
#[test]
fn gate_policies_require_attestations() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    let (_, other) = keygen(t.path(), "other");
    let (with, _) = attested(t.path(), &key, "with.oci");
    let without = t.path().join("without.oci");
    bundle_iris(
        &mut mlart(),
        &without,
        &["--sign".as_ref(), key.as_os_str()],
    );
    let policy = t.path().join("gates.yaml");
    fs::write(
        &policy,
        "gates:\n  signature: required\n  provenance: required\n  sbom: required\n",
    )
    .unwrap();
    let gate = |target: &Path, key: &Path| {
        let mut c = mlart();
        c.arg("--json")
            .arg("gate")
            .arg(target)
            .arg("--policy")
            .arg(&policy)
            .arg("--key")
            .arg(key);
        run(&mut c)
    };
    let ok = gate(&with, &public);
    let v: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(ok.status.code(), Some(0), "{v}");
    assert_eq!(v["passed"], true, "{v}");
    for (target, key, why) in [(&without, &public, "without"), (&with, &other, "other key")] {
        let o = gate(target, key);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(o.status.code(), Some(1), "{why}: {v}");
        assert_eq!(v["passed"], false, "{why}: {v}");
        let failed: Vec<String> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["passed"] == false)
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(
            failed.iter().any(|n| n.contains("provenance"))
                && failed.iter().any(|n| n.contains("sbom")),
            "{why}: {failed:?} {v}"
        );
    }
    // provenance_checks: the example bundles inside our git tree, so a revision is recorded;
    // dataset digests are required only when datasets are declared (iris declares none)
    fs::write(
        &policy,
        "gates:\n  provenance: required\n  provenance_checks: {source_revision: true}\n",
    )
    .unwrap();
    let o = gate(&with, &public);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["name"].as_str().unwrap_or("").contains("source_revision")
                || c["name"].as_str().unwrap_or("").contains("revision")
        })
        .cloned();
    assert!(check.is_some(), "no provenance check reported: {v}");
}

/// Conda packages (environment.yml) are conda's in the ML-BOM, with their channel and build,
/// beside pip's package of the same name; cyclonedx-python-lib validates the document.
#[test]
fn conda_packages_are_conda_purls_beside_pips() {
    let t = example_copy();
    let dir = t.path();
    fs::write(
        dir.join("environment.yml"),
        "name: iris\ndependencies:\n  - python=3.11.8=hab00c5b_0_cpython\n  - numpy=1.26.4\n  - libblas=3.9.0=20_linux64_openblas\n  - conda-forge::pandas==2.2.1\n  - scipy>=1.11\n  - pip\n  - pip:\n    - rich==13.7.1\n",
    )
    .unwrap();
    let spec = fs::read_to_string(dir.join("mlart.yaml")).unwrap();
    fs::write(
        dir.join("mlart.yaml"),
        spec.replace(
            "  - requirements.txt\n",
            "  - requirements.txt\n  - environment.yml\n",
        ),
    )
    .unwrap();
    let (key, public) = keygen(dir, "k");
    let out = dir.join("b.oci");
    json_ok(
        mlart()
            .current_dir(dir)
            .args(["bundle", "--attest", "--sign"])
            .arg(&key)
            .arg("-o")
            .arg(&out),
    );
    let bom_env = read_json_file(&{
        let p = dir.join("sbom.json");
        fs::write(&p, read_blob(&out, &envelope_digest(&out, SBOM_AT))).unwrap();
        p
    });
    let bom: Value = serde_json::from_slice(&base64_decode(
        bom_env["dsseEnvelope"]["payload"].as_str().unwrap(),
    ))
    .unwrap();
    let purls: Vec<&str> = bom["predicate"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .filter_map(|c| c["purl"].as_str())
        .collect();
    for want in [
        "pkg:conda/pandas@2.2.1?channel=conda-forge",
        "pkg:conda/numpy@1.26.4",
        "pkg:conda/libblas@3.9.0?build=20_linux64_openblas",
        "pkg:pypi/rich@13.7.1",
    ] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    // iris's requirements.txt pins numpy for pip too: both are there
    assert!(
        purls.iter().any(|p| p.starts_with("pkg:pypi/numpy@")),
        "{purls:?}"
    );
    assert!(
        !purls
            .iter()
            .any(|p| p.contains("%3A%3A") || p.contains("scipy")),
        "no channel in a name, no purl for a range: {purls:?}"
    );
    // inspect: the conda packages apart from pip's
    let i = json_ok(mlart().arg("inspect").arg(&out));
    let env = &i["metadata"]["env"];
    assert_eq!(env["conda"]["conda-forge::pandas"], "==2.2.1", "{env}");
    assert_eq!(env["conda"]["numpy"], "=1.26.4", "{env}");
    assert_eq!(env["python"], "=3.11.8=hab00c5b_0_cpython", "{env}");
    assert!(
        env["packages"]["numpy"].as_str().unwrap().starts_with("=="),
        "{env}"
    );
    let text = run(mlart().arg("inspect").arg(&out));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("numpy (conda)"), "{text}");
    if let Some(py) = python() {
        assert!(
            third_parties_accept(&py, &dir.join("sbom.json"), &public, "sbom"),
            "cyclonedx-python-lib refused the BOM"
        );
    }
}
