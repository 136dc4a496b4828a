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
        .map_err(|e| self.map_err(&what, &format!("checking blob {d}"), e))
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
}
