//! Cooperative cancellation. The binary makes one [`Cancel`] token, cancels it on Ctrl-C and
//! passes it down — in `registry::Options`, the bundle, validate, copy and pull options — so the
//! library holds no global state: long loops check the token and fail with an error of kind
//! interrupted, and the temp outputs are removed as their guards drop.

use crate::error::{io_error, Kind};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A cancellation token: clones share one state (0: running, 1: cancelled, 2: cancelled
/// again). `Default` is a token nobody cancels.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicU8>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask every holder of a clone to stop.
    pub fn cancel(&self) {
        self.0.fetch_max(1, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    /// A second Ctrl-C (or SIGTERM) after the first: stop now, even what a first one lets
    /// finish (serve's drain). The binary then exits 130 if the work has not by itself.
    pub fn cancel_again(&self) {
        self.0.store(2, Ordering::SeqCst);
    }

    pub fn is_cancelled_again(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 1
    }

    /// An `io::Error` of kind interrupted once cancelled. (Not `io::ErrorKind::Interrupted`:
    /// `io::copy` retries those, which would spin forever.)
    pub fn check(&self) -> io::Result<()> {
        if self.is_cancelled() {
            Err(io_error(Kind::Interrupted, "interrupted by the user"))
        } else {
            Ok(())
        }
    }

    /// Resolves once cancelled (checked every 50 ms), for `select!` beside a request.
    pub async fn cancelled(&self) {
        while !self.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `r`, failing with [`Cancel::check`]'s error at its next read once cancelled.
    pub fn reader<R: Read>(&self, r: R) -> CancelReader<R> {
        CancelReader {
            inner: r,
            cancel: self.clone(),
        }
    }
}

/// See [`Cancel::reader`].
pub struct CancelReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read> Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

/// A hidden temp directory in `parent` for work that is renamed into place when complete:
/// `.mlart-{what}-{name}-p{pid}-XXXXXX`. The pid lets a later run tell the leftovers of a
/// process that died without cleaning up (`kill -9`, a power cut) from work in progress:
/// before making its own, this removes such leftovers of dead processes in `parent`.
pub fn temp_dir_in(
    parent: &std::path::Path,
    what: &str,
    name: &str,
) -> io::Result<tempfile::TempDir> {
    remove_stale_temp_dirs(parent);
    tempfile::Builder::new()
        .prefix(&format!(".mlart-{what}-{name}-p{}-", std::process::id()))
        .tempdir_in(parent)
}

/// The pid in a name made by [`temp_dir_in`], if it is one.
fn temp_dir_pid(name: &str) -> Option<u32> {
    if !name.starts_with(".mlart-") {
        return None;
    }
    let (rest, _random) = name.rsplit_once('-')?;
    let (_, pid) = rest.rsplit_once("-p")?;
    pid.parse().ok()
}

/// Is a process with this pid alive (or not ours to judge)? Only ESRCH says it is gone.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    !(r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH))
}

/// Remove `parent`'s `.mlart-*-p<pid>-*` directories whose process is gone. Best effort: a
/// directory that cannot be read or removed is left alone.
pub fn remove_stale_temp_dirs(parent: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    let me = std::process::id();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_dir_pid(&name) else {
            continue;
        };
        if pid == me || process_alive(pid) || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => tracing::info!(
                "removed {} (left by process {pid}, which is gone)",
                e.path().display()
            ),
            Err(err) => tracing::debug!("leaving {}: {err}", e.path().display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_token_stops_its_clones_and_readers() {
        let t = Cancel::new();
        let c = t.clone();
        let mut r = c.reader(&b"data"[..]);
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert!(c.check().is_ok());
        t.cancel();
        assert!(c.is_cancelled());
        let e = r.read(&mut buf).unwrap_err();
        assert_eq!(crate::error::kind_of_io(&e), Some(Kind::Interrupted));
        assert!(!Cancel::new().is_cancelled(), "tokens are independent");
        // a second signal: still cancelled, and said to be the second
        assert!(!c.is_cancelled_again());
        t.cancel_again();
        t.cancel();
        assert!(c.is_cancelled() && c.is_cancelled_again());
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = {
            let mut c = std::process::Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        };
        let stale = dir
            .path()
            .join(format!(".mlart-tmp-iris.oci-p{dead}-AbC123"));
        std::fs::create_dir_all(stale.join("layout/blobs")).unwrap();
        let live = dir
            .path()
            .join(format!(".mlart-pull-m-p{}-XyZ789", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let init = dir.path().join(".mlart-pull-m-p1-XyZ789"); // pid 1 is always alive
        std::fs::create_dir(&init).unwrap();
        let foreign = dir.path().join(".mlart-tmp-old-style-AbC123");
        std::fs::create_dir(&foreign).unwrap();
        assert_eq!(temp_dir_pid(".mlart-tmp-iris.oci-p42-AbC123"), Some(42));
        assert_eq!(temp_dir_pid(".mlart-tmp-a-p-b-AbC123"), None);
        let t = temp_dir_in(dir.path(), "tmp", "iris.oci").unwrap();
        assert!(!stale.exists(), "a dead process's leftovers are removed");
        assert!(live.exists() && init.exists() && foreign.exists());
        let n = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temp_dir_pid(&n), Some(std::process::id()), "{n}");
    }
}
