//! A Sigstore bundle read as it streams: the DSSE payload (the base64 of a statement that lists
//! every file of a bundle, tens of MB for 200,000 files) is decoded as it is read into a spool
//! (memory, then an unlinked temp file), its signature checked over the SHA-256 of its
//! pre-authentication encoding; the rest of the bundle (small: a key hint, the signatures) is
//! kept as a JSON tree, within `MAX_REST` bytes. Every malformed input is an error, never a
//! panic: cut short, bad base64, a payload that is not a string, fields too big or too deep.

use super::dsse::{check_header, check_signatures, pae_header};
use super::keys::PublicKey;
use crate::format::digest::HashInto;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Seek, SeekFrom, Write};
use tempfile::SpooledTempFile;

/// The bundle but its payload: at most this many bytes.
pub const MAX_REST: u64 = 1 << 20;
/// Nesting deeper than this is refused.
const MAX_DEPTH: usize = 32;
/// A payload up to this size stays in memory.
const SPILL: usize = 4 << 20;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A bundle's DSSE payload, decoded: its bytes (from the start) and length.
pub struct Payload {
    spool: SpooledTempFile,
    pub len: u64,
}

impl Payload {
    /// The payload's bytes, from the start (each call rewinds).
    pub fn reader(&mut self) -> io::Result<&mut SpooledTempFile> {
        self.spool.seek(SeekFrom::Start(0))?;
        Ok(&mut self.spool)
    }
}

/// Read the Sigstore bundle from `r` as it streams and check its DSSE signature against
/// `keys` (as `verify_bundle` does, with the same messages); with no keys, nothing is checked
/// (`inspect`). The payload, and the key that verified it.
pub fn open_streamed<'k>(
    r: &mut dyn Read,
    keys: &'k [PublicKey],
) -> Result<(Payload, Option<&'k PublicKey>), String> {
    let mut p = Parser {
        r: io::BufReader::with_capacity(64 << 10, r),
        rest: 0,
        payload: None,
    };
    p.ws()?;
    let bundle = p.value(&[], 0)?;
    p.ws()?;
    if p.peek()?.is_some() {
        return Err(invalid("trailing characters after the bundle"));
    }
    if !keys.is_empty() {
        check_header(&bundle)?;
    }
    let Some(mut payload) = p.payload else {
        return Err("the DSSE payload is not base64".into());
    };
    if keys.is_empty() {
        return Ok((payload, None));
    }
    let mut pae = Sha256::new();
    pae.update(pae_header(payload.len).as_bytes());
    let read = |e: io::Error| format!("reading the payload back: {e}");
    io::copy(payload.reader().map_err(read)?, &mut HashInto(&mut pae)).map_err(read)?;
    let k = check_signatures(&bundle, &pae.finalize().into(), keys)?;
    Ok((payload, Some(k)))
}

fn invalid(why: impl std::fmt::Display) -> String {
    format!("not a Sigstore bundle (invalid JSON: {why})")
}

struct Parser<R: io::BufRead> {
    r: R,
    /// Bytes read outside the payload.
    rest: u64,
    payload: Option<Payload>,
}

impl<R: io::BufRead> Parser<R> {
    fn peek(&mut self) -> Result<Option<u8>, String> {
        let buf = self.r.fill_buf().map_err(|e| format!("reading: {e}"))?;
        Ok(buf.first().copied())
    }

    /// The next byte (outside the payload: counted against `MAX_REST`).
    fn next(&mut self) -> Result<u8, String> {
        let b = self
            .peek()?
            .ok_or_else(|| invalid("the bundle ends early"))?;
        self.r.consume(1);
        self.rest += 1;
        if self.rest > MAX_REST {
            return Err(format!(
                "the bundle's fields other than its payload are over {MAX_REST} bytes"
            ));
        }
        Ok(b)
    }

    fn ws(&mut self) -> Result<(), String> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek()? {
            self.next()?;
        }
        Ok(())
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        match self.next()? {
            b if b == want => Ok(()),
            b => Err(invalid(format!(
                "{:?} where {:?} was expected",
                b as char, want as char
            ))),
        }
    }

    /// One value at `path` (the keys of the objects it is in).
    fn value(&mut self, path: &[&str], depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(invalid("nested too deep"));
        }
        let is_payload = path == ["dsseEnvelope", "payload"];
        match self.peek()? {
            Some(b'"') if is_payload => {
                if self.payload.is_some() {
                    return Err("the DSSE envelope has two payloads".into());
                }
                self.r.consume(1);
                self.payload = Some(self.payload_string()?);
                // (left out of the tree: the signature check needs only its hash)
                Ok(Value::Null)
            }
            _ if is_payload => Err("the DSSE payload is not base64".into()),
            Some(b'{') => {
                self.next()?;
                let mut m = Map::new();
                self.ws()?;
                if self.peek()? == Some(b'}') {
                    self.next()?;
                    return Ok(Value::Object(m));
                }
                loop {
                    self.ws()?;
                    self.expect(b'"')?;
                    let k = self.string()?;
                    self.ws()?;
                    self.expect(b':')?;
                    self.ws()?;
                    let mut p = path.to_vec();
                    p.push(&k);
                    let v = self.value(&p, depth + 1)?;
                    m.insert(k, v);
                    self.ws()?;
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Ok(Value::Object(m)),
                        b => return Err(invalid(format!("{:?} in an object", b as char))),
                    }
                }
            }
            Some(b'[') => {
                self.next()?;
                let mut a = Vec::new();
                self.ws()?;
                if self.peek()? == Some(b']') {
                    self.next()?;
                    return Ok(Value::Array(a));
                }
                loop {
                    self.ws()?;
                    a.push(self.value(&[], depth + 1)?);
                    self.ws()?;
                    match self.next()? {
                        b',' => continue,
                        b']' => return Ok(Value::Array(a)),
                        b => return Err(invalid(format!("{:?} in a list", b as char))),
                    }
                }
            }
            Some(b'"') => {
                self.next()?;
                Ok(Value::String(self.string()?))
            }
            Some(b't' | b'f' | b'n') => {
                let mut word = Vec::new();
                while let Some(b'a'..=b'z') = self.peek()? {
                    word.push(self.next()?);
                }
                match &word[..] {
                    b"true" => Ok(Value::Bool(true)),
                    b"false" => Ok(Value::Bool(false)),
                    b"null" => Ok(Value::Null),
                    _ => Err(invalid("an unknown word")),
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let mut num = Vec::new();
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek()? {
                    num.push(self.next()?);
                }
                serde_json::from_slice(&num).map_err(|e| invalid(format!("a number: {e}")))
            }
            Some(b) => Err(invalid(format!(
                "{:?} where a value was expected",
                b as char
            ))),
            None => Err(invalid("the bundle ends early")),
        }
    }

    /// The 4 hex digits of a `\u` escape.
    fn hex4(
        &mut self,
        next: &mut dyn FnMut(&mut Self) -> Result<u8, String>,
    ) -> Result<u32, String> {
        let mut n = 0;
        for _ in 0..4 {
            let d = (next(self)? as char)
                .to_digit(16)
                .ok_or_else(|| invalid("a \\u escape that is not hex"))?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    /// One character of a string after its opening quote: None at its closing quote.
    fn char_of(
        &mut self,
        next: &mut dyn FnMut(&mut Self) -> Result<u8, String>,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        match next(self)? {
            b'"' => Ok(false),
            b'\\' => {
                let c = match next(self)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hi = self.hex4(next)?;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            if next(self)? != b'\\' || next(self)? != b'u' {
                                return Err(invalid("a lone surrogate"));
                            }
                            let lo = self.hex4(next)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(invalid("a lone surrogate"));
                            }
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else {
                            hi
                        };
                        char::from_u32(code).ok_or_else(|| invalid("a lone surrogate"))?
                    }
                    _ => return Err(invalid("an unknown escape")),
                };
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                Ok(true)
            }
            b if b < 0x20 => Err(invalid("a control character in a string")),
            b => {
                out.push(b);
                Ok(true)
            }
        }
    }

    /// A string after its opening quote (outside the payload: within `MAX_REST`).
    fn string(&mut self) -> Result<String, String> {
        let mut out = Vec::new();
        while self.char_of(&mut |p: &mut Self| p.next(), &mut out)? {}
        String::from_utf8(out).map_err(|_| invalid("a string that is not UTF-8"))
    }

    /// The payload string after its opening quote, base64-decoded as it is read into a spool.
    fn payload_string(&mut self) -> Result<Payload, String> {
        let mut spool = SpooledTempFile::new(SPILL);
        let mut len = 0u64;
        let mut chars: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut decoded = vec![0u8; 64 << 10];
        let mut padded = false;
        let not_b64 = || "the DSSE payload is not base64".to_string();
        let mut raw = |p: &mut Self| -> Result<u8, String> {
            let b = p
                .peek()?
                .ok_or_else(|| invalid("the bundle ends early, in the payload"))?;
            p.r.consume(1);
            Ok(b)
        };
        loop {
            let more = self.char_of(&mut raw, &mut chars)?;
            // whole groups of 4 (64 KiB of them), or what is left at the end
            if !more || chars.len() >= 64 << 10 {
                if padded && !chars.is_empty() {
                    return Err(not_b64());
                }
                let whole = if more {
                    chars.len() / 4 * 4
                } else {
                    chars.len()
                };
                if chars[..whole].contains(&b'=') {
                    padded = true;
                }
                let n = B64
                    .decode_slice(&chars[..whole], &mut decoded)
                    .map_err(|_| not_b64())?;
                spool
                    .write_all(&decoded[..n])
                    .map_err(|e| format!("keeping the payload: {e}"))?;
                len += n as u64;
                chars.drain(..whole);
            }
            if !more {
                break;
            }
        }
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| format!("keeping the payload: {e}"))?;
        Ok(Payload { spool, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::dsse::{sign_attestation, verify_bundle};
    use crate::sign::keys::tests::keypair;

    fn payload_of(b: &[u8], keys: &[PublicKey]) -> Result<Vec<u8>, String> {
        let (mut p, k) = open_streamed(&mut &b[..], keys)?;
        assert_eq!(k.is_some(), !keys.is_empty());
        let mut v = Vec::new();
        p.reader().unwrap().read_to_end(&mut v).unwrap();
        assert_eq!(v.len() as u64, p.len);
        Ok(v)
    }

    #[test]
    fn streamed_reading_agrees_with_verify_bundle() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        // a payload of several 64 KiB chunks, and small ones (padding of every length)
        for n in [0usize, 1, 2, 3, 100, 200_000] {
            let st = serde_json::json!({"_type": crate::format::signature::INTOTO_STATEMENT, "x": "é\"".repeat(n)});
            let b = sign_attestation(&k, &st);
            let want = crate::format::json::to_canonical_bytes(&st);
            assert_eq!(
                payload_of(&b, std::slice::from_ref(&p)).unwrap(),
                want,
                "{n}"
            );
            assert_eq!(payload_of(&b, &[]).unwrap(), want);
            // the same with compact, escaped (`\/`) JSON
            let mut v: Value = serde_json::from_slice(&b).unwrap();
            let compact = serde_json::to_string(&v).unwrap().replace('/', "\\/");
            assert_eq!(
                payload_of(compact.as_bytes(), std::slice::from_ref(&p)).unwrap(),
                want
            );
            verify_bundle(&b, std::slice::from_ref(&p)).unwrap();
            v["dsseEnvelope"]["signatures"][0]["keyid"] = "ab".repeat(32).into();
            let e1 = verify_bundle(&serde_json::to_vec(&v).unwrap(), std::slice::from_ref(&p))
                .unwrap_err();
            let e2 =
                payload_of(&serde_json::to_vec(&v).unwrap(), std::slice::from_ref(&p)).unwrap_err();
            assert_eq!(e1, e2);
        }
    }

    #[test]
    fn hostile_bundles_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let st = serde_json::json!({"_type": crate::format::signature::INTOTO_STATEMENT, "x": "y".repeat(5000)});
        let b = sign_attestation(&k, &st);
        let keys = std::slice::from_ref(&p);
        // cut short anywhere
        for at in (0..b.len() - 2).step_by(97) {
            assert!(payload_of(&b[..at], keys).is_err(), "{at}");
        }
        let v: Value = serde_json::from_slice(&b).unwrap();
        let edited = |ptr: &str, to: Value| {
            let mut e = v.clone();
            *e.pointer_mut(ptr).unwrap() = to;
            serde_json::to_vec(&e).unwrap()
        };
        let payload = v["dsseEnvelope"]["payload"].as_str().unwrap().to_string();
        for (bad, why) in [
            (edited("/dsseEnvelope/payload", "!!!!".into()), "base64"),
            (
                edited("/dsseEnvelope/payload", format!("{payload}A").into()),
                "base64",
            ),
            (
                edited("/dsseEnvelope/payload", format!("AA==AAAA{payload}").into()),
                "base64",
            ),
            (edited("/dsseEnvelope/payload", 3.into()), "base64"),
            (
                edited("/dsseEnvelope/payloadType", "text/plain".into()),
                "payloadType",
            ),
            (edited("/mediaType", "x".into()), "mediaType"),
            (
                edited("/dsseEnvelope/signatures", "none".into()),
                "no signatures",
            ),
            (
                edited(
                    "/verificationMaterial/publicKey/hint",
                    "h".repeat(2 << 20).into(),
                ),
                "over",
            ),
            (b"[".repeat(100), "deep"),
            (b"{\"a\":tru}".to_vec(), "invalid JSON"),
            (b"{\"a\":\"\\ud800\"}".to_vec(), "surrogate"),
            (b"{} x".to_vec(), "trailing"),
            (b"{}".to_vec(), "mediaType"),
        ] {
            let e = payload_of(&bad, keys).unwrap_err();
            assert!(e.contains(why), "{why}: {e}");
        }
        // two payloads
        let two = String::from_utf8(b.clone()).unwrap().replacen(
            "\"payload\":",
            "\"payload\": \"AAAA\", \"payload\":",
            1,
        );
        assert!(payload_of(two.as_bytes(), keys)
            .unwrap_err()
            .contains("two payloads"));
    }
}
