//! Registry tests (push, pull, copy, tags, login, inspect REF) against a real registry process:
//! Debian's `docker-registry` (distribution 2.8), started on a free loopback port. See issue 3.

use crate::support::fixtures::{build_iris, read_json};
use crate::support::registry::{env_with_iris, have, registry_with_iris, Env, Registry};
use crate::support::{
    assert_example_file, base64_encode, dot_mlart_entries, example, fails, field_strs, json_ok,
    leftovers, missing, noise, read_json_file, run, sha256,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// `registry_with_iris`, the layout then pushed as ml/iris:1.0.0: the registry, the
/// environment, the layout, the reference and push's JSON.
fn iris_pushed(test: &str) -> Option<(Registry, Env, PathBuf, String, Value)> {
    let (reg, env, layout) = registry_with_iris(test)?;
    let r = reg.reference("ml/iris:1.0.0");
    let v = env.push(&layout, &r);
    Some((reg, env, layout, r, v))
}

// ---------------- tests ----------------

#[test]
fn registry_push_pull_roundtrip() {
    // Push: every blob uploaded.
    let Some((reg, env, layout, r, v)) = iris_pushed("registry_push_pull_roundtrip") else {
        return;
    };
    let digest = v["digest"].as_str().unwrap().to_string();
    let index: Value = read_json_file(&layout.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    let manifest: Value = read_json(&layout, &digest);
    let n_layers = manifest["layers"].as_array().unwrap().len();
    assert_eq!(v["blobs"]["uploaded"], n_layers + 1, "{v}");
    assert_eq!(v["blobs"]["skipped"], 0);

    // Re-push: everything skipped, same digest.
    let v2 = env.push(&layout, &r);
    assert_eq!(v2["digest"], digest.as_str());
    assert_eq!(v2["blobs"]["uploaded"], 0, "{v2}");
    assert_eq!(v2["blobs"]["skipped"], n_layers + 1);

    // Without a tag in REF, the layout's tag is kept.
    let v3 = env.push(&layout, reg.reference("ml/iris"));
    assert_eq!(v3["reference"], r.as_str());

    // tags
    let t = json_ok(env.cmd().args(["tags", &reg.reference("ml/iris")]));
    assert_eq!(t["tags"], json!(["1.0.0"]));
    // a tag that is not there: the error lists those that are
    let err = fails(
        env.cmd().args(["inspect", &reg.reference("ml/iris:9.9.9")]),
        3,
    );
    assert!(
        err.contains("has no tag \"9.9.9\"") && err.contains("1.0.0"),
        "{err}"
    );
    let err = fails(
        env.cmd().args(["inspect", &reg.reference("ml/nothing:1")]),
        3,
    );
    assert!(err.contains("has no tags"), "{err}");

    // inspect REF reads the metadata without the model layers.
    let i = json_ok(env.cmd().args(["inspect", &r]));
    assert_eq!(i["metadata"]["name"], "iris");
    assert_eq!(i["manifest_digest"], digest.as_str());
    assert_eq!(i["tag"], "1.0.0");

    // Pull everything: the project files, byte for byte.
    let out = env.path("pulled");
    let p = env.pull(&r, &out, &[]);
    assert_eq!(p["digest"], digest.as_str());
    let files: Vec<String> = field_strs(&i["metadata"]["files"], "path")
        .into_iter()
        .map(String::from)
        .collect();
    // ... plus the metadata document, which a whole pull of the image form writes too
    let mut with_meta = files.clone();
    with_meta.push("mlart.json".to_string());
    with_meta.sort();
    assert_eq!(
        tree(&out),
        with_meta,
        "pulled exactly the bundle's files and mlart.json"
    );
    for f in &files {
        assert_example_file(&out, f);
    }
    // No temp directories left beside the output.
    let left = dot_mlart_entries(env.tmp.path());
    assert!(left.is_empty(), "{left:?}");

    // --kind model with a fresh cache: only the model layer is fetched.
    let out2 = env.path("model-only");
    let p2 = json_ok(
        env.cmd()
            .env("XDG_CACHE_HOME", env.path("cache2"))
            .args(["pull", &r, "--kind", "model", "-o"])
            .arg(&out2),
    );
    assert_eq!(p2["layers"]["needed"], 1, "{p2}");
    assert_eq!(p2["layers"]["fetched"], 1);
    assert_eq!(tree(&out2), vec!["model/iris.onnx".to_string()]);
    let cached = fs::read_dir(env.path("cache2/mlart/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(cached, 1, "only the model blob is in the cache");

    // Pull again: from the cache.
    let out3 = env.path("again");
    let p3 = env.pull(&r, &out3, &[]);
    assert_eq!(p3["layers"]["fetched"], 0, "{p3}");
    assert_eq!(p3["layers"]["cached"], p3["layers"]["needed"]);

    // --path glob
    let out4 = env.path("evalonly");
    env.pull(&r, &out4, &["--path", "eval/*"]);
    assert_eq!(
        tree(&out4),
        vec![
            "eval/confusion_matrix.csv".to_string(),
            "eval/metrics.json".to_string()
        ]
    );

    // A non-empty destination is refused.
    let err = fails(env.cmd().args(["pull", &r, "-o"]).arg(&out), 2);
    assert!(err.contains("not an empty directory"), "{err}");

    // An unknown tag is a clear error.
    let err = fails(
        env.cmd()
            .args(["pull", &reg.reference("ml/iris:nope"), "-o"])
            .arg(env.path("x")),
        3,
    );
    assert!(
        err.contains("not found") || err.contains("unknown"),
        "{err}"
    );
    assert!(!env.path("x").exists());
}

#[test]
fn registry_copy_between_forms() {
    let Some((reg, env, _, r, v)) = iris_pushed("registry_copy_between_forms") else {
        return;
    };
    let digest = v["digest"].as_str().unwrap().to_string();

    // registry -> registry, same registry: blobs mounted.
    let c = json_ok(env.cmd().args(["copy", &r, &reg.reference("other/iris:2")]));
    assert_eq!(c["digest"], digest.as_str());
    assert!(c["blobs"]["mounted"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["blobs"]["uploaded"], 0);

    // registry -> layout -> archive -> registry: same digest all the way.
    let l2 = env.path("copy.oci");
    let c = json_ok(env.cmd().args(["copy", &r]).arg(&l2));
    assert_eq!(c["digest"], digest.as_str());
    assert_eq!(c["tag"], "1.0.0");
    let a = env.path("copy.tar");
    let c = json_ok(env.cmd().arg("copy").arg(&l2).arg(&a));
    assert_eq!(c["digest"], digest.as_str());
    let c = json_ok(
        env.cmd()
            .arg("copy")
            .arg(&a)
            .arg(reg.reference("third/iris:3")),
    );
    assert_eq!(c["digest"], digest.as_str());
    let i = json_ok(env.cmd().args(["inspect", &reg.reference("third/iris:3")]));
    assert_eq!(i["manifest_digest"], digest.as_str());

    // registry -> another registry: blobs streamed across.
    if let Some(reg2) = Registry::start("registry_copy_between_forms") {
        let c = json_ok(env.cmd().args(["copy", &r, &reg2.reference("x/iris:1")]));
        assert_eq!(c["digest"], digest.as_str());
        assert_eq!(c["blobs"]["mounted"], 0);
        assert!(c["blobs"]["uploaded"].as_u64().unwrap() > 0, "{c}");
        let out = env.path("from-reg2");
        env.pull(&reg2.reference("x/iris:1"), &out, &[]);
        assert_example_file(&out, "docs/model_card.md");
    }

    // `oci-archive:FILE` is an archive whatever its name; skopeo reads it back.
    let named = env.path("iris.ociarchive");
    let c = json_ok(
        env.cmd()
            .args(["copy", &r])
            .arg(format!("oci-archive:{}:rel", named.display())),
    );
    assert_eq!(c["tag"], "rel");
    assert!(named.is_file(), "oci-archive: wrote a directory");
    let i = json_ok(
        env.cmd()
            .arg("inspect")
            .arg(format!("oci-archive:{}:rel", named.display())),
    );
    assert_eq!(i["manifest_digest"], digest.as_str());
    if let Some(skopeo) = crate::support::tool("skopeo") {
        let o = Command::new(skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}:rel", named.display()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(sha256(&o.stdout), digest);
    }

    // Pull from a layout works too (no cache involved).
    let out = env.path("from-layout");
    json_ok(env.cmd().args(["pull"]).arg(&l2).arg("-o").arg(&out));
    assert_example_file(&out, "model/iris.onnx");
}

#[test]
fn registry_corrupted_blob_detected() {
    let Some((reg, env, _, r, _)) = iris_pushed("registry_corrupted_blob_detected") else {
        return;
    };
    let i = json_ok(env.cmd().args(["inspect", &r]));
    let model_layer = i["metadata"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "model")
        .unwrap()["layer"]
        .as_str()
        .unwrap()
        .to_string();
    let data = reg.blob_file(&model_layer);
    let good = fs::read(&data).unwrap();
    // A flipped byte, a longer and a shorter blob, each through the cache and without it:
    // the digest is checked while the blob streams (on the download task) either way.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0xff;
    let mut longer = good.clone();
    longer.extend_from_slice(b"extra");
    let shorter = good[..good.len() - 100].to_vec();
    for (name, bytes, word) in [
        ("flipped", &flipped, "does not match its digest"),
        ("longer", &longer, "larger than its descriptor"),
        ("shorter", &shorter, "truncated"),
    ] {
        fs::write(&data, bytes).unwrap();
        for cache in [true, false] {
            let out = env.path(&format!("out-{name}-{cache}"));
            let mut cmd = env.cmd();
            cmd.args(["pull", &r, "--kind", "model", "-o"]).arg(&out);
            if !cache {
                cmd.arg("--no-cache");
            }
            let out_res = run(&mut cmd);
            assert!(
                !out_res.status.success(),
                "a {name} blob was accepted (cache {cache})"
            );
            let err = String::from_utf8_lossy(&out_res.stderr);
            assert!(err.contains(word), "{name}, cache {cache}: {err}");
            assert!(!out.exists(), "no partial output");
            let left = leftovers(&env.path("."));
            assert!(left.is_empty(), "{name}: left behind {left:?}");
        }
    }
    // Nothing corrupt was cached.
    let cache = env.path("cache/mlart/blobs/sha256");
    if cache.exists() {
        for e in fs::read_dir(&cache).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert_ne!(format!("sha256:{name}"), model_layer, "corrupt blob cached");
        }
    }
    // Mended, the same pull works through the cache and without it.
    fs::write(&data, &good).unwrap();
    env.pull(&r, &env.path("ok1"), &["--kind", "model"]);
    env.pull(&r, &env.path("ok2"), &["--kind", "model", "--no-cache"]);
}

// ---------------- hostile layers ----------------

/// A raw tar entry: name bytes written as-is (tar::Builder refuses hostile names).
fn raw_entry(out: &mut Vec<u8>, name: &str, et: tar::EntryType, data: &[u8], link: Option<&str>) {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            g.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(et);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
}

fn finish_tar(mut v: Vec<u8>) -> Vec<u8> {
    v.extend(std::iter::repeat_n(0u8, 1024));
    v
}

struct Blob {
    bytes: Vec<u8>,
    media_type: String,
    annotations: BTreeMap<String, String>,
}

/// Write a layout holding one image-form manifest with `layers` plus a metadata layer whose
/// files all point at the first layer.
fn hostile_layout(dir: &Path, layers: Vec<Blob>, files: &[&str], form: &str) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |b: &[u8]| -> String {
        let d = sha256(b);
        fs::write(blobs.join(&d[7..]), b).unwrap();
        d
    };
    let mut descs = Vec::new();
    for l in &layers {
        let d = put(&l.bytes);
        descs.push(json!({
            "mediaType": l.media_type, "digest": d, "size": l.bytes.len(), "annotations": l.annotations,
        }));
    }
    let first = descs[0]["digest"].as_str().unwrap().to_string();
    let meta = json!({
        "format_version": 1, "name": "evil", "version": "1", "form": form,
        "files": files.iter().map(|f| json!({
            "path": f, "kind": "model", "size": 1, "sha256": sha256(b"x"), "layer": first,
        })).collect::<Vec<_>>(),
        "models": [],
    });
    let meta_bytes = serde_json::to_vec(&meta).unwrap();
    let config = if form == "image" {
        let mut t = Vec::new();
        raw_entry(
            &mut t,
            "models/mlart.json",
            tar::EntryType::Regular,
            &meta_bytes,
            None,
        );
        let t = finish_tar(t);
        let d = put(&t);
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": t.len(),
            "annotations": {"ai.mlart.kind": "metadata", "org.opencontainers.image.title": "mlart.json.tar"},
        }));
        let c =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(c), "size": c.len()})
    } else {
        json!({"mediaType": "application/vnd.mlart.bundle.config.v1+json", "digest": put(&meta_bytes), "size": meta_bytes.len()})
    };
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": descs,
    }))
    .unwrap();
    let md = put(&m);
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"},
        }]}))
        .unwrap(),
    )
    .unwrap();
}

fn tar_layer(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Blob {
    let mut t = Vec::new();
    for (n, et, d, l) in entries {
        raw_entry(&mut t, n, *et, d, *l);
    }
    Blob {
        bytes: finish_tar(t),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        annotations: [("ai.mlart.kind".to_string(), "model".to_string())].into(),
    }
}

/// A case of `registry_hostile_layers_refused`: an image whose one layer is the tar of
/// `entries`, its metadata listing `files`.
type HostileCase<'a> = (&'a str, Blob, Vec<&'a str>, &'a str);

fn image_case<'a>(
    name: &'a str,
    entries: &[(&str, tar::EntryType, &[u8], Option<&str>)],
    files: &[&'a str],
) -> HostileCase<'a> {
    (name, tar_layer(entries), files.to_vec(), "image")
}

#[test]
fn registry_hostile_layers_refused() {
    let Some(reg) = Registry::start("registry_hostile_layers_refused") else {
        return;
    };
    let env = Env::new();
    // Everything is pulled into <tmp>/work/out; a victim file sits beside it.
    let work = env.path("work");
    fs::create_dir_all(&work).unwrap();
    let abs = env.path("abs-evil");
    let abs_name = abs.display().to_string();
    use tar::EntryType as E;
    let cases: Vec<HostileCase> = vec![
        image_case(
            "dotdot",
            &[("models/../../evil", E::Regular, b"x", None)],
            &["../evil"],
        ),
        image_case(
            "absolute",
            &[(abs_name.as_str(), E::Regular, b"x", None)],
            &["a"],
        ),
        image_case(
            "symlink-escape",
            &[
                ("models/etc", E::Symlink, b"", Some("/etc")),
                ("models/etc/evil-mlart", E::Regular, b"x", None),
            ],
            &["etc/evil-mlart"],
        ),
        image_case(
            "symlink-dotdot",
            &[
                ("models/up", E::Symlink, b"", Some("../..")),
                ("models/up/evil", E::Regular, b"x", None),
            ],
            &["up/evil"],
        ),
        image_case(
            "hardlink-escape",
            &[("models/h", E::Link, b"", Some("/etc/passwd"))],
            &["h"],
        ),
        image_case("device", &[("models/dev", E::Char, b"", None)], &["dev"]),
        image_case("fifo", &[("models/fifo", E::Fifo, b"", None)], &["fifo"]),
        image_case(
            "duplicate",
            &[
                ("models/a", E::Regular, b"x", None),
                ("models/a", E::Regular, b"y", None),
            ],
            &["a"],
        ),
        (
            "raw-title-dotdot",
            Blob {
                bytes: b"x".to_vec(),
                media_type: "application/vnd.mlart.model.v1.raw".into(),
                annotations: [
                    ("ai.mlart.kind".to_string(), "model".to_string()),
                    (
                        "org.opencontainers.image.title".to_string(),
                        "../evil".to_string(),
                    ),
                ]
                .into(),
            },
            vec!["../evil"],
            "artifact",
        ),
    ];
    for (name, blob, files, form) in cases {
        let layout = env.path(&format!("hostile-{name}.oci"));
        hostile_layout(&layout, vec![blob], &files, form);
        let r = reg.reference(&format!("evil/{name}:1"));
        env.push(&layout, &r);
        let out = work.join("out");
        let res = run(env.cmd().args(["pull", &r, "-o"]).arg(&out));
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("refusing") || err.contains("names no file") || err.contains("not"),
            "{name}: {err}"
        );
        assert!(!out.exists(), "{name}: output left behind");
        assert!(!work.join("evil").exists(), "{name}: wrote outside");
        assert!(!env.path("evil").exists(), "{name}: wrote outside");
        assert!(!abs.exists(), "{name}: wrote to an absolute path");
        assert!(
            !Path::new("/etc/evil-mlart").exists(),
            "{name}: wrote into /etc"
        );
        let left: Vec<_> = fs::read_dir(&work).unwrap().collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
    }
}

// ---------------- auth ----------------

#[test]
fn registry_htpasswd_auth() {
    let Some(reg) =
        Registry::start_with("registry_htpasswd_auth", Some(("alice", "s3cret-pw")), None)
    else {
        return;
    };
    let (env, layout) = env_with_iris();
    let r = reg.reference("ml/iris:1.0.0");

    // No credentials: a clear error, exit 2.
    let err = fails(env.cmd().args(["push"]).arg(&layout).arg(&r), 3);
    assert!(
        err.contains("credentials") || err.contains("login"),
        "{err}"
    );

    // Credentials from a Docker config the test writes.
    let cfg = env.path("docker/config.json");
    let auth = base64_encode(b"alice:s3cret-pw");
    fs::write(
        &cfg,
        json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let res = run(env
        .cmd()
        .args(["-vvv", "--json", "push"])
        .arg(&layout)
        .arg(&r));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v: Value = serde_json::from_slice(&res.stdout).unwrap();
    assert!(v["blobs"]["uploaded"].as_u64().unwrap() > 0);
    let all = String::from_utf8_lossy(&res.stderr);
    assert!(
        !all.contains("s3cret-pw") && !all.contains(&auth),
        "a secret was logged"
    );
    let out = env.path("out");
    let res = run(env.cmd().arg("-vvv").args(["pull", &r, "-o"]).arg(&out));
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        !all.contains("s3cret-pw") && !all.contains(&auth),
        "a secret was printed"
    );

    // login / logout with a fresh config.
    let env2 = Env::new();
    let mut c = env2.cmd();
    c.args(["login", &reg.addr, "-u", "alice", "--password-stdin"]);
    let out = pipe_stdin(&mut c, b"wrong\n");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env2.path("docker/config.json").exists());
    let mut c = env2.cmd();
    c.args(["login", &reg.addr, "-u", "alice", "--password-stdin"]);
    let out = pipe_stdin(&mut c, b"s3cret-pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret-pw"));
    let cfg2 = env2.path("docker/config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&cfg2).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let conf: Value = read_json_file(&cfg2);
    assert_eq!(conf["auths"][reg.addr.as_str()]["auth"], auth.as_str());
    let t = json_ok(env2.cmd().args(["tags", &reg.reference("ml/iris")]));
    assert_eq!(t["tags"], json!(["1.0.0"]));
    json_ok(env2.cmd().args(["logout", &reg.addr]));
    let conf: Value = read_json_file(&cfg2);
    assert!(conf["auths"].get(reg.addr.as_str()).is_none());
    fails(env2.cmd().args(["tags", &reg.reference("ml/iris")]), 3);
}

/// Credentials in a Docker credential helper (`credsStore`), as Docker Desktop sets it up: a
/// registry the helper has nothing for is anonymous (the helper's "credentials not found" is no
/// error); `login` stores through the helper and keeps the secret out of config.json; `logout`
/// erases it there.
#[test]
fn registry_credential_helper() {
    let Some(reg) = Registry::start_with(
        "registry_credential_helper",
        Some(("carol", "h3lper-pw")),
        None,
    ) else {
        return;
    };
    let env = Env::new();
    // A fake docker-credential-mlarttest keeping one credential in a file.
    let bin = env.path("bin");
    fs::create_dir_all(&bin).unwrap();
    let store = env.path("helper-store.json");
    let helper = bin.join("docker-credential-mlarttest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\nS='{}'\ncase \"$1\" in\n  store) cat > \"$S\" ;;\n  get) cat >/dev/null; if [ -f \"$S\" ]; then cat \"$S\"; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  erase) cat >/dev/null; rm -f \"$S\" ;;\n  *) exit 1 ;;\nesac\n",
            store.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cmd = || {
        let mut c = env.cmd();
        c.env("PATH", &path);
        c
    };
    let cfg = env.path("docker/config.json");
    fs::write(&cfg, r#"{"credsStore": "mlarttest"}"#).unwrap();
    let repo = reg.reference("ml/iris");

    // Nothing stored: anonymous, so the registry's own refusal, not a helper failure.
    let err = fails(cmd().args(["tags", &repo]), 3);
    assert!(err.contains("asks for credentials"), "{err}");
    assert!(!err.contains("helper"), "{err}");

    // login stores through the helper; config.json only records the registry.
    let mut c = cmd();
    c.args([
        "--json",
        "login",
        &reg.addr,
        "-u",
        "carol",
        "--password-stdin",
    ]);
    let out = pipe_stdin(&mut c, b"h3lper-pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stored_in"], "docker-credential-mlarttest");
    let stored: Value = read_json_file(&store);
    assert_eq!(
        stored,
        json!({"ServerURL": reg.addr.clone(), "Username": "carol", "Secret": "h3lper-pw"})
    );
    let conf = fs::read_to_string(&cfg).unwrap();
    assert!(!conf.contains("h3lper-pw"), "{conf}");
    let conf: Value = serde_json::from_str(&conf).unwrap();
    assert_eq!(conf["credsStore"], "mlarttest");
    assert_eq!(conf["auths"][reg.addr.as_str()], json!({}));

    // The credentials come from the helper, and are never logged.
    let layout = env.path("iris.oci");
    build_iris(&env, &layout);
    let res = run(cmd()
        .args(["-vvv", "--json", "push"])
        .arg(&layout)
        .arg(reg.reference("ml/iris:1.0.0")));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stdout)
    );
    assert!(!all.contains("h3lper-pw"), "a secret was logged");
    let t = json_ok(cmd().args(["tags", &repo]));
    assert_eq!(t["tags"], json!(["1.0.0"]));

    // logout erases them from the helper.
    let v = json_ok(cmd().args(["logout", &reg.addr]));
    assert_eq!(v["removed"], true);
    assert!(!store.exists());
    let err = fails(cmd().args(["tags", &repo]), 3);
    assert!(err.contains("asks for credentials"), "{err}");
}

fn pipe_stdin(c: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

// ---------------- interop ----------------

#[test]
fn registry_skopeo_interop() {
    if !have("skopeo", "registry_skopeo_interop") {
        return;
    }
    let Some((reg, env, layout, r, v)) = iris_pushed("registry_skopeo_interop") else {
        return;
    };
    let digest = v["digest"].as_str().unwrap().to_string();

    // What mlart pushed, skopeo pulls with the same manifest digest.
    let sk = env.path("sk");
    let st = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
        .arg(format!("docker://{r}"))
        .arg(format!("oci:{}:t", sk.display()))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let idx: Value = read_json_file(&sk.join("index.json"));
    assert_eq!(idx["manifests"][0]["digest"], digest.as_str());

    // What skopeo pushes, mlart pulls.
    let st = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1.0.0", layout.display()))
        .arg(format!("docker://{}", reg.reference("sk/iris:1")))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = env.path("out");
    let p = env.pull(&reg.reference("sk/iris:1"), &out, &[]);
    assert_eq!(p["digest"], digest.as_str());
    assert_example_file(&out, "train.py");
}

// ---------------- faults ----------------

/// A TCP proxy in front of the registry. It counts the bytes it relays (both ways, all
/// connections) and cuts the connection that crosses each scheduled threshold. `stop()` closes
/// the listener and every connection.
struct FaultyProxy {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    plan: std::sync::Arc<std::sync::Mutex<(usize, std::collections::VecDeque<usize>)>>,
}

impl FaultyProxy {
    fn start(upstream: &str) -> FaultyProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicUsize::new(0));
        let plan = Arc::new(Mutex::new((
            0usize,
            std::collections::VecDeque::<usize>::new(),
        )));
        let (stop2, cut2, plan2) = (stop.clone(), cut.clone(), plan.clone());
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            let started = Instant::now();
            // Bounded in time: the proxy stops by itself after two minutes.
            while !stop2.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let dead = Arc::new(AtomicBool::new(false));
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (stop, cut, plan, dead) =
                        (stop2.clone(), cut2.clone(), plan2.clone(), dead.clone());
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if stop.load(Ordering::SeqCst) || dead.load(Ordering::SeqCst) {
                                break;
                            }
                            let k = match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(k) => k,
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut =>
                                {
                                    continue
                                }
                                Err(_) => break,
                            };
                            let send = {
                                let mut p = plan.lock().unwrap();
                                let before = p.0;
                                p.0 += k;
                                match p.1.front().copied() {
                                    Some(t) if t <= p.0 => {
                                        p.1.pop_front();
                                        Some(t.saturating_sub(before).min(k))
                                    }
                                    _ => None,
                                }
                            };
                            if let Some(part) = send {
                                let _ = to.write_all(&buf[..part]);
                                cut.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                        dead.store(true, Ordering::SeqCst);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        FaultyProxy {
            addr,
            stop,
            cut,
            plan,
        }
    }

    /// Cut the connections that cross these byte counts, counted from now.
    fn schedule(&self, thresholds: &[usize]) {
        let mut p = self.plan.lock().unwrap();
        p.0 = 0;
        p.1 = thresholds.iter().copied().collect();
    }

    fn cuts(&self) -> usize {
        self.cut.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A copy of the example with a 3 MiB data file, so blobs span several connections.
fn big_project() -> tempfile::TempDir {
    let t = crate::support::example_copy();
    let data = noise(3 << 20, 0x9e3779b97f4a7c15);
    fs::write(t.path().join("samples/samples.json"), data).unwrap();
    t
}

/// `big_project` bundled into `<env>/big.oci`: the project (kept alive) and the layout.
fn big_layout(env: &Env) -> (tempfile::TempDir, PathBuf) {
    let project = big_project();
    let layout = env.path("big.oci");
    json_ok(
        env.cmd()
            .current_dir(project.path())
            .arg("bundle")
            .arg("-o")
            .arg(&layout),
    );
    (project, layout)
}

#[test]
fn registry_faults_retried() {
    let Some(reg) = Registry::start("registry_faults_retried") else {
        return;
    };
    let env = Env::new();
    let (project, layout) = big_layout(&env);
    let proxy = FaultyProxy::start(&reg.addr);
    let r = format!("{}/ml/big:1", proxy.addr);
    // Cut the big upload twice.
    proxy.schedule(&[512 << 10, (3 << 20) + (1 << 20)]);
    let v = env.push(&layout, &r);
    let digest = v["digest"].as_str().unwrap().to_string();
    // The tag is there, on the real registry.
    let i = json_ok(env.cmd().args(["inspect", &reg.reference("ml/big:1")]));
    assert_eq!(i["manifest_digest"], digest.as_str());

    let after_push = proxy.cuts();
    assert!(after_push > 0, "the proxy never cut a push connection");
    // Cut the big download twice (resumed with Range requests).
    proxy.schedule(&[1 << 20, 2 << 20]);
    let out = env.path("out");
    let p = env.pull(&r, &out, &["--no-cache"]);
    assert_eq!(p["digest"], digest.as_str());
    assert_eq!(
        fs::read(out.join("samples/samples.json")).unwrap(),
        fs::read(project.path().join("samples/samples.json")).unwrap()
    );
    assert!(
        proxy.cuts() > after_push,
        "the proxy never cut a pull connection"
    );

    // The registry stays down: a clean error, no tag moved, no partial output.
    proxy.stop();
    std::thread::sleep(Duration::from_millis(300));
    let down = format!("{}/ml/big:2", proxy.addr);
    let err = fails(
        env.cmd()
            .env("MLART_RETRIES", "2")
            .args(["push"])
            .arg(&layout)
            .arg(&down),
        3,
    );
    assert!(!err.contains("panicked"), "{err}");
    let t = json_ok(env.cmd().args(["tags", &reg.reference("ml/big")]));
    assert_eq!(t["tags"], json!(["1"]), "no tag moved");
    let out2 = env.path("out2");
    fails(
        env.cmd()
            .env("MLART_RETRIES", "2")
            .args(["pull", &r, "-o"])
            .arg(&out2),
        3,
    );
    assert!(!out2.exists());
}

// ---------------- TLS ----------------

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn registry_tls_with_test_ca() {
    if !have("openssl", "registry_tls_with_test_ca") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mlart test CA",
    ]);
    openssl(d, &a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(d, &a);
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let Some(reg) = Registry::start_with(
        "registry_tls_with_test_ca",
        None,
        Some((&d.join("server.crt"), &d.join("server.key"))),
    ) else {
        return;
    };
    let (env, layout) = env_with_iris();
    let r = reg.reference("ml/iris:1.0.0");
    let ca = d.join("ca.pem");
    let v = json_ok(
        env.cmd()
            .args(["push"])
            .arg(&layout)
            .arg(&r)
            .arg("--ca-file")
            .arg(&ca),
    );
    let digest = v["digest"].as_str().unwrap().to_string();
    let i = json_ok(env.cmd().args(["inspect", &r, "--ca-file"]).arg(&ca));
    assert_eq!(i["manifest_digest"], digest.as_str());
    let out = env.path("out");
    json_ok(
        env.cmd()
            .args(["pull", &r, "--kind", "model", "--ca-file"])
            .arg(&ca)
            .arg("-o")
            .arg(&out),
    );
    assert!(out.join("model/iris.onnx").is_file());
    // Plain HTTP against a TLS registry fails cleanly.
    fails(
        env.cmd()
            .args(["tags", &reg.reference("ml/iris"), "--plain-http"]),
        3,
    );
}

/// The example bundled in the artifact form (`<env>/iris-artifact.oci`) and pushed to
/// `reg` as ml/iris-artifact:1.0.0: the environment, the layout, the reference, push's JSON.
fn artifact_pushed(reg: &Registry) -> (Env, PathBuf, String, Value) {
    let env = Env::new();
    let layout = env.path("iris-artifact.oci");
    json_ok(
        env.cmd()
            .current_dir(example())
            .args(["bundle", "--format", "artifact", "-o"])
            .arg(&layout),
    );
    let r = reg.reference("ml/iris-artifact:1.0.0");
    let v = env.push(&layout, &r);
    (env, layout, r, v)
}

#[test]
fn registry_artifact_form() {
    let Some(reg) = Registry::start("registry_artifact_form") else {
        return;
    };
    let (env, _, r, v) = artifact_pushed(&reg);
    let i = json_ok(env.cmd().args(["inspect", &r]));
    assert_eq!(i["manifest_digest"], v["digest"]);
    assert_eq!(i["artifact_type"], "application/vnd.mlart.bundle.v1+json");
    let out = env.path("out");
    env.pull(&r, &out, &[]);
    for f in i["metadata"]["files"].as_array().unwrap() {
        let f = f["path"].as_str().unwrap();
        assert_example_file(&out, f);
    }
    let out2 = env.path("model");
    let p = env.pull(&r, &out2, &["--kind", "model"]);
    assert_eq!(p["layers"]["needed"], 1);
    assert_eq!(tree(&out2), vec!["model/iris.onnx".to_string()]);
}

/// The streaming sink behind `bundle --push`: building straight into the registry gives the
/// same manifest digest as building into a layout.
#[test]
fn registry_streaming_sink() {
    let Some((reg, env, layout)) = registry_with_iris("registry_streaming_sink") else {
        return;
    };
    let index: Value = read_json_file(&layout.join("index.json"));
    let want = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let spec = mlart::spec::load(&example().join("mlart.yaml")).unwrap();
    let files =
        mlart::build::filelist::FileList::of(mlart::build::collect::collect(&spec, &[]).unwrap())
            .unwrap();
    let (reference, _) =
        mlart::format::reference::parse_reference(&reg.reference("ml/streamed:1.0.0")).unwrap();
    let remote = mlart::registry::Remote::with_auth(
        reference,
        &mlart::registry::Options::default(),
        oci_client::secrets::RegistryAuth::Anonymous,
    )
    .unwrap();
    let mut sink = mlart::store::registry_sink::RegistrySink::new(remote);
    let built = mlart::build::bundle::build(
        &spec,
        &files,
        &mlart::build::bundle::Options::default(),
        &mut sink,
        &|_| {},
    )
    .unwrap();
    let report = sink
        .push_manifest(
            &built.manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
    assert_eq!(report.digest, want);
    assert_eq!(built.manifest_digest.to_string(), want);
    let out = env.path("out");
    env.pull(&reg.reference("ml/streamed:1.0.0"), &out, &[]);
    assert_example_file(&out, "train.py");

    // The CLI: `bundle --push` with no tag in REF tags the spec's version, same digest,
    // and writes nothing locally.
    let work = env.path("work");
    fs::create_dir_all(&work).unwrap();
    let r = json_ok(
        env.cmd()
            .current_dir(&work)
            .args(["bundle", "-f"])
            .arg(example().join("mlart.yaml"))
            .args(["--push", &reg.reference("ml/cli")]),
    );
    assert_eq!(r["digest"], want);
    assert!(
        r["reference"].as_str().unwrap().ends_with("ml/cli:1.0.0"),
        "{r}"
    );
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0, "no local output");
    let tags = json_ok(env.cmd().args(["tags", &reg.reference("ml/cli")]));
    assert!(tags.to_string().contains("1.0.0"), "{tags}");
    // a bad spec pushes nothing
    let bad = env.path("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(
        bad.join("mlart.yaml"),
        "name: bad\nversion: '1'\nmodel: [missing.onnx]\n",
    )
    .unwrap();
    let o = env
        .cmd()
        .current_dir(&bad)
        .args(["bundle", "--push", &reg.reference("ml/bad")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = env
        .cmd()
        .args(["tags", &reg.reference("ml/bad")])
        .output()
        .unwrap();
    assert!(!o.status.success() || !String::from_utf8_lossy(&o.stdout).contains('1'));
}

// ---------------- ORAS Python SDK ----------------

/// The venv's Python with the ORAS SDK (`oras`, scripts/requirements-test.txt), or None (a
/// skip; under MLART_REQUIRE_INTEROP=1 a missing venv or package fails the test).
fn oras_python(test: &str) -> Option<PathBuf> {
    let py = crate::support::python()?;
    let ok = Command::new(&py)
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing(
            &format!("{test}: the Python package oras is required (MLART_REQUIRE_INTEROP=1) but not in {}: run scripts/test", py.display()),
            &format!("SKIP {test}: the Python package oras is not installed"),
        );
        return None;
    }
    Some(py)
}

/// Run a Python snippet (argv after it: `args`), expect success, return stdout.
fn run_python(py: &Path, cwd: &Path, code: &str, args: &[&str]) -> String {
    let o = Command::new(py)
        .current_dir(cwd)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What mlart pushes in the artifact form, the ORAS Python SDK pulls: one file per layer,
/// named by its title (raw model and data files at their project paths; the other kinds as
/// their `<kind>.tar.gz` blobs). And what the SDK pushes (a plain ORAS artifact, no mlart
/// metadata) `mlart copy` mirrors with the same digests, while `mlart pull` refuses it cleanly.
#[test]
fn registry_oras_python_interop() {
    let test = "registry_oras_python_interop";
    let Some(py) = oras_python(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let (env, layout, r, v) = artifact_pushed(&reg);
    let digest = v["digest"].as_str().unwrap();
    let manifest: Value = read_json(&layout, digest);

    // oras pull: every layer lands as a file named by its title, byte for byte.
    let out = env.path("oras-out");
    let pulled = run_python(
        &py,
        env.tmp.path(),
        "import json, sys, oras.client\n\
         c = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\n\
         print(json.dumps(c.pull(target=sys.argv[2], outdir=sys.argv[3])))\n",
        &[&reg.addr, &r, out.to_str().unwrap()],
    );
    let pulled: Vec<String> = serde_json::from_str(pulled.trim()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(pulled.len(), layers.len(), "{pulled:?}");
    let mut titles = Vec::new();
    for l in layers {
        let title = l["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap();
        let data = fs::read(out.join(title)).unwrap_or_else(|e| panic!("{title}: {e}"));
        assert_eq!(sha256(&data), l["digest"].as_str().unwrap(), "{title}");
        titles.push(title.to_string());
    }
    titles.sort();
    assert_eq!(tree(&out), titles, "nothing but the layers' titles");
    for f in ["model/iris.onnx", "samples/samples.json"] {
        assert_example_file(&out, f);
    }

    // oras push of a plain file: mlart copies it with the same digests ...
    let src = env.path("oras-src");
    fs::create_dir_all(&src).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("weights.bin"), &payload).unwrap();
    let foreign = reg.reference("oras/plain:1");
    let pushed_digest = run_python(
        &py,
        &src,
        "import sys, oras.client\n\
         c = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)\n\
         r = c.push(files=['weights.bin'], target=sys.argv[2], quiet=True)\n\
         print(r.headers['Docker-Content-Digest'])\n",
        &[&reg.addr, &foreign],
    );
    let pushed_digest = pushed_digest.trim();
    assert!(pushed_digest.starts_with("sha256:"), "{pushed_digest}");
    let copied = env.path("oras-copy.oci");
    let c = json_ok(env.cmd().args(["copy", &foreign]).arg(&copied));
    assert_eq!(c["digest"], pushed_digest);
    assert_eq!(
        fs::read(copied.join("blobs/sha256").join(&sha256(&payload)[7..])).unwrap(),
        payload
    );
    // ... and back into the registry under another name, still the same manifest.
    let again = json_ok(
        env.cmd()
            .args(["copy", &foreign, &reg.reference("oras/mirror:1")]),
    );
    assert_eq!(again["digest"], pushed_digest);

    // mlart pull reads model artifacts (its own, ModelPack, KitOps, Docker): a plain ORAS
    // artifact is none; a clear error naming its media types, exit 2, nothing written.
    let refused = env.path("refused");
    let err = fails(env.cmd().args(["pull", &foreign, "-o"]).arg(&refused), 2);
    assert!(
        err.contains("not a model artifact mlart reads")
            && err.contains("application/vnd.unknown.config.v1+json"),
        "{err}"
    );
    assert!(!refused.exists());
}

/// A registry (or a proxy in front of it) that refuses large request bodies with 413: the
/// one-request upload falls back to the chunked one, and the push completes.
#[test]
fn registry_large_body_refused_goes_chunked() {
    use crate::httpproxy::{HttpProxy, Reply};
    let Some(reg) = Registry::start("registry_large_body_refused_goes_chunked") else {
        return;
    };
    let env = Env::new();
    let (project, layout) = big_layout(&env);
    let proxy = HttpProxy::start(&reg.addr, |req| {
        (req.method == "PUT" && req.path().contains("/blobs/uploads/") && req.body.len() > 1 << 20)
            .then(|| Reply::status(413).body("text/plain", b"Request Entity Too Large".to_vec()))
    });
    let r = format!("{}/ml/big:1", proxy.addr);
    let v = env.push(&layout, &r);
    let seen = proxy.seen();
    let refused = seen.iter().filter(|s| s.injected == Some(413)).count();
    assert!(
        refused >= 1,
        "no body was large enough to be refused: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == "PATCH" && s.injected.is_none()),
        "no chunked upload after the 413: {seen:?}"
    );
    // What the registry holds is the bundle, byte for byte.
    let out = env.path("out");
    let p = env.pull(&reg.reference("ml/big:1"), &out, &["--no-cache"]);
    assert_eq!(p["digest"], v["digest"]);
    assert_eq!(
        fs::read(out.join("samples/samples.json")).unwrap(),
        fs::read(project.path().join("samples/samples.json")).unwrap()
    );
}

/// 500/503 answers on every kind of request (blob HEAD, upload, manifest PUT, manifest and
/// blob GET) are retried; the push and the pull complete.
#[test]
fn registry_server_errors_retried() {
    use crate::httpproxy::{HttpProxy, Reply};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let Some((reg, env, layout)) = registry_with_iris("registry_server_errors_retried") else {
        return;
    };
    // The first request of each (method, kind) gets a 500, the second a 503, the third a 429.
    let count: Mutex<HashMap<(String, &'static str), u32>> = Mutex::new(HashMap::new());
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        let kind = if req.path().contains("/blobs/uploads/") {
            "upload"
        } else if req.path().contains("/blobs/") {
            "blob"
        } else if req.path().contains("/manifests/") {
            "manifest"
        } else {
            return None;
        };
        let mut c = count.lock().unwrap();
        let n = c.entry((req.method.clone(), kind)).or_insert(0);
        *n += 1;
        match *n {
            1 => Some(Reply::status(500)),
            2 => Some(Reply::status(503).body("text/plain", b"try later".to_vec())),
            3 => Some(Reply::status(429).header("Retry-After", "1")),
            _ => None,
        }
    });
    push_then_pull(&env, &layout, &proxy.addr, || {});
    let seen = proxy.seen();
    for (m, k) in [
        ("HEAD", "/blobs/"),
        ("PUT", "/manifests/"),
        ("GET", "/blobs/"),
    ] {
        assert!(
            seen.iter()
                .any(|s| s.method == m && s.target.contains(k) && s.injected == Some(503)),
            "no 503 for {m} {k}: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|s| s.method == m && s.target.contains(k) && s.injected == Some(429)),
            "no 429 for {m} {k}: {seen:?}"
        );
    }
}

/// Push `layout` to ml/iris:1 at `addr` (a proxy in front of the registry), run `between`,
/// then pull it (`--no-cache`) into `<env>/out`: the pull gives the pushed digest and the
/// example's model.
fn push_then_pull(env: &Env, layout: &Path, addr: &str, between: impl FnOnce()) {
    let r = format!("{addr}/ml/iris:1");
    let v = env.push(layout, &r);
    between();
    let out = env.path("out");
    let p = env.pull(&r, &out, &["--no-cache"]);
    assert_eq!(p["digest"], v["digest"]);
    assert_example_file(&out, "model/iris.onnx");
}

// ---------------- Retry-After ----------------

/// The kind of a registry request, and what its retry has in common with it (the blob upload's
/// PUT carries `?digest=`; the session URL differs per try).
fn retry_key(method: &str, target: &str) -> Option<(&'static str, String)> {
    let path = target.split('?').next().unwrap_or("");
    match method {
        "PUT" if path.contains("/blobs/uploads/") => {
            let d = target.split("digest=").nth(1)?;
            Some(("upload PUT", d.split('&').next()?.to_string()))
        }
        "HEAD" if path.contains("/blobs/") => Some(("blob HEAD", target.into())),
        "GET" if path.contains("/blobs/") => Some(("blob GET", target.into())),
        "GET" if path.contains("/manifests/") => Some(("manifest GET", target.into())),
        "PUT" if path.contains("/manifests/") => Some(("manifest PUT", target.into())),
        _ => None,
    }
}

/// `secs` (Unix time) as an HTTP-date, by `date` (not by mlart's parser): `imf` (`Sun, 06 Nov
/// 1994 08:49:37 GMT`) or `asctime` (`Sun Nov  6 08:49:37 1994`).
fn http_date(secs: u64, form: &str) -> String {
    let fmt = match form {
        "imf" => "+%a, %d %b %Y %H:%M:%S GMT",
        _ => "+%a %b %e %H:%M:%S %Y",
    };
    let out = Command::new("date")
        .env("LC_ALL", "C")
        .args(["-u", "-d", &format!("@{secs}"), fmt])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

type Inject = Box<dyn Fn() -> crate::httpproxy::Reply + Send + Sync>;

/// Push iris, then pull it (`--no-cache`), through a proxy that answers the first request of
/// each kind in `inject` itself. Checks the pull gives the pushed digest and model, and that
/// each answered request was tried again no sooner than `min` after (and not absurdly later).
/// `MLART_RETRY_BASE_MS` is 20 (`Env::cmd`): only the registry's `Retry-After` explains a
/// wait of seconds. Returns the gaps seen, by kind.
fn retry_after_round(
    name: &str,
    inject: Vec<(&'static str, Inject)>,
    min: Duration,
) -> Vec<(&'static str, Duration)> {
    use crate::httpproxy::HttpProxy;
    use std::collections::HashSet;
    use std::sync::Mutex;
    let Some((reg, env, layout)) = registry_with_iris(name) else {
        return Vec::new();
    };
    let kinds: Vec<&'static str> = inject.iter().map(|(k, _)| *k).collect();
    let done: Mutex<HashSet<&'static str>> = Mutex::new(HashSet::new());
    // GETs are answered for the pull only (push reads the tag first, to say when it moves).
    let pulling_flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = pulling_flag.clone();
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        let (kind, _) = retry_key(&req.method, &req.target)?;
        if kind.ends_with(" GET") && !flag.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let (_, reply) = inject.iter().find(|(k, _)| *k == kind)?;
        done.lock().unwrap().insert(kind).then(reply)
    });
    let mut pulling = Instant::now();
    push_then_pull(&env, &layout, &proxy.addr, || {
        pulling = Instant::now();
        pulling_flag.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let seen = proxy.seen();
    let mut gaps = Vec::new();
    for kind in kinds {
        let (i, first) = seen
            .iter()
            .enumerate()
            .find(|(_, s)| {
                s.injected.is_some() && retry_key(&s.method, &s.target).unwrap().0 == kind
            })
            .unwrap_or_else(|| panic!("{name}: no {kind} answered by the proxy: {seen:?}"));
        if kind.ends_with(" GET") {
            assert!(
                first.at > pulling,
                "{name}: the {kind} answered was not the pull's"
            );
        }
        let key = retry_key(&first.method, &first.target);
        let again = seen[i + 1..]
            .iter()
            .find(|s| retry_key(&s.method, &s.target) == key)
            .unwrap_or_else(|| panic!("{name}: {kind} was not tried again: {seen:?}"));
        let gap = again.at - first.at;
        assert!(
            gap >= min,
            "{name}: {kind} tried again after {gap:?} (< {min:?})"
        );
        assert!(
            gap < min + Duration::from_secs(5),
            "{name}: {kind} tried again only after {gap:?}"
        );
        gaps.push((kind, gap));
    }
    gaps
}

/// 429 with `Retry-After: 2` on a blob upload (push) and on the manifest GET (pull; there with
/// the TOOMANYREQUESTS error body distribution sends): each is tried again 2 s later, not after
/// the 20 ms backoff, and push and pull complete.
#[test]
fn registry_retry_after_seconds_honoured() {
    use crate::httpproxy::Reply;
    let envelope =
        br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down","detail":null}]}"#;
    retry_after_round(
        "registry_retry_after_seconds_honoured",
        vec![
            (
                "upload PUT",
                Box::new(|| Reply::status(429).header("Retry-After", "2")),
            ),
            (
                "manifest GET",
                Box::new(|| {
                    Reply::status(429)
                        .header("Retry-After", "2")
                        .body("application/json", envelope.to_vec())
                }),
            ),
        ],
        Duration::from_secs(2),
    );
}

/// `Retry-After` as an HTTP-date, 3 s ahead: IMF-fixdate on a blob upload, asctime on the
/// manifest GET. Whole seconds, so the wait is at least 2 s.
#[test]
fn registry_retry_after_http_date_honoured() {
    use crate::httpproxy::Reply;
    retry_after_round(
        "registry_retry_after_http_date_honoured",
        vec![
            (
                "upload PUT",
                Box::new(|| {
                    Reply::status(429).header("Retry-After", &http_date(unix_now() + 3, "imf"))
                }),
            ),
            (
                "manifest GET",
                Box::new(|| {
                    Reply::status(429).header("Retry-After", &http_date(unix_now() + 3, "asctime"))
                }),
            ),
        ],
        Duration::from_secs(2),
    );
}

/// 503 with `Retry-After: 2` on a blob HEAD and a blob upload (push) and a blob GET (pull).
#[test]
fn registry_retry_after_on_503() {
    use crate::httpproxy::Reply;
    let r = || -> Inject {
        Box::new(|| {
            Reply::status(503)
                .header("Retry-After", "2")
                .body("text/plain", b"down for maintenance".to_vec())
        })
    };
    retry_after_round(
        "registry_retry_after_on_503",
        vec![("blob HEAD", r()), ("upload PUT", r()), ("blob GET", r())],
        Duration::from_secs(2),
    );
}

/// Values that are no delay: words, negative, fractional, empty, numbers too large to be
/// meant (over a day, over u64). Each kind of request gets all of them, one per try: the
/// ordinary backoff (20 ms doubling) applies, and push and pull complete.
#[test]
fn registry_retry_after_garbage_falls_back_to_backoff() {
    use crate::httpproxy::{HttpProxy, Reply};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let Some((reg, env, layout)) =
        registry_with_iris("registry_retry_after_garbage_falls_back_to_backoff")
    else {
        return;
    };
    const GARBAGE: [&str; 5] = ["soon", "-5", "", "99999999999999999999999", "1000000000"];
    let count: Mutex<HashMap<&'static str, usize>> = Mutex::new(HashMap::new());
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        let (kind, _) = retry_key(&req.method, &req.target)?;
        let mut c = count.lock().unwrap();
        let n = c.entry(kind).or_insert(0);
        *n += 1;
        let v = GARBAGE.get(*n - 1)?;
        // 429 on uploads and GETs, 503 on HEADs and manifest PUTs.
        let status = if matches!(kind, "blob HEAD" | "manifest PUT") {
            503
        } else {
            429
        };
        Some(Reply::status(status).header("Retry-After", v))
    });
    let t = Instant::now();
    push_then_pull(&env, &layout, &proxy.addr, || {});
    let took = t.elapsed();
    let seen = proxy.seen();
    for kind in [
        "upload PUT",
        "blob HEAD",
        "manifest PUT",
        "manifest GET",
        "blob GET",
    ] {
        let n = seen
            .iter()
            .filter(|s| s.injected.is_some() && retry_key(&s.method, &s.target).unwrap().0 == kind)
            .count();
        assert_eq!(n, GARBAGE.len(), "{kind}: {seen:?}");
    }
    // Every answered request was tried again within the ordinary backoff.
    for (i, s) in seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.injected.is_some())
    {
        let key = retry_key(&s.method, &s.target);
        let again = seen[i + 1..]
            .iter()
            .find(|x| retry_key(&x.method, &x.target) == key)
            .unwrap_or_else(|| panic!("{s:?} was not tried again"));
        assert!(
            again.at - s.at < Duration::from_millis(1500),
            "{s:?} tried again after {:?}",
            again.at - s.at
        );
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
}

/// A `Retry-After` above `MLART_RETRY_AFTER_MAX` (5 s here): the command gives up at once
/// (not after the hour asked, not after retries), exit 2 as other registry failures, one
/// paragraph naming the registry, the status and the wait; no tag moved, no output left.
#[test]
fn registry_retry_after_above_the_cap_fails_fast() {
    use crate::httpproxy::{HttpProxy, Reply};
    use std::sync::{Arc, Mutex};
    let Some((reg, env, layout)) =
        registry_with_iris("registry_retry_after_above_the_cap_fails_fast")
    else {
        return;
    };
    env.push(&layout, reg.reference("ml/iris:1"));
    // What the proxy answers next: (kind, reply); one request each, then forwarded.
    type Plan = Option<(&'static str, Reply)>;
    let plan: Arc<Mutex<Plan>> = Arc::new(Mutex::new(None));
    let plan2 = plan.clone();
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        let (kind, _) = retry_key(&req.method, &req.target)?;
        let mut p = plan2.lock().unwrap();
        if p.as_ref().is_some_and(|(k, _)| *k == kind) {
            return p.take().map(|(_, r)| r);
        }
        None
    });
    let check = |what: &str,
                 kind: &'static str,
                 reply: Reply,
                 cmd: &mut Command,
                 status: &str,
                 secs: &[u64]| {
        *plan.lock().unwrap() = Some((kind, reply));
        let before = proxy.seen().len();
        let t = Instant::now();
        let err = fails(cmd.env("MLART_RETRY_AFTER_MAX", "5"), 3);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
        assert!(plan.lock().unwrap().is_none(), "{what}: no {kind} was sent");
        for want in [
            format!("the registry {} answered {status}", proxy.addr),
            "MLART_RETRY_AFTER_MAX".to_string(),
            "try again later".to_string(),
        ] {
            assert!(err.contains(&want), "{what}: {want:?} not in {err}");
        }
        assert!(
            secs.iter()
                .any(|n| err.contains(&format!("asks to retry after {n} s"))),
            "{what}: not after {secs:?} s: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        // Given up at once: the request answered with the long wait was not tried again.
        let seen = proxy.seen();
        let (i, s) = seen
            .iter()
            .enumerate()
            .skip(before)
            .find(|(_, s)| s.injected.is_some())
            .unwrap();
        let key = retry_key(&s.method, &s.target);
        assert!(
            !seen[i + 1..]
                .iter()
                .any(|x| retry_key(&x.method, &x.target) == key),
            "{what}: tried again: {seen:?}"
        );
    };

    // A blob upload to a new repository: nothing tagged there.
    let r = format!("{}/ml/fresh:1", proxy.addr);
    check(
        "upload",
        "upload PUT",
        Reply::status(429).header("Retry-After", "3600"),
        env.cmd().args(["push"]).arg(&layout).arg(&r),
        "429 Too Many Requests",
        &[3600],
    );
    let out = run(env.cmd().args(["inspect", &reg.reference("ml/fresh:1")]));
    assert!(!out.status.success(), "ml/fresh:1 was tagged");

    // The manifest PUT of a new tag (the blobs are there): the tag does not appear.
    let r2 = format!("{}/ml/iris:2", proxy.addr);
    check(
        "manifest PUT",
        "manifest PUT",
        Reply::status(503).header("Retry-After", "120"),
        env.cmd().args(["push"]).arg(&layout).arg(&r2),
        "503 Service Unavailable",
        &[120],
    );
    let t = json_ok(env.cmd().args(["tags", &reg.reference("ml/iris")]));
    assert_eq!(t["tags"], json!(["1"]), "no tag moved");

    // Pull: the manifest GET asks for two hours (as an HTTP-date), then a blob GET for an hour.
    let r1 = format!("{}/ml/iris:1", proxy.addr);
    let out = env.path("out");
    let date = http_date(unix_now() + 7200, "imf");
    check(
        "manifest GET",
        "manifest GET",
        Reply::status(429).header("Retry-After", &date),
        env.cmd().args(["pull", &r1, "--no-cache", "-o"]).arg(&out),
        "429 Too Many Requests",
        // A whole-second date: 7200 s ahead when written, a moment less when read.
        &[7199, 7200],
    );
    assert!(!out.exists());
    check(
        "blob GET",
        "blob GET",
        Reply::status(429).header("Retry-After", "3600"),
        env.cmd().args(["pull", &r1, "--no-cache", "-o"]).arg(&out),
        "429 Too Many Requests",
        &[3600],
    );
    assert!(!out.exists());
    assert!(
        leftovers(&env.path("")).is_empty(),
        "{:?}",
        leftovers(&env.path(""))
    );
}

/// Ctrl-C during a long `Retry-After` wait (60 s asked, cap raised to 120): the push stops
/// within a second or so with exit 130, and no tag appears.
#[test]
fn registry_retry_after_wait_ends_on_ctrl_c() {
    use crate::httpproxy::{HttpProxy, Reply};
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some((reg, env, layout)) = registry_with_iris("registry_retry_after_wait_ends_on_ctrl_c")
    else {
        return;
    };
    let once = AtomicBool::new(false);
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        let (kind, _) = retry_key(&req.method, &req.target)?;
        (kind == "upload PUT" && !once.swap(true, Ordering::SeqCst))
            .then(|| Reply::status(429).header("Retry-After", "60"))
    });
    let child = env
        .cmd()
        .env("MLART_RETRY_AFTER_MAX", "120")
        .args(["push"])
        .arg(&layout)
        .arg(format!("{}/ml/iris:1", proxy.addr))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !proxy.seen().iter().any(|s| s.injected.is_some()) {
        assert!(t.elapsed() < Duration::from_secs(30), "no upload");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let out = run(env.cmd().args(["inspect", &reg.reference("ml/iris:1")]));
    assert!(!out.status.success(), "ml/iris:1 was tagged");
}

/// A layer whose file differs from what the metadata says (digests of the blobs all fine):
/// `pull` checks each file with the sha256 taken while writing it, and writes nothing.
#[test]
fn pull_refuses_files_that_differ_from_the_metadata() {
    let env = Env::new();
    let check =
        |name: &str, entries: &[(&str, tar::EntryType, &[u8], Option<&str>)], want: &str| {
            let layout = env.path(&format!("{name}.oci"));
            hostile_layout(&layout, vec![tar_layer(entries)], &["a.bin"], "image");
            let out = env.path(&format!("{name}-out"));
            // a file that is not what the metadata says: an integrity error
            let err = fails(env.cmd().arg("pull").arg(&layout).arg("-o").arg(&out), 4);
            assert!(err.contains(want), "{name}: {err}");
            assert!(!out.exists(), "{name}: partial output");
            assert!(leftovers(&env.path(""))
                .iter()
                .all(|l| !l.contains(".mlart-pull")));
        };
    // The metadata says a.bin is "x" (1 byte).
    check(
        "changed",
        &[("models/a.bin", tar::EntryType::Regular, b"y", None)],
        "does not match the metadata",
    );
    check(
        "longer",
        &[("models/a.bin", tar::EntryType::Regular, b"xx", None)],
        "does not match the metadata",
    );
    // And the same layout with the right byte pulls.
    let layout = env.path("right.oci");
    hostile_layout(
        &layout,
        vec![tar_layer(&[(
            "models/a.bin",
            tar::EntryType::Regular,
            b"x",
            None,
        )])],
        &["a.bin"],
        "image",
    );
    let out = env.path("right-out");
    json_ok(env.cmd().arg("pull").arg(&layout).arg("-o").arg(&out));
    assert_eq!(fs::read(out.join("a.bin")).unwrap(), b"x");
}

/// `bundle --push` sends each streamed layer as one PATCH (not one per 4 MiB), commits it with
/// the digest, and gives the manifest a local bundle has; a registry that refuses the PATCH
/// fails the command cleanly, with no tag.
#[test]
fn registry_bundle_push_streams_one_patch_per_blob() {
    use crate::httpproxy::{HttpProxy, Reply};
    use std::collections::HashMap;
    let Some(reg) = Registry::start("registry_bundle_push_streams_one_patch_per_blob") else {
        return;
    };
    let env = Env::new();
    let project = crate::support::example_copy();
    let data = noise(9 << 20, 0x2545f4914f6cdd1d);
    fs::write(project.path().join("samples/samples.json"), &data).unwrap();
    let local = env.path("local.oci");
    let want = json_ok(
        env.cmd()
            .current_dir(project.path())
            .args(["bundle", "-o"])
            .arg(&local),
    )["manifest_digest"]
        .clone();

    let proxy = HttpProxy::start(&reg.addr, |_| None);
    let r = format!("{}/ml/stream:1", proxy.addr);
    let v = json_ok(
        env.cmd()
            .current_dir(project.path())
            .args(["bundle", "--push", &r]),
    );
    assert_eq!(v["digest"], want);
    let seen = proxy.seen();
    // PATCHes per upload session (the path holds the session's id).
    let mut per_session: HashMap<String, usize> = HashMap::new();
    for s in seen.iter().filter(|s| s.method == "PATCH") {
        let path = s.target.split('?').next().unwrap().to_string();
        *per_session.entry(path).or_default() += 1;
    }
    assert!(!per_session.is_empty(), "no streamed upload: {seen:?}");
    assert!(
        per_session.values().all(|n| *n == 1),
        "a layer took more than one PATCH: {per_session:?}"
    );
    let commits = seen
        .iter()
        .filter(|s| {
            s.method == "PUT"
                && s.target.contains("/blobs/uploads/")
                && s.target.contains("digest=sha256")
        })
        .count();
    assert!(commits >= per_session.len(), "{seen:?}");
    // What the registry holds pulls back to the project's bytes.
    let out = env.path("out");
    let p = env.pull(&reg.reference("ml/stream:1"), &out, &["--no-cache"]);
    assert_eq!(p["digest"], want);
    assert_eq!(fs::read(out.join("samples/samples.json")).unwrap(), data);

    // A registry that refuses the PATCH: a clear error, no tag, nothing local.
    let refusing = HttpProxy::start(&reg.addr, |req| {
        (req.method == "PATCH").then(|| Reply::status(500).body("text/plain", b"no".to_vec()))
    });
    let work = env.path("work");
    fs::create_dir_all(&work).unwrap();
    let err = fails(
        env.cmd()
            .current_dir(&work)
            .args(["bundle", "-f"])
            .arg(project.path().join("mlart.yaml"))
            .args(["--push", &format!("{}/ml/refused:1", refusing.addr)]),
        3,
    );
    assert!(
        err.contains("uploading blob") && err.contains("500"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0, "no local output");
    let o = env
        .cmd()
        .args(["tags", &reg.reference("ml/refused")])
        .output()
        .unwrap();
    assert!(!o.status.success() || !String::from_utf8_lossy(&o.stdout).contains("\"1\""));
}

#[test]
fn registry_names_without_a_host_are_refused_and_moved_tags_are_said() {
    let (env, layout) = env_with_iris();
    // `ml/iris:1.0.0` has no registry host: refused with the three spellings, nothing written
    let err = fails(
        env.cmd()
            .current_dir(env.tmp.path())
            .args(["copy", "iris.oci", "ml/iris:1.0.0"]),
        2,
    );
    assert!(
        err.contains("docker://") && err.contains("oci:DIR") && err.contains("oci-archive:FILE"),
        "{err}"
    );
    assert!(!env.path("ml").exists());
    let Some(reg) =
        Registry::start("registry_names_without_a_host_are_refused_and_moved_tags_are_said")
    else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");
    let first = env.push(&layout, &r);
    assert!(first.get("moved_from").is_none(), "{first}");
    // the same content again: not a move, and --immutable is fine with it
    let again = json_ok(
        env.cmd()
            .arg("push")
            .arg(&layout)
            .arg(&r)
            .arg("--immutable"),
    );
    assert!(again.get("moved_from").is_none(), "{again}");
    // other content under the same tag
    let other = env.path("iris-artifact.oci");
    crate::support::fixtures::bundle_iris(
        &mut env.cmd(),
        &other,
        &["--format".as_ref(), "artifact".as_ref()],
    );
    let err = fails(
        env.cmd().arg("push").arg(&other).arg(&r).arg("--immutable"),
        1,
    );
    assert!(
        err.contains("--immutable") && err.contains(first["digest"].as_str().unwrap()),
        "{err}"
    );
    let still = json_ok(env.cmd().arg("inspect").arg(&r));
    assert_eq!(
        still["manifest_digest"], first["digest"],
        "the tag did not move"
    );
    let out = run(env.cmd().arg("push").arg(&other).arg(&r));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let moved = json_ok(env.cmd().arg("inspect").arg(&r))["manifest_digest"].clone();
    assert!(
        text.contains(&format!(
            "tag 1.0.0 moved from {} to {}",
            first["digest"].as_str().unwrap(),
            moved.as_str().unwrap()
        )),
        "{text}"
    );
}

/// `bundle --push` onto a tag that holds other content reports the move as `push` does, and
/// `--immutable` refuses it (exit 1, tag untouched); the same content again is no move.
#[test]
fn bundle_push_says_a_moved_tag_and_immutable_refuses_it() {
    let (env, layout) = env_with_iris();
    let Some(reg) = Registry::start("bundle_push_says_a_moved_tag_and_immutable_refuses_it") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");
    let first = env.push(&layout, &r);
    let spec = crate::support::fixtures::iris_spec();
    let push = |form: &str, immutable: bool| {
        let mut c = env.cmd();
        crate::support::fixtures::bundle_cmd(&mut c, &spec).args(["--format", form, "--push", &r]);
        if immutable {
            c.arg("--immutable");
        }
        c
    };
    // the same bytes as the pushed layout: no move, and --immutable is fine with it
    let same = json_ok(&mut push("image", true));
    assert_eq!(same["digest"], first["digest"], "{same}");
    assert!(same.get("moved_from").is_none(), "{same}");
    assert_eq!(same["blobs"]["uploaded"], 0, "nothing new to send: {same}");
    // other content: refused with --immutable, the tag stays
    let err = fails(&mut push("artifact", true), 1);
    assert!(
        err.contains("--immutable")
            && err.contains(first["digest"].as_str().unwrap())
            && err.contains("not moved"),
        "{err}"
    );
    let still = json_ok(env.cmd().arg("inspect").arg(&r));
    assert_eq!(still["manifest_digest"], first["digest"]);
    // and without it, moved and said so (JSON and text)
    let moved = json_ok(&mut push("artifact", false));
    assert_eq!(moved["moved_from"], first["digest"], "{moved}");
    let out = run(&mut push("image", false));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "tag 1.0.0 moved from {} to {}",
            moved["digest"].as_str().unwrap(),
            first["digest"].as_str().unwrap()
        )),
        "{text}"
    );
    // --immutable needs --push
    let e = fails(
        crate::support::fixtures::bundle_cmd(&mut env.cmd(), &spec).arg("--immutable"),
        2,
    );
    assert!(e.contains("--push"), "{e}");
}

/// A registry that is down, a host that does not resolve, TLS to a plain-HTTP registry: each
/// its own message and exit 3, at once (no retries); a busy registry's retries are shown.
#[test]
fn registry_unreachable_fails_fast_with_its_own_message_and_retries_are_shown() {
    use crate::httpproxy::{HttpProxy, Reply};
    let env = Env::new();
    let cmd = || {
        let mut c = env.cmd();
        c.env("MLART_RETRY_BASE_MS", "1000"); // five silent retries would take > 30 s
        c
    };
    // nothing listens on this port
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = fails(
        cmd().args(["inspect", &format!("127.0.0.1:{port}/ml/iris:1")]),
        3,
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("connection refused") && err.contains("Is the registry running"),
        "{err}"
    );
    assert!(!err.contains("retry"), "{err}");
    // a host name that does not resolve (.invalid never does)
    let started = Instant::now();
    let err = fails(cmd().args(["inspect", "registry.invalid/ml/iris:1"]), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("cannot resolve"), "{err}");
    let Some(reg) = Registry::start(
        "registry_unreachable_fails_fast_with_its_own_message_and_retries_are_shown",
    ) else {
        return;
    };
    let layout = env.path("iris.oci");
    build_iris(&env, &layout);
    let r = reg.reference("ml/iris:1");
    env.push(&layout, &r);
    // TLS (forced by --ca-file: any CA will do) to the plain-HTTP test registry
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    assert!(
        ca.is_file(),
        "the system CA bundle (package ca-certificates)"
    );
    let started = Instant::now();
    let err = fails(cmd().args(["inspect", &r, "--ca-file"]).arg(ca), 3);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("speaks plain HTTP") && err.contains("--plain-http"),
        "{err}"
    );
    // a busy registry (503 once): retried, and the retry is said at default verbosity
    let once = std::sync::atomic::AtomicBool::new(false);
    let proxy = HttpProxy::start(&reg.addr, move |req| {
        (req.path().contains("/manifests/")
            && !once.swap(true, std::sync::atomic::Ordering::SeqCst))
        .then(|| Reply::status(503).body("text/plain", b"busy".to_vec()))
    });
    let out = run(env
        .cmd()
        .args(["inspect", &format!("{}/ml/iris:1", proxy.addr)]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("retry 1/"), "{stderr}");
}
