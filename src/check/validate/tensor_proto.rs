//! Sample tensors from `.pb` files: an ONNX `TensorProto` each (the ONNX Model Zoo's
//! `test_data_set_*/input_*.pb` and `output_*.pb`), decoded with prost and checked before
//! anything is sized from it: a known element type, at most 32 dims, none negative, an element
//! count within [`MAX_ELEMENTS`] that the data actually holds. Files that are not such a
//! tensor are errors naming the file, never a panic or an allocation the file does not pay for.

use super::inputs::Values;
use super::tensors::MAX_ELEMENTS;
use std::path::Path;

/// The fields of `onnx.TensorProto` mlart reads, with their numbers in
/// <https://github.com/onnx/onnx/blob/main/onnx/onnx.proto> (proto2; prost reads the packed
/// and the unpacked encodings of repeated numbers alike). Other fields are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    data_type: Option<i32>,
    /// `Segment segment = 3`: a tensor split over several messages.
    #[prost(bytes = "vec", optional, tag = "3")]
    segment: Option<Vec<u8>>,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    int64_data: Vec<i64>,
    #[prost(string, optional, tag = "8")]
    name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "9")]
    raw_data: Option<Vec<u8>>,
    #[prost(double, repeated, tag = "10")]
    double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    uint64_data: Vec<u64>,
    /// `DataLocation data_location = 14`: 1 is EXTERNAL (the data in another file).
    #[prost(int32, optional, tag = "14")]
    data_location: Option<i32>,
}

/// A sample tensor read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleTensor {
    /// The tensor's name in the file (empty when it has none).
    pub name: String,
    /// mlart's dtype name (`float32`, `int64`, …).
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub values: Values,
}

/// `TensorProto.DataType` -> (mlart's dtype name, bytes per element in `raw_data`).
fn data_type(t: i32) -> Result<(&'static str, usize), String> {
    Ok(match t {
        1 => ("float32", 4),
        2 => ("uint8", 1),
        3 => ("int8", 1),
        4 => ("uint16", 2),
        5 => ("int16", 2),
        6 => ("int32", 4),
        7 => ("int64", 8),
        8 => ("string", 0),
        9 => ("bool", 1),
        10 => ("float16", 2),
        11 => ("float64", 8),
        12 => ("uint32", 4),
        13 => ("uint64", 8),
        16 => ("bfloat16", 2),
        0 => return Err("data_type is 0 (UNDEFINED): not a tensor, or not a TensorProto".into()),
        14 | 15 => return Err(format!("data_type {t} (complex) cannot be a sample: mlart feeds numbers, bools and strings")),
        17..=26 => return Err(format!("data_type {t} (an 8-, 4- or 2-bit type) cannot be a sample: mlart feeds numbers, bools and strings")),
        _ => return Err(format!("data_type {t} is not an ONNX tensor element type")),
    })
}

/// Read and check one `.pb` file. The error is one line naming the problem (the caller adds
/// the file).
pub fn read(path: &Path) -> Result<SampleTensor, String> {
    let bytes = super::read_side_file(path, "sample tensor").map_err(|e| e.to_string())?;
    decode(&bytes)
}

/// Decode and check a `TensorProto`.
pub fn decode(bytes: &[u8]) -> Result<SampleTensor, String> {
    use prost::Message;
    let t = TensorProto::decode(bytes).map_err(|e| {
        format!("not an ONNX TensorProto ({e}); a test data file is a serialized onnx.TensorProto, as onnx.numpy_helper.from_array(…).SerializeToString() writes it")
    })?;
    let (dtype, width) = data_type(t.data_type.unwrap_or(0))?;
    if t.segment.is_some() {
        return Err("a segment of a tensor split over several messages: not supported".into());
    }
    if t.data_location == Some(1) {
        return Err("its data is in an external file (data_location EXTERNAL): not supported; save the sample with its data inside".into());
    }
    if t.dims.len() > 32 {
        return Err(format!("{} dims: at most 32", t.dims.len()));
    }
    let mut n: usize = 1;
    for d in &t.dims {
        let d =
            usize::try_from(*d).map_err(|_| format!("dims {:?}: a negative dimension", t.dims))?;
        n = n
            .checked_mul(d)
            .filter(|n| *n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "dims {:?}: more than mlart's limit of {MAX_ELEMENTS} elements",
                    t.dims
                )
            })?;
    }
    let shape: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    let values = match raw {
        Some(raw) => {
            if dtype == "string" {
                return Err("a string tensor with raw_data: strings are in string_data".into());
            }
            if raw.len() != n * width {
                return Err(format!(
                    "raw_data holds {} bytes, and dims {:?} of {dtype} need {}",
                    raw.len(),
                    t.dims,
                    n * width
                ));
            }
            from_raw(dtype, width, raw)
        }
        None => from_fields(dtype, &t)?,
    };
    if values.len() != n {
        return Err(format!(
            "it holds {} value(s), and dims {:?} need {n}",
            values.len(),
            t.dims
        ));
    }
    Ok(SampleTensor {
        name: t.name.unwrap_or_default(),
        dtype,
        shape,
        values,
    })
}

/// Little-endian elements of `width` bytes.
fn from_raw(dtype: &str, width: usize, raw: &[u8]) -> Values {
    let words = raw.chunks_exact(width).map(|c| {
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    // sign-extend a `width`-byte integer
    let signed = |w: u64| {
        let shift = 64 - 8 * width as u32;
        ((w << shift) as i64) >> shift
    };
    match dtype {
        "float32" => Values::Float(words.map(|w| f32::from_bits(w as u32) as f64).collect()),
        "float64" => Values::Float(words.map(f64::from_bits).collect()),
        "float16" => Values::Float(
            words
                .map(|w| half::f16::from_bits(w as u16).to_f64())
                .collect(),
        ),
        "bfloat16" => Values::Float(
            words
                .map(|w| half::bf16::from_bits(w as u16).to_f64())
                .collect(),
        ),
        "bool" => Values::Bool(words.map(|w| w != 0).collect()),
        "int8" | "int16" | "int32" | "int64" => Values::Int(words.map(signed).collect()),
        _ => Values::UInt(words.collect()),
    }
}

/// The typed fields, as onnx.proto assigns them: float_data (float), double_data (double),
/// int64_data (int64), uint64_data (uint32, uint64), string_data (string), and int32_data for
/// the rest (float16 and bfloat16 as their bits).
fn from_fields(dtype: &str, t: &TensorProto) -> Result<Values, String> {
    Ok(match dtype {
        "float32" => Values::Float(t.float_data.iter().map(|x| *x as f64).collect()),
        "float64" => Values::Float(t.double_data.clone()),
        "int64" => Values::Int(t.int64_data.clone()),
        "uint32" | "uint64" => Values::UInt(t.uint64_data.clone()),
        "string" => Values::Str(
            t.string_data
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| "a string in string_data is not UTF-8".to_string())
                })
                .collect::<Result<_, _>>()?,
        ),
        "float16" => Values::Float(
            t.int32_data
                .iter()
                .map(|x| half::f16::from_bits(*x as u16).to_f64())
                .collect(),
        ),
        "bfloat16" => Values::Float(
            t.int32_data
                .iter()
                .map(|x| half::bf16::from_bits(*x as u16).to_f64())
                .collect(),
        ),
        "bool" => Values::Bool(t.int32_data.iter().map(|x| *x != 0).collect()),
        "uint8" | "uint16" => Values::UInt(t.int32_data.iter().map(|x| *x as u32 as u64).collect()),
        _ => Values::Int(t.int32_data.iter().map(|x| *x as i64).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn proto(dims: &[i64], data_type: i32) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: Some(data_type),
            name: Some("x".into()),
            ..Default::default()
        }
    }

    #[test]
    fn typed_fields_and_raw_data() {
        let mut t = proto(&[2, 2], 1);
        t.float_data = vec![1.0, -2.5, 3.0, 0.25];
        let s = decode(&t.encode_to_vec()).unwrap();
        assert_eq!(
            (s.name.as_str(), s.dtype, &s.shape[..]),
            ("x", "float32", &[2, 2][..])
        );
        assert_eq!(s.values, Values::Float(vec![1.0, -2.5, 3.0, 0.25]));
        // the same as raw_data, little-endian
        let mut r = proto(&[2, 2], 1);
        r.raw_data = Some(
            [1.0f32, -2.5, 3.0, 0.25]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        );
        assert_eq!(decode(&r.encode_to_vec()).unwrap().values, s.values);
        let mut i = proto(&[3], 3); // int8 as raw bytes: sign-extended
        i.raw_data = Some(vec![0xff, 0x7f, 0x80]);
        assert_eq!(
            decode(&i.encode_to_vec()).unwrap().values,
            Values::Int(vec![-1, 127, -128])
        );
        let mut u = proto(&[2], 12); // uint32 in uint64_data
        u.uint64_data = vec![7, 4_000_000_000];
        assert_eq!(
            decode(&u.encode_to_vec()).unwrap().values,
            Values::UInt(vec![7, 4_000_000_000])
        );
        let mut h = proto(&[1], 10); // float16 bits in int32_data
        h.int32_data = vec![half::f16::from_f32(1.5).to_bits() as i32];
        assert_eq!(
            decode(&h.encode_to_vec()).unwrap().values,
            Values::Float(vec![1.5])
        );
        let mut st = proto(&[2], 8);
        st.string_data = vec![b"a".to_vec(), b"bc".to_vec()];
        assert_eq!(
            decode(&st.encode_to_vec()).unwrap().values,
            Values::Str(vec!["a".into(), "bc".into()])
        );
        // a scalar: no dims, one value
        let mut sc = proto(&[], 7);
        sc.int64_data = vec![42];
        let s = decode(&sc.encode_to_vec()).unwrap();
        assert_eq!((s.shape.len(), s.values), (0, Values::Int(vec![42])));
    }

    #[test]
    fn hostile_files_are_clear_errors() {
        let mut good = proto(&[2, 3], 1);
        good.raw_data = Some(vec![0; 24]);
        let bytes = good.encode_to_vec();
        // truncated anywhere: an error, never a panic
        for cut in 1..bytes.len() {
            if let Err(e) = decode(&bytes[..cut]) {
                assert!(!e.is_empty());
            }
        }
        let e = decode(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(e.contains("not an ONNX TensorProto"), "{e}");
        let cases: Vec<(TensorProto, &str)> = vec![
            // huge declared dims, no data: refused before anything is sized from them
            (
                {
                    let mut t = proto(&[1 << 40, 1 << 40], 1);
                    t.raw_data = Some(vec![0; 4]);
                    t
                },
                "limit",
            ),
            (
                {
                    let mut t = proto(&[4096, 4096, 4096], 1);
                    t.float_data = vec![1.0];
                    t
                },
                "limit",
            ),
            (proto(&[-1, 2], 1), "negative"),
            (proto(&[2], 0), "UNDEFINED"),
            (proto(&[2], 99), "not an ONNX tensor element type"),
            (proto(&[2], 14), "complex"),
            (
                {
                    let mut t = proto(&[2, 3], 1);
                    t.raw_data = Some(vec![0; 23]);
                    t
                },
                "raw_data holds 23 bytes",
            ),
            (
                {
                    let mut t = proto(&[2, 3], 7);
                    t.int64_data = vec![1, 2];
                    t
                },
                "holds 2 value(s)",
            ),
            (
                {
                    let mut t = proto(&[1], 8);
                    t.string_data = vec![vec![0xff]];
                    t
                },
                "not UTF-8",
            ),
            (
                {
                    let mut t = proto(&[1], 1);
                    t.float_data = vec![1.0];
                    t.data_location = Some(1);
                    t
                },
                "external",
            ),
            (proto(&[1; 33], 1), "at most 32"),
        ];
        for (t, want) in cases {
            let e = decode(&t.encode_to_vec()).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
        // not protobuf at all; empty
        assert!(decode(b"\xff\xff\xff\xff").is_err());
        assert!(decode(b"").unwrap_err().contains("UNDEFINED"));
    }
}
