//! Between mlart's values and ONNX Runtime's: element types and value kinds by name, input
//! tensors made from typed values, runs, and every output copied out for the checks.

use super::check::OutValue;
use super::inputs::{self, Values};
use super::plan::InputPlan;
use super::types::{Dim, ValueKind};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, DynValueTypeMarker, Tensor, TensorElementType, ValueType};

/// Largest tensor (elements) made or read.
pub(super) const MAX_ELEMENTS: usize = 1 << 24;

pub(super) fn dtype_name(t: &TensorElementType) -> String {
    use TensorElementType as T;
    match t {
        T::Float32 => "float32",
        T::Float64 => "float64",
        T::Float16 => "float16",
        T::Bfloat16 => "bfloat16",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Uint8 => "uint8",
        T::Uint16 => "uint16",
        T::Uint32 => "uint32",
        T::Uint64 => "uint64",
        T::Bool => "bool",
        T::String => "string",
        T::Complex64 => "complex64",
        T::Complex128 => "complex128",
        other => return format!("{other:?}").to_ascii_lowercase(),
    }
    .into()
}

pub(crate) fn kind_of(t: &ValueType) -> ValueKind {
    match t {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => ValueKind::Tensor {
            dtype: dtype_name(ty),
            dims: shape
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if *d >= 0 {
                        Dim::Fixed(*d)
                    } else {
                        match dimension_symbols.get(i) {
                            Some(s) if !s.is_empty() => Dim::Symbol(s.clone()),
                            _ => Dim::Dynamic,
                        }
                    }
                })
                .collect(),
        },
        ValueType::Sequence(inner) => ValueKind::Sequence(Box::new(kind_of(inner))),
        ValueType::Map { key, value } => ValueKind::Map {
            key: dtype_name(key),
            value: dtype_name(value),
        },
        ValueType::Optional(inner) => ValueKind::Optional(Box::new(kind_of(inner))),
    }
}

/// A tensor of `dtype` from typed values.
pub(super) fn tensor(
    dtype: &str,
    shape: &[usize],
    v: Values,
) -> std::result::Result<DynValue, String> {
    let n: usize = shape.iter().product();
    if v.len() != n {
        return Err(format!("{} values for shape {shape:?}", v.len()));
    }
    let shape: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    macro_rules! mk {
        ($data:expr, $t:ty, $conv:expr) => {
            Tensor::from_array((shape, $data.into_iter().map($conv).collect::<Vec<$t>>()))
                .map(|t| t.into_dyn())
        };
    }
    let r = match (dtype, v) {
        ("float32", Values::Float(x)) => mk!(x, f32, |v| v as f32),
        ("float64", Values::Float(x)) => mk!(x, f64, |v| v),
        ("float16", Values::Float(x)) => mk!(x, half::f16, half::f16::from_f64),
        ("bfloat16", Values::Float(x)) => mk!(x, half::bf16, half::bf16::from_f64),
        ("int8", Values::Int(x)) => mk!(x, i8, |v| v as i8),
        ("int16", Values::Int(x)) => mk!(x, i16, |v| v as i16),
        ("int32", Values::Int(x)) => mk!(x, i32, |v| v as i32),
        ("int64", Values::Int(x)) => mk!(x, i64, |v| v),
        ("uint8", Values::UInt(x)) => mk!(x, u8, |v| v as u8),
        ("uint16", Values::UInt(x)) => mk!(x, u16, |v| v as u16),
        ("uint32", Values::UInt(x)) => mk!(x, u32, |v| v as u32),
        ("uint64", Values::UInt(x)) => mk!(x, u64, |v| v),
        ("bool", Values::Bool(x)) => mk!(x, bool, |v| v),
        ("string", Values::Str(x)) => {
            if x.iter().any(|s| s.contains('\0')) {
                return Err("a string with a NUL character".into());
            }
            Tensor::from_string_array((shape, &*x)).map(|t| t.into_dyn())
        }
        (d, _) => return Err(format!("cannot make a {d} tensor")),
    };
    r.map_err(|e| e.to_string())
}

/// Synthetic feeds for a batch size, and their shapes as text.
pub(super) fn feeds_for(
    plans: &[InputPlan],
    batch: usize,
    syms: &std::collections::BTreeSet<String>,
) -> std::result::Result<(Vec<(String, DynValue)>, String), String> {
    let mut rng = inputs::Rng::new(0x6d6c_6172_7400 ^ batch as u64);
    let mut feeds = Vec::new();
    let mut shapes = Vec::new();
    for p in plans {
        let shape = inputs::shape_for(p, batch, syms);
        let n = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .filter(|n| *n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "input {:?} would be {shape:?}: more than mlart's limit of {MAX_ELEMENTS} elements; try smaller --batch-sizes",
                    p.name
                )
            })?;
        let _ = n;
        let values = inputs::synth(p, &shape, &mut rng);
        let t = tensor(&p.dtype, &shape, values).map_err(|e| format!("input {:?}: {e}", p.name))?;
        shapes.push(format!("{} {:?}", p.name, shape));
        feeds.push((p.name.clone(), t));
    }
    Ok((feeds, shapes.join(", ")))
}

pub(super) fn run_raw(
    s: &mut Session,
    feeds: &[(String, DynValue)],
) -> std::result::Result<(), String> {
    let inputs: Vec<(&str, SessionInputValue)> =
        feeds.iter().map(|(n, v)| (n.as_str(), v.into())).collect();
    s.run(inputs).map(|_| ()).map_err(|e| e.to_string())
}

/// Run and copy every output out.
pub(super) fn run(
    s: &mut Session,
    feeds: &[(String, DynValue)],
) -> std::result::Result<Vec<(String, OutValue)>, String> {
    let inputs: Vec<(&str, SessionInputValue)> =
        feeds.iter().map(|(n, v)| (n.as_str(), v.into())).collect();
    let outs = s.run(inputs).map_err(|e| e.to_string())?;
    Ok(outs
        .iter()
        .map(|(name, v)| (name.to_string(), out_value(&v)))
        .collect())
}

fn out_value(v: &DynValue) -> OutValue {
    match v.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            if shape.iter().map(|d| (*d).max(0) as u128).product::<u128>() > MAX_ELEMENTS as u128 {
                return OutValue::Other(format!(
                    "a tensor of shape {:?}, too large to inspect",
                    &shape[..]
                ));
            }
            tensor_out(v, *ty)
        }
        ValueType::Sequence(_) => match v.try_extract_sequence::<DynValueTypeMarker>() {
            Ok(items) => OutValue::Seq(items.iter().map(out_value).collect()),
            Err(e) => OutValue::Other(format!("a sequence ({e})")),
        },
        ValueType::Map { key, value } => map_out(v, *key, *value),
        other => OutValue::Other(format!("{other}")),
    }
}

fn tensor_out(v: &DynValue, ty: TensorElementType) -> OutValue {
    use TensorElementType as T;
    let dims = |s: &ort::value::Shape| s.iter().map(|d| (*d).max(0) as usize).collect::<Vec<_>>();
    macro_rules! ext {
        ($t:ty, $variant:ident, $conv:expr) => {
            match v.try_extract_tensor::<$t>() {
                Ok((s, d)) => OutValue::$variant {
                    shape: dims(s),
                    data: d.iter().map($conv).collect(),
                },
                Err(e) => OutValue::Other(format!("a tensor ({e})")),
            }
        };
    }
    match ty {
        T::Float32 => ext!(f32, Float, |x| *x as f64),
        T::Float64 => ext!(f64, Float, |x| *x),
        T::Float16 => ext!(half::f16, Float, |x| x.to_f64()),
        T::Bfloat16 => ext!(half::bf16, Float, |x| x.to_f64()),
        T::Int8 => ext!(i8, Int, |x| *x as i64),
        T::Int16 => ext!(i16, Int, |x| *x as i64),
        T::Int32 => ext!(i32, Int, |x| *x as i64),
        T::Int64 => ext!(i64, Int, |x| *x),
        T::Uint8 => ext!(u8, UInt, |x| *x as u64),
        T::Uint16 => ext!(u16, UInt, |x| *x as u64),
        T::Uint32 => ext!(u32, UInt, |x| *x as u64),
        T::Uint64 => ext!(u64, UInt, |x| *x),
        T::Bool => ext!(bool, Bool, |x| *x),
        T::String => match v.try_extract_strings() {
            Ok((s, d)) => OutValue::Str {
                shape: dims(s),
                data: d,
            },
            Err(e) => OutValue::Other(format!("a string tensor ({e})")),
        },
        other => OutValue::Other(format!("a tensor of {}", dtype_name(&other))),
    }
}

fn map_out(v: &DynValue, key: TensorElementType, value: TensorElementType) -> OutValue {
    use TensorElementType as T;
    macro_rules! kv {
        ($k:ty, $v:ty) => {
            match v.try_extract_key_values::<$k, $v>() {
                Ok(kv) => OutValue::Map(
                    kv.into_iter()
                        .map(|(k, x)| (k.to_string(), x as f64))
                        .collect(),
                ),
                Err(e) => OutValue::Other(format!("a map ({e})")),
            }
        };
    }
    match (key, value) {
        (T::Int64, T::Float32) => kv!(i64, f32),
        (T::Int64, T::Float64) => kv!(i64, f64),
        (T::Int64, T::Int64) => kv!(i64, i64),
        (T::String, T::Float32) => kv!(String, f32),
        (T::String, T::Float64) => kv!(String, f64),
        (T::String, T::Int64) => kv!(String, i64),
        (k, x) => OutValue::Other(format!("map({},{})", dtype_name(&k), dtype_name(&x))),
    }
}
