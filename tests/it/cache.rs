//! `mlart cache ls|prune` and the cap after each pull (`MLART_CACHE_MAX_SIZE`), on a cache
//! filled by real pulls from a real registry.

use crate::support::fixtures::{one_model_layout, read_blob, read_layout};
use crate::support::registry::{registry_with_iris, Env, Registry};
use crate::support::{fails, json_ok, ok, set_file_mtimes};
use serde_json::Value;
use std::fs;
use std::time::SystemTime;

/// A registry holding the iris example as ml/iris:1.0.0, and an environment with an empty cache.
fn pushed_iris(test: &str) -> Option<(Registry, Env)> {
    let (reg, env, layout) = registry_with_iris(test)?;
    env.push(&layout, reg.reference("ml/iris:1.0.0"));
    Some((reg, env))
}

fn ls(env: &Env) -> Value {
    json_ok(env.cmd().args(["cache", "ls"]))
}

fn digests(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["digest"].as_str().unwrap().to_string())
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Make a cached blob look last used `days` ago.
fn age(env: &Env, digest: &str, days: u64) {
    let p = env.path("cache/mlart/blobs/sha256").join(&digest[7..]);
    set_file_mtimes(&p, now() - days * 86_400);
}

#[test]
fn cache_ls_and_prune_by_age_and_size() {
    let Some((reg, env)) = pushed_iris("cache_ls_and_prune_by_age_and_size") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");

    // Empty at first; a pull fills it with exactly the layers it fetched.
    let l0 = ls(&env);
    assert_eq!(l0["blobs"].as_array().unwrap().len(), 0, "{l0}");
    let p = env.pull(&r, &env.path("one"), &[]);
    let l = ls(&env);
    let n = l["blobs"].as_array().unwrap().len();
    assert_eq!(
        n,
        p["layers"]["fetched"].as_u64().unwrap() as usize,
        "{l}\n{p}"
    );
    let total: u64 = l["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .sum();
    assert_eq!(l["bytes"], total);
    assert!(n >= 3, "iris has several layers: {l}");

    // --older-than: only the blob made to look old goes; a dry run removes nothing.
    let all = digests(&l, "blobs");
    age(&env, &all[0], 40);
    let dry = json_ok(
        env.cmd()
            .args(["cache", "prune", "--older-than", "30d", "--dry-run"]),
    );
    assert_eq!(digests(&dry, "removed"), vec![all[0].clone()], "{dry}");
    assert_eq!(ls(&env)["blobs"].as_array().unwrap().len(), n);
    let pr = json_ok(env.cmd().args(["cache", "prune", "--older-than", "30d"]));
    assert_eq!(digests(&pr, "removed"), vec![all[0].clone()], "{pr}");
    assert_eq!(pr["kept"], n - 1);

    // A pull that uses cached blobs makes them recent again: `--kind model` uses only some,
    // and those move to the end of the least-recently-used order.
    let rest = digests(&ls(&env), "blobs");
    for (i, d) in rest.iter().enumerate() {
        age(&env, d, 10 + i as u64);
    }
    env.pull(&r, &env.path("two"), &["--kind", "model"]);
    let l = ls(&env);
    let now = now();
    let recent: Vec<bool> = l["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| now - e["last_used"].as_u64().unwrap() < 3600)
        .collect();
    let k = recent.iter().filter(|x| **x).count();
    assert!(k >= 1 && k < recent.len(), "some, not all, were used: {l}");
    assert!(
        recent[recent.len() - k..].iter().all(|x| *x),
        "least recently used first: {l}"
    );
    let order = digests(&l, "blobs");

    // --max-size: the least recently used go until the rest fits.
    let l = ls(&env);
    let sizes: Vec<u64> = l["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .collect();
    let keep: u64 = sizes[1..].iter().sum();
    let pr = json_ok(
        env.cmd()
            .args(["cache", "prune", "--max-size"])
            .arg(keep.to_string()),
    );
    assert_eq!(digests(&pr, "removed"), vec![order[0].clone()], "{pr}");
    assert_eq!(pr["kept_bytes"], keep);

    // --all empties it; the next pull fetches everything again and still verifies.
    json_ok(env.cmd().args(["cache", "prune", "--all"]));
    assert_eq!(ls(&env)["bytes"], 0);
    let p3 = env.pull(&r, &env.path("three"), &[]);
    assert_eq!(p3["layers"]["cached"], 0, "{p3}");
}

#[test]
fn cache_cap_after_each_pull_and_bad_values() {
    let Some((reg, env)) = pushed_iris("cache_cap_after_each_pull_and_bad_values") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");

    // A cap of 1 KiB: the pull succeeds, its files are whole, the cache is cut afterwards.
    let p = json_ok(
        env.cmd()
            .env("MLART_CACHE_MAX_SIZE", "1K")
            .args(["pull", &r, "-o"])
            .arg(env.path("capped")),
    );
    assert!(p["cache_pruned"].as_u64().unwrap() > 0, "{p}");
    assert!(env.path("capped/model/iris.onnx").is_file());
    assert!(ls(&env)["bytes"].as_u64().unwrap() <= 1024);

    // A bad cap fails the pull before anything is fetched or written.
    let err = fails(
        env.cmd()
            .env("MLART_CACHE_MAX_SIZE", "lots")
            .args(["pull", &r, "-o"])
            .arg(env.path("bad")),
        2,
    );
    assert!(
        err.contains("MLART_CACHE_MAX_SIZE") && err.contains("10G"),
        "{err}"
    );
    assert!(!env.path("bad").exists());

    // Bad flags: named, exit 2, nothing removed.
    let before = ls(&env);
    for args in [
        &["cache", "prune"][..],
        &["cache", "prune", "--max-size", "10X"],
        &["cache", "prune", "--older-than", "soon"],
        &["cache", "prune", "--all", "--max-size", "1G"],
    ] {
        fails(env.cmd().args(args), 2);
    }
    assert_eq!(ls(&env), before);

    // Files in the blob folder that are not blobs are listed apart, never counted as blobs:
    // what interrupted downloads left (`.tmp-*`, `.partial-HEX`) apart from files that are not
    // mlart's; prune removes the stale leftovers only, never a file that is not mlart's.
    let dir = env.path("cache/mlart/blobs/sha256");
    fs::write(dir.join("notes.txt"), "x").unwrap();
    let tmp = dir.join(".tmp-abc");
    fs::write(&tmp, vec![0u8; 100]).unwrap();
    let partial = dir.join(format!(".partial-{}", "ab".repeat(32)));
    fs::write(&partial, vec![0u8; 10]).unwrap();
    let foreign = dir.join(".partial-mine");
    fs::write(&foreign, "x").unwrap();
    for p in [&tmp, &partial, &foreign, &dir.join("notes.txt")] {
        set_file_mtimes(p, now() - 2 * 86_400);
    }
    let l = ls(&env);
    assert_eq!(
        l["interrupted_downloads"],
        serde_json::json!([
            ".partial-abababababababababababababababababababababababababababababababab",
            ".tmp-abc"
        ])
    );
    assert_eq!(
        l["other_files"],
        serde_json::json!([".partial-mine", "notes.txt"])
    );
    let human = String::from_utf8(ok(env.cmd().args(["cache", "ls"]))).unwrap();
    assert!(
        human.contains("2 interrupted download(s)")
            && human.contains(
                "2 other file(s) (not mlart's; `prune` leaves them): .partial-mine, notes.txt"
            ),
        "{human}"
    );
    let pr = json_ok(env.cmd().args(["cache", "prune", "--older-than", "1w"]));
    assert_eq!(pr["stale_temp_files"], 2, "{pr}");
    assert!(!tmp.exists() && !partial.exists());
    assert!(dir.join("notes.txt").exists() && foreign.exists());
}

/// A pull cut off midway keeps what it fetched (`.partial-*` in the cache); the next pull asks
/// the registry for the rest only and checks the blob as a whole. A kept part with wrong
/// bytes is found out at that check and dropped, so the pull after starts over.
#[test]
fn pull_resumes_a_cut_off_download() {
    use crate::httpproxy::{HttpProxy, Reply};
    let Some(reg) = Registry::start("pull_resumes_a_cut_off_download") else {
        return;
    };
    let env = Env::new();
    let (layout, model) = one_model_layout(&env, 8 << 20, 7);
    let r = reg.reference("ml/big:1");
    env.push(&layout, &r);
    let (_, manifest) = read_layout(&layout);
    let big = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    let digest = big["digest"].as_str().unwrap().to_string();
    let size = big["size"].as_u64().unwrap() as usize;
    let half = size / 2;

    // The model layer's download is cut off after half of it; no retries.
    let (hex, head) = (
        digest[7..].to_string(),
        read_blob(&layout, &digest)[..half].to_vec(),
    );
    let proxy = HttpProxy::start(&reg.addr, move |q| {
        (q.method == "GET" && q.path().ends_with(&hex)).then(|| {
            Reply::status(200)
                .body("application/octet-stream", head.clone())
                .cut_off(size)
        })
    });
    let via = format!("{}/ml/big:1", proxy.addr);
    fails(
        env.cmd()
            .env("MLART_RETRIES", "0")
            .args(["pull", &via, "-o"])
            .arg(env.path("first")),
        3,
    );
    assert!(!env.path("first").exists());
    let partial = env
        .path("cache/mlart/blobs/sha256")
        .join(format!(".partial-{}", &digest[7..]));
    assert_eq!(fs::metadata(&partial).unwrap().len(), half as u64);

    // Again, straight from the registry: only the rest comes over the wire.
    let before = reg.bytes_served();
    let p = env.pull(&r, &env.path("second"), &[]);
    let served = reg.bytes_served() - before;
    let rest = (size - half) as u64;
    assert!(
        served >= rest && served < rest + (256 << 10),
        "served {served} bytes for the {rest} missing"
    );
    // the report counts what this run fetched, and says what it continued
    assert_eq!(p["bytes_downloaded"], rest, "{p}");
    assert_eq!(p["bytes_resumed"], half as u64, "{p}");
    assert_eq!(p["resumed"][0]["digest"], digest.as_str(), "{p}");
    assert_eq!(p["resumed"][0]["at"], half as u64, "{p}");
    assert_eq!(fs::read(env.path("second/model.bin")).unwrap(), model);
    assert!(!partial.exists());

    // A part with wrong bytes: the whole-blob check fails, the part is dropped and the blob
    // fetched again from its start, in the same pull (with a warning naming the cache)
    json_ok(env.cmd().args(["cache", "prune", "--all"]));
    fs::write(&partial, vec![0u8; half]).unwrap();
    let before = reg.bytes_served();
    let out = crate::support::run(
        env.cmd()
            .args(["--json", "pull", &r, "-o"])
            .arg(env.path("third")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("earlier pull left in the cache") && err.contains(&digest),
        "{err}"
    );
    // (the whole model layer, and the metadata layer)
    let got = p["bytes_downloaded"].as_u64().unwrap();
    assert!(got > size as u64 && got < size as u64 + (64 << 10), "{p}");
    assert!(p.get("resumed").is_none(), "{p}");
    let served = reg.bytes_served() - before;
    assert!(served >= size as u64 + rest, "served {served}");
    assert_eq!(fs::read(env.path("third/model.bin")).unwrap(), model);
    assert!(!partial.exists());
    // wrong bytes from the source itself: refused (exit 4), nothing written or kept
    json_ok(env.cmd().args(["cache", "prune", "--all"]));
    let stored = reg.blob_file(&digest);
    let mut b = fs::read(&stored).unwrap();
    b[half] ^= 1;
    fs::write(&stored, b).unwrap();
    let err = fails(
        env.cmd().args(["pull", &r, "-o"]).arg(env.path("fourth")),
        4,
    );
    assert!(err.contains(&digest), "{err}");
    assert!(!env.path("fourth").exists() && !partial.exists());
}
