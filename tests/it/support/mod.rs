//! Shared helpers of the integration tests: run the binary, copy the example project, find
//! interop tools, digests and base64. Each helper is written here once; test files use it
//! from here. `registry`: the registry harness (a real `docker-registry`, an isolated
//! environment). `fixtures`: the iris builder and the makers of OCI layout blobs.

pub mod fixtures;
pub mod registry;

use sha2::{Digest as _, Sha256};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example() -> PathBuf {
    repo().join("examples/iris")
}

/// The mlart binary with a clean environment for reproducibility.
pub fn mlart() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mlart"));
    c.env_remove("SOURCE_DATE_EPOCH").env_remove("RUST_LOG");
    c
}

pub fn run(c: &mut Command) -> Output {
    c.output().expect("run mlart")
}

/// Run, expect success, parse the `--json` stdout.
pub fn json_ok(c: &mut Command) -> serde_json::Value {
    let out = run(c.arg("--json"));
    assert!(
        out.status.success(),
        "mlart failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Run with `--json`, expect exit code `code` (a failure that still reports): stdout as JSON.
pub fn json_exit(c: &mut Command, code: i32) -> serde_json::Value {
    let out = run(c.arg("--json"));
    assert_exit(&out, code);
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// `keygen -o OUT` run by `c` (an mlart command): the private and public key paths it made.
pub fn keygen_with(c: &mut Command, out: &Path) -> (PathBuf, PathBuf) {
    let v = json_ok(c.arg("keygen").arg("-o").arg(out));
    (
        v["private_key"].as_str().unwrap().into(),
        v["public_key"].as_str().unwrap().into(),
    )
}

/// `mlart keygen -o DIR/NAME`: the private and public key paths.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    keygen_with(&mut mlart(), &dir.join(name))
}

/// Assert that `out` exited with `code`, showing its stdout and stderr otherwise.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `c` (an mlart command) with `verify TARGET --key K…`: one `--key` per trusted key (more
/// arguments may follow).
pub fn verify_with(mut c: Command, target: impl AsRef<OsStr>, keys: &[&Path]) -> Command {
    c.arg("verify").arg(target);
    for k in keys {
        c.arg("--key").arg(k);
    }
    c
}

/// `mlart verify TARGET --key K…` (see `verify_with`).
pub fn verify_cmd(target: impl AsRef<OsStr>, keys: &[&Path]) -> Command {
    verify_with(mlart(), target, keys)
}

/// `mlart pull SRC -o OUT`, expect success: its JSON.
pub fn pull_to(src: impl AsRef<OsStr>, out: &Path) -> serde_json::Value {
    json_ok(mlart().arg("pull").arg(src).arg("-o").arg(out))
}

/// `mlart pull SRC -o OUT --verify-key K…`: a pull that writes only what the keys verify.
pub fn pull_verified(src: impl AsRef<OsStr>, out: &Path, keys: &[&Path]) -> Command {
    let mut c = mlart();
    c.arg("pull").arg(src).arg("-o").arg(out);
    for k in keys {
        c.arg("--verify-key").arg(k);
    }
    c
}

/// `sign TARGET --key KEY` run by `c`, expect success: its JSON.
pub fn sign_with(c: &mut Command, target: impl AsRef<OsStr>, key: &Path) -> serde_json::Value {
    json_ok(c.arg("sign").arg(target).arg("--key").arg(key))
}

/// `mlart sign TARGET --key KEY`, expect success: its JSON.
pub fn sign(target: impl AsRef<OsStr>, key: &Path) -> serde_json::Value {
    sign_with(&mut mlart(), target, key)
}

/// Run, expect exit code `code`, return stderr (human) text.
pub fn fails(c: &mut Command, code: i32) -> String {
    let out = run(c);
    assert_exit(&out, code);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copy a directory tree (files in the given order of `walk`, or reversed).
pub fn copy_tree(src: &Path, dst: &Path, reverse: bool) {
    let mut entries: Vec<PathBuf> = walkdir::WalkDir::new(src)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .collect();
    entries.sort();
    if reverse {
        entries.reverse();
    }
    for p in entries {
        let rel = p.strip_prefix(src).unwrap();
        let d = dst.join(rel);
        if p.is_dir() {
            std::fs::create_dir_all(&d).unwrap();
        } else {
            std::fs::create_dir_all(d.parent().unwrap()).unwrap();
            std::fs::copy(&p, &d).unwrap();
        }
    }
}

/// Set the modification time of every file under `root` to `secs` after the Unix epoch.
pub fn set_file_mtimes(root: &Path, secs: u64) {
    for e in walkdir::WalkDir::new(root) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            std::fs::File::options()
                .write(true)
                .open(e.path())
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        }
    }
}

/// The example project copied into a fresh temp dir (without build outputs).
pub fn example_copy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&example(), t.path(), false);
    let _ = std::fs::remove_dir_all(t.path().join("build"));
    t
}

/// The file `name` in a directory of PATH, if any.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// A missing interop dependency: under MLART_REQUIRE_INTEROP=1 the test fails with the
/// message `required`; otherwise `skip` is printed (a SKIP line) and the caller skips.
pub fn missing(required: &str, skip: &str) {
    if std::env::var("MLART_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!("{required}");
    }
    eprintln!("{skip}");
}

/// A tool on PATH, or None. With MLART_REQUIRE_INTEROP=1 a missing tool fails the test.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = find_on_path(name);
    if found.is_none() {
        missing(
            &format!("{name} is required (MLART_REQUIRE_INTEROP=1) but not on PATH: run scripts/test, which installs it"),
            &format!("SKIP: {name} not found (scripts/test installs it)"),
        );
    }
    found
}

/// The test venv (scripts/test makes .venv): $MLART_VENV, else .venv in the repository.
pub fn venv() -> PathBuf {
    std::env::var_os("MLART_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"))
}

/// The Python that has the interop packages (scripts/test makes .venv), if any.
pub fn python() -> Option<PathBuf> {
    let venv = venv();
    let p = venv.join("bin/python");
    if p.is_file() {
        return Some(p);
    }
    missing(
        &format!(
            "the venv {} is missing (MLART_REQUIRE_INTEROP=1): run scripts/test",
            venv.display()
        ),
        &format!("SKIP: no venv at {}", venv.display()),
    );
    None
}

/// Run a (third-party) tool, expect success: its stdout.
pub fn ok(c: &mut Command) -> Vec<u8> {
    let o = c.output().expect("run tool");
    assert!(
        o.status.success(),
        "{:?} failed: {}\n{}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Run skopeo (on PATH) with `args`, expect success: its stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    ok(Command::new("skopeo").args(args))
}

/// `model_signing verify key DIR` (`ms`: the PyPI tool) with DIR/model.sig and `public`.
pub fn model_signing_verify(ms: &Path, dir: &Path, public: &Path) -> Command {
    let mut c = Command::new(ms);
    c.args(["verify", "key"])
        .arg(dir)
        .arg("--signature")
        .arg(dir.join("model.sig"))
        .arg("--public_key")
        .arg(public);
    c
}

/// A xorshift64 generator from `seed`: deterministic pseudo-random numbers for test data.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// `len` incompressible bytes: the `xorshift` numbers from `seed`, 8 little-endian bytes each.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut next = xorshift(seed);
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        chunk.copy_from_slice(&next().to_le_bytes()[..chunk.len()]);
    }
    data
}

/// The OCI digest of `b`: `sha256:<hex>`.
pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// A JSON file, parsed.
pub fn read_json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Rewrite the file `p` with what `f` makes of its bytes (to corrupt or edit it in place).
pub fn edit_bytes(p: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(p).unwrap();
    f(&mut b);
    std::fs::write(p, b).unwrap();
}

/// Assert that `dir/rel` holds the same bytes as the example project's `rel`.
pub fn assert_example_file(dir: &Path, rel: &str) {
    assert_eq!(
        std::fs::read(dir.join(rel)).unwrap(),
        std::fs::read(example().join(rel)).unwrap(),
        "{rel} differs from the example's"
    );
}

/// The sha256 of a file's bytes, as bare hex.
pub fn sha256_file(p: &Path) -> String {
    let data = std::fs::read(p).unwrap();
    hex::encode(Sha256::digest(&data))
}

pub fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// The string field `key` of each element of the JSON array `list` (the digests an index
/// lists, the paths of the metadata's files…).
pub fn field_strs<'a>(list: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap())
        .collect()
}

/// Every file under `root`, relative path -> sha256.
pub fn tree_digests(root: &Path) -> std::collections::BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                sha256_file(e.path()),
            )
        })
        .collect()
}

/// The names in `dir` that start with `prefix`.
fn names_starting(dir: &Path, prefix: &str) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Entries of the parent dir of `p` that start with `.mlart-tmp` (leftover temp outputs).
pub fn leftovers(dir: &Path) -> Vec<String> {
    // every staging name: .mlart-tmp-* (bundle, copy, reports), .mlart-pull-*
    names_starting(dir, ".mlart-").unwrap_or_default()
}

/// The names in `dir` (which must exist) that start with `.mlart`: anything mlart left there.
pub fn dot_mlart_entries(dir: &Path) -> Vec<String> {
    names_starting(dir, ".mlart").unwrap()
}
