//! Regressions found by using mlart as a new user would (the README as the only guide): usage
//! errors under `--json`, `oci:` names for sign/verify, names a spec or a pull cannot carry,
//! `init` on odd folders, outputs that are someone else's file, NaN gate thresholds, and
//! Ctrl-C during a push.

use crate::support::fixtures::bundle_iris_cwd;
use crate::support::registry::{Env, Registry};
use crate::support::{
    example, example_copy, fails, field_strs, json_ok, keygen, leftovers, mlart, noise,
    pull_verified, run, sign, verify_cmd,
};
use std::fs;
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A command line clap refuses still answers `--json` with `{"error": …}` on stdout, exit 2;
/// `--help` stays help.
#[test]
fn json_usage_errors_are_json() {
    for args in [
        &["--json", "bundle", "--compression", "brotli"][..],
        &["pull", "--json"][..],
        &["--json", "frobnicate"][..],
        &["--json"][..],
    ] {
        let out = run(mlart().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["exit_code"], 2, "{args:?}: {v}");
        assert_eq!(v["error"]["kind"], "usage", "{args:?}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(!msg.starts_with("error:"), "{msg}");
        assert!(!msg.contains("For more information"), "{msg}");
    }
    let out = run(mlart().args(["--json", "bundle", "--compression", "brotli"]));
    let v = stdout_json(&out);
    assert!(v["error"]["message"].as_str().unwrap().contains("brotli"));
    // no verb: one line naming the verbs a user can run, not the hidden worker
    let v = stdout_json(&run(mlart().arg("--json")));
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("bundle, inspect") && !msg.contains('\n'),
        "{msg}"
    );
    assert!(!msg.contains("__validate-worker"), "{msg}");
    // without --json: clap's own text on stderr
    let err = fails(mlart().args(["bundle", "--compression", "brotli"]), 2);
    assert!(err.contains("brotli"), "{err}");
    let out = run(mlart().args(["--json", "--help"]));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
}

/// `sign` and `verify` take `oci:DIR[:TAG]` and `oci-archive:FILE[:TAG]` like `inspect`.
#[test]
fn sign_and_verify_take_oci_names() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("iris.oci");
    let archive = t.path().join("iris.tar");
    bundle_iris_cwd(&mut mlart(), &layout);
    let (key, public) = keygen(t.path(), "k");
    let v = sign(format!("oci:{}:1.0.0", layout.display()), &key);
    assert_eq!(v["added"], true);
    json_ok(
        mlart()
            .args(["copy"])
            .arg(&layout)
            .arg(format!("oci-archive:{}", archive.display())),
    );
    for target in [
        format!("oci:{}:1.0.0", layout.display()),
        format!("oci:{}", layout.display()),
        format!("oci-archive:{}:1.0.0", archive.display()),
    ] {
        let v = json_ok(&mut verify_cmd(&target, &[&public]));
        assert_eq!(v["ok"], true, "{target}: {v}");
    }
    let err = fails(
        &mut verify_cmd(format!("oci:{}:nope", layout.display()), &[&public]),
        2,
    );
    assert!(err.contains("no manifest tagged \"nope\""), "{err}");
}

/// A file whose name `pull` would refuse (a backslash) or that is not UTF-8 is an error at
/// `bundle` time, naming it: not a bundle nobody can pull.
#[test]
fn bundle_refuses_names_pull_cannot_write() {
    use std::os::unix::ffi::OsStrExt;
    for (name, want) in [
        (std::ffi::OsStr::new("back\\slash.md"), "backslash"),
        (std::ffi::OsStr::from_bytes(b"bad\xff.md"), "not UTF-8"),
    ] {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("docs")).unwrap();
        fs::write(t.path().join("m.onnx"), b"x").unwrap();
        fs::write(t.path().join("docs/ok.md"), b"ok").unwrap();
        fs::write(t.path().join("docs").join(name), b"y").unwrap();
        fs::write(
            t.path().join("mlart.yaml"),
            "name: n\nversion: '1'\nmodel: [m.onnx]\ndocs: [docs/]\n",
        )
        .unwrap();
        let err = fails(mlart().current_dir(t.path()).arg("bundle"), 2);
        assert!(err.contains(want), "{err}");
        assert!(err.contains("mlart.yaml:4:"), "{err}");
        assert!(err.contains(".mlartignore"), "{err}");
        assert!(!t.path().join("build/n.oci").exists());
        // excluded, it bundles
        fs::write(t.path().join(".mlartignore"), "docs/b*\n").unwrap();
        let v = json_ok(mlart().current_dir(t.path()).arg("bundle"));
        assert_eq!(v["files"], 2, "{v}");
    }
}

/// `init` writes a spec that loads and bundles exactly the files it lists, whatever their
/// names: glob characters are escaped, names no spec can hold are left out with a warning.
#[test]
fn init_spec_loads_with_odd_file_names() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for n in [
        "model[1].onnx",
        "x{1,2}.onnx",
        "q?.onnx",
        "st*r.onnx",
        "stXr.onnx",
        "dir[2]/m.onnx",
        "a: b.onnx",
        "back\\slash.onnx",
    ] {
        let p = d.join(n);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, n).unwrap();
    }
    let out = run(mlart().arg("init").arg(d));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a: b.onnx") && err.contains("back\\slash.onnx"),
        "{err}"
    );
    let v = json_ok(mlart().current_dir(d).args(["bundle", "-o", "out.oci"]));
    assert_eq!(v["files"], 6, "{v}");
    let v = json_ok(mlart().current_dir(d).args(["inspect", "out.oci"]));
    let mut paths: Vec<&str> = field_strs(&v["metadata"]["files"], "path");
    paths.sort();
    assert_eq!(
        paths,
        [
            "dir[2]/m.onnx",
            "model[1].onnx",
            "q?.onnx",
            "st*r.onnx",
            "stXr.onnx",
            "x{1,2}.onnx"
        ]
    );
}

/// `init` in a folder with nothing it recognises says so (exit 2), not "please report this".
#[test]
fn init_without_known_files_is_an_input_error() {
    let t = tempfile::tempdir().unwrap();
    let err = fails(mlart().arg("init").arg(t.path()), 2);
    assert!(err.contains("found no file"), "{err}");
    assert!(!err.contains("please report"), "{err}");
    fs::write(t.path().join("notes.xyz"), b"x").unwrap();
    let out = run(mlart().arg("--json").arg("init").arg(t.path()));
    assert_eq!(out.status.code(), Some(2));
    let msg = stdout_json(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("notes.xyz") && !msg.contains("please report"),
        "{msg}"
    );
    assert!(!t.path().join("mlart.yaml").exists());
}

/// An existing file that is not an OCI archive is not replaced by `bundle -o X.tar` or `copy`
/// (a directory that is not a layout never was); an OCI archive or an empty file is.
#[test]
fn outputs_never_replace_a_foreign_file() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("iris.oci");
    bundle_iris_cwd(&mut mlart(), &layout);
    // a user's tar of photos, and a text file
    let photos = t.path().join("photos.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&photos).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "holiday.jpg", &b"photo"[..]).unwrap();
        b.finish().unwrap();
    }
    let photos_bytes = fs::read(&photos).unwrap();
    let notes = t.path().join("notes.txt");
    fs::write(&notes, "keep me").unwrap();
    let err = fails(
        mlart()
            .current_dir(example())
            .args(["bundle", "-o"])
            .arg(&photos),
        2,
    );
    assert!(err.contains("is not an OCI archive"), "{err}");
    fails(mlart().arg("copy").arg(&layout).arg(&photos), 2);
    fails(
        mlart()
            .arg("copy")
            .arg(&layout)
            .arg(format!("oci-archive:{}", notes.display())),
        2,
    );
    assert_eq!(fs::read(&photos).unwrap(), photos_bytes);
    assert_eq!(fs::read_to_string(&notes).unwrap(), "keep me");
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    // an empty file, then the archive itself, are replaced
    let out = t.path().join("out.tar");
    fs::write(&out, b"").unwrap();
    json_ok(mlart().arg("copy").arg(&layout).arg(&out));
    bundle_iris_cwd(&mut mlart(), &out);
    json_ok(mlart().arg("inspect").arg(&out));
}

/// A NaN threshold compares false with everything, so the gate passed whatever the value:
/// it is a policy error now, from a policy file and from mlart.yaml. Policy YAML errors carry
/// one position, without the YAML library's own prefix and API advice.
#[test]
fn gate_refuses_nan_thresholds() {
    let proj = example_copy();
    let layout = proj.path().join("iris.oci");
    json_ok(
        mlart()
            .current_dir(proj.path())
            .args(["bundle", "-o"])
            .arg(&layout),
    );
    let policy = proj.path().join("policy.yaml");
    for (yaml, want) in [
        (
            "gates:\n  metrics: [{metric: accuracy, min: .nan}]\n",
            "min is NaN",
        ),
        (
            "gates:\n  metrics: [{metric: accuracy, max: .NaN}]\n",
            "max is NaN",
        ),
        (
            "gates:\n  metrics: [{metric: accuracy, min: 0.5, min: 0.6}]\n",
            "policy.yaml:2:",
        ),
    ] {
        fs::write(&policy, yaml).unwrap();
        let err = fails(
            mlart()
                .arg("gate")
                .arg(&layout)
                .arg("--policy")
                .arg(&policy),
            2,
        );
        assert!(err.contains(want), "{yaml}: {err}");
        assert!(!err.contains("DuplicateKeyPolicy"), "{err}");
        assert_eq!(err.matches("line ").count(), 0, "{err}");
    }
    let spec = proj.path().join("mlart.yaml");
    let mut text = fs::read_to_string(&spec).unwrap();
    text.push_str("gates:\n  metrics: [{metric: accuracy, min: .nan}]\n");
    fs::write(&spec, text).unwrap();
    let err = fails(mlart().current_dir(proj.path()).arg("gate").arg(&layout), 2);
    assert!(err.contains("NaN"), "{err}");
}

/// A TCP relay to `upstream` that forwards client-to-server bytes at about `up` bytes per
/// second and server-to-client bytes at about `down` (0: as fast as they come).
struct SlowProxy {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn relay(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    rate: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let pause = (rate > 0).then(|| Duration::from_secs_f64(buf.len() as f64 / rate as f64));
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(p) = pause {
                    std::thread::sleep(p);
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl SlowProxy {
    fn start(upstream: &str, up: usize, down: usize) -> SlowProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (st1, st2) = (stop2.clone(), stop2.clone());
                std::thread::spawn(move || relay(client, server, up, st1));
                std::thread::spawn(move || relay(s2, c2, down, st2));
            }
        });
        SlowProxy { addr, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One Ctrl-C during `push` stops it (exit 130) instead of uploading to the end and moving
/// the tag; the same for `copy` from a registry to an archive: nothing is left behind. (The
/// upload and copy loops did not look at Ctrl-C.)
#[test]
fn push_and_copy_stop_on_ctrl_c() {
    let Some(reg) = Registry::start("push_and_copy_stop_on_ctrl_c") else {
        return;
    };
    let env = Env::new();
    let proj = env.path("proj");
    fs::create_dir(&proj).unwrap();
    // 24 MiB of incompressible bytes: a layer of its own, ~6 s through the slow link
    fs::write(proj.join("m.onnx"), noise(24 << 20, 0x9e3779b97f4a7c15)).unwrap();
    fs::write(
        proj.join("mlart.yaml"),
        "name: big\nversion: '1'\nmodel: [m.onnx]\n",
    )
    .unwrap();
    let layout = env.path("big.oci");
    json_ok(
        env.cmd()
            .current_dir(&proj)
            .args(["bundle", "-o"])
            .arg(&layout),
    );
    let interrupt = |cmd: &mut std::process::Command| {
        let child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(130), "{err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    };
    let slow_up = SlowProxy::start(&reg.addr, 4 << 20, 0);
    interrupt(
        env.cmd()
            .arg("push")
            .arg(&layout)
            .arg(format!("{}/ml/big:1", slow_up.addr)),
    );
    let out = run(env.cmd().args(["inspect", &reg.reference("ml/big:1")]));
    assert!(!out.status.success(), "ml/big:1 was tagged");
    // pushed directly, then copied out through a slow link
    env.push(&layout, reg.reference("ml/big:1"));
    let out_dir = env.path("out");
    fs::create_dir(&out_dir).unwrap();
    let dest = out_dir.join("big.tar");
    let slow_down = SlowProxy::start(&reg.addr, 0, 4 << 20);
    interrupt(
        env.cmd()
            .arg("copy")
            .arg(format!("{}/ml/big:1", slow_down.addr))
            .arg(&dest),
    );
    assert!(!dest.exists());
    assert!(leftovers(&out_dir).is_empty(), "{:?}", leftovers(&out_dir));
}

/// `pull --verify-key` naming the failing model.sig names it as in the bundle, not by the
/// hidden staging directory's path.
#[test]
fn pull_verify_key_failure_names_model_sig_not_the_staging_dir() {
    let t = tempfile::tempdir().unwrap();
    let (a_key, _) = keygen(t.path(), "a");
    let (b_key, b_pub) = keygen(t.path(), "b");
    let layout = t.path().join("iris.oci");
    json_ok(
        mlart()
            .current_dir(example())
            .args(["bundle", "--sign"])
            .arg(&a_key)
            .arg("-o")
            .arg(&layout),
    );
    sign(&layout, &b_key);
    let out = t.path().join("out");
    let err = fails(&mut pull_verified(&layout, &out, &[&b_pub]), 1);
    assert!(
        err.contains("not pulled: model.sig: signed by another key"),
        "{err}"
    );
    assert!(!err.contains(".mlart-pull"), "{err}");
    assert!(!out.exists());
}

/// `tags` of a repository the registry does not know names the repository, not `REPO:latest`.
#[test]
fn tags_of_an_unknown_repository_names_the_repository() {
    let Some(reg) = Registry::start("tags_of_an_unknown_repository_names_the_repository") else {
        return;
    };
    let env = Env::new();
    let repo = reg.reference("ml/nothing");
    let err = fails(env.cmd().args(["tags", &repo]), 3);
    assert!(err.contains(&format!("{repo}: listing tags")), "{err}");
    assert!(!err.contains(":latest"), "{err}");
}

/// The exit-code table: each registry failure has its own `--json` kind, all exit 3 — a
/// refused login (auth), an unknown repository (not-found), a registry nobody listens on
/// (network) — against a real registry with htpasswd auth.
#[test]
fn registry_failures_have_their_own_kind_and_exit_3() {
    let Some(reg) = Registry::start_with(
        "registry_failures_have_their_own_kind_and_exit_3",
        Some(("alice", "s3cret-pw")),
        None,
    ) else {
        return;
    };
    let kind_of = |c: &mut std::process::Command| {
        let out = run(c.arg("--json"));
        let v = stdout_json(&out);
        assert_eq!(out.status.code(), Some(3), "{v}");
        assert_eq!(v["error"]["exit_code"], 3, "{v}");
        (
            v["error"]["kind"].as_str().unwrap().to_string(),
            v["error"]["message"].as_str().unwrap().to_string(),
        )
    };
    let env = Env::new();
    // no credentials at all: the registry asks for them
    let (k, m) = kind_of(env.cmd().args(["tags", &reg.reference("ml/iris")]));
    assert_eq!(k, "auth", "{m}");
    assert!(m.contains("mlart login"), "{m}");
    // logged in: a repository that does not exist
    let mut c = env.cmd();
    c.args(["login", &reg.addr, "-u", "alice", "--password-stdin"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"s3cret-pw\n").unwrap();
    assert!(child.wait().unwrap().success());
    let (k, m) = kind_of(
        env.cmd()
            .args(["pull", &reg.reference("ml/nothing:1"), "-o"])
            .arg(env.path("out")),
    );
    assert_eq!(k, "not-found", "{m}");
    assert!(m.contains("ml/nothing"), "{m}");
    assert!(!env.path("out").exists());
    // a port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (k, m) = kind_of(
        env.cmd()
            .env("MLART_RETRIES", "0")
            .args(["tags", &format!("127.0.0.1:{port}/ml/iris")]),
    );
    assert_eq!(k, "network", "{m}");
}

/// A reader that closed its end of the pipe (`mlart inspect … | head -0`) ends the run quietly:
/// exit 0, no panic. (SIGPIPE is not restored to its default for this: that would let a
/// registry resetting a connection mid-upload kill a push; see `registry_faults_retried`.)
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let env = Env::new();
    let layout = env.path("iris.oci");
    crate::support::fixtures::build_iris(&env, &layout);
    for json in [false, true] {
        let mut fds = [0; 2];
        // SAFETY: pipe() fills two fresh descriptors that this test then owns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(read);
        let mut c = env.cmd();
        if json {
            c.arg("--json");
        }
        let out = c
            .arg("inspect")
            .arg(&layout)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "json={json}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The README's example spec, copied as written into a project that has the files it names,
/// bundles; and the files it names are all bundled (#19: its `data:` glob failed as written).
#[test]
fn readme_example_spec_bundles_as_written() {
    let readme = fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    let section = &readme[readme.find("## The spec").expect("README: a spec section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let yaml = &section[start..start + section[start..].find("```").unwrap()];
    let p = example_copy();
    fs::write(p.path().join("mlart.yaml"), yaml).unwrap();
    fs::create_dir_all(p.path().join("data/2024")).unwrap();
    fs::write(p.path().join("data/2024/train.parquet"), b"PAR1 not really").unwrap();
    let v = json_ok(
        mlart()
            .current_dir(p.path())
            .args(["bundle", "-o", "out.oci"]),
    );
    assert_eq!(v["name"], "iris", "{v}");
    let out = json_ok(mlart().current_dir(p.path()).args(["inspect", "out.oci"]));
    let paths: Vec<&str> = out["metadata"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for want in [
        "model/iris.onnx",
        "data/2024/train.parquet",
        "eval/metrics.json",
        "train.py",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
}
