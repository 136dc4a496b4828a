//! OCI registries: a client built on oci-client with Docker credentials; blob downloads and
//! uploads (streamed, resumed, retried), manifests, referrers, tags. `store::registry` and
//! `store::registry_sink` adapt it to the store's `Source` and `Sink`; the copy lives in
//! `store::copy`.
//!
//! The rest of the library is synchronous; a process-wide tokio runtime runs the requests and
//! blob streams are bridged to `std::io::Read` through a bounded channel.

pub mod blobs;
pub mod client;
pub mod credentials;
pub mod errors;
pub mod login;
pub mod planned;
pub mod referrers;
pub mod retry;
pub mod sessions;
pub mod upload;

pub use blobs::*;
pub use client::*;
pub use errors::*;
pub use retry::*;
pub use upload::*;

use crate::error::{io_error, Error, Kind, Result};
use crate::format::digest::{mismatch, Digest};
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::reference::Reference;
use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
pub use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use std::io;
use std::path::PathBuf;
use std::sync::OnceLock;

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
pub const CHUNK: usize = 4 << 20;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Plain HTTP even for a non-loopback registry.
    pub plain_http: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca_files: Vec<PathBuf>,
    /// Cancelled on Ctrl-C: requests and waits stop, errors are of kind interrupted.
    pub cancel: crate::interrupt::Cancel,
    /// Blob uploads: the chunk size, where sessions are recorded.
    pub upload: UploadOptions,
}

pub fn runtime() -> &'static tokio::runtime::Runtime {
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
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// One repository of one registry, with a client and the user's credentials for it.
#[derive(Clone)]
pub struct Remote {
    pub reference: Reference,
    pub client: Client,
    pub auth: RegistryAuth,
    /// Where `auth` came from (for the message when the registry refuses it).
    pub credentials: credentials::Source,
    pub cancel: crate::interrupt::Cancel,
    /// How blobs are uploaded (`upload`).
    pub upload: UploadOptions,
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

impl Remote {
    pub fn new(reference: Reference, opts: &Options) -> Result<Self> {
        let found = credentials::lookup(reference.registry())?;
        let mut r = Remote::with_auth(reference, opts, found.auth)?;
        r.credentials = found.source;
        Ok(r)
    }

    /// With explicit credentials (tests, `login`).
    pub fn with_auth(reference: Reference, opts: &Options, auth: RegistryAuth) -> Result<Self> {
        let registry = reference.resolve_registry().to_string();
        Ok(Remote {
            client: client_for(&registry, opts)?,
            reference,
            auth,
            credentials: credentials::Source::Given,
            cancel: opts.cancel.clone(),
            upload: opts.upload.clone(),
        })
    }

    /// Push a manifest or index to this reference (tag or digest), with retries.
    pub async fn put_manifest(&self, body: &[u8], media_type: &str, doing: &str) -> Result<()> {
        let what = self.describe();
        let ct = reqwest_header(media_type)?;
        let body = Bytes::copy_from_slice(body);
        retry(&self.cancel, &what, || async {
            self.client
                .push_manifest_raw(&self.reference, body.clone(), ct.clone())
                .await
        })
        .await
        .map_err(|e| self.map_err(&what, doing, e))?;
        Ok(())
    }

    pub fn describe(&self) -> String {
        self.reference.whole()
    }

    /// A failure of a request to this registry as an [`Error`] ([`map_err_from`]: a refusal
    /// names the credentials sent, or says none were found).
    pub fn map_err(&self, what: &str, doing: &str, e: OciDistributionError) -> Error {
        let registry = self.reference.registry();
        map_err_from(&self.cancel, &self.credentials, registry, what, doing, e)
    }

    pub async fn prime(&self) {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
    }

    /// The digest the reference's tag points to now, or None when the tag (or repository)
    /// does not exist. A HEAD request (a GET where the registry gives no digest header).
    pub fn tag_digest(&self) -> Result<Option<Digest>> {
        let what = self.describe();
        let r = block_on(async {
            self.prime().await;
            retry(&self.cancel, &what, || async {
                self.client
                    .fetch_manifest_digest(&self.reference, &self.auth)
                    .await
            })
            .await
        });
        match r {
            Ok(d) => Digest::parse(&d).map(Some).map_err(Error::Input),
            Err(e) => match self.map_err(&what, "checking the tag", e) {
                e if e.kind() == crate::error::Kind::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Fetch the manifest the reference names: (raw bytes, digest, media type).
    pub fn manifest(&self) -> Result<(Vec<u8>, Digest, String)> {
        let what = self.describe();
        let (raw, digest) = block_on(async {
            self.prime().await;
            retry(&self.cancel, &what, || async {
                self.client
                    .pull_manifest_raw(&self.reference, &self.auth, ACCEPT_MANIFESTS)
                    .await
            })
            .await
        })
        .map_err(|e| self.map_err(&what, "fetching the manifest", e))
        .map_err(|e| self.with_tags_known(e))?;
        if raw.len() as u64 > crate::format::media_type::MAX_MANIFEST_BYTES {
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
        self.blob_stream(digest, None, None)
    }

    /// Open a blob as a stream checked against its digest and size: the bytes are hashed as
    /// they arrive, on the download task (not on the reader's thread, which has its own work),
    /// and the reader gets an `InvalidData` error instead of the end of a blob that is short,
    /// long or wrong. Resumes as `open_blob` does.
    pub fn open_blob_verified(&self, digest: &Digest, size: u64) -> Result<BlobReader> {
        self.blob_stream(digest, Some(size), None)
    }

    /// As `open_blob_verified`, for the rest of a blob after `from.have` bytes already held
    /// (a Range request): the check at the end covers the whole blob.
    pub fn open_blob_verified_from(
        &self,
        digest: &Digest,
        size: u64,
        from: crate::format::digest::Resume,
    ) -> Result<BlobReader> {
        self.blob_stream(digest, Some(size), Some(from))
    }

    /// The raw bytes of a blob from `offset` on (a Range request), not verified: for a sink
    /// that checks the whole blob itself (a registry continuing an upload session).
    pub fn open_blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobReader> {
        let from = crate::format::digest::Resume {
            have: offset,
            hasher: <sha2::Sha256 as sha2::Digest>::new(), // unused without a check
        };
        self.blob_stream(digest, None, Some(from))
    }

    pub fn blob_stream(
        &self,
        digest: &Digest,
        verify: Option<u64>,
        from: Option<crate::format::digest::Resume>,
    ) -> Result<BlobReader> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let this = self.clone();
        let digest_s = digest.to_string();
        let expected = digest.clone();
        runtime().spawn(async move {
            this.prime().await;
            let mut offset: u64 = from.as_ref().map_or(0, |f| f.have);
            let mut attempt = 0u32;
            let mut hasher = match from {
                Some(f) if verify.is_some() => Some(f.hasher),
                _ => verify.map(|_| <sha2::Sha256 as sha2::Digest>::new()),
            };
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
                            Some(wait) if pause(&this.cancel, wait).await => {
                                attempt += 1;
                                continue;
                            }
                            Some(_) => {
                                let _ = tx
                                    .send(Err(io_error(Kind::Interrupted, "interrupted")))
                                    .await;
                                return;
                            }
                            None => {}
                        }
                        let msg = wait_refused(&e)
                            .map(|m| format!("blob {digest_s}: {m}"))
                            .unwrap_or_else(|| describe_oci(&e));
                        let _ = tx.send(Err(io_error(kind_of(&e), msg))).await;
                        return;
                    }
                    Err(e) => {
                        let msg = wait_refused(&e)
                            .map(|m| format!("blob {digest_s}: {m}"))
                            .unwrap_or_else(|| describe_oci(&e));
                        let _ = tx.send(Err(io_error(kind_of(&e), msg))).await;
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
                                        .send(Err(mismatch(format!(
                                            "blob {expected} is larger than its descriptor's size {size}"
                                        ))))
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
                                    .send(Err(mismatch(msg)))
                                    .await;
                            }
                        }
                        return;
                    }
                    Some(e) if is_verification(&e) => {
                        let _ = tx.send(Err(mismatch(e.to_string()))).await;
                        return;
                    }
                    other => {
                        if attempt >= max_retries() {
                            let msg = other
                                .map(|e| e.to_string())
                                .unwrap_or_else(|| "the body was truncated".into());
                            let _ = tx
                                .send(Err(io_error(
                                    Kind::Network,
                                    format!("blob {digest_s}: gave up after {attempt} retries: {msg}"),
                                )))
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
    /// A tag not found: the error, with the tags the repository has (or that it has none).
    fn with_tags_known(&self, e: Error) -> Error {
        let Some(tag) = self
            .reference
            .tag()
            .filter(|_| self.reference.digest().is_none())
        else {
            return e;
        };
        if e.kind() != crate::error::Kind::NotFound {
            return e;
        }
        let repo = format!(
            "{}/{}",
            self.reference.registry(),
            self.reference.repository()
        );
        let more = match self.tags() {
            Ok(tags) => {
                let tags: Vec<String> = tags
                    .into_iter()
                    .filter(|t| !referrers::is_fallback_tag(t))
                    .collect();
                match tags.len() {
                    0 => format!(
                        "{repo} has no tags (or does not exist): check the repository's name, or push the bundle first"
                    ),
                    n => format!(
                        "{repo} has no tag {tag:?}; it has {}{} (`mlart tags {repo}`)",
                        tags.iter().take(10).cloned().collect::<Vec<_>>().join(", "),
                        if n > 10 {
                            format!(" and {} more", n - 10)
                        } else {
                            String::new()
                        }
                    ),
                }
            }
            Err(t) if t.kind() == crate::error::Kind::NotFound => format!(
                "{repo} has no tags (or does not exist): check the repository's name, or push the bundle first"
            ),
            Err(_) => return e,
        };
        Error::of(crate::error::Kind::NotFound, format!("{e}. {more}"))
    }

    pub fn tags(&self) -> Result<Vec<String>> {
        let what = self.reference.repository().to_string();
        let r = block_on(async {
            self.prime().await;
            retry(&self.cancel, &what, || async {
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
            self.map_err(&repo, "listing tags", e)
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
            let token = retry(&self.cancel, &what, || async {
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
            retry(&self.cancel, &what, || async {
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
            Err(e) if self.cancel.is_cancelled() || retryable(&e) => {
                Err(self.map_err(self.reference.registry(), "checking the credentials", e))
            }
            Err(e) if is_auth_error(&e) => Err(Error::of(
                Kind::Auth,
                format!(
                    "{}: the registry refused the credentials ({})",
                    self.reference.registry(),
                    describe_oci(&e)
                ),
            )),
            Err(OciDistributionError::RegistryError { .. }) => Ok(()), // 404 NAME_UNKNOWN: authenticated
            Err(OciDistributionError::ServerError { code: 404, .. }) => Ok(()),
            Err(e) => Err(self.map_err(self.reference.registry(), "checking the credentials", e)),
        }
    }
}

pub fn reqwest_header(mt: &str) -> Result<http::HeaderValue> {
    http::HeaderValue::from_str(mt)
        .map_err(|_| Error::input(format!("media type {mt:?} is not a valid header value")))
}
