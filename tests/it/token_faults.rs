//! Token auth under faults. A registry that answers `401` with `WWW-Authenticate: Bearer
//! realm=…,service=…` (Docker Hub, GHCR, Harbor) sends the client to its token endpoint first;
//! real token services rate-limit (429, with or without `Retry-After`), fail (503) and drop
//! connections. Those are retried with the policy of every other registry request; a 401/403
//! there is not, and gives the credentials message; a garbage answer is a clear error.
//!
//! The registry is the real one (`Registry::start`, no auth of its own). The fault-injecting
//! proxy in front of it (`httpproxy`) plays the token service: it answers `/token` itself
//! (from a plan the test sets, else with a fresh token), and lets a registry request through
//! only with a token it issued, else answers the Bearer challenge.

use crate::httpproxy::{HttpProxy, Reply, Request, Seen};
use crate::support::fixtures::read_layout;
use crate::support::registry::{env_with_iris, Env, Registry};
use crate::support::{assert_example_file, base64_encode, fails, json_ok, run};
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const USER: &str = "alice";
const PASSWORD: &str = "t0ken-pw";
const SERVICE: &str = "mlart-test-registry";

/// What the token endpoint answers to its `n`th request (from 0) since the plan was set;
/// None: a fresh token.
type Plan = Box<dyn FnMut(usize) -> Option<Reply> + Send>;

struct TokenRegistry {
    reg: Registry,
    proxy: HttpProxy,
    plan: Arc<Mutex<(usize, Plan)>>,
}

impl TokenRegistry {
    fn start(test: &str) -> Option<TokenRegistry> {
        let reg = Registry::start(test)?;
        let plan: Arc<Mutex<(usize, Plan)>> = Arc::new(Mutex::new((0, Box::new(|_| None))));
        let issued: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
        let addr: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let (plan2, addr2) = (plan.clone(), addr.clone());
        let proxy = HttpProxy::start(&reg.addr, move |req| {
            answer(req, addr2.get().expect("proxy address"), &plan2, &issued)
        });
        addr.set(proxy.addr.clone()).unwrap();
        Some(TokenRegistry { reg, proxy, plan })
    }

    /// From now on the token endpoint answers by `f`.
    fn plan(&self, f: impl FnMut(usize) -> Option<Reply> + Send + 'static) {
        *self.plan.lock().unwrap() = (0, Box::new(f));
    }

    fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.proxy.addr)
    }

    fn realm(&self) -> String {
        format!("http://{}/token", self.proxy.addr)
    }

    /// The token requests seen after the first `skip` requests of all kinds.
    fn token_requests(&self, skip: usize) -> Vec<Seen> {
        self.proxy
            .seen()
            .into_iter()
            .skip(skip)
            .filter(|s| s.target.starts_with("/token"))
            .collect()
    }

    fn requests(&self) -> usize {
        self.proxy.seen().len()
    }
}

const UNAUTHORIZED: &[u8] =
    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;

fn answer(
    req: &Request,
    addr: &str,
    plan: &Mutex<(usize, Plan)>,
    issued: &Mutex<HashSet<String>>,
) -> Option<Reply> {
    if req.path() == "/token" {
        if !req.target.contains(&format!("service={SERVICE}")) || !req.target.contains("scope=") {
            return Some(Reply::status(400).body("text/plain", b"no service or scope".to_vec()));
        }
        // Credentials, when sent, must be right (anonymous gets a token too, as on Docker Hub).
        let good = format!(
            "Basic {}",
            base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
        );
        if req.header("authorization").is_some_and(|a| a != good) {
            return Some(Reply::status(401).body(
                "application/json",
                br#"{"details":"incorrect username or password"}"#.to_vec(),
            ));
        }
        let mut p = plan.lock().unwrap();
        let n = p.0;
        p.0 += 1;
        if let Some(r) = (p.1)(n) {
            return Some(r);
        }
        let mut issued = issued.lock().unwrap();
        let token = format!("tok-{}", issued.len() + 1);
        issued.insert(token.clone());
        let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
        return Some(Reply::status(200).body("application/json", body.into_bytes()));
    }
    let token = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
    // As Docker Hub: a repository that does not exist (the one `mlart login` names) is refused
    // with insufficient_scope, to good credentials too; the token service is what checks them.
    if req.path().starts_with("/v2/mlart-login-check/") {
        return Some(
            Reply::status(401)
                .header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="http://{addr}/token",service="{SERVICE}",scope="repository:mlart-login-check:pull",error="insufficient_scope""#
                    ),
                )
                .body("application/json", UNAUTHORIZED.to_vec()),
        );
    }
    if token.is_some_and(|t| issued.lock().unwrap().contains(&t)) {
        return None; // to the registry
    }
    Some(
        Reply::status(401)
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{addr}/token",service="{SERVICE}""#),
            )
            .body("application/json", UNAUTHORIZED.to_vec()),
    )
}

/// The example bundled into a layout and pushed straight to the registry (no token service):
/// the env and the layout.
fn iris_in_registry(t: &TokenRegistry) -> (Env, PathBuf) {
    let (env, layout) = env_with_iris();
    env.push(&layout, t.reg.reference("ml/iris:1"));
    (env, layout)
}

/// How many layers the image of a layout has.
fn layer_count(layout: &Path) -> usize {
    let (_, m) = read_layout(layout);
    m["layers"].as_array().unwrap().len()
}

fn statuses(seen: &[Seen]) -> Vec<u16> {
    seen.iter().map(|s| s.injected.unwrap_or(0)).collect()
}

fn too_many(retry_after: Option<&str>) -> Reply {
    let r = Reply::status(429).body(
        "application/json",
        br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limit"}]}"#.to_vec(),
    );
    match retry_after {
        Some(v) => r.header("Retry-After", v),
        None => r,
    }
}

fn login(env: &Env, registry: &str, password: &str) -> std::process::Output {
    let mut c = env.cmd();
    c.args(["login", registry, "-u", USER, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn write_credentials(env: &Env, registry: &str, password: &str) {
    let auth = base64_encode(format!("{USER}:{password}").as_bytes());
    fs::write(
        env.path("docker/config.json"),
        serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string(),
    )
    .unwrap();
}

/// 429 with `Retry-After: 1` from the token endpoint, twice, then a token: push, pull and
/// tags succeed; the waits are the endpoint's second (the backoff is 20 ms), and `tags` (one
/// request at a time) asked for a token exactly three times, a second apart.
#[test]
fn token_429_with_retry_after_is_retried() {
    let Some(t) = TokenRegistry::start("token_429_with_retry_after_is_retried") else {
        return;
    };
    let (env, layout) = env_with_iris();
    let r = t.reference("ml/iris:1");
    let twice = || |n: usize| (n < 2).then(|| too_many(Some("1")));

    for verb in ["push", "pull"] {
        t.plan(twice());
        let skip = t.requests();
        let start = Instant::now();
        let v = if verb == "push" {
            env.push(&layout, &r)
        } else {
            let out = env.path("out");
            let v = env.pull(&r, &out, &["--no-cache"]);
            assert_example_file(&out, "model/iris.onnx");
            v
        };
        let took = start.elapsed();
        assert!(v["digest"].as_str().unwrap().starts_with("sha256:"), "{v}");
        let got = statuses(&t.token_requests(skip));
        assert_eq!(
            got.iter().filter(|s| **s == 429).count(),
            2,
            "{verb}: {got:?}"
        );
        // (Blobs go up several at a time, each request asking for its token: more than one
        // may get one, in any order.)
        assert!(
            got.iter().all(|s| *s == 429 || *s == 200) && got.contains(&200),
            "{verb}: {got:?}"
        );
        assert!(took >= Duration::from_secs(1), "{verb}: {took:?}");
    }
    // It is in the real registry, under the tag.
    let direct = json_ok(env.cmd().args(["tags", &format!("{}/ml/iris", t.reg.addr)]));
    assert_eq!(direct["tags"], serde_json::json!(["1"]));

    t.plan(twice());
    let skip = t.requests();
    let v = json_ok(env.cmd().args(["tags", &t.reference("ml/iris")]));
    assert_eq!(v["tags"], serde_json::json!(["1"]));
    let seen = t.token_requests(skip);
    assert_eq!(statuses(&seen), [429, 429, 200]);
    for w in seen.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_secs(1) && gap < Duration::from_secs(6),
            "{gap:?}"
        );
    }
}

/// A 503 (no `Retry-After`: the ordinary backoff), then a connection reset, then a token,
/// for every verb that authenticates: push, pull, tags, copy (to a registry and to a layout),
/// sign and verify against the registry, login.
#[test]
fn token_503_and_reset_retried_for_every_verb() {
    let Some(t) = TokenRegistry::start("token_503_and_reset_retried_for_every_verb") else {
        return;
    };
    let (env, layout) = env_with_iris();
    let (key, public) = env.keygen("k");
    let r = t.reference("ml/iris:1");
    let copied = t.reference("other/iris:2");
    let local = env.path("copy.oci");
    let out = env.path("out");
    let addr = t.proxy.addr.clone();
    let mut cmds: Vec<(&str, Command)> = Vec::new();
    let mut c = env.cmd();
    c.arg("push").arg(&layout).arg(&r);
    cmds.push(("push", c));
    let mut c = env.cmd();
    c.args(["pull", &r, "--no-cache", "-o"]).arg(&out);
    cmds.push(("pull", c));
    let mut c = env.cmd();
    c.args(["tags", &t.reference("ml/iris")]);
    cmds.push(("tags", c));
    let mut c = env.cmd();
    c.args(["copy", &r, &copied]);
    cmds.push(("copy to a registry", c));
    let mut c = env.cmd();
    c.args(["copy", &r]).arg(&local);
    cmds.push(("copy to a layout", c));
    let mut c = env.cmd();
    c.args(["sign", &r, "--key"]).arg(&key);
    cmds.push(("sign", c));
    let mut c = env.cmd();
    c.args(["verify", &r, "--key"]).arg(&public);
    cmds.push(("verify", c));
    for (verb, mut c) in cmds {
        t.plan(|n| match n {
            0 => Some(Reply::status(503).body("text/plain", b"down".to_vec())),
            1 => Some(Reply::reset()),
            _ => None,
        });
        let skip = t.requests();
        let v = json_ok(&mut c);
        let got = statuses(&t.token_requests(skip));
        assert_eq!(&got[..3], [503, 0, 200], "{verb}: {got:?}");
        if verb == "verify" {
            assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 1, "{v}");
        }
    }
    assert_example_file(&out, "model/iris.onnx");
    assert!(local.join("index.json").is_file());

    t.plan(|n| match n {
        0 => Some(Reply::status(503)),
        1 => Some(Reply::reset()),
        _ => None,
    });
    let skip = t.requests();
    let res = login(&env, &addr, PASSWORD);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(statuses(&t.token_requests(skip)), [503, 0, 200]);
    assert!(fs::read_to_string(env.path("docker/config.json"))
        .unwrap()
        .contains(&base64_encode(format!("{USER}:{PASSWORD}").as_bytes())));
}

/// A token endpoint that keeps answering 429: with a `Retry-After` above
/// `MLART_RETRY_AFTER_MAX` (5 s here) the verb gives up at once (one token request, well
/// under the hour asked), exit 2, one line naming the token endpoint, the status, the wait and
/// the variable; without one, after `MLART_RETRIES` (2 here) retries, naming the endpoint.
#[test]
fn token_429_beyond_the_cap_fails_fast() {
    let Some(t) = TokenRegistry::start("token_429_beyond_the_cap_fails_fast") else {
        return;
    };
    let (env, layout) = iris_in_registry(&t);
    let out = env.path("out");
    let r = t.reference("ml/iris:1");
    let layers = layer_count(&layout);
    let mut cases: Vec<(&str, Command)> = Vec::new();
    let mut c = env.cmd();
    c.args(["tags", &t.reference("ml/iris")]);
    cases.push(("tags", c));
    let mut c = env.cmd();
    c.args(["pull", &r, "--no-cache", "-o"]).arg(&out);
    cases.push(("pull", c));
    let mut c = env.cmd();
    c.arg("push").arg(&layout).arg(t.reference("ml/fresh:1"));
    cases.push(("push", c));
    for (verb, mut c) in cases {
        t.plan(|_| Some(too_many(Some("3600"))));
        let skip = t.requests();
        let start = Instant::now();
        let err = fails(c.env("MLART_RETRY_AFTER_MAX", "5"), 3);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "{verb}: {took:?}");
        for want in [
            format!(
                "the token endpoint {} answered 429 Too Many Requests and asks to retry after 3600 s",
                t.realm()
            ),
            "MLART_RETRY_AFTER_MAX".into(),
            "try again later".into(),
        ] {
            assert!(err.contains(&want), "{verb}: {want:?} not in {err}");
        }
        assert_eq!(err.trim_end().lines().count(), 1, "{verb}: {err}");
        let n = t.token_requests(skip).len();
        if verb == "push" {
            // Blobs go up several at a time: each layer's HEAD asked once, none again.
            assert!((1..=layers).contains(&n), "{verb}: {n} token requests");
        } else {
            assert_eq!(n, 1, "{verb}");
        }
    }
    assert!(!out.exists());
    let res = run(env.cmd().args(["inspect", &t.reg.reference("ml/fresh:1")]));
    assert!(!res.status.success(), "ml/fresh:1 was tagged");

    // No Retry-After: the ordinary backoff, MLART_RETRIES times, then the endpoint's status.
    t.plan(|_| Some(too_many(None)));
    let skip = t.requests();
    let err = fails(
        env.cmd()
            .env("MLART_RETRIES", "2")
            .args(["tags", &t.reference("ml/iris")]),
        3,
    );
    assert!(
        err.contains(&format!(
            "the token endpoint {} answered 429 Too Many Requests",
            t.realm()
        )),
        "{err}"
    );
    assert_eq!(statuses(&t.token_requests(skip)), [429, 429, 429]);
}

/// Ctrl-C during a token endpoint's `Retry-After` wait (60 s, cap raised to 120): the push
/// stops at once, exit 130, nothing tagged.
#[test]
fn token_wait_ends_on_ctrl_c() {
    let Some(t) = TokenRegistry::start("token_wait_ends_on_ctrl_c") else {
        return;
    };
    let (env, layout) = env_with_iris();
    t.plan(|_| Some(too_many(Some("60"))));
    let child = env
        .cmd()
        .env("MLART_RETRY_AFTER_MAX", "120")
        .arg("push")
        .arg(&layout)
        .arg(t.reference("ml/iris:1"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while t.token_requests(0).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no token request"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let res = run(env.cmd().args(["inspect", &t.reg.reference("ml/iris:1")]));
    assert!(!res.status.success(), "ml/iris:1 was tagged");
}

/// 401 (wrong password) and 403 from the token endpoint are not retried: one token request,
/// exit 2, the credentials message naming the endpoint and its status; `login` with a wrong
/// password stores nothing, with the right one it works.
#[test]
fn token_refusal_is_not_retried() {
    let Some(t) = TokenRegistry::start("token_refusal_is_not_retried") else {
        return;
    };
    let (env, _) = iris_in_registry(&t);
    let addr = t.proxy.addr.clone();
    let r = t.reference("ml/iris:1");
    let out = env.path("out");
    write_credentials(&env, &addr, "wrong");
    let check = |verb: &str, c: &mut Command, status: &str| {
        let skip = t.requests();
        let err = fails(c, 3);
        for want in [
            // (credentials were sent: whose, and from which file)
            "the registry refused".to_string(),
            env.path("docker/config.json").display().to_string(),
            format!("its token endpoint {} answered {status}", t.realm()),
            "mlart login".into(),
        ] {
            assert!(err.contains(&want), "{verb}: {want:?} not in {err}");
        }
        assert_eq!(err.trim_end().lines().count(), 1, "{verb}: {err}");
        assert_eq!(t.token_requests(skip).len(), 1, "{verb}: retried");
    };
    check(
        "tags",
        env.cmd().args(["tags", &t.reference("ml/iris")]),
        "401 Unauthorized",
    );
    check(
        "pull",
        env.cmd().args(["pull", &r, "--no-cache", "-o"]).arg(&out),
        "401 Unauthorized",
    );
    assert!(!out.exists());

    // Right credentials, but the service forbids the scope.
    write_credentials(&env, &addr, PASSWORD);
    t.plan(|_| {
        Some(Reply::status(403).body(
            "application/json",
            br#"{"details":"access to the requested resource is not authorized"}"#.to_vec(),
        ))
    });
    check(
        "tags (403)",
        env.cmd().args(["tags", &t.reference("ml/iris")]),
        "403 Forbidden",
    );
    t.plan(|_| None);

    // login: a wrong password is refused at the token endpoint (once), nothing stored.
    let env2 = Env::new();
    let skip = t.requests();
    let res = login(&env2, &addr, "wrong");
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(3), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains(&t.realm()), "{err}");
    assert_eq!(t.token_requests(skip).len(), 1);
    assert!(!env2.path("docker/config.json").exists());
    let res = login(&env2, &addr, PASSWORD);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let v = json_ok(env2.cmd().args(["tags", &t.reference("ml/iris")]));
    assert_eq!(v["tags"], serde_json::json!(["1"]));
}

/// Answers of the token endpoint that are no token, each a clear one-line error, exit 2, no
/// panic, not retried.
#[test]
fn token_garbage_answers_are_clear_errors() {
    let Some(t) = TokenRegistry::start("token_garbage_answers_are_clear_errors") else {
        return;
    };
    let (env, _) = iris_in_registry(&t);
    let json = |s: &str| Reply::status(200).body("application/json", s.as_bytes().to_vec());
    let mut huge = br#"{"token":""#.to_vec();
    huge.resize(8 << 20, b'a');
    huge.extend_from_slice(br#""}"#);
    type Case = (
        &'static str,
        Box<dyn Fn() -> Reply + Send + Sync>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "HTML",
            Box::new(|| {
                Reply::status(200).body("text/html", b"<html><body>Welcome</body></html>".to_vec())
            }),
            "the answer is not JSON",
        ),
        (
            "empty",
            Box::new(|| Reply::status(200)),
            "the answer is not JSON",
        ),
        (
            "not UTF-8",
            Box::new(|| Reply::status(200).body("application/json", vec![0xff, 0xfe, b'{'])),
            "the answer is not JSON",
        ),
        (
            "no token field",
            Box::new(move || json(r#"{"expires_in":300}"#)),
            r#"no "token" or "access_token" string"#,
        ),
        (
            "a number",
            Box::new(move || json(r#"{"token":42}"#)),
            r#"no "token" or "access_token" string"#,
        ),
        (
            "JSON array",
            Box::new(move || json(r#"["tok"]"#)),
            r#"no "token" or "access_token" string"#,
        ),
        (
            "empty token",
            Box::new(move || json(r#"{"token":""}"#)),
            "the token is empty",
        ),
        (
            "newline in the token",
            Box::new(move || json(r#"{"token":"ab\ncd"}"#)),
            "characters an HTTP header cannot carry",
        ),
        (
            "8 MiB",
            Box::new(move || Reply::status(200).body("application/json", huge.clone())),
            "the answer is larger than 1048576 bytes",
        ),
        (
            "400 with escapes",
            Box::new(|| {
                Reply::status(400).body(
                    "text/plain",
                    b"bad\x1b[31m request\r\n\r\nsecond line".to_vec(),
                )
            }),
            "answered 400 Bad Request (bad [31m request second line)",
        ),
    ];
    for (what, reply, want) in cases {
        t.plan(move |_| Some(reply()));
        let skip = t.requests();
        let err = fails(env.cmd().args(["tags", &t.reference("ml/iris")]), 3);
        assert!(err.contains(&t.realm()), "{what}: {err}");
        assert!(err.contains(want), "{what}: {want:?} not in {err}");
        assert!(
            !err.contains("panicked") && !err.contains('\x1b'),
            "{what}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
        assert!(err.len() < 1000, "{what}: {} bytes", err.len());
        assert_eq!(t.token_requests(skip).len(), 1, "{what}: retried");
    }

    // Then a token: fine again.
    t.plan(|_| None);
    let v = json_ok(env.cmd().args(["tags", &t.reference("ml/iris")]));
    assert_eq!(v["tags"], serde_json::json!(["1"]));
}
