//! OCI signatures in registries (issue 4, registry half): push, `sign REF`, `verify REF`,
//! `bundle --push --sign`, against Debian's docker-registry 2.8, which has no referrers API:
//! the signatures are listed in the fallback index at tag `sha256-<hex>`.

use crate::httpproxy::{HttpProxy, Reply, Request};
use crate::support::fixtures::{bundle_cmd, bundle_iris, iris_spec};
use crate::support::registry::{have, Env, Registry};
use crate::support::{
    base64_decode, base64_encode, example, fails, field_strs, json_exit, json_ok, missing, run,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const BUNDLE_MT: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const INDEX_MT: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_MT: &str = "application/vnd.oci.image.manifest.v1+json";

/// A plain HTTP/1.1 request to the test registry: (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked responses are not handled here"
    );
    (status, resp[end + 4..].to_vec())
}

fn get_manifest(addr: &str, repo: &str, reference: &str) -> (u16, Value) {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", &format!("{MANIFEST_MT}, {INDEX_MT}"))],
        b"",
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn fallback_tag(digest: &str) -> String {
    digest.replace(':', "-")
}

/// `verify REF --key K… [--require-all]` in `env`: expect exit `code`; the JSON report.
fn verify(env: &Env, reference: &str, keys: &[&Path], require_all: bool, code: i32) -> Value {
    let mut c = env.verify_cmd(reference, keys);
    if require_all {
        c.arg("--require-all");
    }
    json_exit(&mut c, code)
}

/// An environment with the key pairs `a` and `b` (private, public), and the iris example
/// signed by `a` in `<env>/signed.oci`, and its manifest digest.
type SignedIris = (Env, (PathBuf, PathBuf), (PathBuf, PathBuf), PathBuf, String);

fn signed_iris() -> SignedIris {
    let env = Env::new();
    let a = env.keygen("a");
    let b = env.keygen("b");
    let layout = env.path("signed.oci");
    let built = bundle_iris(
        &mut env.cmd(),
        &layout,
        &["--sign".as_ref(), a.0.as_os_str()],
    );
    let subject = built["manifest_digest"].as_str().unwrap().to_string();
    (env, a, b, layout, subject)
}

#[test]
fn registry_signatures_via_fallback_tag() {
    let Some(reg) = Registry::start("registry_signatures_via_fallback_tag") else {
        return;
    };
    let (env, (a_key, a_pub), (b_key, b_pub), layout, subject) = signed_iris();
    let reference = reg.reference("ml/iris:1.0.0");

    // push takes the layout's signature along
    let p = env.push(&layout, &reference);
    assert_eq!(p["digest"], subject.as_str());
    assert_eq!(p["signatures"], 1, "{p}");
    let tag = fallback_tag(&subject);
    assert_eq!(p["referrers_tag"], tag.as_str());

    // the fallback tag is there, and it is an index listing the signature
    // (listed apart from the release tags, and with them under --all)
    let tags = json_ok(env.cmd().arg("tags").arg(reg.reference("ml/iris")));
    assert_eq!(tags["tags"], serde_json::json!(["1.0.0"]), "{tags}");
    assert_eq!(
        tags["referrers_tags"],
        serde_json::json!([tag.as_str()]),
        "{tags}"
    );
    let tags = json_ok(
        env.cmd()
            .args(["tags", "--all"])
            .arg(reg.reference("ml/iris")),
    );
    let tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&tag.as_str()), "{tags:?}");
    let (status, index) = get_manifest(&reg.addr, "ml/iris", &tag);
    assert_eq!(status, 200);
    assert_eq!(index["mediaType"], INDEX_MT);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index}");
    assert_eq!(entries[0]["mediaType"], MANIFEST_MT);
    assert_eq!(entries[0]["artifactType"], BUNDLE_MT);
    let sig_digest = entries[0]["digest"].as_str().unwrap().to_string();
    // ... the signature manifest: cosign v3 layout, subject = the bundle
    let (status, sig) = get_manifest(&reg.addr, "ml/iris", &sig_digest);
    assert_eq!(status, 200);
    assert_eq!(sig["subject"]["digest"], subject.as_str());
    assert_eq!(sig["artifactType"], BUNDLE_MT);
    assert_eq!(
        sig["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(sig["layers"][0]["mediaType"], BUNDLE_MT);
    assert!(entries[0]["size"].as_u64().unwrap() > 0);

    // verify REF: the right key passes, another fails (exit 1, saying why)
    let v = verify(&env, &reference, &[&a_pub], false, 0);
    assert_eq!(v["ok"], true);
    assert_eq!(v["manifest_digest"], subject.as_str());
    assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 1);
    assert_eq!(v["oci_signatures"][0]["valid"], true);
    assert_eq!(v["model_signature"]["valid"], true);
    let err = fails(&mut env.verify_cmd(&reference, &[&b_pub]), 1);
    assert!(err.contains("no OCI signature verifies"), "{err}");
    // by digest too
    let by_digest = reg.reference(&format!("ml/iris@{subject}"));
    verify(&env, &by_digest, &[&a_pub], false, 0);

    // a second signature, by another key: `sign REF` adds it to the index
    let s = env.sign(&reference, &b_key);
    assert_eq!(s["manifest_digest"], subject.as_str());
    assert_eq!(s["added"], true);
    let (_, index) = get_manifest(&reg.addr, "ml/iris", &tag);
    let listed: Vec<&str> = field_strs(&index["manifests"], "digest");
    assert_eq!(listed.len(), 2, "{index}");
    assert!(listed.contains(&sig_digest.as_str()));
    assert!(listed.contains(&s["signature_digest"].as_str().unwrap()));
    let v = verify(&env, &reference, &[&a_pub, &b_pub], true, 0);
    assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 2);
    // signing again with the same key changes nothing (deterministic signature)
    let s2 = env.sign(&reference, &b_key);
    assert_eq!(s2["added"], false);
    assert_eq!(s2["signature_digest"], s["signature_digest"]);
    // pushing the layout again: no duplicate entries
    let p = env.push(&layout, &reference);
    assert_eq!(p["signatures"], 1);
    let (_, index) = get_manifest(&reg.addr, "ml/iris", &tag);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{index}");

    // --require-all with a key that has not signed: fails
    let (_, c_pub) = env.keygen("c");
    verify(&env, &reference, &[&a_pub, &c_pub], true, 1);

    // copy layout -> registry (another repository) takes the signature too
    let copied = reg.reference("ml/copied:1.0.0");
    let c = json_ok(env.cmd().arg("copy").arg(&layout).arg(&copied));
    assert_eq!(c["signatures"], 1, "{c}");
    verify(&env, &copied, &[&a_pub], false, 0);
    // so does pushing an archive of it
    let archive = env.path("signed.tar");
    bundle_iris(
        &mut env.cmd(),
        &archive,
        &["--sign".as_ref(), a_key.as_os_str()],
    );
    let from_tar = reg.reference("ml/from-tar:1.0.0");
    let c = env.push(&archive, &from_tar);
    assert_eq!(c["digest"], subject.as_str());
    assert_eq!(c["signatures"], 1, "{c}");
    verify(&env, &from_tar, &[&a_pub], false, 0);
    // registry -> registry too (both signatures)
    let again = reg.reference("ml/again:1.0.0");
    let c = json_ok(env.cmd().arg("copy").arg(&reference).arg(&again));
    assert_eq!(c["signatures"], 2, "{c}");
    verify(&env, &again, &[&a_pub, &b_pub], true, 0);

    // registry -> layout keeps them beside the bundle: the layout verifies offline
    let back = env.path("back.oci");
    json_ok(env.cmd().arg("copy").arg(&reference).arg(&back));
    verify(&env, back.to_str().unwrap(), &[&a_pub, &b_pub], true, 0);

    // an unsigned bundle in a registry: verify says so
    let plain = env.path("plain.oci");
    bundle_iris(&mut env.cmd(), &plain, &[]);
    let unsigned = reg.reference("ml/unsigned:1.0.0");
    let p = env.push(&plain, &unsigned);
    assert_eq!(p["signatures"], 0);
    let err = fails(&mut env.verify_cmd(&unsigned, &[&a_pub]), 1);
    assert!(err.contains("no OCI signature"), "{err}");
}

#[test]
fn registry_bundle_push_sign() {
    let Some(reg) = Registry::start("registry_bundle_push_sign") else {
        return;
    };
    let env = Env::new();
    let (a_key, a_pub) = env.keygen("a");
    let (_, b_pub) = env.keygen("b");
    let reference = reg.reference("ml/streamed:1.0.0");
    let out = run(env
        .cmd()
        .arg("bundle")
        .arg("-f")
        .arg(example().join("mlart.yaml"))
        .arg("--push")
        .arg(&reference)
        .arg("--sign")
        .arg(&a_key)
        .arg("--json"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not pushed"),
        "no warning about an unpushed signature"
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["signatures"], 1, "{p}");
    let subject = p["digest"].as_str().unwrap();
    assert_eq!(p["referrers_tag"], fallback_tag(subject).as_str());
    let v = verify(&env, &reference, &[&a_pub], false, 0);
    assert_eq!(v["oci_signatures"][0]["valid"], true);
    assert_eq!(v["model_signature"]["valid"], true);
    verify(&env, &reference, &[&b_pub], false, 1);
}

#[test]
fn registry_tampered_signatures_fail() {
    let Some(reg) = Registry::start("registry_tampered_signatures_fail") else {
        return;
    };
    let env = Env::new();
    let (a_key, a_pub) = env.keygen("a");
    // A: signed; B: another manifest (another platform), unsigned
    let a = env.path("a.oci");
    let built = bundle_iris(&mut env.cmd(), &a, &["--sign".as_ref(), a_key.as_os_str()]);
    let a_digest = built["manifest_digest"].as_str().unwrap().to_string();
    let b = env.path("b.oci");
    let built = bundle_iris(
        &mut env.cmd(),
        &b,
        &["--platform".as_ref(), "linux/arm64".as_ref()],
    );
    let b_digest = built["manifest_digest"].as_str().unwrap().to_string();
    assert_ne!(a_digest, b_digest);
    let a_ref = reg.reference("ml/t:a");
    let b_ref = reg.reference("ml/t:b");
    env.push(&a, &a_ref);
    env.push(&b, &b_ref);
    verify(&env, &a_ref, &[&a_pub], false, 0);

    // 1. A's signature index put at B's fallback tag: it signs another manifest
    let (status, index) = get_manifest(&reg.addr, "ml/t", &fallback_tag(&a_digest));
    assert_eq!(status, 200);
    let (status, _) = http(
        &reg.addr,
        "PUT",
        &format!("/v2/ml/t/manifests/{}", fallback_tag(&b_digest)),
        &[("Content-Type", INDEX_MT)],
        &serde_json::to_vec(&index).unwrap(),
    );
    assert_eq!(status, 201);
    let v = verify(&env, &b_ref, &[&a_pub], false, 1);
    assert_eq!(v["ok"], false);
    assert!(
        v["problems"].to_string().contains("no OCI signature"),
        "{v}"
    );

    // 2. the Sigstore bundle blob corrupted in the registry's storage
    let sig_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let (_, sig) = get_manifest(&reg.addr, "ml/t", sig_digest);
    let layer = sig["layers"][0]["digest"].as_str().unwrap();
    let file = reg.blob_file(layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // flip one character of the base64 signature, same length
    let key_at = text.find("\"sig\"").expect("a DSSE signature");
    let at = key_at + 6 + text[key_at + 6..].find('"').unwrap() + 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&file, &bytes).unwrap();
    let v = verify(&env, &a_ref, &[&a_pub], false, 1);
    assert_eq!(v["oci_signatures"][0]["valid"], false, "{v}");
    let err = fails(&mut env.verify_cmd(&a_ref, &[&a_pub]), 1);
    assert!(err.contains("OCI signature"), "{err}");
}

// ---------------- the referrers API path: a small test server ----------------

/// An HTTP proxy in front of the test registry that adds the referrers API
/// (`GET /v2/<repo>/referrers/<digest>`), answered from the manifests with a `subject` that
/// went through it, and counts PUTs to `sha256-…` tags (which a client must not make then).
struct ReferrersApi {
    addr: String,
    state: std::sync::Arc<std::sync::Mutex<ApiState>>,
    _proxy: HttpProxy,
}

#[derive(Default)]
struct ApiState {
    /// subject digest -> referrer descriptors
    referrers: std::collections::BTreeMap<String, Vec<Value>>,
    api_calls: usize,
    tag_puts: usize,
}

impl ReferrersApi {
    fn start(upstream: &str) -> ReferrersApi {
        let state = std::sync::Arc::new(std::sync::Mutex::new(ApiState::default()));
        let st = state.clone();
        let proxy = HttpProxy::start(upstream, move |req| Self::answer(req, &st));
        ReferrersApi {
            addr: proxy.addr.clone(),
            state,
            _proxy: proxy,
        }
    }

    fn answer(req: &Request, st: &std::sync::Mutex<ApiState>) -> Option<Reply> {
        let path = req.path();
        if req.method == "GET" && path.contains("/referrers/") {
            let subject = path.rsplit('/').next().unwrap_or("").to_string();
            let filter = req
                .target
                .split_once("artifactType=")
                .map(|(_, v)| v.replace("%2B", "+").replace("%2F", "/"));
            let mut s = st.lock().unwrap();
            s.api_calls += 1;
            let manifests: Vec<Value> = s
                .referrers
                .get(&subject)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|d| {
                    filter
                        .as_ref()
                        .is_none_or(|f| d["artifactType"] == f.as_str())
                })
                .collect();
            let index = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": INDEX_MT, "manifests": manifests,
            }))
            .unwrap();
            return Some(Reply::status(200).body(INDEX_MT, index));
        }
        if req.method == "PUT" && path.contains("/manifests/") {
            let reference = path.rsplit('/').next().unwrap_or("");
            let mut s = st.lock().unwrap();
            if reference.starts_with("sha256-") {
                s.tag_puts += 1;
            }
            if let Ok(m) = serde_json::from_slice::<Value>(&req.body) {
                if let Some(subject) = m["subject"]["digest"].as_str() {
                    let d = serde_json::json!({
                        "mediaType": m["mediaType"],
                        "digest": crate::support::sha256(&req.body),
                        "size": req.body.len(),
                        "artifactType": m["artifactType"],
                    });
                    let list = s.referrers.entry(subject.to_string()).or_default();
                    if !list.contains(&d) {
                        list.push(d);
                    }
                }
            }
        }
        None // everything else goes to the registry
    }
}

#[test]
fn registry_signatures_via_referrers_api() {
    let Some(reg) = Registry::start("registry_signatures_via_referrers_api") else {
        return;
    };
    let api = ReferrersApi::start(&reg.addr);
    let (env, (_, a_pub), (b_key, b_pub), layout, subject) = signed_iris();
    let reference = format!("{}/ml/api:1.0.0", api.addr);

    let p = env.push(&layout, &reference);
    assert_eq!(p["signatures"], 1, "{p}");
    assert!(p.get("referrers_tag").is_none(), "no fallback tag: {p}");
    let s = env.sign(&reference, &b_key);
    assert_eq!(s["added"], true);
    assert!(s.get("referrers_tag").is_none(), "{s}");
    {
        let st = api.state.lock().unwrap();
        assert!(st.api_calls >= 2, "the referrers API was asked");
        assert_eq!(st.tag_puts, 0, "no sha256-<hex> tag where the API exists");
        assert_eq!(st.referrers[&subject].len(), 2);
    }
    let (status, _) = get_manifest(&reg.addr, "ml/api", &fallback_tag(&subject));
    assert_eq!(status, 404, "the fallback tag was not made");
    let v = verify(&env, &reference, &[&a_pub, &b_pub], true, 0);
    assert_eq!(v["oci_signatures"].as_array().unwrap().len(), 2, "{v}");
    // straight to the registry (no API, no tag): no signature found
    verify(&env, &reg.reference("ml/api:1.0.0"), &[&a_pub], false, 1);
}

// ---------------- third-party verification: @sigstore/verify (npm) ----------------

/// Checks a Sigstore bundle offline with a public key through @sigstore/verify (no tlog, no
/// CT log, no timestamps; the key is found by the bundle's hint), then the statement's subject.
const SIGSTORE_VERIFY_JS: &str = r#"// Check a Sigstore bundle v0.3 (DSSE, in-toto) offline with a public key, using
// @sigstore/verify: no transparency log, no CT log, no timestamps; the key is found by the
// bundle's publicKey.hint, which must be the hex sha256 of the PEM file. Then the statement
// must be a cosign signature of the given manifest digest.
// usage: node verify.js BUNDLE.json PUBLIC.pem sha256:<manifest>
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const { bundleFromJSON } = require('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const [bundlePath, pubPath, subject] = process.argv.slice(2);
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const pem = fs.readFileSync(pubPath);
  const hint = crypto.createHash('sha256').update(pem).digest('hex');
  const root = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] };
  const trust = toTrustMaterial(root, (h) => {
    if (h !== hint) throw new Error(`key not found: ${h}`);
    return { publicKey: crypto.createPublicKey(pem), validFor: () => true };
  });
  const verifier = new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  verifier.verify(toSignedEntity(bundle));
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== 'application/vnd.in-toto+json') throw new Error(`payloadType ${env.payloadType}`);
  const st = JSON.parse(Buffer.from(env.payload).toString('utf8'));
  if (st.predicateType !== 'https://sigstore.dev/cosign/sign/v1') throw new Error(`predicateType ${st.predicateType}`);
  const want = subject.replace(/^sha256:/, '');
  if (!st.subject.some((s) => s.digest && s.digest.sha256 === want)) throw new Error(`the statement does not name ${subject}`);
  console.log('OK');
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  process.exit(1);
}
"#;

/// The node_modules holding @sigstore/verify and @sigstore/bundle (scripts/test installs them
/// into .tools), or None (skip; a failure under MLART_REQUIRE_INTEROP=1).
fn sigstore_node_modules(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MLART_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::support::repo().join(".tools/node_modules"));
    let ok = dir.join("@sigstore/verify/package.json").is_file()
        && dir.join("@sigstore/bundle/package.json").is_file()
        && have("node", test);
    if !ok {
        missing(
            &format!("{test}: @sigstore/verify is required (MLART_REQUIRE_INTEROP=1) but not in {}: run scripts/test", dir.display()),
            &format!("SKIP {test}: @sigstore/verify is not installed in {}", dir.display()),
        );
        return None;
    }
    Some(dir)
}

fn sigstore_verify(
    modules: &Path,
    dir: &Path,
    bundle: &[u8],
    public: &Path,
    subject: &str,
) -> std::process::Output {
    let script = dir.join("sigstore-verify.js");
    std::fs::write(&script, SIGSTORE_VERIFY_JS).unwrap();
    let b = dir.join("bundle.json");
    std::fs::write(&b, bundle).unwrap();
    std::process::Command::new("node")
        .arg(&script)
        .arg(&b)
        .arg(public)
        .arg(subject)
        .env("NODE_PATH", modules)
        .output()
        .expect("run node")
}

#[test]
fn sigstore_verify_accepts_registry_signatures() {
    let test = "sigstore_verify_accepts_registry_signatures";
    let Some(modules) = sigstore_node_modules(test) else {
        return;
    };
    let Some(reg) = Registry::start(test) else {
        return;
    };
    let env = Env::new();
    let (a_key, a_pub) = env.keygen("a");
    let (_, b_pub) = env.keygen("b");
    let reference = reg.reference("ml/npm:1.0.0");
    let p = json_ok(
        bundle_cmd(&mut env.cmd(), &iris_spec())
            .arg("--push")
            .arg(&reference)
            .arg("--sign")
            .arg(&a_key),
    );
    let subject = p["digest"].as_str().unwrap().to_string();
    // the signature, as a third party finds it: fallback index -> manifest -> bundle blob
    let (_, index) = get_manifest(&reg.addr, "ml/npm", &fallback_tag(&subject));
    let sig_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let (_, sig) = get_manifest(&reg.addr, "ml/npm", sig_digest);
    assert_eq!(sig["subject"]["digest"], subject.as_str());
    let layer = sig["layers"][0]["digest"].as_str().unwrap();
    let (status, bundle) = http(
        &reg.addr,
        "GET",
        &format!("/v2/ml/npm/blobs/{layer}"),
        &[],
        b"",
    );
    assert_eq!(status, 200);

    let dir = env.path("sigstore");
    std::fs::create_dir_all(&dir).unwrap();
    let ok = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let out = sigstore_verify(&modules, &dir, &bundle, &a_pub, &subject);
    assert!(
        out.status.success(),
        "@sigstore/verify rejects our bundle: {}",
        ok(&out)
    );
    // the bundle with its DSSE envelope edited by `f`
    let edited = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_slice(&bundle).unwrap();
        f(&mut v["dsseEnvelope"]);
        serde_json::to_vec(&v).unwrap()
    };
    let other = format!("sha256:{}", "0".repeat(64));
    // a tampered statement (another subject digest, same signature)
    let payload_tampered = edited(&|e| {
        let payload = e["payload"].as_str().unwrap();
        let mut st: Value = serde_json::from_slice(&base64_decode(payload)).unwrap();
        st["subject"][0]["digest"]["sha256"] = "0".repeat(64).into();
        e["payload"] = base64_encode(&serde_json::to_vec(&st).unwrap()).into();
    });
    // one changed byte of the signature
    let sig_tampered = edited(&|e| {
        let mut b = base64_decode(e["signatures"][0]["sig"].as_str().unwrap());
        let last = b.len() - 1;
        b[last] ^= 1;
        e["signatures"][0]["sig"] = base64_encode(&b).into();
    });
    for (what, bundle, public, subject) in [
        ("another key", &bundle, &b_pub, &subject),
        ("another subject", &bundle, &a_pub, &other),
        ("a tampered payload", &payload_tampered, &a_pub, &other),
        ("a tampered signature", &sig_tampered, &a_pub, &subject),
    ] {
        let out = sigstore_verify(&modules, &dir, bundle, public, subject);
        assert!(!out.status.success(), "{what} passed: {}", ok(&out));
    }
}
