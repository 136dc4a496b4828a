//! Resumable `bundle --push` (#24): a run killed midway, then the same command again, sends
//! only what the registry lacks. Each layer (raw or tar) streams as it is made, its session
//! recorded under the layer's plan; the next run makes the layer again, hashes what the
//! registry holds without sending it, and sends the rest. A layer is recorded once committed
//! (`uploads/layers/`) and skipped by the next run when the registry has it and its files are
//! the same. Against the real test registry, behind the buffering proxy of `resume_push`
//! (distribution keeps a session only at whole requests).

use crate::httpproxy::{HttpProxy, Reply};
use crate::resume_push::{kill9, upload_bytes, wait_for, StallingProxy, MIB};
use crate::support::registry::{Env, Registry};
use crate::support::{json_ok, keygen_with, noise, run, sha256, verify_with};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

/// A project of model files (name, size, seed) in `<env>/proj`.
struct Project {
    env: Env,
    spec: PathBuf,
    files: Vec<(String, Vec<u8>)>,
}

fn project(files: &[(&str, usize, u64)]) -> Project {
    let env = Env::new();
    let proj = env.path("proj");
    fs::create_dir_all(&proj).unwrap();
    let mut out = Vec::new();
    for (name, size, seed) in files {
        let data = noise(*size, *seed);
        fs::write(proj.join(name), &data).unwrap();
        out.push((name.to_string(), data));
    }
    let list: Vec<&str> = files.iter().map(|f| f.0).collect();
    let spec = proj.join("mlart.yaml");
    fs::write(
        &spec,
        format!("name: big\nversion: '1'\nmodel: [{}]\n", list.join(", ")),
    )
    .unwrap();
    Project {
        env,
        spec,
        files: out,
    }
}

impl Project {
    /// `bundle -f SPEC --push TARGET --json ARGS…`.
    fn bundle(&self, target: &str, args: &[&str]) -> Command {
        let mut c = self.env.cmd();
        c.env("MLART_THREADS", "1")
            .arg("bundle")
            .arg("-f")
            .arg(&self.spec)
            .args(["--push", target])
            .args(args);
        c
    }

    /// Start the bundle through `sp`, kill -9 it while the proxy holds its `at`-th PATCH.
    fn bundle_and_kill(&self, sp: &StallingProxy, target: &str, args: &[&str]) {
        let mut child = self
            .bundle(target, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stalled = wait_for(|| sp.stalled.load(Ordering::SeqCst));
        // (a commit in flight on another connection gets a moment to land)
        std::thread::sleep(std::time::Duration::from_millis(200));
        kill9(&mut child);
        sp.release.store(true, Ordering::SeqCst);
        assert!(stalled, "the bundle never reached the PATCH to stall");
    }

    fn uploads(&self) -> PathBuf {
        self.env.path("cache/mlart/uploads")
    }

    /// The records in `uploads/` (sessions) or `uploads/layers/`.
    fn records(&self, layers: bool) -> Vec<(PathBuf, Value)> {
        let dir = if layers {
            self.uploads().join("layers")
        } else {
            self.uploads()
        };
        let Ok(rd) = fs::read_dir(dir) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json").then(|| {
                let v = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                (p, v)
            })
        })
        .collect()
    }

    /// Pull `r` from the registry (no cache): every file comes back byte for byte.
    fn check_pulled(&self, r: &str) {
        let out = self
            .env
            .path(&format!("out-{}", r.replace(['/', ':'], "_")));
        self.env.pull(r, &out, &["--no-cache"]);
        for (name, data) in &self.files {
            let got = fs::read(out.join(name)).unwrap();
            assert!(
                got == *data,
                "the pulled {name} differs from the bundled one"
            );
        }
    }

    /// The manifest digest of the same bundle written to a layout.
    fn layout_digest(&self, args: &[&str]) -> String {
        let out = self.env.path("layout.oci");
        let _ = fs::remove_dir_all(&out);
        let v = json_ok(
            self.env
                .cmd()
                .env("MLART_THREADS", "1")
                .arg("bundle")
                .arg("-f")
                .arg(&self.spec)
                .arg("-o")
                .arg(&out)
                .args(args),
        );
        v["manifest_digest"].as_str().unwrap().to_string()
    }
}

/// kill -9 of `bundle --push --format modelpack` halfway through its one big raw layer (the
/// chunk in flight held at a buffering proxy): the same command again continues the recorded
/// session, sends about half, and the result pulls back intact and verifies.
#[test]
fn a_bundle_push_killed_mid_raw_layer_continues() {
    let Some(reg) = Registry::start("a_bundle_push_killed_mid_raw_layer_continues") else {
        return;
    };
    let p = project(&[("model.bin", 64 << 20, 31)]);
    let (key, public) = keygen_with(&mut p.env.cmd(), &p.env.path("key"));
    let key = key.to_str().unwrap().to_string();
    // chunks of 8 MiB: the 5th is in flight when the bundle dies, 4 (32 MiB) are in the registry
    let sp = StallingProxy::start(&reg.addr, 5);
    let target = format!("{}/ml/bigmp:1", sp.proxy.addr);
    let args = [
        "--format",
        "modelpack",
        "--chunk-size",
        "8M",
        "--sign",
        key.as_str(),
    ];
    p.bundle_and_kill(&sp, &target, &args);
    // the session is recorded under the layer's plan: its digest is known only at its end
    let sessions = p.records(false);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let digest = sha256(&p.files[0].1);
    assert_eq!(sessions[0].1["plan"], true, "{sessions:?}");
    assert_ne!(sessions[0].1["digest"], digest.as_str());

    let before = sp.proxy.seen().len();
    let v = json_ok(&mut p.bundle(&target, &args));
    let size = 64 * MIB;
    let held = 32 * MIB;
    assert_eq!(v["blobs"]["resumed"], 1, "{v}");
    assert_eq!(v["bytes_resumed"], held, "{v}");
    assert_eq!(v["resumed"][0]["digest"], digest.as_str(), "{v}");
    assert_eq!(v["resumed"][0]["at"], held, "{v}");
    let uploaded = v["bytes_uploaded"].as_u64().unwrap();
    // (the proxy also sees the signature referrer's blob)
    let sent = upload_bytes(&sp.proxy, before);
    assert!(
        sent >= uploaded && sent < uploaded + MIB,
        "mlart says {uploaded}, the proxy saw {sent}: {v}"
    );
    assert!(sent * 100 <= size * 55, "sent {sent} of {size}: {v}");
    eprintln!("measured: the run again sent {sent} bytes of a {size}-byte raw layer");
    assert!(
        p.records(false).is_empty(),
        "the session outlived its commit"
    );
    // the same bundle as a layout would have
    let local = ["--format", "modelpack", "--sign", key.as_str()];
    assert_eq!(v["digest"], p.layout_digest(&local).as_str(), "{v}");
    let r = reg.reference("ml/bigmp:1");
    p.check_pulled(&r);
    let out = run(&mut verify_with(p.env.cmd(), &r, &[&public]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Once more: everything is there; only the small layers mlart writes itself (the
    // metadata document, model.sig) stream up again.
    let before = sp.proxy.seen().len();
    let v = json_ok(&mut p.bundle(&target, &args));
    assert!(v["blobs"]["skipped"].as_u64().unwrap() >= 2, "{v}");
    assert!(upload_bytes(&sp.proxy, before) < 64 << 10, "{v}");
}

/// kill -9 of `bundle --push` (image form: a tar layer per model file) while its third layer
/// is in flight: the two committed before are recorded, and the next run skips them.
#[test]
fn a_bundle_push_killed_after_some_tar_layers_skips_them() {
    let Some(reg) = Registry::start("a_bundle_push_killed_after_some_tar_layers_skips_them") else {
        return;
    };
    let p = project(&[
        ("a.bin", 8 << 20, 41),
        ("b.bin", 8 << 20, 42),
        ("c.bin", 8 << 20, 43),
    ]);
    let sp = StallingProxy::start(&reg.addr, 3);
    let target = format!("{}/ml/tars:1", sp.proxy.addr);
    let args = ["--large-file", "1048576"];
    p.bundle_and_kill(&sp, &target, &args);
    let layers = p.records(true);
    assert_eq!(layers.len(), 2, "{layers:?}");

    let before = sp.proxy.seen().len();
    let v = json_ok(&mut p.bundle(&target, &args));
    assert!(v["blobs"]["skipped"].as_u64().unwrap() >= 2, "{v}");
    let sent = upload_bytes(&sp.proxy, before);
    assert_eq!(sent, v["bytes_uploaded"].as_u64().unwrap(), "{v}");
    // the third layer and the small blobs
    assert!(sent < 9 * MIB, "sent {sent}: {v}");
    eprintln!("measured: the run again sent {sent} bytes of 3 layers of 8 MiB");
    assert_eq!(p.records(true).len(), 3);
    assert_eq!(v["digest"], p.layout_digest(&args).as_str(), "{v}");
    p.check_pulled(&reg.reference("ml/tars:1"));
}

/// Stale and hostile records: a layer record naming a blob the registry lacks, or whose
/// content is not the files', or that is not JSON, or that names another repository; an
/// upload session on another host. None is a wrong skip or an error: the bundle is the one a
/// layout gets, and pulls back intact.
#[test]
fn stale_and_hostile_records_never_skip_wrongly() {
    let Some(reg) = Registry::start("stale_and_hostile_records_never_skip_wrongly") else {
        return;
    };
    let p = project(&[("a.bin", 2 << 20, 51), ("b.bin", 2 << 20, 52)]);
    let proxy = HttpProxy::start(&reg.addr, |_| None);
    let tars = ["--large-file", "1048576"];
    let want = p.layout_digest(&tars);
    let layer_bytes = 4 * MIB;

    // Each case: push to a new repository once (records written), spoil the records, push
    // again: both model layers are uploaded again.
    type Spoil = fn(&mut Value);
    let cases: Vec<(&str, Spoil)> = vec![
        ("absent", |r| {
            r["digest"] = format!("sha256:{}", "0".repeat(64)).into();
        }),
        ("content", |r| r["content"] = "1".repeat(64).into()),
        ("garbage", |r| *r = Value::String("{not a record".into())),
        ("repo", |r| r["repository"] = "ml/other".into()),
        ("digest", |r| r["digest"] = "sha256:zz".into()),
    ];
    for (name, spoil) in cases {
        let target = format!("{}/ml/h-{name}:1", proxy.addr);
        let v = json_ok(&mut p.bundle(&target, &tars));
        assert_eq!(v["digest"], want.as_str(), "{name}: {v}");
        let recs: Vec<_> = p
            .records(true)
            .into_iter()
            .filter(|(_, r)| r["repository"] == format!("ml/h-{name}").as_str())
            .collect();
        assert_eq!(recs.len(), 2, "{name}: {recs:?}");
        for (path, mut r) in recs {
            spoil(&mut r);
            let raw = match &r {
                Value::String(s) => s.clone().into_bytes(),
                _ => serde_json::to_vec(&r).unwrap(),
            };
            fs::write(path, raw).unwrap();
        }
        // The tag moved to the same files in one layer: the repository's bundle then has no
        // layer of either file alone, so only a (spoiled) record could skip them
        // (`store::previous`).
        json_ok(&mut p.bundle(&target, &[]));
        let before = proxy.seen().len();
        let out = run(p.bundle(&target, &tars).arg("--json"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{name}: {stderr}"
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["digest"], want.as_str(), "{name}: {v}");
        let sent = upload_bytes(&proxy, before);
        assert!(sent >= layer_bytes, "{name}: only {sent} sent: {v}");
        p.check_pulled(&reg.reference(&format!("ml/h-{name}:1")));
    }

    // An upload session of the raw layer (recorded by a run killed midway) rewritten to a
    // location on another host: ignored, the blob uploaded from the start.
    let sp = StallingProxy::start(&reg.addr, 2);
    let mp = ["--format", "modelpack", "--chunk-size", "1M"];
    let target = format!("{}/ml/h-session:1", sp.proxy.addr);
    p.bundle_and_kill(&sp, &target, &mp);
    let sessions = p.records(false);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let (path, mut rec) = sessions.into_iter().next().unwrap();
    rec["location"] = "http://evil.example/v2/ml/h-session/blobs/uploads/x?_state=y".into();
    fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let before = sp.proxy.seen().len();
    let v = json_ok(&mut p.bundle(&target, &mp));
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(upload_bytes(&sp.proxy, before) >= layer_bytes, "{v}");
    assert!(!path.exists(), "the hostile record is still there");
    assert!(sp
        .proxy
        .seen()
        .iter()
        .all(|s| !s.target.contains("evil.example")));
    assert_eq!(v["digest"], p.layout_digest(&mp[..2]).as_str(), "{v}");
    p.check_pulled(&reg.reference("ml/h-session:1"));
}

/// kill -9 of `bundle --push` (image form) while its one big tar layer is in flight: the
/// next run makes the layer again, hashes the part the registry holds without sending it,
/// and sends the rest. The tar is made twice; the bytes go up once.
#[test]
fn a_bundle_push_killed_mid_tar_layer_continues() {
    let Some(reg) = Registry::start("a_bundle_push_killed_mid_tar_layer_continues") else {
        return;
    };
    let p = project(&[("model.bin", 24 << 20, 81)]);
    // chunks of 4 MiB: the 4th is in flight when the bundle dies, 3 (12 MiB) are held
    let sp = StallingProxy::start(&reg.addr, 4);
    let target = format!("{}/ml/midtar:1", sp.proxy.addr);
    let args = ["--large-file", "1048576", "--chunk-size", "4M"];
    p.bundle_and_kill(&sp, &target, &args);
    let sessions = p.records(false);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].1["plan"], true, "{sessions:?}");

    let before = sp.proxy.seen().len();
    let v = json_ok(&mut p.bundle(&target, &args));
    let held = 12 * MIB;
    assert_eq!(v["blobs"]["resumed"], 1, "{v}");
    assert_eq!(v["bytes_resumed"], held, "{v}");
    assert_eq!(v["resumed"][0]["at"], held, "{v}");
    let sent = upload_bytes(&sp.proxy, before);
    assert_eq!(sent, v["bytes_uploaded"].as_u64().unwrap(), "{v}");
    // the rest of the layer (12 MiB and its tar headers) and the small blobs
    assert!(sent > held && sent < held + MIB, "sent {sent}: {v}");
    eprintln!("measured: the run again sent {sent} bytes of a 24 MiB tar layer");
    assert!(
        p.records(false).is_empty(),
        "the session outlived its commit"
    );
    assert_eq!(v["digest"], p.layout_digest(&args[..2]).as_str(), "{v}");
    p.check_pulled(&reg.reference("ml/midtar:1"));
}

/// The file changed between the killed run and the next, its size and mtime put back (the
/// plan is the same): the bytes the registry holds are not the file's any more, the commit
/// of the continued session is refused (the registry checks the digest), and the layer is
/// sent again whole. The bundle is the new file's.
#[test]
fn a_continued_layer_whose_bytes_changed_is_sent_again() {
    let Some(reg) = Registry::start("a_continued_layer_whose_bytes_changed_is_sent_again") else {
        return;
    };
    let mut p = project(&[("model.bin", 16 << 20, 91)]);
    let sp = StallingProxy::start(&reg.addr, 3);
    let target = format!("{}/ml/changed:1", sp.proxy.addr);
    let args = ["--format", "modelpack", "--chunk-size", "4M"];
    p.bundle_and_kill(&sp, &target, &args);
    assert_eq!(p.records(false).len(), 1);

    // new bytes at the start (held by the registry), same size, same mtime
    let path = p.env.path("proj/model.bin");
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let data = &mut p.files[0].1;
    data[..4096].copy_from_slice(&noise(4096, 92));
    fs::write(&path, &*data).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let before = sp.proxy.seen().len();
    let out = run(p.bundle(&target, &args).arg("--json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    let sent = upload_bytes(&sp.proxy, before);
    // the rest of the continued session (8 MiB), then the whole layer again
    assert!(sent >= 24 * MIB, "sent {sent}: {v}");
    assert!(p.records(false).is_empty(), "{:?}", p.records(false));
    assert_eq!(v["digest"], p.layout_digest(&args[..2]).as_str(), "{v}");
    p.check_pulled(&reg.reference("ml/changed:1"));
}

/// `--chunk-size` splits a streamed tar layer into PATCHes of that size (appended to one
/// session), as `push` splits a blob; the bundle is the one a layout gets. Without `--push`
/// the flag is refused.
#[test]
fn a_tar_layer_streams_in_chunks_of_chunk_size() {
    use std::collections::HashMap;
    let Some(reg) = Registry::start("a_tar_layer_streams_in_chunks_of_chunk_size") else {
        return;
    };
    let p = project(&[("a.bin", (3 << 20) + 12345, 61)]);
    let proxy = HttpProxy::start(&reg.addr, |_| None);
    let target = format!("{}/ml/chunks:1", proxy.addr);
    let tars = ["--large-file", "1048576"];
    let v = json_ok(p.bundle(&target, &tars).args(["--chunk-size", "1M"]));
    assert_eq!(v["digest"], p.layout_digest(&tars).as_str(), "{v}");
    let mut per_session: HashMap<String, Vec<usize>> = HashMap::new();
    for s in proxy.seen().iter().filter(|s| s.method == "PATCH") {
        let path = s.target.split('?').next().unwrap().to_string();
        per_session.entry(path).or_default().push(s.body_len);
    }
    // the model layer: 3 MiB and a bit, plus tar headers: four PATCHes of at most 1 MiB
    let big = per_session
        .values()
        .find(|b| b.iter().sum::<usize>() > 3 << 20)
        .unwrap_or_else(|| panic!("{per_session:?}"));
    assert_eq!(big.len(), 4, "{big:?}");
    assert!(big[..3].iter().all(|n| *n == 1 << 20), "{big:?}");
    p.check_pulled(&reg.reference("ml/chunks:1"));

    let out = run(p
        .env
        .cmd()
        .arg("bundle")
        .arg("-f")
        .arg(&p.spec)
        .arg("-o")
        .arg(p.env.path("x.oci"))
        .args(["--chunk-size", "1M"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--chunk-size") && stderr.contains("--push"),
        "{stderr}"
    );
}

/// The human output of a resumed `bundle --push` says what `push`'s does: the blob resumed
/// and where, and the blobs skipped.
#[test]
fn a_resumed_bundle_push_says_so() {
    let Some(reg) = Registry::start("a_resumed_bundle_push_says_so") else {
        return;
    };
    let p = project(&[("model.bin", 12 << 20, 71)]);
    let sp = StallingProxy::start(&reg.addr, 3);
    let target = format!("{}/ml/says:1", sp.proxy.addr);
    let args = ["--format", "modelpack", "--chunk-size", "4M"];
    p.bundle_and_kill(&sp, &target, &args);
    let human = |c: &mut Command| {
        let out = run(c);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let stdout = human(&mut p.bundle(&target, &args));
    let digest = sha256(&p.files[0].1);
    assert!(
        stdout.contains(&format!("resumed {digest} at 8.0 MiB")),
        "{stdout}"
    );
    // again: the model layer and the config are skipped
    let stdout = human(&mut p.bundle(&target, &args));
    let skipped: usize = stdout
        .split(" skipped")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(skipped >= 2, "{stdout}");
    p.check_pulled(&reg.reference("ml/says:1"));
}

/// Faults a real registry does not make, injected at the proxy in front of the real one: the
/// third PATCH of the model's layer reset, and the first commit (`PUT`) answered 503. The one
/// run tries again as `push` does, continuing the session from what the registry holds (no
/// second run needed), sends the model about once, and the bundle is the one a layout gets.
#[test]
fn a_bundle_push_rides_out_a_reset_and_a_503() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    let Some(reg) = Registry::start("a_bundle_push_rides_out_a_reset_and_a_503") else {
        return;
    };
    let p = project(&[("model.bin", 12 << 20, 101)]);
    let (patches, puts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (pa, pu) = (patches.clone(), puts.clone());
    let proxy = HttpProxy::start(&reg.addr, move |q| {
        if !q.target.contains("/blobs/uploads/") {
            return None;
        }
        match q.method.as_str() {
            "PATCH" if pa.fetch_add(1, Ordering::SeqCst) + 1 == 3 => Some(Reply::reset()),
            "PUT" if pu.fetch_add(1, Ordering::SeqCst) == 0 => Some(Reply::status(503)),
            _ => None,
        }
    });
    for (form, args) in [
        (
            "modelpack",
            vec!["--format", "modelpack", "--chunk-size", "4M"],
        ),
        (
            "image",
            vec!["--large-file", "1048576", "--chunk-size", "4M"],
        ),
    ] {
        patches.store(0, Ordering::SeqCst);
        puts.store(0, Ordering::SeqCst);
        let target = format!("{}/ml/faults-{form}:1", proxy.addr);
        let before = proxy.seen().len();
        let out = run(p
            .bundle(&target, &args)
            .env("MLART_RETRY_BASE_MS", "10")
            .arg("--json"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{form}: {stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let injected = proxy.seen()[before..]
            .iter()
            .filter(|s| s.injected.is_some())
            .count();
        assert!(injected >= 2, "{form}: the faults were not met: {v}");
        assert_eq!(v["blobs"]["resumed"], 1, "{form}: {v}");
        assert_eq!(v["bytes_resumed"], 8 * MIB, "{form}: {v}");
        // 12 MiB: two chunks held when the third was reset, the rest sent once more
        let sent = upload_bytes(&proxy, before);
        assert!(
            (12 * MIB..13 * MIB).contains(&sent),
            "{form}: sent {sent}: {v}"
        );
        assert_eq!(
            v["digest"],
            p.layout_digest(&args[..2]).as_str(),
            "{form}: {v}"
        );
        assert!(
            p.records(false).is_empty(),
            "{form}: {:?}",
            p.records(false)
        );
        p.check_pulled(&reg.reference(&format!("ml/faults-{form}:1")));
    }
}

/// A fresh runner (no layer records in its cache) bundling the next release of a project
/// whose big files did not change: each big layer is made without sending, found to be the
/// layer of the repository's previous bundle (its newest tag) and not sent. A file changed
/// at the same size is sent. Counted at a proxy; the results are the bundles a layout gets,
/// and pull back intact. Both forms: tar layers (image) and raw layers (ModelPack).
#[test]
fn a_fresh_cache_sends_only_the_layers_the_previous_bundle_lacks() {
    let Some(reg) =
        Registry::start("a_fresh_cache_sends_only_the_layers_the_previous_bundle_lacks")
    else {
        return;
    };
    let proxy = HttpProxy::start(&reg.addr, |_| None);
    for (form, repo) in [("image", "ml/fresh"), ("modelpack", "ml/freshmp")] {
        let mut p = project(&[("a.bin", 3 << 20, 51), ("b.bin", 2 << 20, 52)]);
        // (each big file a layer of its own)
        let args = ["--format", form, "--large-file", "1048576"];
        let push = |p: &Project, tag: &str| -> (Value, u64) {
            // a fresh runner: no records of earlier runs
            let _ = fs::remove_dir_all(p.env.path("cache"));
            let before = proxy.seen().len();
            let v = json_ok(&mut p.bundle(&format!("{}/{repo}:{tag}", proxy.addr), &args));
            (v, upload_bytes(&proxy, before))
        };
        let (first, sent) = push(&p, "1.0.0");
        assert!(
            sent >= 5 * MIB,
            "{form}: the first push sends all: {sent} {first}"
        );

        // the next release: another version and a small new file, the big files as they were
        let spec = fs::read_to_string(&p.spec).unwrap();
        fs::write(p.env.path("proj/notes.txt"), "retrained on more data\n").unwrap();
        fs::write(
            &p.spec,
            spec.replace("version: '1'", "version: '2'") + "docs: [notes.txt]\n",
        )
        .unwrap();
        let (second, sent) = push(&p, "1.1.0");
        assert!(
            sent < MIB,
            "{form}: sent {sent} of unchanged big files: {second}"
        );
        assert_eq!(second["bytes_uploaded"].as_u64().unwrap(), sent, "{second}");
        assert!(
            second["blobs"]["skipped"].as_u64().unwrap() >= 2,
            "{second}"
        );
        assert_eq!(second["digest"], p.layout_digest(&args).as_str());
        eprintln!("measured ({form}): the next release from a fresh cache sent {sent} bytes");

        // b.bin retrained at the same size: it is sent, a.bin is not
        let b = noise(2 << 20, 53);
        fs::write(p.env.path("proj/b.bin"), &b).unwrap();
        p.files[1].1 = b;
        fs::write(
            &p.spec,
            fs::read_to_string(&p.spec)
                .unwrap()
                .replace("version: '2'", "version: '3'"),
        )
        .unwrap();
        let (third, sent) = push(&p, "1.2.0");
        assert!(
            (2 * MIB..3 * MIB).contains(&sent),
            "{form}: sent {sent}: b.bin and the small blobs, not a.bin: {third}"
        );
        assert_eq!(third["digest"], p.layout_digest(&args).as_str());
        p.check_pulled(&reg.reference(&format!("{repo}:1.2.0")));

        // other settings, the same files: a tar layer's bytes differ (its mtime), so it is
        // sent; a raw layer is the file, so it is not
        let _ = fs::remove_dir_all(p.env.path("cache"));
        let before = proxy.seen().len();
        let target = format!("{}/{repo}:1.3.0", proxy.addr);
        let v = json_ok(
            p.bundle(&target, &args)
                .env("SOURCE_DATE_EPOCH", "1000000000"),
        );
        let sent = upload_bytes(&proxy, before);
        match form {
            "image" => assert!(sent >= 5 * MIB, "{form}: sent {sent}: {v}"),
            _ => assert!(sent < MIB, "{form}: sent {sent}: {v}"),
        }
        p.check_pulled(&reg.reference(&format!("{repo}:1.3.0")));
    }
}
