//! The one graph copy: a bundle (a manifest, or an index of them) and its signature referrers
//! from any `Source` to any `Sink`. push, pull (layers into the blob cache), copy and the base
//! layers of `bundle` all go through here.
//!
//! The order is the safety rule: a manifest's blobs (layers, several at a time, then the
//! config), then the manifest, then its referrers; the root's tag moves last, only once
//! everything it names is there. Each digest is copied once per copy; a blob the sink has is
//! skipped, one that another repository of the same registry has is mounted; blobs stream
//! (never held whole in memory) and are verified as they are read. The library never prints:
//! progress goes to an observer.

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::media_type::{DOCKER_LIST_MEDIA_TYPE, INDEX_MEDIA_TYPE};
use crate::interrupt::Cancel;
use crate::store::referrers::{referrers_of, Referrer};
use crate::store::{BlobEvent, BlobRef, PutError, ReadFrom, Sent, Sink, Source};
use oci_spec::image::Descriptor;
use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blobs copied this many at a time (as dockerd, containerd and ggcr do, give or take).
pub const PARALLEL_BLOBS: usize = crate::registry::PARALLEL_BLOBS;

/// Progress callback of a copy: (blob, event), called from several threads.
pub type Observer<'a> = &'a (dyn Fn(&Digest, BlobEvent) + Sync);

/// A failure to read a blob of the source, in the caller's words.
pub type ReadError<'a> = &'a (dyn Fn(&Digest, io::Error) -> Error + Sync);

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions<'a> {
    /// The root's tag at the sink (None: stored by digest).
    pub tag: Option<&'a str>,
    /// Also copy the root's signature referrers (after the root).
    pub referrers: bool,
    /// Blobs in flight at once.
    pub parallel: usize,
    pub observer: Observer<'a>,
    /// None: "`source`: blob `digest`: `error`".
    pub read_error: Option<ReadError<'a>>,
    /// Cancelled on Ctrl-C: no further blob starts, a blob being copied stops at its next
    /// read, and the manifest (so the tag) is not written.
    pub cancel: Cancel,
}

fn no_progress(_: &Digest, _: BlobEvent) {}

impl Default for CopyOptions<'_> {
    fn default() -> Self {
        CopyOptions {
            tag: None,
            referrers: false,
            parallel: PARALLEL_BLOBS,
            observer: &no_progress,
            read_error: None,
            cancel: Cancel::default(),
        }
    }
}

/// What happened to one blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Uploaded,
    /// Uploaded, continuing a session of an earlier run that held this many bytes.
    Resumed(u64),
    Skipped,
    Mounted,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlobCounts {
    pub uploaded: usize,
    pub skipped: usize,
    pub mounted: usize,
    /// Of the uploaded, those that continued an interrupted upload session.
    pub resumed: usize,
}

/// A blob whose upload continued an earlier session, and the bytes the registry held of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResumedBlob {
    pub digest: String,
    pub at: u64,
}

/// What a copy did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// The root manifest's digest and size.
    pub digest: Option<Digest>,
    pub size: u64,
    /// The blobs of the graph (not those of referrers).
    pub blobs: BlobCounts,
    /// Bytes of the blobs copied (not skipped nor mounted), less those a continued upload
    /// session held.
    pub bytes: u64,
    /// Bytes continued upload sessions held (not sent again), and those blobs.
    pub bytes_resumed: u64,
    pub resumed: Vec<ResumedBlob>,
    /// Signature referrers copied.
    pub signatures: usize,
    /// Attestation referrers (provenance, ML-BOM) copied.
    pub attestations: usize,
    /// The referrers fallback tag a registry without the referrers API had updated.
    pub referrers_tag: Option<String>,
}

impl CopyReport {
    /// Count blobs as `copy_blobs` returns them.
    pub fn add(&mut self, done: &[(BlobRef, Outcome)]) {
        for (b, o) in done {
            match o {
                Outcome::Uploaded => {
                    self.blobs.uploaded += 1;
                    self.bytes += b.size;
                }
                Outcome::Resumed(at) => {
                    self.blobs.uploaded += 1;
                    self.blobs.resumed += 1;
                    self.bytes += b.size - (*at).min(b.size);
                    self.bytes_resumed += at;
                    self.resumed.push(ResumedBlob {
                        digest: b.digest.to_string(),
                        at: *at,
                    });
                }
                Outcome::Skipped => self.blobs.skipped += 1,
                Outcome::Mounted => self.blobs.mounted += 1,
            }
        }
    }
}

/// Copy the graph under `root` (whose raw manifest the caller read: `raw`) from `src` to
/// `dst`: the blobs of every image, each image manifest (by digest when under an index), the
/// root (tagged `opts.tag`), then, with `opts.referrers`, the root's signatures. The
/// signatures are read first: a source whose signatures cannot be read moves no tag.
pub fn copy_graph(
    src: &dyn Source,
    dst: &dyn Sink,
    root: &Descriptor,
    raw: &[u8],
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let digest = Digest::of(raw);
    let mut report = CopyReport {
        digest: Some(digest.clone()),
        size: raw.len() as u64,
        ..Default::default()
    };
    let referrers = if opts.referrers {
        referrers_of(src, &digest)?
    } else {
        Vec::new()
    };
    let mut done = HashSet::new();
    copy_node(src, dst, root, raw, opts.tag, opts, &mut report, &mut done)?;
    if !referrers.is_empty() {
        report.referrers_tag = copy_referrers(dst, &digest, &referrers)?;
        report.attestations = referrers.iter().filter(|r| r.is_attestation()).count();
        report.signatures = referrers.len() - report.attestations;
    }
    Ok(report)
}

fn is_index(mt: &str) -> bool {
    mt == INDEX_MEDIA_TYPE || mt == DOCKER_LIST_MEDIA_TYPE
}

/// Depth first: the children of `desc`, then `desc` itself.
#[allow(clippy::too_many_arguments)]
fn copy_node(
    src: &dyn Source,
    dst: &dyn Sink,
    desc: &Descriptor,
    raw: &[u8],
    tag: Option<&str>,
    opts: &CopyOptions,
    report: &mut CopyReport,
    done: &mut HashSet<Digest>,
) -> Result<()> {
    let what = src.describe();
    let digest = Digest::parse(desc.digest().as_ref()).map_err(Error::Input)?;
    let bad = |e: serde_json::Error| Error::input(format!("{what}: manifest {digest}: {e}"));
    if is_index(desc.media_type().as_ref()) {
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(raw).map_err(bad)?;
        for child in index.manifests() {
            let d = Digest::parse(child.digest().as_ref()).map_err(Error::Input)?;
            if !done.insert(d.clone()) {
                continue;
            }
            let child_raw = src.read_manifest(&d, child.size())?;
            if child_raw.len() as u64 != child.size() {
                return Err(Error::input(format!(
                    "{what}: manifest {d} is {} bytes, its index entry says {}",
                    child_raw.len(),
                    child.size()
                )));
            }
            copy_node(src, dst, child, &child_raw, None, opts, report, done)?;
        }
    } else {
        let m: oci_spec::image::ImageManifest = serde_json::from_slice(raw).map_err(bad)?;
        let config = BlobRef::of(m.config())?;
        let layers: Vec<BlobRef> = m
            .layers()
            .iter()
            .map(BlobRef::of)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|b| b.digest != config.digest && done.insert(b.digest.clone()))
            .collect();
        // Layers several at a time, then the config.
        report.add(&copy_blobs(src, dst, &layers, opts)?);
        if done.insert(config.digest.clone()) {
            report.add(&copy_blobs(src, dst, &[config], opts)?);
        }
    }
    // The manifest, last (not after a Ctrl-C: the tag must not move).
    if opts.cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    dst.put_manifest(desc, raw, tag)
}

/// Store signature referrers of `subject` (their blobs, then the manifests and, on a registry
/// without the referrers API, the fallback tag). Their blobs are read from where they are
/// held (memory, or an attestation envelope's temp file), each digest once, those the sink
/// has skipped.
pub fn copy_referrers(
    dst: &dyn Sink,
    subject: &Digest,
    referrers: &[Referrer],
) -> Result<Option<String>> {
    let mut seen = HashSet::new();
    for b in referrers.iter().flat_map(|r| r.blobs.iter()) {
        if !seen.insert(b.digest.clone()) {
            continue;
        }
        let r = b.blob_ref();
        if dst.has_blob(&r)? {
            continue;
        }
        let open = || -> Result<crate::store::BlobRead<'_>> {
            Ok(Box::new(crate::format::digest::VerifyReader::new(
                b.open(),
                r.digest.clone(),
                r.size,
            )))
        };
        dst.put_blob(&r, &open, &|_| {}).map_err(|e| match e {
            PutError::Open(e) | PutError::Sink(e) => e,
            PutError::Read(e) => {
                Error::from_io(&e, format!("storing referrer blob {}: {e}", r.digest))
            }
        })?;
    }
    dst.put_referrers(subject, referrers)
}

/// Copy blobs (each digest once), `opts.parallel` at a time; returns what happened to each,
/// in order. The first failure stops the others from starting new blobs and is returned.
pub fn copy_blobs(
    src: &dyn Source,
    dst: &dyn Sink,
    blobs: &[BlobRef],
    opts: &CopyOptions,
) -> Result<Vec<(BlobRef, Outcome)>> {
    let mut seen = HashSet::new();
    let todo: Vec<&BlobRef> = blobs.iter().filter(|b| seen.insert(&b.digest)).collect();
    let workers = opts.parallel.max(1).min(todo.len());
    if workers <= 1 {
        return todo
            .into_iter()
            .map(|b| Ok((b.clone(), copy_blob(src, dst, b, opts)?)))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Outcome>>>> =
        Mutex::new((0..todo.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = todo.get(i) else {
                    return;
                };
                let r = copy_blob(src, dst, b, opts);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::with_capacity(todo.len());
    for (b, r) in todo.into_iter().zip(results) {
        match r {
            Some(r) => out.push((b.clone(), r?)),
            None => return Err(Error::Interrupted), // not started after a failure: unreachable
        }
    }
    Ok(out)
}

/// One blob: skip it if the sink has it, mount it if the sink can, else stream it across.
fn copy_blob(src: &dyn Source, dst: &dyn Sink, b: &BlobRef, opts: &CopyOptions) -> Result<Outcome> {
    if opts.cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    let event = |e| (opts.observer)(&b.digest, e);
    let exists = dst.has_blob(b)?;
    event(BlobEvent::Start(b.size));
    if exists {
        event(BlobEvent::Done("skipped"));
        return Ok(Outcome::Skipped);
    }
    if let Some(from) = src.origin() {
        if dst.mount_blob(b, &from)? {
            event(BlobEvent::Done("mounted"));
            return Ok(Outcome::Mounted);
        }
    }
    let open = |from: ReadFrom| -> Result<crate::store::BlobRead<'_>> {
        let r = match from {
            ReadFrom::Start => src.open_blob_verified(&b.digest, b.size)?,
            ReadFrom::Verified(from) => src.open_blob_verified_from(&b.digest, b.size, from)?,
            ReadFrom::Offset(at) => src.open_blob_at(&b.digest, b.size, at)?,
        };
        Ok(Box::new(opts.cancel.reader(r)))
    };
    // What a continued upload session held, when the upload that succeeded was one.
    let resumed = AtomicU64::new(0);
    let sent = |s| {
        event(match s {
            Sent::Bytes(n) => BlobEvent::Bytes(n),
            Sent::Restart(n) => {
                resumed.store(0, Ordering::Relaxed);
                BlobEvent::Retry(n)
            }
            Sent::Resumed(n) => {
                resumed.store(n, Ordering::Relaxed);
                BlobEvent::Resumed(n)
            }
        })
    };
    match dst.put_blob_resumable(b, &open, &sent) {
        Ok(()) => {
            event(BlobEvent::Done("uploaded"));
            Ok(match resumed.load(Ordering::Relaxed) {
                0 => Outcome::Uploaded,
                n => Outcome::Resumed(n),
            })
        }
        Err(PutError::Open(e) | PutError::Sink(e)) => Err(e),
        Err(PutError::Read(e)) => Err(match opts.read_error {
            Some(f) => f(&b.digest, e),
            None if crate::registry::errors::refused_midway(&e) => Error::from_io(
                &e,
                format!(
                    "{}: blob {}: the registry stopped answering midway (connection refused when reconnecting: {e}). Is it still running? Run the command again once it answers: it continues from what arrived (a pull keeps it in the cache, a push in the registry's upload session)",
                    src.describe(),
                    b.digest
                ),
            ),
            None => Error::from_io(&e, format!("{}: blob {}: {e}", src.describe(), b.digest)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::media_type::{IMAGE_CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
    use crate::store::memory::MemoryStore;
    use crate::store::{BlobRead, Opener};
    use std::sync::atomic::AtomicUsize;

    /// Wraps a memory store and logs every call; a sink can be told to fail a given put.
    #[derive(Default)]
    struct Counting {
        inner: MemoryStore,
        log: Mutex<Vec<String>>,
        /// Fail the n-th `put_blob` (1-based); 0: never.
        fail_put: usize,
        puts: AtomicUsize,
    }

    impl Counting {
        fn note(&self, s: String) {
            self.log.lock().unwrap().push(s);
        }
        fn calls(&self, prefix: &str) -> Vec<String> {
            let log = self.log.lock().unwrap();
            log.iter()
                .filter(|l| l.starts_with(prefix))
                .cloned()
                .collect()
        }
        fn count(&self, prefix: &str, d: &Digest) -> usize {
            self.calls(prefix)
                .iter()
                .filter(|l| l.ends_with(d.as_str()))
                .count()
        }
    }

    impl Source for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn index_bytes(&self) -> Result<Vec<u8>> {
            self.inner.index_bytes()
        }
        fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>> {
            self.note(format!("open {digest}"));
            self.inner.open_blob(digest)
        }
    }

    impl Sink for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
            self.note(format!("has {}", blob.digest));
            Sink::has_blob(&self.inner, blob)
        }
        fn put_blob(
            &self,
            blob: &BlobRef,
            open: &Opener<'_>,
            sent: &(dyn Fn(Sent) + Sync),
        ) -> std::result::Result<(), PutError> {
            let n = self.puts.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.fail_put {
                return Err(PutError::Sink(Error::input("the sink fails")));
            }
            self.inner.put_blob(blob, open, sent)?;
            self.note(format!("put {}", blob.digest));
            Ok(())
        }
        fn put_manifest(&self, desc: &Descriptor, raw: &[u8], tag: Option<&str>) -> Result<()> {
            self.note(format!("manifest {:?} {}", tag, desc.digest()));
            self.inner.put_manifest(desc, raw, tag)
        }
        fn put_referrers(&self, subject: &Digest, r: &[Referrer]) -> Result<Option<String>> {
            self.note(format!("referrers {subject}"));
            self.inner.put_referrers(subject, r)
        }
    }

    /// An image in `store`: config + layers (a digest may repeat); returns its descriptor
    /// and raw manifest.
    fn image(store: &MemoryStore, layers: &[&[u8]]) -> (Descriptor, Vec<u8>) {
        let desc = |b: &BlobRef, mt: &str| serde_json::json!({"mediaType": mt, "digest": b.digest.as_str(), "size": b.size});
        let config = store.insert(format!("{{\"layers\":{}}}", layers.len()).into_bytes());
        let layers: Vec<_> = layers
            .iter()
            .map(|l| {
                desc(
                    &store.insert(l.to_vec()),
                    "application/vnd.oci.image.layer.v1.tar",
                )
            })
            .collect();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": desc(&config, IMAGE_CONFIG_MEDIA_TYPE),
            "layers": layers,
        });
        let raw = serde_json::to_vec(&m).unwrap();
        let b = store.insert(raw.clone());
        let d = serde_json::from_value(desc(&b, MANIFEST_MEDIA_TYPE)).unwrap();
        (d, raw)
    }

    fn layers_of(raw: &[u8]) -> Vec<BlobRef> {
        let m: oci_spec::image::ImageManifest = serde_json::from_slice(raw).unwrap();
        std::iter::once(m.config())
            .chain(m.layers())
            .map(|d| BlobRef::of(d).unwrap())
            .collect()
    }

    fn tagged<'a>(tag: &'a str) -> CopyOptions<'a> {
        CopyOptions {
            tag: Some(tag),
            ..CopyOptions::default()
        }
    }

    #[test]
    fn each_blob_is_read_once_and_stored_once_and_the_manifest_comes_last() {
        let src = Counting::default();
        let big = vec![7u8; 3 << 20];
        let (root, raw) = image(&src.inner, &[b"a", &big, b"a", b"c"]);
        let dst = Counting::default();
        let r = copy_graph(&src, &dst, &root, &raw, &tagged("1")).unwrap();
        let blobs = layers_of(&raw);
        for b in &blobs {
            assert_eq!(src.count("open", &b.digest), 1, "{}", b.digest);
            assert_eq!(dst.count("put", &b.digest), 1, "{}", b.digest);
            assert_eq!(dst.count("has", &b.digest), 1, "{}", b.digest);
            assert_eq!(dst.inner.get(&b.digest).unwrap().len() as u64, b.size);
        }
        assert_eq!(r.blobs.uploaded, 4); // config + 3 distinct layers
        let distinct: HashSet<&BlobRef> = blobs.iter().collect();
        assert_eq!(r.bytes, distinct.iter().map(|b| b.size).sum::<u64>());
        let log = dst.log.lock().unwrap().clone();
        assert_eq!(
            log.last().unwrap(),
            &format!("manifest Some(\"1\") {}", root.digest())
        );
        // The config after the layers.
        let config_put = log
            .iter()
            .position(|l| l == &format!("put {}", blobs[0].digest));
        let last_layer_put = log
            .iter()
            .rposition(|l| l.starts_with("put ") && !l.ends_with(blobs[0].digest.as_str()));
        assert!(config_put > last_layer_put, "{log:?}");
        assert_eq!(dst.inner.entries().len(), 1);
    }

    #[test]
    fn blobs_the_sink_has_are_skipped_unread() {
        let src = Counting::default();
        let (root, raw) = image(&src.inner, &[b"one", b"two"]);
        let dst = Counting::default();
        let two = dst.inner.insert(b"two".to_vec());
        let r = copy_graph(&src, &dst, &root, &raw, &tagged("1")).unwrap();
        assert_eq!(src.count("open", &two.digest), 0);
        assert_eq!(dst.count("put", &two.digest), 0);
        assert_eq!(
            r.blobs,
            BlobCounts {
                uploaded: 2,
                skipped: 1,
                mounted: 0,
                resumed: 0,
            }
        );
    }

    #[test]
    fn an_interrupted_copy_resumes_with_what_is_missing() {
        let src = Counting::default();
        let (root, raw) = image(&src.inner, &[b"l1", b"l2", b"l3", b"l4"]);
        let dst = Counting {
            fail_put: 3,
            ..Default::default()
        };
        let opts = CopyOptions {
            tag: Some("1"),
            parallel: 1,
            ..CopyOptions::default()
        };
        let err = copy_graph(&src, &dst, &root, &raw, &opts).unwrap_err();
        assert!(err.to_string().contains("the sink fails"), "{err}");
        assert!(
            dst.calls("manifest").is_empty(),
            "no manifest after a failure"
        );
        let stored = dst.calls("put").len();
        assert_eq!(stored, 2);
        // Again, into the same sink (now healthy): only what is missing moves.
        let dst = Counting {
            inner: dst.inner,
            ..Default::default()
        };
        let r = copy_graph(&src, &dst, &root, &raw, &tagged("1")).unwrap();
        assert_eq!(r.blobs.skipped, stored);
        assert_eq!(r.blobs.uploaded, 5 - stored);
        assert_eq!(dst.calls("manifest").len(), 1);
    }

    #[test]
    fn a_cancelled_token_stops_the_copy_before_the_manifest() {
        let src = Counting::default();
        let big = vec![9u8; 3 << 20];
        let (root, raw) = image(&src.inner, &[&big, b"l2"]);
        let dst = Counting::default();
        let cancel = Cancel::new();
        // cancelled while the first blob streams: its read fails, nothing after it starts
        let on_bytes = |_: &Digest, e: BlobEvent| {
            if matches!(e, BlobEvent::Bytes(_)) {
                cancel.cancel();
            }
        };
        let opts = CopyOptions {
            tag: Some("1"),
            parallel: 1,
            observer: &on_bytes,
            cancel: cancel.clone(),
            ..CopyOptions::default()
        };
        let err = copy_graph(&src, &dst, &root, &raw, &opts).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err:?}");
        assert!(dst.calls("manifest").is_empty(), "the tag must not move");
        assert!(dst.calls("put").len() <= 1, "{:?}", dst.calls("put"));
        // a token nobody cancelled copies it all
        copy_graph(&src, &Counting::default(), &root, &raw, &tagged("1")).unwrap();
    }

    #[test]
    fn an_index_copies_each_image_before_it_and_shared_blobs_once() {
        let src = Counting::default();
        let (a, _) = image(&src.inner, &[b"shared", b"amd64"]);
        let (b, _) = image(&src.inner, &[b"shared", b"arm64"]);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [a, b],
        });
        let raw = serde_json::to_vec(&index).unwrap();
        let ib = src.inner.insert(raw.clone());
        let root: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": INDEX_MEDIA_TYPE, "digest": ib.digest.as_str(), "size": ib.size,
        }))
        .unwrap();
        let dst = Counting::default();
        copy_graph(&src, &dst, &root, &raw, &tagged("multi")).unwrap();
        let shared = Digest::of(b"shared");
        assert_eq!(src.count("open", &shared), 1);
        assert_eq!(dst.count("put", &shared), 1);
        let manifests = dst.calls("manifest");
        assert_eq!(
            manifests,
            vec![
                format!("manifest None {}", a.digest()),
                format!("manifest None {}", b.digest()),
                format!("manifest Some(\"multi\") {}", root.digest()),
            ]
        );
    }

    #[test]
    fn signatures_follow_the_root() {
        let src = Counting::default();
        let (root, raw) = image(&src.inner, &[b"model"]);
        let subject = Digest::of(&raw);
        // A signature referrer of the root, listed in the source's index.
        let sig_config = src.inner.insert(b"{}".to_vec());
        let sig_layer = src.inner.insert(b"bundle".to_vec());
        let sig = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": crate::format::media_type::BUNDLE_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sig_config.digest.as_str(), "size": sig_config.size},
            "layers": [{"mediaType": crate::format::media_type::BUNDLE_MEDIA_TYPE, "digest": sig_layer.digest.as_str(), "size": sig_layer.size}],
            "subject": {"mediaType": MANIFEST_MEDIA_TYPE, "digest": subject.as_str(), "size": raw.len()},
        });
        let sig_raw = serde_json::to_vec(&sig).unwrap();
        let r = Referrer {
            manifest: sig_raw,
            blobs: vec![],
        };
        src.inner.put_referrers(&subject, &[r]).unwrap();
        let dst = Counting::default();
        let opts = CopyOptions {
            referrers: true,
            ..tagged("1")
        };
        let report = copy_graph(&src, &dst, &root, &raw, &opts).unwrap();
        assert_eq!(report.signatures, 1);
        assert_eq!(report.blobs.uploaded, 2); // the image's, not the signature's
        let log = dst.log.lock().unwrap().clone();
        let m = log.iter().position(|l| l.starts_with("manifest")).unwrap();
        let refs = log.iter().position(|l| l.starts_with("referrers")).unwrap();
        assert!(m < refs, "{log:?}");
        assert!(dst.inner.get(&sig_layer.digest).is_some());
        assert_eq!(dst.inner.entries().len(), 2);
    }
}
