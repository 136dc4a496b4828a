//! Upload sessions kept across runs (`<cache>/uploads/`): while a blob uploads, a small record
//! says where its session is, so that the push after an interruption (kill -9, network loss,
//! Ctrl-C) can ask the registry what it holds and continue from there.
//!
//! A record is `<sha256 of "registry/repository@digest">.json`: the registry, repository,
//! digest and size of the blob, the session's latest location (a registry such as
//! distribution signs the offset into it, so it is rewritten after every chunk) and when it was
//! opened. It is written atomically (temp file, rename) and removed once the blob is
//! committed. Nothing here may fail a push: a record that cannot be written, read or parsed is
//! no record (debug log). `<hex>.lock` is held (`flock`) while a process uploads that blob,
//! so two pushes of the same blob never use (and spoil) one session.

use crate::format::digest::Digest;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Registries drop unfinished sessions after a while (distribution: 168 h by default); a
/// record older than this is pruned by `mlart cache prune`.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 86_400);

/// One blob's open upload session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub registry: String,
    pub repository: String,
    pub digest: String,
    pub size: u64,
    /// The session's latest location (absolute URL), as the registry last gave it.
    pub location: String,
    /// When the session was opened (seconds since the Unix epoch).
    pub created: u64,
    /// A blob whose digest is known only at its end (a layer `bundle --push` streams): then
    /// `digest` is the hash of the layer's plan (what its bytes are made of, `build::resume`)
    /// and `size` is 0.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
}

/// The records of one cache (`<cache>/uploads`).
#[derive(Clone, Debug)]
pub struct Sessions {
    dir: PathBuf,
}

/// A held `<hex>.lock` (released on drop, when the file closes).
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// The blob is committed: remove the lock file (while still holding it; a process that
    /// opened it meanwhile finds, once it has the lock, that the path is no longer its file).
    pub fn release(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Whether `f` is still the file at `p` (not removed or replaced since it was opened).
fn same_file(f: &File, p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), fs::metadata(p)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Sessions {
    /// The records under `dir` (the folder is made on the first write).
    pub fn new(dir: PathBuf) -> Self {
        Sessions { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn key(registry: &str, repository: &str, digest: &Digest) -> String {
        Digest::of(format!("{registry}/{repository}@{digest}").as_bytes())
            .hex()
            .to_string()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Take the lock of this blob's session; None when another process holds it (or the
    /// folder cannot be written): upload without a record then.
    pub fn lock(&self, registry: &str, repository: &str, digest: &Digest) -> Option<Lock> {
        let p = self
            .dir
            .join(format!("{}.lock", Self::key(registry, repository, digest)));
        for _ in 0..3 {
            let f = fs::create_dir_all(&self.dir)
                .and_then(|()| File::options().create(true).append(true).open(&p));
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!("upload sessions: {}: {e}", p.display());
                    return None;
                }
            };
            if !lock_exclusive(&f) {
                tracing::debug!(
                    "blob {digest}: another mlart is uploading it; no resume for this one"
                );
                return None;
            }
            if same_file(&f, &p) {
                return Some(Lock { file: f, path: p });
            }
            // removed by the process that held it, just before we locked: again
        }
        None
    }

    /// The record of this blob, when there is a usable one: it parses, names this registry,
    /// repository, digest and size, and its location is on this registry in this
    /// repository's upload path. Anything else is removed and is no record.
    pub fn load(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: u64,
    ) -> Option<Record> {
        self.load_as(registry, repository, digest, Some(size))
    }

    /// The record of the layer of plan `key` (`Record::plan`), as `load` checks one.
    pub fn load_plan(&self, registry: &str, repository: &str, key: &Digest) -> Option<Record> {
        self.load_as(registry, repository, key, None)
    }

    /// `size`: None for a layer's plan.
    fn load_as(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Option<Record> {
        let p = self.path(&Self::key(registry, repository, digest));
        let raw = match fs::read(&p) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("upload session {}: {e}", p.display());
                return None;
            }
        };
        let why = match serde_json::from_slice::<Record>(&raw) {
            Err(e) => format!("not a session record ({e})"),
            Ok(r) if r.registry != registry || r.repository != repository => format!(
                "it is for {}/{}, not {registry}/{repository}",
                r.registry, r.repository
            ),
            Ok(r) if r.digest != digest.as_str() || r.plan != size.is_none() => {
                format!("it is for {} (plan: {})", r.digest, r.plan)
            }
            Ok(r) if size.is_some_and(|s| s != r.size) => {
                format!("it is for {} ({} bytes)", r.digest, r.size)
            }
            Ok(r) if !location_fits(&r.location, registry, repository) => {
                format!(
                    "its location {:?} is not an upload of {registry}/{repository}",
                    r.location
                )
            }
            Ok(r) => return Some(r),
        };
        tracing::debug!("upload session {}: ignored: {why}", p.display());
        let _ = fs::remove_file(&p);
        None
    }

    /// Write (or rewrite) the record; a failure is logged, never an error.
    pub fn save(&self, r: &Record) {
        let Ok(d) = Digest::parse(&r.digest) else {
            return;
        };
        let p = self.path(&Self::key(&r.registry, &r.repository, &d));
        if let Err(e) = write_atomically(&self.dir, &p, r) {
            tracing::debug!("upload session {}: not recorded: {e}", p.display());
        }
    }

    /// The blob is committed (or its session is of no use): forget it.
    pub fn remove(&self, registry: &str, repository: &str, digest: &Digest) {
        let p = self.path(&Self::key(registry, repository, digest));
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!("upload session {}: {e}", p.display()),
        }
    }
}

/// The records a remote keeps for one key (a blob's digest, or a layer's plan), held under
/// its lock: `store` is None without a cache folder or while another process holds the lock
/// (upload without a record then: two pushes never share a session).
pub struct Locked {
    pub registry: String,
    pub repository: String,
    pub store: Option<Sessions>,
    pub lock: Option<Lock>,
}

impl Locked {
    /// The records of `remote`'s repository for `key`, under their lock.
    pub fn take(remote: &super::Remote, key: &Digest) -> Locked {
        let registry = remote.reference.resolve_registry();
        let repository = remote.reference.repository();
        let store = remote.upload.sessions.clone().map(Sessions::new);
        let lock = store
            .as_ref()
            .and_then(|s| s.lock(registry, repository, key));
        Locked {
            registry: registry.to_string(),
            repository: repository.to_string(),
            store: store.filter(|_| lock.is_some()),
            lock,
        }
    }
}

fn write_atomically(dir: &Path, p: &Path, r: &Record) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(&serde_json::to_vec_pretty(r).map_err(std::io::Error::other)?)?;
    tmp.persist(p).map_err(|e| e.error)?;
    Ok(())
}

/// Whether `location` is an upload session of `repository` on `registry` (the host the
/// blob goes to): a record is never a way to send a blob elsewhere.
pub fn location_fits(location: &str, registry: &str, repository: &str) -> bool {
    let Some((scheme, rest)) = location.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    host.eq_ignore_ascii_case(registry)
        && path.starts_with(&format!("/v2/{repository}/blobs/uploads/"))
}

/// What `prune_stale` found.
#[derive(Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct Stale {
    /// Records (and their locks) older than `STALE_AFTER`, and temp files older than a day.
    pub files: usize,
}

/// Remove records of sessions no registry still keeps (older than `STALE_AFTER`), their lock
/// files, and leftovers of interrupted writes (`.tmp-*` older than a day); `dry_run` removes
/// nothing. A missing folder is an empty one; a lock held by a running push is kept.
pub fn prune_stale(dir: &Path, now: SystemTime, dry_run: bool) -> std::io::Result<Stale> {
    let mut out = Stale::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let md = e.metadata()?;
        let age = md
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let stale = if name.starts_with(".tmp-") {
            age > Duration::from_secs(86_400)
        } else if name.ends_with(".json") || name.ends_with(".lock") {
            age > STALE_AFTER
        } else {
            false
        };
        if !stale || !md.is_file() {
            continue;
        }
        if name.ends_with(".lock") {
            // in use by a push that runs now: keep it
            match File::open(e.path()) {
                Ok(f) if lock_exclusive(&f) => {}
                _ => continue,
            }
        }
        if !dry_run {
            fs::remove_file(e.path())?;
        }
        out.files += 1;
    }
    Ok(out)
}

/// Take an exclusive advisory lock on `f` without waiting (`flock`); false when another
/// process holds one. Released when `f` is closed.
fn lock_exclusive(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns for the duration of the call.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a registry says it holds of a session: the `Range` header of an upload status
/// (`0-<last>`, inclusive; a `bytes=` prefix is allowed). Returns the bytes held,
/// None for a header that is malformed, not from 0, or past `size`. `0-0` is what
/// distribution answers for an empty session (and for one byte): read as 0, the safe side.
pub fn held_bytes(range: Option<&str>, size: u64) -> Option<u64> {
    let r = range?.trim();
    let r = r.strip_prefix("bytes=").unwrap_or(r);
    let (a, b) = r.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return None;
    }
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    if a != 0 {
        return None;
    }
    if b == 0 {
        return Some(0);
    }
    let held = b.checked_add(1)?;
    (held <= size).then_some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_an_upload_status() {
        assert_eq!(held_bytes(Some("0-1023"), 4096), Some(1024));
        assert_eq!(held_bytes(Some("bytes=0-1023"), 4096), Some(1024));
        assert_eq!(held_bytes(Some(" 0-4095 "), 4096), Some(4096));
        assert_eq!(held_bytes(Some("0-0"), 4096), Some(0));
        // more than the blob, not from 0, malformed, absent
        for bad in [
            "0-4096",
            "10-20",
            "0-",
            "-5",
            "0--1",
            "0-1e3",
            "0-99999999999999999999999",
            "",
            "garbage",
            "0-+5",
        ] {
            assert_eq!(held_bytes(Some(bad), 4096), None, "{bad:?}");
        }
        assert_eq!(held_bytes(None, 4096), None);
        assert_eq!(held_bytes(Some("0-18446744073709551615"), u64::MAX), None);
    }

    #[test]
    fn a_location_must_be_an_upload_of_the_same_repository() {
        let ok = "http://127.0.0.1:5000/v2/ml/iris/blobs/uploads/abc?_state=x";
        assert!(location_fits(ok, "127.0.0.1:5000", "ml/iris"));
        assert!(!location_fits(ok, "127.0.0.1:5001", "ml/iris"));
        assert!(!location_fits(ok, "127.0.0.1:5000", "ml/other"));
        assert!(!location_fits(ok, "127.0.0.1:5000", "ml"));
        assert!(!location_fits(
            "/v2/ml/iris/blobs/uploads/abc",
            "127.0.0.1:5000",
            "ml/iris"
        ));
        assert!(!location_fits(
            "http://evil.example/v2/ml/iris/blobs/uploads/abc",
            "127.0.0.1:5000",
            "ml/iris"
        ));
        assert!(!location_fits(
            "file://127.0.0.1:5000/v2/ml/iris/blobs/uploads/abc",
            "127.0.0.1:5000",
            "ml/iris"
        ));
        assert!(!location_fits(
            "http://127.0.0.1:5000@evil.example/v2/ml/iris/blobs/uploads/a",
            "127.0.0.1:5000",
            "ml/iris"
        ));
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Sessions::new(tmp.path().join("uploads"));
        let d = Digest::of(b"blob");
        let rec = Record {
            registry: "127.0.0.1:5000".into(),
            repository: "ml/iris".into(),
            digest: d.to_string(),
            size: 4,
            location: "http://127.0.0.1:5000/v2/ml/iris/blobs/uploads/u?_state=s".into(),
            created: 1,
            plan: false,
        };
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 4), None);
        s.save(&rec);
        assert_eq!(
            s.load("127.0.0.1:5000", "ml/iris", &d, 4),
            Some(rec.clone())
        );
        // the size differs: no record, and it is gone
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 5), None);
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 4), None);
        // garbage
        s.save(&rec);
        let p = s.path(&Sessions::key("127.0.0.1:5000", "ml/iris", &d));
        fs::write(&p, b"{not json").unwrap();
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 4), None);
        assert!(!p.exists());
        // a location elsewhere
        let evil = Record {
            location: "http://evil.example/v2/ml/iris/blobs/uploads/u".into(),
            ..rec.clone()
        };
        s.save(&evil);
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 4), None);
        s.save(&rec);
        s.remove("127.0.0.1:5000", "ml/iris", &d);
        assert!(!p.exists());
        // a layer's plan: found as one, never as a blob of that digest, and the other way round
        let planned = Record {
            size: 0,
            plan: true,
            ..rec.clone()
        };
        s.save(&planned);
        assert_eq!(
            s.load_plan("127.0.0.1:5000", "ml/iris", &d),
            Some(planned.clone())
        );
        assert_eq!(s.load("127.0.0.1:5000", "ml/iris", &d, 0), None);
        assert!(!p.exists());
        s.save(&rec);
        assert_eq!(s.load_plan("127.0.0.1:5000", "ml/iris", &d), None);
        assert!(!p.exists());
        // no temp file left behind
        let left: Vec<_> = fs::read_dir(s.dir()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn one_lock_per_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Sessions::new(tmp.path().to_path_buf());
        let d = Digest::of(b"x");
        let held = s.lock("r", "a", &d).expect("free");
        // flock is per open file: a second open of the same lock file is refused
        assert!(s.lock("r", "a", &d).is_none());
        assert!(s.lock("r", "b", &d).is_some());
        drop(held);
        let again = s.lock("r", "a", &d).expect("free again");
        let p = tmp
            .path()
            .join(format!("{}.lock", Sessions::key("r", "a", &d)));
        assert!(p.exists());
        again.release();
        assert!(!p.exists());
        // a lock file removed under a process that had opened it is no lock
        let f = File::options().create(true).append(true).open(&p).unwrap();
        fs::remove_file(&p).unwrap();
        assert!(lock_exclusive(&f) && !same_file(&f, &p));
        assert!(s.lock("r", "a", &d).is_some());
    }

    #[test]
    fn stale_records_are_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for n in ["a.json", "b.lock", ".tmp-x", "c.json", "other"] {
            fs::write(dir.join(n), b"{}").unwrap();
        }
        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(60);
        let dry = prune_stale(dir, later, true).unwrap();
        assert_eq!(dry.files, 4);
        assert_eq!(fs::read_dir(dir).unwrap().count(), 5);
        // a lock in use stays
        let held = File::open(dir.join("b.lock")).unwrap();
        assert!(lock_exclusive(&held));
        assert_eq!(prune_stale(dir, later, false).unwrap().files, 3);
        assert!(dir.join("b.lock").exists() && dir.join("other").exists());
        drop(held);
        assert_eq!(prune_stale(dir, SystemTime::now(), false).unwrap().files, 0);
        assert_eq!(
            prune_stale(&dir.join("missing"), later, false).unwrap(),
            Stale::default()
        );
    }
}
