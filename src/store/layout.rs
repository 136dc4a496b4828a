//! OCI image layouts: a directory (`oci-layout`, `index.json`, `blobs/sha256/…`) or an archive
//! (a tar of that directory). Writing goes to a temp location beside the output and is renamed
//! at the end; reading verifies every blob against its digest and size.

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::format::json;
use crate::format::media_type::MAX_MANIFEST_BYTES;
use oci_spec::image::Descriptor;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub use crate::store::archive::ArchiveFile;
pub use crate::store::resolve::*;

/// `resolve::resolve_image` for callers that hold a `&mut` (`cli/sign.rs`); reading needs
/// only `&self`. Goes once they pass `&src`.
pub fn resolve_image(src: &mut dyn Source, tag: Option<&str>, doing: &str) -> Result<Resolved> {
    crate::store::resolve::resolve_image(src, tag, doing)
}
pub use crate::store::Source;
use crate::store::{archive::write_archive, BlobRead, BlobRef, Opener, PutError, Sent, Sink};
use std::sync::Mutex;

/// Where built blobs go: a layout directory now, a registry upload later.
pub trait BlobSink {
    type Writer: Write + Send;
    /// Start a new blob of unknown digest.
    fn begin(&mut self) -> Result<Self::Writer>;
    /// Seal a blob written through `begin`.
    fn commit(&mut self, w: Self::Writer, digest: &Digest, size: u64) -> Result<()>;
    /// Store a small blob held in memory.
    fn put(&mut self, data: &[u8]) -> Result<Digest> {
        let d = Digest::of(data);
        let mut w = self.begin()?;
        w.write_all(data).map_err(|e| Error::Io {
            context: "writing a blob".into(),
            source: e,
        })?;
        self.commit(w, &d, data.len() as u64)?;
        Ok(d)
    }
    /// Store the image manifest's bytes (a layout keeps them as a blob; a registry gets the
    /// manifest through its own endpoint, so it overrides this to send nothing).
    fn put_manifest_blob(&mut self, data: &[u8]) -> Result<Digest> {
        self.put(data)
    }
    /// Store a blob read from `r` (its digest and size known: a referrer's blob, perhaps in a
    /// temp file), verified at its end.
    fn put_reader(&mut self, r: &mut dyn std::io::Read, digest: &Digest, size: u64) -> Result<()> {
        let mut w = self.begin()?;
        let mut v = crate::format::digest::VerifyReader::new(r, digest.clone(), size);
        std::io::copy(&mut v, &mut w)
            .map_err(|e| Error::from_io(&e, format!("writing blob {digest}: {e}")))?;
        self.commit(w, digest, size)
    }
    /// Where a file that is its own blob (a raw layer) can be put by the kernel (a reflink,
    /// `copy_file_range`) or linked, rather than written through `begin`; None: stream it.
    fn placer(&self) -> Option<crate::store::place::Placer> {
        None
    }
    /// A registry's: raw layers hashed first and skipped or uploaded resumably, tar layers
    /// recorded so that the next run skips them (`store::resumable`); None: every blob goes
    /// through `begin`.
    fn resumable(&self) -> Option<crate::store::resumable::Resumable> {
        None
    }
}

/// Writes blobs into `<dir>/blobs/sha256/` (temp file, then rename to the digest).
pub struct LayoutWriter {
    dir: PathBuf,
    blobs: PathBuf,
    /// index.json's entries recorded by the copy (`Sink`), written by `finish_index`.
    entries: Mutex<Vec<Descriptor>>,
}

/// A blob smaller than this is left to the kernel's writeback; past it, the writeback of
/// what was written is started as the blob grows (`offload::Writeback`).
const QUIET_BLOB: u64 = 64 << 20;

/// A blob being written into a layout. Past `QUIET_BLOB`, its writeback starts as it grows, as
/// a pull writes its files (`offload::Writeback`): the page cache never fills with dirty pages for the kernel to
/// throttle on. 4 GiB of shards bundled in 2.7 s with it, 3.8–4.6 s without (docs/performance.md).
pub struct BlobFile {
    file: BufWriter<tempfile::NamedTempFile>,
    kick: crate::offload::Writeback,
    written: u64,
}

impl Write for BlobFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        use crate::offload::AfterWrite;
        self.kick
            .wrote(self.file.get_mut().as_file_mut(), self.written, n)?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl LayoutWriter {
    /// Create an empty layout in `dir` (which must exist and be empty).
    pub fn create(dir: &Path) -> Result<Self> {
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).ctx("creating", &blobs)?;
        fs::write(
            dir.join("oci-layout"),
            b"{\"imageLayoutVersion\":\"1.0.0\"}",
        )
        .ctx("writing", &dir.join("oci-layout"))?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
            blobs,
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Write `index.json` listing `manifests`.
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> Result<()> {
        write_index_file(&self.dir, manifests)
    }

    /// The entries recorded by the copy so far.
    pub fn entries(&self) -> Vec<Descriptor> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Write `dir/index.json` listing `manifests` (a layout being staged: nothing reads it yet).
pub fn write_index_file(dir: &Path, manifests: Vec<Descriptor>) -> Result<()> {
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(oci_spec::image::MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::input(format!("building index.json: {e}")))?;
    let p = dir.join("index.json");
    fs::write(&p, json::to_canonical_bytes(&index)).ctx("writing", &p)
}

impl LayoutWriter {
    /// Write `index.json` listing what the copy stored: the tagged manifests, then the
    /// signature referrers.
    pub fn finish_index(&self) -> Result<()> {
        self.write_index(self.entries())
    }

    fn add_entry(&self, d: Descriptor) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(d);
    }

    fn put_bytes(&self, data: &[u8]) -> Result<()> {
        write_bytes_file(&self.blobs, data)
    }
}

/// Add referrers to the layout directory `dir` (`referrers::add_to_local`): the blobs it lacks
/// or holds damaged, then index.json (a temp file renamed over it) listing them. Returns how
/// many entries were added.
pub fn add_referrers(dir: &Path, refs: &[crate::store::referrers::Referrer]) -> Result<usize> {
    let src = open(dir)?;
    for b in crate::store::referrers::blobs_to_write(src.as_ref(), refs) {
        write_referrer_blob(&dir.join("blobs/sha256"), &b)?;
    }
    let listed =
        crate::store::referrers::index_listing(&src.describe(), &src.index_bytes()?, refs)?;
    let Some((index, added)) = listed else {
        return Ok(0);
    };
    let index_path = dir.join("index.json");
    let tmp = tempfile::NamedTempFile::new_in(dir).ctx("writing in", dir)?;
    fs::write(tmp.path(), index).ctx("writing", tmp.path())?;
    tmp.persist(&index_path).map_err(|e| Error::Io {
        context: format!("writing {}", index_path.display()),
        source: e.error,
    })?;
    Ok(added)
}

/// Store a referrer's blob (in memory or a temp file) into `dir`, as `write_blob_file` does.
pub(crate) fn write_referrer_blob(dir: &Path, b: &crate::store::referrers::Blob) -> Result<()> {
    let r = b.blob_ref();
    let open = || Ok(b.open());
    write_blob_file(dir, &r, &open, &|_| {}).map_err(|e| match e {
        PutError::Open(e) | PutError::Sink(e) => e,
        PutError::Read(e) => Error::Io {
            context: format!("writing blob {}", r.digest),
            source: e,
        },
    })
}

/// Store a small blob held in memory into `dir` (temp file, then rename), as
/// `write_blob_file` does.
pub(crate) fn write_bytes_file(dir: &Path, data: &[u8]) -> Result<()> {
    let b = BlobRef {
        digest: Digest::of(data),
        size: data.len() as u64,
    };
    let open = || Ok(Box::new(data) as BlobRead<'_>);
    write_blob_file(dir, &b, &open, &|_| {}).map_err(|e| match e {
        PutError::Open(e) | PutError::Sink(e) => e,
        PutError::Read(e) => Error::Io {
            context: format!("writing blob {}", b.digest),
            source: e,
        },
    })
}

/// The layout directory as the target of a copy.
impl Sink for LayoutWriter {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
    fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
        Ok(self.blobs.join(blob.digest.hex()).is_file())
    }
    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        write_blob_file(&self.blobs, blob, open, sent)
    }
    /// Tagged: listed in index.json with the tag as its ref.name.
    fn put_manifest(&self, desc: &Descriptor, raw: &[u8], tag: Option<&str>) -> Result<()> {
        self.put_bytes(raw)?;
        if let Some(t) = tag {
            self.add_entry(with_ref_name(desc, t));
        }
        Ok(())
    }
    /// Listed in index.json (as `bundle --sign` does).
    fn put_referrers(
        &self,
        _subject: &Digest,
        referrers: &[crate::store::referrers::Referrer],
    ) -> Result<Option<String>> {
        for r in referrers {
            self.put_bytes(&r.manifest)?;
            self.add_entry(r.oci_descriptor()?);
        }
        Ok(None)
    }
}

/// Stream a blob into `dir` (a temp file there, renamed to the digest once the verified
/// reader reached its end with the size expected). Used by the layout and the blob cache.
pub(crate) fn write_blob_file(
    dir: &Path,
    blob: &BlobRef,
    open: &Opener<'_>,
    sent: &(dyn Fn(Sent) + Sync),
) -> std::result::Result<(), PutError> {
    let digest = &blob.digest;
    fs::create_dir_all(dir).ctx("creating", dir)?;
    let mut r = open().map_err(PutError::Open)?;
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("creating a blob in", dir)?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp);
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        // (a cancelled copy fails the read: the copy hands out readers of its token)
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PutError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(|e| Error::Io {
            context: format!("writing blob {digest}"),
            source: e,
        })?;
        n_total += n as u64;
        sent(Sent::Bytes(n as u64));
    }
    if n_total != blob.size {
        return Err(PutError::Read(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{n_total} bytes, expected {}", blob.size),
        )));
    }
    let tmp = w.into_inner().map_err(|e| Error::Io {
        context: format!("writing blob {digest}"),
        source: e.into_error(),
    })?;
    let dest = dir.join(digest.hex());
    tmp.persist(&dest).map_err(|e| Error::Io {
        context: format!("storing blob {}", dest.display()),
        source: e.error,
    })?;
    Ok(())
}

impl LayoutWriter {
    /// Store an OCI signature's blobs and return its index.json descriptor (no tag: it is a
    /// referrer of the manifest named in its `subject`).
    pub fn add_signature(
        &mut self,
        sig: &crate::format::signature::OciSignature,
    ) -> Result<Descriptor> {
        self.put(&sig.config)?;
        self.put(&sig.bundle)?;
        self.put(&sig.manifest)?;
        Ok(signature_descriptor(sig))
    }
}

pub fn signature_descriptor(sig: &crate::format::signature::OciSignature) -> Descriptor {
    let mut d = Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        sig.manifest.len() as u64,
        crate::format::digest::oci_digest(&sig.digest),
    );
    d.set_artifact_type(Some(oci_spec::image::MediaType::Other(
        crate::format::media_type::BUNDLE_MEDIA_TYPE.into(),
    )));
    d
}

/// `desc` as index.json lists it under `tag` (its `org.opencontainers.image.ref.name`).
pub fn with_ref_name(desc: &Descriptor, tag: &str) -> Descriptor {
    let mut d = desc.clone();
    let mut a = d.annotations().clone().unwrap_or_default();
    a.insert(
        crate::format::annotations::REF_NAME.to_string(),
        tag.to_string(),
    );
    d.set_annotations(Some(a));
    d
}

/// Is this index entry an attestation referrer (provenance, ML-BOM: `attest`)?
pub fn is_attestation(d: &Descriptor) -> bool {
    d.artifact_type().as_ref().is_some_and(|a| {
        crate::format::attestation::AttestationKind::of_artifact_type(a.as_ref()).is_some()
    })
}

/// Is this index entry a referrer (a signature or an attestation), not a bundle to resolve?
pub fn is_referrer(d: &Descriptor) -> bool {
    is_signature(d) || is_attestation(d)
}

/// Is this index entry a signature referrer (not a bundle to resolve)?
pub fn is_signature(d: &Descriptor) -> bool {
    d.artifact_type()
        .as_ref()
        .is_some_and(|a| a.to_string() == crate::format::media_type::BUNDLE_MEDIA_TYPE)
}

impl BlobSink for LayoutWriter {
    type Writer = BlobFile;

    fn placer(&self) -> Option<crate::store::place::Placer> {
        Some(crate::store::place::Placer::new(&self.blobs))
    }

    fn begin(&mut self) -> Result<BlobFile> {
        let f = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.blobs)
            .ctx("creating a blob in", &self.blobs)?;
        Ok(BlobFile {
            // Below the 256 KiB chunks of a threaded layer writer (`offload`), which then go
            // to the file without a copy here; small writes are still gathered.
            file: BufWriter::with_capacity(128 << 10, f),
            kick: crate::offload::Writeback::starting_at(QUIET_BLOB),
            written: 0,
        })
    }

    fn commit(&mut self, w: BlobFile, digest: &Digest, _size: u64) -> Result<()> {
        let BlobFile { file, mut kick, .. } = w;
        let mut tmp = file.into_inner().map_err(|e| Error::Io {
            context: format!("writing blob {digest}"),
            source: e.into_error(),
        })?;
        crate::offload::AfterWrite::done(&mut kick, tmp.as_file_mut()).map_err(|e| Error::Io {
            context: format!("writing blob {digest}"),
            source: e,
        })?;
        let dest = self.blobs.join(digest.hex());
        tmp.persist(&dest).map_err(|e| Error::Io {
            context: format!("storing blob {}", dest.display()),
            source: e.error,
        })?;
        Ok(())
    }
}

/// A staged output: built in a hidden temp directory beside the destination, moved into
/// place by `commit`. Dropped without commit, it removes itself.
///
/// The form comes from the name: `.tar` an OCI archive, anything else a layout directory; a
/// name that promises a compressed file (`.tar.gz`, `.tgz`, `.zst`, …) is refused rather than
/// written as a directory (or as a plain tar under a misleading name).
pub struct Staging {
    dest: PathBuf,
    archive: bool,
    tmp: Option<tempfile::TempDir>,
    /// Parent directories this staging created (outermost last), removed again on failure.
    created: Vec<PathBuf>,
}

/// `-o model.tar.gz`: mlart writes no compressed archive (its layers are compressed already,
/// and OCI tools read an archive as a plain tar), so such a name is refused with the choices.
fn refuse_compressed_name(dest: &Path) -> Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let compressed = [".gz", ".tgz", ".zst", ".zstd", ".xz", ".bz2", ".zip", ".7z"];
    if let Some(ext) = compressed.iter().find(|e| name.ends_with(*e)) {
        return Err(Error::usage(format!(
            "{}: mlart does not write {ext} files. The output form comes from the name: a path ending in `.tar` is an OCI archive (an uncompressed tar whose layers are compressed already: what skopeo, oras and `mlart copy` read), any other path an OCI layout directory. Use `-o {}` (or `oci-archive:FILE` for an archive under any name), or a directory path such as `-o {}`",
            dest.display(),
            with_name(dest, &name, ".tar"),
            with_name(dest, &name, ".oci"),
        )));
    }
    Ok(())
}

/// `dest` with its compressed suffix(es) replaced by `ext`, for the message.
fn with_name(dest: &Path, name: &str, ext: &str) -> String {
    let stem = name
        .trim_end_matches(".gz")
        .trim_end_matches(".tgz")
        .trim_end_matches(".zst")
        .trim_end_matches(".zstd")
        .trim_end_matches(".xz")
        .trim_end_matches(".bz2")
        .trim_end_matches(".zip")
        .trim_end_matches(".7z")
        .trim_end_matches(".tar");
    dest.with_file_name(format!("{stem}{ext}"))
        .display()
        .to_string()
}

impl Staging {
    /// `dest` ending in `.tar` is an archive, anything else a layout directory.
    pub fn new(dest: &Path) -> Result<Self> {
        Staging::with_form(dest, None)
    }

    /// `archive`: Some(true) for an archive whatever the name (`oci-archive:FILE`), Some(false)
    /// for a layout directory (`oci:DIR`), None: by the name (`.tar` is an archive).
    pub fn with_form(dest: &Path, archive: Option<bool>) -> Result<Self> {
        if archive.is_none() {
            refuse_compressed_name(dest)?;
        }
        let archive = archive.unwrap_or_else(|| dest.extension().is_some_and(|e| e == "tar"));
        if dest.exists() {
            if archive && dest.is_dir() {
                return Err(Error::input(format!(
                    "{} is a directory: give an archive path that is not one",
                    dest.display()
                )));
            }
            // Replace an OCI archive (or an empty file), never some other file.
            let replaceable_file = dest
                .metadata()
                .is_ok_and(|m| m.is_file() && (m.len() == 0 || ArchiveFile::open(dest).is_ok()));
            if archive && !dest.is_dir() && !replaceable_file {
                return Err(Error::input(format!(
                    "{} exists and is not an OCI archive: mlart will not replace it. Choose another output path, or remove it",
                    dest.display()
                )));
            }
            let is_layout = dest.is_dir() && dest.join("oci-layout").is_file();
            if !archive && !is_layout {
                return Err(Error::input(format!(
                    "{} exists and is not an OCI layout: mlart will not replace it. Choose another `-o`, or remove it",
                    dest.display()
                )));
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut created = Vec::new();
        let mut p = parent.as_path();
        while !p.as_os_str().is_empty() && !p.exists() {
            created.push(p.to_path_buf());
            p = p.parent().unwrap_or(Path::new(""));
        }
        fs::create_dir_all(&parent).ctx("creating", &parent)?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let tmp = crate::interrupt::temp_dir_in(&parent, "tmp", &name)
            .ctx("creating a temp directory in", &parent)?;
        Ok(Staging {
            dest: dest.to_path_buf(),
            archive,
            tmp: Some(tmp),
            created,
        })
    }

    /// The temp layout directory to write into.
    pub fn layout_dir(&self) -> PathBuf {
        self.tmp
            .as_ref()
            .expect("staging in use")
            .path()
            .join("layout")
    }

    pub fn is_archive(&self) -> bool {
        self.archive
    }

    /// Move the finished layout (or an archive of it) to the destination.
    pub fn commit(mut self) -> Result<()> {
        let tmp = self.tmp.take().expect("staging in use");
        let layout = tmp.path().join("layout");
        if self.archive {
            let part = tmp.path().join("archive.tar");
            write_archive(&layout, &part)?;
            fs::rename(&part, &self.dest).ctx("moving the archive to", &self.dest)?;
        } else if self.dest.exists() {
            // Swap: old layout aside, new one in, old one removed.
            let old = tmp.path().join("old");
            fs::rename(&self.dest, &old).ctx("moving aside the old layout", &self.dest)?;
            if let Err(e) = fs::rename(&layout, &self.dest) {
                let _ = fs::rename(&old, &self.dest);
                return Err(Error::Io {
                    context: format!("moving the layout to {}", self.dest.display()),
                    source: e,
                });
            }
        } else {
            fs::rename(&layout, &self.dest).ctx("moving the layout to", &self.dest)?;
        }
        drop(tmp); // removes what is left (the old layout)
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            let _ = t.close();
            // Not committed: also remove the (empty) directories made for the output.
            for d in &self.created {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

/// An OCI layout directory.
pub struct LayoutDir {
    root: PathBuf,
}

/// Open a layout directory or an archive.
pub fn open(path: &Path) -> Result<Box<dyn Source>> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Error::input(format!(
                "{} does not exist: give an OCI layout directory or an OCI archive (.tar)",
                path.display()
            ))
        } else {
            Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }
        }
    })?;
    if meta.is_dir() {
        if !path.join("oci-layout").is_file() {
            return Err(Error::input(format!(
                "{} is not an OCI layout (no oci-layout file)",
                path.display()
            )));
        }
        Ok(Box::new(LayoutDir {
            root: path.to_path_buf(),
        }))
    } else {
        Ok(Box::new(ArchiveFile::open(path)?))
    }
}

impl Source for LayoutDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }
    fn skopeo_name(&self, tag: Option<&str>) -> Option<String> {
        let tag = tag.map(|t| format!(":{t}")).unwrap_or_default();
        Some(format!("oci:{}{tag}", self.root.display()))
    }
    fn index_bytes(&self) -> Result<Vec<u8>> {
        read_limited(&self.root.join("index.json"), MAX_MANIFEST_BYTES)
    }
    fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>> {
        Ok(Box::new(self.open_blob_file(digest)?))
    }
    /// A seek into the blob's file (a resumed upload skips what the registry holds).
    fn open_blob_at(&self, digest: &Digest, size: u64, offset: u64) -> Result<BlobRead<'_>> {
        let mut f = self.open_blob_file(digest)?;
        let len = f.metadata().ctx("reading", &self.root)?.len();
        if offset > len {
            return Err(Error::of(
                crate::error::Kind::Integrity,
                format!(
                    "{}: blob {digest} is shorter ({len} bytes) than the part the registry holds",
                    self.root.display()
                ),
            ));
        }
        io::Seek::seek(&mut f, io::SeekFrom::Start(offset)).ctx("reading", &self.root)?;
        Ok(Box::new(f.take(size.saturating_sub(offset))))
    }
}

impl LayoutDir {
    fn open_blob_file(&self, digest: &Digest) -> Result<File> {
        let p = self.root.join("blobs/sha256").join(digest.hex());
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::input(format!(
                    "{}: blob {digest} is missing: the layout is incomplete",
                    self.root.display()
                ))
            } else {
                Error::Io {
                    context: format!("reading {}", p.display()),
                    source: e,
                }
            }
        })
    }
}

fn read_limited(p: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = File::open(p).ctx("reading", p)?;
    let mut v = Vec::new();
    f.take(limit + 1).read_to_end(&mut v).ctx("reading", p)?;
    if v.len() as u64 > limit {
        return Err(Error::input(format!(
            "{} is larger than {limit} bytes: not a valid OCI document",
            p.display()
        )));
    }
    Ok(v)
}
