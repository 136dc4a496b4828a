//! Checks on the values a model returned: finite numbers, declared shapes, schema categories,
//! expected sample outputs. Pure: the runtime turns its outputs into [`OutValue`]s first.

use super::inputs::{json_tensor, typed, Values};
use super::types::{Dim, ValueKind};

/// An output, copied out of the runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum OutValue {
    Float {
        shape: Vec<usize>,
        data: Vec<f64>,
    },
    Int {
        shape: Vec<usize>,
        data: Vec<i64>,
    },
    UInt {
        shape: Vec<usize>,
        data: Vec<u64>,
    },
    Bool {
        shape: Vec<usize>,
        data: Vec<bool>,
    },
    Str {
        shape: Vec<usize>,
        data: Vec<String>,
    },
    /// A sequence (of tensors or maps).
    Seq(Vec<OutValue>),
    /// A map, keys as text, numeric values.
    Map(Vec<(String, f64)>),
    /// A value that is not inspected (its type).
    Other(String),
}

impl OutValue {
    pub fn shape(&self) -> Option<&[usize]> {
        match self {
            OutValue::Float { shape, .. }
            | OutValue::Int { shape, .. }
            | OutValue::UInt { shape, .. }
            | OutValue::Bool { shape, .. }
            | OutValue::Str { shape, .. } => Some(shape),
            _ => None,
        }
    }

    /// A short description: `float32[7, 3]`-like, without the dtype.
    pub fn describe(&self) -> String {
        match self {
            OutValue::Seq(v) => format!("a sequence of {}", v.len()),
            OutValue::Map(m) => format!("a map of {}", m.len()),
            OutValue::Other(t) => t.clone(),
            other => format!("{:?}", other.shape().unwrap_or(&[])),
        }
    }
}

/// Index of flat position `i` in `shape`, as `[a, b, c]`.
fn index(shape: &[usize], mut i: usize) -> String {
    let mut idx = vec![0; shape.len()];
    for (d, n) in shape.iter().enumerate().rev() {
        if *n > 0 {
            idx[d] = i % n;
            i /= n;
        }
    }
    format!(
        "[{}]",
        idx.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// None when every number is finite; else what is not, and where.
pub fn non_finite(v: &OutValue) -> Option<String> {
    match v {
        OutValue::Float { shape, data } => {
            let bad: Vec<usize> = (0..data.len()).filter(|i| !data[*i].is_finite()).collect();
            let first = *bad.first()?;
            Some(format!(
                "{} of {} values are NaN or infinite (first at {}: {})",
                bad.len(),
                data.len(),
                index(shape, first),
                data[first]
            ))
        }
        OutValue::Seq(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| non_finite(x).map(|m| format!("element {i}: {m}"))),
        OutValue::Map(m) => m
            .iter()
            .find(|(_, x)| !x.is_finite())
            .map(|(k, x)| format!("the value of key {k:?} is {x}")),
        _ => None,
    }
}

/// None when the actual shape fits the declared dims (fixed dims equal, same rank).
pub fn shape_mismatch(v: &OutValue, declared: &ValueKind) -> Option<String> {
    let (ValueKind::Tensor { dims, .. }, Some(shape)) = (declared, v.shape()) else {
        return None;
    };
    let fits = dims.len() == shape.len()
        && dims.iter().zip(shape).all(|(d, n)| match d {
            Dim::Fixed(f) => *f < 0 || *f as usize == *n,
            _ => true,
        });
    (!fits).then(|| {
        format!(
            "has shape {:?}, the model declares {}",
            shape,
            declared.describe()
        )
    })
}

/// None when every value is one of `cats`; else the first that is not.
pub fn outside_categories(v: &OutValue, cats: &[serde_json::Value]) -> Option<String> {
    let in_cats_num = |x: f64| cats.iter().any(|c| c.as_f64() == Some(x));
    let first_bad = |shape: &[usize], pos: Option<usize>, shown: String| {
        pos.map(|i| {
            format!(
                "the value {shown} at {} is not among the schema's categories {}",
                index(shape, i),
                serde_json::Value::Array(cats.to_vec())
            )
        })
    };
    match v {
        OutValue::Int { shape, data } => {
            let p = data.iter().position(|x| !in_cats_num(*x as f64));
            first_bad(shape, p, p.map(|i| data[i].to_string()).unwrap_or_default())
        }
        OutValue::UInt { shape, data } => {
            let p = data.iter().position(|x| !in_cats_num(*x as f64));
            first_bad(shape, p, p.map(|i| data[i].to_string()).unwrap_or_default())
        }
        OutValue::Float { shape, data } => {
            let p = data.iter().position(|x| !in_cats_num(*x));
            first_bad(shape, p, p.map(|i| data[i].to_string()).unwrap_or_default())
        }
        OutValue::Str { shape, data } => {
            let p = data
                .iter()
                .position(|x| !cats.iter().any(|c| c.as_str() == Some(x.as_str())));
            first_bad(
                shape,
                p,
                p.map(|i| format!("{:?}", data[i])).unwrap_or_default(),
            )
        }
        OutValue::Bool { shape, data } => {
            let p = data
                .iter()
                .position(|x| !cats.iter().any(|c| c.as_bool() == Some(*x)));
            first_bad(shape, p, p.map(|i| data[i].to_string()).unwrap_or_default())
        }
        _ => None,
    }
}

/// |x - e| <= tolerance (false for NaN).
fn within(x: f64, e: f64, tolerance: f64) -> bool {
    (x - e).abs() <= tolerance
}

/// Compare an output with the expected JSON. Ok(number of values compared), or what differs.
pub fn compare_expected(
    v: &OutValue,
    expected: &serde_json::Value,
    tolerance: f64,
) -> Result<usize, String> {
    if let OutValue::Seq(items) = v {
        let exp = expected
            .as_array()
            .ok_or("expected an array (one entry per row)")?;
        if exp.len() != items.len() {
            return Err(format!("{} rows, expected {}", items.len(), exp.len()));
        }
        let mut n = 0;
        for (i, (x, e)) in items.iter().zip(exp).enumerate() {
            n += compare_expected(x, e, tolerance).map_err(|m| format!("row {i}: {m}"))?;
        }
        return Ok(n);
    }
    if let OutValue::Map(m) = v {
        let exp = expected
            .as_object()
            .ok_or("expected an object (key -> value) for a map")?;
        let mut keys: Vec<&String> = m.iter().map(|(k, _)| k).collect();
        keys.sort();
        let mut ekeys: Vec<&String> = exp.keys().collect();
        ekeys.sort();
        if keys != ekeys {
            return Err(format!("keys {keys:?}, expected {ekeys:?}"));
        }
        for (k, x) in m {
            let e = exp[k]
                .as_f64()
                .ok_or_else(|| format!("expected value of key {k:?} is not a number"))?;
            if !within(*x, e, tolerance) {
                return Err(format!(
                    "key {k:?}: {x}, expected {e} (tolerance {tolerance})"
                ));
            }
        }
        return Ok(m.len());
    }
    let (eshape, eflat) = json_tensor(expected)?;
    let dtype = match v {
        OutValue::Float { .. } => "float64",
        OutValue::Int { .. } => "int64",
        OutValue::UInt { .. } => "uint64",
        OutValue::Bool { .. } => "bool",
        OutValue::Str { .. } => "string",
        other => return Err(format!("{} cannot be compared", other.describe())),
    };
    let values = typed(&eflat, dtype, &eshape).map_err(|e| format!("expected{e}"))?;
    compare_tensor(v, &eshape, &values, tolerance)
}

/// Compare a tensor output with expected values of its element family: floats within
/// `tolerance` (absolute), the rest exactly. Ok(number of values compared), or how many differ,
/// the largest difference and where.
pub fn compare_tensor(
    v: &OutValue,
    eshape: &[usize],
    expected: &Values,
    tolerance: f64,
) -> Result<usize, String> {
    let shape = v
        .shape()
        .ok_or_else(|| format!("{} cannot be compared", v.describe()))?;
    // A [N] output may be given as [N] or [N, 1] and vice versa: compare element counts when
    // the shapes differ only by dimensions of 1.
    let squeeze = |s: &[usize]| s.iter().copied().filter(|d| *d != 1).collect::<Vec<_>>();
    if eshape != shape && squeeze(eshape) != squeeze(shape) {
        return Err(format!("shape {shape:?}, expected {eshape:?}"));
    }
    let n = expected.len();
    // exact comparisons: how many differ, and the first
    fn exact<T: PartialEq + std::fmt::Debug>(
        shape: &[usize],
        a: &[T],
        e: &[T],
    ) -> Result<usize, String> {
        let bad: Vec<usize> = (0..a.len().min(e.len()))
            .filter(|i| a[*i] != e[*i])
            .collect();
        match bad.first() {
            None => Ok(e.len()),
            Some(i) => Err(format!(
                "{} of {} value(s) differ (first at {}: {:?}, expected {:?})",
                bad.len(),
                e.len(),
                index(shape, *i),
                a[*i],
                e[*i]
            )),
        }
    }
    match (v, expected) {
        (OutValue::Float { data, .. }, Values::Float(e)) => {
            let mut bad = 0;
            let mut worst: Option<(usize, f64)> = None;
            for (i, (x, y)) in data.iter().zip(e).enumerate() {
                let d = (x - y).abs();
                if within(*x, *y, tolerance) {
                    continue;
                }
                bad += 1;
                // NaN (a NaN on either side) is the worst difference
                if worst.is_none_or(|(_, w)| !w.is_nan() && (d.is_nan() || d > w)) {
                    worst = Some((i, d));
                }
            }
            match worst {
                None => Ok(n),
                Some((i, d)) => Err(format!(
                    "{bad} of {n} value(s) differ by more than {tolerance} (max difference {d} at {}: {}, expected {})",
                    index(shape, i),
                    data[i],
                    e[i]
                )),
            }
        }
        (OutValue::Int { data, .. }, Values::Int(e)) => exact(shape, data, e),
        (OutValue::UInt { data, .. }, Values::UInt(e)) => exact(shape, data, e),
        // signed against unsigned: both widened
        (OutValue::Int { data, .. }, Values::UInt(e)) => exact(shape, &wide(data), &wide(e)),
        (OutValue::UInt { data, .. }, Values::Int(e)) => exact(shape, &wide(data), &wide(e)),
        (OutValue::Bool { data, .. }, Values::Bool(e)) => exact(shape, data, e),
        (OutValue::Str { data, .. }, Values::Str(e)) => exact(shape, data, e),
        (v, e) => Err(format!(
            "the model gave {} values, the expected ones are {}",
            family_name(v),
            match e {
                Values::Float(_) => "floats",
                Values::Int(_) | Values::UInt(_) => "integers",
                Values::Bool(_) => "bools",
                Values::Str(_) => "strings",
            }
        )),
    }
}

fn wide<T: Copy + Into<i128>>(v: &[T]) -> Vec<i128> {
    v.iter().map(|x| (*x).into()).collect()
}

fn family_name(v: &OutValue) -> &'static str {
    match v {
        OutValue::Float { .. } => "float",
        OutValue::Int { .. } | OutValue::UInt { .. } => "integer",
        OutValue::Bool { .. } => "bool",
        OutValue::Str { .. } => "string",
        _ => "non-tensor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fl(shape: Vec<usize>, data: Vec<f64>) -> OutValue {
        OutValue::Float { shape, data }
    }

    #[test]
    fn finite() {
        assert_eq!(non_finite(&fl(vec![2, 2], vec![0.0, 1.0, 2.0, 3.0])), None);
        let m = non_finite(&fl(vec![2, 2], vec![0.0, 1.0, f64::NAN, f64::INFINITY])).unwrap();
        assert!(
            m.contains("2 of 4") && m.contains("[1, 0]") && m.contains("NaN"),
            "{m}"
        );
        let seq = OutValue::Seq(vec![
            OutValue::Map(vec![("0".into(), 0.5)]),
            OutValue::Map(vec![("1".into(), f64::NAN)]),
        ]);
        assert!(non_finite(&seq).unwrap().contains("element 1"));
        assert_eq!(
            non_finite(&OutValue::Int {
                shape: vec![1],
                data: vec![1]
            }),
            None
        );
    }

    #[test]
    fn shapes_and_categories() {
        let declared = ValueKind::Tensor {
            dtype: "float32".into(),
            dims: vec![Dim::Dynamic, Dim::Fixed(3)],
        };
        assert_eq!(
            shape_mismatch(&fl(vec![7, 3], vec![0.0; 21]), &declared),
            None
        );
        assert!(shape_mismatch(&fl(vec![7, 2], vec![0.0; 14]), &declared).is_some());
        assert!(shape_mismatch(&fl(vec![7], vec![0.0; 7]), &declared).is_some());
        let labels = OutValue::Int {
            shape: vec![3],
            data: vec![0, 2, 7],
        };
        let m = outside_categories(&labels, &[json!(0), json!(1), json!(2)]).unwrap();
        assert!(m.contains("7") && m.contains("[2]"), "{m}");
        let s = OutValue::Str {
            shape: vec![1],
            data: vec!["x".into()],
        };
        assert!(outside_categories(&s, &[json!("x")]).is_none());
        assert!(outside_categories(&s, &[json!("y")]).is_some());
    }

    #[test]
    fn expected_outputs() {
        let v = fl(vec![2, 2], vec![0.1, 0.2, 0.3, 0.4]);
        assert_eq!(
            compare_expected(&v, &json!([[0.1, 0.2], [0.3, 0.40001]]), 1e-4),
            Ok(4)
        );
        let e = compare_expected(&v, &json!([[0.1, 0.2], [0.3, 0.5]]), 1e-4).unwrap_err();
        assert!(e.contains("[1, 1]") && e.contains("0.5"), "{e}");
        // every difference counted, the largest named
        let e = compare_expected(&v, &json!([[0.1, 0.25], [0.3, 1.4]]), 1e-4).unwrap_err();
        assert!(
            e.starts_with("2 of 4 value(s) differ by more than 0.0001 (max difference 0.99")
                && e.contains("at [1, 1]: 0.4, expected 1.4"),
            "{e}"
        );
        // the tolerance decides
        assert_eq!(
            compare_expected(&v, &json!([[0.1, 0.25], [0.3, 0.4]]), 0.1),
            Ok(4)
        );
        let e = compare_tensor(&v, &[2, 2], &Values::Int(vec![0, 0, 0, 1]), 1.0).unwrap_err();
        assert!(e.contains("float values") && e.contains("integers"), "{e}");
        let i = OutValue::Int {
            shape: vec![2],
            data: vec![1, -2],
        };
        let e = compare_tensor(&i, &[2], &Values::UInt(vec![1, 2]), 0.0).unwrap_err();
        assert!(
            e.contains("1 of 2 value(s) differ (first at [1]: -2, expected 2)"),
            "{e}"
        );
        assert!(compare_expected(&v, &json!([0.1, 0.2]), 1e-4)
            .unwrap_err()
            .contains("shape"));
        let labels = OutValue::Int {
            shape: vec![3],
            data: vec![2, 0, 1],
        };
        assert_eq!(compare_expected(&labels, &json!([2, 0, 1]), 0.0), Ok(3));
        assert_eq!(
            compare_expected(&labels, &json!([[2], [0], [1]]), 0.0),
            Ok(3)
        );
        assert!(compare_expected(&labels, &json!([2, 0, 2]), 0.0).is_err());
        assert!(compare_expected(&labels, &json!([2, 0, 1.0]), 0.0).is_err());
        let zm = OutValue::Seq(vec![OutValue::Map(vec![
            ("0".into(), 0.25),
            ("1".into(), 0.75),
        ])]);
        assert_eq!(
            compare_expected(&zm, &json!([{"0": 0.25, "1": 0.75}]), 1e-4),
            Ok(2)
        );
        assert!(compare_expected(&zm, &json!([{"0": 0.25}]), 1e-4)
            .unwrap_err()
            .contains("keys"));
        assert!(compare_expected(&zm, &json!([{"0": 0.25, "1": 0.7}]), 1e-4)
            .unwrap_err()
            .contains("row 0"));
        assert!(compare_expected(&zm, &json!([1, 2]), 1e-4).is_err());
        let nan = fl(vec![1], vec![f64::NAN]);
        assert!(compare_expected(&nan, &json!([0.0]), 1.0).is_err());
    }
}
