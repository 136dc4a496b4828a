//! Blob downloads as `std::io::Read`: the stream bridged from the runtime, skipped prefixes.

use bytes::Bytes;
use futures_util::StreamExt;
use std::io::{self, Read};

pub fn skip_stream(
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

/// Whether a download stream's error is oci-client's digest check failing (a mismatch, not a
/// network failure to retry).
pub fn is_verification(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|x| x as _);
    while let Some(x) = cur {
        if x.is::<oci_client::errors::DigestError>() {
            return true;
        }
        cur = x.source();
    }
    false
}

/// A blob streamed from a registry, as `std::io::Read`.
pub struct BlobReader {
    pub(crate) rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    pub(crate) cur: Bytes,
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

/// Why `Remote::upload_blob` failed: the blob could not be opened or read (not retried), or
/// the registry refused it.
#[derive(Debug)]
pub enum UploadError {
    Open(crate::error::Error),
    Read(io::Error),
    Upload(crate::error::Error),
}

/// Opens a blob's verified reader; called again for each attempt of an upload.
pub type OpenBlob<'a> = dyn Fn() -> crate::error::Result<Box<dyn Read + Send + 'a>> + Sync + 'a;

impl super::Remote {
    /// Whether the repository has the blob (HEAD, retried).
    pub fn has_blob(&self, digest: &crate::format::digest::Digest) -> crate::error::Result<bool> {
        let what = self.describe();
        let d = digest.to_string();
        super::block_on(async {
            self.prime().await;
            super::retry(&self.cancel, &what, || async {
                self.client.blob_exists(&self.reference, &d).await
            })
            .await
        })
        .map_err(|e| super::map_err(&self.cancel, &what, &format!("checking blob {d}"), e))
    }

    /// Mount the blob from `from` (another repository of this registry); true when the
    /// repository has it afterwards. A refused mount is no error: the caller uploads.
    pub fn mount_blob(
        &self,
        digest: &crate::format::digest::Digest,
        from: &crate::format::reference::Reference,
    ) -> bool {
        let d = digest.to_string();
        super::block_on(async {
            self.prime().await;
            match self.client.mount_blob(&self.reference, from, &d).await {
                Ok(()) => self
                    .client
                    .blob_exists(&self.reference, &d)
                    .await
                    .unwrap_or(false),
                Err(e) => {
                    tracing::debug!(
                        "mounting {d} from {}: {}",
                        from.repository(),
                        super::describe_oci(&e)
                    );
                    false
                }
            }
        })
    }

    /// Upload a blob read from `open()`, streamed (never held in memory): one PUT of the whole
    /// body (as `curl -T`); a registry that refuses a body that large (413) gets the chunked
    /// upload from then on. Failures worth it are retried with backoff, the blob opened again
    /// from the start. `sent` gets the bytes read and sent, `restart` the bytes sent in vain
    /// before a new attempt. Call it from a thread outside the registry runtime: it reads the
    /// blob on the calling thread while the runtime sends it.
    pub fn upload_blob(
        &self,
        digest: &crate::format::digest::Digest,
        size: u64,
        open: &OpenBlob<'_>,
        sent: &(dyn Fn(u64) + Sync),
        restart: &(dyn Fn(u64) + Sync),
    ) -> Result<(), UploadError> {
        use oci_client::errors::OciDistributionError as E;
        let what = self.describe();
        let d = digest.to_string();
        let mut attempt = 0;
        let mut chunked = false;
        loop {
            let mut r = open().map_err(UploadError::Open)?;
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, E>>(2);
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|v| (v, rx))
            });
            let this = self.clone();
            let d2 = d.clone();
            // A Ctrl-C ends the request at once: dropping it closes the connection and the
            // channel, so the reader below stops at its next chunk.
            let task = super::runtime().spawn(async move {
                this.prime().await;
                let client = if chunked { &this.client } else { &this.mono };
                tokio::select! {
                    r = client.push_blob_stream(&this.reference, stream, &d2, Some(size)) => Some(r),
                    () = this.cancel.cancelled() => None,
                }
            });
            let mut done: u64 = 0;
            let read: Result<(), Option<io::Error>> = loop {
                if self.cancel.is_cancelled() {
                    let _ = tx.blocking_send(Err(E::GenericError(Some(
                        "interrupted by the user".into(),
                    ))));
                    break Err(None);
                }
                let mut buf = vec![0u8; super::CHUNK.min(size.max(1) as usize)];
                let mut filled = 0;
                let mut failed = None;
                while filled < buf.len() {
                    match r.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    let msg = format!("reading blob {d}: {e}");
                    let _ = tx.blocking_send(Err(E::GenericError(Some(msg))));
                    break Err(Some(e));
                }
                if filled == 0 {
                    break Ok(());
                }
                buf.truncate(filled);
                sent(filled as u64);
                done += filled as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    break Ok(()); // the upload stopped; its error is reported below
                }
            };
            drop(tx);
            drop(r);
            let outcome = super::block_on(task).map_err(|e| {
                UploadError::Upload(crate::error::Error::of(
                    crate::error::Kind::Internal,
                    format!("{what}: upload task: {e}"),
                ))
            })?;
            let Some(result) = outcome else {
                return Err(UploadError::Upload(crate::error::Error::Interrupted));
            };
            match read {
                Err(None) => return Err(UploadError::Upload(crate::error::Error::Interrupted)),
                Err(Some(e)) => return Err(UploadError::Read(e)), // a bad blob is not worth a retry
                Ok(()) => {}
            }
            match result {
                Ok(_) => return Ok(()),
                Err(e) if !chunked && super::too_large(&e) => {
                    tracing::debug!(
                        "uploading {d} in one request: {}; chunked",
                        super::describe_oci(&e)
                    );
                    restart(done);
                    chunked = true;
                }
                Err(e) if attempt < super::max_retries() && super::retryable(&e) => {
                    let Some(wait) = super::backoff(&format!("uploading {d}"), attempt, &e) else {
                        return Err(UploadError::Upload(super::map_err(
                            &self.cancel,
                            &what,
                            &format!("uploading blob {d}"),
                            e,
                        )));
                    };
                    restart(done);
                    if !super::block_on(super::pause(&self.cancel, wait)) {
                        return Err(UploadError::Upload(crate::error::Error::Interrupted));
                    }
                    attempt += 1;
                }
                Err(e) => {
                    return Err(UploadError::Upload(super::map_err(
                        &self.cancel,
                        &what,
                        &format!("uploading blob {d}"),
                        e,
                    )))
                }
            }
        }
    }
}
