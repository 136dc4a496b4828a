//! The OpenSSF Model Signing v1.0 (OMS) `model.sig` over a bundle's files (as model_signing
//! writes and verifies it).

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

/// What `oms_resources_each` hands each resource to: its path and sha256; an error stops it.
pub type EachResource<'a> = dyn FnMut(&str, [u8; 32]) -> std::result::Result<(), String> + 'a;

/// What a statement read by `oms_resources_each` holds besides its resources.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    /// The resources handed out.
    pub count: usize,
    /// Its `serialization.ignore_paths`: what model_signing left out of the folder.
    pub ignore_paths: Vec<String>,
}

/// `oms_resources` for a statement read as it streams (tens of MB for 200,000 files): `each`
/// gets every resource (path, sha256) in the statement's order, as it is parsed; the root
/// digest is checked at the end (an `each` that keeps them must drop them on an error). No
/// string of the statement may pass 1 MiB (a hostile one is refused as it streams), nor its
/// `serialization` object.
pub fn oms_resources_each(
    r: &mut dyn std::io::Read,
    each: &mut EachResource,
) -> std::result::Result<Listed, String> {
    use crate::store::entries::budget;
    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    #[derive(serde::Deserialize)]
    struct Resource {
        algorithm: String,
        digest: String,
        name: String,
    }
    struct Walk<'a> {
        each: &'a mut EachResource<'a>,
        root: Sha256,
        count: usize,
        resources: bool,
        ignore_paths: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Serialization {
        #[serde(default)]
        ignore_paths: Vec<String>,
    }
    /// The statement (a map): its predicate walked, the rest kept small.
    struct Top<'w, 'a>(&'w mut Walk<'a>);
    struct Predicate<'w, 'a>(&'w mut Walk<'a>);
    struct Resources<'w, 'a>(&'w mut Walk<'a>);
    #[derive(Default)]
    struct Found {
        predicate_type: Option<String>,
        subject: Option<Value>,
    }

    impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
        type Value = Found;
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Found, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Top<'_, '_> {
        type Value = Found;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an in-toto statement")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Found, A::Error> {
            let mut found = Found::default();
            while let Some(k) = m.next_key::<String>()? {
                match k.as_str() {
                    "predicate" => m.next_value_seed(Predicate(&mut *self.0))?,
                    "predicateType" => found.predicate_type = Some(m.next_value()?),
                    "subject" => found.subject = Some(m.next_value()?),
                    _ => {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(found)
        }
    }
    impl<'de> DeserializeSeed<'de> for Predicate<'_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Predicate<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("the OMS predicate")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
            while let Some(k) = m.next_key::<String>()? {
                if k == "resources" {
                    m.next_value_seed(Resources(&mut *self.0))?;
                    self.0.resources = true;
                } else if k == "serialization" {
                    budget::reset();
                    let s: Serialization = m.next_value()?;
                    self.0.ignore_paths = s.ignore_paths;
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Resources<'_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Resources<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of resources")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<(), A::Error> {
            budget::reset();
            while let Some(r) = s.next_element::<Resource>()? {
                budget::reset();
                if r.algorithm != "sha256" {
                    return Err(A::Error::custom(format!(
                        "{}: unsupported algorithm {:?}",
                        r.name, r.algorithm
                    )));
                }
                let mut d = [0u8; 32];
                hex::decode_to_slice(&r.digest, &mut d)
                    .map_err(|_| A::Error::custom(format!("{}: digest is not hex", r.name)))?;
                self.0.root.update(d);
                self.0.count += 1;
                (self.0.each)(&r.name, d).map_err(A::Error::custom)?;
            }
            Ok(())
        }
    }

    let mut walk = Walk {
        each,
        root: Sha256::new(),
        count: 0,
        resources: false,
        ignore_paths: Vec::new(),
    };
    budget::reset();
    let mut rd = budget::Budget {
        r: std::io::BufReader::with_capacity(64 << 10, r),
        limit: 1 << 20,
    };
    let mut de = serde_json::Deserializer::from_reader(&mut rd);
    let found = Top(&mut walk)
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| format!("not an OMS statement: {e}"))?;
    if found.predicate_type.as_deref() != Some(OMS_PREDICATE) {
        return Err(format!(
            "predicateType {} is not {OMS_PREDICATE}",
            found.predicate_type.as_deref().unwrap_or("(none)")
        ));
    }
    if !walk.resources {
        return Err("no resources in the predicate".into());
    }
    let want = found
        .subject
        .as_ref()
        .and_then(|s| s[0]["digest"]["sha256"].as_str().map(String::from));
    if want.as_deref() != Some(hex::encode(walk.root.finalize()).as_str()) {
        return Err(
            "the statement is inconsistent: its resources do not hash to the subject digest".into(),
        );
    }
    Ok(Listed {
        count: walk.count,
        ignore_paths: walk.ignore_paths,
    })
}

/// `oms_resources_each` into a list sorted by path (on disk past `spill` bytes): what is
/// read beside other lists in path order (`verify`, `pull`, a folder's check). Its order is
/// path bytes, not model_signing's components. With the statement's `ignore_paths`.
pub fn oms_resources_sorted(
    r: &mut dyn std::io::Read,
    spill: usize,
) -> std::result::Result<(crate::store::runs::Merged<[u8; 32]>, Vec<String>), String> {
    use crate::store::runs::{Batch, Runs};
    let mut runs: Runs<[u8; 32]> = Runs::new(spill);
    let mut batch: Batch<[u8; 32]> = Batch::default();
    let listed = oms_resources_each(r, &mut |name, d| {
        batch.push(name, 0, &d);
        if batch.size() > 64 << 10 {
            runs.add(&mut batch).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    runs.add(&mut batch).map_err(|e| e.to_string())?;
    Ok((
        runs.merged().map_err(|e| e.to_string())?,
        listed.ignore_paths,
    ))
}

/// Verify `dir/model.sig` against the files in `dir` (as model_signing does): returns the
/// verifying key's path, or a Check error naming what differs.
pub fn verify_dir(dir: &Path, keys: &[PublicKey]) -> Result<PathBuf> {
    // (a folder pulled by mlart: a selection, or a bundle made without --sign)
    let none = "the directory is not signed: a pull with --kind or --path writes no model.sig (it signs every file), nor does a pull of a bundle made without --sign. Verify the bundle itself (`mlart verify REF --key PUB`), or pull it whole";
    let ((signed, ignore), key) = open_dir_sig(dir, keys, none)?;
    check_dir(dir, signed, &ignore, OMS_FILE)?;
    Ok(key.map(|k| k.path.clone()).unwrap_or_default())
}

/// `verify DIR` without a key: the files against what model.sig lists; its signature is NOT
/// checked (the caller says so).
pub fn check_dir_unsigned(dir: &Path) -> Result<()> {
    let ((signed, ignore), _) = open_dir_sig(dir, &[], "nothing to check the files against")?;
    check_dir(dir, signed, &ignore, OMS_FILE)
}

/// model.sig's resources sorted by path, and its ignore_paths.
type Signed = (crate::store::runs::Merged<[u8; 32]>, Vec<String>);

/// `dir/model.sig` read as it streams (its signature checked with `keys` when there are any),
/// its resources sorted on disk past a few MiB; its ignore_paths; the key that verified it.
fn open_dir_sig<'k>(
    dir: &Path,
    keys: &'k [PublicKey],
    none: &str,
) -> Result<(Signed, Option<&'k PublicKey>)> {
    let sig_path = dir.join(OMS_FILE);
    let mut f = std::fs::File::open(&sig_path)
        .map_err(|_| Error::Check(format!("{}: no {OMS_FILE}: {none}", dir.display())))?;
    let bad = |e: String| Error::Check(format!("{}: {e}", sig_path.display()));
    let (mut payload, key) = super::envelope::open_streamed(&mut f, keys).map_err(bad)?;
    let r = payload
        .reader()
        .map_err(|e| bad(format!("reading the statement back: {e}")))?;
    let spill = crate::store::entries::memory_limit()?.max(64 << 10);
    Ok((oms_resources_sorted(r, spill).map_err(bad)?, key))
}

/// The files of `dir` (hashed, sorted by path on disk past a few MiB) beside the list they
/// must match (`signed`, sorted: model.sig's resources, or the files of a pulled directory's
/// mlart.json; `against` names it in messages): what is missing, changed or added, at most
/// 1,000 said. Paths in `ignore` (and under them) are passed over.
pub fn check_dir(
    dir: &Path,
    signed: crate::store::runs::Merged<[u8; 32]>,
    ignore: &[String],
    against: &str,
) -> Result<()> {
    use crate::store::runs::{Batch, Peeked, Runs};
    let spill = crate::store::entries::memory_limit()?.max(64 << 10);
    let mut got: Runs<[u8; 32]> = Runs::new(spill);
    let mut batch: Batch<[u8; 32]> = Batch::default();
    let mut it = walkdir::WalkDir::new(dir).into_iter();
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
            return Err(Error::Check(match against {
                OMS_FILE => format!(
                    "{}: {rel} is a symlink (the signature does not allow them)",
                    dir.display()
                ),
                _ => format!(
                    "{}: {rel} is a symlink ({against} lists files, not links)",
                    dir.display()
                ),
            }));
        }
        if e.file_type().is_file() {
            let mut f = std::fs::File::open(e.path()).ctx("reading", e.path())?;
            let mut h = crate::format::digest::HashWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).ctx("reading", e.path())?;
            let (_, d, _) = h.finish();
            let mut sha = [0u8; 32];
            hex::decode_to_slice(d.hex(), &mut sha).expect("a sha256 is 32 bytes");
            batch.push(&rel, 0, &sha);
            if batch.size() > 64 << 10 {
                got.add(&mut batch)?;
            }
        }
    }
    got.add(&mut batch)?;
    let listed_in = match against {
        OMS_FILE => "the signature",
        _ => against,
    };
    let mut problems = crate::error::Capped::default();
    let mut say = |p: String| problems.push(p);
    let mut signed = Peeked::new(signed)?;
    let mut got = got.merged()?;
    while let Some(rec) = got.next()? {
        while let Some(p) = signed.next_if(|p| p.rel < rec.rel)? {
            say(format!("{} is missing", p.rel));
        }
        match signed.next_if(|p| p.rel == rec.rel)? {
            Some(p) if p.data == rec.data => {}
            Some(_) => say(format!("{} changed", rec.rel)),
            None => say(format!("{} is not in {listed_in} (added)", rec.rel)),
        }
        while let Some(p) = signed.next_if(|p| p.rel == rec.rel)? {
            say(format!("{} is listed twice", p.rel));
        }
    }
    while let Some(p) = signed.next_if(|_| true)? {
        say(format!("{} is missing", p.rel));
    }
    match problems.joined() {
        Some(p) => Err(Error::Check(format!(
            "{}: the files do not match {against}: {p}",
            dir.display()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::dsse::sign_statement;
    use crate::sign::keys::tests::keypair;

    fn streamed(st: &[u8]) -> std::result::Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        oms_resources_each(&mut &st[..], &mut |n, d| {
            out.push((n.to_string(), hex::encode(d)));
            Ok(())
        })
        .map(|n| {
            assert_eq!(n.count, out.len());
            assert_eq!(n.ignore_paths, OMS_IGNORE);
            out
        })
    }

    #[test]
    fn streamed_resources_are_the_statements_and_a_bad_statement_is_an_error() {
        let files: Vec<(String, String)> = (0..50)
            .map(|i| (format!("d{}/f{i}", i % 3), hex::encode([i as u8; 32])))
            .collect();
        let st = oms_statement("m", &files);
        let bytes = serde_json::to_vec(&st).unwrap();
        let got = streamed(&bytes).unwrap();
        let want: Vec<(String, String)> = oms_resources(&st).unwrap().into_iter().collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, want);
        // the statement's own order (by components), not sorted by bytes
        assert_eq!(got[0].0, "d0/f0");
        let bad = |edit: &dyn Fn(&mut Value), why: &str| {
            let mut st = st.clone();
            edit(&mut st);
            let e = streamed(&serde_json::to_vec(&st).unwrap()).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        };
        bad(
            &|s| s["predicate"]["resources"][3]["digest"] = json!("00".repeat(32)),
            "inconsistent",
        );
        bad(
            &|s| s["predicate"]["resources"][3]["digest"] = json!("zz"),
            "not hex",
        );
        bad(
            &|s| s["predicate"]["resources"][0]["algorithm"] = json!("md5"),
            "algorithm",
        );
        bad(&|s| s["predicateType"] = json!("x"), "predicateType");
        bad(&|s| s["predicate"] = json!({}), "no resources");
        bad(
            &|s| s["predicate"]["resources"] = json!({"a": 1}),
            "not an OMS statement",
        );
        bad(&|s| s["subject"] = json!([]), "inconsistent");
        bad(
            &|s| s["predicate"]["resources"][1]["name"] = json!("x".repeat(2 << 20)),
            "not an OMS statement",
        );
        // cut anywhere: an error, never a panic
        for cut in (0..bytes.len()).step_by(97) {
            assert!(streamed(&bytes[..cut]).is_err(), "{cut}");
        }
        // `each` refusing one stops the walk with its reason
        let e = oms_resources_each(&mut &bytes[..], &mut |n, _| match n {
            "d1/f1" => Err("no".into()),
            _ => Ok(()),
        })
        .unwrap_err();
        assert!(e.contains("no"), "{e}");
    }

    #[test]
    fn verify_dir_streams_model_sig_and_names_what_differs() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let dir = d.path().join("m");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::create_dir_all(dir.join(".git")).unwrap();
        std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
        std::fs::write(dir.join("a-b"), b"gamma").unwrap();
        std::fs::write(dir.join("sub/b.bin"), b"beta").unwrap();
        // ignored, as the statement says
        std::fs::write(dir.join(".git/HEAD"), b"x").unwrap();
        let hex_of = |b: &[u8]| hex::encode(Sha256::digest(b));
        let st = oms_statement(
            "m",
            &[
                ("a.txt".into(), hex_of(b"alpha")),
                ("a-b".into(), hex_of(b"gamma")),
                ("sub/b.bin".into(), hex_of(b"beta")),
            ],
        );
        std::fs::write(dir.join(OMS_FILE), sign_statement(&k, &st)).unwrap();
        let keys = std::slice::from_ref(&p);
        verify_dir(&dir, keys).unwrap();
        check_dir_unsigned(&dir).unwrap();
        // changed, added, missing: each named, with or without the key
        std::fs::write(dir.join("sub/b.bin"), b"BETA").unwrap();
        std::fs::write(dir.join("extra"), b"x").unwrap();
        std::fs::remove_file(dir.join("a-b")).unwrap();
        for e in [
            verify_dir(&dir, keys).unwrap_err().to_string(),
            check_dir_unsigned(&dir).unwrap_err().to_string(),
        ] {
            assert!(e.contains("sub/b.bin changed"), "{e}");
            assert!(e.contains("extra is not in the signature"), "{e}");
            assert!(e.contains("a-b is missing"), "{e}");
            assert!(!e.contains(".git"), "{e}");
        }
        // a symlink is refused
        std::os::unix::fs::symlink("a.txt", dir.join("l")).unwrap();
        let e = check_dir_unsigned(&dir).unwrap_err().to_string();
        assert!(e.contains("l is a symlink"), "{e}");
        // another key, a damaged model.sig, none at all
        let other = tempfile::tempdir().unwrap();
        let (_, q) = keypair(other.path());
        assert!(verify_dir(&dir, std::slice::from_ref(&q)).is_err());
        std::fs::write(dir.join(OMS_FILE), b"{\"not\": ").unwrap();
        assert!(check_dir_unsigned(&dir).is_err());
        std::fs::remove_file(dir.join(OMS_FILE)).unwrap();
        let e = verify_dir(&dir, keys).unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
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
