//! Attestations of a bundle of many files (#24): made and read back with memory that does not
//! grow with the file count (statements written from the file list into temp files, envelopes
//! parsed as they stream), every file listed in the provenance and the ML-BOM.

use crate::support::{json_ok, keygen, mlart, pull_to, verify_cmd};
use serde_json::Value;
use std::fs;

const FILES: usize = 30_000;

#[test]
fn a_bundle_of_30000_files_is_attested_and_verified() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("p");
    fs::create_dir_all(p.join("model")).unwrap();
    fs::write(p.join("model/m.onnx"), b"not really onnx").unwrap();
    for i in 0..FILES {
        let dir = p.join(format!("data/d{:02}", i % 50));
        if i < 50 {
            fs::create_dir_all(&dir).unwrap();
        }
        fs::write(dir.join(format!("f{i:05}.txt")), format!("file {i}\n")).unwrap();
    }
    fs::write(
        p.join("mlart.yaml"),
        "name: many\nversion: \"1\"\nmodel: [model]\ndata: [data]\n",
    )
    .unwrap();
    let (key, public) = keygen(t.path(), "k");
    let out = t.path().join("out");
    json_ok(
        mlart()
            // every file list on disk
            .env("MLART_LIST_MEMORY", "0")
            .arg("bundle")
            .arg(&p)
            .arg("-o")
            .arg(&out)
            .arg("--sign")
            .arg(&key)
            .arg("--attest"),
    );
    let v = json_ok(verify_cmd(&out, &[&public]).args(["--require", "provenance,sbom"]));
    let atts = v["attestations"].as_array().expect("attestations");
    let by = |kind: &str| -> &Value {
        atts.iter()
            .find(|a| a["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind}: {v}"))
    };
    let bundled = FILES + 1; // and the model
    let prov = by("provenance");
    assert_eq!(prov["verified"], true, "{prov}");
    // every file, and no source (not a git tree), no lineage
    assert_eq!(prov["summary"]["inputs"], bundled, "{prov}");
    let sbom = by("sbom");
    assert_eq!(sbom["verified"], true, "{sbom}");
    assert_eq!(sbom["summary"]["components"]["file"], bundled, "{sbom}");
    assert_eq!(
        sbom["summary"]["components"]["machine-learning-model"], 1,
        "{sbom}"
    );

    // pull writes the envelopes as stored (several MB each: streamed from temp files)
    let pulled = t.path().join("pulled");
    let r = pull_to(&out, &pulled);
    let files: Vec<&str> = r["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{r}");
    for f in files {
        let env: Value = serde_json::from_slice(&fs::read(f).unwrap()).unwrap();
        let payload = env["dsseEnvelope"]["payload"].as_str().unwrap();
        assert!(payload.len() > 4 << 20, "{f}: {}", payload.len());
    }
}
