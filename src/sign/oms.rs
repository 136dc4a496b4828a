//! The OpenSSF Model Signing v1.0 (OMS) `model.sig` over a bundle's files (as model_signing
//! writes and verifies it).

use super::dsse::{unverified_statement, verify_bundle};
use super::keys::PublicKey;
use crate::error::{Error, IoContext, Result};
use crate::format::signature::{INTOTO_STATEMENT, OMS_FILE, OMS_IGNORE, OMS_PREDICATE};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

/// Compare paths by components, as model_signing sorts resources.
fn by_components(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The OMS statement over `files` (relative path, sha256 hex), named `name`.
pub fn oms_statement(name: &str, files: &[(String, String)]) -> Value {
    let mut files: Vec<&(String, String)> = files.iter().collect();
    files.sort_by(|a, b| by_components(&a.0, &b.0));
    let mut root = Sha256::new();
    let mut resources = Vec::new();
    for (path, hexd) in files {
        root.update(hex::decode(hexd).expect("hex digest"));
        resources.push(json!({"algorithm": "sha256", "digest": hexd, "name": path}));
    }
    json!({
        "_type": INTOTO_STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": OMS_PREDICATE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": OMS_IGNORE},
            "resources": resources,
        },
    })
}

/// The files an OMS statement lists (path -> sha256 hex), after checking its root digest.
pub fn oms_resources(
    statement: &Value,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    if statement["predicateType"] != OMS_PREDICATE {
        return Err(format!(
            "predicateType {} is not {OMS_PREDICATE}",
            statement["predicateType"]
        ));
    }
    let res = statement["predicate"]["resources"]
        .as_array()
        .ok_or("no resources in the predicate")?;
    let mut root = Sha256::new();
    let mut out = std::collections::BTreeMap::new();
    for r in res {
        let (Some(name), Some(d)) = (r["name"].as_str(), r["digest"].as_str()) else {
            return Err("a resource without name or digest".into());
        };
        if r["algorithm"] != "sha256" {
            return Err(format!("{name}: unsupported algorithm {}", r["algorithm"]));
        }
        root.update(hex::decode(d).map_err(|_| format!("{name}: digest is not hex"))?);
        out.insert(name.to_string(), d.to_string());
    }
    let want = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap_or_default();
    if hex::encode(root.finalize()) != want {
        return Err(
            "the statement is inconsistent: its resources do not hash to the subject digest".into(),
        );
    }
    Ok(out)
}

/// Verify `dir/model.sig` against the files in `dir` (as model_signing does): returns the
/// verifying key's path, or a Check error naming what differs.
pub fn verify_dir(dir: &Path, keys: &[PublicKey]) -> Result<PathBuf> {
    verify_dir_known(dir, keys, &|_| None)
}

/// As `verify_dir`, for a directory whose files were hashed as they were written (`pull`'s
/// extractor): `known(rel)` gives a file's sha256 hex, and only the files it does not know are
/// read again. Every file is still listed, so one added or missing is found all the same.
pub fn verify_dir_known(
    dir: &Path,
    keys: &[PublicKey],
    known: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf> {
    let sig_path = dir.join(OMS_FILE);
    let bundle = std::fs::read(&sig_path).map_err(|_| {
        Error::Check(format!(
            "{}: no {OMS_FILE}: the directory is not signed",
            dir.display()
        ))
    })?;
    let (statement, key) = verify_bundle(&bundle, keys)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    check_dir(dir, &statement, known)?;
    Ok(key.path.clone())
}

/// `verify DIR` without a key: the files against what model.sig lists; its signature is NOT
/// checked (the caller says so).
pub fn check_dir_unsigned(dir: &Path) -> Result<()> {
    let sig_path = dir.join(OMS_FILE);
    let bundle = std::fs::read(&sig_path).map_err(|_| {
        Error::Check(format!(
            "{}: no {OMS_FILE}: nothing to check the files against",
            dir.display()
        ))
    })?;
    let statement = unverified_statement(&bundle)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    check_dir(dir, &statement, &|_| None)
}

fn check_dir(dir: &Path, statement: &Value, known: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let sig_path = dir.join(OMS_FILE);
    let want = oms_resources(statement)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    let ignore: Vec<String> = statement["predicate"]["serialization"]["ignore_paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut got = std::collections::BTreeMap::new();
    let mut it = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(|e| Error::Check(format!("{}: {e}", dir.display())))?;
        if e.depth() == 0 {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .to_string_lossy()
            .replace('\\', "/");
        if ignore
            .iter()
            .any(|i| rel == *i || rel.starts_with(&format!("{i}/")))
        {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if e.file_type().is_symlink() {
            return Err(Error::Check(format!(
                "{}: {rel} is a symlink (the signature does not allow them)",
                dir.display()
            )));
        }
        if e.file_type().is_file() {
            if let Some(d) = known(&rel) {
                got.insert(rel, d);
                continue;
            }
            let mut f = std::fs::File::open(e.path()).ctx("reading", e.path())?;
            let mut h = crate::format::digest::HashWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).ctx("reading", e.path())?;
            let (_, d, _) = h.finish();
            got.insert(rel, d.hex().to_string());
        }
    }
    let mut problems = Vec::new();
    for (p, d) in &want {
        match got.get(p) {
            None => problems.push(format!("{p} is missing")),
            Some(g) if g != d => problems.push(format!("{p} changed")),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("{p} is not in the signature (added)"));
    }
    if !problems.is_empty() {
        return Err(Error::Check(format!(
            "{}: the files do not match {OMS_FILE}: {}",
            dir.display(),
            problems.join("; ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::dsse::sign_statement;
    use crate::sign::keys::tests::keypair;

    #[test]
    fn verify_dir_known_uses_given_digests_and_still_lists_every_file() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let dir = d.path().join("m");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
        std::fs::write(dir.join("sub/b.bin"), b"beta").unwrap();
        let hex_of = |b: &[u8]| hex::encode(Sha256::digest(b));
        let st = oms_statement(
            "m",
            &[
                ("a.txt".into(), hex_of(b"alpha")),
                ("sub/b.bin".into(), hex_of(b"beta")),
            ],
        );
        std::fs::write(dir.join(OMS_FILE), sign_statement(&k, &st)).unwrap();
        let keys = std::slice::from_ref(&p);
        verify_dir(&dir, keys).unwrap();
        // a known digest is taken as it is (the file is not read again): a wrong one fails ...
        let wrong = |rel: &str| (rel == "a.txt").then(|| hex_of(b"other"));
        let e = verify_dir_known(&dir, keys, &wrong)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.txt changed"), "{e}");
        // ... and a right one passes even when the file on disk is not read
        std::fs::write(dir.join("a.txt"), b"ALPHA").unwrap();
        let right = |rel: &str| (rel == "a.txt").then(|| hex_of(b"alpha"));
        verify_dir_known(&dir, keys, &right).unwrap();
        // files the caller does not know are still hashed, and an added one is still found
        std::fs::write(dir.join("sub/b.bin"), b"BETA").unwrap();
        std::fs::write(dir.join("extra"), b"x").unwrap();
        let e = verify_dir_known(&dir, keys, &right)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sub/b.bin changed"), "{e}");
        assert!(e.contains("extra is not in the signature"), "{e}");
    }

    #[test]
    fn resources_sort_by_path_components() {
        let st = oms_statement(
            "m",
            &[
                ("a.txt".into(), "11".repeat(32)),
                ("a/b".into(), "00".repeat(32)),
            ],
        );
        let names: Vec<&str> = st["predicate"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["a/b", "a.txt"]);
    }
}
