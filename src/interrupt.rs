//! Cooperative cancellation: the CLI sets the flag on Ctrl-C, long copy loops check it and
//! fail with `Error::Interrupted`, and the temp outputs are removed as their guards drop.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// An error when cancellation was requested. Not of kind `Interrupted`: `io::copy` retries
/// those, which would spin forever.
pub fn check() -> std::io::Result<()> {
    if requested() {
        Err(std::io::Error::other("interrupted by the user"))
    } else {
        Ok(())
    }
}
