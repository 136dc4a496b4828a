//! A project of many small top-level files ("loose" files, no folder) in the ModelPack and
//! artifact forms: one tar layer per kind for them, not one layer per file; read back by
//! mlart (layout and registry, signed) and by the ModelPack reference client.

use crate::support::fixtures::{blob_path, read_json};
use crate::support::registry::{have, Env, Registry};
use crate::support::{
    example, json_ok, missing, model_signing_verify, ok, pull_to, python, read_json_file,
    tree_digests,
};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;

/// How many small top-level data files the project has (far past the 16 that stay raw).
const LOOSE: usize = 300;

/// A project: `iris.onnx`, LOOSE small top-level CSV files, 3 big ones (past the
/// `--large-file 4096` the bundles are made with), a README and a folder of two files.
fn project(root: &Path) -> std::path::PathBuf {
    let p = root.join("proj");
    fs::create_dir_all(p.join("notes")).unwrap();
    fs::copy(example().join("model/iris.onnx"), p.join("iris.onnx")).unwrap();
    for i in 0..LOOSE {
        fs::write(
            p.join(format!("s{i:04}.csv")),
            format!("x,y\n{i},{}\n", i * 7),
        )
        .unwrap();
    }
    // (two of the same bytes: two raw layers of one digest, one blob, read once and written
    // to both paths)
    for (i, name) in ["big-a.csv", "m-big.csv", "z-big.csv"].iter().enumerate() {
        fs::write(p.join(name), format!("{},2\n", i.min(1)).repeat(2000)).unwrap();
    }
    fs::write(p.join("README.md"), "# loose\n").unwrap();
    fs::write(p.join("notes/a.md"), "a\n").unwrap();
    fs::write(p.join("notes/b.md"), "b\n").unwrap();
    fs::write(
        p.join("mlart.yaml"),
        "name: loose\nversion: 1.0.0\nmodel: [iris.onnx]\ndata: [\"*.csv\"]\ndocs: [README.md, notes/]\n",
    )
    .unwrap();
    p
}

/// The project's files as a pull writes them (path -> sha256).
fn project_files(p: &Path) -> std::collections::BTreeMap<String, String> {
    let mut t = tree_digests(p);
    t.remove("mlart.yaml");
    t
}

fn manifest_of(layout: &Path) -> Value {
    let index: Value = read_json_file(&layout.join("index.json"));
    read_json(layout, index["manifests"][0]["digest"].as_str().unwrap())
}

fn annotation<'a>(l: &'a Value, key: &str) -> &'a str {
    l["annotations"][key].as_str().unwrap_or("")
}

/// The names of a tar blob's entries.
fn tar_names(blob: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(fs::File::open(blob).unwrap());
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// The layout's data layers: one tar layer, its entries the top-level small files' own
/// paths in path order. Returns it.
fn check_layers(m: &Value, layout: &Path, tar_mt: &str, title: &str) -> Value {
    let layers = m["layers"].as_array().unwrap();
    let tars: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"].as_str().unwrap().contains(".tar"))
        .filter(|l| annotation(l, "ai.mlart.kind") == "data")
        .collect();
    assert_eq!(tars.len(), 1, "{m}");
    let tar = tars[0].clone();
    assert_eq!(tar["mediaType"], tar_mt);
    assert_eq!(annotation(&tar, "org.opencontainers.image.title"), title);
    let names = tar_names(&blob_path(layout, tar["digest"].as_str().unwrap()));
    let want: Vec<String> = (0..LOOSE).map(|i| format!("s{i:04}.csv")).collect();
    assert_eq!(names, want);
    tar
}

/// ModelPack into a layout, signed: 300 small top-level files are one `dataset` tar layer
/// (`org.cncf.model.filepath` = `data.tar`), the rest a raw layer each; mlart pulls every file
/// back byte for byte and `verify` accepts it with the key. The artifact form groups them the
/// same way (the layer titled `data.tar`).
#[test]
fn loose_files_share_a_tar_layer_in_a_layout() {
    let env = Env::new();
    let (key, public) = env.keygen("release");
    let p = project(env.tmp.path());
    let out = env.path("loose-mp.oci");
    let v = json_ok(
        env.cmd()
            .current_dir(&p)
            .args(["bundle", "--format", "modelpack", "--large-file", "4096"])
            .arg("--sign")
            .arg(&key)
            .arg("-o")
            .arg(&out),
    );
    assert!(
        v["warnings"]
            .as_array()
            .is_none_or(|w| w.iter().all(|w| !w.to_string().contains("layers ("))),
        "{v}"
    );
    let m = manifest_of(&out);
    // iris.onnx; the tar of 300; 3 big CSVs; README.md and notes/ (2 files, raw each);
    // mlart.json; model.sig
    assert_eq!(
        m["layers"].as_array().unwrap().len(),
        1 + 1 + 3 + 3 + 2,
        "{m}"
    );
    let tar = check_layers(
        &m,
        &out,
        "application/vnd.cncf.model.dataset.v1.tar",
        "data.tar",
    );
    assert_eq!(annotation(&tar, "org.cncf.model.filepath"), "data.tar");
    assert_eq!(annotation(&tar, "ai.mlart.kind"), "data");
    // the data kind's layers in the order of their first paths
    let data: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| annotation(l, "ai.mlart.kind") == "data")
        .map(|l| annotation(l, "org.opencontainers.image.title"))
        .collect();
    assert_eq!(data, ["big-a.csv", "m-big.csv", "data.tar", "z-big.csv"]);

    let pulled = env.path("pulled");
    pull_to(&out, &pulled);
    let mut got = tree_digests(&pulled);
    assert!(got.remove("mlart.json").is_some());
    assert!(got.remove("model.sig").is_some());
    assert_eq!(got, project_files(&p));
    // big-a.csv and m-big.csv are one blob: the second alone, and both, by --path
    let want = project_files(&p);
    for (name, paths) in [
        ("second", &["m-big.csv"][..]),
        ("both", &["m-big.csv", "big-a.csv"][..]),
    ] {
        let part = env.path(&format!("part-{name}"));
        let mut c = env.cmd();
        c.arg("pull").arg(&out).arg("-o").arg(&part);
        for path in paths {
            c.args(["--path", path]);
        }
        json_ok(&mut c);
        let got = tree_digests(&part);
        assert_eq!(got.len(), paths.len(), "{name}: {got:?}");
        for path in paths {
            assert_eq!(got[*path], want[*path], "{name}: {path}");
        }
    }
    let v = json_ok(env.cmd().args(["verify", "--key"]).arg(&public).arg(&out));
    assert_eq!(v["ok"], true, "{v}");
    let v = json_ok(env.cmd().arg("inspect").arg(&out));
    let files = v["metadata"]["files"].as_array().map(|f| f.len());
    assert_eq!(files, Some(LOOSE + 7));

    // the artifact form: the same grouping, the layer titled data.tar
    let art = env.path("loose-art.oci");
    json_ok(
        env.cmd()
            .current_dir(&p)
            .args([
                "bundle",
                "--format",
                "artifact",
                "--large-file",
                "4096",
                "-o",
            ])
            .arg(&art),
    );
    let m = manifest_of(&art);
    // iris.onnx; the tar; 3 big CSVs; the docs tar
    assert_eq!(m["layers"].as_array().unwrap().len(), 1 + 1 + 3 + 1, "{m}");
    check_layers(&m, &art, "application/vnd.mlart.data.v1.tar", "data.tar");
    let pulled = env.path("pulled-art");
    pull_to(&art, &pulled);
    let mut got = tree_digests(&pulled);
    got.remove("mlart.json");
    assert_eq!(got, project_files(&p));
}

/// Pushed to a registry, signed: the ModelPack reference client (`modelpack-client`, with its
/// path checks, diff_id checks and schema) unpacks the tar layer of top-level files into the
/// folder it pulls to, byte for byte, and with `--no-unpack` saves it as `data.tar`;
/// model_signing accepts what it wrote; mlart pulls it with `--verify-key` and `verify` passes.
#[test]
fn loose_files_tar_layer_through_a_registry_and_the_modelpack_client() {
    let test = "loose_files_tar_layer_through_a_registry_and_the_modelpack_client";
    if !have("skopeo", test) {
        return;
    }
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let Some(py) = python() else {
        return;
    };
    if !Command::new(&py)
        .args(["-c", "import modelpack_client"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing(
            &format!(
                "{test}: modelpack-client is required (MLART_REQUIRE_INTEROP=1): run scripts/test"
            ),
            &format!("SKIP {test}: modelpack-client not installed"),
        );
        return;
    }
    let env = Env::new();
    let (key, public) = env.keygen("release");
    let p = project(env.tmp.path());
    let r = reg.reference("ml/loose:1.0.0");
    let v = json_ok(
        env.cmd()
            .current_dir(&p)
            .args(["bundle", "--format", "modelpack", "--large-file", "4096"])
            .arg("--sign")
            .arg(&key)
            .args(["--push", &r]),
    );
    let digest = v["manifest_digest"]
        .as_str()
        .or(v["digest"].as_str())
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let m: Value = serde_json::from_slice(&crate::support::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{r}"),
    ]))
    .unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 10, "{m}");
    assert_eq!(
        layers
            .iter()
            .filter(|l| annotation(l, "org.cncf.model.filepath") == "data.tar")
            .count(),
        1
    );

    let out = env.path("mp-out");
    ok(Command::new(&py)
        .args(["-m", "modelpack_client", "--insecure", "pull", &r])
        .arg(&out));
    let mut got = tree_digests(&out);
    assert!(got.remove("mlart.json").is_some());
    assert!(got.remove("model.sig").is_some());
    assert_eq!(got, project_files(&p));
    let ms = py.parent().unwrap().join("model_signing");
    ok(&mut model_signing_verify(&ms, &out, &public));
    // without unpacking, the client saves the layer at its file path
    let kept = env.path("mp-kept");
    ok(Command::new(&py)
        .args([
            "-m",
            "modelpack_client",
            "--insecure",
            "pull",
            "--no-unpack",
            &r,
        ])
        .arg(&kept));
    let names = tar_names(&kept.join("data.tar"));
    assert_eq!(names.len(), LOOSE);
    assert_eq!(names[0], "s0000.csv");

    let v = json_ok(env.cmd().args(["verify", "--key"]).arg(&public).arg(&r));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["manifest_digest"], digest.as_str());
    let pulled = env.path("mlart-out");
    let pv = env.pull(&r, &pulled, &["--verify-key", public.to_str().unwrap()]);
    assert_eq!(pv["form"], "modelpack");
    assert_eq!(tree_digests(&pulled), tree_digests(&out));
    // --path picks files out of the tar layer
    let one = env.path("one");
    env.pull(&r, &one, &["--path", "s0123.csv"]);
    assert_eq!(
        tree_digests(&one).into_keys().collect::<Vec<_>>(),
        ["s0123.csv"]
    );
}
