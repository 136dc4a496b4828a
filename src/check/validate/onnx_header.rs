//! The two top-level facts of an ONNX file that ONNX Runtime does not expose: `ir_version`
//! (ModelProto field 1) and `opset_import` (field 8, OperatorSetIdProto {domain = 1,
//! version = 2}). A streaming scan of the top-level protobuf fields: every other field (the
//! graph, initializers, ...) is skipped by its length without being read, so a multi-GB model
//! costs a few reads. Hostile input gives an error, never a panic or a huge allocation.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// What the header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub ir_version: Option<i64>,
    /// Domain -> version; the default domain ("") is reported as `ai.onnx`.
    pub opset: BTreeMap<String, i64>,
}

/// At most this many opset entries are kept (a real model has a handful).
const MAX_OPSETS: usize = 256;
/// An opset entry larger than this is not an OperatorSetIdProto.
const MAX_OPSET_BYTES: u64 = 4096;

pub fn scan_file(path: &Path) -> Result<Header, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    scan(BufReader::new(f), len)
}

/// Scan a ModelProto of `len` bytes.
pub fn scan<R: Read + Seek>(mut r: R, len: u64) -> Result<Header, String> {
    let mut h = Header::default();
    let mut pos = 0u64;
    while pos < len {
        let (tag, n) = varint(&mut r).map_err(|e| format!("at byte {pos}: {e}"))?;
        pos += n;
        let field = tag >> 3;
        let wire = tag & 7;
        if field == 0 {
            return Err(format!("at byte {pos}: field number 0 is not protobuf"));
        }
        match wire {
            0 => {
                let (v, n) = varint(&mut r).map_err(|e| format!("at byte {pos}: {e}"))?;
                pos += n;
                if field == 1 {
                    h.ir_version = Some(v as i64);
                }
            }
            1 | 5 => {
                let skip = if wire == 1 { 8 } else { 4 };
                if pos + skip > len {
                    return Err(format!("at byte {pos}: truncated field {field}"));
                }
                seek_forward(&mut r, skip).map_err(|e| format!("at byte {pos}: {e}"))?;
                pos += skip;
            }
            2 => {
                let (l, n) = varint(&mut r).map_err(|e| format!("at byte {pos}: {e}"))?;
                pos += n;
                if l > len - pos {
                    return Err(format!(
                        "at byte {pos}: field {field} claims {l} bytes, past the end of the file"
                    ));
                }
                if field == 8 && l <= MAX_OPSET_BYTES {
                    let mut buf = vec![0u8; l as usize];
                    r.read_exact(&mut buf)
                        .map_err(|e| format!("at byte {pos}: {e}"))?;
                    let (domain, version) = opset_entry(&buf)
                        .map_err(|e| format!("at byte {pos}: opset_import: {e}"))?;
                    if h.opset.len() < MAX_OPSETS {
                        let d = if domain.is_empty() {
                            "ai.onnx".to_string()
                        } else {
                            domain
                        };
                        h.opset.insert(d, version);
                    }
                } else {
                    seek_forward(&mut r, l).map_err(|e| format!("at byte {pos}: {e}"))?;
                }
                pos += l;
            }
            _ => {
                return Err(format!(
                    "at byte {pos}: wire type {wire} (field {field}) is not in an ONNX model"
                ))
            }
        }
    }
    Ok(h)
}

fn seek_forward<R: Seek>(r: &mut R, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let step = n.min(i64::MAX as u64);
        r.seek(SeekFrom::Current(step as i64))?;
        n -= step;
    }
    Ok(())
}

/// A base-128 varint: (value, bytes read). At most 10 bytes.
fn varint<R: Read>(r: &mut R) -> Result<(u64, u64), String> {
    let mut v: u64 = 0;
    for i in 0..10u32 {
        let mut b = [0u8];
        match r.read(&mut b) {
            Ok(0) => return Err("truncated varint".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok((v, u64::from(i) + 1));
        }
    }
    Err("a varint longer than 10 bytes".into())
}

/// OperatorSetIdProto: domain (1, string), version (2, int64).
fn opset_entry(buf: &[u8]) -> Result<(String, i64), String> {
    let mut r = buf;
    let mut domain = String::new();
    let mut version = None;
    while !r.is_empty() {
        let (tag, _) = varint(&mut r)?;
        match (tag >> 3, tag & 7) {
            (1, 2) => {
                let (l, _) = varint(&mut r)?;
                if l > r.len() as u64 {
                    return Err("truncated domain".into());
                }
                let (d, rest) = r.split_at(l as usize);
                domain = String::from_utf8_lossy(d).into_owned();
                r = rest;
            }
            (2, 0) => version = Some(varint(&mut r)?.0 as i64),
            (_, 0) => {
                varint(&mut r)?;
            }
            (_, 2) => {
                let (l, _) = varint(&mut r)?;
                if l > r.len() as u64 {
                    return Err("truncated field".into());
                }
                r = &r[l as usize..];
            }
            (_, 1) if r.len() >= 8 => r = &r[8..],
            (_, 5) if r.len() >= 4 => r = &r[4..],
            (f, w) => return Err(format!("unexpected field {f} (wire type {w})")),
        }
    }
    Ok((domain, version.ok_or("an entry without a version")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn enc_varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn model(ir: u64, opsets: &[(&str, u64)], graph_len: usize) -> Vec<u8> {
        let mut m = Vec::new();
        enc_varint(1 << 3, &mut m);
        enc_varint(ir, &mut m);
        // producer_name (2, string)
        m.extend([0x12, 3, b'a', b'b', b'c']);
        // graph (7): opaque bytes
        enc_varint((7 << 3) | 2, &mut m);
        enc_varint(graph_len as u64, &mut m);
        m.extend(std::iter::repeat_n(0xffu8, graph_len));
        for (d, v) in opsets {
            let mut e = Vec::new();
            if !d.is_empty() {
                e.push(0x0a);
                enc_varint(d.len() as u64, &mut e);
                e.extend(d.as_bytes());
            }
            e.push(0x10);
            enc_varint(*v, &mut e);
            enc_varint((8 << 3) | 2, &mut m);
            enc_varint(e.len() as u64, &mut m);
            m.extend(e);
        }
        m
    }

    fn scan_bytes(b: &[u8]) -> Result<Header, String> {
        scan(Cursor::new(b), b.len() as u64)
    }

    #[test]
    fn reads_ir_version_and_opsets() {
        let h = scan_bytes(&model(8, &[("", 17), ("ai.onnx.ml", 1)], 300)).unwrap();
        assert_eq!(h.ir_version, Some(8));
        assert_eq!(h.opset["ai.onnx"], 17);
        assert_eq!(h.opset["ai.onnx.ml"], 1);
    }

    #[test]
    fn the_iris_example() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris/model/iris.onnx");
        let h = scan_file(&p).unwrap();
        assert_eq!(h.ir_version, Some(8));
        assert_eq!(h.opset.get("ai.onnx"), Some(&17));
        assert_eq!(h.opset.get("ai.onnx.ml"), Some(&1));
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let good = model(8, &[("", 17)], 50);
        // every truncation of a good model
        for n in 0..good.len() {
            let _ = scan_bytes(&good[..n]);
        }
        assert!(scan_bytes(&good[..good.len() - 1]).is_err());
        // a length past the end
        let mut m = vec![(7 << 3) | 2];
        enc_varint(u64::MAX, &mut m);
        assert!(scan_bytes(&m).unwrap_err().contains("past the end"));
        // an endless varint
        assert!(scan_bytes(&[0xff; 32]).unwrap_err().contains("varint"));
        // group wire types, field 0
        assert!(scan_bytes(&[(1 << 3) | 3]).is_err());
        assert!(scan_bytes(&[0x00]).is_err());
        // garbage, deterministic pseudo-random
        let mut rng = crate::testutil::XorShift(0x9e3779b97f4a7c15);
        for len in [1usize, 2, 7, 64, 1000] {
            for _ in 0..200 {
                let b = rng.bytes(len);
                let _ = scan_bytes(&b);
            }
        }
        // a huge opset entry is skipped, not allocated
        let mut m = vec![(8 << 3) | 2];
        enc_varint(1 << 20, &mut m);
        m.extend(vec![0u8; 1 << 20]);
        assert_eq!(scan_bytes(&m).unwrap().opset.len(), 0);
        // an opset entry without a version
        let m = vec![(8 << 3) | 2, 2, 0x0a, 0];
        assert!(scan_bytes(&m).unwrap_err().contains("version"));
        // empty input: no facts, no error
        assert_eq!(scan_bytes(&[]).unwrap(), Header::default());
    }
}
