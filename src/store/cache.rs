//! The local blob cache (`$XDG_CACHE_HOME/mlart/blobs/sha256/`): a sink for `pull`, which
//! fetches a bundle's layers into it through the one copy, then extracts them from there.

use crate::error::{Error, IoContext, Result};
use crate::format::digest::{Digest, Resume, VerifyReader};
use crate::store::layout::{write_blob_file, write_bytes_file};
use crate::store::referrers::Referrer;
use crate::store::{BlobRef, Opener, PutError, ReadFrom, ResumeOpener, Sent, Sink};
use oci_spec::image::Descriptor;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Blobs by digest under `dir`; what it has is re-hashed before it counts.
pub struct BlobCache {
    dir: PathBuf,
}

impl BlobCache {
    /// The cache rooted at `root` (blobs in `root/blobs/sha256`).
    pub fn new(root: &Path) -> Self {
        BlobCache {
            dir: root.join("blobs").join("sha256"),
        }
    }

    /// Where the blob is (or would be).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }
}

impl Sink for BlobCache {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    /// There and intact (hashed again); a corrupt one is removed and fetched again.
    fn has_blob(&self, blob: &BlobRef) -> Result<bool> {
        let path = self.path(&blob.digest);
        if !path.is_file() {
            return Ok(false);
        }
        let ok = File::open(&path)
            .map(|f| {
                let mut v = VerifyReader::new(f, blob.digest.clone(), blob.size);
                io::copy(&mut v, &mut io::sink()).is_ok()
            })
            .unwrap_or(false);
        if !ok {
            tracing::warn!("cached blob {} is corrupt; fetching it again", blob.digest);
            let _ = fs::remove_file(&path);
        } else {
            // Its modification time is its last use: `prune` removes the least recently used.
            let _ = File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(SystemTime::now()));
        }
        Ok(ok)
    }

    fn put_blob(
        &self,
        blob: &BlobRef,
        open: &Opener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        write_blob_file(&self.dir, blob, open, sent)
    }

    /// An interrupted download stays as `.partial-HEX` (locked while it is written): the next
    /// pull continues it where it stopped, and the blob is verified as a whole at the end. A
    /// part that fails that check is dropped, so the pull after starts from the beginning.
    fn put_blob_resumable(
        &self,
        blob: &BlobRef,
        open: &ResumeOpener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        // (a part kept from an earlier pull whose bytes turn out wrong at the whole-blob
        // check: dropped, and the blob fetched once more from its start; wrong bytes then are
        // the source's)
        let held = std::sync::atomic::AtomicU64::new(0);
        let tracked = |s: Sent| {
            if let Sent::Resumed(n) = s {
                held.store(n, std::sync::atomic::Ordering::Relaxed);
            }
            sent(s)
        };
        match self.continue_partial(blob, open, &tracked) {
            Err(PutError::Read(e))
                if e.kind() == io::ErrorKind::InvalidData
                    && held.load(std::sync::atomic::Ordering::Relaxed) > 0 =>
            {
                tracing::warn!(
                    "blob {}: the {} bytes an earlier pull left in the cache ({}) were not the blob's ({e}): dropped, fetching it again from the start",
                    blob.digest,
                    held.load(std::sync::atomic::Ordering::Relaxed),
                    self.dir.display()
                );
                sent(Sent::Restart(blob.size));
                self.continue_partial(blob, open, sent)
            }
            r => r,
        }
    }

    /// The cache holds blobs only: a manifest is stored as one, untagged.
    fn put_manifest(&self, _desc: &Descriptor, raw: &[u8], _tag: Option<&str>) -> Result<()> {
        write_bytes_file(&self.dir, raw)
    }

    /// Referrers are not cached.
    fn put_referrers(&self, _subject: &Digest, _referrers: &[Referrer]) -> Result<Option<String>> {
        Ok(None)
    }
}

impl BlobCache {
    /// Fetch `blob` into `.partial-HEX`, continuing what it holds, then rename it into place.
    fn continue_partial(
        &self,
        blob: &BlobRef,
        open: &ResumeOpener<'_>,
        sent: &(dyn Fn(Sent) + Sync),
    ) -> std::result::Result<(), PutError> {
        fs::create_dir_all(&self.dir).ctx("creating", &self.dir)?;
        let partial = self.dir.join(format!(".partial-{}", blob.digest.hex()));
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(&partial)
            .ctx("opening", &partial)?;
        if !lock_exclusive(&f) {
            // Another pull is fetching this blob: fetch it apart, from the start.
            return self.put_blob(blob, &|| open(ReadFrom::Start), sent);
        }
        let mut have = f.metadata().ctx("reading", &partial)?.len();
        if have >= blob.size {
            f.set_len(0).ctx("emptying", &partial)?;
            have = 0;
        }
        let from = if have == 0 {
            ReadFrom::Start
        } else {
            let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
            let mut held = File::open(&partial).ctx("reading", &partial)?.take(have);
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0u64;
            loop {
                let k = held.read(&mut buf).ctx("reading", &partial)?;
                if k == 0 {
                    break;
                }
                sha2::Digest::update(&mut hasher, &buf[..k]);
                n += k as u64;
            }
            tracing::info!("blob {}: resuming after {n} bytes", blob.digest);
            // (held already: not downloaded by this run; the progress starts there)
            sent(Sent::Resumed(n));
            ReadFrom::Verified(Resume { have: n, hasher })
        };
        let mut r = open(from).map_err(PutError::Open)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // Wrong bytes somewhere: nothing of it is worth keeping.
                        let _ = fs::remove_file(&partial);
                    }
                    return Err(PutError::Read(e));
                }
            };
            f.write_all(&buf[..n])
                .ctx("writing", &partial)
                .map_err(PutError::Sink)?;
            sent(Sent::Bytes(n as u64));
        }
        // The reader ended only after the whole blob checked out.
        fs::rename(&partial, self.path(&blob.digest)).ctx("storing", &partial)?;
        Ok(())
    }
}

/// One blob of the cache.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Entry {
    pub digest: String,
    pub size: u64,
    /// When a pull last wrote or used it (seconds since the Unix epoch).
    pub last_used: u64,
    /// The same to the nanosecond: the order of eviction (two pulls in one second are two
    /// moments, not a tie broken by digest).
    #[serde(skip)]
    pub used: std::time::Duration,
}

/// What the cache holds: its blobs (least recently used first), what interrupted downloads
/// left in its blob folder, and the files there that are not mlart's.
#[derive(Debug, Default, serde::Serialize)]
pub struct Listing {
    pub dir: PathBuf,
    pub blobs: Vec<Entry>,
    pub bytes: u64,
    /// What interrupted downloads left ([`is_leftover`]: `.partial-HEX`, the next pull of that
    /// blob continues it; `.tmp-*`): `prune` removes those unused for a day.
    pub interrupted_downloads: Vec<String>,
    /// Anything else in the blob folder: not mlart's, listed, never counted or removed.
    pub other_files: Vec<String>,
    /// Records of upload sessions that interrupted pushes left (`uploads/`): the next push
    /// of the same blob continues them.
    pub upload_sessions: usize,
}

/// The blobs under `root` (a missing cache is an empty one). Links are never followed.
pub fn list(root: &Path) -> Result<Listing> {
    let dir = BlobCache::new(root).dir;
    let mut out = Listing {
        dir: dir.clone(),
        ..Listing::default()
    };
    out.upload_sessions = fs::read_dir(root.join("uploads")).map_or(0, |rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with('.')
            })
            .count()
    });
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).ctx("reading the cache", &dir),
    };
    for e in rd {
        let e = e.ctx("reading the cache", &dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata().ctx("reading", &e.path())?;
        let is_blob = md.file_type().is_file()
            && name.len() == 64
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if !is_blob {
            match md.file_type().is_file() && is_leftover(&name) {
                true => out.interrupted_downloads.push(name),
                false => out.other_files.push(name),
            }
            continue;
        }
        let used = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        out.bytes += md.len();
        out.blobs.push(Entry {
            digest: format!("sha256:{name}"),
            size: md.len(),
            last_used: used.as_secs(),
            used,
        });
    }
    out.blobs
        .sort_by(|a, b| (a.used, &a.digest).cmp(&(b.used, &b.digest)));
    out.interrupted_downloads.sort();
    out.other_files.sort();
    Ok(out)
}

/// Whether `name`, in the blob folder, is what an interrupted download left: a blob's part
/// (`.partial-` and its 64 hex digits, [`BlobCache::put_blob_resumable`]) or the temp file of
/// a blob written whole (`.tmp-*`).
pub fn is_leftover(name: &str) -> bool {
    let hex = |h: &str| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    name.strip_prefix(".partial-").is_some_and(hex)
        || name.strip_prefix(".tmp-").is_some_and(|r| !r.is_empty())
}

/// What to remove: blobs unused for longer than `older_than`, and the least recently used
/// that do not fit in `max_size` bytes beside the more recently used ones kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rule {
    pub max_size: Option<u64>,
    pub older_than: Option<Duration>,
}

/// What `prune` removed and what is left.
#[derive(Debug, Default, serde::Serialize)]
pub struct Pruned {
    pub removed: Vec<Entry>,
    pub freed: u64,
    pub kept: usize,
    pub kept_bytes: u64,
    /// Leftovers of interrupted downloads (`.tmp-*`, `.partial-*` unused for a day) removed too.
    pub stale_temp_files: usize,
    /// Records of upload sessions older than a week (registries have dropped those
    /// sessions), their lock files and leftover temp files, removed too (`uploads/`).
    pub stale_upload_sessions: usize,
    /// What `bundle --push` recorded of tar layers (`uploads/layers/`), older than a week,
    /// removed too (a record gone only means the next run writes that layer again).
    pub stale_layer_records: usize,
    pub dry_run: bool,
}

/// Apply `rule` to the cache under `root` at time `now`; `dry_run` removes nothing and says
/// what would go. A rule with neither limit removes no blob.
pub fn prune(root: &Path, rule: Rule, now: SystemTime, dry_run: bool) -> Result<Pruned> {
    let listing = list(root)?;
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = Pruned {
        dry_run,
        ..Pruned::default()
    };
    // Which blobs stay: the most recently used first, each kept while it fits under the cap
    // with those kept before it. A blob bigger than what is left goes, and older ones that
    // fit stay: a cap that only the newest big layer breaks does not empty the cache.
    let mut stays = vec![false; listing.blobs.len()];
    let mut held = 0u64;
    for (i, e) in listing.blobs.iter().enumerate().rev() {
        let too_old = rule
            .older_than
            .is_some_and(|age| now_s.saturating_sub(e.last_used) > age.as_secs());
        let fits = rule.max_size.is_none_or(|max| held + e.size <= max);
        if !too_old && fits {
            stays[i] = true;
            held += e.size;
        }
    }
    for (e, stays) in listing.blobs.into_iter().zip(stays) {
        if !stays {
            if !dry_run {
                let p = listing.dir.join(e.digest.trim_start_matches("sha256:"));
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err).ctx("removing", &p),
                }
            }
            out.freed += e.size;
            out.removed.push(e);
        } else {
            out.kept += 1;
            out.kept_bytes += e.size;
        }
    }
    // (only mlart's own leftovers: a file that is not mlart's is never removed)
    for name in &listing.interrupted_downloads {
        let p = listing.dir.join(name);
        let stale = fs::symlink_metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d > Duration::from_secs(86_400));
        if stale {
            if !dry_run {
                fs::remove_file(&p).ctx("removing", &p)?;
            }
            out.stale_temp_files += 1;
        }
    }
    let uploads = root.join("uploads");
    out.stale_upload_sessions = crate::registry::sessions::prune_stale(&uploads, now, dry_run)
        .ctx("pruning", &uploads)?
        .files;
    let layers = uploads.join("layers");
    out.stale_layer_records = crate::registry::sessions::prune_stale(&layers, now, dry_run)
        .ctx("pruning", &layers)?
        .files;
    Ok(out)
}

/// The cap applied after each pull: `MLART_CACHE_MAX_SIZE` (e.g. `20G`), when set.
pub fn cap_from_env() -> Result<Option<u64>> {
    match std::env::var("MLART_CACHE_MAX_SIZE") {
        Ok(v) if !v.trim().is_empty() => crate::format::units::parse_size(&v)
            .map(Some)
            .map_err(|e| Error::input(format!("MLART_CACHE_MAX_SIZE: {e}"))),
        _ => Ok(None),
    }
}

/// Take an exclusive advisory lock on `f` without waiting (`flock`); false when another
/// process holds one. Released when `f` is closed.
fn lock_exclusive(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns for the duration of the call.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blobs used within one second are evicted in the order they were used, not by digest.
    #[test]
    fn eviction_follows_use_within_a_second() {
        let t = tempfile::tempdir().unwrap();
        let dir = BlobCache::new(t.path()).dir;
        fs::create_dir_all(&dir).unwrap();
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // digests in the opposite order of use: "ff…" used first, "00…" last
        for (i, hex) in ["ff", "aa", "00"].iter().enumerate() {
            let p = dir.join(hex.repeat(32));
            fs::write(&p, [0u8; 10]).unwrap();
            let f = File::options().write(true).open(&p).unwrap();
            f.set_modified(second + Duration::from_millis(100 * i as u64))
                .unwrap();
        }
        let l = list(t.path()).unwrap();
        let order: Vec<&str> = l.blobs.iter().map(|e| &e.digest[7..9]).collect();
        assert_eq!(order, ["ff", "aa", "00"]);
        assert!(l.blobs.iter().all(|e| e.last_used == 1_800_000_000));
        let rule = Rule {
            max_size: Some(10),
            older_than: None,
        };
        let p = prune(t.path(), rule, second, false).unwrap();
        let gone: Vec<&str> = p.removed.iter().map(|e| &e.digest[7..9]).collect();
        assert_eq!(gone, ["ff", "aa"], "the least recently used go first");
        assert!(dir.join("00".repeat(32)).exists());
    }
    /// A cap that only the newest, biggest blob breaks removes that blob, not the older small
    /// ones that fit (before: least recently used first until under the cap, which emptied
    /// the cache).
    #[test]
    fn a_blob_over_the_cap_goes_and_older_ones_that_fit_stay() {
        let t = tempfile::tempdir().unwrap();
        let dir = BlobCache::new(t.path()).dir;
        fs::create_dir_all(&dir).unwrap();
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (i, (hex, size)) in [("aa", 30), ("bb", 20), ("cc", 500)].iter().enumerate() {
            let p = dir.join(hex.repeat(32));
            fs::write(&p, vec![0u8; *size]).unwrap();
            let f = File::options().write(true).open(&p).unwrap();
            f.set_modified(second + Duration::from_millis(10 * i as u64))
                .unwrap();
        }
        let rule = Rule {
            max_size: Some(100),
            older_than: None,
        };
        let dry = prune(t.path(), rule, second, true).unwrap();
        let gone: Vec<&str> = dry.removed.iter().map(|e| &e.digest[7..9]).collect();
        assert_eq!(gone, ["cc"]);
        assert!(
            dir.join("cc".repeat(32)).exists(),
            "a dry run removes nothing"
        );
        let p = prune(t.path(), rule, second, false).unwrap();
        assert_eq!((p.freed, p.kept, p.kept_bytes), (500, 2, 50));
        assert!(!dir.join("cc".repeat(32)).exists());
        assert!(dir.join("aa".repeat(32)).exists() && dir.join("bb".repeat(32)).exists());
        // and a cap below every blob empties it
        let p = prune(
            t.path(),
            Rule {
                max_size: Some(10),
                older_than: None,
            },
            second,
            false,
        )
        .unwrap();
        assert_eq!((p.removed.len(), p.kept), (2, 0));
    }
}
