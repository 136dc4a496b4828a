//! Uploads of a blob whose digest is known only at its end: a layer `bundle --push` streams
//! as it makes it (a file's bytes, or the tar its files make), hashed as it goes, each input
//! byte read once. Such a session is recorded under the layer's *plan* (`build::resume`: a
//! hash of what its bytes are made of, known without reading them) instead of a digest, so
//! the run after an interruption finds it: it asks the registry what the session holds
//! (upload status, `Range`), makes the layer's bytes again, hashes the first ones without
//! sending them and sends the rest. The registry checks the whole digest at the commit, so a
//! continuation whose bytes differ never becomes a blob (the caller then makes the layer again
//! in a new session).

use super::sessions::{now_secs, Lock, Locked, Record, Sessions};
use super::*;
use crate::error::Result;

/// An open upload session of a layer, new or continued.
pub struct Planned {
    /// Where the next PATCH goes.
    pub location: String,
    /// Bytes of the layer the registry holds (a continued session), 0 for a new one: the
    /// first `held` bytes of the layer are hashed, not sent.
    pub held: u64,
    recorder: Recorder,
    lock: Option<Lock>,
}

/// Rewrites a session's record as its location moves (after each PATCH: a registry such as
/// distribution signs the offset into it). Cheap to clone into the upload task.
#[derive(Clone)]
pub struct Recorder {
    /// None: nothing recorded (no cache, or another mlart uploads the same layer).
    store: Option<Sessions>,
    record: Record,
}

impl Recorder {
    pub fn save(&self, location: &str) {
        if let Some(s) = &self.store {
            s.save(&Record {
                location: location.to_string(),
                ..self.record.clone()
            });
        }
    }

    fn forget(&self) {
        if let Some(s) = &self.store {
            let r = &self.record;
            if let Ok(d) = crate::format::digest::Digest::parse(&r.digest) {
                s.remove(&r.registry, &r.repository, &d);
            }
        }
    }
}

impl Remote {
    /// Open the upload of the layer of plan `key` (`size`: the blob's, when known before it
    /// is made): the session an earlier run recorded when the registry still has it and holds
    /// some of it, else a new one (recorded before a byte goes). `fresh`: never continue one.
    pub fn open_planned(
        &self,
        key: &crate::format::digest::Digest,
        size: Option<u64>,
        fresh: bool,
    ) -> Result<Planned> {
        let Locked {
            registry,
            repository,
            store,
            lock,
        } = Locked::take(self, key);
        if let Some(st) = &store {
            if let Some(rec) = st.load_plan(&registry, &repository, key) {
                let status = if fresh {
                    Err("a new session is asked for".to_string())
                } else {
                    self.session_status(&rec.location, size.unwrap_or(u64::MAX))
                };
                match status {
                    Ok((held, next)) if held > 0 => {
                        let recorder = Recorder {
                            store: store.clone(),
                            record: rec,
                        };
                        recorder.save(&next);
                        return Ok(Planned {
                            location: next,
                            held,
                            recorder,
                            lock,
                        });
                    }
                    Ok(_) => tracing::debug!(
                        "layer {key}: its upload session holds nothing yet; starting afresh"
                    ),
                    Err(why) => tracing::debug!(
                        "layer {key}: its upload session cannot be continued ({why}); starting afresh"
                    ),
                }
                st.remove(&registry, &repository, key);
            }
        }
        let what = self.describe();
        let location = block_on(async {
            self.prime().await;
            retry(&self.cancel, "opening the upload", || async {
                self.client.begin_streamed_upload(&self.reference).await
            })
            .await
        })
        .map_err(|e| self.map_err(&what, "opening an upload", e))?;
        let recorder = Recorder {
            store,
            record: Record {
                registry,
                repository,
                digest: key.to_string(),
                size: 0,
                location: location.clone(),
                created: now_secs(),
                plan: true,
            },
        };
        recorder.save(&location);
        Ok(Planned {
            location,
            held: 0,
            recorder,
            lock,
        })
    }
}

impl Planned {
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Committed (or of no use): the record goes. Dropped instead, a session keeps its
    /// record for the next run (an interruption).
    pub fn forget(self) {
        self.recorder.forget();
        if let Some(l) = self.lock {
            l.release();
        }
    }
}
