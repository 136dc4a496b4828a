//! OCI registries: a client built on oci-client with Docker credentials, a `Source` that reads a
//! bundle from a registry, push (blobs in parallel, skip existing, mount, manifest last), tags.
//!
//! The rest of the library is synchronous; a process-wide tokio runtime runs the requests and
//! blob streams are bridged to `std::io::Read` through a bounded channel.

pub mod login;
pub mod pull;

use crate::error::{Error, IoContext, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::{Digest, VerifyReader};
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::reference::{self, Location, Reference};
use crate::store::layout::{self, Source};
use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
pub use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Manifest media types accepted on GET (Debian's distribution 2.8 needs an explicit OCI Accept).
pub const ACCEPT_MANIFESTS: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// Blobs are pushed this many at a time.
pub const PARALLEL_BLOBS: usize = 4;
/// Size of the pieces a blob is streamed in (one PATCH each on a chunked upload).
const CHUNK: usize = 4 << 20;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plain HTTP even for a non-loopback registry.
    pub plain_http: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_files: Vec<PathBuf>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .thread_name("mlart-registry")
            .build()
            .expect("starting the tokio runtime")
    })
}

/// Run a future on the registry runtime from synchronous code.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// One repository of one registry, with a client and the user's credentials for it.
#[derive(Clone)]
pub struct Remote {
    pub reference: Reference,
    client: Client,
    /// The same registry with `use_monolithic_push`: a blob of known size goes up in one
    /// streamed PUT instead of one PATCH round trip per 4 MiB (see `push_blob`).
    mono: Client,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Remote")
            .field("reference", &self.reference.whole())
            .field("auth", &self.auth)
            .finish()
    }
}

/// Credentials for `registry` from the Docker config (`DOCKER_CONFIG` or `~/.docker`):
/// `auths`, `credsStore`, `credHelpers`. None configured: anonymous.
pub fn credentials(registry: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let key = reference::credential_key(registry);
    match docker_credential::get_credential(&key) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(t)) => Ok(RegistryAuth::Bearer(t)),
        Err(E::ConfigNotFound | E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(E::ConfigReadError) => {
            // Missing file reads as ConfigReadError too: only a file that exists is an error.
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
            match dir.map(|d| d.join("config.json")) {
                Some(p) if p.exists() => Err(Error::input(format!(
                    "{} cannot be read as a Docker config: fix or remove it",
                    p.display()
                ))),
                _ => Ok(RegistryAuth::Anonymous),
            }
        }
        // A helper that has nothing for this registry answers "credentials not found in
        // native keychain" and exits 1 (docker-credential-helpers): anonymous, as in docker.
        Err(E::HelperFailure { stdout, stderr, .. })
            if stdout.contains("credentials not found")
                || stderr.contains("credentials not found") =>
        {
            Ok(RegistryAuth::Anonymous)
        }
        Err(E::HelperFailure { helper, .. }) => Err(Error::input(format!(
            "the Docker credential helper {helper} failed for {key}: run `mlart login {registry}` again"
        ))),
        Err(e) => Err(Error::input(format!(
            "reading the credentials for {key} from the Docker config: {e}"
        ))),
    }
}

/// An oci-client for `registry`: TLS by default (system roots + `ca_files`), plain HTTP for
/// loopback registries (unless a CA file is given) or with `plain_http`.
pub fn client_for(registry: &str, opts: &Options) -> Result<Client> {
    client_with(registry, opts, false)
}

fn client_with(registry: &str, opts: &Options, monolithic: bool) -> Result<Client> {
    let mut certs = Vec::new();
    for p in &opts.ca_files {
        let data = std::fs::read(p).ctx("reading the CA file", p)?;
        certs.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let http = opts.plain_http || (reference::is_loopback(registry) && certs.is_empty());
    let config = ClientConfig {
        protocol: if http {
            ClientProtocol::HttpsExcept(vec![registry.to_string()])
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates: certs,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("mlart/", env!("CARGO_PKG_VERSION")),
        platform_resolver: None,
        use_monolithic_push: monolithic,
        ..Default::default()
    };
    Client::try_from(config)
        .map_err(|e| Error::input(format!("setting up the registry client: {e}")))
}

impl Remote {
    pub fn new(reference: Reference, opts: &Options) -> Result<Self> {
        let auth = credentials(reference.registry())?;
        Remote::with_auth(reference, opts, auth)
    }

    /// With explicit credentials (tests, `login`).
    pub fn with_auth(reference: Reference, opts: &Options, auth: RegistryAuth) -> Result<Self> {
        let registry = reference.resolve_registry().to_string();
        Ok(Remote {
            client: client_with(&registry, opts, false)?,
            mono: client_with(&registry, opts, true)?,
            reference,
            auth,
        })
    }

    /// Push a manifest or index to this reference (tag or digest), with retries.
    async fn put_manifest(&self, body: &[u8], media_type: &str, doing: &str) -> Result<()> {
        let what = self.describe();
        let ct = reqwest_header(media_type)?;
        let body = Bytes::copy_from_slice(body);
        retry(&what, || async {
            self.client
                .push_manifest_raw(&self.reference, body.clone(), ct.clone())
                .await
        })
        .await
        .map_err(|e| map_err(&what, doing, e))?;
        Ok(())
    }

    pub fn describe(&self) -> String {
        self.reference.whole()
    }

    async fn prime(&self) {
        for c in [&self.client, &self.mono] {
            c.store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
                .await;
        }
    }

    /// Fetch the manifest the reference names: (raw bytes, digest, media type).
    pub fn manifest(&self) -> Result<(Vec<u8>, Digest, String)> {
        let what = self.describe();
        let (raw, digest) = block_on(async {
            self.prime().await;
            retry(&what, || async {
                self.client
                    .pull_manifest_raw(&self.reference, &self.auth, ACCEPT_MANIFESTS)
                    .await
            })
            .await
        })
        .map_err(|e| map_err(&what, "fetching the manifest", e))?;
        if raw.len() as u64 > layout::MAX_MANIFEST_BYTES {
            return Err(Error::input(format!("{what}: the manifest is too large")));
        }
        let computed = Digest::of(&raw);
        if computed.as_str() != digest {
            return Err(Error::input(format!(
                "{what}: the registry says the manifest is {digest} but it hashes to {computed}"
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::input(format!("{what}: the manifest is not JSON: {e}")))?;
        let mt = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                if v.get("manifests").is_some() {
                    INDEX_MEDIA_TYPE.into()
                } else {
                    MANIFEST_MEDIA_TYPE.into()
                }
            });
        Ok((raw.to_vec(), computed, mt))
    }

    /// Open a blob as a stream. Connection drops and truncated bodies are resumed with a
    /// Range request (or restarted); the caller verifies digest and size (`VerifyReader`).
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader> {
        self.blob_stream(digest, None)
    }

    /// Open a blob as a stream checked against its digest and size: the bytes are hashed as
    /// they arrive, on the download task (not on the reader's thread, which has its own work),
    /// and the reader gets an `InvalidData` error instead of the end of a blob that is short,
    /// long or wrong. Resumes as `open_blob` does.
    pub fn open_blob_verified(&self, digest: &Digest, size: u64) -> Result<BlobReader> {
        self.blob_stream(digest, Some(size))
    }

    fn blob_stream(&self, digest: &Digest, verify: Option<u64>) -> Result<BlobReader> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let this = self.clone();
        let digest_s = digest.to_string();
        let expected = digest.clone();
        runtime().spawn(async move {
            this.prime().await;
            let mut offset: u64 = 0;
            let mut attempt = 0u32;
            let mut hasher = verify.map(|_| <sha2::Sha256 as sha2::Digest>::new());
            loop {
                // Verifying here, ask for the non-verifying stream (a Range from 0): oci-client
                // would otherwise hash the blob a second time.
                let own_check = verify.is_some_and(|n| n > 0);
                let r = if offset == 0 && !own_check {
                    this.client
                        .pull_blob_stream(&this.reference, digest_s.as_str())
                        .await
                        .map(|s| (s.content_length, s.stream))
                } else {
                    match this
                        .client
                        .pull_blob_stream_partial(&this.reference, digest_s.as_str(), offset, None)
                        .await
                    {
                        Ok(oci_client::client::BlobResponse::Partial(s)) => {
                            Ok((s.content_length.map(|l| l + offset), s.stream))
                        }
                        Ok(oci_client::client::BlobResponse::Full(s)) => {
                            // The registry ignored the Range: skip what we already have.
                            Ok((s.content_length, skip_stream(s.stream, offset)))
                        }
                        Err(e) => Err(e),
                    }
                };
                let (len, mut stream) = match r {
                    Ok(v) => v,
                    Err(e) if attempt < max_retries() && retryable(&e) => {
                        let what = format!("blob {digest_s}");
                        match backoff(&what, attempt, &e) {
                            Some(wait) if pause(wait).await => {
                                attempt += 1;
                                continue;
                            }
                            Some(_) => {
                                let _ = tx.send(Err(io::Error::other("interrupted"))).await;
                                return;
                            }
                            None => {}
                        }
                        let msg = wait_refused(&e)
                            .map(|m| format!("blob {digest_s}: {m}"))
                            .unwrap_or_else(|| describe_oci(&e));
                        let _ = tx.send(Err(io::Error::other(msg))).await;
                        return;
                    }
                    Err(e) => {
                        let msg = wait_refused(&e)
                            .map(|m| format!("blob {digest_s}: {m}"))
                            .unwrap_or_else(|| describe_oci(&e));
                        let _ = tx.send(Err(io::Error::other(msg))).await;
                        return;
                    }
                };
                let mut failed: Option<io::Error> = None;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(b) => {
                            if let (Some(size), Some(h)) = (verify, hasher.as_mut()) {
                                if offset + b.len() as u64 > size {
                                    let _ = tx
                                        .send(Err(io::Error::new(
                                            io::ErrorKind::InvalidData,
                                            format!("blob {expected} is larger than its descriptor's size {size}"),
                                        )))
                                        .await;
                                    return;
                                }
                                sha2::Digest::update(h, &b);
                            }
                            offset += b.len() as u64;
                            if tx.send(Ok(b)).await.is_err() {
                                return; // the reader is gone
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                let short = len.or(verify).is_some_and(|l| offset < l);
                match failed {
                    None if !short => {
                        if let (Some(size), Some(h)) = (verify, hasher.take()) {
                            let got = Digest::from_hasher(h);
                            let bad = if offset != size {
                                Some(format!(
                                    "blob {expected} is truncated: {offset} of {size} bytes"
                                ))
                            } else if got != expected {
                                Some(format!(
                                    "blob {expected} does not match its digest (got {got})"
                                ))
                            } else {
                                None
                            };
                            if let Some(msg) = bad {
                                let _ = tx
                                    .send(Err(io::Error::new(io::ErrorKind::InvalidData, msg)))
                                    .await;
                            }
                        }
                        return;
                    }
                    Some(e) if is_verification(&e) => {
                        let _ = tx
                            .send(Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                            .await;
                        return;
                    }
                    other => {
                        if attempt >= max_retries() {
                            let msg = other
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "the body was truncated".into());
                            let _ = tx
                                .send(Err(io::Error::other(format!(
                                    "blob {digest_s}: gave up after {attempt} retries: {msg}"
                                ))))
                                .await;
                            return;
                        }
                        tracing::debug!("blob {digest_s}: interrupted at {offset}; resuming");
                        tokio::time::sleep(backoff_base(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        });
        Ok(BlobReader {
            rx,
            cur: Bytes::new(),
        })
    }

    /// The tags of the repository.
    pub fn tags(&self) -> Result<Vec<String>> {
        let what = self.reference.repository().to_string();
        let r = block_on(async {
            self.prime().await;
            retry(&what, || async {
                self.client
                    .list_tags(&self.reference, &self.auth, None, None)
                    .await
            })
            .await
        })
        .map_err(|e| {
            // the repository, not the `:latest` a reference without a tag gets
            let repo = format!(
                "{}/{}",
                self.reference.registry(),
                self.reference.repository()
            );
            map_err(&repo, "listing tags", e)
        })?;
        let mut tags = r.tags;
        tags.sort();
        Ok(tags)
    }

    /// Check that the credentials are accepted (used by `login`).
    pub fn check_credentials(&self) -> Result<()> {
        let what = self.reference.registry().to_string();
        let r = block_on(async {
            self.prime().await;
            // A registry with a token service (Docker Hub, GHCR, Harbor): a token issued for
            // these credentials is the check, as `docker login` does it. Listing the tags of a
            // repository that does not exist is refused there (insufficient scope) whatever
            // the credentials.
            let token = retry(&what, || async {
                self.client
                    .auth(
                        &self.reference,
                        &self.auth,
                        oci_client::RegistryOperation::Pull,
                    )
                    .await
            })
            .await?;
            if token.is_some() {
                return Ok(());
            }
            // Basic auth (or none): the registry itself must accept them.
            retry(&what, || async {
                self.client
                    .list_tags(&self.reference, &self.auth, Some(1), None)
                    .await
            })
            .await
            .map(|_| ())
        });
        match r {
            Ok(_) => Ok(()),
            // Still rate-limited or down after the retries (or a wait refused, or Ctrl-C):
            // that says nothing of the credentials.
            Err(e) if crate::interrupt::requested() || retryable(&e) => Err(map_err(
                self.reference.registry(),
                "checking the credentials",
                e,
            )),
            Err(e) if is_auth_error(&e) => Err(Error::input(format!(
                "{}: the registry refused the credentials ({})",
                self.reference.registry(),
                describe_oci(&e)
            ))),
            Err(OciDistributionError::RegistryError { .. }) => Ok(()), // 404 NAME_UNKNOWN: authenticated
            Err(OciDistributionError::ServerError { code: 404, .. }) => Ok(()),
            Err(e) => Err(map_err(
                self.reference.registry(),
                "checking the credentials",
                e,
            )),
        }
    }
}

fn skip_stream(
    s: futures_util::stream::BoxStream<'static, io::Result<Bytes>>,
    mut skip: u64,
) -> futures_util::stream::BoxStream<'static, io::Result<Bytes>> {
    Box::pin(s.filter_map(move |item| {
        let out = match item {
            Ok(mut b) => {
                if skip >= b.len() as u64 {
                    skip -= b.len() as u64;
                    None
                } else {
                    let rest = b.split_off(skip as usize);
                    skip = 0;
                    Some(Ok(rest))
                }
            }
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    }))
}

fn is_verification(e: &io::Error) -> bool {
    e.to_string().contains("Invalid digest")
}

/// A blob streamed from a registry, as `std::io::Read`.
pub struct BlobReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

// ---------------- retries ----------------

fn max_retries() -> u32 {
    std::env::var("MLART_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn backoff_base(attempt: u32) -> Duration {
    let ms = std::env::var("MLART_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(250);
    Duration::from_millis((ms << attempt.min(6)).min(8_000))
}

/// The cap on a registry's `Retry-After` (`MLART_RETRY_AFTER_MAX` seconds, default 60): asked
/// to wait longer, mlart gives up at once (`wait_refused`).
fn retry_after_max() -> Duration {
    Duration::from_secs(
        std::env::var("MLART_RETRY_AFTER_MAX")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(60),
    )
}

/// A `Retry-After` beyond this is not a wait but a broken header: ordinary backoff instead.
const RETRY_AFTER_ABSURD: Duration = Duration::from_secs(24 * 3600);

/// The `Retry-After` text of a 429 or 503 (or of a retryable registry error envelope, which
/// comes from a 429), from the registry or its token endpoint, as the vendored oci-client keeps
/// it (vendor/README.md).
fn retry_after_header(e: &OciDistributionError) -> Option<&str> {
    match e {
        OciDistributionError::ServerError {
            code: 429 | 503,
            retry_after,
            ..
        }
        | OciDistributionError::TokenError {
            code: 429 | 503,
            retry_after,
            ..
        } => retry_after.as_deref(),
        OciDistributionError::RegistryError { retry_after, .. } if retryable(e) => {
            retry_after.as_deref()
        }
        _ => None,
    }
}

/// The wait a `Retry-After` value asks for (RFC 9110 section 10.2.3: delay-seconds, or an
/// HTTP-date in any of its three forms, against the clock `now`; a date past is no wait).
/// None when it is neither, or absurd (more than a day): the caller backs off as usual.
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim_matches([' ', '\t']);
    let wait = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(v.parse::<u64>().ok()?)
    } else {
        // IMF-fixdate, rfc850 or asctime (the `httpdate` crate, as hyper used it).
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    (wait <= RETRY_AFTER_ABSURD).then_some(wait)
}

/// How long to wait before trying again after `e` (attempt `attempt`, from 0): the registry's
/// `Retry-After` on a 429/503 when it has a usable one (never less than the ordinary backoff),
/// else exponential backoff. None: the registry asks for more than `MLART_RETRY_AFTER_MAX`,
/// so give up now (`wait_refused` says why).
fn backoff(what: &str, attempt: u32, e: &OciDistributionError) -> Option<Duration> {
    let base = backoff_base(attempt);
    let why = describe_oci(e);
    let Some(raw) = retry_after_header(e) else {
        tracing::debug!("{what}: {why}; retrying in {base:?} (backoff, attempt {attempt})");
        return Some(base);
    };
    match parse_retry_after(raw, std::time::SystemTime::now()) {
        Some(asked) if asked > retry_after_max() => {
            tracing::debug!(
                "{what}: {why}; the registry asks to retry after {asked:?} (Retry-After: {raw:?}), more than MLART_RETRY_AFTER_MAX ({:?}): giving up",
                retry_after_max()
            );
            None
        }
        Some(asked) => {
            let wait = asked.max(base);
            tracing::debug!(
                "{what}: {why}; retrying in {wait:?} (Retry-After: {raw:?}, backoff {base:?})"
            );
            Some(wait)
        }
        None => {
            tracing::debug!(
                "{what}: {why}; Retry-After {raw:?} is neither seconds nor an HTTP-date (or absurd): retrying in {base:?} (backoff, attempt {attempt})"
            );
            Some(base)
        }
    }
}

/// Resolves when the user has pressed Ctrl-C (polled every 50 ms).
async fn interrupted() {
    while !crate::interrupt::requested() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleep `d`, waking early on Ctrl-C (a `Retry-After` wait can be a minute): false when
/// interrupted, and the caller gives up (`map_err` then reports the interruption).
async fn pause(d: Duration) -> bool {
    tokio::select! {
        biased;
        () = interrupted() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// When `e` carries a `Retry-After` above `MLART_RETRY_AFTER_MAX`: why mlart did not wait.
fn wait_refused(e: &OciDistributionError) -> Option<String> {
    let asked = parse_retry_after(retry_after_header(e)?, std::time::SystemTime::now())?;
    let max = retry_after_max();
    if asked <= max {
        return None;
    }
    let max_s = max.as_secs();
    // A date a fraction of a second ahead still asks for that second.
    let secs = asked.as_secs() + u64::from(asked.subsec_nanos() > 0);
    let (status, url) = match e {
        OciDistributionError::TokenError { code, url, .. } => {
            return Some(format!(
                "the token endpoint {} answered {} and asks to retry after {secs} s, more than the {max_s} s mlart waits (MLART_RETRY_AFTER_MAX); try again later or raise MLART_RETRY_AFTER_MAX",
                printable(url, 200),
                status_text(*code)
            ));
        }
        OciDistributionError::ServerError { code, url, .. } => (status_text(*code), url),
        OciDistributionError::RegistryError { envelope, url, .. } => (
            envelope
                .errors
                .iter()
                .map(|x| format!("{:?}", x.code).to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", "),
            url,
        ),
        _ => return None,
    };
    let registry = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| url.clone());
    Some(format!(
        "the registry {registry} answered {status} and asks to retry after {secs} s, more than the {max_s} s mlart waits (MLART_RETRY_AFTER_MAX); try again later or raise MLART_RETRY_AFTER_MAX"
    ))
}

/// `429 Too Many Requests`, or the bare number of a code without a reason phrase.
fn status_text(code: u16) -> String {
    http::StatusCode::from_u16(code)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| code.to_string())
}

/// Text a server sent, fit for one line of a message: control characters (newlines, terminal
/// escapes) and runs of blanks become one space, and at most `max` characters are kept.
fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// What the token endpoint did, in words (a `TokenError` of the vendored oci-client).
fn token_failure(code: u16, url: &str, message: &str) -> String {
    let url = printable(url, 200);
    let message = printable(message, 200);
    if code == 200 {
        return format!(
            "the token endpoint {url} gave no usable token: {message}; check the registry's auth service (the realm of its WWW-Authenticate challenge)"
        );
    }
    let status = status_text(code);
    if message.is_empty() {
        format!("the token endpoint {url} answered {status}")
    } else {
        format!("the token endpoint {url} answered {status} ({message})")
    }
}

/// The registry (or a proxy in front of it) refuses a request body that large.
fn too_large(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::ServerError { code: 413, .. })
}

/// 5xx, 429, 408, connection resets, timeouts and broken bodies are worth another try.
pub fn retryable(e: &OciDistributionError) -> bool {
    match e {
        // The registry, or its token endpoint (the realm of a Bearer challenge).
        OciDistributionError::ServerError { code, .. }
        | OciDistributionError::TokenError { code, .. } => {
            *code >= 500 || *code == 429 || *code == 408
        }
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            let c = format!("{:?}", x.code).to_ascii_lowercase();
            c.contains("toomany") || c.contains("unavailable")
        }),
        // reqwest's status errors (blob HEAD uses `error_for_status`) carry only the code.
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408,
            None => {
                r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() || r.is_decode()
            }
        },
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

async fn retry<T, F, Fut>(what: &str, mut f: F) -> std::result::Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, OciDistributionError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < max_retries() && retryable(&e) => {
                // Refused (`map_err` says why: `wait_refused`) or interrupted: give up.
                match backoff(what, attempt, &e) {
                    Some(wait) if pause(wait).await => attempt += 1,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// An oci-client error in words, with its source chain (reqwest hides the cause otherwise).
pub fn describe_oci(e: &OciDistributionError) -> String {
    if let OciDistributionError::TokenError {
        code, url, message, ..
    } = e
    {
        return token_failure(*code, url, message);
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

fn is_auth_error(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. }
        | OciDistributionError::TokenError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(r) => r
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            let c = format!("{:?}", x.code).to_ascii_lowercase();
            c.contains("unauthorized") || c.contains("denied")
        }),
        _ => false,
    }
}

fn map_err(what: &str, doing: &str, e: OciDistributionError) -> Error {
    match &e {
        _ if crate::interrupt::requested() => Error::Interrupted,
        e if wait_refused(e).is_some() => Error::input(format!(
            "{what}: {doing}: {}",
            wait_refused(e).unwrap_or_default()
        )),
        OciDistributionError::TokenError { code, url, .. } if is_auth_error(&e) => {
            Error::input(format!(
                "{what}: {doing}: the registry asks for credentials (or refused them; its token endpoint {} answered {}): run `mlart login <registry>` or check ~/.docker/config.json",
                printable(url, 200),
                status_text(*code)
            ))
        }
        e if is_auth_error(e) => Error::input(format!(
            "{what}: {doing}: the registry asks for credentials (or refused them): run `mlart login <registry>` or check ~/.docker/config.json"
        )),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                let c = format!("{:?}", x.code).to_ascii_lowercase();
                c.contains("unknown")
            }) =>
        {
            Error::input(format!("{what}: {doing}: not found ({envelope})"))
        }
        _ => Error::input(format!("{what}: {doing}: {}", describe_oci(&e))),
    }
}

// ---------------- reading: a registry as a Source ----------------

/// A bundle in a registry, read through the `Source` interface: `index_bytes` is a one-entry
/// index synthesised from the manifest (tagged with the reference's tag), the manifest itself
/// is served from memory, every other blob is streamed.
pub struct RegistrySource {
    remote: Remote,
    manifest: Option<(Vec<u8>, Digest, String)>,
    /// Referrer manifests listed by `referrers`: read from the manifests endpoint.
    referrer_manifests: std::collections::HashSet<Digest>,
}

impl RegistrySource {
    pub fn new(remote: Remote) -> Self {
        RegistrySource {
            remote,
            manifest: None,
            referrer_manifests: Default::default(),
        }
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// The tag the synthesised index carries (the reference's tag, when it has one).
    pub fn tag(&self) -> Option<String> {
        self.remote.reference.tag().map(str::to_string)
    }

    fn load(&mut self) -> Result<&(Vec<u8>, Digest, String)> {
        if self.manifest.is_none() {
            self.manifest = Some(self.remote.manifest()?);
        }
        Ok(self.manifest.as_ref().expect("loaded"))
    }
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn index_bytes(&mut self) -> Result<Vec<u8>> {
        let tag = self.tag();
        let (raw, digest, mt) = self.load()?;
        let mut d = serde_json::json!({
            "mediaType": mt,
            "digest": digest.as_str(),
            "size": raw.len(),
        });
        if let Some(t) = tag {
            d["annotations"] = serde_json::json!({ REF_NAME: t });
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [d],
        });
        Ok(serde_json::to_vec(&index).expect("JSON"))
    }

    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        if let Some((raw, d, _)) = &self.manifest {
            if d == digest {
                return Ok(Box::new(io::Cursor::new(raw.clone())));
            }
        }
        if self.referrer_manifests.contains(digest) {
            let raw = self.remote.manifest_by_digest(digest)?;
            return Ok(Box::new(io::Cursor::new(raw)));
        }
        Ok(Box::new(self.remote.open_blob(digest)?))
    }

    fn open_blob_verified(&mut self, digest: &Digest, size: u64) -> Result<Box<dyn Read + '_>> {
        if self.referrer_manifests.contains(digest)
            || self.manifest.as_ref().is_some_and(|(_, d, _)| d == digest)
        {
            let r = self.open_blob(digest)?;
            return Ok(Box::new(VerifyReader::new(r, digest.clone(), size)));
        }
        Ok(Box::new(self.remote.open_blob_verified(digest, size)?))
    }

    /// The images of an index: from the manifests endpoint (registries do not serve
    /// manifests as blobs), by digest, hash checked.
    fn read_manifest(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        layout::check_manifest_size(&self.describe(), digest, size)?;
        if let Some((raw, d, _)) = &self.manifest {
            if d == digest {
                return Ok(raw.clone());
            }
        }
        self.remote.manifest_by_digest(digest)
    }

    /// The signature referrers of `subject`: the referrers API, or the fallback tag.
    fn referrers(&mut self, subject: &Digest) -> Result<Vec<oci_spec::image::Descriptor>> {
        let found = self
            .remote
            .referrers(subject, Some(crate::format::media_type::BUNDLE_MEDIA_TYPE))?;
        for d in &found {
            self.referrer_manifests
                .insert(Digest::parse(d.digest().as_ref()).map_err(Error::Input)?);
        }
        Ok(found)
    }
}

/// Open any location for reading: a registry reference, a layout directory or an archive.
/// Returns the source and the tag to resolve.
pub fn open_location(loc: &Location, opts: &Options) -> Result<(Box<dyn Source>, Option<String>)> {
    match loc {
        Location::Registry { reference, .. } => {
            let remote = Remote::new(reference.clone(), opts)?;
            let src = RegistrySource::new(remote);
            let tag = src.tag();
            Ok((Box::new(src), tag))
        }
        Location::Local { path, tag } => Ok((layout::open(path)?, tag.clone())),
    }
}

// ---------------- blob openers (Send, for parallel uploads) ----------------

/// Opens blobs for reading from any thread (the `Source` trait is single-threaded).
pub trait BlobOpen: Send + Sync {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
}

struct LayoutBlobs(PathBuf);

impl BlobOpen for LayoutBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let p = self.0.join("blobs/sha256").join(digest.hex());
        Ok(Box::new(File::open(&p).ctx("reading", &p)?))
    }
}

struct ArchiveBlobs {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl ArchiveBlobs {
    fn index(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx("opening", path)?;
        let mut entries = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        let bad =
            |e: io::Error| Error::input(format!("{} is not an OCI archive: {e}", path.display()));
        for e in ar.entries_with_seek().map_err(bad)? {
            let e = e.map_err(bad)?;
            let name = e.path().map_err(bad)?.to_string_lossy().into_owned();
            let name = name.trim_start_matches("./").to_string();
            if e.header().entry_type().is_file() {
                entries.insert(name, (e.raw_file_position(), e.size()));
            }
        }
        Ok(ArchiveBlobs {
            path: path.to_path_buf(),
            entries,
        })
    }
}

impl BlobOpen for ArchiveBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let name = format!("blobs/sha256/{}", digest.hex());
        let (off, size) = *self.entries.get(&name).ok_or_else(|| {
            Error::input(format!(
                "{}: {name} is missing from the archive",
                self.path.display()
            ))
        })?;
        let mut f = File::open(&self.path).ctx("opening", &self.path)?;
        f.seek(SeekFrom::Start(off)).ctx("reading", &self.path)?;
        Ok(Box::new(f.take(size)))
    }
}

struct RemoteBlobs(Remote);

impl BlobOpen for RemoteBlobs {
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.0.open_blob(digest)?))
    }
}

/// A `BlobOpen` for a location.
pub fn blob_opener(loc: &Location, opts: &Options) -> Result<Arc<dyn BlobOpen>> {
    match loc {
        Location::Registry { reference, .. } => {
            Ok(Arc::new(RemoteBlobs(Remote::new(reference.clone(), opts)?)))
        }
        Location::Local { path, .. } => {
            if path.is_dir() {
                Ok(Arc::new(LayoutBlobs(path.clone())))
            } else {
                Ok(Arc::new(ArchiveBlobs::index(path)?))
            }
        }
    }
}

// ---------------- push ----------------

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub blobs: BlobCounts,
    /// Bytes sent for uploaded blobs.
    pub bytes_uploaded: u64,
    /// OCI signatures (referrers of the manifest) pushed with it.
    pub signatures: usize,
    /// The referrers fallback tag updated (registries without the referrers API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers_tag: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BlobCounts {
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Uploaded,
    Skipped,
    Mounted,
}

/// What happens to one blob during a push, for progress bars.
#[derive(Clone, Copy, Debug)]
pub enum BlobEvent {
    /// Work on a blob of this size starts.
    Start(u64),
    /// This many more bytes were read and sent.
    Bytes(u64),
    /// The upload failed and starts again; this many bytes were sent in vain.
    Retry(u64),
    /// Finished: "uploaded", "skipped" or "mounted".
    Done(&'static str),
}

/// Progress callback of a push: (blob, event), called from several threads.
pub type PushProgress = Arc<dyn Fn(&Digest, BlobEvent) + Send + Sync>;

/// A blob to push.
#[derive(Clone, Debug)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
}

/// Push a manifest and its blobs to `dst`: blobs first (skip existing, mount from
/// `mount_from` when it is another repository of the same registry, else upload; several at a
/// time), the config, then the manifest last, so the tag moves only when every blob is there.
#[allow(clippy::too_many_arguments)]
pub fn push_manifest(
    dst: &Remote,
    manifest: &[u8],
    media_type: &str,
    blobs: &[BlobRef],
    config: &BlobRef,
    opener: Arc<dyn BlobOpen>,
    mount_from: Option<&Reference>,
    progress: PushProgress,
) -> Result<PushReport> {
    let what = dst.describe();
    let mount_from = mount_from
        .filter(|m| {
            m.resolve_registry() == dst.reference.resolve_registry()
                && m.repository() != dst.reference.repository()
        })
        .cloned();
    let mut report = PushReport {
        reference: what.clone(),
        digest: Digest::of(manifest).to_string(),
        size: manifest.len() as u64,
        ..Default::default()
    };
    // Layers (deduplicated), bounded parallelism; then the config.
    let mut seen = std::collections::HashSet::new();
    let layers: Vec<BlobRef> = blobs
        .iter()
        .filter(|b| b.digest != config.digest && seen.insert(b.digest.clone()))
        .cloned()
        .collect();
    let results: Vec<Result<(Outcome, u64)>> = block_on(async {
        dst.prime().await;
        let jobs = futures_util::stream::iter(layers.into_iter().map(|b| {
            let opener = opener.clone();
            let progress = progress.clone();
            let mount_from = mount_from.clone();
            async move { push_blob(dst, &b, opener, mount_from.as_ref(), progress).await }
        }))
        .buffer_unordered(PARALLEL_BLOBS)
        .collect::<Vec<_>>()
        .await;
        jobs
    });
    for r in results {
        count(&mut report, r?);
    }
    let r = block_on(push_blob(
        dst,
        config,
        opener.clone(),
        mount_from.as_ref(),
        progress.clone(),
    ))?;
    count(&mut report, r);
    // The manifest, last (not after a Ctrl-C: the tag must not move).
    if crate::interrupt::requested() {
        return Err(Error::Interrupted);
    }
    block_on(dst.put_manifest(manifest, media_type, "pushing the manifest"))?;
    Ok(report)
}

fn reqwest_header(mt: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(mt)
        .map_err(|_| Error::input(format!("media type {mt:?} is not a valid header value")))
}

fn count(r: &mut PushReport, (o, n): (Outcome, u64)) {
    match o {
        Outcome::Uploaded => {
            r.blobs.uploaded += 1;
            r.bytes_uploaded += n;
        }
        Outcome::Skipped => r.blobs.skipped += 1,
        Outcome::Mounted => r.blobs.mounted += 1,
    }
}

async fn push_blob(
    dst: &Remote,
    b: &BlobRef,
    opener: Arc<dyn BlobOpen>,
    mount_from: Option<&Reference>,
    progress: PushProgress,
) -> Result<(Outcome, u64)> {
    let what = dst.describe();
    let d = b.digest.to_string();
    let exists = retry(&what, || async {
        dst.client.blob_exists(&dst.reference, &d).await
    })
    .await
    .map_err(|e| map_err(&what, &format!("checking blob {d}"), e))?;
    progress(&b.digest, BlobEvent::Start(b.size));
    if exists {
        progress(&b.digest, BlobEvent::Done("skipped"));
        return Ok((Outcome::Skipped, 0));
    }
    if let Some(from) = mount_from {
        match dst.client.mount_blob(&dst.reference, from, &d).await {
            Ok(()) => {
                let ok = dst
                    .client
                    .blob_exists(&dst.reference, &d)
                    .await
                    .unwrap_or(false);
                if ok {
                    progress(&b.digest, BlobEvent::Done("mounted"));
                    return Ok((Outcome::Mounted, 0));
                }
            }
            Err(e) => tracing::debug!(
                "mounting {d} from {}: {}",
                from.repository(),
                describe_oci(&e)
            ),
        }
    }
    let mut attempt = 0;
    let mut chunked = false;
    loop {
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent2 = sent.clone();
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(2);
        let opener2 = opener.clone();
        let digest = b.digest.clone();
        let size = b.size;
        let progress2 = progress.clone();
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            let mut r = VerifyReader::new(opener2.open(&digest)?, digest.clone(), size);
            loop {
                // Ctrl-C: stop sending; the upload fails and the tag does not move.
                if crate::interrupt::requested() {
                    let _ = tx.blocking_send(Err(OciDistributionError::GenericError(Some(
                        "interrupted by the user".into(),
                    ))));
                    return Err(Error::Interrupted);
                }
                let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
                let mut filled = 0;
                while filled < buf.len() {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let msg = format!("reading blob {digest}: {e}");
                            let _ = tx.blocking_send(Err(OciDistributionError::GenericError(
                                Some(msg.clone()),
                            )));
                            return Err(Error::input(msg));
                        }
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                progress2(&digest, BlobEvent::Bytes(filled as u64));
                sent2.fetch_add(filled as u64, std::sync::atomic::Ordering::Relaxed);
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(()); // the upload stopped; its error is reported below
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
            );
        // One streamed PUT (as `curl -T`); a registry that refuses a body that large (413)
        // gets the chunked upload from then on.
        let client = if chunked { &dst.client } else { &dst.mono };
        // A Ctrl-C ends the upload at once: dropping the request closes the connection
        // (waiting for the reader would first send what is queued, seconds on a slow link).
        let r = tokio::select! {
            r = client.push_blob_stream(&dst.reference, stream, &d, Some(b.size)) => r,
            () = interrupted() => {
                // The reader stops by itself at its next chunk (it checks for Ctrl-C too) and
                // its error ends the request; not waited for: it may be blocked sending to a
                // connection that drains slowly.
                return Err(Error::Interrupted);
            }
        };
        let read = reader
            .await
            .map_err(|e| Error::input(format!("reading blob {d}: {e}")))?;
        read?; // a bad local blob is not worth a retry
        match r {
            Ok(_) => {
                progress(&b.digest, BlobEvent::Done("uploaded"));
                return Ok((Outcome::Uploaded, b.size));
            }
            Err(e) if !chunked && too_large(&e) => {
                tracing::debug!(
                    "uploading {d} in one request: {}; chunked",
                    describe_oci(&e)
                );
                progress(
                    &b.digest,
                    BlobEvent::Retry(sent.load(std::sync::atomic::Ordering::Relaxed)),
                );
                chunked = true;
            }
            Err(e) if attempt < max_retries() && retryable(&e) => {
                let Some(wait) = backoff(&format!("uploading {d}"), attempt, &e) else {
                    return Err(map_err(&what, &format!("uploading blob {d}"), e));
                };
                progress(
                    &b.digest,
                    BlobEvent::Retry(sent.load(std::sync::atomic::Ordering::Relaxed)),
                );
                if !pause(wait).await {
                    return Err(Error::Interrupted);
                }
                attempt += 1;
            }
            Err(e) => return Err(map_err(&what, &format!("uploading blob {d}"), e)),
        }
    }
}

/// Push what `src` holds (layout, archive or another registry) to the registry `dst`.
pub fn push(
    src: &Location,
    dst: &Reference,
    dst_explicit_tag: bool,
    opts: &Options,
    progress: PushProgress,
    on_total: &dyn Fn(u64),
) -> Result<PushReport> {
    let (mut source, tag) = open_location(src, opts)?;
    let resolved = layout::resolve_image(source.as_mut(), tag.as_deref(), "push")?;
    // No tag given: keep the source's tag.
    let mut dst = dst.clone();
    if !dst_explicit_tag {
        if let Some(t) = resolved
            .descriptor
            .annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
        {
            dst = Reference::with_tag(
                dst.registry().to_string(),
                dst.repository().to_string(),
                t.clone(),
            );
        }
    }
    let remote = Remote::new(dst, opts)?;
    let blob = |d: &oci_spec::image::Descriptor| -> Result<BlobRef> {
        Ok(BlobRef {
            digest: Digest::parse(d.digest().as_ref()).map_err(Error::Input)?,
            size: d.size(),
        })
    };
    let layers = resolved
        .manifest
        .layers()
        .iter()
        .map(blob)
        .collect::<Result<Vec<_>>>()?;
    let config = blob(resolved.manifest.config())?;
    on_total(layers.iter().map(|b| b.size).sum::<u64>() + config.size);
    let opener = blob_opener(src, opts)?;
    let mount_from = match src {
        Location::Registry { reference, .. } => Some(reference),
        _ => None,
    };
    let mt = resolved.descriptor.media_type().to_string();
    // The source's signatures of this manifest go along, after it.
    let subject = Digest::of(&resolved.raw);
    let signatures = signatures_of(source.as_mut(), &subject)?;
    drop(source);
    let mut report = push_manifest(
        &remote,
        &resolved.raw,
        &mt,
        &layers,
        &config,
        opener,
        mount_from,
        progress,
    )?;
    let sigs = push_referrers(&remote, &subject, &signatures)?;
    report.signatures = sigs.pushed;
    report.referrers_tag = sigs.tag;
    Ok(report)
}

/// Copy a bundle from any location to a local layout or archive (`dst` path), tagged `tag`.
pub fn copy_to_local(
    src: &Location,
    dst: &Path,
    dst_archive: Option<bool>,
    dst_tag: Option<&str>,
    opts: &Options,
    progress: &dyn Fn(u64),
) -> Result<(Digest, String)> {
    use crate::store::layout::{BlobSink, LayoutWriter, Staging};
    let (mut source, tag) = open_location(src, opts)?;
    let resolved = layout::resolve_image(source.as_mut(), tag.as_deref(), "copy")?;
    let staging = Staging::with_form(dst, dst_archive)?;
    let mut w = LayoutWriter::create(&staging.layout_dir())?;
    let mut descs: Vec<oci_spec::image::Descriptor> = resolved.manifest.layers().clone();
    descs.push(resolved.manifest.config().clone());
    let mut seen = std::collections::HashSet::new();
    for d in &descs {
        let digest = Digest::parse(d.digest().as_ref()).map_err(Error::Input)?;
        if !seen.insert(digest.clone()) {
            continue;
        }
        let what = source.describe();
        let mut r = layout::open_verified(source.as_mut(), d)?;
        let mut out = w.begin()?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let n = r
                .read(&mut buf)
                .map_err(|e| Error::input(format!("{what}: blob {digest}: {e}")))?;
            if n == 0 {
                break;
            }
            io::Write::write_all(&mut out, &buf[..n]).map_err(|e| Error::Io {
                context: format!("writing blob {digest}"),
                source: e,
            })?;
            progress(n as u64);
        }
        drop(r);
        w.commit(out, &digest, d.size())?;
    }
    let mdigest = w.put(&resolved.raw)?;
    // The source's signatures of this manifest, stored beside it (as `bundle --sign` does).
    let mut entries = Vec::new();
    for sig in signatures_of(source.as_mut(), &mdigest)? {
        for b in &sig.blobs {
            w.put(b)?;
        }
        w.put(&sig.manifest)?;
        entries.push(
            serde_json::from_value::<oci_spec::image::Descriptor>(sig.descriptor()?)
                .map_err(|e| Error::input(format!("signature {}: {e}", sig.digest())))?,
        );
    }
    let tag = dst_tag
        .map(str::to_string)
        .or(tag)
        .or_else(|| {
            resolved
                .descriptor
                .annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME).cloned())
        })
        .unwrap_or_else(|| "latest".into());
    let mut desc = resolved.descriptor.clone();
    let mut ann = desc.annotations().clone().unwrap_or_default();
    ann.insert(REF_NAME.to_string(), tag.clone());
    desc.set_annotations(Some(ann));
    entries.insert(0, desc);
    w.write_index(entries)?;
    staging.commit()?;
    Ok((mdigest, tag))
}

// ---------------- streaming sink (bundle --push) ----------------

/// A `BlobSink` that streams each blob to the registry as it is written (a chunked upload
/// whose digest is computed on the fly): `bundle --push` reads each input byte once and
/// keeps no local copy. Finish with `push_manifest`, which tags the result.
pub struct RegistrySink {
    remote: Remote,
    pub report: PushReport,
}

/// The writer of one streamed blob: pieces go to the upload task as they fill, and the task
/// sends them as the body of one PATCH (the blob's size and digest are known only at its end).
pub struct UploadWriter {
    buf: Vec<u8>,
    tx: Option<tokio::sync::mpsc::Sender<std::result::Result<Bytes, OciDistributionError>>>,
    /// The upload's location once the PATCH is done.
    task: Option<tokio::task::JoinHandle<std::result::Result<String, OciDistributionError>>>,
    written: u64,
}

impl UploadWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let tx = self.tx.as_ref().expect("open writer");
        tx.blocking_send(Ok(chunk))
            .map_err(|_| io::Error::other("the registry upload stopped"))
    }
}

impl io::Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RegistrySink {
    pub fn new(remote: Remote) -> Self {
        RegistrySink {
            report: PushReport {
                reference: remote.describe(),
                ..Default::default()
            },
            remote,
        }
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Push the manifest (last: the tag moves only when every blob is there).
    pub fn push_manifest(&mut self, manifest: &[u8], media_type: &str) -> Result<PushReport> {
        let dst = &self.remote;
        block_on(async {
            dst.prime().await;
            dst.put_manifest(manifest, media_type, "pushing the manifest")
                .await
        })?;
        self.report.digest = Digest::of(manifest).to_string();
        self.report.size = manifest.len() as u64;
        Ok(self.report.clone())
    }

    /// Push a manifest by its digest, untagged (the images of an index, before the index).
    pub fn push_manifest_by_digest(&mut self, manifest: &[u8], media_type: &str) -> Result<()> {
        let d = Digest::of(manifest);
        let dst = self.remote.at_digest(&d);
        block_on(async {
            dst.prime().await;
            dst.put_manifest(manifest, media_type, &format!("pushing manifest {d}"))
                .await
        })
    }

    /// Bring blobs of another location (a base image's layers) into this repository, as `push`
    /// does: skipped when the repository has them, mounted when `from` is another repository
    /// of the same registry, else streamed from `from` (verified) and uploaded.
    pub fn copy_blobs(&mut self, blobs: &[BlobRef], from: &Location, opts: &Options) -> Result<()> {
        let opener = blob_opener(from, opts)?;
        let dst = &self.remote;
        let mount_from = match from {
            Location::Registry { reference, .. }
                if reference.resolve_registry() == dst.reference.resolve_registry()
                    && reference.repository() != dst.reference.repository() =>
            {
                Some(reference.clone())
            }
            _ => None,
        };
        let progress: PushProgress = Arc::new(|_: &Digest, _: BlobEvent| {});
        let results: Vec<Result<(Outcome, u64)>> = block_on(async {
            dst.prime().await;
            futures_util::stream::iter(blobs.iter().map(|b| {
                let opener = opener.clone();
                let progress = progress.clone();
                let mount_from = mount_from.clone();
                async move { push_blob(dst, b, opener, mount_from.as_ref(), progress).await }
            }))
            .buffer_unordered(PARALLEL_BLOBS)
            .collect::<Vec<_>>()
            .await
        });
        for r in results {
            count(&mut self.report, r?);
        }
        Ok(())
    }
}

impl layout::BlobSink for RegistrySink {
    type Writer = UploadWriter;

    fn begin(&mut self) -> Result<UploadWriter> {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(2);
        let dst = self.remote.clone();
        let task = runtime().spawn(async move {
            dst.prime().await;
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            });
            // One session and one streamed PATCH (vendor/README.md): no 4 MiB request loop,
            // and no second hash of the blob in the client (the layer writer has one).
            let location = retry("opening the upload", || async {
                dst.client.begin_streamed_upload(&dst.reference).await
            })
            .await?;
            dst.client
                .patch_blob_stream(&location, &dst.reference, stream)
                .await
        });
        Ok(UploadWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            task: Some(task),
            written: 0,
        })
    }

    fn commit(&mut self, mut w: UploadWriter, digest: &Digest, size: u64) -> Result<()> {
        let what = self.remote.describe();
        let sent = w.send();
        w.tx.take(); // end of stream
        let task = w.task.take().expect("open writer");
        let r = block_on(task).map_err(|e| Error::input(format!("{what}: upload task: {e}")))?;
        let location = r.map_err(|e| map_err(&what, &format!("uploading blob {digest}"), e))?;
        sent.map_err(|e| Error::input(format!("{what}: uploading blob {digest}: {e}")))?;
        if w.written != size {
            return Err(Error::input(format!(
                "{what}: blob {digest}: {} bytes were uploaded, expected {size}",
                w.written
            )));
        }
        // The commit names the digest; the registry checks it against what it received.
        let dst = &self.remote;
        block_on(async {
            dst.client
                .finish_streamed_upload(&location, &dst.reference, digest.as_str())
                .await
        })
        .map_err(|e| map_err(&what, &format!("committing blob {digest}"), e))?;
        self.report.blobs.uploaded += 1;
        self.report.bytes_uploaded += size;
        Ok(())
    }
}

// ---------------- signatures: referrers of a pushed manifest ----------------

/// A referrer to push (a signature manifest): its raw manifest and the blobs it names (config
/// and layers; small, held in memory).
#[derive(Clone, Debug)]
pub struct Referrer {
    pub manifest: Vec<u8>,
    pub blobs: Vec<Vec<u8>>,
}

impl Referrer {
    pub fn from_signature(sig: &crate::format::signature::OciSignature) -> Referrer {
        Referrer {
            manifest: sig.manifest.clone(),
            blobs: vec![sig.config.clone(), sig.bundle.clone()],
        }
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    /// Its entry in a referrers index: mediaType, digest, size, artifactType (the manifest's,
    /// else its config's media type) and annotations, as the distribution spec lists them.
    fn descriptor(&self) -> Result<serde_json::Value> {
        let m: serde_json::Value = serde_json::from_slice(&self.manifest).map_err(|e| {
            Error::input(format!(
                "signature manifest {} is not JSON: {e}",
                self.digest()
            ))
        })?;
        let mut d = serde_json::json!({
            "mediaType": m.get("mediaType").and_then(|v| v.as_str()).unwrap_or(MANIFEST_MEDIA_TYPE),
            "digest": self.digest().as_str(),
            "size": self.manifest.len(),
        });
        let at = m
            .get("artifactType")
            .or_else(|| m.get("config").and_then(|c| c.get("mediaType")));
        if let Some(at) = at {
            d["artifactType"] = at.clone();
        }
        if let Some(a) = m.get("annotations").filter(|a| a.is_object()) {
            d["annotations"] = a.clone();
        }
        Ok(d)
    }
}

/// The signature referrers of `subject` that `src` holds (index.json of a layout, the
/// referrers of a registry), with their blobs. Signatures of other manifests are skipped.
pub fn signatures_of(src: &mut dyn Source, subject: &Digest) -> Result<Vec<Referrer>> {
    let what = src.describe();
    let mut out = Vec::new();
    for d in src.referrers(subject)? {
        if !layout::is_signature(&d) {
            continue;
        }
        let raw = layout::read_blob(src, &d, layout::MAX_MANIFEST_BYTES)?;
        let m: oci_spec::image::ImageManifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::input(format!(
                "{what}: signature {} is not a valid OCI manifest: {e}",
                d.digest()
            ))
        })?;
        let signs_subject = m
            .subject()
            .as_ref()
            .is_some_and(|s| s.digest().to_string() == subject.as_str());
        if !signs_subject {
            continue;
        }
        let mut blobs = Vec::new();
        for b in std::iter::once(m.config()).chain(m.layers().iter()) {
            blobs.push(layout::read_blob(src, b, layout::MAX_MANIFEST_BYTES)?);
        }
        out.push(Referrer {
            manifest: raw,
            blobs,
        });
    }
    Ok(out)
}

/// What `push_referrers` did.
#[derive(Clone, Debug, Default)]
pub struct ReferrersPushed {
    /// Signature manifests pushed.
    pub pushed: usize,
    /// The fallback tag (`sha256-<hex>`) updated because the registry has no referrers API.
    pub tag: Option<String>,
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|x| {
            let c = format!("{:?}", x.code).to_ascii_lowercase();
            c.contains("unknown")
        }),
        _ => false,
    }
}

impl Remote {
    /// The same repository at another tag or digest.
    fn at(&self, reference: Reference) -> Remote {
        Remote {
            reference,
            client: self.client.clone(),
            mono: self.mono.clone(),
            auth: self.auth.clone(),
        }
    }

    fn at_digest(&self, d: &Digest) -> Remote {
        self.at(Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            d.to_string(),
        ))
    }

    /// The manifest stored under digest `d` in this repository (raw bytes, verified).
    pub fn manifest_by_digest(&self, d: &Digest) -> Result<Vec<u8>> {
        let (raw, got, _) = self.at_digest(d).manifest()?;
        if &got != d {
            return Err(Error::input(format!(
                "{}: manifest {d} hashes to {got}",
                self.describe()
            )));
        }
        Ok(raw)
    }

    /// The referrers of `subject` (the referrers API; where the registry has none, the index
    /// at the fallback tag `sha256-<hex>`), optionally only those of `artifact_type`.
    pub fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<oci_spec::image::Descriptor>> {
        let what = self.describe();
        let at = self.at_digest(subject);
        let index = block_on(async {
            self.prime().await;
            retry(&what, || async {
                self.client
                    .pull_referrers(&at.reference, artifact_type)
                    .await
            })
            .await
        })
        .map_err(|e| map_err(&what, &format!("listing the referrers of {subject}"), e))?;
        index
            .manifests
            .iter()
            .map(|m| {
                serde_json::to_value(m)
                    .and_then(serde_json::from_value::<oci_spec::image::Descriptor>)
                    .map_err(|e| {
                        Error::input(format!(
                            "{what}: a referrer of {subject} is not a valid descriptor: {e}"
                        ))
                    })
            })
            .collect()
    }
}

/// Push referrers (signature manifests) of `subject` to `dst`'s repository: their blobs, each
/// manifest by digest, then, where the registry has no referrers API (the new manifests do
/// not show up as referrers), add them to the fallback index at tag `sha256-<hex>`.
pub fn push_referrers(
    dst: &Remote,
    subject: &Digest,
    referrers: &[Referrer],
) -> Result<ReferrersPushed> {
    let mut done = ReferrersPushed::default();
    if referrers.is_empty() {
        return Ok(done);
    }
    let what = dst.describe();
    block_on(async {
        dst.prime().await;
        for r in referrers {
            for b in &r.blobs {
                let d = Digest::of(b).to_string();
                let exists = retry(&what, || async {
                    dst.client.blob_exists(&dst.reference, &d).await
                })
                .await
                .map_err(|e| map_err(&what, &format!("checking blob {d}"), e))?;
                if !exists {
                    let body = Bytes::copy_from_slice(b);
                    retry(&what, || async {
                        dst.client.push_blob(&dst.reference, body.clone(), &d).await
                    })
                    .await
                    .map_err(|e| map_err(&what, &format!("uploading blob {d}"), e))?;
                }
            }
            let desc = r.descriptor()?;
            let mt = desc["mediaType"].as_str().unwrap_or(MANIFEST_MEDIA_TYPE);
            dst.at_digest(&r.digest())
                .put_manifest(
                    &r.manifest,
                    mt,
                    &format!("pushing signature {}", r.digest()),
                )
                .await?;
        }
        Ok::<(), Error>(())
    })?;
    done.pushed = referrers.len();

    // Does the registry list them now (referrers API, or already in the fallback index)?
    let listed: std::collections::HashSet<String> = dst
        .referrers(subject, None)?
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    let missing: Vec<&Referrer> = referrers
        .iter()
        .filter(|r| !listed.contains(r.digest().as_str()))
        .collect();
    if missing.is_empty() {
        return Ok(done);
    }

    // The referrers tag schema: fetch the index (none yet: empty), add, push.
    let tag = format!("sha256-{}", subject.hex());
    let tagged = dst.at(Reference::with_tag(
        dst.reference.registry().to_string(),
        dst.reference.repository().to_string(),
        tag.clone(),
    ));
    let existing = block_on(async {
        retry(&what, || async {
            dst.client
                .pull_manifest_raw(&tagged.reference, &dst.auth, &[INDEX_MEDIA_TYPE])
                .await
        })
        .await
    });
    let mut index = match existing {
        Ok((raw, _)) => serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .filter(|v| v["manifests"].is_array())
            .ok_or_else(|| {
                Error::input(format!(
                    "{what}: the referrers tag {tag} holds something else than an image index: remove it, or push to a registry with the referrers API"
                ))
            })?,
        Err(e) if is_not_found(&e) => serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [],
        }),
        Err(e) => return Err(map_err(&what, &format!("fetching the referrers tag {tag}"), e)),
    };
    let manifests = index["manifests"].as_array_mut().expect("checked above");
    for r in missing {
        let d = r.descriptor()?;
        if !manifests.iter().any(|m| m["digest"] == d["digest"]) {
            manifests.push(d);
        }
    }
    let body = crate::format::json::to_canonical_bytes(&index);
    block_on(tagged.put_manifest(
        &body,
        INDEX_MEDIA_TYPE,
        &format!("pushing the referrers tag {tag}"),
    ))?;
    done.tag = Some(tag);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// 1994-11-06 08:49:37 UTC, the example of RFC 9110.
    const RFC_EXAMPLE: i64 = 784_111_777;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    #[test]
    fn delay_seconds() {
        let now = SystemTime::now();
        for (v, want) in [
            ("2", 2),
            ("0", 0),
            (" 7\t", 7),
            ("0002", 2),
            ("86400", 86_400),
        ] {
            assert_eq!(
                parse_retry_after(v, now),
                Some(Duration::from_secs(want)),
                "{v:?}"
            );
        }
    }

    #[test]
    fn malformed_negative_and_absurd_values_are_none() {
        let now = SystemTime::now();
        for v in [
            "",
            " ",
            "soon",
            "-5",
            "+3",
            "1.5",
            "2 s",
            "2s",
            "0x10",
            "١٢", // Arabic-Indic digits
            "86401",
            "1000000000",
            "99999999999999999999999",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49 1994",
            "Sun Nov \u{e9}6 08:49:37 1994",
            "Thu, 29 Feb 1900 00:00:00 GMT",
            // A date far ahead is absurd too.
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        for v in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            // Against a clock 30 s before that date: 30 s; after it: no wait.
            assert_eq!(
                parse_retry_after(v, at(RFC_EXAMPLE - 30)),
                Some(Duration::from_secs(30)),
                "{v:?}"
            );
            assert_eq!(
                parse_retry_after(v, at(RFC_EXAMPLE + 5)),
                Some(Duration::ZERO),
                "{v:?}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun Nov  6 10:49:37 1994", at(RFC_EXAMPLE)),
            Some(Duration::from_secs(7200))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_text_never_panics(v in "\\PC{0,40}") {
            let _ = parse_retry_after(&v, SystemTime::now());
        }

        #[test]
        fn date_like_text_never_panics(
            v in "[A-Za-z]{0,9},? ?[0-9 ]{0,3}[- ]?[A-Za-z]{0,3}[- ]?[0-9]{0,5} [0-9:]{0,9} ?(GMT)?"
        ) {
            let _ = parse_retry_after(&v, SystemTime::now());
        }
    }

    fn server_error(code: u16, retry_after: Option<&str>) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://registry.example:5000/v2/ml/iris/blobs/uploads/".into(),
            message: String::new(),
            retry_after: retry_after.map(str::to_string),
        }
    }

    /// What the vendored oci-client keeps of the response reaches the backoff: 429 and 503
    /// honour it, other codes do not; garbage falls back to the exponential backoff.
    #[test]
    fn backoff_follows_the_retry_after_the_client_kept() {
        let base = backoff_base(0);
        assert!(base < Duration::from_secs(2));
        let b = |code, ra| backoff("t", 0, &server_error(code, ra));
        assert_eq!(b(429, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(b(503, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(b(429, Some("0")), Some(base), "never less than the backoff");
        assert_eq!(b(500, Some("3")), Some(base), "only 429 and 503");
        assert_eq!(b(429, None), Some(base));
        for garbage in ["soon", "-5", "", "99999999999999999999999", "1000000000"] {
            assert_eq!(b(429, Some(garbage)), Some(base), "{garbage:?}");
            assert!(wait_refused(&server_error(429, Some(garbage))).is_none());
        }
        // A TOOMANYREQUESTS envelope (a 429 with a JSON body) carries it too.
        let envelope = serde_json::from_str(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .unwrap();
        let e = OciDistributionError::RegistryError {
            envelope,
            url: "https://registry.example/v2/ml/iris/manifests/1".into(),
            retry_after: Some("4".into()),
        };
        assert_eq!(backoff("t", 0, &e), Some(Duration::from_secs(4)));
    }

    fn token_error(code: u16, message: &str, retry_after: Option<&str>) -> OciDistributionError {
        OciDistributionError::TokenError {
            code,
            url: "https://auth.example/token".into(),
            message: message.into(),
            retry_after: retry_after.map(str::to_string),
        }
    }

    /// The token endpoint's failures (the vendored oci-client's `TokenError`) follow the policy
    /// of the registry's own: 429/5xx/408 retried, `Retry-After` on 429/503 honoured and
    /// capped, 401/403 the credentials message, a 200 that is no token not retried.
    #[test]
    fn token_endpoint_errors_follow_the_retry_policy() {
        for code in [429, 500, 502, 503, 504, 408] {
            assert!(retryable(&token_error(code, "", None)), "{code}");
        }
        for code in [200, 400, 401, 403, 404] {
            assert!(!retryable(&token_error(code, "", None)), "{code}");
        }
        assert!(is_auth_error(&token_error(401, "", None)));
        assert!(is_auth_error(&token_error(403, "", None)));
        assert!(!is_auth_error(&token_error(429, "", None)));
        let base = backoff_base(0);
        let b = |code, ra| backoff("t", 0, &token_error(code, "", ra));
        assert_eq!(b(429, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(b(503, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(b(500, Some("3")), Some(base));
        assert_eq!(b(429, Some("3600")), None);
        let msg = wait_refused(&token_error(429, "", Some("3600"))).unwrap();
        assert!(
            msg.starts_with("the token endpoint https://auth.example/token answered 429 Too Many Requests and asks to retry after 3600 s"),
            "{msg}"
        );
        assert!(msg.contains("MLART_RETRY_AFTER_MAX"), "{msg}");
        let msg = map_err("r/x:1", "listing tags", token_error(401, "no", None)).to_string();
        assert!(
            msg.contains("its token endpoint https://auth.example/token answered 401 Unauthorized")
                && msg.contains("mlart login"),
            "{msg}"
        );
        assert_eq!(
            describe_oci(&token_error(503, "down\n\x1b[2Jfor now", None)),
            "the token endpoint https://auth.example/token answered 503 Service Unavailable (down [2Jfor now)"
        );
        assert!(describe_oci(&token_error(200, "the token is empty", None))
            .starts_with("the token endpoint https://auth.example/token gave no usable token: the token is empty;"));
    }

    #[test]
    fn printable_makes_one_short_line() {
        assert_eq!(printable("  a\r\n\tb\u{7}c  ", 10), "a b c");
        assert_eq!(printable("", 10), "");
        assert_eq!(printable("\u{1b}[31mred", 10), "[31mred");
        assert_eq!(printable("ééééé", 3), "ééé…");
        assert_eq!(printable("abc", 3), "abc");
    }

    #[test]
    fn a_wait_above_the_cap_gives_up_with_a_clear_message() {
        let e = server_error(429, Some("3600"));
        assert_eq!(backoff("t", 0, &e), None);
        let msg = wait_refused(&e).unwrap();
        assert!(msg.contains("registry.example:5000"), "{msg}");
        assert!(msg.contains("429 Too Many Requests"), "{msg}");
        assert!(msg.contains("retry after 3600 s"), "{msg}");
        assert!(msg.contains("MLART_RETRY_AFTER_MAX"), "{msg}");
        let msg = map_err("registry.example:5000/ml/iris:1", "uploading blob x", e).to_string();
        assert!(msg.starts_with("registry.example:5000/ml/iris:1: uploading blob x: the registry registry.example:5000 answered 429"), "{msg}");
        // At the cap itself it waits.
        assert_eq!(
            backoff("t", 0, &server_error(503, Some("60"))),
            Some(Duration::from_secs(60))
        );
        assert!(wait_refused(&server_error(503, Some("60"))).is_none());
        // 61 s on a 503: refused, its status named.
        let msg = wait_refused(&server_error(503, Some("61"))).unwrap();
        assert!(
            msg.contains("503 Service Unavailable") && msg.contains("after 61 s"),
            "{msg}"
        );
    }
}
