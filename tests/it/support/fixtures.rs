//! Fixture makers: the iris example bundled into a layout, and reading and writing the blobs
//! of OCI layouts (to inspect what mlart wrote, or to make hostile and edited layouts).

use super::registry::Env;
use super::{example, json_ok, sha256};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example project's spec: examples/iris/mlart.yaml.
pub fn iris_spec() -> PathBuf {
    example().join("mlart.yaml")
}

/// `c` with `bundle -f SPEC` appended (the rest of the command, `-o`, `--push`…, follows).
pub fn bundle_cmd<'a>(c: &'a mut Command, spec: &Path) -> &'a mut Command {
    c.arg("bundle").arg("-f").arg(spec)
}

/// `bundle -f SPEC -o OUT ARGS…` run by `c`: the bundle's JSON.
pub fn bundle_spec(c: &mut Command, spec: &Path, out: &Path, args: &[&OsStr]) -> Value {
    json_ok(bundle_cmd(c, spec).arg("-o").arg(out).args(args))
}

/// `bundle -f examples/iris/mlart.yaml -o OUT ARGS…` run by `c`: the bundle's JSON.
pub fn bundle_iris(c: &mut Command, out: &Path, args: &[&OsStr]) -> Value {
    bundle_spec(c, &iris_spec(), out, args)
}

/// `bundle -o OUT` of the example project, run by `c` in the project's folder (the spec found
/// from the working directory): its JSON.
pub fn bundle_iris_cwd(c: &mut Command, out: &Path) -> Value {
    json_ok(c.current_dir(example()).arg("bundle").arg("-o").arg(out))
}

/// Build the iris example into `out` (a layout directory), in the registry tests' `env`.
pub fn build_iris(env: &Env, out: &Path) {
    let v = bundle_iris_cwd(&mut env.cmd(), out);
    assert!(v["manifest_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
}

/// A project in `env` with one incompressible `model.bin` of `size` bytes (from `seed`),
/// bundled into `<env>/big.oci`: (the layout, the model's bytes).
pub fn one_model_layout(env: &Env, size: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let proj = env.path("proj");
    fs::create_dir_all(&proj).unwrap();
    let data = super::noise(size, seed);
    fs::write(proj.join("model.bin"), &data).unwrap();
    fs::write(
        proj.join("mlart.yaml"),
        "name: big\nversion: '1'\nmodel: [model.bin]\n",
    )
    .unwrap();
    let layout = env.path("big.oci");
    bundle_spec(&mut env.cmd(), &proj.join("mlart.yaml"), &layout, &[]);
    (layout, data)
}

/// The file of the blob `digest` (`sha256:<hex>`) in a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Write `data` as a blob of the layout: (its digest, its size).
pub fn put_blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let d = sha256(data);
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(blob_path(layout, &d), data).unwrap();
    (d, data.len() as u64)
}

pub fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    fs::read(blob_path(layout, digest)).unwrap()
}

pub fn read_json(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&read_blob(layout, digest)).unwrap()
}

/// A layout's first bundle: (index.json, the manifest it names first).
pub fn read_layout(layout: &Path) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = read_json(layout, index["manifests"][0]["digest"].as_str().unwrap());
    (index, m)
}

/// The iris example copied into `dir` with `samples: samples/samples.json` on its model entry;
/// `wrong`: the samples' expected labels all 0 (the model says otherwise). Its spec.
pub fn iris_with_samples(dir: &Path, wrong: bool) -> PathBuf {
    super::copy_tree(&example(), dir, false);
    let spec = dir.join("mlart.yaml");
    let text = fs::read_to_string(&spec).unwrap().replace(
        "    framework: scikit-learn\n",
        "    framework: scikit-learn\n    samples: samples/samples.json\n",
    );
    fs::write(&spec, text).unwrap();
    if wrong {
        let f = dir.join("samples/samples.json");
        let mut v: Value = serde_json::from_slice(&fs::read(&f).unwrap()).unwrap();
        v["expected"]["label"] = serde_json::json!([0, 0, 0, 0, 0]);
        fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    spec
}
