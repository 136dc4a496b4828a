//! The registry harness: a real `docker-registry` process (distribution 2.8) on a free
//! loopback port, and an isolated environment (Docker config, blob cache) to run mlart in.

use super::fixtures::build_iris;
use super::{find_on_path, json_ok, keygen_with, missing, mlart, sign_with, verify_with};
use serde_json::Value;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Is `tool` on PATH? Missing: fail under MLART_REQUIRE_INTEROP=1, else print a skip line.
pub fn have(tool: &str, test: &str) -> bool {
    let found = find_on_path(tool).is_some();
    if !found {
        missing(
            &format!("{test}: {tool} is required (MLART_REQUIRE_INTEROP=1) but not installed"),
            &format!("SKIP {test}: {tool} is not installed"),
        );
    }
    found
}

/// A `docker-registry serve` process on 127.0.0.1:<free port>, storage in a temp dir,
/// stopped with SIGTERM on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    /// Every line the registry logged (its request log says how many bytes it served).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Registry {
    pub fn start(test: &str) -> Option<Registry> {
        Self::start_with(test, None, None)
    }

    /// With htpasswd auth for (user, password), and/or TLS with (certificate, key) files.
    pub fn start_with(
        test: &str,
        user: Option<(&str, &str)>,
        tls: Option<(&Path, &Path)>,
    ) -> Option<Registry> {
        if !have("docker-registry", test) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            data.display()
        );
        if let Some((u, p)) = user {
            let hash = bcrypt::hash_with_result(p, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            let htp = dir.path().join("htpasswd");
            fs::write(&htp, format!("{u}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: mlart-test\n    path: {}\n",
                htp.display()
            ));
        }
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        fs::write(&cfg, config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().unwrap().push(line.clone());
                if !sent {
                    if let Some(i) = line.find("listening on ") {
                        let rest = &line[i + "listening on ".len()..];
                        let addr: String = rest
                            .chars()
                            .take_while(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')
                            })
                            .collect();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                // keep draining so the registry never blocks on a full pipe
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("docker-registry did not report its address");
        let r = Registry {
            child,
            addr,
            dir,
            log,
        };
        // Wait until it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry at {} not reachable",
                r.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(r)
    }

    /// Bytes the registry has sent in responses so far (from its request log).
    pub fn bytes_served(&self) -> u64 {
        // give the log thread a moment to catch up with the last responses
        std::thread::sleep(Duration::from_millis(300));
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let i = l.find("http.response.written=")?;
                let rest = &l[i + "http.response.written=".len()..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// The registry's log lines so far (one per request, with method and URI).
    pub fn log_lines(&self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        self.log.lock().unwrap().clone()
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The registry's on-disk data file of a blob.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// The usual start of a registry test: a registry for `test`, an environment, and the iris
/// example built into `<env>/iris.oci`; None when the registry is not installed (skip).
pub fn registry_with_iris(test: &str) -> Option<(Registry, Env, PathBuf)> {
    let reg = Registry::start(test)?;
    let (env, layout) = env_with_iris();
    Some((reg, env, layout))
}

/// A fresh environment and the iris example built into `<env>/iris.oci`.
pub fn env_with_iris() -> (Env, PathBuf) {
    let env = Env::new();
    let layout = env.path("iris.oci");
    build_iris(&env, &layout);
    (env, layout)
}

/// An isolated environment: empty Docker config dir, own blob cache.
pub struct Env {
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("docker")).unwrap();
        fs::create_dir_all(tmp.path().join("cache")).unwrap();
        Env { tmp }
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    pub fn cmd(&self) -> Command {
        let mut c = mlart();
        self.apply(&mut c);
        c
    }
    /// This environment's variables on any command (a script that runs mlart, say).
    pub fn apply<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("DOCKER_CONFIG", self.path("docker"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("MLART_RETRY_BASE_MS", "20")
            .env("HOME", self.tmp.path())
    }
    /// `push SRC TARGET` run in this environment: its JSON.
    pub fn push(&self, src: impl AsRef<OsStr>, target: impl AsRef<OsStr>) -> Value {
        json_ok(self.cmd().arg("push").arg(src).arg(target))
    }
    /// `pull SRC ARGS… -o OUT` run in this environment: its JSON.
    pub fn pull(&self, src: &str, out: &Path, args: &[&str]) -> Value {
        json_ok(
            self.cmd()
                .arg("pull")
                .arg(src)
                .args(args)
                .arg("-o")
                .arg(out),
        )
    }
    /// `verify TARGET --key K…` in this environment (see `verify_with`).
    pub fn verify_cmd(&self, target: impl AsRef<OsStr>, keys: &[&Path]) -> Command {
        verify_with(self.cmd(), target, keys)
    }
    /// `sign TARGET --key KEY` run in this environment: its JSON.
    pub fn sign(&self, target: impl AsRef<OsStr>, key: &Path) -> Value {
        sign_with(&mut self.cmd(), target, key)
    }
    /// `keygen -o <env>/NAME` run in this environment: the private and public key paths.
    pub fn keygen(&self, name: &str) -> (PathBuf, PathBuf) {
        keygen_with(&mut self.cmd(), &self.path(name))
    }
}
