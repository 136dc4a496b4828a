//! OCI image layouts: a directory (`oci-layout`, `index.json`, `blobs/sha256/…`) or an archive
//! (a tar of that directory). Writing goes to a temp location beside the output and is renamed
//! at the end; reading verifies every blob against its digest and size.

use crate::error::{Error, IoContext, Result};
use crate::format::annotations::REF_NAME;
use crate::format::digest::{Digest, VerifyReader};
use crate::format::json;
use crate::format::media_type::MAX_MANIFEST_BYTES;
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::platform::Platform;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
}

/// Writes blobs into `<dir>/blobs/sha256/` (temp file, then rename to the digest).
pub struct LayoutWriter {
    dir: PathBuf,
    blobs: PathBuf,
}

pub struct BlobFile {
    file: BufWriter<tempfile::NamedTempFile>,
}

impl Write for BlobFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
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
        })
    }

    /// Write `index.json` listing `manifests`.
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> Result<()> {
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::input(format!("building index.json: {e}")))?;
        let p = self.dir.join("index.json");
        fs::write(&p, json::to_canonical_bytes(&index)).ctx("writing", &p)
    }
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

/// Is this index entry a signature referrer (not a bundle to resolve)?
pub fn is_signature(d: &Descriptor) -> bool {
    d.artifact_type()
        .as_ref()
        .is_some_and(|a| a.to_string() == crate::format::media_type::BUNDLE_MEDIA_TYPE)
}

impl BlobSink for LayoutWriter {
    type Writer = BlobFile;

    fn begin(&mut self) -> Result<BlobFile> {
        let f = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.blobs)
            .ctx("creating a blob in", &self.blobs)?;
        Ok(BlobFile {
            file: BufWriter::with_capacity(1 << 20, f),
        })
    }

    fn commit(&mut self, w: BlobFile, digest: &Digest, _size: u64) -> Result<()> {
        let tmp = w.file.into_inner().map_err(|e| Error::Io {
            context: format!("writing blob {digest}"),
            source: e.into_error(),
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
pub struct Staging {
    dest: PathBuf,
    archive: bool,
    tmp: Option<tempfile::TempDir>,
    /// Parent directories this staging created (outermost last), removed again on failure.
    created: Vec<PathBuf>,
}

impl Staging {
    /// `dest` ending in `.tar` is an archive, anything else a layout directory.
    pub fn new(dest: &Path) -> Result<Self> {
        Staging::with_form(dest, None)
    }

    /// `archive`: Some(true) for an archive whatever the name (`oci-archive:FILE`), Some(false)
    /// for a layout directory (`oci:DIR`), None: by the name (`.tar` is an archive).
    pub fn with_form(dest: &Path, archive: Option<bool>) -> Result<Self> {
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
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".mlart-tmp-{name}-"))
            .tempdir_in(&parent)
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

/// Tar a layout directory: `oci-layout`, `index.json`, then the blobs sorted by name.
fn write_archive(layout: &Path, dest: &Path) -> Result<()> {
    let f = File::create(dest).ctx("creating", dest)?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    let add_dir = |b: &mut tar::Builder<_>, name: &str| -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, name, io::empty())
    };
    let w = |e| Error::Io {
        context: format!("writing {}", dest.display()),
        source: e,
    };
    let add_file = |b: &mut tar::Builder<_>, name: &str, path: &Path| -> Result<()> {
        let mut f = File::open(path).ctx("reading", path)?;
        let size = f.metadata().ctx("reading", path)?.len();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        b.append_data(&mut h, name, &mut f).map_err(|e| Error::Io {
            context: format!("writing {}", dest.display()),
            source: e,
        })
    };
    add_file(&mut b, "oci-layout", &layout.join("oci-layout"))?;
    add_file(&mut b, "index.json", &layout.join("index.json"))?;
    add_dir(&mut b, "blobs/").map_err(w)?;
    add_dir(&mut b, "blobs/sha256/").map_err(w)?;
    let mut names: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .ctx("reading", &layout.join("blobs/sha256"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    for n in names {
        add_file(
            &mut b,
            &format!("blobs/sha256/{n}"),
            &layout.join("blobs/sha256").join(&n),
        )?;
    }
    b.into_inner()
        .map_err(w)?
        .into_inner()
        .map_err(|e| w(e.into_error()))?
        .sync_all()
        .map_err(w)?;
    Ok(())
}

// ---------------- reading ----------------

/// A place to read blobs from.
pub trait Source {
    /// A description for messages (`path`, `path (archive)`, a reference).
    fn describe(&self) -> String;
    /// The raw `index.json`.
    fn index_bytes(&mut self) -> Result<Vec<u8>>;
    /// A reader of the raw blob (not verified; use `open_verified`).
    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>>;
    /// A reader of the blob that fails (`InvalidData`) at its end unless it has `size` bytes
    /// with `digest`. A registry overrides this to hash on its download task.
    fn open_blob_verified(&mut self, digest: &Digest, size: u64) -> Result<Box<dyn Read + '_>> {
        let r = self.open_blob(digest)?;
        Ok(Box::new(VerifyReader::new(r, digest.clone(), size)))
    }
    /// A manifest by digest, verified against `digest` and `size` (refused above
    /// `MAX_MANIFEST_BYTES`): the images of an index. A layout or archive holds them as blobs;
    /// a registry overrides this with its manifests endpoint.
    fn read_manifest(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        check_manifest_size(&self.describe(), digest, size)?;
        let what = self.describe();
        let mut v = Vec::with_capacity(size as usize);
        self.open_blob_verified(digest, size)?
            .read_to_end(&mut v)
            .map_err(|e| Error::from_io(&e, format!("{what}: manifest {digest}: {e}")))?;
        Ok(v)
    }
    /// Candidate signature referrers of `subject` (their manifests still have to be read and
    /// checked). A layout keeps them in index.json; a registry overrides this with the
    /// referrers API or its fallback tag.
    fn referrers(&mut self, _subject: &Digest) -> Result<Vec<Descriptor>> {
        let what = self.describe();
        let index: ImageIndex = serde_json::from_slice(&self.index_bytes()?).map_err(|e| {
            Error::input(format!("{what}: index.json is not a valid OCI index: {e}"))
        })?;
        Ok(index
            .manifests()
            .iter()
            .filter(|d| is_signature(d))
            .cloned()
            .collect())
    }
}

/// An OCI layout directory.
pub struct LayoutDir {
    root: PathBuf,
}

/// An OCI archive: a tar of a layout. Entries are indexed once, then read by offset.
pub struct ArchiveFile {
    path: PathBuf,
    file: File,
    entries: HashMap<String, (u64, u64)>,
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
    fn index_bytes(&mut self) -> Result<Vec<u8>> {
        read_limited(&self.root.join("index.json"), MAX_MANIFEST_BYTES)
    }
    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        let p = self.root.join("blobs/sha256").join(digest.hex());
        let f = File::open(&p).map_err(|e| {
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
        })?;
        Ok(Box::new(f))
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

impl ArchiveFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx("opening", path)?;
        let not_archive = |why: String| {
            Error::input(format!(
                "{} is not an OCI archive ({why}): give a layout directory or a tar of one",
                path.display()
            ))
        };
        let mut entries = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            let it = ar
                .entries_with_seek()
                .map_err(|e| not_archive(e.to_string()))?;
            for e in it {
                let e = e.map_err(|e| not_archive(e.to_string()))?;
                let name = e
                    .path()
                    .map_err(|e| not_archive(e.to_string()))?
                    .to_string_lossy()
                    .into_owned();
                let name = name.trim_start_matches("./").to_string();
                if e.header().entry_type().is_file()
                    && entries
                        .insert(name.clone(), (e.raw_file_position(), e.size()))
                        .is_some()
                {
                    return Err(not_archive(format!("{name} appears twice")));
                }
            }
        }
        if !entries.contains_key("oci-layout") || !entries.contains_key("index.json") {
            return Err(not_archive("no oci-layout or index.json entry".into()));
        }
        Ok(ArchiveFile {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    fn entry(&mut self, name: &str) -> Result<io::Take<&File>> {
        let (off, size) = *self.entries.get(name).ok_or_else(|| {
            Error::input(format!(
                "{}: {name} is missing from the archive",
                self.path.display()
            ))
        })?;
        (&self.file)
            .seek(SeekFrom::Start(off))
            .ctx("reading", &self.path)?;
        Ok((&self.file).take(size))
    }
}

impl Source for ArchiveFile {
    fn describe(&self) -> String {
        format!("{} (archive)", self.path.display())
    }
    fn index_bytes(&mut self) -> Result<Vec<u8>> {
        let path = self.path.clone();
        let mut v = Vec::new();
        self.entry("index.json")?
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut v)
            .ctx("reading", &path)?;
        if v.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::input(format!(
                "{}: index.json is too large",
                path.display()
            )));
        }
        Ok(v)
    }
    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(
            self.entry(&format!("blobs/sha256/{}", digest.hex()))?,
        ))
    }
}

/// Open a blob and verify its size and digest as it is read.
pub fn open_verified<'a>(src: &'a mut dyn Source, desc: &Descriptor) -> Result<Box<dyn Read + 'a>> {
    let digest = Digest::parse(desc.digest().as_ref()).map_err(Error::Input)?;
    src.open_blob_verified(&digest, desc.size())
}

/// Read a whole (small) blob, verified, refusing anything over `limit`.
pub fn read_blob(src: &mut dyn Source, desc: &Descriptor, limit: u64) -> Result<Vec<u8>> {
    if desc.size() > limit {
        return Err(Error::input(format!(
            "{}: blob {} claims {} bytes, more than the {limit} allowed here",
            src.describe(),
            desc.digest(),
            desc.size()
        )));
    }
    let what = src.describe();
    let mut v = Vec::with_capacity(desc.size() as usize);
    open_verified(src, desc)?
        .read_to_end(&mut v)
        .map_err(|e| Error::from_io(&e, format!("{what}: {e}")))?;
    Ok(v)
}

/// Refuse a manifest descriptor whose size is over `MAX_MANIFEST_BYTES` (before reading it).
pub fn check_manifest_size(what: &str, digest: &Digest, size: u64) -> Result<()> {
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::input(format!(
            "{what}: manifest {digest} claims {size} bytes, more than the {MAX_MANIFEST_BYTES} allowed"
        )));
    }
    Ok(())
}

/// The manifest a layout or archive holds for `tag` (or its only one when `tag` is None).
pub struct Resolved {
    /// The image manifest's descriptor (from an index: the image's entry in it, with the
    /// top entry's `org.opencontainers.image.ref.name`, if any).
    pub descriptor: Descriptor,
    pub raw: Vec<u8>,
    pub manifest: ImageManifest,
    /// When the tag names an index (`bundle --platform all`): the index and the image taken.
    pub index: Option<IndexChoice>,
}

/// The image picked from a multi-platform index.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IndexChoice {
    /// The index's digest.
    pub digest: String,
    /// The platform of the image taken (`os/arch[/variant]`).
    pub platform: String,
}

/// What to do when the entry is an index.
enum OnIndex<'a> {
    /// Take one image: `Some(platform)`, else the host's (or the only image).
    Pick(Option<&'a Platform>),
    /// Refuse (push, copy, sign work on one image manifest).
    Refuse(&'a str),
}

/// Resolve `tag` to an image manifest; an index gives this machine's image (or its only one).
pub fn resolve(src: &mut dyn Source, tag: Option<&str>) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Pick(None))
}

/// Resolve `tag` to an image manifest; an index gives the image of `platform` (None: this
/// machine's Linux platform, or the index's only image).
pub fn resolve_platform(
    src: &mut dyn Source,
    tag: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Pick(platform))
}

/// Resolve `tag` to an image manifest, refusing an index (`doing`: what is refused, for the
/// message, e.g. "push").
pub fn resolve_image(src: &mut dyn Source, tag: Option<&str>, doing: &str) -> Result<Resolved> {
    resolve_inner(src, tag, OnIndex::Refuse(doing))
}

fn is_index_type(mt: &str) -> bool {
    mt == INDEX_MEDIA_TYPE || mt == crate::format::media_type::DOCKER_LIST_MEDIA_TYPE
}

fn resolve_inner(src: &mut dyn Source, tag: Option<&str>, on_index: OnIndex) -> Result<Resolved> {
    let what = src.describe();
    let raw_index = src.index_bytes()?;
    let index: ImageIndex = serde_json::from_slice(&raw_index)
        .map_err(|e| Error::input(format!("{what}: index.json is not a valid OCI index: {e}")))?;
    let manifests = index.manifests();
    let tags: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
        .collect();
    let desc = match tag {
        Some(t) => manifests
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|r| r == t)
            })
            .ok_or_else(|| {
                Error::input(format!(
                    "{what} has no manifest tagged {t:?}; its tags: {}",
                    list_or_none(&tags)
                ))
            })?,
        None => match manifests.iter().filter(|d| !is_signature(d)).count() {
            0 => return Err(Error::input(format!("{what} holds no manifest"))),
            1 => manifests.iter().find(|d| !is_signature(d)).expect("one"),
            _ => {
                return Err(Error::input(format!(
                    "{what} holds {} manifests: pick one with `--tag` (tags: {})",
                    manifests.len(),
                    list_or_none(&tags)
                )))
            }
        },
    };
    let mt = desc.media_type().to_string();
    if is_index_type(&mt) {
        return match on_index {
            OnIndex::Refuse(doing) => Err(Error::input(format!(
                "{what}: {} is a multi-platform index ({mt}); {doing} takes one image manifest: name one platform's image by digest (REF@sha256:…), or rebuild with `bundle --platform os/arch`",
                desc.digest()
            ))),
            OnIndex::Pick(want) => pick_from_index(src, desc, want),
        };
    }
    read_image(src, desc.clone(), None)
}

/// Read the image manifest `desc` names (it must be an OCI image manifest).
fn read_image(
    src: &mut dyn Source,
    desc: Descriptor,
    index: Option<IndexChoice>,
) -> Result<Resolved> {
    let what = src.describe();
    let mt = desc.media_type().to_string();
    if mt != MANIFEST_MEDIA_TYPE {
        return Err(Error::input(format!(
            "{what}: {} is a {mt}, not an OCI image manifest",
            desc.digest()
        )));
    }
    let raw = match &index {
        None => read_blob(src, &desc, MAX_MANIFEST_BYTES)?,
        Some(_) => {
            let d = Digest::parse(desc.digest().as_ref()).map_err(Error::Input)?;
            let raw = src.read_manifest(&d, desc.size())?;
            // A registry serves it by digest (hash checked there): check the size as well.
            if raw.len() as u64 != desc.size() {
                return Err(Error::input(format!(
                    "{what}: manifest {d} is {} bytes, its index entry says {}",
                    raw.len(),
                    desc.size()
                )));
            }
            raw
        }
    };
    let manifest: ImageManifest = serde_json::from_slice(&raw).map_err(|e| {
        Error::input(format!(
            "{what}: manifest {} is not a valid OCI manifest: {e}",
            desc.digest()
        ))
    })?;
    Ok(Resolved {
        descriptor: desc,
        raw,
        manifest,
        index,
    })
}

/// Read the index `top` names and resolve its image for `want` (None: the host's platform,
/// or the only image).
fn pick_from_index(
    src: &mut dyn Source,
    top: &Descriptor,
    want: Option<&Platform>,
) -> Result<Resolved> {
    let what = src.describe();
    let index_digest = Digest::parse(top.digest().as_ref()).map_err(Error::Input)?;
    check_manifest_size(&what, &index_digest, top.size())?;
    let raw = read_blob(src, top, MAX_MANIFEST_BYTES)?;
    let doc: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::input(format!("{what}: index {index_digest} is not JSON: {e}")))?;
    let entries = doc
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            Error::input(format!(
                "{what}: index {index_digest} has no `manifests` list: it is not an OCI index"
            ))
        })?;
    // The images with a platform (signatures, attestations — no platform or unknown/unknown —
    // are skipped).
    let mut images: Vec<(Platform, &serde_json::Value)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let d: Descriptor = serde_json::from_value(e.clone()).map_err(|err| {
            Error::input(format!(
                "{what}: entry {i} of index {index_digest} is not a valid descriptor: {err}"
            ))
        })?;
        Digest::parse(d.digest().as_ref()).map_err(|err| {
            Error::input(format!("{what}: entry {i} of index {index_digest}: {err}"))
        })?;
        if is_signature(&d) {
            continue;
        }
        let Some(p) = e
            .get("platform")
            .and_then(Platform::from_json)
            .filter(|p| !p.is_unknown())
        else {
            continue;
        };
        images.push((p, e));
    }
    let listing = || {
        images
            .iter()
            .map(|(p, e)| {
                format!(
                    "{p} ({})",
                    e.get("digest").and_then(|d| d.as_str()).unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (platform, entry) = match want {
        None if images.len() == 1 => images[0].clone(),
        _ => {
            let (wanted, whose) = match want {
                Some(p) => (p.clone(), ""),
                None => (Platform::host(), " (the platform of this machine)"),
            };
            match images.iter().find(|(p, _)| wanted.matches(p)) {
                Some(found) => found.clone(),
                None => {
                    return Err(Error::input(format!(
                        "{what}: the multi-platform index {index_digest} has no {wanted} image{whose}; it has: {}. Pick one with `--platform os/arch[/variant]`, or name its image by digest (REF@sha256:…)",
                        if images.is_empty() {
                            "no image with a platform".to_string()
                        } else {
                            listing()
                        }
                    )))
                }
            }
        }
    };
    let mut desc: Descriptor = serde_json::from_value(entry.clone()).expect("parsed above");
    let mt = desc.media_type().to_string();
    if is_index_type(&mt) {
        return Err(Error::input(format!(
            "{what}: the {platform} entry {} of index {index_digest} is itself an index: nested indexes are not read",
            desc.digest()
        )));
    }
    // Keep the top entry's tag on the image's descriptor.
    if let Some(t) = top.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
        let mut a = desc.annotations().clone().unwrap_or_default();
        a.insert(REF_NAME.to_string(), t.clone());
        desc.set_annotations(Some(a));
    }
    read_image(
        src,
        desc,
        Some(IndexChoice {
            digest: index_digest.to_string(),
            platform: platform.to_string(),
        }),
    )
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
