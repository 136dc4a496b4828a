//! Blob uploads of known digest (push, copy): a blob up to the chunk size goes in one request
//! (POST, then a PUT with the whole body, as `curl -T`); a larger one as chunks, one streamed
//! PATCH with `Content-Range` each, then the PUT that commits it. The session is recorded in
//! the cache (`sessions`) and, after an interruption, continued: the registry says what it
//! holds (upload status, `Range`) and the rest follows from there. Whatever goes wrong with a
//! continued session (gone, refused, a digest that does not match at the commit), the blob is
//! uploaded again from the start: the registry checks the digest when the session is
//! committed, so a wrong continuation never becomes a blob.
//!
//! What a registry keeps of a request that was cut off decides what a continuation saves:
//! docs/registries.md ("Interrupted pushes") has what distribution 2.8 does.

use super::sessions::{held_bytes, now_secs, Locked, Record};
use super::*;
use crate::error::{Error, Result};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use oci_client::errors::OciDistributionError as E;
use std::io::{self, Read};
use std::path::PathBuf;

/// Bytes per PATCH unless `--chunk-size` says otherwise: a blob larger than this goes up in
/// chunks, so an interrupted upload loses at most one chunk where the registry keeps the
/// session at the last whole request. Also below the 100 MB a request body may have behind
/// some CDNs.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;
/// The pieces of a request body handed to the runtime: with two in the channel, one being
/// sent and one being read, an upload holds about 4 MiB (`PARALLEL_BLOBS` of them: 16 MiB;
/// with 4 MiB pieces a push of many large blobs peaked near 100 MiB).
pub(crate) const PIECE: usize = 1 << 20;
/// The smallest `--chunk-size`.
pub const MIN_CHUNK_SIZE: u64 = 1 << 20;

/// How blobs are uploaded.
#[derive(Clone, Debug, Default)]
pub struct UploadOptions {
    /// Bytes per PATCH (None: `DEFAULT_CHUNK_SIZE`); a blob up to this size is one request.
    pub chunk_size: Option<u64>,
    /// Where upload sessions are recorded (`<cache>/uploads`); None: nowhere (an interrupted
    /// upload starts again from the beginning).
    pub sessions: Option<PathBuf>,
}

/// Parse a `--chunk-size` value (`64M`, `1G`, bytes).
pub fn parse_chunk_size(s: &str) -> std::result::Result<u64, String> {
    let n = crate::format::units::parse_size(s)?;
    if n < MIN_CHUNK_SIZE {
        return Err(format!(
            "{s:?} is too small for a chunk: give at least 1M (a blob up to the chunk size goes in one request; a size larger than every blob, e.g. 1T, never chunks)"
        ));
    }
    Ok(n)
}

/// Opens the raw bytes of a blob from an offset on, for a continued session (not verified
/// here: the registry checks the whole blob's digest at the commit).
pub type OpenAt<'a> = dyn Fn(u64) -> Result<Box<dyn Read + Send + 'a>> + Sync + 'a;

/// What `Remote::upload_blob` reports as it goes.
#[derive(Clone, Copy, Debug)]
pub enum UploadEvent {
    /// This many more bytes were read and sent.
    Sent(u64),
    /// The upload starts again; this many bytes (sent or held) count no more.
    Restart(u64),
    /// A session of an earlier attempt or run is continued: the registry holds this many
    /// bytes of the blob, which are not sent again.
    Resumed(u64),
}

/// Why one attempt failed.
enum Fail {
    Interrupted,
    Read(io::Error),
    Registry(E),
}

/// The session an attempt works on: its latest location and the bytes the registry holds.
struct Session {
    location: String,
    offset: u64,
    created: u64,
}

type Body = BoxStream<'static, std::result::Result<Bytes, E>>;

impl Remote {
    /// Bytes per PATCH: `--chunk-size`, else `DEFAULT_CHUNK_SIZE`.
    pub fn chunk_size(&self) -> u64 {
        self.upload
            .chunk_size
            .unwrap_or(DEFAULT_CHUNK_SIZE)
            .max(MIN_CHUNK_SIZE)
    }

    /// Upload a blob read from `open()` (verified as it is read), streamed (never held in
    /// memory). A session recorded by an earlier run is asked for what it holds and continued
    /// from there with `open_at`. Failures worth it are retried with backoff, continuing the
    /// session where the registry kept it; a registry that refuses a body that large (413)
    /// gets chunks of at most 4 MiB, halved on each further 413 down to 1 MiB. Returns the
    /// bytes a continued session already held (0: all sent). Call it from a thread outside
    /// the registry runtime: it reads the blob on the calling thread while the runtime sends
    /// it.
    pub fn upload_blob(
        &self,
        digest: &crate::format::digest::Digest,
        size: u64,
        open: &OpenBlob<'_>,
        open_at: &OpenAt<'_>,
        event: &(dyn Fn(UploadEvent) + Sync),
    ) -> std::result::Result<u64, UploadError> {
        let Locked {
            registry,
            repository,
            store,
            lock,
        } = Locked::take(self, digest);
        let forget = || {
            if let Some(s) = &store {
                s.remove(&registry, &repository, digest);
            }
        };
        let record = |s: &Session| {
            if let Some(st) = &store {
                st.save(&Record {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    digest: digest.to_string(),
                    size,
                    location: s.location.clone(),
                    created: s.created,
                    plan: false,
                });
            }
        };
        let mut chunk = self.chunk_size();
        // After a 413: chunks even for a blob that fits one.
        let mut chunked = false;
        let mut attempt = 0;
        let mut resume: Option<(String, u64)> = store
            .as_ref()
            .and_then(|s| s.load(&registry, &repository, digest, size))
            .map(|r| (r.location, r.created));
        loop {
            // Where to start: what a known session holds, else a new session.
            let mut held = None;
            if let Some((location, created)) = resume.take() {
                match self.session_status(&location, size) {
                    Ok((n, next)) if n > 0 => {
                        held = Some(Session {
                            location: next,
                            offset: n,
                            created,
                        })
                    }
                    Ok(_) => tracing::debug!("blob {digest}: the upload session holds nothing yet; starting afresh"),
                    Err(why) => tracing::debug!(
                        "blob {digest}: the upload session cannot be continued ({why}); starting afresh"
                    ),
                }
                if held.is_none() {
                    forget();
                }
            }
            let resumed_at = held.as_ref().map_or(0, |s| s.offset);
            let (mut session, reader) = match held {
                Some(s) if s.offset == size => (s, Box::new(io::empty()) as Box<dyn Read + Send>),
                Some(s) => match open_at(s.offset) {
                    Ok(r) => (s, r),
                    Err(e) => {
                        tracing::debug!(
                            "blob {digest}: reading it from {}: {e}; starting afresh",
                            s.offset
                        );
                        forget();
                        continue;
                    }
                },
                None => {
                    let location = match self.begin_session() {
                        Ok(l) => l,
                        Err(Fail::Registry(e)) => {
                            match self.retry_or_give_up(digest, &mut attempt, e) {
                                Ok(()) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                        Err(_) => return Err(UploadError::Upload(Error::Interrupted)),
                    };
                    let s = Session {
                        location,
                        offset: 0,
                        created: now_secs(),
                    };
                    record(&s);
                    match open() {
                        Ok(r) => (s, r),
                        Err(e) => {
                            forget();
                            return Err(UploadError::Open(e));
                        }
                    }
                }
            };
            if resumed_at > 0 {
                tracing::info!("blob {digest}: continuing its upload after {resumed_at} bytes");
                event(UploadEvent::Resumed(resumed_at));
            }
            let mut sent = 0u64;
            let result = self.send(
                &mut session,
                reader,
                digest,
                size,
                chunk,
                chunked,
                &mut |n| {
                    sent += n;
                    event(UploadEvent::Sent(n))
                },
                &record,
            );
            let fail = match result {
                Ok(()) => {
                    forget();
                    if let Some(l) = lock {
                        l.release();
                    }
                    return Ok(resumed_at);
                }
                Err(f) => f,
            };
            match fail {
                // Kept for the next run (Ctrl-C).
                Fail::Interrupted => return Err(UploadError::Upload(Error::Interrupted)),
                Fail::Read(_) if self.cancel.is_cancelled() => {
                    return Err(UploadError::Upload(Error::Interrupted))
                }
                Fail::Read(e) if resumed_at == 0 => {
                    forget();
                    return Err(UploadError::Read(e)); // a bad blob is not worth a retry
                }
                Fail::Read(e) => {
                    tracing::debug!(
                        "blob {digest}: reading it from {resumed_at}: {e}; starting afresh"
                    );
                    event(UploadEvent::Restart(resumed_at + sent));
                    forget();
                }
                // Too large a body: chunks (of at most 4 MiB), then halved down to 1 MiB.
                Fail::Registry(e) if too_large(&e) && (!chunked || chunk > MIN_CHUNK_SIZE) => {
                    chunk = if chunked {
                        (chunk / 2).max(MIN_CHUNK_SIZE)
                    } else {
                        chunk.min(CHUNK as u64)
                    };
                    chunked = true;
                    tracing::debug!(
                        "uploading {digest}: {}; in chunks of {chunk} bytes",
                        describe_oci(&e)
                    );
                    event(UploadEvent::Restart(resumed_at + sent));
                    forget();
                }
                Fail::Registry(e) if resumed_at > 0 && !retryable(&e) => {
                    // Gone, out of range, or the digest does not match at the commit.
                    tracing::debug!(
                        "blob {digest}: continuing its upload failed ({}); starting afresh",
                        describe_oci(&e)
                    );
                    event(UploadEvent::Restart(resumed_at + sent));
                    forget();
                }
                Fail::Registry(e) => {
                    event(UploadEvent::Restart(resumed_at + sent));
                    if !retryable(&e) {
                        forget(); // refused: the session is of no use
                    }
                    self.retry_or_give_up(digest, &mut attempt, e)?;
                    // Ask what the session kept when something was sent or held.
                    if session.offset > 0 || sent > 0 {
                        resume = Some((session.location, session.created));
                    } else {
                        forget();
                    }
                }
            }
        }
    }

    /// After a failure: wait and count the attempt when it is worth another, else the error.
    fn retry_or_give_up(
        &self,
        digest: &crate::format::digest::Digest,
        attempt: &mut u32,
        e: E,
    ) -> std::result::Result<(), UploadError> {
        let give_up = |e| {
            UploadError::Upload(self.map_err(
                &self.describe(),
                &format!("uploading blob {digest}"),
                e,
            ))
        };
        if *attempt >= max_retries() || !retryable(&e) {
            return Err(give_up(e));
        }
        let Some(wait) = backoff(&format!("uploading {digest}"), *attempt, &e) else {
            return Err(give_up(e));
        };
        if !block_on(pause(&self.cancel, wait)) {
            return Err(UploadError::Upload(Error::Interrupted));
        }
        *attempt += 1;
        Ok(())
    }

    /// POST: a new session's location.
    fn begin_session(&self) -> std::result::Result<String, Fail> {
        let r = block_on(async {
            self.prime().await;
            tokio::select! {
                r = self.client.begin_streamed_upload(&self.reference) => Some(r),
                () = self.cancel.cancelled() => None,
            }
        });
        match r {
            None => Err(Fail::Interrupted),
            Some(r) => r.map_err(Fail::Registry),
        }
    }

    /// What the session at `location` holds (bytes, never more than `size`) and its next
    /// location; why not, in words.
    pub(crate) fn session_status(
        &self,
        location: &str,
        size: u64,
    ) -> std::result::Result<(u64, String), String> {
        let what = self.describe();
        let r = block_on(async {
            self.prime().await;
            retry(&self.cancel, &what, || async {
                self.client.upload_status(location, &self.reference).await
            })
            .await
        });
        let (range, next) = r.map_err(|e| describe_oci(&e))?;
        let held = held_bytes(range.as_deref(), size).ok_or_else(|| {
            format!("the registry answered Range {range:?} for a blob of {size} bytes")
        })?;
        if !super::sessions::location_fits(
            &next,
            self.reference.resolve_registry(),
            self.reference.repository(),
        ) {
            return Err(format!("the registry moved the session to {next:?}"));
        }
        Ok((held, next))
    }

    /// Send the blob from `s.offset` on and commit it: one PUT with the whole blob when it
    /// starts at 0 and fits one chunk (unless `chunked`), else PATCHes of `chunk` bytes (the
    /// record rewritten after each, as the session moves) and the PUT.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        s: &mut Session,
        mut r: Box<dyn Read + Send + '_>,
        digest: &crate::format::digest::Digest,
        size: u64,
        chunk: u64,
        chunked: bool,
        sent: &mut dyn FnMut(u64),
        record: &dyn Fn(&Session),
    ) -> std::result::Result<(), Fail> {
        let d = digest.to_string();
        if s.offset == 0 && size <= chunk && !(chunked && size > 0) {
            let (this, location, d) = (self.clone(), s.location.clone(), d.clone());
            return self
                .stream_body(&mut r, size, true, sent, move |body| {
                    Box::pin(async move {
                        this.client
                            .put_blob_stream(&location, &this.reference, body, size, &d)
                            .await
                    })
                })
                .map(|_| ());
        }
        while s.offset < size {
            let len = chunk.min(size - s.offset);
            let last = s.offset + len == size;
            let (this, location, start) = (self.clone(), s.location.clone(), s.offset);
            s.location = self.stream_body(&mut r, len, last, sent, move |body| {
                Box::pin(async move {
                    this.client
                        .patch_blob_range(&location, &this.reference, body, start, len)
                        .await
                })
            })?;
            s.offset += len;
            record(s);
        }
        if size == 0 {
            // nothing went through the reader: its end (the check) still has to be read
            let mut probe = [0u8; 1];
            if let Err(e) = r.read(&mut probe) {
                return Err(Fail::Read(e));
            }
        }
        drop(r);
        block_on(async {
            self.prime().await;
            tokio::select! {
                r = self.client.finish_streamed_upload(&s.location, &self.reference, &d) => Some(r),
                () = self.cancel.cancelled() => None,
            }
        })
        .ok_or(Fail::Interrupted)?
        .map(|_| ())
        .map_err(Fail::Registry)
    }

    /// Send exactly `len` bytes of `r` as the body of `request`, in pieces of `PIECE` through a
    /// bounded channel (the runtime sends while this thread reads). With `last`, the reader's
    /// end is read before the last piece goes, so a blob that fails its check at the end is
    /// never completed. A Ctrl-C ends the request at once.
    fn stream_body<F>(
        &self,
        r: &mut dyn Read,
        len: u64,
        last: bool,
        sent: &mut dyn FnMut(u64),
        request: F,
    ) -> std::result::Result<String, Fail>
    where
        F: FnOnce(Body) -> BoxFuture<'static, std::result::Result<String, E>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, E>>(2);
        let body: Body = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|v| (v, rx))
        }));
        let this = self.clone();
        let task = runtime().spawn(async move {
            this.prime().await;
            tokio::select! {
                r = request(body) => Some(r),
                () = this.cancel.cancelled() => None,
            }
        });
        let abort = |tx: &tokio::sync::mpsc::Sender<_>, msg: String| {
            let _ = tx.blocking_send(Err(E::GenericError(Some(msg))));
        };
        let mut left = len;
        let read: std::result::Result<(), Fail> = loop {
            if self.cancel.is_cancelled() {
                abort(&tx, "interrupted by the user".into());
                break Err(Fail::Interrupted);
            }
            if left == 0 {
                break Ok(());
            }
            let mut buf = vec![0u8; (PIECE as u64).min(left) as usize];
            if let Err(e) = read_full(r, &mut buf) {
                abort(&tx, format!("reading the blob: {e}"));
                break Err(Fail::Read(e));
            }
            left -= buf.len() as u64;
            if left == 0 && last {
                let mut probe = [0u8; 1];
                let end = match r.read(&mut probe) {
                    Ok(0) => Ok(()),
                    Ok(_) => Err(crate::format::digest::mismatch(
                        "the blob is larger than its descriptor's size",
                    )),
                    Err(e) => Err(e),
                };
                if let Err(e) = end {
                    abort(&tx, format!("reading the blob: {e}"));
                    break Err(Fail::Read(e));
                }
            }
            sent(buf.len() as u64);
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                break Ok(()); // the request stopped; its error is below
            }
        };
        drop(tx);
        let outcome = block_on(task);
        read?;
        match outcome {
            Err(e) => Err(Fail::Registry(E::GenericError(Some(format!(
                "upload task: {e}"
            ))))),
            Ok(None) => Err(Fail::Interrupted),
            Ok(Some(r)) => r.map_err(Fail::Registry),
        }
    }
}

/// Fill `buf` from `r`; a reader that ends first is a blob shorter than its size.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(crate::format::digest::mismatch(
                    "the blob is shorter than its descriptor's size",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size("64M"), Ok(64 << 20));
        assert_eq!(parse_chunk_size("1G"), Ok(1 << 30));
        assert_eq!(parse_chunk_size("1048576"), Ok(1 << 20));
        for bad in ["0", "abc", "512K", "-1M", ""] {
            let e = parse_chunk_size(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }
}
