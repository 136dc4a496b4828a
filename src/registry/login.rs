//! `login` / `logout`: store credentials the way `docker login` does — in the credential helper
//! configured for the registry (`credHelpers`, then `credsStore`), else base64 `auth` in
//! `auths` of `config.json` (written 0600 through a temp file and a rename).

use crate::error::{Error, IoContext, Result};
use crate::format::reference;
use base64::Engine as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn config_path() -> Result<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
        .ok_or_else(|| {
            Error::input("neither DOCKER_CONFIG nor HOME is set: cannot find the Docker config")
        })?;
    Ok(dir.join("config.json"))
}

fn read_config(p: &std::path::Path) -> Result<serde_json::Value> {
    match fs::read(p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(serde_json::json!({})),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::input(format!(
                "{} is not valid JSON ({e}): fix or remove it",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(e).ctx("reading", p),
    }
}

fn write_config(p: &std::path::Path, v: &serde_json::Value) -> Result<()> {
    let dir = p.parent().expect("config.json has a parent");
    fs::create_dir_all(dir).ctx("creating", dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json-")
        .tempfile_in(dir)
        .ctx("creating a file in", dir)?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))
        .ctx("securing", tmp.path())?;
    let mut text = serde_json::to_string_pretty(v).expect("JSON");
    text.push('\n');
    tmp.write_all(text.as_bytes()).ctx("writing", tmp.path())?;
    tmp.as_file().sync_all().ctx("writing", tmp.path())?;
    tmp.persist(p).map_err(|e| Error::Io {
        context: format!("writing {}", p.display()),
        source: e.error,
    })?;
    Ok(())
}

/// The credential helper configured for `key`, if any.
fn helper_for(conf: &serde_json::Value, key: &str) -> Option<String> {
    conf.get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(|h| h.as_str())
        .or_else(|| conf.get("credsStore").and_then(|s| s.as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<()> {
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::input(format!("running the credential helper {prog}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input)
            .map_err(|e| Error::input(format!("talking to {prog}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::input(format!("running {prog}: {e}")))?;
    if !out.status.success() {
        // The helper's output never carries the secret we sent; show its message.
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(Error::input(format!("{prog} {verb} failed: {msg}")));
    }
    Ok(())
}

/// Where the credentials went.
#[derive(Debug, serde::Serialize)]
pub struct Stored {
    pub registry: String,
    /// `config.json` path or `docker-credential-<name>`.
    pub store: String,
}

/// Store `user`/`password` for `registry`.
pub fn store(registry: &str, user: &str, password: &str) -> Result<Stored> {
    let key = reference::credential_key(registry);
    let path = config_path()?;
    let mut conf = read_config(&path)?;
    if !conf.is_object() {
        return Err(Error::input(format!(
            "{} is not a JSON object",
            path.display()
        )));
    }
    if let Some(h) = helper_for(&conf, &key) {
        let input = serde_json::json!({"ServerURL": key, "Username": user, "Secret": password});
        run_helper(&h, "store", input.to_string().as_bytes())?;
        // docker records the registry with an empty entry in `auths`.
        let auths = conf
            .as_object_mut()
            .expect("object")
            .entry("auths")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(a) = auths.as_object_mut() {
            a.insert(key.clone(), serde_json::json!({}));
        }
        write_config(&path, &conf)?;
        return Ok(Stored {
            registry: key,
            store: format!("docker-credential-{h}"),
        });
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let auths = conf
        .as_object_mut()
        .expect("object")
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    let a = auths
        .as_object_mut()
        .ok_or_else(|| Error::input(format!("{}: `auths` is not an object", path.display())))?;
    a.insert(key.clone(), serde_json::json!({ "auth": auth }));
    write_config(&path, &conf)?;
    Ok(Stored {
        registry: key,
        store: path.display().to_string(),
    })
}

/// Remove the credentials of `registry`. Returns whether there were any.
pub fn erase(registry: &str) -> Result<bool> {
    let key = reference::credential_key(registry);
    let path = config_path()?;
    let mut conf = read_config(&path)?;
    let mut found = false;
    if let Some(h) = helper_for(&conf, &key) {
        found = run_helper(&h, "erase", key.as_bytes()).is_ok();
    }
    if let Some(a) = conf.get_mut("auths").and_then(|a| a.as_object_mut()) {
        found |= a.remove(&key).is_some();
    }
    if found && path.exists() {
        write_config(&path, &conf)?;
    }
    Ok(found)
}
