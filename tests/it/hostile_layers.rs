//! Layers that hold more than the metadata says: entries mlart.json does not list, an entry
//! twice, a stream that decompresses far beyond the listed sizes. `pull` says what it refused
//! (an error under `--strict`), stops the bomb, and `verify` reports each.

use crate::support::fixtures::{bundle_iris, put_blob, read_blob, read_json};
use crate::support::{dot_mlart_entries, fails, json_ok, mlart, pull_to, read_json_file, run};
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

/// The iris bundle (artifact form: mlart.json is the config) with its docs layer's tar
/// entries passed through `edit`; every digest that names the layer is rewritten to match.
type Entries = Vec<(String, Vec<u8>)>;

fn with_edited_docs_layer(dir: &Path, edit: &dyn Fn(&mut Entries)) -> std::path::PathBuf {
    edited_docs_layer(dir, &[], edit)
}

/// `with_edited_docs_layer`, the bundle made with `extra` arguments too (`--sign KEY`).
fn edited_docs_layer(
    dir: &Path,
    extra: &[&OsStr],
    edit: &dyn Fn(&mut Entries),
) -> std::path::PathBuf {
    let layout = dir.join("edited.oci");
    let mut args = vec![OsStr::new("--format"), OsStr::new("artifact")];
    args.extend_from_slice(extra);
    bundle_iris(&mut mlart(), &layout, &args);
    let index: Value = read_json_file(&layout.join("index.json"));
    let mut manifest = read_json(&layout, index["manifests"][0]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array_mut().unwrap();
    let docs = layers
        .iter_mut()
        .find(|l| l["mediaType"] == "application/vnd.mlart.docs.v1.tar+gzip")
        .expect("a docs layer");
    let old = docs["digest"].as_str().unwrap().to_string();
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(&read_blob(&layout, &old)[..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut entries = Vec::new();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            entries.push((p, b));
        }
    }
    edit(&mut entries);
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, &data[..]).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    let (new, size) = put_blob(&layout, &gz.finish().unwrap());
    docs["digest"] = new.clone().into();
    docs["size"] = size.into();
    let mut config = read_json(&layout, manifest["config"]["digest"].as_str().unwrap());
    for f in config["files"].as_array_mut().unwrap() {
        if f["layer"] == old.as_str() {
            f["layer"] = new.clone().into();
        }
    }
    let (cd, cs) = put_blob(&layout, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put_blob(&layout, &serde_json::to_vec(&manifest).unwrap());
    let mut index = index;
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    layout
}

#[test]
fn unlisted_entries_are_refused_and_strict_makes_it_an_error() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let layout = with_edited_docs_layer(t.path(), &|e| {
        e.push(("docs/extra.md".into(), b"not in mlart.json\n".to_vec()));
    });
    // without --strict: pulled, the extra entry not written, and said (JSON and stderr)
    let p = pull_to(&layout, &out);
    let w = p["warnings"].to_string();
    assert!(
        w.contains("docs/extra.md") && w.contains("does not list"),
        "{p}"
    );
    assert!(!out.join("docs/extra.md").exists());
    assert!(out.join("docs/model_card.md").is_file());
    let o = run(mlart()
        .arg("pull")
        .arg(&layout)
        .arg("-o")
        .arg(t.path().join("out2")));
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: ")
            && String::from_utf8_lossy(&o.stderr).contains("docs/extra.md")
    );
    // --strict: exit 4, nothing written
    let strict = t.path().join("strict");
    let err = fails(
        mlart()
            .arg("pull")
            .arg(&layout)
            .arg("--strict")
            .arg("-o")
            .arg(&strict),
        4,
    );
    assert!(
        err.contains("docs/extra.md") && err.contains("--strict"),
        "{err}"
    );
    assert!(!strict.exists());
    // verify (strict by nature) names it
    let (key, public) = crate::support::keygen(t.path(), "k");
    let _ = key;
    let o = run(mlart()
        .args(["--json", "verify", "--key"])
        .arg(&public)
        .arg(&layout));
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["problems"]
            .to_string()
            .contains("docs/extra.md: in a layer but not in the metadata"),
        "{v}"
    );
}

#[test]
fn a_repeated_entry_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layout = with_edited_docs_layer(t.path(), &|e| {
        let first = e[0].clone();
        e.push((first.0, b"a second, different copy\n".to_vec()));
    });
    let out = t.path().join("out");
    let err = fails(mlart().arg("pull").arg(&layout).arg("-o").arg(&out), 2);
    assert!(err.contains("more than once"), "{err}");
    assert!(!out.exists());
    let (_, public) = crate::support::keygen(t.path(), "k");
    let o = run(mlart()
        .args(["--json", "verify", "--key"])
        .arg(&public)
        .arg(&layout));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["problems"].to_string().contains("appears more than once"),
        "{v}"
    );
    assert_eq!(o.status.code(), Some(1));
}

/// mlart writes a layer's entries in path order, and `pull` reads each layer beside its sorted
/// part of the metadata's list (so a million files cost no memory): a layer in another order
/// is refused, naming the file and why, with nothing written. An extra entry amid the listed
/// ones does not shift the rest: the files after it are still pulled.
#[test]
fn a_layer_out_of_path_order_is_refused_and_an_extra_entry_amid_it_shifts_nothing() {
    let t = tempfile::tempdir().unwrap();
    let names = std::cell::RefCell::new(Vec::new());
    let layout = with_edited_docs_layer(t.path(), &|e| {
        assert!(e.len() >= 2, "{e:?}");
        *names.borrow_mut() = e.iter().map(|x| x.0.clone()).collect();
        e.reverse();
    });
    let names = names.into_inner();
    let out = t.path().join("out");
    let err = fails(mlart().arg("pull").arg(&layout).arg("-o").arg(&out), 2);
    assert!(
        err.contains(&format!(
            "{} is listed in the metadata but not in its layer",
            names[0]
        )) && err.contains("path order"),
        "{err}"
    );
    assert!(!out.exists());
    // a selection that does not need the layer still pulls
    let part = t.path().join("part");
    let p = json_ok(
        mlart()
            .args(["pull", "--kind", "model"])
            .arg(&layout)
            .arg("-o")
            .arg(&part),
    );
    assert_eq!(p["files"], json!(["model/iris.onnx"]), "{p}");

    let t = tempfile::tempdir().unwrap();
    let layout = with_edited_docs_layer(t.path(), &|e| {
        let at = e.len() / 2;
        let before = e[at - 1].0.clone();
        e.insert(at, (format!("{before}.extra"), b"not listed\n".to_vec()));
    });
    let out = t.path().join("out");
    let p = pull_to(&layout, &out);
    assert!(p["warnings"].to_string().contains(".extra"), "{p}");
    let files: Vec<&str> = p["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.windows(2).all(|w| w[0] < w[1]), "{files:?}");
    for f in &files {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(!files.iter().any(|f| f.ends_with(".extra")), "{files:?}");
}

/// A file changed and a file gone from a signed bundle's layer: `verify` names each against
/// the metadata and against model.sig (the three lists are read side by side, in path order).
#[test]
fn verify_names_each_file_changed_or_gone_against_the_metadata_and_model_sig() {
    let t = tempfile::tempdir().unwrap();
    let (key, public) = crate::support::keygen(t.path(), "k");
    let layout = edited_docs_layer(t.path(), &[OsStr::new("--sign"), key.as_os_str()], &|e| {
        assert!(
            e.len() >= 2,
            "{:?}",
            e.iter().map(|x| &x.0).collect::<Vec<_>>()
        );
        e[0].1 = b"changed\n".to_vec();
        e.pop();
    });
    let gone_is = |v: &Value, p: &str| v["problems"].to_string().contains(p);
    let o = run(mlart()
        .args(["--json", "verify", "--key"])
        .arg(&public)
        .arg(&layout));
    // (a file whose bytes are not the metadata's: integrity, as pull says)
    assert_eq!(o.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["integrity"], true, "{v}");
    assert!(gone_is(&v, "does not match the metadata's sha256"), "{v}");
    assert!(gone_is(&v, "listed in the metadata but in no layer"), "{v}");
    let sig = v["model_signature"]["reason"].to_string();
    assert!(
        sig.contains("do not match model.sig")
            && sig.contains("changed")
            && sig.contains("missing"),
        "{v}"
    );
}

#[test]
fn a_decompression_bomb_is_stopped() {
    let t = tempfile::tempdir().unwrap();
    // 256 MiB of zeros: a few hundred KiB gzipped, far beyond the ~3 KiB the docs list
    let layout = with_edited_docs_layer(t.path(), &|e| {
        e.push(("docs/zeros.bin".into(), vec![0u8; 256 << 20]));
    });
    let out = t.path().join("out");
    let err = fails(mlart().arg("pull").arg(&layout).arg("-o").arg(&out), 4);
    assert!(err.contains("decompresses to more than"), "{err}");
    assert!(!out.exists());
    let left = dot_mlart_entries(t.path());
    assert!(left.is_empty(), "{left:?}");
    let _ = json!({});
}
