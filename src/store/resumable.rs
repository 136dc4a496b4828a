//! What a registry sink offers the build so that `bundle --push` run again after an
//! interruption sends only what the registry lacks (#24).
//!
//! Every layer, raw (a file that is its own blob) or tar, streams to the registry as it is
//! made, hashed as it goes: each input byte is read once. Its digest is known only at its
//! end, so what finds it again is its *plan*: a hash of the settings its bytes depend on and
//! each file's path, size, mode and mtime (`build::resume`), known without reading a byte.
//!
//! - **While it uploads**, its session is recorded under the plan (`registry::planned`). A
//!   run after an interruption asks the registry what that session holds, makes the layer's
//!   bytes again (bundles are reproducible to the byte), hashes the first ones without
//!   sending them and sends the rest. The registry checks the digest at the commit: when the
//!   bytes were not the same after all, the layer is made again in a new session.
//! - **Once committed**, a record says what it came out as:
//!   `<cache>/uploads/layers/<sha256 of "registry/repository#key">.json`, holding the hash of
//!   its content (the same settings and each file's sha256), its digest, size and diff_id.
//!   The next run with the same plan asks the registry for that digest; when it has it, the
//!   files are hashed (their digests go into the metadata anyway) and, when their content hash
//!   is the recorded one, the layer is not sent again.
//!
//! A record is written atomically (temp file, rename) and is a fact about one blob, the
//! same whoever writes it: two runs writing it at once need no lock. Nothing here fails a push:
//! a record that cannot be written, read or parsed, or names another registry, repository or
//! key, is no record (debug log), and a record is only ever a digest to ask the registry for.

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::registry::planned::Planned;
use crate::store::copy::Outcome;
use crate::store::registry_sink::{RegistrySink, UploadWriter};
use crate::store::{BlobRef, Sink};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
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
    /// The bundle the repository holds, read when a big layer first misses its record
    /// (`store::previous`).
    previous: Arc<std::sync::OnceLock<Option<crate::store::previous::Previous>>>,
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
            previous: Default::default(),
        }
    }

    /// The bundle the repository holds (its target tag's, else its newest), read once, on
    /// first use: None when it has none or it cannot be read.
    pub fn previous(&self) -> Option<&crate::store::previous::Previous> {
        self.previous
            .get_or_init(|| crate::store::previous::Previous::load(self.sink.remote()))
            .as_ref()
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

    /// An upload of the layer of plan `key` (`size`: its blob's, when known before it is
    /// made), and the writer to make it into: a session an earlier run recorded, continued
    /// (the writer drops the first `Planned::held` bytes: the registry has them), else a new
    /// one. `fresh`: a new one in any case.
    pub fn begin(
        &self,
        key: &Digest,
        size: Option<u64>,
        fresh: bool,
    ) -> Result<(UploadWriter, Planned)> {
        let p = self.sink.remote().open_planned(key, size, fresh)?;
        Ok((self.sink.writer(Some(&p)), p))
    }

    /// The layer made: commit it as `digest`, counted as uploaded, or resumed after the bytes
    /// the session held. The record of a session goes once it is committed, or when the
    /// registry refused to commit a continued one (`Failed::Refused`: its bytes were not the
    /// layer's); else, after an interruption or a failure, it stays for the next attempt.
    pub fn commit(
        &self,
        w: UploadWriter,
        p: Planned,
        digest: &Digest,
        size: u64,
    ) -> std::result::Result<(), Failed> {
        let held = p.held;
        if self
            .sink
            .already_there(&w, digest)
            .map_err(Failed::Sending)?
        {
            p.forget();
            self.count(digest, size, Outcome::Skipped);
            return Ok(());
        }
        let location = self.sink.end(w, digest, size).map_err(Failed::Sending)?;
        match self.sink.commit_at(&location, digest) {
            Ok(()) => {
                p.forget();
                let o = match held {
                    0 => Outcome::Uploaded,
                    n => Outcome::Resumed(n),
                };
                self.count(digest, size, o);
                Ok(())
            }
            Err(e) if held > 0 && !matches!(e, Error::Interrupted) => {
                p.forget();
                Err(Failed::Refused(e))
            }
            Err(e) => Err(Failed::Sending(e)),
        }
    }

    /// After failed attempt `attempt` (from 0) of a layer: wait as `push` waits before it
    /// tries a blob again (`MLART_RETRIES` attempts more, exponential backoff from
    /// `MLART_RETRY_BASE_MS`); false when no attempt is left or a Ctrl-C came.
    pub fn again(&self, attempt: u32) -> bool {
        use crate::registry::{backoff_base, block_on, max_retries, pause};
        if attempt >= max_retries() {
            return false;
        }
        let wait = backoff_base(attempt);
        tracing::debug!(
            "trying the layer again in {wait:?} (attempt {})",
            attempt + 1
        );
        block_on(pause(&self.sink.remote().cancel, wait))
    }
}

/// Why a layer's upload failed.
#[derive(Debug)]
pub enum Failed {
    /// Opening its session, making or sending its bytes, or committing a new session: worth
    /// another try (continuing the session) when the network or the registry is to blame.
    Sending(Error),
    /// The registry refused to commit a continued session (the bytes it held were not the
    /// layer's, or the session went bad): send the layer again in a new session.
    Refused(Error),
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Error {
        match f {
            Failed::Sending(e) | Failed::Refused(e) => e,
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
