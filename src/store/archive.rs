//! The OCI archive: a tar of a layout directory. Read in place (entries indexed once, then read
//! by offset, every rule of a layout applied); written by packing a finished layout directory.

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::format::media_type::MAX_MANIFEST_BYTES;
use crate::store::referrers::{self, Referrer};
use crate::store::{BlobRead, Source};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// An OCI archive: a tar of a layout. Entries are indexed once, then read by offset.
pub struct ArchiveFile {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

impl ArchiveFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx("opening", path)?;
        let not_archive = |why: String| {
            // (the tar reader quotes the bytes it could not read: binary noise on a terminal)
            let mut plain: String = why
                .chars()
                .take_while(|c| c.is_ascii() && !c.is_ascii_control())
                .collect();
            if plain.len() < why.len() {
                plain = format!("{}…", plain.trim_end().trim_end_matches(':'));
            }
            Error::input(format!(
                "{} is not an OCI archive ({plain}): give a layout directory or a tar of one",
                path.display()
            ))
        };
        let len = file.metadata().ctx("reading", path)?.len();
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
                let (at, size) = (e.raw_file_position(), e.size());
                if at.saturating_add(size) > len {
                    return Err(Error::integrity(format!(
                        "{}: the archive is cut short: its entry {name} needs {size} bytes from offset {at}, but the file ends at {len}. It was damaged (an interrupted copy?): make or copy it again",
                        path.display()
                    )));
                }
                if e.header().entry_type().is_file()
                    && entries.insert(name.clone(), (at, size)).is_some()
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
            entries,
        })
    }

    /// A reader of one entry (a file handle of its own: readers may run side by side).
    fn entry(&self, name: &str) -> Result<io::Take<File>> {
        let (off, size) = *self.entries.get(name).ok_or_else(|| {
            Error::input(format!(
                "{}: {name} is missing from the archive",
                self.path.display()
            ))
        })?;
        let mut f = File::open(&self.path).ctx("opening", &self.path)?;
        f.seek(SeekFrom::Start(off)).ctx("reading", &self.path)?;
        Ok(f.take(size))
    }
}

impl Source for ArchiveFile {
    fn describe(&self) -> String {
        format!("{} (archive)", self.path.display())
    }
    fn skopeo_name(&self, tag: Option<&str>) -> Option<String> {
        let tag = tag.map(|t| format!(":{t}")).unwrap_or_default();
        Some(format!("oci-archive:{}{tag}", self.path.display()))
    }
    fn index_bytes(&self) -> Result<Vec<u8>> {
        let path = &self.path;
        let mut v = Vec::new();
        self.entry("index.json")?
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut v)
            .ctx("reading", path)?;
        if v.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(Error::input(format!(
                "{}: index.json is too large",
                path.display()
            )));
        }
        Ok(v)
    }
    fn open_blob(&self, digest: &Digest) -> Result<BlobRead<'_>> {
        Ok(Box::new(
            self.entry(&format!("blobs/sha256/{}", digest.hex()))?,
        ))
    }
    /// A seek into the entry.
    fn open_blob_at(&self, digest: &Digest, size: u64, offset: u64) -> Result<BlobRead<'_>> {
        let mut e = self.entry(&format!("blobs/sha256/{}", digest.hex()))?;
        let limit = e.limit();
        if offset > limit {
            return Err(Error::of(
                crate::error::Kind::Integrity,
                format!(
                    "{}: blob {digest} is shorter ({limit} bytes) than the part the registry holds",
                    self.describe()
                ),
            ));
        }
        e.get_mut()
            .seek(SeekFrom::Current(offset as i64))
            .ctx("reading", &self.path)?;
        e.set_limit((limit - offset).min(size.saturating_sub(offset)));
        Ok(Box::new(e))
    }
}

/// Tar a layout directory: `oci-layout`, `index.json`, then the blobs sorted by name.
pub(crate) fn write_archive(layout: &Path, dest: &Path) -> Result<()> {
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
        let mut h = file_header(f.metadata().ctx("reading", path)?.len());
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

/// The header of a file entry mlart writes: regular, 0644, mtime 0 (reproducible archives).
fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h
}

/// Add referrers to the archive at `path` (`referrers::add_to_local`): a new tar is written in
/// a hidden temp directory beside it (every entry copied in order, index.json listing them as
/// well, their blobs written again where damaged and appended where missing), read back, then
/// renamed over the old file. On any failure the archive is left as it was. Returns how many
/// entries were added.
pub(crate) fn add_referrers(path: &Path, refs: &[Referrer]) -> Result<usize> {
    let ar = ArchiveFile::open(path)?;
    // (a symlink to the archive: the file it names is replaced, beside itself)
    let real = fs::canonicalize(path).ctx("reading", path)?;
    let path = real.as_path();
    let blobs: HashMap<String, referrers::Blob> = referrers::blobs_to_write(&ar, refs)
        .into_iter()
        .map(|b| (format!("blobs/sha256/{}", b.digest.hex()), b))
        .collect();
    let listed = referrers::index_listing(&ar.describe(), &ar.index_bytes()?, refs)?;
    if blobs.is_empty() && listed.is_none() {
        return Ok(0);
    }
    let (index, added) = listed.map_or((None, 0), |(i, n)| (Some(i), n));
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "archive".into(), |n| n.to_string_lossy().into_owned());
    let staging = crate::interrupt::temp_dir_in(&parent, "attest", &name)
        .ctx("creating a temp directory in", &parent)?;
    let new = staging.path().join(&name);
    rewrite(path, &new, index.as_deref(), &blobs)?;
    ArchiveFile::open(&new)?;
    fs::rename(&new, path).ctx("replacing", path)?;
    Ok(added)
}

/// Copy the tar `from` to `to` entry by entry: index.json replaced by `index` (when given),
/// an entry named in `blobs` by those bytes; the `blobs` it has no entry for appended.
fn rewrite(
    from: &Path,
    to: &Path,
    index: Option<&[u8]>,
    blobs: &HashMap<String, referrers::Blob>,
) -> Result<()> {
    let copying = |e: io::Error| {
        Error::from_io(
            &e,
            format!("copying {} to {}: {e}", from.display(), to.display()),
        )
    };
    let f = File::create(to).ctx("creating", to)?;
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, f));
    let mut ar = tar::Archive::new(File::open(from).ctx("opening", from)?);
    let mut replaced = HashSet::new();
    for e in ar.entries().map_err(copying)? {
        let mut e = e.map_err(copying)?;
        let p = e.path().map_err(copying)?.into_owned();
        let name = p.to_string_lossy().trim_start_matches("./").to_string();
        let mut h = e.header().clone();
        let new_data = match name.as_str() {
            "index.json" => index.map(|i| (i.len() as u64, Box::new(i) as crate::store::BlobRead)),
            n => blobs.get(n).map(|b| (b.size, b.open())),
        };
        if let Some((size, data)) = new_data {
            h.set_size(size);
            b.append_data(&mut h, &p, data).map_err(copying)?;
            replaced.insert(name);
        } else if let Some(link) = e.link_name().map_err(copying)? {
            let link = link.into_owned();
            b.append_link(&mut h, &p, &link).map_err(copying)?;
        } else {
            b.append_data(&mut h, &p, &mut e).map_err(copying)?;
        }
    }
    let mut missing: Vec<(&String, &referrers::Blob)> = blobs
        .iter()
        .filter(|(n, _)| !replaced.contains(*n))
        .collect();
    missing.sort_by(|x, y| x.0.cmp(y.0));
    for (n, data) in missing {
        b.append_data(&mut file_header(data.size), n, data.open())
            .map_err(copying)?;
    }
    b.into_inner()
        .map_err(copying)?
        .into_inner()
        .map_err(|e| copying(e.into_error()))?
        .sync_all()
        .map_err(copying)
}
