//! The values fed to a model: shapes for a batch size, synthetic values made from the schema's
//! ranges and categories (deterministic), and sample tensors read from JSON. Pure: unit-tested.

use super::plan::{family, Domains, Family, InputPlan};
use super::types::Dim;
use crate::format::feature_schema::Feature;
use std::collections::BTreeSet;

/// The value a dynamic non-batch dimension gets.
pub const DYN_FILL: usize = 3;

/// Symbols used as the first dimension of some input: they are the batch size.
pub fn batch_symbols(plans: &[InputPlan]) -> BTreeSet<String> {
    plans
        .iter()
        .filter_map(|p| match p.dims.first() {
            Some(Dim::Symbol(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Does any input have a dynamic first dimension (so the batch size can vary)?
pub fn is_batched(plans: &[InputPlan]) -> bool {
    plans
        .iter()
        .any(|p| matches!(p.dims.first(), Some(Dim::Dynamic | Dim::Symbol(_))))
}

/// The concrete shape of an input for a batch size.
pub fn shape_for(plan: &InputPlan, batch: usize, batch_syms: &BTreeSet<String>) -> Vec<usize> {
    let rank = plan.dims.len();
    plan.dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) if *n >= 0 => *n as usize,
            _ if i == 0 => batch,
            Dim::Symbol(s) if batch_syms.contains(s) => batch,
            _ => {
                if i == rank - 1 {
                    if let Domains::Columns(c) = &plan.domains {
                        return c.len();
                    }
                }
                if let Domains::One(Some(f)) = &plan.domains {
                    if let Some(n) = f.shape.as_ref().and_then(|s| s.get(i - 1)) {
                        if *n >= 0 {
                            return *n as usize;
                        }
                    }
                }
                DYN_FILL
            }
        })
        .collect()
}

/// Typed values of a tensor, flat, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
    UInt(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::UInt(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A small deterministic generator (splitmix64): the same inputs on every run and machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The representable range of an integer dtype.
fn int_bounds(dtype: &str) -> (i128, i128) {
    match dtype {
        "int8" => (i8::MIN as i128, i8::MAX as i128),
        "int16" => (i16::MIN as i128, i16::MAX as i128),
        "int32" => (i32::MIN as i128, i32::MAX as i128),
        "int64" => (i64::MIN as i128, i64::MAX as i128),
        "uint8" => (0, u8::MAX as i128),
        "uint16" => (0, u16::MAX as i128),
        "uint32" => (0, u32::MAX as i128),
        "uint64" => (0, u64::MAX as i128),
        _ => (0, 1),
    }
}

/// One value of `dtype` from a feature's domain (or the default domain).
enum One {
    F(f64),
    I(i128),
    B(bool),
    S(String),
}

fn one(f: Option<&Feature>, dtype: &str, rng: &mut Rng) -> One {
    let fam = family(dtype).unwrap_or(Family::Float);
    if let Some(cats) = f
        .and_then(|f| f.categories.as_ref())
        .filter(|c| !c.is_empty())
    {
        let c = &cats[rng.below(cats.len() as u64) as usize];
        return match fam {
            Family::Str => One::S(match c {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            Family::Bool => One::B(c.as_bool().unwrap_or_else(|| c.as_f64() == Some(1.0))),
            Family::Float => One::F(c.as_f64().unwrap_or(0.0)),
            Family::Int | Family::UInt => One::I(
                c.as_i64()
                    .map(i128::from)
                    .or_else(|| c.as_u64().map(i128::from))
                    .or_else(|| c.as_f64().map(|x| x as i128))
                    .unwrap_or(0),
            ),
        };
    }
    let range = f.and_then(|f| f.range.as_ref());
    let (lo, hi) = match range.map(|r| (r.min, r.max)) {
        Some((Some(a), Some(b))) => (a, b),
        Some((Some(a), None)) => (a, a + 1.0),
        Some((None, Some(b))) => (b - 1.0, b),
        _ => match fam {
            Family::Float => (0.0, 1.0),
            _ => (0.0, 1.0),
        },
    };
    match fam {
        Family::Float => One::F(lo + (hi - lo) * rng.unit()),
        Family::Int | Family::UInt => {
            let (tmin, tmax) = int_bounds(dtype);
            let a = (lo.ceil() as i128).clamp(tmin, tmax);
            let b = (hi.floor() as i128).clamp(tmin, tmax).max(a);
            let span = (b - a) as u128 + 1;
            let off = if span > u64::MAX as u128 {
                rng.next_u64() as i128
            } else {
                rng.below(span as u64) as i128
            };
            One::I(a + off)
        }
        Family::Bool => One::B(rng.below(2) == 1),
        Family::Str => One::S(["a", "b", "c"][rng.below(3) as usize].to_string()),
    }
}

/// Synthetic values for an input of the given shape.
pub fn synth(plan: &InputPlan, shape: &[usize], rng: &mut Rng) -> Values {
    let n: usize = shape.iter().product();
    let cols = shape.last().copied().unwrap_or(1).max(1);
    let dom = |i: usize| -> Option<&Feature> {
        match &plan.domains {
            Domains::One(f) => *f,
            Domains::Columns(fs) => fs.get(i % cols).copied(),
        }
    };
    let fam = family(&plan.dtype).unwrap_or(Family::Float);
    let items = (0..n).map(|i| one(dom(i), &plan.dtype, rng));
    match fam {
        Family::Float => Values::Float(
            items
                .map(|o| match o {
                    One::F(x) => x,
                    One::I(x) => x as f64,
                    One::B(b) => b as u8 as f64,
                    One::S(_) => 0.0,
                })
                .collect(),
        ),
        Family::Int => Values::Int(
            items
                .map(|o| match o {
                    One::I(x) => x as i64,
                    One::F(x) => x as i64,
                    One::B(b) => b as i64,
                    One::S(_) => 0,
                })
                .collect(),
        ),
        Family::UInt => Values::UInt(
            items
                .map(|o| match o {
                    One::I(x) => x.max(0) as u64,
                    One::F(x) => x.max(0.0) as u64,
                    One::B(b) => b as u64,
                    One::S(_) => 0,
                })
                .collect(),
        ),
        Family::Bool => Values::Bool(
            items
                .map(|o| match o {
                    One::B(b) => b,
                    One::I(x) => x != 0,
                    One::F(x) => x != 0.0,
                    One::S(s) => s == "true",
                })
                .collect(),
        ),
        Family::Str => Values::Str(
            items
                .map(|o| match o {
                    One::S(s) => s,
                    One::F(x) => x.to_string(),
                    One::I(x) => x.to_string(),
                    One::B(b) => b.to_string(),
                })
                .collect(),
        ),
    }
}

/// A nested JSON array as (shape, flat scalars). Ragged arrays and non-scalars are errors.
pub fn json_tensor(v: &serde_json::Value) -> Result<(Vec<usize>, Vec<&serde_json::Value>), String> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let serde_json::Value::Array(a) = cur {
        shape.push(a.len());
        if shape.len() > 32 {
            return Err("more than 32 dimensions".into());
        }
        match a.first() {
            Some(x) => cur = x,
            None => break,
        }
    }
    let mut flat = Vec::new();
    fn walk<'v>(
        v: &'v serde_json::Value,
        shape: &[usize],
        depth: usize,
        out: &mut Vec<&'v serde_json::Value>,
    ) -> Result<(), String> {
        if depth == shape.len() {
            if v.is_array() || v.is_object() {
                return Err("ragged: nested deeper in some places than others".into());
            }
            out.push(v);
            return Ok(());
        }
        let a = v
            .as_array()
            .ok_or("ragged: a scalar where an array was expected")?;
        if a.len() != shape[depth] {
            return Err(format!(
                "ragged: a row of length {} where the first has {}",
                a.len(),
                shape[depth]
            ));
        }
        for x in a {
            walk(x, shape, depth + 1, out)?;
        }
        Ok(())
    }
    walk(v, &shape, 0, &mut flat)?;
    Ok((shape, flat))
}

/// A float type narrower than JSON's numbers (f64), or f64 itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    F16,
    BF16,
    F32,
    F64,
}

impl FloatType {
    /// By its ONNX name (`float32`, …).
    pub fn onnx(dtype: &str) -> Option<FloatType> {
        Some(match dtype {
            "float16" => FloatType::F16,
            "bfloat16" => FloatType::BF16,
            "float32" => FloatType::F32,
            "float64" => FloatType::F64,
            _ => return None,
        })
    }

    /// A finite number this type cannot hold (it would become inf) is refused: the message
    /// names the value as written (`shown`) and the type as the caller names it (`name`:
    /// FP32 in serve, float32 in validate).
    pub fn check(self, x: f64, shown: &dyn std::fmt::Display, name: &str) -> Result<(), String> {
        let (inf, max) = match self {
            FloatType::F16 => (
                half::f16::from_f64(x).is_infinite(),
                format!("{:e}", half::f16::MAX),
            ),
            FloatType::BF16 => (
                half::bf16::from_f64(x).is_infinite(),
                format!("{:e}", half::bf16::MAX),
            ),
            FloatType::F32 => ((x as f32).is_infinite(), format!("{:e}", f32::MAX)),
            FloatType::F64 => (false, String::new()),
        };
        if x.is_finite() && inf {
            return Err(format!(
                "{shown} is out of range for {name} (at most {max} in magnitude)"
            ));
        }
        Ok(())
    }
}

/// Where value `i` of a row-major tensor of `shape` is: `[r][c]…`.
pub fn position(mut i: usize, shape: &[usize]) -> String {
    let mut at = vec![0; shape.len()];
    for (a, n) in at.iter_mut().zip(shape).rev() {
        if *n > 0 {
            *a = i % n;
            i /= n;
        }
    }
    at.iter().map(|a| format!("[{a}]")).collect()
}

/// Scalars as typed values of `dtype` (a tensor of `shape`); a value that is not one, or that
/// the type cannot hold, is refused, the message starting with its position (`[0][2]: …`;
/// `: …` for a scalar or a type that cannot be given), to follow the tensor's name.
pub fn typed(flat: &[&serde_json::Value], dtype: &str, shape: &[usize]) -> Result<Values, String> {
    let fam = family(dtype).ok_or_else(|| format!(": {dtype} values cannot be given"))?;
    let at = |i: usize| position(i, shape);
    let bad = |i: usize, v: &serde_json::Value| format!("{}: {v} is not a {dtype} value", at(i));
    Ok(match fam {
        Family::Float => {
            let ft = FloatType::onnx(dtype).unwrap_or(FloatType::F64);
            Values::Float(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let x = v.as_f64().ok_or_else(|| bad(i, v))?;
                        ft.check(x, v, dtype)
                            .map_err(|e| format!("{}: {e}", at(i)))?;
                        Ok(x)
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        Family::Int | Family::UInt => {
            let (lo, hi) = int_bounds(dtype);
            let ints: Vec<i128> = flat
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let x = v
                        .as_i64()
                        .map(i128::from)
                        .or_else(|| v.as_u64().map(i128::from))
                        .ok_or_else(|| bad(i, v))?;
                    if x < lo || x > hi {
                        return Err(format!("{}: {x} does not fit in {dtype}", at(i)));
                    }
                    Ok(x)
                })
                .collect::<Result<_, _>>()?;
            if fam == Family::Int {
                Values::Int(ints.into_iter().map(|x| x as i64).collect())
            } else {
                Values::UInt(ints.into_iter().map(|x| x as u64).collect())
            }
        }
        Family::Bool => Values::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
        Family::Str => Values::Str(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(String::from).ok_or_else(|| bad(i, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_tensors() {
        let v = serde_json::json!([[1, 2], [3, 4], [5, 6]]);
        let (shape, flat) = json_tensor(&v).unwrap();
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(
            typed(&flat, "int8", &shape).unwrap(),
            Values::Int(vec![1, 2, 3, 4, 5, 6])
        );
        assert_eq!(
            typed(&flat, "float32", &shape).unwrap(),
            Values::Float(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert!(json_tensor(&serde_json::json!([[1, 2], [3]]))
            .unwrap_err()
            .contains("ragged"));
        assert!(json_tensor(&serde_json::json!([[1, 2], 3]))
            .unwrap_err()
            .contains("ragged"));
        assert!(json_tensor(&serde_json::json!([1, [2]])).is_err());
        let big = serde_json::json!([300]);
        let (_, flat) = json_tensor(&big).unwrap();
        assert!(typed(&flat, "int8", &[1])
            .unwrap_err()
            .contains("does not fit"));
        assert!(typed(&flat, "uint8", &[1]).is_err());
        let frac = serde_json::json!([1.5]);
        let (_, flat) = json_tensor(&frac).unwrap();
        assert!(typed(&flat, "int64", &[1]).is_err());
        assert!(typed(&flat, "string", &[1]).is_err());
        let empty = serde_json::json!([]);
        let (shape, flat) = json_tensor(&empty).unwrap();
        assert_eq!((shape, flat.len()), (vec![0], 0));
        let deep = (0..40).fold(serde_json::json!(1), |v, _| serde_json::json!([v]));
        assert!(json_tensor(&deep).is_err());
    }

    /// A number the float type cannot hold is refused where it is, not turned into inf.
    #[test]
    fn floats_out_of_range_are_refused_with_their_position() {
        let v = serde_json::json!([[1, 2, 3, 4], [5, 6, 1e39, 8]]);
        let (shape, flat) = json_tensor(&v).unwrap();
        assert_eq!(
            typed(&flat, "float32", &shape).unwrap_err(),
            "[1][2]: 1e+39 is out of range for float32 (at most 3.4028235e38 in magnitude)"
        );
        assert!(typed(&flat, "float64", &shape).is_ok());
        let half = serde_json::json!([70000.0]);
        let (shape, flat) = json_tensor(&half).unwrap();
        let e = typed(&flat, "float16", &shape).unwrap_err();
        assert!(
            e.starts_with("[0]: 70000.0 is out of range for float16"),
            "{e}"
        );
        let byte = serde_json::json!([[1, 300]]);
        let (shape, flat) = json_tensor(&byte).unwrap();
        assert_eq!(
            typed(&flat, "uint8", &shape).unwrap_err(),
            "[0][1]: 300 does not fit in uint8"
        );
        assert_eq!(position(5, &[2, 3]), "[1][2]");
    }
}
