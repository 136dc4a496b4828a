//! SHA-256 digests and the hashing reader/writer used to hash while copying.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read, Write};

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| {
            format!("digest {s:?} is not a sha256 digest (expected sha256:<64 hex>)")
        })?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "digest {s:?} is malformed (expected sha256:<64 lowercase hex>)"
            ));
        }
        Ok(Digest(s.to_string()))
    }

    pub fn from_hasher(h: Sha256) -> Self {
        Digest::from_sha256(h.finalize().into())
    }

    /// The digest whose sha256 is `bytes`.
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        // (one allocation: this runs once per file, ten thousand times for small files)
        let mut hex = [0u8; 64];
        hex::encode_to_slice(bytes, &mut hex).expect("32 bytes make 64 hex digits");
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        s.push_str(std::str::from_utf8(&hex).expect("hex digits"));
        Digest(s)
    }

    pub fn of(data: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// First 12 hex characters, for tables.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer that hashes and counts everything written through it.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A digest or size mismatch as an `io::Error` of kind integrity (`InvalidData`).
pub fn mismatch(msg: impl Into<String>) -> io::Error {
    crate::error::io_error(crate::error::Kind::Integrity, msg)
}

/// A reader that checks, at EOF, that the bytes read have the expected size and digest.
/// A mismatch is an `InvalidData` error, so a corrupt blob never reads as good.
pub struct VerifyReader<R> {
    inner: HashReader<R>,
    expected: Digest,
    size: u64,
    done: bool,
}

impl<R: Read> VerifyReader<R> {
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        VerifyReader {
            inner: HashReader::new(inner),
            expected,
            size,
            done: false,
        }
    }

    /// The rest of a blob after `from.have` bytes already held: `inner` reads from there, and
    /// the check at the end covers the whole blob (`from.hasher` holds the first bytes' hash).
    pub fn resume(inner: R, expected: Digest, size: u64, from: Resume) -> Self {
        VerifyReader {
            inner: HashReader {
                inner,
                hasher: from.hasher,
                count: from.have,
            },
            expected,
            size,
            done: false,
        }
    }
}

/// Where a partly fetched blob resumes: the bytes held and their running hash.
#[derive(Clone)]
pub struct Resume {
    pub have: u64,
    pub hasher: Sha256,
}

impl<R: Read> Read for VerifyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        // Never read past the declared size: a longer blob is as wrong as a shorter one.
        let left = self.size - self.inner.count();
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = if want == 0 {
            let mut probe = [0u8; 1];
            if self.inner.inner.read(&mut probe)? != 0 {
                return Err(mismatch(format!(
                    "blob {} is larger than its descriptor's size {}",
                    self.expected, self.size
                )));
            }
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        if n == 0 {
            self.done = true;
            if self.inner.count() != self.size {
                return Err(mismatch(format!(
                    "blob {} is truncated: {} of {} bytes",
                    self.expected,
                    self.inner.count(),
                    self.size
                )));
            }
            let got = Digest::from_hasher(std::mem::take(&mut self.inner.hasher));
            if got != self.expected {
                return Err(mismatch(format!(
                    "blob {} does not match its digest (got {got})",
                    self.expected
                )));
            }
        }
        Ok(n)
    }
}

pub fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.as_str().parse().expect("a valid sha256 digest")
}

/// A writer into a hasher (`io::copy` of a spool into a running sha256).
pub struct HashInto<'a>(pub &'a mut Sha256);

impl Write for HashInto<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_malformed() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }

    #[test]
    fn of_matches_known_value() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn verify_reader_catches_corruption() {
        let good = Digest::of(b"hello");
        let mut out = Vec::new();
        VerifyReader::new(&b"hello"[..], good.clone(), 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        let e = VerifyReader::new(&b"hellx"[..], good.clone(), 5).read_to_end(&mut Vec::new());
        assert!(e.unwrap_err().to_string().contains("does not match"));
        let e = VerifyReader::new(&b"hell"[..], good.clone(), 5).read_to_end(&mut Vec::new());
        assert!(e.unwrap_err().to_string().contains("truncated"));
        let e = VerifyReader::new(&b"hello!"[..], good, 5).read_to_end(&mut Vec::new());
        assert!(e.unwrap_err().to_string().contains("larger"));
    }
}
