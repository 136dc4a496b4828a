//! Attestations carried: `pull` writes them beside the pulled files (`OUT.attestations/`) from a
//! layout, an archive or a registry, with or without `--verify-key`, leaving out (and naming)
//! those that do not hold; `mlart attest` writes them into an archive (rewritten beside itself,
//! nothing partial on failure) and repairs a damaged envelope; `copy` to an archive keeps them.

use crate::attest::{
    attested, entry, envelope_digest, index, repoint_provenance, third_parties_accept,
    two_attested, verify_require, PROVENANCE_AT, SBOM_AT,
};
use crate::support::fixtures::{bundle_iris, read_blob};
use crate::support::registry::{Env, Registry};
use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

fn pull(src: &Path, out: &Path, extra: &[&std::ffi::OsStr]) -> Value {
    json_ok(mlart().arg("pull").arg(src).arg("-o").arg(out).args(extra))
}

fn kinds(pulled: &Value) -> Vec<String> {
    pulled["attestations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| x["kind"].as_str().unwrap().into())
                .collect()
        })
        .unwrap_or_default()
}

/// The file names of the attestations a pull wrote.
fn files(pulled: &Value) -> Vec<String> {
    pulled["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let f = Path::new(x["file"].as_str().unwrap());
            f.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

/// The regular entries of an archive: name -> bytes.
fn archive_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let raw = fs::read(path).unwrap();
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(&raw[..]).entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(name, data);
        }
    }
    out
}

/// Write the archive again with each regular entry's bytes passed through `edit(name, bytes)`.
fn edit_archive(path: &Path, edit: &dyn Fn(&str, Vec<u8>) -> Vec<u8>) {
    let raw = fs::read(path).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    for e in tar::Archive::new(&raw[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if h.entry_type().is_file() {
            data = edit(&name, data);
        }
        h.set_size(data.len() as u64);
        out.append_data(&mut h, &name, &data[..]).unwrap();
    }
    fs::write(path, out.into_inner().unwrap()).unwrap();
}

#[test]
fn pull_writes_the_attestations_beside_the_files() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (other_key, _) = keygen(t.path(), "other");
    let (a, _) = attested(t.path(), &key, "a.oci");
    let out = t.path().join("out");
    let p = pull(&a, &out, &[]);
    let dir = t.path().join("out.attestations");
    assert_eq!(p["attestations_dir"], dir.display().to_string(), "{p}");
    assert_eq!(kinds(&p), ["provenance", "sbom"]);
    let atts = p["attestations"].as_array().unwrap();
    for (x, at, file) in [
        (&atts[0], PROVENANCE_AT, "provenance.sigstore.json"),
        (&atts[1], SBOM_AT, "sbom.sigstore.json"),
    ] {
        assert_eq!(x["file"], dir.join(file).display().to_string());
        assert_eq!(x["digest"], entry(&a, at)["digest"]);
        assert!(
            x.get("verified_by").is_none(),
            "no key, nothing verified: {x}"
        );
        assert_eq!(
            fs::read(dir.join(file)).unwrap(),
            read_blob(&a, &envelope_digest(&a, at)),
            "{file}: the envelope as it is stored"
        );
        // its signed subject is the manifest pulled
        let b: Value = serde_json::from_slice(&fs::read(dir.join(file)).unwrap()).unwrap();
        let payload = base64_decode(b["dsseEnvelope"]["payload"].as_str().unwrap());
        let st: Value = serde_json::from_slice(&payload).unwrap();
        let subject = st["subject"][0]["digest"]["sha256"].as_str().unwrap();
        assert_eq!(format!("sha256:{subject}"), p["digest"].as_str().unwrap());
    }
    // nothing was added inside the pulled directory: it still verifies against its model.sig
    assert!(!out.join("provenance.sigstore.json").exists());
    json_ok(mlart().arg("verify").arg(&out).arg("--key").arg(&public));
    // and independent verifiers accept the files pulled
    if let Some(py) = python() {
        for kind in ["provenance", "sbom"] {
            let f = dir.join(format!("{kind}.sigstore.json"));
            assert!(third_parties_accept(&py, &f, &public, kind), "{kind}");
        }
    }

    // attestations by another key too: without a key all four are carried; with --verify-key
    // those of that key, the others named in the warnings
    json_ok(mlart().arg("attest").arg(&a).arg("--key").arg(&other_key));
    let all = pull(&a, &t.path().join("all"), &[]);
    assert_eq!(
        files(&all),
        [
            "provenance.sigstore.json",
            "provenance.2.sigstore.json",
            "sbom.sigstore.json",
            "sbom.2.sigstore.json"
        ]
    );
    let with_key = ["--verify-key".as_ref(), public.as_os_str()];
    let mine = pull(&a, &t.path().join("mine"), &with_key);
    assert_eq!(
        files(&mine),
        ["provenance.sigstore.json", "sbom.sigstore.json"]
    );
    for x in mine["attestations"].as_array().unwrap() {
        assert_eq!(x["verified_by"], public.display().to_string(), "{x}");
    }
    let w = mine["warnings"].to_string();
    assert!(
        w.contains("the provenance attestation")
            && w.contains("not carried")
            && w.contains("another key"),
        "{w}"
    );
    let human = ok(mlart()
        .arg("pull")
        .arg(&a)
        .arg("-o")
        .arg(t.path().join("h"))
        .args(with_key));
    let human = String::from_utf8(human).unwrap();
    assert!(
        human.contains("attestation provenance -> ") && human.contains("signature verified: "),
        "{human}"
    );

    // from an archive, and for a selection of the files as well
    let (tar, _) = attested(t.path(), &key, "c.tar");
    let p = pull(
        &tar,
        &t.path().join("sel"),
        &["--kind".as_ref(), "model".as_ref()],
    );
    assert_eq!(kinds(&p), ["provenance", "sbom"]);
    assert!(t
        .path()
        .join("sel.attestations/sbom.sigstore.json")
        .is_file());

    // the folder taken: refused before anything is written
    let busy = t.path().join("busy.attestations");
    fs::create_dir_all(&busy).unwrap();
    fs::write(busy.join("x"), b"x").unwrap();
    let err = fails(
        mlart()
            .arg("pull")
            .arg(&a)
            .arg("-o")
            .arg(t.path().join("busy")),
        2,
    );
    assert!(
        err.contains("busy.attestations") && err.contains("will not overwrite"),
        "{err}"
    );
    assert!(!t.path().join("busy").exists());
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // an empty folder there is taken; an unattested bundle makes none
    fs::remove_file(busy.join("x")).unwrap();
    assert_eq!(kinds(&pull(&a, &t.path().join("busy"), &[])).len(), 4);
    let plain = t.path().join("plain.oci");
    bundle_iris(&mut mlart(), &plain, &[]);
    let p = pull(&plain, &t.path().join("plainout"), &[]);
    assert!(p.get("attestations").is_none() && p.get("attestations_dir").is_none());
    assert!(!t.path().join("plainout.attestations").exists());
}

#[test]
fn pull_leaves_out_attestations_of_another_bundle() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (a, b, b_subject) = two_attested(t.path(), &key);
    let a_prov = entry(&a, PROVENANCE_AT);
    // A's referrer listed in B's index (its subject is A): not B's, not carried, no warning
    let mut idx = index(&b);
    idx["manifests"]
        .as_array_mut()
        .unwrap()
        .push(a_prov.clone());
    fs::write(b.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    let p = pull(&b, &t.path().join("one"), &[]);
    assert_eq!(kinds(&p), ["provenance", "sbom"]);
    assert_ne!(p["attestations"][0]["digest"], a_prov["digest"]);
    assert!(p.get("warnings").is_none(), "{p}");
    assert_eq!(json_ok(&mut verify_require(&b, &public))["ok"], true);

    // A's attestation re-pointed at B (its signed subject is still A): left out, and said
    repoint_provenance(&a, &b, &b_subject);
    for (out, extra) in [
        ("two", vec![]),
        ("three", vec!["--verify-key".as_ref(), public.as_os_str()]),
    ] {
        let p = pull(&b, &t.path().join(out), &extra);
        assert_eq!(kinds(&p), ["sbom"], "{out}");
        let w = p["warnings"].to_string();
        assert!(
            w.contains("the provenance attestation")
                && w.contains("signed subject is another bundle"),
            "{out}: {w}"
        );
    }
}

#[test]
fn attest_writes_into_an_archive_and_repairs_a_damaged_envelope() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = keygen(t.path(), "k");
    let (other_key, _) = keygen(t.path(), "other");
    let tar = t.path().join("s.tar");
    let v = bundle_iris(&mut mlart(), &tar, &["--sign".as_ref(), key.as_os_str()]);
    let err = fails(&mut verify_require(&tar, &public), 1);
    assert!(err.contains("no provenance attestation"), "{err}");
    let before = archive_entries(&tar);
    let a = json_ok(mlart().arg("attest").arg(&tar).arg("--key").arg(&key));
    assert_eq!(a["added"], 2, "{a}");
    assert_eq!(a["manifest_digest"], v["manifest_digest"]);
    assert_eq!(json_ok(&mut verify_require(&tar, &public))["ok"], true);
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // every entry it had is still there with the same bytes (but index.json, which lists more)
    let after = archive_entries(&tar);
    for (name, data) in &before {
        if name != "index.json" {
            assert_eq!(after.get(name), Some(data), "{name}");
        }
    }
    assert_eq!(
        after.len(),
        before.len() + 4,
        "two referrers: manifest and envelope each"
    );
    // the same attestations as `mlart attest` makes on the layout of the same bundle
    let layout = t.path().join("s.oci");
    bundle_iris(&mut mlart(), &layout, &["--sign".as_ref(), key.as_os_str()]);
    json_ok(mlart().arg("attest").arg(&layout).arg("--key").arg(&key));
    let tar_index: Value = serde_json::from_slice(&after["index.json"]).unwrap();
    for at in [PROVENANCE_AT, SBOM_AT] {
        let listed = tar_index["manifests"].as_array().unwrap();
        assert!(
            listed
                .iter()
                .any(|m| m["digest"] == entry(&layout, at)["digest"]),
            "{at}: {tar_index}"
        );
    }
    // again: nothing to add, the file is left as it is
    let bytes = fs::read(&tar).unwrap();
    let again = json_ok(mlart().arg("attest").arg(&tar).arg("--key").arg(&key));
    assert_eq!(again["added"], 0);
    assert_eq!(fs::read(&tar).unwrap(), bytes, "not rewritten");
    // named as `oci-archive:FILE:TAG`, with another key: added beside
    let tag = tar_index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_string();
    let named = format!("oci-archive:{}:{tag}", tar.display());
    let o = json_ok(
        mlart()
            .arg("attest")
            .arg(&named)
            .arg("--key")
            .arg(&other_key),
    );
    assert_eq!(o["added"], 2);

    // the ML-BOM envelope cut short inside the archive: verify names it, pull leaves it out,
    // and `attest` writes it again
    let env_name = format!(
        "blobs/sha256/{}",
        envelope_digest(&layout, SBOM_AT).trim_start_matches("sha256:")
    );
    edit_archive(&tar, &|name, data| {
        if name == env_name {
            data[..data.len() / 2].to_vec()
        } else {
            data
        }
    });
    let err = fails(&mut verify_require(&tar, &public), 1);
    assert!(
        err.contains("no valid sbom attestation") && !err.contains("no valid provenance"),
        "{err}"
    );
    let p = pull(
        &tar,
        &t.path().join("out"),
        &["--verify-key".as_ref(), public.as_os_str()],
    );
    assert_eq!(kinds(&p), ["provenance"]);
    let w = p["warnings"].to_string();
    assert!(
        w.contains("the sbom attestation") && w.contains("envelope cannot be read"),
        "{w}"
    );
    let fixed = json_ok(mlart().arg("attest").arg(&tar).arg("--key").arg(&key));
    assert_eq!(
        fixed["added"], 0,
        "listed already: only the blob was written"
    );
    assert_eq!(json_ok(&mut verify_require(&tar, &public))["ok"], true);

    // an archive cut short: refused (exit 4), left as it was, nothing left behind
    let cut = t.path().join("cut.tar");
    let whole = fs::read(&tar).unwrap();
    let (at, size) = {
        let f = fs::File::open(&tar).unwrap();
        let mut ar = tar::Archive::new(f);
        let mut biggest = (0, 0);
        for e in ar.entries_with_seek().unwrap() {
            let e = e.unwrap();
            if e.size() > biggest.1 {
                biggest = (e.raw_file_position(), e.size());
            }
        }
        biggest
    };
    fs::write(&cut, &whole[..(at + size / 2) as usize]).unwrap();
    let before = fs::read(&cut).unwrap();
    let err = fails(mlart().arg("attest").arg(&cut).arg("--key").arg(&key), 4);
    assert!(
        err.contains("cut.tar") && err.contains("cut short"),
        "{err}"
    );
    assert_eq!(fs::read(&cut).unwrap(), before);
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn registry_pull_carries_attestations_and_verify_key_still_works() {
    let Some(reg) =
        Registry::start("registry_pull_carries_attestations_and_verify_key_still_works")
    else {
        return;
    };
    let env = Env::new();
    let (key, public) = env.keygen("k");
    let layout = env.path("a.oci");
    bundle_iris(
        &mut env.cmd(),
        &layout,
        &["--sign".as_ref(), key.as_os_str(), "--attest".as_ref()],
    );
    let r = reg.reference("ml/iris:1.0.0");
    let pushed = json_ok(env.cmd().arg("push").arg(&layout).arg(&r));
    assert_eq!(pushed["attestations"], 2);
    let out = env.path("out");
    let p = json_ok(
        env.cmd()
            .arg("pull")
            .arg(&r)
            .arg("-o")
            .arg(&out)
            .arg("--verify-key")
            .arg(&public),
    );
    let by = p["verified_by"].to_string();
    assert!(
        by.contains("model.sig"),
        "the bundle is still verified: {p}"
    );
    assert_eq!(kinds(&p), ["provenance", "sbom"]);
    for (x, at) in p["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .zip([PROVENANCE_AT, SBOM_AT])
    {
        assert_eq!(x["verified_by"], public.display().to_string(), "{x}");
        assert_eq!(
            fs::read(x["file"].as_str().unwrap()).unwrap(),
            read_blob(&layout, &envelope_digest(&layout, at))
        );
    }
    json_ok(env.cmd().arg("verify").arg(&out).arg("--key").arg(&public));
    if let Some(py) = python() {
        let f = env.path("out.attestations/provenance.sigstore.json");
        assert!(third_parties_accept(&py, &f, &public, "provenance"));
    }
    // again, the layers from the cache this time: carried all the same
    let p = json_ok(
        env.cmd()
            .arg("pull")
            .arg(&r)
            .arg("-o")
            .arg(env.path("again")),
    );
    assert!(p["layers"]["cached"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(kinds(&p), ["provenance", "sbom"]);
    // a copy to an archive keeps them as referrers
    let tar = env.path("copy.tar");
    json_ok(env.cmd().arg("copy").arg(&r).arg(&tar));
    assert_eq!(json_ok(&mut verify_require(&tar, &public))["ok"], true);
}
