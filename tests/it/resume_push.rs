//! Resumable push (#24): an interrupted `mlart push` records its upload session in the cache
//! (`uploads/`), and the next push asks the registry what the session holds and continues.
//! Against the real test registry (distribution 2.8), directly and behind the buffering
//! proxy of `httpproxy` (which, like nginx's default `proxy_request_buffering`, forwards a
//! request only once its whole body arrived).
//!
//! What distribution 2.8 does with a request cut off midway (kill -9 of the client, or a
//! connection cut) is measured here too: it keeps the bytes in the session's data file, but its
//! session token still names the offset before that request, and the next request on the
//! session is refused ("upload resumed at wrong offset") and the session dropped. So a push
//! continues a session there only where no request was cut inside the registry: behind a
//! proxy that buffers, the chunk in flight is lost and the chunks before it are kept.

use crate::httpproxy::{HttpProxy, Reply};
use crate::support::fixtures::{one_model_layout, read_layout};
use crate::support::registry::{Env, Registry};
use crate::support::{fails, json_ok, run, sha256};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const MIB: u64 = 1 << 20;

/// A project with one incompressible `model.bin` of `size` bytes, bundled into
/// `<env>/big.oci`; the model layer's digest and size.
struct Big {
    env: Env,
    layout: PathBuf,
    data: Vec<u8>,
    digest: String,
    size: u64,
}

fn big(size: usize, seed: u64) -> Big {
    let env = Env::new();
    let (layout, data) = one_model_layout(&env, size, seed);
    let (_, manifest) = read_layout(&layout);
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()
        .clone();
    Big {
        env,
        layout,
        data,
        digest: layer["digest"].as_str().unwrap().into(),
        size: layer["size"].as_u64().unwrap(),
    }
}

impl Big {
    fn uploads(&self) -> PathBuf {
        self.env.path("cache/mlart/uploads")
    }

    /// The session records in the cache.
    fn records(&self) -> Vec<Value> {
        let Ok(rd) = fs::read_dir(self.uploads()) else {
            return Vec::new();
        };
        rd.filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "json")
                .then(|| serde_json::from_slice(&fs::read(p).unwrap()).unwrap())
        })
        .collect()
    }

    /// Where the record of this blob in `registry`/`repository` lives.
    fn record_path(&self, registry: &str, repository: &str) -> PathBuf {
        let key = sha256(format!("{registry}/{repository}@{}", self.digest).as_bytes());
        self.uploads().join(format!("{}.json", &key[7..]))
    }

    /// `push --chunk-size CHUNK LAYOUT TARGET --json`, started (killed by the caller).
    fn spawn_push(&self, target: &str, chunk: &str) -> Child {
        self.env
            .cmd()
            .args(["push", "--json", "--chunk-size", chunk])
            .arg(&self.layout)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn push(&self, target: &str, args: &[&str]) -> Value {
        json_ok(
            self.env
                .cmd()
                .arg("push")
                .args(args)
                .arg(&self.layout)
                .arg(target),
        )
    }

    /// Pull `r` straight from the registry (no cache): the model comes back byte for byte.
    fn check_pulled(&self, r: &str) {
        let out = self
            .env
            .path(&format!("out-{}", r.replace(['/', ':'], "_")));
        self.env.pull(r, &out, &["--no-cache"]);
        let got = fs::read(out.join("model.bin")).unwrap();
        assert!(
            got == self.data,
            "the pulled model differs from the pushed one"
        );
    }
}

pub(crate) fn kill9(child: &mut Child) {
    // SAFETY: a signal to a child process of this test.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
}

/// Wait (at most a minute) for `cond`; false when it never came.
pub(crate) fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Bytes of blob uploads (PATCH and PUT bodies) the proxy forwarded, from `seen[from..]`.
pub(crate) fn upload_bytes(proxy: &HttpProxy, from: usize) -> u64 {
    proxy.seen()[from..]
        .iter()
        .filter(|s| {
            (s.method == "PATCH" || s.method == "PUT")
                && s.target.contains("/blobs/uploads/")
                && s.injected.is_none()
        })
        .map(|s| s.body_len as u64)
        .sum()
}

/// A buffering proxy that, while `stall` is set, holds the `at`-th PATCH it gets (already
/// read whole, not forwarded) until `release`, then drops it: the chunk in flight when the
/// push is killed never reaches the registry.
pub(crate) struct StallingProxy {
    pub(crate) proxy: HttpProxy,
    pub(crate) stalled: Arc<AtomicBool>,
    pub(crate) release: Arc<AtomicBool>,
}

impl StallingProxy {
    pub(crate) fn start(upstream: &str, at: usize) -> StallingProxy {
        let (stalled, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let patches = AtomicUsize::new(0);
        let (s2, r2) = (stalled.clone(), release.clone());
        let proxy = HttpProxy::start(upstream, move |q| {
            if q.method != "PATCH" || r2.load(Ordering::SeqCst) {
                return None;
            }
            if patches.fetch_add(1, Ordering::SeqCst) + 1 != at {
                return None;
            }
            s2.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !r2.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            Some(Reply::reset())
        });
        StallingProxy {
            proxy,
            stalled,
            release,
        }
    }

    /// Push through the proxy and kill -9 the push while its `at`-th PATCH is held.
    fn push_and_kill(&self, b: &Big, target: &str, chunk: &str) {
        let mut child = b.spawn_push(target, chunk);
        let stalled = wait_for(|| self.stalled.load(Ordering::SeqCst));
        kill9(&mut child);
        self.release.store(true, Ordering::SeqCst);
        assert!(stalled, "the push never reached the PATCH to stall");
    }
}

/// kill -9 of a real push mid-chunk (the chunk in flight held at a buffering proxy, as nginx
/// does by default): the next push continues the recorded session from the last whole chunk,
/// uploads only the rest (counted by mlart and at the proxy), and the result pulls back intact.
#[test]
fn a_push_killed_mid_chunk_continues_from_the_last_whole_chunk() {
    let Some(reg) = Registry::start("a_push_killed_mid_chunk_continues_from_the_last_whole_chunk")
    else {
        return;
    };
    let b = big(64 << 20, 11);
    // chunks of 8 MiB: the 5th is in flight when the push dies, 4 (32 MiB) are in the registry
    let sp = StallingProxy::start(&reg.addr, 5);
    let target = format!("{}/ml/big:1", sp.proxy.addr);
    sp.push_and_kill(&b, &target, "8M");
    let records = b.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["digest"], b.digest.as_str());
    assert_eq!(records[0]["size"], b.size);
    assert_eq!(records[0]["repository"], "ml/big");

    let before = sp.proxy.seen().len();
    let v = b.push(&target, &["--chunk-size", "8M"]);
    let held = 32 * MIB;
    assert_eq!(v["blobs"]["resumed"], 1, "{v}");
    assert_eq!(v["bytes_resumed"], held, "{v}");
    assert_eq!(v["resumed"][0]["digest"], b.digest.as_str(), "{v}");
    assert_eq!(v["resumed"][0]["at"], held, "{v}");
    let uploaded = v["bytes_uploaded"].as_u64().unwrap();
    // the rest of the model, and the config (pushed after the layers, so not before the kill)
    assert!(
        uploaded >= b.size - held && uploaded < b.size - held + MIB,
        "uploaded {uploaded} of {}: {v}",
        b.size
    );
    assert!(uploaded * 100 <= b.size * 55, "{uploaded} of {}", b.size);
    // the proxy counted the same bytes going to the registry
    assert_eq!(upload_bytes(&sp.proxy, before), uploaded);
    assert!(b.records().is_empty(), "the record outlived its commit");
    assert_eq!(
        fs::read_dir(b.uploads()).unwrap().count(),
        0,
        "lock or temp files left"
    );
    b.check_pulled(&reg.reference("ml/big:1"));
}

/// The human output says which blob was resumed and where.
#[test]
fn a_resumed_push_says_so() {
    let Some(reg) = Registry::start("a_resumed_push_says_so") else {
        return;
    };
    let b = big(12 << 20, 12);
    let sp = StallingProxy::start(&reg.addr, 3);
    let target = format!("{}/ml/says:1", sp.proxy.addr);
    sp.push_and_kill(&b, &target, "4M");
    let out = run(b
        .env
        .cmd()
        .args(["push", "--chunk-size", "4M"])
        .arg(&b.layout)
        .arg(&target));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("resumed {} at 8.0 MiB", b.digest)),
        "{stdout}"
    );
    b.check_pulled(&reg.reference("ml/says:1"));
}

/// The registry finished a chunk whose answer the push never got (the connection died after
/// the work): distribution's session token then names an offset behind what it holds, it
/// refuses the session, and the push starts the blob afresh — in the same run (retried), and
/// in the next run when it has given up.
#[test]
fn a_chunk_done_but_unanswered_starts_the_blob_afresh() {
    let Some(reg) = Registry::start("a_chunk_done_but_unanswered_starts_the_blob_afresh") else {
        return;
    };
    let b = big(24 << 20, 13);
    let patches = Arc::new(AtomicUsize::new(0));
    let p2 = patches.clone();
    let proxy = HttpProxy::start(&reg.addr, move |q| {
        (q.method == "PATCH" && p2.fetch_add(1, Ordering::SeqCst) + 1 == 3).then(Reply::swallow)
    });
    // No retries: the push fails, its record stays.
    let target = format!("{}/ml/lost:1", proxy.addr);
    let err = fails(
        b.env
            .cmd()
            .env("MLART_RETRIES", "0")
            .args(["push", "--chunk-size", "4M"])
            .arg(&b.layout)
            .arg(&target),
        3,
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(b.records().len(), 1);
    let v = b.push(&target, &["--chunk-size", "4M"]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert_eq!(v["bytes_resumed"], 0, "{v}");
    assert!(v["bytes_uploaded"].as_u64().unwrap() >= b.size, "{v}");
    assert!(
        reg.log_lines()
            .iter()
            .any(|l| l.contains("upload resumed at wrong off")),
        "the registry did not refuse the session"
    );
    b.check_pulled(&reg.reference("ml/lost:1"));

    // With retries, in one run: the failed chunk, the refused session, a fresh upload.
    patches.store(0, Ordering::SeqCst);
    let target = format!("{}/ml/lost2:1", proxy.addr);
    let v = b.push(&target, &["--chunk-size", "4M"]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(patches.load(Ordering::SeqCst) > 6, "no second upload");
    b.check_pulled(&reg.reference("ml/lost2:1"));
}

/// The biggest `_uploads/*/data` file of `repository` in the registry's storage.
fn upload_data(reg: &Registry, repository: &str) -> u64 {
    let dir = reg
        .dir
        .path()
        .join("data/docker/registry/v2/repositories")
        .join(repository)
        .join("_uploads");
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| fs::metadata(e.ok()?.path().join("data")).ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Measured: kill -9 of a push straight to distribution 2.8 in the middle of a request (the
/// default 64 MiB chunks, killed inside the second one). The registry keeps what it received
/// in the session's data file, but refuses the session on the next request ("upload resumed
/// at wrong offset"): the next push uploads the blob again from the start, and succeeds.
#[test]
fn kill9_straight_to_distribution_measured() {
    let Some(reg) = Registry::start("kill9_straight_to_distribution_measured") else {
        return;
    };
    let b = big(192 << 20, 14);
    let target = reg.reference("ml/direct:1");
    let mut child = b.spawn_push(&target, "64M");
    let mid = wait_for(|| upload_data(&reg, "ml/direct") > 80 * MIB);
    kill9(&mut child);
    assert!(mid, "the push never got 80 MiB into the registry");
    // give the registry a moment to write what it read
    std::thread::sleep(Duration::from_millis(300));
    let kept = upload_data(&reg, "ml/direct");
    assert!(
        kept > 80 * MIB && kept < b.size,
        "the registry holds {kept}"
    );
    assert_eq!(b.records().len(), 1);
    let v = b.push(&target, &[]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(v["bytes_uploaded"].as_u64().unwrap() >= b.size, "{v}");
    assert!(
        reg.log_lines()
            .iter()
            .any(|l| l.contains("upload resumed at wrong off")),
        "the registry did not refuse the session"
    );
    assert!(b.records().is_empty());
    b.check_pulled(&target);
}

/// A TCP relay in front of the registry that cuts (resets) the connection carrying the
/// `at`-th byte sent to the registry, once; counted from the start. Stops after two minutes.
struct Cutter {
    addr: String,
}

impl Cutter {
    fn start(upstream: &str, at: u64) -> Cutter {
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicU64;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        l.set_nonblocking(true).unwrap();
        let up = upstream.to_string();
        let sent = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(120) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(&up) else {
                    continue;
                };
                for (mut from, mut to, upward) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let sent = sent.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 * 1024];
                        loop {
                            let k = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => k,
                            };
                            if upward {
                                let before = sent.fetch_add(k as u64, Ordering::SeqCst);
                                if before < at && before + k as u64 >= at {
                                    let _ = to.write_all(&buf[..(at - before) as usize]);
                                    std::thread::sleep(Duration::from_millis(100));
                                    for s in [&from, &to] {
                                        linger0(s);
                                        let _ = s.shutdown(std::net::Shutdown::Both);
                                    }
                                    break;
                                }
                            }
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Cutter { addr }
    }
}

/// Closing `s` resets the connection (RST, not FIN).
fn linger0(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Measured: a connection to distribution 2.8 cut in the middle of an upload (network loss).
/// The registry keeps what it received but refuses the session after: the push that gave up
/// leaves its record, the next one starts afresh and succeeds; with retries, the same push
/// recovers by itself.
#[test]
fn a_connection_cut_mid_upload_measured() {
    let Some(reg) = Registry::start("a_connection_cut_mid_upload_measured") else {
        return;
    };
    let b = big(48 << 20, 15);
    let cut = Cutter::start(&reg.addr, 20 * MIB);
    let target = format!("{}/ml/cut:1", cut.addr);
    let err = fails(
        b.env
            .cmd()
            .env("MLART_RETRIES", "0")
            .args(["push", "--chunk-size", "16M"])
            .arg(&b.layout)
            .arg(&target),
        3,
    );
    assert!(!err.contains("panicked"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let kept = upload_data(&reg, "ml/cut");
    assert!(
        kept > 16 * MIB && kept < 21 * MIB,
        "the registry holds {kept}"
    );
    assert_eq!(b.records().len(), 1);
    let v = b.push(&target, &["--chunk-size", "16M"]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(
        reg.log_lines()
            .iter()
            .any(|l| l.contains("upload resumed at wrong off")),
        "the registry did not refuse the session"
    );
    b.check_pulled(&reg.reference("ml/cut:1"));

    // retries on: one cut, one run
    let cut = Cutter::start(&reg.addr, 20 * MIB);
    let target = format!("{}/ml/cut2:1", cut.addr);
    let v = b.push(&target, &["--chunk-size", "16M"]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(b.records().is_empty());
    b.check_pulled(&reg.reference("ml/cut2:1"));
}

/// The recorded session is gone (registries drop unfinished sessions after a while): the
/// registry answers 404 and the push uploads afresh.
#[test]
fn an_expired_session_starts_afresh() {
    let Some(reg) = Registry::start("an_expired_session_starts_afresh") else {
        return;
    };
    let b = big(12 << 20, 16);
    let sp = StallingProxy::start(&reg.addr, 2);
    let target = format!("{}/ml/gone:1", sp.proxy.addr);
    sp.push_and_kill(&b, &target, "4M");
    assert_eq!(b.records().len(), 1);
    let uploads = reg
        .dir
        .path()
        .join("data/docker/registry/v2/repositories/ml/gone/_uploads");
    fs::remove_dir_all(&uploads).unwrap();
    let before = sp.proxy.seen().len();
    let v = b.push(&target, &["--chunk-size", "4M"]);
    assert_eq!(v["blobs"]["resumed"], 0, "{v}");
    assert!(v["bytes_uploaded"].as_u64().unwrap() >= b.size, "{v}");
    let seen = sp.proxy.seen();
    assert!(
        seen[before..]
            .iter()
            .any(|s| s.method == "GET" && s.target.contains("/blobs/uploads/")),
        "the session was never asked about: {seen:?}"
    );
    assert!(b.records().is_empty());
    b.check_pulled(&reg.reference("ml/gone:1"));
}

/// Hostile or broken records and answers: a record that is not JSON, one for another
/// repository or registry, a registry `Range` that is malformed, larger than the blob, or
/// `0-0`, a session that does not exist. Never a panic; the blob is uploaded afresh.
#[test]
fn hostile_records_and_ranges_start_afresh() {
    let Some(reg) = Registry::start("hostile_records_and_ranges_start_afresh") else {
        return;
    };
    let b = big(6 << 20, 17);
    // GETs of a fake session answered with the Range of the fake's name (…/fake-<case>)
    let ranges: Vec<(&str, &str)> = vec![
        ("big", "0-99999999999"),
        ("bad", "bytes 0-100"),
        ("zero", "0-0"),
        ("from", "100-200"),
        ("neg", "0--5"),
        ("ok", "0-1048575"), // plausible: the PATCH to the fake session fails (404)
    ];
    let table = ranges
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    let proxy = HttpProxy::start(&reg.addr, move |q| {
        let case = q.path().rsplit_once("/blobs/uploads/fake-")?.1.to_string();
        let (_, range) = table.iter().find(|(k, _)| *k == case)?;
        (q.method == "GET").then(|| {
            Reply::status(204)
                .header("Range", range)
                .header("Location", &q.target)
        })
    });
    let registry = proxy.addr.clone();
    let record = |repo: &str, location: &str, registry: &str, repository: &str| {
        let p = b.record_path(&proxy.addr, repo);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let r = serde_json::json!({
            "registry": registry, "repository": repository, "digest": b.digest,
            "size": b.size, "location": location, "created": 1,
        });
        fs::write(&p, serde_json::to_vec(&r).unwrap()).unwrap();
        p
    };
    let push_ok = |repo: &str| {
        let target = format!("{}/{repo}:1", proxy.addr);
        let out = run(b
            .env
            .cmd()
            .args(["push", "--json", "--chunk-size", "1M"])
            .arg(&b.layout)
            .arg(&target));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{repo}: {stderr}"
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["blobs"]["resumed"], 0, "{repo}: {v}");
        b.check_pulled(&reg.reference(&format!("{repo}:1")));
    };
    let up = |repo: &str, id: &str| format!("http://{registry}/v2/{repo}/blobs/uploads/{id}");

    // not JSON
    let p = record("ml/h-garbage", "", "", "");
    fs::write(&p, b"{\"registry\": [not json").unwrap();
    push_ok("ml/h-garbage");
    assert!(!p.exists(), "the garbage record is still there");
    // the record of another repository, of another registry, a location elsewhere
    let p = record(
        "ml/h-repo",
        &up("ml/other", "fake-ok"),
        &registry,
        "ml/other",
    );
    push_ok("ml/h-repo");
    assert!(!p.exists());
    record(
        "ml/h-reg",
        &up("ml/h-reg", "fake-ok"),
        "127.0.0.1:1",
        "ml/h-reg",
    );
    push_ok("ml/h-reg");
    record(
        "ml/h-host",
        "http://127.0.0.2:9/v2/ml/h-host/blobs/uploads/fake-ok",
        &registry,
        "ml/h-host",
    );
    push_ok("ml/h-host");
    // Ranges: malformed, past the blob, not from 0, empty; and one plausible for a session
    // the registry does not know
    for (case, _) in &ranges {
        let repo = format!("ml/h-range-{case}");
        record(&repo, &up(&repo, &format!("fake-{case}")), &registry, &repo);
        push_ok(&repo);
    }
    let seen = proxy.seen();
    let patched: Vec<_> = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.target.contains("/fake-"))
        .map(|s| s.target.clone())
        .collect();
    assert!(
        patched.iter().all(|t| t.contains("/fake-ok")),
        "a PATCH after a bad Range: {patched:?}"
    );
    assert!(!patched.is_empty(), "the plausible Range was not tried");
    assert!(
        !seen.iter().any(|s| s.target.contains("ml/other")),
        "a record of another repository was used"
    );
}

/// `--chunk-size`: one PATCH per chunk (seen at the proxy, none larger than the chunk), the
/// result intact; bad sizes are refused with a clear message.
#[test]
fn chunk_size_sends_one_patch_per_chunk() {
    let Some(reg) = Registry::start("chunk_size_sends_one_patch_per_chunk") else {
        return;
    };
    let b = big(9 << 20, 18);
    let proxy = HttpProxy::start(&reg.addr, |_| None);
    let target = format!("{}/ml/chunks:1", proxy.addr);
    b.push(&target, &["--chunk-size", "1M"]);
    let seen = proxy.seen();
    let patches: Vec<_> = seen.iter().filter(|s| s.method == "PATCH").collect();
    let want = b.size.div_ceil(MIB) as usize;
    assert_eq!(patches.len(), want, "{seen:?}");
    assert!(patches.iter().all(|s| s.body_len as u64 <= MIB));
    assert_eq!(
        patches.iter().map(|s| s.body_len as u64).sum::<u64>(),
        b.size
    );
    b.check_pulled(&reg.reference("ml/chunks:1"));

    // the default (64M): this blob goes in one request
    let before = proxy.seen().len();
    b.push(&format!("{}/ml/one:1", proxy.addr), &[]);
    assert!(!proxy.seen()[before..].iter().any(|s| s.method == "PATCH"));

    for (bad, says) in [
        ("0", "too small"),
        ("512K", "too small"),
        ("abc", "is not a size"),
    ] {
        let err = fails(
            b.env
                .cmd()
                .args(["push", "--chunk-size", bad])
                .arg(&b.layout)
                .arg(&target),
            2,
        );
        assert!(err.contains(says) && err.contains(bad), "{bad}: {err}");
    }
    let err = fails(
        b.env
            .cmd()
            .args(["copy", "--chunk-size", "0"])
            .arg(&b.layout)
            .arg(&target),
        2,
    );
    assert!(err.contains("too small"), "{err}");
}

/// `copy` to a registry takes `--chunk-size` and resumes too (it is the same upload).
#[test]
fn copy_resumes_like_push() {
    let Some(reg) = Registry::start("copy_resumes_like_push") else {
        return;
    };
    let b = big(12 << 20, 19);
    let sp = StallingProxy::start(&reg.addr, 2);
    let target = format!("{}/ml/copied:1", sp.proxy.addr);
    sp.push_and_kill(&b, &target, "4M");
    let v = json_ok(
        b.env
            .cmd()
            .args(["copy", "--chunk-size", "4M"])
            .arg(&b.layout)
            .arg(&target),
    );
    assert_eq!(v["blobs"]["resumed"], 1, "{v}");
    assert_eq!(v["bytes_resumed"], 4 * MIB, "{v}");
    b.check_pulled(&reg.reference("ml/copied:1"));
}

/// A proxy that refuses any request body over 1 MiB (nginx's default `client_max_body_size`):
/// the one-request upload gets 413, then chunks of 4 MiB do, then halved ones, down to 1 MiB,
/// which pass.
#[test]
fn a_1m_body_cap_is_met_by_halving_the_chunks() {
    let Some(reg) = Registry::start("a_1m_body_cap_is_met_by_halving_the_chunks") else {
        return;
    };
    let b = big(5 << 20, 20);
    let proxy = HttpProxy::start(&reg.addr, |q| {
        (q.body.len() as u64 > MIB)
            .then(|| Reply::status(413).body("text/plain", b"too large".to_vec()))
    });
    let target = format!("{}/ml/capped:1", proxy.addr);
    let v = b.push(&target, &[]);
    assert_eq!(v["bytes_resumed"], 0, "{v}");
    let seen = proxy.seen();
    let refused: Vec<_> = seen
        .iter()
        .filter(|s| s.injected == Some(413))
        .map(|s| (s.method.as_str(), s.body_len))
        .collect();
    // the PUT of the whole blob, then one PATCH each of 4, 2 MiB (blob > 4 MiB), never 1 MiB
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0], ("PUT", b.size as usize));
    assert_eq!(refused[1], ("PATCH", 4 << 20));
    assert_eq!(refused[2], ("PATCH", 2 << 20));
    b.check_pulled(&reg.reference("ml/capped:1"));
}
