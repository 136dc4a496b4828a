//! `pull` of a bundle whose uncompressed layers another tool compressed (`skopeo copy` without
//! `--preserve-digests`): the metadata names the layers by their uncompressed digests, which the
//! kept image config lists as `rootfs.diff_ids`; each such layer is matched by its index and its
//! uncompressed stream must hash to the diff_id. Real skopeo and a real registry, and layouts
//! rewritten by hand for the hostile cases.

use crate::support::fixtures::{blob_path, put_blob, read_layout};
use crate::support::registry::{Env, Registry};
use crate::support::{
    assert_example_file, example, fails, json_ok, keygen, sha256, skopeo, tool, tree_digests,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// `mlart bundle` of the example into `out` (signed with `key` when given): the bundle's JSON.
fn bundle(env: &Env, out: &Path, key: Option<&Path>, form: &str) -> Value {
    let mut c = env.cmd();
    c.current_dir(example())
        .args(["bundle", "--format", form, "-o"])
        .arg(out);
    if let Some(k) = key {
        c.arg("--sign").arg(k);
    }
    json_ok(&mut c)
}

/// The pulled tree is the project's files (those the metadata lists, byte for byte) plus
/// mlart.json and model.sig (when signed).
fn assert_project_files(out: &Path, meta_files: &[String], signed: bool) {
    let got = tree_digests(out);
    let src = tree_digests(&example());
    let want: BTreeMap<String, String> = meta_files
        .iter()
        .map(|p| (p.clone(), src[p].clone()))
        .collect();
    assert!(want.contains_key("model/iris.onnx"));
    let mut got = got;
    got.remove("mlart.json").expect("mlart.json pulled");
    if signed {
        got.remove("model.sig").expect("model.sig pulled");
    }
    assert_eq!(got, want, "pulled files");
}

/// The metadata's file paths and the layers it names, from `inspect --json`.
fn metadata(env: &Env, target: &str) -> (Vec<String>, Vec<String>) {
    let i = json_ok(env.cmd().args(["inspect", target]));
    let files = i["metadata"]["files"].as_array().unwrap();
    let paths = files
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    let mut layers: Vec<String> = files
        .iter()
        .map(|f| f["layer"].as_str().unwrap().to_string())
        .collect();
    layers.sort();
    layers.dedup();
    (paths, layers)
}

/// No staging directory or temp output left in `dir`.
fn no_leftovers(dir: &Path) {
    let left = crate::support::leftovers(dir);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn recompressed_registry_copy_pulls() {
    if tool("skopeo").is_none() {
        return;
    }
    let Some(reg) = Registry::start("recompressed_registry_copy_pulls") else {
        return;
    };
    let env = Env::new();
    let (private, public) = keygen(env.tmp.path(), "k");
    let layout = env.path("iris.oci");
    let b = bundle(&env, &layout, Some(&private), "image");
    let uncompressed: Vec<String> = b["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["media_type"] == TAR)
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!uncompressed.is_empty(), "the model layer is uncompressed");
    let orig = reg.reference("ml/iris:1");
    let pushed = env.push(&layout, &orig);
    let (files, meta_layers) = metadata(&env, &orig);

    // skopeo, registry to registry, without --preserve-digests: gzip layers, a new manifest.
    let copy = reg.reference("ml/other:1");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{orig}"),
        &format!("docker://{copy}"),
    ]);
    let i = json_ok(env.cmd().args(["inspect", &copy]));
    assert_ne!(i["manifest_digest"], pushed["digest"]);
    let copy_digest = i["manifest_digest"].as_str().unwrap().to_string();
    let layers: Vec<&Value> = i["layers"].as_array().unwrap().iter().collect();
    assert!(
        layers.iter().all(|l| l["media_type"] == TAR_GZIP),
        "skopeo gzipped every layer: {layers:?}"
    );
    for d in &uncompressed {
        assert!(meta_layers.contains(d));
        assert!(
            layers.iter().all(|l| l["digest"] != d.as_str()),
            "{d} is still in the copy"
        );
    }

    // Pulled: the project's files, through the cache; again, all from the cache.
    let out = env.path("out");
    let p = env.pull(&copy, &out, &[]);
    assert_eq!(p["digest"], copy_digest.as_str());
    assert_eq!(p["layers"]["total"], layers.len());
    assert_eq!(p["layers"]["needed"], layers.len());
    assert_eq!(p["layers"]["fetched"], layers.len());
    let sizes: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert_eq!(p["bytes_downloaded"], sizes, "the copy's (gzip) blob sizes");
    assert_project_files(&out, &files, true);
    let out2 = env.path("out2");
    let p = env.pull(&copy, &out2, &[]);
    assert_eq!(p["layers"]["cached"], layers.len());
    assert_eq!(p["layers"]["fetched"], 0);
    assert_project_files(&out2, &files, true);
    // The cache holds the copy's blobs, by their (gzip) digests.
    for l in &layers {
        let hex = &l["digest"].as_str().unwrap()[7..];
        assert!(env.path("cache/mlart/blobs/sha256").join(hex).is_file());
    }
    // One kind, without the cache.
    let out3 = env.path("out3");
    let p = env.pull(&copy, &out3, &["--no-cache", "--kind", "model"]);
    assert_eq!(p["files"], json!(["model/iris.onnx"]));
    assert_example_file(&out3, "model/iris.onnx");

    // --verify-key: the OCI signature signs the original manifest, which skopeo did not
    // copy: refused, nothing written. Signed again, the copy pulls and model.sig verifies.
    let out4 = env.path("out4");
    let pull_verified = || {
        let mut c = env.cmd();
        c.args(["pull", &copy, "--verify-key"])
            .arg(&public)
            .arg("-o")
            .arg(&out4);
        c
    };
    let err = fails(&mut pull_verified(), 1);
    assert!(err.contains("no OCI signature"), "{err}");
    assert!(!out4.exists());
    json_ok(env.cmd().args(["sign", &copy, "--key"]).arg(&private));
    let p = json_ok(&mut pull_verified());
    let by = p["verified_by"].as_array().unwrap();
    assert_eq!(by.len(), 2, "{by:?}");
    assert!(by[1].as_str().unwrap().ends_with("(model.sig)"), "{by:?}");
    assert_project_files(&out4, &files, true);

    // To an OCI layout: the same, from the layout by its directory and by `oci:DIR:TAG`.
    let dir = env.path("mirror");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{orig}"),
        &format!("oci:{}:rel", dir.display()),
    ]);
    let out5 = env.path("out5");
    json_ok(env.cmd().arg("pull").arg(&dir).arg("-o").arg(&out5));
    assert_project_files(&out5, &files, true);
    let out6 = env.path("out6");
    json_ok(
        env.cmd()
            .arg("pull")
            .arg(format!("oci:{}:rel", dir.display()))
            .arg("-o")
            .arg(&out6),
    );
    assert_project_files(&out6, &files, true);
    env.sign(&dir, &private);
    let out7 = env.path("out7");
    json_ok(
        env.cmd()
            .arg("pull")
            .arg(format!("oci:{}:rel", dir.display()))
            .arg("--verify-key")
            .arg(&public)
            .arg("-o")
            .arg(&out7),
    );
    assert_project_files(&out7, &files, true);
    no_leftovers(env.tmp.path());
}

// ---------------- layouts rewritten by hand ----------------

/// Write `b` as a blob of the layout `dir`: its descriptor's digest and size.
fn put(dir: &Path, b: &[u8]) -> Value {
    let (d, size) = put_blob(dir, b);
    json!({"digest": d, "size": size})
}

/// Write `m` as the layout's manifest (index.json points at it, its tag kept).
fn write_manifest(dir: &Path, mut index: Value, m: &Value) {
    let d = put(dir, &serde_json::to_vec(m).unwrap());
    index["manifests"][0]["digest"] = d["digest"].clone();
    index["manifests"][0]["size"] = d["size"].clone();
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layer's new bytes and media type, from its old bytes.
type Recompress<'a> = dyn Fn(&[u8]) -> (Vec<u8>, &'static str) + 'a;

/// Copy `src` to `dst`, replacing each layer of media type `from` by `f(its bytes)` (new
/// bytes and media type), as skopeo does when it compresses layers.
fn rewrite_layers(src: &Path, dst: &Path, from: &str, f: &Recompress) {
    crate::support::copy_tree(src, dst, false);
    let (index, mut m) = read_layout(dst);
    for l in m["layers"].as_array_mut().unwrap() {
        if l["mediaType"] != from {
            continue;
        }
        let old = fs::read(blob_path(dst, l["digest"].as_str().unwrap())).unwrap();
        let (new, mt) = f(&old);
        let d = put(dst, &new);
        l["digest"] = d["digest"].clone();
        l["size"] = d["size"].clone();
        l["mediaType"] = mt.into();
    }
    write_manifest(dst, index, &m);
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// The same tar entries (same names, same contents) with another mtime: other bytes.
fn retar(b: &[u8]) -> Vec<u8> {
    let mut ar = tar::Archive::new(b);
    let mut out = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        h.set_mtime(h.mtime().unwrap() + 1);
        h.set_cksum();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.append(&h, &data[..]).unwrap();
    }
    out.into_inner().unwrap()
}

/// The layers of the bundle at `layout` that are uncompressed (the metadata names them by
/// the digest that stays the diff_id).
fn uncompressed_layers(layout: &Path) -> Vec<String> {
    let (_, m) = read_layout(layout);
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"] == TAR)
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// What skopeo does, without skopeo: gzip (or zstd) the uncompressed layers. Pulls.
#[test]
fn recompressed_layout_pulls_gzip_and_zstd() {
    let env = Env::new();
    let layout = env.path("iris.oci");
    bundle(&env, &layout, None, "image");
    let (files, _) = metadata(&env, layout.to_str().unwrap());
    let n = uncompressed_layers(&layout).len();
    assert!(n >= 1);
    for (name, mt) in [("gz", TAR_GZIP), ("zst", TAR_ZSTD)] {
        let dir = env.path(&format!("{name}.oci"));
        rewrite_layers(&layout, &dir, TAR, &|b| match mt {
            TAR_GZIP => (gzip(b), TAR_GZIP),
            _ => (zstd::encode_all(b, 3).unwrap(), TAR_ZSTD),
        });
        assert!(uncompressed_layers(&dir).is_empty());
        let out = env.path(&format!("{name}-out"));
        let p = json_ok(env.cmd().arg("pull").arg(&dir).arg("-o").arg(&out));
        assert_eq!(p["layers"]["needed"], p["layers"]["total"], "{name}");
        assert_project_files(&out, &files, false);
        let out = env.path(&format!("{name}-model"));
        json_ok(
            env.cmd()
                .arg("pull")
                .arg(&dir)
                .args(["--kind", "model", "-o"])
                .arg(&out),
        );
        assert_example_file(&out, "model/iris.onnx");
    }
}

/// A compressed layer whose blob digest is right (the manifest says it) but whose content is
/// not the diff_id the config (and the metadata) gives: refused, naming the layer; nothing
/// written — even when every file in it is right (another tar of the same files, the right
/// tar with bytes after it).
#[test]
fn recompressed_layer_must_decompress_to_its_diff_id() {
    let env = Env::new();
    let layout = env.path("iris.oci");
    bundle(&env, &layout, None, "image");
    let model_layer = uncompressed_layers(&layout)[0].clone();
    let model_blob = fs::read(blob_path(&layout, &model_layer)).unwrap();
    let mut trailing = model_blob.clone();
    trailing.extend_from_slice(&[0u8; 512]);
    let retarred = retar(&model_blob);
    // (name, the new blob, its media type, what it decompresses to)
    let cases: [(&str, Vec<u8>, &'static str, &[u8]); 4] = [
        ("retarred", gzip(&retarred), TAR_GZIP, &retarred),
        ("trailing", gzip(&trailing), TAR_GZIP, &trailing),
        // Not compressed at all, yet not the diff_id; a raw (untarred) layer in its place.
        ("plain", retarred.clone(), TAR, &retarred),
        (
            "raw",
            retarred.clone(),
            "application/vnd.oci.image.layer.v1.raw",
            &retarred,
        ),
    ];
    for (name, blob, mt, content) in cases {
        let dir = env.path(&format!("{name}.oci"));
        rewrite_layers(&layout, &dir, TAR, &|b| {
            if b == model_blob {
                (blob.clone(), mt)
            } else {
                (gzip(b), TAR_GZIP)
            }
        });
        let bad = sha256(&blob);
        for kinds in [&[][..], &["--kind", "model"][..]] {
            let out = env.path(&format!("{name}-out"));
            let err = fails(
                env.cmd()
                    .arg("pull")
                    .arg(&dir)
                    .args(kinds)
                    .arg("-o")
                    .arg(&out),
                // not what the diff_id says: an integrity error
                4,
            );
            assert!(err.contains(&format!("layer {bad}")), "{name}: {err}");
            assert!(err.contains(&sha256(content)), "{name}: {err}");
            assert!(err.contains(&model_layer), "{name}: {err}");
            assert!(err.contains("rootfs.diff_ids"), "{name}: {err}");
            assert!(!out.exists(), "{name}: partial output");
            no_leftovers(env.tmp.path());
        }
    }
}

/// No match through the config: a diff_ids list of another length, a diff_id that is not the
/// metadata's layer, an artifact (no diff_ids): the "not in the manifest" error, nothing
/// written.
#[test]
fn recompressed_without_matching_diff_ids_is_refused() {
    let env = Env::new();
    let layout = env.path("iris.oci");
    bundle(&env, &layout, None, "image");
    let model_layer = uncompressed_layers(&layout)[0].clone();
    let gz = env.path("gz.oci");
    rewrite_layers(&layout, &gz, TAR, &|b| (gzip(b), TAR_GZIP));
    let pull_fails = |dir: &Path, name: &str| -> String {
        let out = env.path(&format!("{name}-out"));
        let err = fails(env.cmd().arg("pull").arg(dir).arg("-o").arg(&out), 2);
        assert!(!out.exists(), "{name}: partial output");
        no_leftovers(env.tmp.path());
        err
    };
    // The config changed: (how many diff_ids, which one replaced).
    for (name, edit) in [("short", 0usize), ("other", 1)] {
        let dir = env.path(&format!("{name}.oci"));
        crate::support::copy_tree(&gz, &dir, false);
        let (index, mut m) = read_layout(&dir);
        let mut config: Value = serde_json::from_slice(
            &fs::read(blob_path(&dir, m["config"]["digest"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let ids = config["rootfs"]["diff_ids"].as_array_mut().unwrap();
        let n = ids.len();
        let i = ids.iter().position(|d| d == model_layer.as_str()).unwrap();
        if edit == 0 {
            ids.pop();
        } else {
            ids[i] = sha256(b"something else").into();
        }
        let d = put(&dir, &serde_json::to_vec(&config).unwrap());
        m["config"]["digest"] = d["digest"].clone();
        m["config"]["size"] = d["size"].clone();
        write_manifest(&dir, index, &m);
        let err = pull_fails(&dir, name);
        assert!(
            err.contains("which is not in the manifest"),
            "{name}: {err}"
        );
        assert!(
            err.contains(
                "Copy the bundle again with `mlart copy` or `skopeo copy --preserve-digests`"
            ),
            "{name}: {err}"
        );
        if edit == 0 {
            assert!(
                err.contains(&format!(
                    "has {} entries for the manifest's {n} layers",
                    n - 1
                )),
                "{name}: {err}"
            );
        } else {
            assert!(err.contains(&model_layer), "{name}: {err}");
            assert!(
                err.contains("nor is it in the image config's rootfs.diff_ids"),
                "{name}: {err}"
            );
        }
    }

    // The artifact form has no diff_ids: its raw model layer gzipped is refused as before.
    let art = env.path("art.oci");
    bundle(&env, &art, None, "artifact");
    let raw = "application/vnd.mlart.model.v1.raw";
    let (_, m) = read_layout(&art);
    let raw_layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == raw)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = env.path("art-gz.oci");
    rewrite_layers(&art, &dir, raw, &|b| {
        (gzip(b), "application/vnd.mlart.model.v1.tar+gzip")
    });
    let err = pull_fails(&dir, "artifact");
    assert!(
        err.contains(&format!("the metadata names layer {raw_layer}, which is not in the manifest: the layers were changed after `mlart bundle` (`skopeo copy` without `--preserve-digests`, say, compresses the uncompressed model layers). Copy the bundle again with `mlart copy` or `skopeo copy --preserve-digests`")),
        "{err}"
    );
}
