//! Runnable images (`bundle --base`, issue 7): the bundle on top of a real busybox base image
//! built here from Debian's busybox-static, unpacked with umoci and run in a chroot the way a
//! KServe modelcar uses it; multi-platform bases; bases in a registry (mounted, not uploaded);
//! Docker schema 2 bases written by skopeo; hostile bases.

use crate::support::fixtures::{
    blob_path, bundle_cmd, bundle_iris, iris_spec, put_blob, read_blob, read_json, read_layout,
};
use crate::support::registry::{have, Env, Registry};
use crate::support::*;
use serde_json::{json, Value};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Commands the busybox base links to busybox.
/// (`sh`, `ln` and `sleep` are what KServe's modelcar sidecar runs.)
const APPLETS: &[&str] = &[
    "cat",
    "env",
    "ln",
    "ls",
    "mkdir",
    "sh",
    "sha256sum",
    "sleep",
];

/// The platforms of the base images the tests make.
const AMD64: &[(&str, Option<&str>)] = &[("amd64", None)];
const AMD64_ARM64V8: &[(&str, Option<&str>)] = &[("amd64", None), ("arm64", Some("v8"))];
const AMD64_ARM64: &[(&str, Option<&str>)] = &[("amd64", None), ("arm64", None)];

// ---------------- a busybox base image, from Debian's busybox-static ----------------

/// Debian's static busybox (scripts/test installs busybox-static), or None (skip).
fn busybox() -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    let static_ok = p.is_file()
        && Command::new(&p)
            .arg("true")
            .env_clear()
            .status()
            .is_ok_and(|s| s.success());
    if static_ok {
        return Some(p);
    }
    missing(
        "/bin/busybox is required (MLART_REQUIRE_INTEROP=1): apt-get install busybox-static (scripts/test does)",
        "SKIP: no /bin/busybox (scripts/test installs busybox-static)",
    );
    None
}

/// A GNU tar header of an entry of `kind`, with `mode` and `size` (mtime 0).
fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// Busybox (see `busybox`) and a temp dir for the test, or None (skip).
fn busybox_and_tmp() -> Option<(PathBuf, tempfile::TempDir)> {
    Some((busybox()?, tempfile::tempdir().unwrap()))
}

/// The busybox layer: `bin/busybox` and links to it, as a gzip tar. (gzip bytes, diff_id)
fn busybox_layer(busybox: &Path) -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar_header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut dir, "bin/", std::io::empty()).unwrap();
    let data = fs::read(busybox).unwrap();
    let mut f = tar_header(tar::EntryType::Regular, 0o755, data.len() as u64);
    b.append_data(&mut f, "bin/busybox", &data[..]).unwrap();
    for a in APPLETS {
        let mut l = tar_header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut l, format!("bin/{a}"), "busybox")
            .unwrap();
    }
    b.append_data(&mut dir.clone(), "tmp/", std::io::empty())
        .unwrap();
    let tar = b.into_inner().unwrap();
    let diff_id = sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// A base image layout as the tests build it.
struct BaseLayout {
    dir: PathBuf,
    /// The digest index.json names (an index with several platforms, else the manifest).
    top: String,
    /// Per platform: (os/arch[/variant], manifest digest).
    images: Vec<(String, String)>,
    layer: String,
    diff_id: String,
}

/// Write a busybox base image layout at `dir`, tagged `tag`: one image per platform (each
/// `(architecture, variant)` gets its own config; they share the one busybox layer), under an
/// index when there are several. `docker`: Docker schema 2 media types throughout.
fn busybox_base(
    busybox: &Path,
    dir: &Path,
    tag: &str,
    platforms: &[(&str, Option<&str>)],
    docker: bool,
) -> BaseLayout {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (layer, diff_id) = busybox_layer(busybox);
    let (layer_digest, layer_size) = put_blob(dir, &layer);
    let (mt_manifest, mt_config, mt_layer, mt_index) = if docker {
        (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_GZIP, DOCKER_LIST)
    } else {
        (OCI_MANIFEST, OCI_CONFIG, OCI_GZIP, OCI_INDEX)
    };
    let mut images = Vec::new();
    let mut entries = Vec::new();
    for (arch, variant) in platforms {
        let mut config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2024-05-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "MODEL_DIR=/somewhere-else"],
                "Cmd": ["sh"],
                "Labels": {
                    "maintainer": "mlart tests",
                    "org.opencontainers.image.source": "https://busybox.net",
                    "org.opencontainers.image.version": "1.36"
                }
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [
                {"created": "2024-05-01T00:00:00Z", "created_by": "ADD busybox-static /bin/busybox"},
                {"created": "2024-05-01T00:00:00Z", "created_by": "CMD [\"sh\"]", "empty_layer": true}
            ]
        });
        if let Some(v) = variant {
            config["variant"] = (*v).into();
        }
        let (cd, cs) = put_blob(dir, &serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": mt_manifest,
            "config": {"mediaType": mt_config, "digest": cd, "size": cs},
            "layers": [{"mediaType": mt_layer, "digest": layer_digest, "size": layer_size}],
        });
        let (md, ms) = put_blob(dir, &serde_json::to_vec(&manifest).unwrap());
        let mut platform = json!({"architecture": arch, "os": "linux"});
        let mut name = format!("linux/{arch}");
        if let Some(v) = variant {
            platform["variant"] = (*v).into();
            name = format!("{name}/{v}");
        }
        entries.push(
            json!({"mediaType": mt_manifest, "digest": md, "size": ms, "platform": platform}),
        );
        images.push((name, md));
    }
    let top = if entries.len() == 1 {
        let mut e = entries.pop().unwrap();
        e.as_object_mut().unwrap().remove("platform");
        e
    } else {
        let index = json!({"schemaVersion": 2, "mediaType": mt_index, "manifests": entries});
        let (d, s) = put_blob(dir, &serde_json::to_vec(&index).unwrap());
        json!({"mediaType": mt_index, "digest": d, "size": s})
    };
    let mut top = top;
    top["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    BaseLayout {
        dir: dir.to_path_buf(),
        top: top["digest"].as_str().unwrap().to_string(),
        images,
        layer: layer_digest,
        diff_id,
    }
}

/// `busybox_base` with OCI media types.
fn oci_base(
    busybox: &Path,
    dir: &Path,
    tag: &str,
    platforms: &[(&str, Option<&str>)],
) -> BaseLayout {
    busybox_base(busybox, dir, tag, platforms, false)
}

/// `oci:DIR:TAG` for a layout.
fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn bundle_on(base: &str, out: &Path, extra: &[&str]) -> Value {
    json_ok(
        bundle_cmd(&mut mlart(), &iris_spec())
            .args(["--base", base, "-o"])
            .arg(out)
            .args(extra),
    )
}

/// The manifest index.json names (layout), and its digest.
fn top_of(layout: &Path) -> (Value, Value) {
    let (index, top) = read_layout(layout);
    (top, index["manifests"][0].clone())
}

/// The config of the image a layout's index.json names.
fn config_of(layout: &Path) -> Value {
    let (m, _) = top_of(layout);
    read_json(layout, m["config"]["digest"].as_str().unwrap())
}

/// `skopeo inspect ARGS… IMAGE` as JSON (`--raw`: the manifest or index; `--config`: the
/// image config).
fn skopeo_json(args: &[&str], image: &str) -> Value {
    serde_json::from_slice(&skopeo(&[args, &[image]].concat())).unwrap()
}

/// `skopeo_json` of the linux/`arch` image of `image` (an index picks that platform).
fn skopeo_linux(args: &[&str], arch: &str, image: &str) -> Value {
    let platform = ["--override-os", "linux", "--override-arch", arch];
    skopeo_json(&[args, &platform].concat(), image)
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `umoci unpack` an image of a layout into `bundle` (rootless when not root).
fn umoci_unpack(umoci: &Path, layout: &Path, tag: &str, bundle: &Path) {
    let mut c = Command::new(umoci);
    c.arg("unpack");
    if !is_root() {
        c.arg("--rootless");
    }
    c.arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle);
    ok(&mut c);
}

/// The example's bundled files (relative path -> sha256 hex), as they land under /models.
fn example_files() -> std::collections::BTreeMap<String, String> {
    let i = json_ok(mlart().arg("inspect").arg(example_layout()));
    i["metadata"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap().to_string();
            let s = sha256_file(&example().join(&p));
            (p, s)
        })
        .collect()
}

/// A plain (no base) bundle of the example, built once per test process.
fn example_layout() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let t = DIR.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        bundle_iris(&mut mlart(), &t.path().join("plain.oci"), &[]);
        t
    });
    t.path().join("plain.oci")
}

/// Run `script` with busybox's sh inside `rootfs` (chroot), with the image's environment.
fn run_in(rootfs: &Path, env: &[String], script: &str) -> String {
    let mut c = Command::new("chroot");
    c.arg(rootfs).args(["/bin/sh", "-c", script]).env_clear();
    for e in env {
        let (k, v) = e.split_once('=').unwrap();
        c.env(k, v);
    }
    String::from_utf8(ok(&mut c)).unwrap()
}

// ---------------- tests ----------------

#[test]
fn base_busybox_modelcar_runs_the_model_files_in_a_chroot() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let base = oci_base(&bb, &t.path().join("base.oci"), "1.36", AMD64);
    let out = t.path().join("iris-run.oci");
    let v = bundle_on(&oci(&base.dir, "1.36"), &out, &[]);
    assert!(leftovers(t.path()).is_empty());
    assert_eq!(v["base"]["digest"], base.top.as_str(), "{v}");
    assert_eq!(v["base"]["index"], false);
    assert_eq!(v["base"]["images"][0]["platform"], "linux/amd64");
    assert_eq!(v["layers"][0]["kind"], "base");

    // The manifest: the base layer first, as is; the bundle's layers after it.
    let (manifest, desc) = top_of(&out);
    assert_eq!(desc["mediaType"], OCI_MANIFEST);
    assert_eq!(desc["digest"], v["manifest_digest"]);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers[0]["digest"], base.layer.as_str());
    assert_eq!(layers[0]["mediaType"], OCI_GZIP);
    assert_eq!(
        read_blob(&out, &base.layer),
        read_blob(&base.dir, &base.layer)
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.digest"],
        base.images[0].1.as_str()
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "iris"
    );

    // The config: the base's, merged.
    let config = config_of(&out);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert!(config.get("created").is_none(), "no clock time: {config}");
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "MODEL_DIR=/models"
        ])
    );
    assert_eq!(c["Cmd"], json!(["sh"]), "the base's Cmd is kept");
    assert_eq!(c["Labels"]["maintainer"], "mlart tests");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.source"],
        "https://github.com/mlart-dev/mlart/tree/main/examples/iris",
        "the base's image labels are replaced by the bundle's"
    );
    assert!(
        c["Labels"].get("org.opencontainers.image.version").unwrap() == "1.0.0",
        "{c}"
    );
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    assert_eq!(diff_ids[0], base.diff_id.as_str());
    let history = config["history"].as_array().unwrap();
    assert_eq!(history.len(), 2 + layers.len() - 1, "base history + ours");
    assert_eq!(history[0]["created_by"], "ADD busybox-static /bin/busybox");
    assert_eq!(history[1]["empty_layer"], true);

    // mlart.json records the base by digest and platform; inspect, pull and verify work.
    let i = json_ok(mlart().arg("inspect").arg(&out));
    assert_eq!(
        i["metadata"]["base"],
        json!({"digest": base.images[0].1, "platform": "linux/amd64"})
    );
    let pulled = t.path().join("pulled");
    pull_to(&out, &pulled);
    let mut got = tree_digests(&pulled);
    got.remove("mlart.json").unwrap();
    assert_eq!(
        got,
        example_files(),
        "pull writes the model files, not the base"
    );

    // skopeo reads it byte for byte.
    if let Some(skopeo) = tool("skopeo") {
        let raw = ok(Command::new(skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:1.0.0", out.display())));
        assert_eq!(raw, read_blob(&out, desc["digest"].as_str().unwrap()));
    }
    // The OCI schemas accept it.
    let validator = repo().join("../shared/tools/oci-validate.py");
    if let (true, Some(py)) = (validator.is_file(), python()) {
        let o = ok(Command::new(py).arg(&validator).arg(&out));
        assert!(String::from_utf8_lossy(&o).contains("OK: 0 problem(s)"));
    }

    // umoci unpack: the busybox rootfs plus /models.
    let Some(umoci) = tool("umoci") else { return };
    let bundle = t.path().join("bundle");
    umoci_unpack(&umoci, &out, "1.0.0", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(sha256_file(&rootfs.join("bin/busybox")), sha256_file(&bb));
    for a in APPLETS {
        assert_eq!(
            fs::read_link(rootfs.join("bin").join(a)).unwrap(),
            PathBuf::from("busybox")
        );
    }
    let mut models = tree_digests(&rootfs.join("models"));
    models.remove("mlart.json").expect("/models/mlart.json");
    assert_eq!(models, example_files());
    let runtime = read_json_file(&bundle.join("config.json"));
    let env: Vec<String> = runtime["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(env.contains(&"MODEL_DIR=/models".to_string()), "{env:?}");

    // A command runs inside that rootfs and sees the model files intact, the way KServe's
    // modelcar sidecar uses the image (`sh -c 'ln -sf /proc/$$/root/models /mnt/ && sleep
    // infinity'`; without /proc in a chroot, the link goes to $MODEL_DIR).
    if !is_root() {
        eprintln!("SKIP the chroot check: it needs root");
        return;
    }
    let files = example_files();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    let script = format!(
        "mkdir -p /mnt && ln -sf \"$MODEL_DIR\" /mnt/ && ls /mnt/models && cd /mnt/models && sha256sum {} && sleep 0",
        names.join(" ")
    );
    let o = run_in(&rootfs, &env, &script);
    assert!(o.contains("mlart.json\n") && o.contains("model\n"), "{o}");
    for (p, sha) in &files {
        assert!(
            o.contains(&format!("{sha}  {p}\n")),
            "{p} not intact in:\n{o}"
        );
    }
}

#[test]
fn base_bundles_are_reproducible_and_name_the_base_by_digest() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let base = oci_base(&bb, &t.path().join("base.oci"), "1.36", AMD64);
    let a = bundle_on(&oci(&base.dir, "1.36"), &t.path().join("a.oci"), &[]);
    let b = bundle_on(&oci(&base.dir, "1.36"), &t.path().join("b.oci"), &[]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    // The base spelled otherwise (a path with one image; an archive) → the same bundle.
    let c = bundle_on(base.dir.to_str().unwrap(), &t.path().join("c.oci"), &[]);
    assert_eq!(a["manifest_digest"], c["manifest_digest"]);
    let archive = t.path().join("base.tar");
    json_ok(mlart().arg("copy").arg(&base.dir).arg(&archive));
    let d = bundle_on(
        &format!("oci-archive:{}:1.36", archive.display()),
        &t.path().join("d.tar"),
        &[],
    );
    assert_eq!(a["manifest_digest"], d["manifest_digest"]);

    // Another checkout (other mtimes, reversed creation order), another cwd, umask 077.
    let proj = tempfile::tempdir().unwrap();
    copy_tree(&example(), proj.path(), true);
    let _ = fs::remove_dir_all(proj.path().join("build"));
    set_file_mtimes(proj.path(), 987_654_321);
    let out_e = t.path().join("e.oci");
    let cmd = format!(
        "umask 077 && exec '{}' --json bundle --base '{}' -o '{}'",
        env!("CARGO_BIN_EXE_mlart"),
        oci(&base.dir, "1.36"),
        out_e.display()
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(proj.path())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(a["manifest_digest"], e["manifest_digest"]);

    // SOURCE_DATE_EPOCH dates our config and history, reproducibly.
    let dated = |out: &str| {
        json_ok(
            mlart()
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .arg("bundle")
                .arg("-f")
                .arg(example().join("mlart.yaml"))
                .args(["--base", &oci(&base.dir, "1.36"), "-o"])
                .arg(t.path().join(out)),
        )
    };
    let f = dated("f.oci");
    assert_ne!(f["manifest_digest"], a["manifest_digest"]);
    assert_eq!(f["manifest_digest"], dated("g.oci")["manifest_digest"]);
    let config = config_of(&t.path().join("f.oci"));
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    // Another base (a different config) → another bundle.
    let other = oci_base(
        &bb,
        &t.path().join("arm.oci"),
        "1.36",
        &[("arm64", Some("v8"))],
    );
    let h = bundle_on(&oci(&other.dir, "1.36"), &t.path().join("h.oci"), &[]);
    assert_ne!(h["manifest_digest"], a["manifest_digest"]);
    assert_eq!(h["base"]["images"][0]["platform"], "linux/arm64/v8");

    // The bundle without a base is unchanged by all this (the golden test pins it) and its
    // metadata names no base.
    let i = json_ok(mlart().arg("inspect").arg(example_layout()));
    assert!(i["metadata"].get("base").is_none());
}

#[test]
fn base_multi_platform_index_picks_one_or_builds_all() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let base = oci_base(&bb, &t.path().join("multi.oci"), "1.36", AMD64_ARM64V8);
    let r = oci(&base.dir, "1.36");

    // --platform linux/arm64: the arm64 image.
    let arm = bundle_on(
        &r,
        &t.path().join("arm.oci"),
        &["--platform", "linux/arm64"],
    );
    assert_eq!(arm["base"]["digest"], base.top.as_str());
    assert_eq!(
        arm["base"]["images"][0]["base_digest"],
        base.images[1].1.as_str()
    );
    let config = config_of(&t.path().join("arm.oci"));
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    let i = json_ok(mlart().arg("inspect").arg(t.path().join("arm.oci")));
    assert_eq!(i["metadata"]["base"]["platform"], "linux/arm64/v8");

    // No --platform: this machine's.
    let host = match std::env::consts::ARCH {
        "x86_64" => Some(0),
        "aarch64" => Some(1),
        _ => None,
    };
    let out = t.path().join("host.oci");
    let mut c = mlart();
    bundle_cmd(&mut c, &iris_spec())
        .args(["--base", &r, "-o"])
        .arg(&out);
    match host {
        Some(k) => {
            let v = json_ok(&mut c);
            assert_eq!(
                v["base"]["images"][0]["base_digest"],
                base.images[k].1.as_str()
            );
        }
        None => {
            let err = fails(&mut c, 2);
            assert!(err.contains("linux/amd64, linux/arm64/v8"), "{err}");
        }
    }

    // A platform the base lacks: an error listing those it has; nothing written.
    let out = t.path().join("s390x.oci");
    let err = fails(
        bundle_cmd(&mut mlart(), &iris_spec())
            .args(["--base", &r, "--platform", "linux/s390x", "-o"])
            .arg(&out),
        2,
    );
    assert!(
        err.contains("no linux/s390x image") && err.contains("linux/amd64, linux/arm64/v8"),
        "{err}"
    );
    assert!(!out.exists() && leftovers(t.path()).is_empty());

    // --platform all: an index of one image per platform, sharing the file layers.
    let all_dir = t.path().join("all.oci");
    let all = bundle_on(&r, &all_dir, &["--platform", "all"]);
    assert_eq!(all["base"]["index"], true);
    let (index, desc) = top_of(&all_dir);
    assert_eq!(desc["mediaType"], OCI_INDEX);
    assert_eq!(desc["digest"], all["manifest_digest"]);
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        "1.0.0"
    );
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(
        index["annotations"]["org.opencontainers.image.title"],
        "iris"
    );
    assert!(index["annotations"]
        .get("org.opencontainers.image.base.digest")
        .is_none());
    let ms = index["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(
        ms[0]["platform"],
        json!({"architecture": "amd64", "os": "linux"})
    );
    assert_eq!(
        ms[1]["platform"],
        json!({"architecture": "arm64", "os": "linux", "variant": "v8"})
    );
    // the arm64 image of the index is the one `--platform linux/arm64` built
    assert_eq!(ms[1]["digest"], arm["manifest_digest"]);
    let m0 = read_json(&all_dir, ms[0]["digest"].as_str().unwrap());
    let m1 = read_json(&all_dir, ms[1]["digest"].as_str().unwrap());
    let l0 = m0["layers"].as_array().unwrap();
    let l1 = m1["layers"].as_array().unwrap();
    assert_eq!(l0.len(), l1.len());
    // base layer shared, file layers shared, metadata layer (names the base) differs
    assert_eq!(l0[..l0.len() - 1], l1[..l1.len() - 1]);
    assert_ne!(l0.last(), l1.last());
    // reproducible
    let again = bundle_on(&r, &t.path().join("all2.oci"), &["--platform", "all"]);
    assert_eq!(again["manifest_digest"], all["manifest_digest"]);

    // skopeo picks each platform of our index.
    if tool("skopeo").is_some() {
        let image = oci(&all_dir, "1.0.0");
        for (arch, k) in [("amd64", 0), ("arm64", 1)] {
            // --raw gives the index; the config of the picked image says its architecture
            assert_eq!(skopeo_linux(&["inspect", "--raw"], arch, &image), index);
            let cfg = skopeo_linux(&["inspect", "--config"], arch, &image);
            assert_eq!(cfg["architecture"], arch);
            assert_eq!(cfg["rootfs"]["diff_ids"][0], base.diff_id.as_str(), "{k}");
        }
    }

    // A single-image base with `all` is that one image; with another platform, an error.
    let single = oci_base(&bb, &t.path().join("one.oci"), "1", AMD64);
    let v = bundle_on(
        &oci(&single.dir, "1"),
        &t.path().join("one-all.oci"),
        &["--platform", "all"],
    );
    assert_eq!(v["base"]["index"], false);
    assert_eq!(
        top_of(&t.path().join("one-all.oci")).1["mediaType"],
        OCI_MANIFEST
    );
    let err = fails(
        bundle_cmd(&mut mlart(), &iris_spec())
            .args([
                "--base",
                &oci(&single.dir, "1"),
                "--platform",
                "linux/arm64",
                "-o",
            ])
            .arg(t.path().join("x.oci")),
        2,
    );
    assert!(err.contains("single linux/amd64 image"), "{err}");
}

#[test]
fn base_with_docker_schema2_media_types_gives_an_oci_image() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let base = busybox_base(&bb, &t.path().join("docker.oci"), "1.36", AMD64_ARM64, true);
    let out = t.path().join("out.oci");
    let v = bundle_on(
        &oci(&base.dir, "1.36"),
        &out,
        &["--platform", "linux/amd64"],
    );
    assert_eq!(v["base"]["index"], false);
    let (m, desc) = top_of(&out);
    assert_eq!(desc["mediaType"], OCI_MANIFEST);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(
        m["layers"][0]["mediaType"], OCI_GZIP,
        "Docker's layer type, in OCI words"
    );
    assert_eq!(
        m["layers"][0]["digest"],
        base.layer.as_str(),
        "the same blob"
    );
    let all = bundle_on(
        &oci(&base.dir, "1.36"),
        &t.path().join("all.oci"),
        &["--platform", "all"],
    );
    assert_eq!(all["base"]["index"], true);
    let (index, _) = top_of(&t.path().join("all.oci"));
    assert_eq!(index["mediaType"], OCI_INDEX);
    if let Some(umoci) = tool("umoci") {
        let bundle = t.path().join("bundle");
        umoci_unpack(&umoci, &out, "1.0.0", &bundle);
        assert!(bundle.join("rootfs/bin/busybox").is_file());
        assert!(bundle.join("rootfs/models/model/iris.onnx").is_file());
    }
}

#[test]
fn base_spec_image_settings_set_entrypoint_cmd_env_workdir_user() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let base = oci_base(&bb, &t.path().join("base.oci"), "1.36", AMD64);
    let proj = example_copy();
    let spec = proj.path().join("mlart.yaml");
    let text = fs::read_to_string(&spec).unwrap();
    let with = |extra: &str| fs::write(&spec, format!("{text}\n{extra}")).unwrap();
    let build = |out: &Path, base_args: &[&str]| {
        json_ok(
            bundle_cmd(&mut mlart(), &spec)
                .args(base_args)
                .arg("-o")
                .arg(out),
        )
    };
    let b = oci(&base.dir, "1.36");

    with("image:\n  entrypoint: [/bin/sh, -c]\n  env: {LOG_LEVEL: info, PORT: 8080, PATH: /bin}\n  workdir: /models\n  user: \"65534:65534\"\n");
    let out = t.path().join("a.oci");
    build(&out, &["--base", &b]);
    let c = config_of(&out)["config"].clone();
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert!(
        c.get("Cmd").is_none(),
        "a new entrypoint drops the base's Cmd: {c}"
    );
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/bin",
            "MODEL_DIR=/models",
            "LOG_LEVEL=info",
            "PORT=8080"
        ])
    );
    assert_eq!(c["WorkingDir"], "/models");
    assert_eq!(c["User"], "65534:65534");

    with("image:\n  cmd: [sleep, infinity]\n");
    let out = t.path().join("b.oci");
    build(&out, &["--base", &b]);
    let c = config_of(&out)["config"].clone();
    assert_eq!(c["Cmd"], json!(["sleep", "infinity"]));
    assert!(c.get("Entrypoint").is_none());

    // Without a base, the settings apply to the plain image too.
    let out = t.path().join("c.oci");
    build(&out, &[]);
    let c = config_of(&out);
    assert_eq!(c["config"]["Cmd"], json!(["sleep", "infinity"]));
    assert_eq!(c["architecture"], "amd64");

    // Bad settings: positioned errors, nothing written.
    let n = text.lines().count() + 2;
    for (extra, want) in [
        (
            "image:\n  env: {MODEL_DIR: /x}\n",
            "MODEL_DIR is set by mlart".to_string(),
        ),
        (
            "image:\n  workdir: models\n",
            format!("mlart.yaml:{}:", n + 1),
        ),
        (
            "image:\n  entrypoint: []\n",
            "image.entrypoint is an empty list".into(),
        ),
        (
            "image:\n  entrypont: [sh]\n",
            "unknown field `entrypont`".into(),
        ),
        (
            "image:\n  env: {\"A=B\": x}\n",
            "not a variable name".into(),
        ),
        ("image:\n  cmd: sh\n", format!("mlart.yaml:{}:", n + 1)),
    ] {
        with(extra);
        let out = t.path().join("bad.oci");
        let err = fails(
            bundle_cmd(&mut mlart(), &spec)
                .args(["--base", &b, "-o"])
                .arg(&out),
            2,
        );
        assert!(err.contains(&want), "{extra}: {err}");
        assert!(!out.exists());
    }
}

/// Store `doc` as a blob of `layout` and point index.json's first entry at it.
fn repoint_index(layout: &Path, doc: &Value) {
    let (d, s) = put_blob(layout, &serde_json::to_vec(doc).unwrap());
    let p = layout.join("index.json");
    let mut index = read_json_file(&p);
    index["manifests"][0]["digest"] = d.into();
    index["manifests"][0]["size"] = s.into();
    fs::write(&p, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Rewrite the one manifest of a single-image base layout with `f` (index.json follows).
fn edit_manifest(base: &BaseLayout, f: impl FnOnce(&mut Value)) {
    let mut m = read_json(&base.dir, &base.images[0].1);
    f(&mut m);
    repoint_index(&base.dir, &m);
}

/// `edit_manifest`, then the base's `oci:DIR:1` reference.
fn edited(base: &BaseLayout, f: impl FnOnce(&mut Value)) -> String {
    edit_manifest(base, f);
    oci(&base.dir, "1")
}

/// The base with its config replaced by `config` (stored as a blob): its `oci:DIR:1`.
fn with_config(base: &BaseLayout, config: &[u8]) -> String {
    let (cd, cs) = put_blob(&base.dir, config);
    edited(base, |m| {
        m["config"]["digest"] = cd.into();
        m["config"]["size"] = cs.into();
    })
}

/// Whether an expected message names a digest or size mismatch (an integrity error, exit 4).
fn is_integrity(want: &str) -> bool {
    ["does not match", "larger than its descriptor", "truncated"]
        .iter()
        .any(|w| want.contains(w))
}

#[test]
fn base_hostile_and_malformed_bases_are_refused_cleanly() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let mut n = 0;
    let mut check = |make: &dyn Fn(&Path) -> String, extra: &[&str], want: &[&str]| {
        n += 1;
        let dir = t.path().join(format!("case{n}"));
        fs::create_dir_all(&dir).unwrap();
        let base = make(&dir);
        let out = dir.join("out.oci");
        let mut c = mlart();
        bundle_cmd(&mut c, &iris_spec())
            .args(["--base", &base])
            .args(extra)
            .arg("-o")
            .arg(&out);
        // a digest or size mismatch is an integrity error (4); every other refusal bad input (2)
        let code = if want.iter().any(|w| is_integrity(w)) {
            4
        } else {
            2
        };
        let err = fails(&mut c, code);
        for w in want {
            assert!(err.contains(w), "case {n}: want {w:?} in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "case {n}: output left behind");
        assert!(leftovers(&dir).is_empty(), "case {n}: temp left behind");
        // --json: the error as JSON, the same exit code and its kind
        let o = run(c.arg("--json"));
        assert_eq!(o.status.code(), Some(code));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["error"]["exit_code"], code);
        let kind = if code == 4 { "integrity" } else { "input" };
        assert_eq!(v["error"]["kind"], kind, "case {n}");
    };
    let good = |dir: &Path| oci_base(&bb, &dir.join("base.oci"), "1", AMD64);

    // A config blob that does not match its digest.
    check(
        &|d| {
            let b = good(d);
            let m = read_json(&b.dir, &b.images[0].1);
            let cd = m["config"]["digest"].as_str().unwrap();
            edit_bytes(&blob_path(&b.dir, cd), |bytes| bytes[10] ^= 1);
            oci(&b.dir, "1")
        },
        &[],
        &["does not match its digest"],
    );
    // A base layer whose bytes do not match its digest (found while copying it).
    check(
        &|d| {
            let b = good(d);
            edit_bytes(&blob_path(&b.dir, &b.layer), |bytes| {
                let k = bytes.len() / 2;
                bytes[k] ^= 0xff;
            });
            oci(&b.dir, "1")
        },
        &[],
        &["layer", "does not match its digest", "corrupt"],
    );
    // A missing base layer.
    check(
        &|d| {
            let b = good(d);
            fs::remove_file(blob_path(&b.dir, &b.layer)).unwrap();
            oci(&b.dir, "1")
        },
        &[],
        &[],
    );
    // A config that is not JSON (its digest is right).
    check(
        &|d| with_config(&good(d), b"this is not json"),
        &[],
        &["config", "is not JSON"],
    );
    // A config without rootfs, and one whose diff_ids do not match the layers.
    for (edit, want) in [
        (
            json!({"os": "linux", "architecture": "amd64"}),
            "has no `rootfs`",
        ),
        (
            json!({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}),
            "rootfs.diff_ids lists 0 layers, the manifest 1",
        ),
        (
            json!({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": ["sha256:xyz"]}}),
            "rootfs.diff_ids",
        ),
        (
            json!({"os": "linux", "architecture": "amd64", "config": {"Env": "PATH=/bin"}, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]}}),
            "config.Env is not a list of strings",
        ),
    ] {
        check(
            &|d| with_config(&good(d), &serde_json::to_vec(&edit).unwrap()),
            &[],
            &[want],
        );
    }
    // An artifact, not an image: mlart's own artifact form, and an OCI 1.1 artifactType.
    check(
        &|d| {
            let out = d.join("artifact.oci");
            json_ok(
                bundle_cmd(&mut mlart(), &iris_spec())
                    .args(["--format", "artifact", "-o"])
                    .arg(&out),
            );
            out.display().to_string()
        },
        &[],
        &["not a runnable image", "busybox"],
    );
    check(
        &|d| {
            edited(&good(d), |m| {
                m["artifactType"] = "application/vnd.example+json".into()
            })
        },
        &[],
        &["is an artifact", "not a runnable image"],
    );
    // Layers mlart cannot copy or does not know.
    check(
        &|d| {
            edited(&good(d), |m| {
                m["layers"][0]["urls"] = json!(["https://example.com/layer"]);
                m["layers"][0]["mediaType"] =
                    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
            })
        },
        &[],
        &["foreign"],
    );
    check(
        &|d| {
            edited(&good(d), |m| {
                m["layers"][0]["mediaType"] = "text/plain".into()
            })
        },
        &[],
        &["text/plain", "not an image layer"],
    );
    // Docker schema 1.
    check(
        &|d| {
            edited(&good(d), |m| {
                *m = json!({"schemaVersion": 1, "name": "x", "fsLayers": []})
            })
        },
        &[],
        &["schema 1"],
    );
    // A manifest whose bytes do not match the index.json digest.
    check(
        &|d| {
            let b = good(d);
            edit_bytes(&blob_path(&b.dir, &b.images[0].1), |bytes| bytes.push(b' '));
            oci(&b.dir, "1")
        },
        &[],
        &["manifest", "larger than its descriptor"],
    );
    // An index whose entry lies about the platform of its image.
    check(
        &|d| {
            let b = oci_base(&bb, &d.join("multi.oci"), "1", AMD64_ARM64);
            let mut index = read_json(&b.dir, &b.top);
            index["manifests"][1]["digest"] = index["manifests"][0]["digest"].clone();
            index["manifests"][1]["size"] = index["manifests"][0]["size"].clone();
            repoint_index(&b.dir, &index);
            oci(&b.dir, "1")
        },
        &["--platform", "linux/arm64"],
        &["lists", "as linux/arm64", "config says linux/amd64"],
    );
    // Unknown tag, missing path, not a layout, a base with the artifact form.
    check(
        &|d| oci(&good(d).dir, "nope"),
        &[],
        &["no image tagged \"nope\"", "1"],
    );
    check(
        &|d| d.join("nowhere.oci").display().to_string(),
        &[],
        &["does not exist"],
    );
    check(
        &|d| {
            fs::write(d.join("junk.tar"), b"junk").unwrap();
            d.join("junk.tar").display().to_string()
        },
        &[],
        &["not an OCI archive"],
    );
    check(
        &|d| oci(&good(d).dir, "1"),
        &["--format", "artifact"],
        &["--base", "artifact"],
    );
    check(
        &|d| oci(&good(d).dir, "1"),
        &["--platform", "linux"],
        &["os/arch"],
    );
    // `--platform all` without a base.
    let err = fails(
        bundle_cmd(&mut mlart(), &iris_spec())
            .args(["--platform", "all", "-o"])
            .arg(t.path().join("x.oci")),
        2,
    );
    assert!(err.contains("--platform all needs --base"), "{err}");
}

// ---------------- registries ----------------

/// Request lines of the registry log that mention `needle`.
fn requests(reg: &Registry, needle: &str) -> Vec<String> {
    reg.log_lines()
        .into_iter()
        .filter(|l| l.contains("http.request.method") && l.contains(needle))
        .collect()
}

#[test]
fn base_in_the_same_registry_is_mounted_not_uploaded() {
    let Some(bb) = busybox() else { return };
    let Some(reg) = Registry::start("base_in_the_same_registry_is_mounted_not_uploaded") else {
        return;
    };
    let env = Env::new();
    let base = oci_base(&bb, &env.path("base.oci"), "1.36", AMD64);
    let base_ref = reg.reference("library/busybox:1.36");
    env.push(&base.dir, &base_ref);

    let target = reg.reference("ml/iris:1.0.0-modelcar");
    let v = json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec()).args(["--base", &base_ref, "--push", &target]),
    );
    assert_eq!(v["reference"], target.as_str());
    assert_eq!(v["blobs"]["mounted"], 1, "the base layer is mounted: {v}");
    assert_eq!(v["base"]["digest"], base.images[0].1.as_str());
    // Only our layers and config were uploaded.
    let layout_build = bundle_on(&oci(&base.dir, "1.36"), &env.path("local.oci"), &[]);
    assert_eq!(
        v["digest"], layout_build["manifest_digest"],
        "the same bundle whether the base is in a registry or a layout"
    );
    // (our layers and the config; the manifest goes to the manifests endpoint only)
    let ours = layout_build["layers"].as_array().unwrap().len() - 1;
    assert_eq!(v["blobs"]["uploaded"], ours + 1, "{v}");
    // The registry saw a mount of the base layer (POST …/uploads/?mount=…&from=library/busybox)
    // and no upload of it (no PUT …?digest=… for it).
    let hex = &base.layer[7..];
    let mounts = requests(&reg, &format!("mount=sha256%3A{hex}"));
    assert!(
        mounts.iter().any(|l| l.contains("method=POST")
            && l.contains("/v2/ml/iris/blobs/uploads/")
            && l.contains("from=library%2Fbusybox")
            && l.contains("status=201")),
        "no mount request for the base layer: {mounts:?}"
    );
    let uploads: Vec<String> = requests(&reg, hex)
        .into_iter()
        .filter(|l| {
            l.contains("/v2/ml/iris/") && (l.contains("method=PUT") || l.contains("method=PATCH"))
        })
        .collect();
    assert!(
        uploads.is_empty(),
        "the base layer was uploaded: {uploads:?}"
    );
    // (and the check can fail: pushing the base itself did upload it)
    assert!(requests(&reg, hex)
        .iter()
        .any(|l| l.contains("/v2/library/busybox/") && l.contains("method=PUT")));

    // Pushing again: every blob skipped.
    let again = json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec()).args(["--base", &base_ref, "--push", &target]),
    );
    assert_eq!(again["digest"], v["digest"]);
    assert_eq!(again["blobs"]["mounted"], 0);
    assert_eq!(again["blobs"]["uploaded"], 0, "{again}");

    // skopeo inspects it; the pulled copy unpacks to busybox + /models.
    if have(
        "skopeo",
        "base_in_the_same_registry_is_mounted_not_uploaded",
    ) {
        let i = skopeo_json(
            &["inspect", "--tls-verify=false"],
            &format!("docker://{target}"),
        );
        assert_eq!(i["Digest"], v["digest"]);
        assert_eq!(i["Layers"][0], base.layer.as_str());
    }
    let copy = env.path("pulled.oci");
    json_ok(env.cmd().arg("copy").arg(&target).arg(&copy));
    if let Some(umoci) = tool("umoci") {
        let bundle = env.path("bundle");
        umoci_unpack(&umoci, &copy, "1.0.0-modelcar", &bundle);
        assert_eq!(
            sha256_file(&bundle.join("rootfs/bin/busybox")),
            sha256_file(&bb)
        );
        let mut models = tree_digests(&bundle.join("rootfs/models"));
        models.remove("mlart.json").unwrap();
        assert_eq!(models, example_files());
    }
    // inspect REF reads the runnable image without touching the base layer.
    let i = json_ok(env.cmd().args(["inspect", &target]));
    assert_eq!(i["metadata"]["base"]["digest"], base.images[0].1.as_str());

    // From a registry base to a layout: the base layer is downloaded and verified.
    let out = env.path("from-registry.oci");
    let w = json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec())
            .args(["--base", &base_ref, "-o"])
            .arg(&out),
    );
    assert_eq!(w["manifest_digest"], v["digest"]);
    assert_eq!(
        read_blob(&out, &base.layer),
        read_blob(&base.dir, &base.layer)
    );

    // A base in another registry (here: a second one) is uploaded, not mounted.
    let Some(reg2) = Registry::start("base_in_the_same_registry_is_mounted_not_uploaded") else {
        return;
    };
    let v2 = json_ok(bundle_cmd(&mut env.cmd(), &iris_spec()).args([
        "--base",
        &base_ref,
        "--push",
        &reg2.reference("ml/iris:1"),
    ]));
    assert_eq!(v2["blobs"]["mounted"], 0);
    // (our layers, the config and the base layer; the manifest only to the manifests endpoint)
    assert_eq!(v2["blobs"]["uploaded"], ours + 2, "{v2}");
    assert_eq!(v2["digest"], v["digest"]);
}

#[test]
fn base_pushed_by_skopeo_as_docker_schema2_and_multi_platform() {
    let Some(bb) = busybox() else { return };
    if !have(
        "skopeo",
        "base_pushed_by_skopeo_as_docker_schema2_and_multi_platform",
    ) {
        return;
    }
    let Some(reg) = Registry::start("base_pushed_by_skopeo_as_docker_schema2_and_multi_platform")
    else {
        return;
    };
    let env = Env::new();
    let base = oci_base(&bb, &env.path("multi.oci"), "1.36", AMD64_ARM64V8);
    // skopeo converts the index to a Docker manifest list of schema 2 manifests.
    let docker_ref = reg.reference("library/busybox:1.36");
    let docker_image = format!("docker://{docker_ref}");
    let raw_remote = ["inspect", "--raw", "--tls-verify=false"];
    skopeo(&[
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &oci(&base.dir, "1.36"),
        &docker_image,
    ]);
    let list = skopeo_json(&raw_remote, &docker_image);
    assert_eq!(list["mediaType"], DOCKER_LIST, "skopeo wrote a Docker list");

    // One platform, pushed next to it: mounted, an OCI image with OCI media types.
    let target = reg.reference("ml/iris:1.0.0-modelcar");
    let v = json_ok(bundle_cmd(&mut env.cmd(), &iris_spec()).args([
        "--base",
        &docker_ref,
        "--platform",
        "linux/arm64",
        "--push",
        &target,
    ]));
    assert_eq!(v["blobs"]["mounted"], 1, "{v}");
    assert_eq!(v["base"]["images"][0]["platform"], "linux/arm64/v8");
    let m = skopeo_json(&raw_remote, &format!("docker://{target}"));
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(m["layers"][0]["mediaType"], OCI_GZIP);

    // Every platform: an OCI index in the registry; skopeo resolves each platform.
    let all_ref = reg.reference("ml/iris:1.0.0-all");
    let all = json_ok(bundle_cmd(&mut env.cmd(), &iris_spec()).args([
        "--base",
        &docker_ref,
        "--platform",
        "all",
        "--push",
        &all_ref,
    ]));
    assert_eq!(all["base"]["index"], true);
    let all_image = format!("docker://{all_ref}");
    let raw = skopeo(&[&raw_remote[..], &[&all_image]].concat());
    assert_eq!(sha256(&raw), all["digest"].as_str().unwrap());
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    for arch in ["amd64", "arm64"] {
        let cfg = skopeo_linux(
            &["inspect", "--config", "--tls-verify=false"],
            arch,
            &all_image,
        );
        assert_eq!(cfg["architecture"], arch);
        assert!(cfg["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "MODEL_DIR=/models"));
    }
}

#[test]
fn base_with_sign_signs_each_image() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let (key, _) = keygen(t.path(), "k");
    let base = oci_base(&bb, &t.path().join("base.oci"), "1", AMD64);
    let out = t.path().join("signed.oci");
    bundle_on(
        &oci(&base.dir, "1"),
        &out,
        &["--sign", key.to_str().unwrap()],
    );
    let v = json_ok(&mut verify_cmd(&out, &[&t.path().join("k.pub")]));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["model_signature"]["valid"], true, "{v}");
    // model.sig under /models covers the files; the OCI signature is beside the image.
    let index = read_json_file(&out.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // A base that puts a file under /models: bundled, but verify reports the stowaway.
    let sneaky = t.path().join("sneaky.oci");
    let b2 = oci_base(&bb, &sneaky, "1", AMD64);
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar_header(tar::EntryType::Regular, 0o644, 5);
    tar.append_data(&mut h, "models/stowaway.txt", &b"hello"[..])
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let (ld, ls) = put_blob(&sneaky, &layer);
    let m = read_json(&sneaky, &b2.images[0].1);
    let mut config = read_json(&sneaky, m["config"]["digest"].as_str().unwrap());
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(ld.clone().into());
    let (cd, cs) = put_blob(&sneaky, &serde_json::to_vec(&config).unwrap());
    edit_manifest(&b2, |m| {
        m["config"]["digest"] = cd.into();
        m["config"]["size"] = cs.into();
        m["layers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}));
    });
    let out2 = t.path().join("sneaky-out.oci");
    bundle_on(
        &oci(&sneaky, "1"),
        &out2,
        &["--sign", key.to_str().unwrap()],
    );
    let o = run(mlart()
        .args(["--json", "verify"])
        .arg(&out2)
        .arg("--key")
        .arg(t.path().join("k.pub")));
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["problems"]
            .to_string()
            .contains("stowaway.txt: in a layer but not in the metadata"),
        "{v}"
    );
}

// ---------------- reading a multi-platform bundle (an index) ----------------

/// This machine's image in a two-platform (amd64, arm64/v8) index: (its index, platform).
fn host_image() -> Option<(usize, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Some((0, "linux/amd64")),
        "aarch64" => Some((1, "linux/arm64/v8")),
        _ => None,
    }
}

/// inspect, pull and verify `target` (a layout, archive or REF of a `--platform all` bundle
/// whose index is `index_digest` with images `images`): the host's image by default, the
/// arm64 one with `--platform linux/arm64`.
fn read_index_bundle(
    cmd: &dyn Fn() -> Command,
    target: &str,
    index_digest: &str,
    images: &[String],
    pubkey: &Path,
    out: &Path,
) {
    // an explicit platform works everywhere
    let v = json_ok(cmd().args(["inspect", target, "--platform", "linux/arm64"]));
    assert_eq!(v["manifest_digest"], images[1].as_str(), "{v}");
    assert_eq!(v["index"]["digest"], index_digest, "{v}");
    assert_eq!(v["index"]["platform"], "linux/arm64/v8", "{v}");
    assert_eq!(v["metadata"]["base"]["platform"], "linux/arm64/v8", "{v}");
    let Some((k, host)) = host_image() else {
        let err = fails(cmd().args(["inspect", target]), 2);
        assert!(
            err.contains("linux/amd64") && err.contains("--platform"),
            "{err}"
        );
        return;
    };
    let v = json_ok(cmd().args(["inspect", target]));
    assert_eq!(v["manifest_digest"], images[k].as_str(), "{v}");
    assert_eq!(
        v["index"],
        json!({"digest": index_digest, "platform": host})
    );
    assert_eq!(v["metadata"]["base"]["platform"], host, "{v}");
    assert_eq!(v["metadata"]["name"], "iris");

    let p = json_ok(cmd().args(["pull", target, "-o"]).arg(out));
    assert_eq!(p["digest"], images[k].as_str(), "{p}");
    assert_eq!(p["index"]["platform"], host, "{p}");
    for (f, sha) in example_files() {
        assert_eq!(sha256_file(&out.join(&f)), sha, "{f}");
    }

    let v = json_ok(cmd().args(["verify", target, "--key"]).arg(pubkey));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["manifest_digest"], images[k].as_str(), "{v}");
    assert_eq!(v["index"]["platform"], host, "{v}");
    assert!(v["oci_signatures"][0]["valid"] == true, "{v}");
    let v = json_ok(
        cmd()
            .args(["verify", target, "--platform", "linux/arm64", "--key"])
            .arg(pubkey),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["manifest_digest"], images[1].as_str(), "{v}");
}

#[test]
fn base_index_bundle_is_read_by_inspect_pull_verify() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    let (key, pubkey) = keygen(t.path(), "k");
    let base = oci_base(&bb, &t.path().join("multi.oci"), "1.36", AMD64_ARM64V8);
    let r = oci(&base.dir, "1.36");
    let sign = ["--platform", "all", "--sign", key.to_str().unwrap()];
    let dir = t.path().join("all.oci");
    let all = bundle_on(&r, &dir, &sign);
    let idx = all["manifest_digest"].as_str().unwrap().to_string();
    let (index, _) = top_of(&dir);
    let images: Vec<String> = field_strs(&index["manifests"], "digest")
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(images.len(), 2);

    // the layout
    read_index_bundle(
        &mlart,
        dir.to_str().unwrap(),
        &idx,
        &images,
        &pubkey,
        &t.path().join("pulled-layout"),
    );
    // oci:DIR:TAG
    let v = json_ok(mlart().args(["inspect", &oci(&dir, "1.0.0"), "--platform", "linux/amd64"]));
    assert_eq!(v["manifest_digest"], images[0].as_str(), "{v}");
    assert_eq!(v["tag"], "1.0.0", "{v}");

    // an archive of it (the same bundle: same digests)
    let tar = t.path().join("all.tar");
    let again = bundle_on(&r, &tar, &sign);
    assert_eq!(again["manifest_digest"], idx.as_str());
    read_index_bundle(
        &mlart,
        tar.to_str().unwrap(),
        &idx,
        &images,
        &pubkey,
        &t.path().join("pulled-archive"),
    );

    // A platform the index lacks: one paragraph naming what it has; nothing written.
    let out = t.path().join("s390x");
    let err = fails(
        mlart()
            .args([
                "pull",
                dir.to_str().unwrap(),
                "--platform",
                "linux/s390x",
                "-o",
            ])
            .arg(&out),
        2,
    );
    assert!(
        err.contains("no linux/s390x image")
            && err.contains("linux/amd64 (sha256:")
            && err.contains("linux/arm64/v8 (sha256:")
            && err.contains("--platform"),
        "{err}"
    );
    assert!(!out.exists() && leftovers(t.path()).is_empty());
    let err = fails(
        mlart().args(["inspect", dir.to_str().unwrap(), "--platform", "linux"]),
        2,
    );
    assert!(err.contains("is not os/arch"), "{err}");

    // push and copy take one image manifest: an index is refused with a clear message.
    let err = fails(
        mlart().arg("copy").arg(&dir).arg(t.path().join("copy.oci")),
        2,
    );
    assert!(
        err.contains("multi-platform index") && err.contains("copy"),
        "{err}"
    );
    assert!(!t.path().join("copy.oci").exists());

    // From a registry: `bundle --push` writes the index; every verb reads it by tag.
    let Some(reg) = Registry::start("base_index_bundle_is_read_by_inspect_pull_verify") else {
        return;
    };
    let env = Env::new();
    let all_ref = reg.reference("ml/iris:1.0.0-all");
    let pushed = json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec())
            .args(["--base", &r, "--push", &all_ref])
            .args(sign),
    );
    assert_eq!(pushed["digest"], idx.as_str(), "{pushed}");
    read_index_bundle(
        &|| env.cmd(),
        &all_ref,
        &idx,
        &images,
        &pubkey,
        &env.path("pulled-registry"),
    );
    let err = fails(
        env.cmd()
            .arg("push")
            .arg(&dir)
            .arg(reg.reference("ml/other:1")),
        2,
    );
    assert!(
        err.contains("multi-platform index") && err.contains("push"),
        "{err}"
    );
}

/// A copy of `src` (a `--platform all` layout) at `dst` with its index document replaced by
/// what `f` makes of it (`f` gets the index and returns the bytes to store).
fn with_index(src: &Path, dst: &Path, f: impl FnOnce(Value) -> Vec<u8>) {
    copy_tree(src, dst, false);
    let (index, desc) = top_of(dst);
    let bytes = f(index);
    let (d, s) = put_blob(dst, &bytes);
    let mut top = desc.clone();
    top["digest"] = d.into();
    top["size"] = s.into();
    let i = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]});
    fs::write(dst.join("index.json"), serde_json::to_vec(&i).unwrap()).unwrap();
}

#[test]
fn base_index_without_the_host_platform_or_hostile_is_refused() {
    let Some((bb, t)) = busybox_and_tmp() else {
        return;
    };
    // An index with neither amd64 nor arm64: no default for this machine.
    let base = oci_base(
        &bb,
        &t.path().join("odd.oci"),
        "1",
        &[("s390x", None), ("ppc64le", None)],
    );
    let odd = t.path().join("odd-all.oci");
    bundle_on(&oci(&base.dir, "1"), &odd, &["--platform", "all"]);
    let out = t.path().join("pulled");
    if !matches!(std::env::consts::ARCH, "s390x" | "powerpc64") {
        let err = fails(mlart().arg("pull").arg(&odd).arg("-o").arg(&out), 2);
        assert!(
            err.contains("(the platform of this machine)")
                && err.contains("linux/s390x (sha256:")
                && err.contains("linux/ppc64le (sha256:")
                && err.contains("--platform")
                && err.contains("@sha256:"),
            "{err}"
        );
        assert!(!out.exists() && leftovers(t.path()).is_empty());
        fails(mlart().arg("inspect").arg(&odd), 2);
    }
    let v = json_ok(
        mlart()
            .arg("inspect")
            .arg(&odd)
            .args(["--platform", "linux/s390x"]),
    );
    assert_eq!(v["index"]["platform"], "linux/s390x");

    // Hostile index documents: each refused with a message (exit 2), never a panic.
    let good = oci_base(&bb, &t.path().join("multi.oci"), "1", AMD64_ARM64V8);
    let all = t.path().join("all.oci");
    bundle_on(&oci(&good.dir, "1"), &all, &["--platform", "all"]);
    type Edit = Box<dyn Fn(Value) -> Vec<u8>>;
    let both = |f: fn(&mut Value)| -> Edit {
        Box::new(move |mut i: Value| {
            for m in i["manifests"].as_array_mut().unwrap() {
                f(m);
            }
            serde_json::to_vec(&i).unwrap()
        })
    };
    let cases: Vec<(&str, Edit, &str, i32)> = vec![
        (
            "wrong-digest",
            both(|m| m["digest"] = format!("sha256:{}", "ab".repeat(32)).into()),
            "",
            2,
        ),
        (
            "wrong-size",
            both(|m| m["size"] = (m["size"].as_u64().unwrap() + 1).into()),
            "",
            // the manifest read is one byte short of its descriptor: integrity
            4,
        ),
        (
            "huge-size",
            both(|m| m["size"] = (1u64 << 40).into()),
            "claims",
            2,
        ),
        (
            "negative-size",
            both(|m| m["size"] = (-1).into()),
            "not a valid descriptor",
            2,
        ),
        (
            "nested",
            both(|m| m["mediaType"] = OCI_INDEX.into()),
            "nested indexes are not read",
            2,
        ),
        (
            "bad-digest",
            both(|m| m["digest"] = "sha256:zz".into()),
            "",
            2,
        ),
        (
            "garbage",
            Box::new(|_| b"{\"manifests\": [".to_vec()),
            "is not JSON",
            2,
        ),
        (
            "not-a-list",
            Box::new(|_| b"{\"manifests\": 3}".to_vec()),
            "no `manifests` list",
            2,
        ),
        (
            "no-images",
            Box::new(|_| br#"{"schemaVersion":2,"manifests":[]}"#.to_vec()),
            "no image with a platform",
            2,
        ),
    ];
    for (name, f, want, code) in cases {
        let dir = t.path().join(name);
        with_index(&all, &dir, f);
        for verb in [&["inspect"][..], &["pull", "-o", out.to_str().unwrap()][..]] {
            let err = fails(
                mlart()
                    .arg(verb[0])
                    .arg(&dir)
                    .args(["--platform", "linux/amd64"])
                    .args(&verb[1..]),
                code,
            );
            assert!(
                !err.contains("panicked") && err.contains(dir.to_str().unwrap()),
                "{name}: {err}"
            );
            assert!(err.contains(want), "{name}: {err}");
            assert!(!out.exists(), "{name}");
        }
    }
    // the index blob itself does not match its descriptor
    let dir = t.path().join("index-digest");
    copy_tree(&all, &dir, false);
    let (index, _) = top_of(&dir);
    let mut tampered = index.clone();
    tampered["annotations"]["x"] = "y".into();
    let d = top_of(&dir).1["digest"].as_str().unwrap().to_string();
    fs::write(blob_path(&dir, &d), serde_json::to_vec(&tampered).unwrap()).unwrap();
    let err = fails(
        mlart()
            .arg("inspect")
            .arg(&dir)
            .args(["--platform", "linux/amd64"]),
        4,
    );
    assert!(!err.contains("panicked"), "{err}");
}
