//! keygen, bundle --sign, sign, verify; model_signing (PyPI) checks our model.sig.

use crate::support::fixtures::{bundle_cmd, bundle_iris, iris_spec};
use crate::support::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn signed_layout(dir: &Path, key: &Path, out: &str) -> serde_json::Value {
    bundle_iris(
        &mut mlart(),
        &dir.join(out),
        &["--sign".as_ref(), key.as_os_str()],
    )
}

#[test]
fn sign_and_verify_layouts_archives_and_several_keys() {
    let t = tempfile::tempdir().unwrap();
    let (ci_key, ci_pub) = keygen(t.path(), "ci");
    let (rm_key, rm_pub) = keygen(t.path(), "rm");
    let a = signed_layout(t.path(), &ci_key, "a.oci");
    let b = signed_layout(t.path(), &ci_key, "b.tar");
    assert_eq!(
        a["manifest_digest"], b["manifest_digest"],
        "signing is deterministic (RFC 6979)"
    );
    for target in ["a.oci", "b.tar"] {
        let v = json_ok(&mut verify_cmd(t.path().join(target), &[&ci_pub]));
        assert_eq!(v["ok"], true);
        assert_eq!(v["model_signature"]["valid"], true);
        assert_eq!(v["files_verified"], 11);
        // inspect still finds the one bundle (the signature is a referrer, not a second bundle)
        json_ok(mlart().arg("inspect").arg(t.path().join(target)));
    }
    // the wrong key: exit 1, saying which check failed
    let err = fails(&mut verify_cmd(t.path().join("a.oci"), &[&rm_pub]), 1);
    assert!(
        err.contains("no OCI signature verifies") && err.contains("model.sig"),
        "{err}"
    );
    // a second signature (release manager): both kept, --require-all needs both
    let err = fails(
        verify_cmd(t.path().join("a.oci"), &[&ci_pub, &rm_pub]).arg("--require-all"),
        1,
    );
    assert!(err.contains("--require-all"), "{err}");
    sign(t.path().join("a.oci"), &rm_key);
    let again = sign(t.path().join("a.oci"), &rm_key);
    assert_eq!(again["added"], false);
    let v = json_ok(verify_cmd(t.path().join("a.oci"), &[&ci_pub, &rm_pub]).arg("--require-all"));
    assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 2);
    json_ok(&mut verify_cmd(t.path().join("a.oci"), &[&rm_pub, &ci_pub]));
    // the same on the archive: written again with the second signature, still one bundle
    let before = fs::read(t.path().join("b.tar")).unwrap();
    let s = sign(t.path().join("b.tar"), &rm_key);
    assert_eq!(s["added"], true, "{s}");
    assert_eq!(s["manifest_digest"], b["manifest_digest"]);
    assert_ne!(fs::read(t.path().join("b.tar")).unwrap(), before);
    assert_eq!(sign(t.path().join("b.tar"), &rm_key)["added"], false);
    let v = json_ok(verify_cmd(t.path().join("b.tar"), &[&ci_pub, &rm_pub]).arg("--require-all"));
    assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 2, "{v}");
    let oci_archive = format!("oci-archive:{}", t.path().join("b.tar").display());
    assert_eq!(sign(&oci_archive, &ci_key)["added"], false);
    let listed = json_ok(mlart().arg("inspect").arg(t.path().join("b.tar")));
    assert_eq!(listed["manifest_digest"], b["manifest_digest"]);
    // unsigned bundle: verify fails (missing)
    json_ok(
        bundle_cmd(&mut mlart(), &iris_spec())
            .arg("-o")
            .arg(t.path().join("u.oci")),
    );
    let err = fails(&mut verify_cmd(t.path().join("u.oci"), &[&ci_pub]), 1);
    assert!(err.contains("no OCI signature"), "{err}");
}

#[test]
fn tampered_blobs_and_signatures_fail_verify() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let r = signed_layout(t.path(), &key, "good.oci");
    let good = t.path().join("good.oci");
    for (i, l) in r["layers"].as_array().unwrap().iter().enumerate() {
        let d = t.path().join(format!("bad{i}.oci"));
        copy_tree(&good, &d, false);
        let p = d
            .join("blobs/sha256")
            .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let mut b = fs::read(&p).unwrap();
        let n = b.len() - 30;
        b[n] ^= 1;
        fs::write(&p, b).unwrap();
        let out = run(&mut verify_cmd(&d, &[&public]));
        let code = out.status.code();
        let err = String::from_utf8_lossy(&out.stderr);
        // bytes that are not their digest's: an integrity error (4), whichever layer (the
        // metadata layer stops the read at once; another is named among the problems)
        assert_eq!(code, Some(4), "{}: {err}", l["kind"]);
        if l["kind"] != "metadata" {
            assert!(
                err.contains("failed verification")
                    && (err.contains("does not match")
                        || err.contains("corrupt")
                        || err.contains("truncated")),
                "{err}"
            );
        }
    }
}

#[test]
fn model_signing_accepts_our_model_sig_and_rejects_tampering() {
    let Some(py) = python() else { return };
    let Some(umoci) = tool("umoci") else { return };
    let ms = py.parent().unwrap().join("model_signing");
    if !ms.is_file() {
        assert!(
            std::env::var("MLART_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "model_signing missing from the venv"
        );
        eprintln!("SKIP: model_signing not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (_, other) = keygen(t.path(), "other");
    signed_layout(t.path(), &key, "s.oci");
    let check = |dir: &Path, public: &Path| -> bool {
        model_signing_verify(&ms, dir, public)
            .status()
            .unwrap()
            .success()
    };
    let unpack = |name: &str| -> std::path::PathBuf {
        let b = t.path().join(name);
        let o = Command::new(&umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:1.0.0", t.path().join("s.oci").display()))
            .arg(&b)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        b.join("rootfs/models")
    };
    let models = unpack("u0");
    assert!(
        check(&models, &public),
        "model_signing verifies our model.sig"
    );
    json_ok(&mut verify_cmd(&models, &[&public]));
    assert!(!check(&models, &other), "another key");
    fails(&mut verify_cmd(&models, &[&other]), 1);
    // one changed byte
    let m = unpack("u1");
    let mut b = fs::read(m.join("model/iris.onnx")).unwrap();
    b[100] ^= 1;
    fs::write(m.join("model/iris.onnx"), b).unwrap();
    assert!(!check(&m, &public));
    let err = fails(&mut verify_cmd(&m, &[&public]), 1);
    assert!(err.contains("model/iris.onnx changed"));
    // an added file
    let m = unpack("u2");
    fs::write(m.join("extra.txt"), b"x").unwrap();
    assert!(!check(&m, &public));
    let err = fails(&mut verify_cmd(&m, &[&public]), 1);
    assert!(err.contains("extra.txt is not in the signature"));
    // a removed file
    let m = unpack("u3");
    fs::remove_file(m.join("eval/metrics.json")).unwrap();
    assert!(!check(&m, &public));
    let err = fails(&mut verify_cmd(&m, &[&public]), 1);
    assert!(err.contains("eval/metrics.json is missing"));
}

#[test]
fn keys_in_other_formats_and_types() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let ossl = |args: &[&str]| {
        let o = Command::new(&openssl)
            .args(args)
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ossl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "sec1.pem",
    ]);
    ossl(&["ec", "-in", "sec1.pem", "-pubout", "-out", "sec1.pub"]);
    ossl(&[
        "pkcs8",
        "-topk8",
        "-in",
        "sec1.pem",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:s3cret",
        "-out",
        "enc.pem",
    ]);
    ossl(&["genrsa", "-out", "rsa.pem", "2048"]);
    ossl(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-noout",
        "-out",
        "p384.pem",
    ]);
    ossl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "p384.pem",
        "-out",
        "p384-pk8.pem",
    ]);
    let bundle = |key: &str, out: &str| {
        let mut c = mlart();
        bundle_cmd(&mut c, &iris_spec())
            .arg("-o")
            .arg(t.path().join(out))
            .arg("--sign")
            .arg(t.path().join(key));
        c
    };
    json_ok(&mut bundle("sec1.pem", "sec1.oci"));
    json_ok(&mut verify_cmd(
        t.path().join("sec1.oci"),
        &[&t.path().join("sec1.pub")],
    ));
    json_ok(bundle("enc.pem", "enc.oci").env("MLART_KEY_PASSWORD", "s3cret"));
    let err = fails(
        bundle("enc.pem", "enc2.oci").env("MLART_KEY_PASSWORD", "wrong"),
        2,
    );
    assert!(err.contains("wrong password"), "{err}");
    let err = fails(
        bundle("enc.pem", "enc3.oci").stdin(std::process::Stdio::null()),
        2,
    );
    assert!(err.contains("MLART_KEY_PASSWORD"), "{err}");
    let err = fails(&mut bundle("rsa.pem", "rsa.oci"), 2);
    assert!(err.contains("RSA key") && err.contains("P-256"), "{err}");
    // no conversion advice that cannot work (openssl cannot turn RSA into P-256)
    assert!(
        !err.contains("openssl pkcs8") && err.contains("no conversion") && err.contains("keygen"),
        "{err}"
    );
    let err = fails(&mut bundle("p384-pk8.pem", "p384.oci"), 2);
    assert!(err.contains("P-384"), "{err}");
    let err = fails(&mut bundle("p384.pem", "p384b.oci"), 2);
    assert!(err.contains("P-256"), "{err}");
    for out in ["enc2.oci", "enc3.oci", "rsa.oci", "p384.oci", "p384b.oci"] {
        assert!(!t.path().join(out).exists());
    }
    // keys are never echoed
    let key_text = fs::read_to_string(t.path().join("sec1.pem")).unwrap();
    let body = key_text.lines().nth(1).unwrap();
    let out = run(mlart()
        .args(["-vvv", "bundle", "-f"])
        .arg(example().join("mlart.yaml"))
        .arg("-o")
        .arg(t.path().join("v.oci"))
        .arg("--sign")
        .arg(t.path().join("sec1.pem")));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(body)
            && !String::from_utf8_lossy(&out.stdout).contains(body)
    );
}

#[test]
fn pull_verify_key_writes_nothing_unless_signatures_verify() {
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (other_key, other) = keygen(t.path(), "other");
    for form in ["image", "artifact"] {
        let layout = t.path().join(format!("{form}.oci"));
        json_ok(
            bundle_cmd(&mut mlart(), &iris_spec())
                .arg("-o")
                .arg(&layout)
                .args(["--format", form])
                .arg("--sign")
                .arg(&key),
        );
        let out = t.path().join(format!("{form}-pulled"));
        let r = json_ok(&mut pull_verified(&layout, &out, &[&public]));
        assert_eq!(r["verified_by"].as_array().unwrap().len(), 2, "{r}");
        assert!(out.join("model.sig").is_file());
        assert_eq!(out.join("mlart.json").is_file(), form == "image");
        // the real verifier accepts the pulled directory
        let ms = py.parent().unwrap().join("model_signing");
        if ms.is_file() {
            let o = model_signing_verify(&ms, &out, &public).output().unwrap();
            assert!(
                o.status.success(),
                "{form}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        json_ok(&mut verify_cmd(&out, &[&public]));
        // another key: exit 1 and nothing written
        let bad = t.path().join(format!("{form}-bad"));
        let err = fails(&mut pull_verified(&layout, &bad, &[&other]), 1);
        assert!(err.contains("not pulled"), "{err}");
        assert!(!bad.exists());
        // a partial pull checks the selected files against model.sig
        let part = t.path().join(format!("{form}-model"));
        json_ok(
            mlart()
                .arg("pull")
                .arg(&layout)
                .arg("-o")
                .arg(&part)
                .args(["--kind", "model", "--verify-key"])
                .arg(&public),
        );
        assert!(part.join("model/iris.onnx").is_file() && !part.join("README.md").exists());
        // an OCI signature by a second key is not enough when model.sig is by nobody trusted
        sign(&layout, &other_key);
        let err = fails(&mut pull_verified(&layout, &bad, &[&other]), 1);
        assert!(err.contains("model.sig"), "{err}");
        assert!(!bad.exists());
    }
    // unsigned bundle: refused
    let u = t.path().join("u.oci");
    json_ok(bundle_cmd(&mut mlart(), &iris_spec()).arg("-o").arg(&u));
    let err = fails(
        &mut pull_verified(&u, &t.path().join("u-out"), &[&public]),
        1,
    );
    assert!(err.contains("no OCI signature"), "{err}");
    assert!(!t.path().join("u-out").exists());
    assert!(leftovers(t.path()).is_empty());
}

/// A bundle whose OCI signature verifies but whose files are not the ones its model.sig
/// signed (an old model.sig carried along as a doc): `pull --verify-key` compares model.sig
/// with the bytes it wrote, and writes nothing.
#[test]
fn pull_verify_key_refuses_files_that_are_not_the_signed_ones() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "release");
    let (ci_key, ci) = keygen(t.path(), "ci");
    let p = example_copy();
    let spec = p.path().join("mlart.yaml");
    // the release as signed, pulled: its model.sig covers README.md as it was
    let signed = t.path().join("signed.oci");
    json_ok(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(&signed)
            .arg("--sign")
            .arg(&key),
    );
    let pulled = t.path().join("pulled");
    json_ok(&mut pull_verified(&signed, &pulled, &[&public]));
    // another README, and the old model.sig packed at the same place as a doc
    fs::write(p.path().join("README.md"), "# not the reviewed text\n").unwrap();
    fs::copy(pulled.join("model.sig"), p.path().join("model.sig")).unwrap();
    let s = fs::read_to_string(&spec)
        .unwrap()
        .replace("  - README.md\n", "  - README.md\n  - model.sig\n");
    fs::write(&spec, s).unwrap();
    for form in ["image", "artifact"] {
        let forged = t.path().join(format!("forged-{form}.oci"));
        json_ok(
            bundle_cmd(&mut mlart(), &spec)
                .arg("-o")
                .arg(&forged)
                .args(["--format", form]),
        );
        // the manifest is signed by a trusted key (CI's), so only model.sig can catch it
        sign(&forged, &ci_key);
        let out = t.path().join(format!("out-{form}"));
        let err = fails(&mut pull_verified(&forged, &out, &[&public, &ci]), 1);
        assert!(err.contains("README.md changed"), "{form}: {err}");
        assert!(!out.exists(), "{form}: nothing is written");
    }
    assert!(leftovers(t.path()).is_empty());
}

#[test]
fn verify_with_two_keys_names_the_signer_and_without_a_key_checks_digests() {
    let t = tempfile::tempdir().unwrap();
    let (a_key, a_pub) = keygen(t.path(), "a");
    let (b_key, _) = keygen(t.path(), "b");
    let (_, c_pub) = keygen(t.path(), "c");
    signed_layout(t.path(), &a_key, "s.oci");
    let s = t.path().join("s.oci");
    // a second signature by a key nobody passes to verify
    sign(&s, &b_key);
    // two trusted keys, one of them signed: exit 0, no INVALID, one summary line naming both
    let out = run(&mut verify_cmd(&s, &[&c_pub, &a_pub]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("INVALID"), "{text}");
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("VERIFIED: ")
            && last.contains(&format!("signed by {}", a_pub.display()))
            && last.contains(&format!("{} did not sign it", c_pub.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("key {} did not sign this bundle", c_pub.display())),
        "{text}"
    );
    let v = json_ok(&mut verify_cmd(&s, &[&c_pub, &a_pub]));
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{v}");
    assert_eq!(keys[0]["key"], c_pub.display().to_string());
    assert_eq!(keys[0]["verified"], false);
    assert_eq!(keys[1]["key"], a_pub.display().to_string());
    assert_eq!(keys[1]["verified"], true);
    assert_eq!(keys[1]["model_sig"], true);
    let statuses: Vec<&str> = field_strs(&v["oci_signatures"], "status");
    assert_eq!(statuses, ["valid", "other-key"], "{v}");
    assert!(v["summary"]
        .as_str()
        .unwrap()
        .contains("c.pub did not sign it"));
    // b's signature is named by b's hint, and "another key" is said once
    let b_hint = mlart::sign::load_public(&t.path().join("b.pub"))
        .unwrap()
        .hint;
    let line = text
        .lines()
        .find(|l| l.contains(&b_hint))
        .unwrap_or_else(|| panic!("no line names b's hint: {text}"));
    assert!(
        line.ends_with(&format!(
            ": signed by another key (hint {b_hint}), not by any key given"
        )) && line.matches("key").count() == 2
            && !line.contains("made by a key not given"),
        "{line}"
    );
    // only the key that did not sign: a failure, naming the keys that did sign
    let err = fails(&mut verify_cmd(&s, &[&c_pub]), 1);
    let a_hint = mlart::sign::load_public(&a_pub).unwrap().hint;
    assert!(
        err.contains("no OCI signature verifies with the keys given: it is signed by another key")
            && err.contains(&a_hint)
            && err.contains(&b_hint),
        "{err}"
    );

    // no --key: digests and structure are checked, and it says no signature was checked
    let out = run(mlart().arg("verify").arg(&s));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("NO SIGNATURE CHECKED: ")
            && text.contains("11 files match"),
        "{text}"
    );
    let v = json_ok(mlart().arg("verify").arg(&s));
    assert_eq!(v["signatures_checked"], false);
    assert_eq!(v["oci_signatures"][0]["status"], "not-checked");
    // ... and still catches a tampered file
    let d = t.path().join("bad.oci");
    copy_tree(&s, &d, false);
    let (_, layer) = fs::read_dir(d.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (fs::metadata(&p).unwrap().len(), p)
        })
        .max()
        .unwrap();
    let mut b = fs::read(&layer).unwrap();
    let n = b.len() / 2;
    b[n] ^= 1;
    fs::write(&layer, b).unwrap();
    let out = run(mlart().arg("verify").arg(&d));
    assert_ne!(out.status.code(), Some(0));
    // a pulled directory without a key: files against model.sig's list
    let pulled = t.path().join("pulled");
    pull_to(&s, &pulled);
    let out = run(mlart().arg("verify").arg(&pulled));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("NO SIGNATURE CHECKED: "), "{text}");
    fs::write(pulled.join("extra.txt"), b"x").unwrap();
    let err = fails(mlart().arg("verify").arg(&pulled), 1);
    assert!(err.contains("extra.txt"), "{err}");
}
