//! The bound on what a layer may decompress to while it is pulled: the sizes mlart's metadata
//! lists for the layer's files, or, for another tool's compressed layer (no sizes listed), a
//! ratio to its compressed size. Past it, the stream stops with an integrity error.

use crate::error::{Error, Result};
use std::io::{self, Read};

/// A decompressed layer stream that may not exceed `left` bytes: past it, an integrity error
/// (the sizes the metadata declares for the layer's files bound what it may expand to).
pub(super) struct Bounded<R> {
    pub(super) inner: R,
    pub(super) left: u64,
    /// Another tool's layer: bounded by this ratio to its compressed size (not by sizes
    /// listed in a metadata document).
    pub(super) ratio: Option<u64>,
    pub(super) what: String,
}

/// How many times its compressed size another tool's compressed tar layer may unpack to:
/// `MLART_MAX_EXPANSION`, else 100 (plus 64 MiB).
pub(super) fn max_expansion() -> Result<u64> {
    match std::env::var("MLART_MAX_EXPANSION") {
        Err(_) => Ok(100),
        Ok(v) => v.trim().parse::<u64>().ok().filter(|r| *r > 0).ok_or_else(|| {
            Error::usage(format!(
                "MLART_MAX_EXPANSION={v:?}: give a whole number of times a compressed layer may expand (default 100)"
            ))
        }),
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            let why = match self.ratio {
                Some(r) => format!(
                    "{}: the layer decompresses to more than {r} times its size (plus 64 MiB); stopped there, a decompression bomb as far as mlart can tell. If the artifact is trusted and that compressible, pull it with MLART_MAX_EXPANSION set higher",
                    self.what
                ),
                None => format!(
                    "{}: the layer decompresses to more than the files the metadata lists in it (and their tar headers) can take; stopped there (a decompression bomb, or a layer changed after `mlart bundle`)",
                    self.what
                ),
            };
            return Err(crate::error::io_error(crate::error::Kind::Integrity, why));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
