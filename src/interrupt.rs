//! Cooperative cancellation. The binary makes one [`Cancel`] token, cancels it on Ctrl-C and
//! passes it down — in `registry::Options`, the bundle, validate, copy and pull options — so the
//! library holds no global state: long loops check the token and fail with an error of kind
//! interrupted, and the temp outputs are removed as their guards drop.

use crate::error::{io_error, Kind};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cancellation token: clones share one flag. `Default` is a token nobody cancels.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask every holder of a clone to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
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
    }
}
