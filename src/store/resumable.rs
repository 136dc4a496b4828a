//! What a registry sink offers the build so that `bundle --push` run again after an
//! interruption sends only what the registry lacks (#24).
//!
//! - A raw layer (a file that is its own blob) is hashed first; its digest known, the
//!   registry is asked (`HEAD`) and the file is skipped, or uploaded as `push` uploads a blob
//!   of a layout: chunked, its session recorded in the cache and continued by the next run
//!   (`registry::upload`), reading the file from where the registry stopped.
//! - A tar layer's digest is known only once it is written. After its commit, a record says
//!   what it came out as: `<cache>/uploads/layers/<sha256 of "registry/repository#key">.json`,
//!   where the key is a hash of the layer's plan (the settings its bytes depend on, and each
//!   file's path, size, mode and mtime) and the record holds the hash of its content (the same
//!   settings and each file's sha256), its digest, size and diff_id. The next run with the same
//!   plan asks the registry for that digest; when it has it, the files are hashed (their
//!   digests go into the metadata anyway) and, when their content hash is the recorded one,
//!   the layer is not made again: bundles are reproducible to the byte, so the same content
//!   gives the same blob.
//!
//! A record is written atomically (temp file, rename) and is a fact about one blob, the
//! same whoever writes it: two runs writing it at once need no lock. Nothing here fails a push:
//! a record that cannot be written, read or parsed, or names another registry, repository or
//! key, is no record (debug log), and a record is only ever a digest to ask the registry for.

use crate::error::{Error, Result};
use crate::format::digest::{Digest, VerifyReader};
use crate::store::copy::Outcome;
use crate::store::registry_sink::RegistrySink;
use crate::store::{BlobRef, PutError, ReadFrom, Sent, Sink};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one tar layer came out as, recorded once the registry took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub registry: String,
    pub repository: String,
    /// The hash of the layer's plan (`build::layers`), hex.
    pub key: String,
    /// The hash of its content, hex.
    pub content: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    /// When it was written (seconds since the Unix epoch).
    pub created: u64,
}

/// A recalled record: the blob to ask the registry for, and the content it must stand for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recalled {
    pub content: Digest,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// Blobs a registry sink counts as they go: what `copy_blobs` returns for a copy.
pub type Done = Arc<Mutex<Vec<(BlobRef, Outcome)>>>;

/// The build's handle on a registry sink (cloned out of it, as `place::Placer` is out of a
/// layout): used from the threads that build the layers, without the sink's lock.
#[derive(Clone)]
pub struct Resumable {
    sink: Arc<RegistrySink>,
    /// None: no records (raw layers still skip what the registry has).
    records: Option<LayerRecords>,
    done: Done,
}

impl Resumable {
    /// `records`: the folder of layer records (`<sessions>/layers`).
    pub(crate) fn new(sink: RegistrySink, records: Option<PathBuf>, done: Done) -> Self {
        let r = &sink.remote().reference;
        let records = records.map(|dir| LayerRecords {
            dir,
            registry: r.resolve_registry().to_string(),
            repository: r.repository().to_string(),
        });
        Resumable {
            sink: Arc::new(sink),
            records,
            done,
        }
    }

    /// What the layer of plan `key` came out as in an earlier run to this repository.
    pub fn recall(&self, key: &Digest) -> Option<Recalled> {
        self.records.as_ref()?.recall(key)
    }

    /// The layer of plan `key` and content `content` is in the registry: say so for the
    /// next run.
    pub fn remember(&self, key: &Digest, content: &Digest, l: &LayerRef<'_>) {
        if let Some(r) = &self.records {
            r.remember(key, content, l);
        }
    }

    fn count(&self, digest: &Digest, size: u64, o: Outcome) {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).push((
            BlobRef {
                digest: digest.clone(),
                size,
            },
            o,
        ));
    }

    /// Whether the repository has the blob (`HEAD`).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool> {
        self.sink.has_blob(&BlobRef {
            digest: digest.clone(),
            size,
        })
    }

    /// A tar layer the registry has, not made again: counted as skipped.
    pub fn skipped(&self, digest: &Digest, size: u64) {
        self.count(digest, size, Outcome::Skipped);
    }

    /// The file at `path` as the blob `digest` (its sha256, just computed): skipped when the
    /// registry has it, else uploaded (verified as it is read: a file that changed since is
    /// an error), continuing the session an interrupted run recorded. `progress` gets the
    /// bytes sent, held by a continued session, or skipped.
    pub fn put_file(
        &self,
        path: &Path,
        digest: &Digest,
        size: u64,
        progress: &(dyn Fn(u64) + Sync),
        cancel: &crate::interrupt::Cancel,
    ) -> Result<()> {
        let blob = BlobRef {
            digest: digest.clone(),
            size,
        };
        if self.sink.has_blob(&blob)? {
            progress(size);
            self.count(digest, size, Outcome::Skipped);
            return Ok(());
        }
        let open = |from: ReadFrom| -> Result<crate::store::BlobRead<'_>> {
            let mut f = fs::File::open(path).map_err(|e| Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            })?;
            Ok(match from {
                ReadFrom::Offset(at) => {
                    // the rest, unverified: the registry checks the whole digest at the commit
                    f.seek(io::SeekFrom::Start(at)).map_err(|e| Error::Io {
                        context: format!("reading {}", path.display()),
                        source: e,
                    })?;
                    Box::new(cancel.reader(f))
                }
                _ => Box::new(cancel.reader(VerifyReader::new(f, digest.clone(), size))),
            })
        };
        let resumed = AtomicU64::new(0);
        let sent = |s| match s {
            Sent::Bytes(n) => progress(n),
            Sent::Restart(_) => resumed.store(0, Ordering::Relaxed),
            Sent::Resumed(n) => {
                resumed.store(n, Ordering::Relaxed);
                progress(n)
            }
        };
        match self.sink.put_blob_resumable(&blob, &open, &sent) {
            Ok(()) => {
                let o = match resumed.load(Ordering::Relaxed) {
                    0 => Outcome::Uploaded,
                    n => Outcome::Resumed(n),
                };
                self.count(digest, size, o);
                Ok(())
            }
            Err(PutError::Open(e) | PutError::Sink(e)) => Err(e),
            Err(PutError::Read(e)) if e.kind() == io::ErrorKind::InvalidData => Err(Error::Io {
                context: format!("reading {}", path.display()),
                source: io::Error::other(format!(
                    "the file changed while it was bundled ({e}): bundle again once it is written"
                )),
            }),
            Err(PutError::Read(e)) => Err(Error::from_io(
                &e,
                format!("reading {} to upload it: {e}", path.display()),
            )),
        }
    }
}

/// The layer records of one repository (`<cache>/uploads/layers/`).
#[derive(Clone, Debug)]
pub struct LayerRecords {
    pub dir: PathBuf,
    pub registry: String,
    pub repository: String,
}

impl LayerRecords {
    fn path(&self, key: &Digest) -> PathBuf {
        let name = format!("{}/{}#{}", self.registry, self.repository, key.hex());
        self.dir
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    /// What the layer of plan `key` came out as in an earlier run to this repository, when
    /// a usable record says so. Anything unusable is removed and is no record.
    pub fn recall(&self, key: &Digest) -> Option<Recalled> {
        let p = self.path(key);
        let raw = match fs::read(&p) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("layer record {}: {e}", p.display());
                return None;
            }
        };
        let why = match serde_json::from_slice::<LayerRecord>(&raw) {
            Err(e) => format!("not a layer record ({e})"),
            Ok(r) if r.registry != self.registry || r.repository != self.repository => format!(
                "it is for {}/{}, not {}/{}",
                r.registry, r.repository, self.registry, self.repository
            ),
            Ok(r) if r.key != key.hex() => format!("it is for the plan {}", r.key),
            Ok(r) => {
                let parsed = (
                    Digest::parse(&format!("sha256:{}", r.content)),
                    Digest::parse(&r.digest),
                    Digest::parse(&r.diff_id),
                );
                match parsed {
                    (Ok(content), Ok(digest), Ok(diff_id)) => {
                        return Some(Recalled {
                            content,
                            digest,
                            size: r.size,
                            diff_id,
                        })
                    }
                    _ => "a digest in it is malformed".to_string(),
                }
            }
        };
        tracing::debug!("layer record {}: ignored: {why}", p.display());
        let _ = fs::remove_file(&p);
        None
    }

    /// The layer of plan `key` and content `content` is in the registry as `digest`: say so
    /// for the next run. A failure is logged, never an error.
    pub fn remember(&self, key: &Digest, content: &Digest, l: &LayerRef<'_>) {
        let r = LayerRecord {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            key: key.hex().to_string(),
            content: content.hex().to_string(),
            digest: l.digest.to_string(),
            size: l.size,
            diff_id: l.diff_id.to_string(),
            created: crate::registry::sessions::now_secs(),
        };
        let p = self.path(key);
        if let Err(e) = write_atomically(&self.dir, &p, &r) {
            tracing::debug!("layer record {}: not recorded: {e}", p.display());
        }
    }
}

/// A layer's digests, as `remember` takes them.
pub struct LayerRef<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    pub diff_id: &'a Digest,
}

fn write_atomically(dir: &Path, p: &Path, r: &LayerRecord) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(&serde_json::to_vec_pretty(r).map_err(io::Error::other)?)?;
    tmp.persist(p).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path, repository: &str) -> LayerRecords {
        LayerRecords {
            dir: dir.join("layers"),
            registry: "127.0.0.1:5000".into(),
            repository: repository.into(),
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = records(tmp.path(), "ml/iris");
        let (key, content) = (Digest::of(b"plan"), Digest::of(b"content"));
        let (digest, diff_id) = (Digest::of(b"blob"), Digest::of(b"tar"));
        let l = LayerRef {
            digest: &digest,
            size: 9,
            diff_id: &diff_id,
        };
        assert_eq!(s.recall(&key), None);
        s.remember(&key, &content, &l);
        let want = Recalled {
            content: content.clone(),
            digest: digest.clone(),
            size: 9,
            diff_id: diff_id.clone(),
        };
        assert_eq!(s.recall(&key), Some(want.clone()));
        // another plan, another repository: nothing
        assert_eq!(s.recall(&Digest::of(b"other")), None);
        assert_eq!(records(tmp.path(), "ml/other").recall(&key), None);
        // spoiled records are ignored and removed
        let p = s.path(&key);
        let spoil = |f: &dyn Fn(&mut serde_json::Value)| {
            s.remember(&key, &content, &l);
            let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            f(&mut v);
            fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
            assert_eq!(s.recall(&key), None, "{v}");
            assert!(!p.exists());
        };
        spoil(&|v| v["repository"] = "ml/other".into());
        spoil(&|v| v["registry"] = "evil.example".into());
        spoil(&|v| v["key"] = Digest::of(b"x").hex().into());
        spoil(&|v| v["digest"] = "sha256:zz".into());
        spoil(&|v| v["diff_id"] = "md5:00".into());
        spoil(&|v| v["content"] = "../x".into());
        spoil(&|v| *v = serde_json::json!({"size": 1}));
        s.remember(&key, &content, &l);
        fs::write(&p, b"{not json").unwrap();
        assert_eq!(s.recall(&key), None);
        // a record that cannot be written is no error
        let blocked = LayerRecords {
            dir: p.join("not-a-dir"),
            ..s.clone()
        };
        fs::write(&p, b"x").unwrap();
        blocked.remember(&key, &content, &l);
        assert_eq!(blocked.recall(&key), None);
        // no temp file left behind
        let left: Vec<_> = fs::read_dir(&s.dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        s.remember(&key, &content, &l);
        assert_eq!(s.recall(&key), Some(want));
    }
}
