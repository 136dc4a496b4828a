//! A registry as a build sink (`bundle --push`): blobs stream straight into uploads.

use crate::error::Kind;
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::reference::Location;
use crate::format::reference::Reference;
use crate::registry::planned::Recorder;
use crate::registry::upload::PIECE;
use crate::registry::*;
use crate::store::copy::{copy_blobs, CopyOptions};
use crate::store::push::PushReport;
use crate::store::referrers::{put_referrer_manifests, Referrer};
use crate::store::registry::open_location;
use crate::store::{
    layout, BlobRead, BlobRef, Opener, PutError, ReadFrom, ResumeOpener, Sent, Sink,
};
use bytes::Bytes;
use oci_client::errors::OciDistributionError;
use oci_spec::image::Descriptor;
use std::io::{self, Read};

/// A `BlobSink` that streams each blob to the registry as it is written (a chunked upload
/// whose digest is computed on the fly): `bundle --push` reads each input byte once and
/// keeps no local copy. Finish with `push_manifest`, which tags the result.
pub struct RegistrySink {
    remote: Remote,
    pub report: PushReport,
    /// Blobs the build's `Resumable` handles skipped or uploaded (counted into `report` when
    /// the manifest is pushed).
    done: crate::store::resumable::Done,
    /// Refuse to move an existing tag to other content (`bundle --push --immutable`).
    pub immutable: bool,
}

/// The writer of one streamed blob: pieces go to the upload task as they fill, and the task
/// sends them as the bodies of PATCHes of `--chunk-size` bytes (the blob's size and digest are
/// known only at its end). Pieces of 1 MiB (`registry::PIECE`): with one filling, two in each
/// channel and one in the request, a layer holds about 7 MiB (with 4 MiB pieces a
/// `bundle --push` of shards, two layers at once, peaked at 94 MiB).
pub struct UploadWriter {
    buf: Vec<u8>,
    tx: Option<tokio::sync::mpsc::Sender<std::result::Result<Bytes, OciDistributionError>>>,
    /// The upload's location once the PATCH is done.
    task: Option<tokio::task::JoinHandle<std::result::Result<String, OciDistributionError>>>,
    /// The blob's bytes so far (sent or skipped).
    written: u64,
    /// Bytes the registry already holds (a continued session, `registry::planned`): the
    /// first this many bytes written are counted, not sent.
    skip: u64,
}

impl UploadWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        let tx = self.tx.as_ref().expect("open writer");
        if tx.blocking_send(Ok(chunk)).is_ok() {
            return Ok(());
        }
        // The request ended: say why (the registry's answer), not only that it did.
        let why = match self.task.take().map(block_on) {
            Some(Ok(Err(e))) => format!(": {}", describe_oci(&e)),
            Some(Err(e)) => format!(": upload task: {e}"),
            _ => String::new(),
        };
        Err(crate::error::io_error(
            Kind::Network,
            format!("the registry upload stopped{why}"),
        ))
    }
}

impl io::Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.skip > 0 {
            let n = (data.len() as u64).min(self.skip);
            self.skip -= n;
            self.written += n;
            return Ok(n as usize);
        }
        let room = PIECE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= PIECE {
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
            done: Default::default(),
            immutable: false,
        }
    }

    /// Count blobs as `copy_blobs` returns them.
    fn count(&mut self, done: &[(BlobRef, crate::store::copy::Outcome)]) {
        let mut counted = crate::store::copy::CopyReport::default();
        counted.add(done);
        self.report.blobs.uploaded += counted.blobs.uploaded;
        self.report.blobs.skipped += counted.blobs.skipped;
        self.report.blobs.mounted += counted.blobs.mounted;
        self.report.blobs.resumed += counted.blobs.resumed;
        self.report.bytes_uploaded += counted.bytes;
        self.report.bytes_resumed += counted.bytes_resumed;
        self.report.resumed.extend(counted.resumed);
    }

    /// What the `Resumable` handles did, into the report.
    fn count_handles(&mut self) {
        let done = std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()));
        self.count(&done);
    }

    pub fn remote(&self) -> &Remote {
        &self.remote
    }

    /// Push the manifest (last: the tag moves only when every blob is there).
    /// The tag's move, if it points elsewhere now, is reported as `push` reports it, and
    /// refused with `immutable` (the blobs stay uploaded; the tag is not touched).
    pub fn push_manifest(&mut self, manifest: &[u8], media_type: &str) -> Result<PushReport> {
        self.count_handles();
        let dst = &self.remote;
        let digest = Digest::of(manifest);
        let moved_from = match (dst.reference.tag(), dst.reference.digest()) {
            (Some(_), None) => dst.tag_digest()?.filter(|d| *d != digest),
            _ => None,
        };
        if let (Some(prev), true) = (&moved_from, self.immutable) {
            return Err(Error::Check(format!(
                "{}: the tag {} points to {prev}; this bundle is {digest}, and --immutable refuses to move a tag. Its blobs were uploaded, but the tag was not moved. Bundle under a new version (`version:` in the spec, or --tag), or drop --immutable to move it",
                dst.describe(),
                dst.reference.tag().unwrap_or_default()
            )));
        }
        self.report.moved_from = moved_from.map(|d| d.to_string());
        block_on(async {
            dst.prime().await;
            dst.put_manifest(manifest, media_type, "pushing the manifest")
                .await
        })?;
        self.report.digest = digest.to_string();
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
    /// does (the one copy): skipped when the repository has them, mounted when `from` is
    /// another repository of the same registry, else streamed from `from` (verified) and
    /// uploaded.
    pub fn copy_blobs(&mut self, blobs: &[BlobRef], from: &Location, opts: &Options) -> Result<()> {
        let (src, _) = open_location(from, opts)?;
        let copy = CopyOptions {
            cancel: opts.cancel.clone(),
            ..CopyOptions::default()
        };
        let done = copy_blobs(src.as_ref(), &*self, blobs, &copy)?;
        self.count(&done);
        Ok(())
    }
}

/// The registry as the target of a copy.
impl Sink for RegistrySink {
    fn describe(&self) -> String {
        self.remote.describe()
    }

    fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
        self.remote.has_blob(&blob.digest)
    }

    /// Only from another repository of the same registry.
    fn mount_blob(&self, blob: &BlobRef, from: &Reference) -> Result<bool> {
        let here = &self.remote.reference;
        if from.resolve_registry() != here.resolve_registry()
            || from.repository() == here.repository()
        {
            return Ok(false);
        }
        Ok(self.remote.mount_blob(&blob.digest, from))
    }

    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        // Only from the start: a continued session gets the rest of it, the first bytes read
        // and dropped.
        let from = |f: ReadFrom| -> Result<BlobRead<'_>> {
            let mut r = open()?;
            if let ReadFrom::Offset(n) = f {
                io::copy(&mut (&mut r).take(n), &mut io::sink())
                    .map_err(|e| Error::from_io(&e, format!("blob {}: {e}", blob.digest)))?;
            }
            Ok(r)
        };
        self.put_blob_resumable(blob, &from, sent)
    }

    /// Continues the upload session an earlier run recorded (`registry::upload`), reading
    /// the rest of the blob from where the registry says it stopped.
    fn put_blob_resumable(
        &self,
        blob: &BlobRef,
        open: &ResumeOpener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        self.remote
            .upload_blob(
                &blob.digest,
                blob.size,
                &|| open(ReadFrom::Start),
                &|at| open(ReadFrom::Offset(at)),
                &|e| {
                    sent(match e {
                        UploadEvent::Sent(n) => Sent::Bytes(n),
                        UploadEvent::Restart(n) => Sent::Restart(n),
                        UploadEvent::Resumed(n) => Sent::Resumed(n),
                    })
                },
            )
            .map(|_| ())
            .map_err(|e| match e {
                UploadError::Open(e) => PutError::Open(e),
                UploadError::Read(e) => PutError::Read(e),
                UploadError::Upload(e) => PutError::Sink(e),
            })
    }

    /// Tagged: to the tag in this repository; else by digest.
    fn put_manifest(&self, desc: &Descriptor, raw: &[u8], tag: Option<&str>) -> Result<()> {
        let mt = desc.media_type().to_string();
        let here = &self.remote.reference;
        let (dst, doing) = match tag {
            Some(t) => (
                self.remote.at(Reference::with_tag(
                    here.registry().to_string(),
                    here.repository().to_string(),
                    t.to_string(),
                )),
                "pushing the manifest".to_string(),
            ),
            None => {
                let d = Digest::of(raw);
                (self.remote.at_digest(&d), format!("pushing manifest {d}"))
            }
        };
        block_on(async {
            dst.prime().await;
            dst.put_manifest(raw, &mt, &doing).await
        })
    }

    fn put_referrers(&self, subject: &Digest, referrers: &[Referrer]) -> Result<Option<String>> {
        put_referrer_manifests(&self.remote, subject, referrers)
    }
}

type Piece = std::result::Result<Bytes, OciDistributionError>;

/// Send what comes through `rx` to the session at `location` as streamed PATCHes of at most
/// the remote's chunk size each (a piece that straddles a boundary is split); the session's
/// last location. A PATCH starts only once there is a byte for it.
async fn patch_in_chunks(
    dst: &Remote,
    mut location: String,
    mut rx: tokio::sync::mpsc::Receiver<Piece>,
    recorder: Option<&Recorder>,
) -> std::result::Result<String, OciDistributionError> {
    let chunk = dst.chunk_size();
    let mut carry: Option<Bytes> = None;
    loop {
        let first = match carry.take() {
            Some(b) => b,
            None => match rx.recv().await {
                Some(Ok(b)) => b,
                Some(Err(e)) => return Err(e),
                None => return Ok(location),
            },
        };
        let (tx, body) = tokio::sync::mpsc::channel::<Piece>(2);
        let body =
            futures_util::stream::unfold(
                body,
                |mut rx| async move { rx.recv().await.map(|v| (v, rx)) },
            );
        let from = &mut rx;
        // Some(rest): the chunk is full, more may follow; None: the blob ended (or the
        // request stopped taking bytes: its error comes from the PATCH).
        let forward = async move {
            let mut left = chunk;
            let mut next = Some(first);
            loop {
                let mut b = match next.take() {
                    Some(b) => b,
                    None => match from.recv().await {
                        Some(v) => v?,
                        None => return Ok(None),
                    },
                };
                let rest = (b.len() as u64 > left).then(|| b.split_off(left as usize));
                left -= b.len() as u64;
                if tx.send(Ok(b)).await.is_err() {
                    return Ok(None);
                }
                if left == 0 {
                    return Ok(Some(rest.filter(|r| !r.is_empty())));
                }
            }
        };
        let patch = dst
            .client
            .patch_blob_stream(&location, &dst.reference, body);
        let (more, sent): (std::result::Result<_, OciDistributionError>, _) =
            tokio::join!(forward, patch);
        location = sent?;
        if let Some(r) = recorder {
            r.save(&location);
        }
        match more? {
            Some(rest) => carry = rest,
            None => return Ok(location),
        }
    }
}

impl layout::BlobSink for RegistrySink {
    type Writer = UploadWriter;

    /// A small blob held in memory (the config): not sent when the registry has it (a run
    /// again after an interruption, or content pushed before).
    fn put(&mut self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let blob = BlobRef {
            digest: d.clone(),
            size: data.len() as u64,
        };
        if self.remote.has_blob(&blob.digest)? {
            self.count(&[(blob, crate::store::copy::Outcome::Skipped)]);
            return Ok(d);
        }
        let mut w = self.begin()?;
        io::Write::write_all(&mut w, data)
            .map_err(|e| Error::from_io(&e, format!("uploading blob {d}: {e}")))?;
        self.commit(w, &d, data.len() as u64)?;
        Ok(d)
    }

    /// Nothing sent: the manifest goes to the manifests endpoint (`push_manifest`), last.
    fn put_manifest_blob(&mut self, data: &[u8]) -> Result<Digest> {
        Ok(Digest::of(data))
    }

    fn resumable(&self) -> Option<crate::store::resumable::Resumable> {
        let records = self
            .remote
            .upload
            .sessions
            .as_ref()
            .map(|s| s.join("layers"));
        Some(crate::store::resumable::Resumable::new(
            RegistrySink::new(self.remote.clone()),
            records,
            self.done.clone(),
        ))
    }

    fn begin(&mut self) -> Result<UploadWriter> {
        Ok(self.writer(None))
    }

    fn commit(&mut self, w: UploadWriter, digest: &Digest, size: u64) -> Result<()> {
        if self.already_there(&w, digest)? {
            self.count(&[(
                BlobRef {
                    digest: digest.clone(),
                    size,
                },
                crate::store::copy::Outcome::Skipped,
            )]);
            return Ok(());
        }
        self.finish(w, digest, size)?;
        self.report.blobs.uploaded += 1;
        self.report.bytes_uploaded += size;
        Ok(())
    }
}

impl RegistrySink {
    /// A writer streaming to a new session, or (`at`) to the open session a `Planned`
    /// upload names, its first `held` bytes not sent again.
    pub(crate) fn writer(&self, at: Option<&crate::registry::planned::Planned>) -> UploadWriter {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<std::result::Result<Bytes, OciDistributionError>>(2);
        let dst = self.remote.clone();
        let skip = at.map_or(0, |p| p.held);
        let start = at.map(|p| (p.location.clone(), p.recorder()));
        let task = runtime().spawn(async move {
            dst.prime().await;
            // One session and streamed PATCHes of `--chunk-size` bytes each (vendor/README.md:
            // no 4 MiB request loop, and no second hash of the blob in the client: the layer
            // writer has one). A PATCH without Content-Range appends to the session.
            let (location, recorder) = match start {
                Some((l, r)) => (l, Some(r)),
                None => {
                    let l = retry(&dst.cancel, "opening the upload", || async {
                        dst.client.begin_streamed_upload(&dst.reference).await
                    })
                    .await?;
                    (l, None)
                }
            };
            patch_in_chunks(&dst, location, rx, recorder.as_ref()).await
        });
        UploadWriter {
            buf: Vec::with_capacity(PIECE),
            tx: Some(tx),
            task: Some(task),
            written: 0,
            skip,
        }
    }

    /// Whether the blob `w` made is one the repository already has, asked (`HEAD`) only
    /// when all of it is still in memory (under one piece, nothing sent yet): then nothing
    /// more is sent and the session it opened is left unused. A small layer's digest is
    /// known only once it is made, so without this a repository filled by `push`, or a run
    /// with no records of its own (a fresh CI runner), would be sent every small layer again.
    pub(crate) fn already_there(&self, w: &UploadWriter, digest: &Digest) -> Result<bool> {
        if w.skip > 0 || w.written != w.buf.len() as u64 {
            return Ok(false);
        }
        self.remote.has_blob(digest)
    }

    /// The blob's end: the last PATCH, then the PUT that names its digest (the registry
    /// checks it against what it holds).
    pub(crate) fn finish(&self, w: UploadWriter, digest: &Digest, size: u64) -> Result<()> {
        let location = self.end(w, digest, size)?;
        self.commit_at(&location, digest)
    }

    /// The last PATCH sent and its answer: the session's location.
    pub(crate) fn end(&self, mut w: UploadWriter, digest: &Digest, size: u64) -> Result<String> {
        let what = self.remote.describe();
        let sent = w.send();
        w.tx.take(); // end of stream
        let task = w.task.take();
        sent.map_err(|e| Error::from_io(&e, format!("{what}: uploading blob {digest}: {e}")))?;
        let task = task.ok_or_else(|| Error::of(Kind::Internal, format!("{what}: no upload")))?;
        let r = block_on(task)
            .map_err(|e| Error::of(Kind::Internal, format!("{what}: upload task: {e}")))?;
        let location = r.map_err(|e| {
            self.remote
                .map_err(&what, &format!("uploading blob {digest}"), e)
        })?;
        if w.written != size {
            return Err(Error::input(format!(
                "{what}: blob {digest}: {} bytes were uploaded, expected {size}",
                w.written
            )));
        }
        Ok(location)
    }

    /// The `PUT` that commits the session at `location` as `digest` (tried again as other
    /// requests are: a 503 there would otherwise cost the whole blob).
    pub(crate) fn commit_at(&self, location: &str, digest: &Digest) -> Result<()> {
        let (dst, what) = (&self.remote, self.remote.describe());
        block_on(async {
            dst.prime().await;
            retry(&dst.cancel, &what, || async {
                dst.client
                    .finish_streamed_upload(location, &dst.reference, digest.as_str())
                    .await
            })
            .await
        })
        .map(|_| ())
        .map_err(|e| dst.map_err(&what, &format!("committing blob {digest}"), e))
    }
}
