//! A layout holding several tagged images, as skopeo, umoci and oras keep one: `copy X
//! oci:DIR:TAG` and `bundle -o oci:DIR:TAG` add to it; a plain path replaces it and names the
//! tags it held; reading verbs ask which image; `bundle --push --gate` gates before uploading.

use crate::support::fixtures::{bundle_cmd, bundle_iris, iris_spec};
use crate::support::registry::Registry;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tags of a layout's index.json, in order, and how many signature entries it lists.
fn index_tags(layout: &Path) -> (Vec<String>, usize) {
    let index = read_json_file(&layout.join("index.json"));
    let m = index["manifests"].as_array().unwrap();
    let tags = m
        .iter()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect();
    let sigs = m
        .iter()
        .filter(|d| d["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .count();
    (tags, sigs)
}

fn oci(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

/// The example signed (`iris.oci`, 1.0.0) and, of other content (zstd layers), `iris-z.oci`
/// tagged 1.1.0: (signed, other, signed digest, other digest, public key).
fn two_bundles(dir: &Path) -> (PathBuf, PathBuf, String, String, PathBuf) {
    let (key, public) = keygen(dir, "release");
    let signed = dir.join("iris.oci");
    let a = bundle_iris(&mut mlart(), &signed, &["--sign".as_ref(), key.as_os_str()]);
    let other = dir.join("iris-z.oci");
    let b = bundle_iris(
        &mut mlart(),
        &other,
        &[
            "--compression".as_ref(),
            "zstd".as_ref(),
            "--tag".as_ref(),
            "1.1.0".as_ref(),
        ],
    );
    let d = |v: &Value| v["manifest_digest"].as_str().unwrap().to_string();
    (signed, other, d(&a), d(&b), public)
}

/// skopeo's digest of `oci:LAYOUT:TAG`.
fn skopeo_digest(layout: &Path, tag: &str) -> String {
    let v: Value = serde_json::from_slice(&skopeo(&["inspect", &oci(layout, tag)])).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The repro of the issue: a layout of 1.0.0 (mlart) and 1.1.0 (skopeo); `copy` of 2.0.0 adds
/// to it, keeping both, their blobs and the signature of what is kept; replacing a tag moves it
/// and drops the signature once no tag names the signed manifest.
#[test]
fn copy_to_oci_dir_tag_adds_to_a_multi_tag_layout() {
    let t = tempfile::tempdir().unwrap();
    let (signed, other, d_signed, d_other, public) = two_bundles(t.path());
    let multi = t.path().join("multi.oci");
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "1.0.0")));
    let skopeo_there = tool("skopeo").is_some();
    if skopeo_there {
        skopeo(&["copy", "-q", &oci(&other, "1.1.0"), &oci(&multi, "1.1.0")]);
    } else {
        json_ok(mlart().arg("copy").arg(&other).arg(oci(&multi, "1.1.0")));
    }
    let v = json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "2.0.0")));
    assert_eq!(v["tag"], "2.0.0");
    assert_eq!(v["kept_tags"], serde_json::json!(["1.0.0", "1.1.0"]), "{v}");
    assert!(v.get("replaced_tags").is_none() && v.get("moved_from").is_none());
    // every tag is there, the signature of 1.0.0 = 2.0.0 once
    assert_eq!(
        index_tags(&multi),
        (vec!["1.0.0".into(), "1.1.0".into(), "2.0.0".into()], 1)
    );
    for (tag, d) in [
        ("1.0.0", &d_signed),
        ("1.1.0", &d_other),
        ("2.0.0", &d_signed),
    ] {
        // every blob of every tag is there and whole, and the signature verifies
        json_ok(&mut verify_cmd(oci(&multi, tag), &[]));
        if skopeo_there {
            assert_eq!(&skopeo_digest(&multi, tag), d, "skopeo reads {tag}");
        }
    }
    json_ok(&mut verify_cmd(oci(&multi, "2.0.0"), &[&public]));
    if let Some(umoci) = tool("umoci") {
        let ls = ok(Command::new(umoci).args(["ls", "--layout"]).arg(&multi));
        let mut listed: Vec<String> = String::from_utf8_lossy(&ls)
            .lines()
            .map(String::from)
            .collect();
        listed.sort();
        assert_eq!(listed, ["1.0.0", "1.1.0", "2.0.0"]);
    }
    // the human output says what the layout also holds
    let out = run(mlart().arg("copy").arg(&signed).arg(oci(&multi, "2.0.0")));
    assert_exit(&out, 0);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains("added to") && human.contains("also holds 1.0.0, 1.1.0"),
        "{human}"
    );

    // 1.0.0 now names the other image: it moved; the signature stays (2.0.0 is signed)
    let v = json_ok(mlart().arg("copy").arg(&other).arg(oci(&multi, "1.0.0")));
    assert_eq!(v["moved_from"], d_signed.as_str());
    assert_eq!(
        index_tags(&multi),
        (vec!["1.1.0".into(), "2.0.0".into(), "1.0.0".into()], 1)
    );
    // 2.0.0 too: no tag names the signed manifest; its signature and blobs are gone
    json_ok(mlart().arg("copy").arg(&other).arg(oci(&multi, "2.0.0")));
    assert_eq!(
        index_tags(&multi).1,
        0,
        "the signature of a manifest no longer there"
    );
    assert!(
        !blob_file(&multi, &d_signed).exists(),
        "its manifest blob went with it"
    );
    for tag in ["1.0.0", "1.1.0", "2.0.0"] {
        json_ok(&mut verify_cmd(oci(&multi, tag), &[]));
    }
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

fn blob_file(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// A plain path (and `oci:DIR` without a tag) still replaces the layout, byte for byte what a
/// fresh copy writes, and says which tags went with it (`replaced_tags`).
#[test]
fn a_plain_path_replaces_and_names_the_tags_it_held() {
    let t = tempfile::tempdir().unwrap();
    let (signed, other, ..) = two_bundles(t.path());
    let multi = t.path().join("multi.oci");
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "1.0.0")));
    json_ok(mlart().arg("copy").arg(&other).arg(oci(&multi, "1.1.0")));
    let out = run(mlart().arg("copy").arg(&other).arg(&multi));
    assert_exit(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: replaced")
            && err.contains("which also held 1.0.0")
            && err.contains(&format!(
                "write oci:{}:TAG to add a tag instead",
                multi.display()
            )),
        "{err}"
    );
    assert_eq!(index_tags(&multi), (vec!["1.1.0".into()], 0));
    let fresh = t.path().join("fresh.oci");
    json_ok(mlart().arg("copy").arg(&other).arg(&fresh));
    assert_eq!(tree_digests(&multi), tree_digests(&fresh), "replaced whole");
    // `oci:DIR` without a tag replaces too; --json names what went
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "2.0.0")));
    let v = json_ok(
        mlart()
            .arg("copy")
            .arg(&other)
            .arg(format!("oci:{}", multi.display())),
    );
    assert_eq!(v["replaced_tags"], serde_json::json!(["2.0.0"]), "{v}");
    // nothing replaced: no field
    let v = json_ok(mlart().arg("copy").arg(&other).arg(&multi));
    assert!(v.get("replaced_tags").is_none(), "{v}");
    // `bundle -o PATH` replaces the same way, and says so
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "0.9.0")));
    let v = bundle_iris(&mut mlart(), &multi, &[]);
    assert_eq!(
        v["replaced_tags"],
        serde_json::json!(["1.1.0", "0.9.0"]),
        "{v}"
    );
    assert_eq!(index_tags(&multi).0, vec!["1.0.0".to_string()]);
}

/// `bundle -o oci:DIR:TAG` adds to the layout as `copy` does (the tag from `-o`; a different
/// `--tag` is refused); the layout is not collected into the bundle even when a spec entry
/// covers its folder.
#[test]
fn bundle_to_oci_dir_tag_adds_to_the_layout() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("proj");
    copy_tree(&example(), &p, false);
    let _ = fs::remove_dir_all(p.join("build"));
    let spec = p.join("mlart.yaml");
    // the layout lives under docs/, which the spec bundles whole
    let multi = p.join("docs/multi.oci");
    let elsewhere = json_ok(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(t.path().join("x.oci")),
    );
    let plain = json_ok(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(oci(&multi, "1.0.0")),
    );
    assert_eq!(plain["output"], multi.display().to_string());
    let v = json_ok(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(oci(&multi, "2.0.0"))
            .args(["--compression", "zstd"]),
    );
    assert_eq!(v["tag"], "2.0.0");
    assert_eq!(v["kept_tags"], serde_json::json!(["1.0.0"]), "{v}");
    assert_eq!(
        v["files"], elsewhere["files"],
        "the layout's own files are not bundled"
    );
    assert_eq!(plain["manifest_digest"], elsewhere["manifest_digest"]);
    assert_eq!(
        index_tags(&multi).0,
        vec!["1.0.0".to_string(), "2.0.0".into()]
    );
    for tag in ["1.0.0", "2.0.0"] {
        json_ok(&mut verify_cmd(oci(&multi, tag), &[]));
    }
    if tool("skopeo").is_some() {
        assert_eq!(
            skopeo_digest(&multi, "2.0.0"),
            v["manifest_digest"].as_str().unwrap()
        );
        assert_eq!(
            skopeo_digest(&multi, "1.0.0"),
            plain["manifest_digest"].as_str().unwrap()
        );
    }
    // the same bundle again: the layout is byte for byte the same
    let before = tree_digests(&multi);
    json_ok(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(oci(&multi, "2.0.0"))
            .args(["--compression", "zstd"]),
    );
    assert_eq!(tree_digests(&multi), before);
    // two different tags
    let err = fails(
        bundle_cmd(&mut mlart(), &spec)
            .arg("-o")
            .arg(oci(&multi, "3.0.0"))
            .args(["--tag", "4.0.0"]),
        2,
    );
    assert!(err.contains("give the tag once"), "{err}");
    // an archive named with oci-archive: whatever its name
    let archive = t.path().join("iris.archive");
    json_ok(
        bundle_cmd(&mut mlart(), &iris_spec())
            .arg("-o")
            .arg(format!("oci-archive:{}:7.0.0", archive.display())),
    );
    assert!(archive.is_file());
    json_ok(&mut verify_cmd(
        format!("oci-archive:{}:7.0.0", archive.display()),
        &[],
    ));
    assert!(leftovers(&p.join("docs")).is_empty());
}

/// A copy that fails (a damaged blob in the source) leaves the layout it was adding to as it
/// was, with nothing left beside it.
#[test]
fn a_failed_add_leaves_the_layout_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let (signed, other, _, d_other, _) = two_bundles(t.path());
    let multi = t.path().join("multi.oci");
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "1.0.0")));
    // damage the other bundle's largest layer
    let m = read_json_file(&blob_file(&other, &d_other));
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    edit_bytes(&blob_file(&other, &layer), |b| b[0] ^= 0xff);
    let before = tree_digests(&multi);
    let out = run(mlart().arg("copy").arg(&other).arg(oci(&multi, "1.1.0")));
    assert_exit(&out, 4);
    assert_eq!(tree_digests(&multi), before, "the old layout is intact");
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

/// Reading a layout of several images without naming one is refused with its tags and the
/// `oci:DIR:TAG` to write.
#[test]
fn an_ambiguous_layout_names_its_tags() {
    let t = tempfile::tempdir().unwrap();
    let (signed, other, ..) = two_bundles(t.path());
    let multi = t.path().join("multi.oci");
    json_ok(mlart().arg("copy").arg(&signed).arg(oci(&multi, "1.0.0")));
    json_ok(mlart().arg("copy").arg(&other).arg(oci(&multi, "1.1.0")));
    let want = format!("oci:{}:1.0.0", multi.display());
    for verb in [&["inspect"][..], &["verify"], &["pull", "-o", "x"]] {
        let err = fails(mlart().args(verb).arg(&multi).current_dir(t.path()), 2);
        assert!(
            err.contains("holds 2 images (tags: 1.0.0, 1.1.0)") && err.contains(&want),
            "{verb:?}: {err}"
        );
    }
    let err = fails(
        mlart().arg("push").arg(&multi).arg("localhost:1/ml/iris:1"),
        2,
    );
    assert!(err.contains("holds 2 images (tags: 1.0.0, 1.1.0)"), "{err}");
    // named, each reads
    let i = json_ok(mlart().arg("inspect").arg(oci(&multi, "1.1.0")));
    assert_eq!(i["tag"].as_str().unwrap_or("1.1.0"), "1.1.0");
    json_ok(mlart().arg("inspect").arg(&multi).args(["--tag", "1.0.0"]));
}

/// The example project copied to `dir`/proj with the accuracy in eval/metrics.json set to
/// `accuracy`, and a policy file wanting at least 0.9: (the spec, the policy).
fn project_with_accuracy(dir: &Path, accuracy: &str) -> (PathBuf, PathBuf) {
    let p = dir.join(format!("proj-{accuracy}"));
    copy_tree(&example(), &p, false);
    let _ = fs::remove_dir_all(p.join("build"));
    let metrics = p.join("eval/metrics.json");
    let s = fs::read_to_string(&metrics).unwrap();
    fs::write(
        &metrics,
        s.replace(
            "\"accuracy\": 0.911111",
            &format!("\"accuracy\": {accuracy}"),
        ),
    )
    .unwrap();
    let policy = dir.join("gates.yaml");
    fs::write(
        &policy,
        "gates:\n  metrics: [{metric: accuracy, min: 0.9}]\n",
    )
    .unwrap();
    (p.join("mlart.yaml"), policy)
}

/// `bundle --push REF --gate`: a failing gate uploads nothing and leaves the tag absent (exit
/// 1, the report in `--json`); a passing one pushes; the gate's flags need --gate.
#[test]
fn bundle_push_gate_pushes_only_what_passes() {
    let Some(reg) = Registry::start("bundle_push_gate_pushes_only_what_passes") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let r = reg.reference("ml/gated:1.0.0");
    let (bad, policy) = project_with_accuracy(t.path(), "0.5");
    let gated = |spec: &Path| {
        let mut c = mlart();
        bundle_cmd(&mut c, spec)
            .args(["--push", &r, "--gate", "--policy"])
            .arg(&policy)
            .current_dir(t.path());
        c
    };
    let err = fails(&mut gated(&bad), 1);
    assert!(
        err.contains("not pushed") && err.contains("metric:accuracy"),
        "{err}"
    );
    let v = json_exit(&mut gated(&bad), 1);
    assert_eq!(v["pushed"], false);
    assert_eq!(v["gate"]["passed"], false);
    // (the repository does not even exist: not found)
    let tags = run(mlart().args(["tags", &reg.reference("ml/gated")]));
    let said = String::from_utf8_lossy(&tags.stdout);
    assert!(!said.contains("1.0.0"), "no tag: {said}");
    assert!(
        !reg.log_lines()
            .iter()
            .any(|l| l.contains("PUT") || l.contains("POST")),
        "nothing was uploaded"
    );
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // a passing one is pushed, as `push` reports it
    let (good, _) = project_with_accuracy(t.path(), "0.95");
    let v = json_ok(&mut gated(&good));
    let digest = v["digest"].as_str().unwrap();
    assert!(
        v["reference"].as_str().unwrap().ends_with("ml/gated:1.0.0"),
        "{v}"
    );
    let i = json_ok(mlart().arg("inspect").arg(&r));
    assert_eq!(i["manifest_digest"], digest);
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // the policy from the spec's `gates:` when --policy is not given
    let spec_text = fs::read_to_string(&bad).unwrap();
    fs::write(
        &bad,
        format!("{spec_text}gates:\n  metrics: [{{metric: accuracy, min: 0.9}}]\n"),
    )
    .unwrap();
    let r2 = reg.reference("ml/gated:2.0.0");
    let err = fails(
        bundle_cmd(&mut mlart(), &bad).args(["--push", &r2, "--gate"]),
        1,
    );
    assert!(err.contains("not pushed"), "{err}");
    // the gate's flags without --gate (or --gate without --push) are usage errors
    let err = fails(
        bundle_cmd(&mut mlart(), &good)
            .args(["--push", &r2, "--policy"])
            .arg(&policy),
        2,
    );
    assert!(err.contains("add --gate"), "{err}");
    let err = fails(
        bundle_cmd(&mut mlart(), &good)
            .arg("--gate")
            .arg("-o")
            .arg(t.path().join("x.oci")),
        2,
    );
    assert!(err.contains("Add --push REF"), "{err}");
    assert!(!t.path().join("x.oci").exists());
}
