//! Real third-party tools read what mlart writes: skopeo, umoci and the OCI JSON schemas.

use crate::support::fixtures::{bundle_iris, read_blob};
use crate::support::*;
use std::fs;
use std::process::Command;

fn bundle(out: &std::path::Path, form: &str) -> serde_json::Value {
    bundle_iris(&mut mlart(), out, &["--format".as_ref(), form.as_ref()])
}

#[test]
fn skopeo_reads_our_manifest_byte_for_byte_and_copies_keep_the_digest() {
    if tool("skopeo").is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    for form in ["image", "artifact", "modelpack"] {
        let layout = t.path().join(format!("{form}.oci"));
        let r = bundle(&layout, form);
        let digest = r["manifest_digest"].as_str().unwrap();
        let image = format!("oci:{}:1.0.0", layout.display());
        let raw = skopeo(&["inspect", "--raw", &image]);
        let ours = read_blob(&layout, digest);
        assert_eq!(
            raw, ours,
            "skopeo returns our manifest byte for byte ({form})"
        );
        // skopeo compresses uncompressed layers on the way into an archive unless asked not to
        let archive = t.path().join(format!("{form}-copy.tar"));
        let archived = format!("oci-archive:{}:1.0.0", archive.display());
        skopeo(&["copy", "--preserve-digests", &image, &archived]);
        let copied = skopeo(&["inspect", "--raw", &archived]);
        assert_eq!(copied, ours);
        // and mlart reads skopeo's archive
        let i = json_ok(mlart().arg("inspect").arg(&archive));
        assert_eq!(i["manifest_digest"], digest);
        // skopeo reads mlart's own archive
        let ours_tar = t.path().join(format!("{form}.tar"));
        bundle(&ours_tar, form);
        let raw = skopeo(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:1.0.0", ours_tar.display()),
        ]);
        assert_eq!(raw, ours);
    }
}

#[test]
fn umoci_unpacks_the_image_to_the_source_files() {
    let Some(umoci) = tool("umoci") else { return };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("iris.oci");
    bundle(&layout, "image");
    let bundle_dir = t.path().join("unpacked");
    ok(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1.0.0", layout.display()))
        .arg(&bundle_dir));
    let models = bundle_dir.join("rootfs/models");
    let mut got = tree_digests(&models);
    let meta = got.remove("mlart.json").expect("mlart.json in /models");
    assert!(!meta.is_empty());
    let spec_files: Vec<&str> = vec![
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
    let want: std::collections::BTreeMap<String, String> = spec_files
        .iter()
        .map(|f| (f.to_string(), sha256_file(&example().join(f))))
        .collect();
    assert_eq!(got, want);
    let config: serde_json::Value = read_json_file(&bundle_dir.join("config.json"));
    assert!(config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "MODEL_DIR=/models"));
}

/// A layer added on top after `mlart bundle` (here `umoci repack` of an edit that replaces
/// one file and deletes another): a runtime shows the edit, so `pull` must not write the old
/// bytes silently. It refuses (exit 4) before writing anything; `verify` names the replaced
/// file and the deletion; the untouched tag still pulls.
#[test]
fn a_layer_added_on_top_by_umoci_is_refused_by_pull_and_named_by_verify() {
    let Some(umoci) = tool("umoci") else { return };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("iris.oci");
    bundle(&layout, "image");
    let dir = t.path().join("unpacked");
    ok(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:1.0.0", layout.display()))
        .arg(&dir));
    fs::write(dir.join("rootfs/models/train.py"), "print('changed')\n").unwrap();
    fs::remove_file(dir.join("rootfs/models/README.md")).unwrap();
    ok(Command::new(&umoci)
        .args(["repack", "--image"])
        .arg(format!("{}:edited", layout.display()))
        .arg(&dir));
    let edited = format!("oci:{}:edited", layout.display());

    let out = t.path().join("pulled");
    let e = fails(mlart().arg("pull").arg(&edited).arg("-o").arg(&out), 4);
    assert!(
        e.contains("layer 10 (")
            && e.contains("not in the bundle's metadata (mlart.json)")
            && e.contains("umoci repack"),
        "{e}"
    );
    assert!(!out.exists(), "nothing written");
    assert!(
        !fs::read_dir(t.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".mlart-pull")),
        "no staging left behind"
    );
    let v = json_exit(mlart().arg("verify").arg(&edited), 1);
    let problems = v.to_string();
    assert!(
        problems.contains("README.md: deleted by a whiteout (.wh.README.md)"),
        "{problems}"
    );
    assert!(problems.contains("train.py"), "{problems}");
    // the tag as bundled still pulls, all of it
    let r = pull_to(format!("oci:{}:1.0.0", layout.display()), &out);
    assert_eq!(r["layers"]["total"], r["layers"]["needed"], "{r}");
    assert!(out.join("README.md").is_file());
}

#[test]
fn every_layout_validates_against_the_oci_schemas() {
    let Some(py) = python() else { return };
    let validator = repo().join("../shared/tools/oci-validate.py");
    if !validator.is_file() {
        missing(
            &format!("{} is missing", validator.display()),
            &format!("SKIP: no {}", validator.display()),
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    for form in ["image", "artifact", "modelpack"] {
        let layout = t.path().join(format!("{form}.oci"));
        bundle(&layout, form);
        let out = ok(Command::new(&py).arg(&validator).arg(&layout));
        assert!(String::from_utf8_lossy(&out).contains("OK: 0 problem(s)"));
        // the archive, unpacked, is the same valid layout
        let tarball = t.path().join(format!("{form}.tar"));
        bundle(&tarball, form);
        let dir = t.path().join(format!("{form}-from-tar"));
        fs::create_dir_all(&dir).unwrap();
        tar::Archive::new(fs::File::open(&tarball).unwrap())
            .unpack(&dir)
            .unwrap();
        ok(Command::new(&py).arg(&validator).arg(&dir));
        assert_eq!(tree_digests(&dir), tree_digests(&layout));
    }
    // and the validator does catch a broken layout (the check can fail)
    let broken = t.path().join("image.oci");
    fs::write(
        broken.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [{\"mediaType\": 5}]}",
    )
    .unwrap();
    let o = Command::new(&py)
        .arg(&validator)
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!o.status.success());
}
