//! mlart.json as a bundle carries it: written once, with its length counted on the way, into
//! memory while it is small and into a temp file past `SPILL` bytes; hashed when a digest is
//! needed (its blob, a signature), as it is copied. A bundle of
//! 100,000 files has a 27 MB mlart.json; held in memory (and copied into a layer's buffers)
//! it alone would break the memory bound.

use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::digest::HashInto;
use crate::format::json;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Seek, SeekFrom, Write};
use tempfile::SpooledTempFile;

/// Documents up to this size stay in memory (about 15,000 files' worth).
const SPILL: usize = 4 << 20;

pub(super) struct MetaDoc {
    spool: SpooledTempFile,
    pub len: u64,
    digest: Option<Digest>,
}

/// Counts what goes through.
struct Counted<'a> {
    inner: &'a mut SpooledTempFile,
    len: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn io_err(e: io::Error) -> Error {
    Error::Io {
        context: "writing mlart.json (into memory, or into a temp file in $TMPDIR when it is big)"
            .into(),
        source: e,
    }
}

impl MetaDoc {
    /// The canonical pretty JSON of `t` (`json::to_canonical_pretty`'s bytes), written once as
    /// it is made (its `files` streamed from disk, `build::entries`): `t` must be in key order
    /// (the metadata structs are, the test `fields_are_in_key_order` holds them to it), and a
    /// part that fails to read stops it with the error `failed` gives.
    pub fn of_in_order<T: Serialize>(
        t: &T,
        failed: impl FnOnce() -> Option<Error>,
    ) -> Result<MetaDoc> {
        match Self::write(t) {
            Ok(Some((spool, len))) => Ok(MetaDoc {
                spool,
                len,
                digest: None,
            }),
            Ok(None) => Err(failed().unwrap_or_else(|| {
                Error::of(
                    crate::error::Kind::Internal,
                    "writing mlart.json: its fields are not in key order",
                )
            })),
            Err(e) => Err(e),
        }
    }

    /// A document `fill` writes (into memory, past `SPILL` a temp file), through a buffer:
    /// model.sig and its statement (`build::omsdoc`).
    pub fn write_with(fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<MetaDoc> {
        let mut spool = SpooledTempFile::new(SPILL);
        let mut counted = Counted {
            inner: &mut spool,
            len: 0,
        };
        let mut w = io::BufWriter::with_capacity(64 << 10, &mut counted);
        fill(&mut w)?;
        w.flush().map_err(io_err)?;
        drop(w);
        let len = counted.len;
        Ok(MetaDoc {
            spool,
            len,
            digest: None,
        })
    }

    /// The canonical pretty JSON of `t` written straight into a spool, with its length; None
    /// when `t` is not in key order (or its serialization failed).
    fn write<T: Serialize>(t: &T) -> Result<Option<(SpooledTempFile, u64)>> {
        let mut spool = SpooledTempFile::new(SPILL);
        // (buffered: serde_json writes token by token, and past `SPILL` each write would be a
        // system call)
        let mut w = io::BufWriter::with_capacity(
            64 << 10,
            Counted {
                inner: &mut spool,
                len: 0,
            },
        );
        let straight = json::write_canonical_pretty(t, &mut w).map_err(io_err)?;
        let w = w.into_inner().map_err(|e| io_err(e.into_error()))?;
        let len = w.len;
        Ok(straight.then_some((spool, len)))
    }

    /// The document's digest (read through once, the first time).
    pub fn digest(&mut self) -> Result<Digest> {
        if self.digest.is_none() {
            let mut h = Sha256::new();
            io::copy(self.reader()?, &mut HashInto(&mut h)).map_err(io_err)?;
            self.digest = Some(Digest::from_hasher(h));
        }
        Ok(self.digest.clone().expect("just set"))
    }

    /// The bytes, from the start: each call rewinds.
    pub fn reader(&mut self) -> Result<&mut impl Read> {
        self.spool.seek(SeekFrom::Start(0)).map_err(io_err)?;
        Ok(&mut self.spool)
    }

    /// Copy the document into a new blob of `sink`, hashing it on the way; its digest.
    pub fn put<S: crate::store::layout::BlobSink>(&mut self, sink: &mut S) -> Result<Digest> {
        let mut w = sink.begin()?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        let r = self.reader()?;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            h.update(&buf[..n]);
            w.write_all(&buf[..n]).map_err(io_err)?;
        }
        let d = Digest::from_hasher(h);
        sink.commit(w, &d, self.len)?;
        self.digest = Some(d.clone());
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_spilled_documents_are_the_canonical_bytes() {
        for n in [3usize, 100_000] {
            // (100,000 entries: past SPILL, so the document went to a temp file)
            let v: std::collections::BTreeMap<String, Vec<u64>> = (0..n)
                .map(|i| (format!("k{i:06}"), vec![i as u64; 3]))
                .collect();
            let want = json::to_canonical_pretty(&v);
            assert_eq!(want.len() > SPILL, n > 3, "{}", want.len());
            let mut d = MetaDoc::of_in_order(&v, || None).unwrap();
            assert_eq!(d.spool.is_rolled(), n > 3);
            assert_eq!(d.len, want.len() as u64);
            assert_eq!(d.digest().unwrap(), Digest::of(&want));
            for _ in 0..2 {
                let mut got = Vec::new();
                d.reader().unwrap().read_to_end(&mut got).unwrap();
                assert!(got == want, "{n}: the bytes differ");
            }
        }
    }

    #[test]
    fn a_value_out_of_key_order_is_an_error_not_other_bytes() {
        #[derive(Serialize)]
        struct Unsorted {
            b: u32,
            a: Vec<u32>,
        }
        let t = Unsorted {
            b: 1,
            a: vec![2, 3],
        };
        let e = MetaDoc::of_in_order(&t, || None).err().unwrap();
        assert!(e.to_string().contains("not in key order"), "{e}");
    }

    #[test]
    fn a_part_that_fails_gives_its_own_error() {
        struct Failing;
        impl Serialize for Failing {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("disk gone"))
            }
        }
        let t: std::collections::BTreeMap<&str, Failing> = [("files", Failing)].into();
        let e = MetaDoc::of_in_order(&t, || Some(Error::input("the file list: disk gone")))
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "the file list: disk gone");
    }
}
