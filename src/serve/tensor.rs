//! Tensors of the Open Inference Protocol: OIP datatypes (`FP32`, `INT64`, `BYTES`, ...), their
//! values from JSON (`data`, flat or nested, row-major) and from the binary-tensor extension
//! (little-endian, `BYTES` as 4-byte length + bytes), back to JSON or binary, joined and split
//! along the batch dimension, and to and from ONNX Runtime values.

use crate::check::validate::inputs::FloatType;
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};

/// Largest tensor (elements) accepted or returned.
pub const MAX_ELEMENTS: usize = 1 << 26;

/// The values of one tensor, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// The OIP datatype of an ONNX element type name (as `check::validate` names them).
pub fn oip_datatype(onnx: &str) -> Option<&'static str> {
    Some(match onnx {
        "bool" => "BOOL",
        "uint8" => "UINT8",
        "uint16" => "UINT16",
        "uint32" => "UINT32",
        "uint64" => "UINT64",
        "int8" => "INT8",
        "int16" => "INT16",
        "int32" => "INT32",
        "int64" => "INT64",
        "float16" => "FP16",
        "bfloat16" => "BF16",
        "float32" => "FP32",
        "float64" => "FP64",
        "string" => "BYTES",
        _ => return None,
    })
}

/// Every OIP datatype mlart serves.
pub const DATATYPES: [&str; 14] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "BF16", "FP32", "FP64", "BYTES",
];

/// Apply `$body` to the vector inside any variant, binding it as `$v`.
macro_rules! each {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Data::Bool($v) => $body,
            Data::U8($v) => $body,
            Data::U16($v) => $body,
            Data::U32($v) => $body,
            Data::U64($v) => $body,
            Data::I8($v) => $body,
            Data::I16($v) => $body,
            Data::I32($v) => $body,
            Data::I64($v) => $body,
            Data::F16($v) => $body,
            Data::BF16($v) => $body,
            Data::F32($v) => $body,
            Data::F64($v) => $body,
            Data::Bytes($v) => $body,
        }
    };
}

/// Rebuild the same variant around `$body` (which makes a Vec from `$v`).
macro_rules! map_same {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            Data::Bool($v) => Data::Bool($body),
            Data::U8($v) => Data::U8($body),
            Data::U16($v) => Data::U16($body),
            Data::U32($v) => Data::U32($body),
            Data::U64($v) => Data::U64($body),
            Data::I8($v) => Data::I8($body),
            Data::I16($v) => Data::I16($body),
            Data::I32($v) => Data::I32($body),
            Data::I64($v) => Data::I64($body),
            Data::F16($v) => Data::F16($body),
            Data::BF16($v) => Data::BF16($body),
            Data::F32($v) => Data::F32($body),
            Data::F64($v) => Data::F64($body),
            Data::Bytes($v) => Data::Bytes($body),
        }
    };
}

impl Data {
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> &'static str {
        match self {
            Data::Bool(_) => "BOOL",
            Data::U8(_) => "UINT8",
            Data::U16(_) => "UINT16",
            Data::U32(_) => "UINT32",
            Data::U64(_) => "UINT64",
            Data::I8(_) => "INT8",
            Data::I16(_) => "INT16",
            Data::I32(_) => "INT32",
            Data::I64(_) => "INT64",
            Data::F16(_) => "FP16",
            Data::BF16(_) => "BF16",
            Data::F32(_) => "FP32",
            Data::F64(_) => "FP64",
            Data::Bytes(_) => "BYTES",
        }
    }

    /// Typed values of `datatype` from JSON scalars. The message names the first bad value.
    pub fn from_json(datatype: &str, flat: &[&serde_json::Value]) -> Result<Data, String> {
        let bad = |v: &serde_json::Value| format!("{v} is not a {datatype} value");
        macro_rules! ints {
            ($variant:ident, $t:ty) => {
                Data::$variant(
                    flat.iter()
                        .map(|v| {
                            let x = v
                                .as_i64()
                                .map(i128::from)
                                .or_else(|| v.as_u64().map(i128::from))
                                .ok_or_else(|| bad(v))?;
                            <$t>::try_from(x).map_err(|_| format!("{x} does not fit in {datatype}"))
                        })
                        .collect::<Result<_, String>>()?,
                )
            };
        }
        // A finite number the datatype cannot hold would become inf: refused, as integers
        // that do not fit are (the check `validate --samples` makes too).
        macro_rules! floats {
            ($variant:ident, $conv:expr, $ft:expr) => {
                Data::$variant(
                    flat.iter()
                        .map(|v| {
                            let x = v.as_f64().ok_or_else(|| bad(v))?;
                            $ft.check(x, v, datatype)?;
                            Ok($conv(x))
                        })
                        .collect::<Result<_, String>>()?,
                )
            };
        }
        Ok(match datatype {
            "BOOL" => Data::Bool(
                flat.iter()
                    .map(|v| v.as_bool().ok_or_else(|| bad(v)))
                    .collect::<Result<_, String>>()?,
            ),
            "UINT8" => ints!(U8, u8),
            "UINT16" => ints!(U16, u16),
            "UINT32" => ints!(U32, u32),
            "UINT64" => ints!(U64, u64),
            "INT8" => ints!(I8, i8),
            "INT16" => ints!(I16, i16),
            "INT32" => ints!(I32, i32),
            "INT64" => ints!(I64, i64),
            "FP16" => floats!(F16, half::f16::from_f64, FloatType::F16),
            "BF16" => floats!(BF16, half::bf16::from_f64, FloatType::BF16),
            "FP32" => floats!(F32, |x| x as f32, FloatType::F32),
            "FP64" => floats!(F64, |x: f64| x, FloatType::F64),
            "BYTES" => Data::Bytes(
                flat.iter()
                    .map(|v| {
                        v.as_str()
                            .map(|s| s.as_bytes().to_vec())
                            .ok_or_else(|| bad(v))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => return Err(format!("unknown datatype {other:?}")),
        })
    }

    /// `n` values of `datatype` from the binary-tensor extension's bytes.
    pub fn from_binary(datatype: &str, b: &[u8], n: usize) -> Result<Data, String> {
        if datatype == "BYTES" {
            let mut out = Vec::with_capacity(n.min(b.len() / 4));
            let mut rest = b;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("BYTES data ends inside a 4-byte length".into());
                }
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                rest = &rest[4..];
                if len > rest.len() {
                    return Err(format!(
                        "a BYTES element of {len} bytes where {} remain",
                        rest.len()
                    ));
                }
                out.push(rest[..len].to_vec());
                rest = &rest[len..];
            }
            if out.len() != n {
                return Err(format!(
                    "{} BYTES elements where the shape has {n}",
                    out.len()
                ));
            }
            return Ok(Data::Bytes(out));
        }
        let size =
            element_size(datatype).ok_or_else(|| format!("unknown datatype {datatype:?}"))?;
        if b.len() != n * size {
            return Err(format!(
                "{} bytes where the shape needs {n} x {size} = {}",
                b.len(),
                n * size
            ));
        }
        macro_rules! le {
            ($variant:ident, $t:ty, $w:expr) => {
                Data::$variant(
                    b.chunks_exact($w)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            };
        }
        Ok(match datatype {
            "BOOL" => Data::Bool(b.iter().map(|x| *x != 0).collect()),
            "UINT8" => Data::U8(b.to_vec()),
            "UINT16" => le!(U16, u16, 2),
            "UINT32" => le!(U32, u32, 4),
            "UINT64" => le!(U64, u64, 8),
            "INT8" => Data::I8(b.iter().map(|x| *x as i8).collect()),
            "INT16" => le!(I16, i16, 2),
            "INT32" => le!(I32, i32, 4),
            "INT64" => le!(I64, i64, 8),
            "FP16" => le!(F16, half::f16, 2),
            "BF16" => le!(BF16, half::bf16, 2),
            "FP32" => le!(F32, f32, 4),
            "FP64" => le!(F64, f64, 8),
            _ => unreachable!("element_size knows the datatype"),
        })
    }

    /// The values as a flat JSON array. Non-finite floats (which JSON cannot hold) are null;
    /// BYTES that are not UTF-8 are lossily converted (ask for binary output to get them exact).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as V;
        let f = |x: f64| {
            serde_json::Number::from_f64(x)
                .map(V::Number)
                .unwrap_or(V::Null)
        };
        V::Array(match self {
            Data::Bool(v) => v.iter().map(|x| V::Bool(*x)).collect(),
            Data::U8(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::U16(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::U32(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::U64(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::I8(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::I16(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::I32(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::I64(v) => v.iter().map(|x| V::from(*x)).collect(),
            Data::F16(v) => v.iter().map(|x| f(x.to_f64())).collect(),
            Data::BF16(v) => v.iter().map(|x| f(x.to_f64())).collect(),
            Data::F32(v) => v.iter().map(|x| f(*x as f64)).collect(),
            Data::F64(v) => v.iter().map(|x| f(*x)).collect(),
            Data::Bytes(v) => v
                .iter()
                .map(|x| V::String(String::from_utf8_lossy(x).into_owned()))
                .collect(),
        })
    }

    /// Append the values in the binary-tensor encoding.
    pub fn to_binary(&self, out: &mut Vec<u8>) {
        macro_rules! le {
            ($v:expr) => {
                for x in $v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            };
        }
        match self {
            Data::Bool(v) => out.extend(v.iter().map(|x| *x as u8)),
            Data::U8(v) => out.extend_from_slice(v),
            Data::U16(v) => le!(v),
            Data::U32(v) => le!(v),
            Data::U64(v) => le!(v),
            Data::I8(v) => out.extend(v.iter().map(|x| *x as u8)),
            Data::I16(v) => le!(v),
            Data::I32(v) => le!(v),
            Data::I64(v) => le!(v),
            Data::F16(v) => le!(v),
            Data::BF16(v) => le!(v),
            Data::F32(v) => le!(v),
            Data::F64(v) => le!(v),
            Data::Bytes(v) => {
                for x in v {
                    out.extend_from_slice(&(x.len() as u32).to_le_bytes());
                    out.extend_from_slice(x);
                }
            }
        }
    }

    /// Join same-typed parts end to end (the batch dimension is the outermost).
    pub fn concat(parts: Vec<Data>) -> Result<Data, String> {
        let mut it = parts.into_iter();
        let mut first = it.next().ok_or("nothing to join")?;
        for p in it {
            let (a, b) = (first.datatype(), p.datatype());
            macro_rules! ext {
                ($variant:ident) => {
                    match (&mut first, p) {
                        (Data::$variant(x), Data::$variant(y)) => x.extend(y),
                        _ => return Err(format!("cannot join {a} and {b}")),
                    }
                };
            }
            match a {
                "BOOL" => ext!(Bool),
                "UINT8" => ext!(U8),
                "UINT16" => ext!(U16),
                "UINT32" => ext!(U32),
                "UINT64" => ext!(U64),
                "INT8" => ext!(I8),
                "INT16" => ext!(I16),
                "INT32" => ext!(I32),
                "INT64" => ext!(I64),
                "FP16" => ext!(F16),
                "BF16" => ext!(BF16),
                "FP32" => ext!(F32),
                "FP64" => ext!(F64),
                _ => ext!(Bytes),
            }
        }
        Ok(first)
    }

    /// Split into consecutive parts of `lens` elements each (which must add up to the length).
    pub fn split(self, lens: &[usize]) -> Result<Vec<Data>, String> {
        if lens.iter().sum::<usize>() != self.len() {
            return Err(format!(
                "cannot split {} values into parts of {lens:?}",
                self.len()
            ));
        }
        let mut out = Vec::with_capacity(lens.len());
        let mut d = self;
        for n in lens {
            let rest = map_same!(&mut d, v => v.split_off(*n));
            out.push(std::mem::replace(&mut d, rest));
        }
        Ok(out)
    }
}

/// Bytes per element of a fixed-size datatype (None for BYTES and unknown ones).
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

/// Flatten JSON `data` (flat, or nested to any depth up to 32) into its scalars.
pub fn flatten_json(v: &serde_json::Value) -> Result<Vec<&serde_json::Value>, String> {
    fn walk<'v>(
        v: &'v serde_json::Value,
        depth: usize,
        out: &mut Vec<&'v serde_json::Value>,
    ) -> Result<(), String> {
        match v {
            serde_json::Value::Array(a) => {
                if depth > 32 {
                    return Err("nested more than 32 deep".into());
                }
                for x in a {
                    walk(x, depth + 1, out)?;
                }
                Ok(())
            }
            serde_json::Value::Object(_) => Err("an object where a value was expected".into()),
            other => {
                out.push(other);
                Ok(())
            }
        }
    }
    let mut out = Vec::new();
    match v {
        serde_json::Value::Array(_) => walk(v, 0, &mut out)?,
        _ => return Err("`data` is not an array".into()),
    }
    Ok(out)
}

/// When `data` is nested (an array holds arrays), its nesting must be `shape`'s: at every
/// level as many entries as that dimension, values only at the last. Flat data passes as is.
/// The error names the path of the first bad entry (`data[0]`, `data[1][2]`).
pub fn check_nesting(data: &serde_json::Value, shape: &[usize]) -> Result<(), String> {
    use serde_json::Value;
    let Value::Array(top) = data else {
        return Ok(());
    };
    if !top.iter().any(Value::is_array) {
        return Ok(());
    }
    fn walk(v: &Value, path: &mut String, depth: usize, shape: &[usize]) -> Result<(), String> {
        let last = depth == shape.len();
        match v {
            Value::Array(_) if last => Err(format!(
                "{path} is a list where shape {shape:?} wants a single value"
            )),
            Value::Array(a) => {
                if a.len() != shape[depth] {
                    return Err(format!(
                        "{path} has {} values, shape {shape:?} wants {}",
                        a.len(),
                        shape[depth]
                    ));
                }
                for (i, x) in a.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(x, path, depth + 1, shape)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ if !last => Err(format!(
                "{path} is a single value where shape {shape:?} wants a list of {}",
                shape[depth]
            )),
            _ => Ok(()),
        }
    }
    walk(data, &mut "data".to_string(), 0, shape)
}

/// An ONNX Runtime value of a tensor.
pub fn to_ort(t: &Tensor) -> Result<DynValue, String> {
    let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
    macro_rules! mk {
        ($v:expr) => {
            OrtTensor::from_array((shape, $v.clone())).map(|t| t.into_dyn())
        };
    }
    let r = match &t.data {
        Data::Bool(v) => mk!(v),
        Data::U8(v) => mk!(v),
        Data::U16(v) => mk!(v),
        Data::U32(v) => mk!(v),
        Data::U64(v) => mk!(v),
        Data::I8(v) => mk!(v),
        Data::I16(v) => mk!(v),
        Data::I32(v) => mk!(v),
        Data::I64(v) => mk!(v),
        Data::F16(v) => mk!(v),
        Data::BF16(v) => mk!(v),
        Data::F32(v) => mk!(v),
        Data::F64(v) => mk!(v),
        Data::Bytes(v) => {
            let strings = v
                .iter()
                .map(|b| {
                    let s = std::str::from_utf8(b).map_err(|_| {
                        format!("input {:?}: a BYTES element that is not UTF-8 (the model takes strings)", t.name)
                    })?;
                    if s.contains('\0') {
                        return Err(format!("input {:?}: a string with a NUL character", t.name));
                    }
                    Ok(s.to_string())
                })
                .collect::<Result<Vec<String>, String>>()?;
            OrtTensor::from_string_array((shape, &strings[..])).map(|t| t.into_dyn())
        }
    };
    r.map_err(|e| format!("input {:?}: {e}", t.name))
}

/// A tensor copied out of an ONNX Runtime output.
pub fn from_ort(name: &str, v: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = v.dtype() else {
        return Err(format!("output {name:?} is not a tensor"));
    };
    use TensorElementType as T;
    macro_rules! ext {
        ($variant:ident, $t:ty) => {{
            let (s, d) = v
                .try_extract_tensor::<$t>()
                .map_err(|e| format!("output {name:?}: {e}"))?;
            (
                s.iter().map(|x| (*x).max(0) as usize).collect::<Vec<_>>(),
                Data::$variant(d.to_vec()),
            )
        }};
    }
    let (shape, data) = match ty {
        T::Bool => ext!(Bool, bool),
        T::Uint8 => ext!(U8, u8),
        T::Uint16 => ext!(U16, u16),
        T::Uint32 => ext!(U32, u32),
        T::Uint64 => ext!(U64, u64),
        T::Int8 => ext!(I8, i8),
        T::Int16 => ext!(I16, i16),
        T::Int32 => ext!(I32, i32),
        T::Int64 => ext!(I64, i64),
        T::Float16 => ext!(F16, half::f16),
        T::Bfloat16 => ext!(BF16, half::bf16),
        T::Float32 => ext!(F32, f32),
        T::Float64 => ext!(F64, f64),
        T::String => {
            let (s, d) = v
                .try_extract_strings()
                .map_err(|e| format!("output {name:?}: {e}"))?;
            (
                s.iter().map(|x| (*x).max(0) as usize).collect(),
                Data::Bytes(d.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(format!(
                "output {name:?} has element type {other:?}, which OIP cannot carry"
            ))
        }
    };
    Ok(Tensor {
        name: name.to_string(),
        shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_by_datatype() {
        let v = json!([[1, 2], [3, 4]]);
        let flat = flatten_json(&v).unwrap();
        assert_eq!(
            Data::from_json("INT8", &flat).unwrap(),
            Data::I8(vec![1, 2, 3, 4])
        );
        assert_eq!(
            Data::from_json("FP32", &flat).unwrap(),
            Data::F32(vec![1.0, 2.0, 3.0, 4.0])
        );
        let big = json!([300]);
        let flat = flatten_json(&big).unwrap();
        assert!(Data::from_json("UINT8", &flat)
            .unwrap_err()
            .contains("does not fit in UINT8"));
        let neg = json!([-1]);
        assert!(Data::from_json("UINT64", &flatten_json(&neg).unwrap()).is_err());
        let s = json!(["a", 1]);
        assert_eq!(
            Data::from_json("BYTES", &flatten_json(&s).unwrap()).unwrap_err(),
            "1 is not a BYTES value"
        );
        assert!(Data::from_json("FP32", &flatten_json(&json!(["x"])).unwrap()).is_err());
        assert!(Data::from_json("BOOL", &flatten_json(&json!([1])).unwrap()).is_err());
        assert!(Data::from_json("COMPLEX", &[]).is_err());
        assert!(flatten_json(&json!({"a": 1})).is_err());
        assert!(flatten_json(&json!([{"a": 1}])).is_err());
        assert!(flatten_json(&json!(3)).is_err());
        let deep = (0..40).fold(json!(1), |v, _| json!([v]));
        assert!(flatten_json(&deep).is_err());
    }

    #[test]
    fn json_numbers_out_of_range_are_refused_not_inf() {
        let one = |dt: &str, v: serde_json::Value| {
            let v = json!([v]);
            Data::from_json(dt, &flatten_json(&v).unwrap())
        };
        for (dt, x) in [
            ("FP32", json!(1e300)),
            ("FP32", json!(-3.5e38)),
            ("FP16", json!(70000.0)),
            ("BF16", json!(1e39)),
        ] {
            let e = one(dt, x.clone()).unwrap_err();
            assert!(e.contains(&format!("is out of range for {dt}")), "{e}");
        }
        assert_eq!(
            one("FP32", json!(1e300)).unwrap_err(),
            "1e+300 is out of range for FP32 (at most 3.4028235e38 in magnitude)"
        );
        // The largest finite values, and what rounds to them, pass; so do tiny ones (to 0).
        assert_eq!(
            one("FP32", json!(3.4028235e38)).unwrap(),
            Data::F32(vec![f32::MAX])
        );
        assert_eq!(
            one("FP16", json!(65504.0)).unwrap(),
            Data::F16(vec![half::f16::MAX])
        );
        assert!(one("FP32", json!(1e-300)).is_ok());
        assert!(one("FP64", json!(1e300)).is_ok());
        // Integers were range-checked already, and still are.
        assert!(one("INT8", json!(128))
            .unwrap_err()
            .contains("does not fit in INT8"));
        assert!(one("INT64", json!(1e300)).is_err());
        assert!(one("INT32", json!(1.5)).is_err());
    }

    #[test]
    fn nested_data_must_nest_as_the_shape() {
        let ok = |v: serde_json::Value, shape: &[usize]| check_nesting(&v, shape);
        assert!(ok(json!([1, 2, 3, 4, 5, 6, 7, 8]), &[2, 4]).is_ok());
        assert!(ok(json!([[1, 2, 3, 4], [5, 6, 7, 8]]), &[2, 4]).is_ok());
        assert!(ok(json!([[[1], [2]]]), &[1, 2, 1]).is_ok());
        assert_eq!(
            ok(json!([[1], [2, 3, 4, 5, 6, 7, 8]]), &[2, 4]).unwrap_err(),
            "data[0] has 1 values, shape [2, 4] wants 4"
        );
        assert_eq!(
            ok(json!([[1, 2, 3, 4], 5, 6, 7, 8]), &[2, 4]).unwrap_err(),
            "data has 5 values, shape [2, 4] wants 2"
        );
        assert_eq!(
            ok(json!([[1, 2], [3, 4]]), &[2, 1, 2]).unwrap_err(),
            "data[0] has 2 values, shape [2, 1, 2] wants 1"
        );
        assert_eq!(
            ok(json!([[1, 2], [3, [4]]]), &[2, 2]).unwrap_err(),
            "data[1][1] is a list where shape [2, 2] wants a single value"
        );
        assert_eq!(
            ok(json!([[1, 2], 3]), &[2, 2]).unwrap_err(),
            "data[1] is a single value where shape [2, 2] wants a list of 2"
        );
    }

    #[test]
    fn binary_round_trip_every_datatype() {
        let samples = [
            Data::Bool(vec![true, false]),
            Data::U8(vec![0, 255]),
            Data::U16(vec![1, 65535]),
            Data::U32(vec![7, u32::MAX]),
            Data::U64(vec![7, u64::MAX]),
            Data::I8(vec![-128, 127]),
            Data::I16(vec![-2, 3]),
            Data::I32(vec![-2, 3]),
            Data::I64(vec![i64::MIN, 3]),
            Data::F16(vec![half::f16::from_f32(1.5), half::f16::from_f32(-2.0)]),
            Data::BF16(vec![half::bf16::from_f32(1.5), half::bf16::from_f32(-2.0)]),
            Data::F32(vec![1.5, -2.25]),
            Data::F64(vec![1.5, -2.25]),
            Data::Bytes(vec![b"ab".to_vec(), vec![]]),
        ];
        for d in samples {
            let mut b = Vec::new();
            d.to_binary(&mut b);
            assert_eq!(Data::from_binary(d.datatype(), &b, 2).unwrap(), d);
            assert!(DATATYPES.contains(&d.datatype()));
            if d.datatype() != "BYTES" {
                assert!(Data::from_binary(d.datatype(), &b[1..], 2).is_err());
            }
        }
        assert!(Data::from_binary("BYTES", &[5, 0, 0, 0, b'a'], 1)
            .unwrap_err()
            .contains("5 bytes"));
        assert!(Data::from_binary("BYTES", &[1, 0], 1).is_err());
        assert!(Data::from_binary("BYTES", &[0, 0, 0, 0], 2).is_err());
    }

    #[test]
    fn join_and_split() {
        let j = Data::concat(vec![Data::F32(vec![1.0]), Data::F32(vec![2.0, 3.0])]).unwrap();
        assert_eq!(j, Data::F32(vec![1.0, 2.0, 3.0]));
        assert!(Data::concat(vec![Data::F32(vec![1.0]), Data::I64(vec![2])]).is_err());
        let parts = j.split(&[2, 1]).unwrap();
        assert_eq!(parts, vec![Data::F32(vec![1.0, 2.0]), Data::F32(vec![3.0])]);
        assert!(Data::I64(vec![1, 2]).split(&[1]).is_err());
    }

    #[test]
    fn json_output_non_finite_is_null() {
        assert_eq!(Data::F32(vec![f32::NAN, 1.0]).to_json(), json!([null, 1.0]));
        assert_eq!(oip_datatype("float32"), Some("FP32"));
        assert_eq!(oip_datatype("complex64"), None);
    }
}
