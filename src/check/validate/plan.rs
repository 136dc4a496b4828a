//! The model's inputs and outputs against the feature schema: which input gets which
//! features, and whether the dtypes and shapes agree. Pure: no runtime here, so all of it is unit-tested.

use super::types::{Check, Dim, ValueKind};
use crate::format::feature_schema::{Feature, FeatureSchema};

/// A model's declared inputs and outputs.
#[derive(Clone, Debug, Default)]
pub struct ModelSig {
    pub inputs: Vec<(String, ValueKind)>,
    pub outputs: Vec<(String, ValueKind)>,
}

/// Where the values of one tensor input come from.
#[derive(Clone, Debug)]
pub enum Domains<'a> {
    /// One domain for every element (a per-feature input, or no schema).
    One(Option<&'a Feature>),
    /// A [N, k] tensor: column j from feature j.
    Columns(Vec<&'a Feature>),
}

/// How to make one tensor input.
#[derive(Clone, Debug)]
pub struct InputPlan<'a> {
    pub name: String,
    pub dtype: String,
    pub dims: Vec<Dim>,
    pub domains: Domains<'a>,
}

/// The comparison's result.
#[derive(Debug)]
pub struct Comparison<'a> {
    pub inputs: Check,
    pub outputs: Check,
    pub plans: Vec<InputPlan<'a>>,
    /// Inputs no synthetic value can be made for (not tensors, or an unsupported dtype).
    pub unsupported: Vec<String>,
}

/// Value families a dtype belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Float,
    Int,
    UInt,
    Bool,
    Str,
}

/// The family of a tensor element type we can make and read; None for exotic types
/// (complex, float8, int4, ...).
pub fn family(dtype: &str) -> Option<Family> {
    Some(match dtype {
        "float16" | "bfloat16" | "float32" | "float64" => Family::Float,
        "int8" | "int16" | "int32" | "int64" => Family::Int,
        "uint8" | "uint16" | "uint32" | "uint64" => Family::UInt,
        "bool" => Family::Bool,
        "string" => Family::Str,
        _ => return None,
    })
}

/// Can data of the schema's dtype feed a model tensor of `model`?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compat {
    Yes,
    /// Yes, converted (the note says how).
    Converted(String),
    No,
}

pub fn compatible(schema: &str, model: &str) -> Compat {
    if schema == model {
        return Compat::Yes;
    }
    let fam = |d: &str| family(d);
    match (schema, fam(schema), fam(model)) {
        (_, Some(Family::Float), Some(Family::Float))
        | (_, Some(Family::Int), Some(Family::Int))
        | (_, Some(Family::UInt), Some(Family::UInt))
        | (_, Some(Family::UInt), Some(Family::Int)) => {
            Compat::Converted(format!("{schema} values are converted to {model}"))
        }
        (_, Some(Family::Int | Family::UInt | Family::Bool), Some(Family::Float))
        | (_, Some(Family::Bool), Some(Family::Int | Family::UInt)) => {
            Compat::Converted(format!("{schema} values are converted to {model}"))
        }
        ("datetime", _, Some(Family::Str | Family::Int)) => Compat::Yes,
        ("binary", _, Some(Family::Str)) => Compat::Yes,
        ("binary", _, _) if model == "uint8" => Compat::Yes,
        _ => Compat::No,
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The per-row dims of a model tensor (without the batch dim), for messages.
fn row_dims(dims: &[Dim]) -> &[Dim] {
    dims.get(1..).unwrap_or(&[])
}

/// Does a schema shape (-1 for dynamic) fit the model's per-row dims?
fn shape_fits(schema: Option<&Vec<i64>>, row: &[Dim]) -> bool {
    match schema {
        // one value per row: [N] or [N, 1]
        None => row.is_empty() || (row.len() == 1 && !matches!(row[0], Dim::Fixed(n) if n != 1)),
        Some(s) => {
            s.len() == row.len()
                && s.iter().zip(row).all(|(a, b)| match b {
                    Dim::Fixed(n) => *a == -1 || a == n,
                    _ => true,
                })
        }
    }
}

fn shape_text(s: Option<&Vec<i64>>) -> String {
    match s {
        None => "one value per row".into(),
        Some(s) => format!(
            "shape [{}]",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An MLflow tensor signature may leave its tensors unnamed (`input[0]`, `output[0]` in the
/// schema, `build::schema::positional_name`): such tensors are the model's by position. The
/// schema with the model's names put in, or None when nothing is positional.
pub fn bind_positional(sig: &ModelSig, schema: &FeatureSchema) -> Option<FeatureSchema> {
    use crate::build::schema::is_positional;
    let positional = |fs: &[Feature], what: &str, n: usize| {
        !fs.is_empty()
            && fs.len() <= n
            && fs
                .iter()
                .enumerate()
                .all(|(i, f)| is_positional(&f.name, what, i))
    };
    let inputs = positional(&schema.features, "inputs", sig.inputs.len());
    let outputs = positional(&schema.outputs, "outputs", sig.outputs.len());
    if !inputs && !outputs {
        return None;
    }
    let mut s = schema.clone();
    if inputs {
        for (f, (n, _)) in s.features.iter_mut().zip(&sig.inputs) {
            f.name = n.clone();
        }
    }
    if outputs {
        for (f, (n, _)) in s.outputs.iter_mut().zip(&sig.outputs) {
            f.name = n.clone();
        }
    }
    Some(s)
}

/// Are some synthetic values mlart's defaults rather than the schema's (no schema, or a
/// feature without `range` or `categories`)? Then a model that refuses them may be fine:
/// defaults cannot be valid shape tensors, split sizes or indices.
pub fn has_default_values(plans: &[InputPlan]) -> bool {
    let default = |f: Option<&Feature>| {
        f.is_none_or(|f| f.range.is_none() && f.categories.as_ref().is_none_or(|c| c.is_empty()))
    };
    plans.iter().any(|p| match &p.domains {
        Domains::One(f) => default(*f),
        Domains::Columns(fs) => fs.iter().any(|f| default(Some(f))),
    })
}

/// Compare the model with the schema and plan the synthetic inputs.
pub fn compare<'a>(sig: &ModelSig, schema: Option<&'a FeatureSchema>) -> Comparison<'a> {
    let mut unsupported = Vec::new();
    let mut tensors: Vec<(&String, &String, &Vec<Dim>)> = Vec::new();
    for (name, kind) in &sig.inputs {
        match kind {
            ValueKind::Tensor { dtype, dims } if family(dtype).is_some() => {
                tensors.push((name, dtype, dims))
            }
            other => unsupported.push(format!("{name} ({})", other.describe())),
        }
    }
    let Some(schema) = schema else {
        return Comparison {
            inputs: Check::skip("inputs", "no feature schema: the inputs were not compared"),
            outputs: Check::skip(
                "outputs",
                "no feature schema: the outputs were not compared",
            ),
            plans: tensors
                .iter()
                .map(|(n, d, dims)| InputPlan {
                    name: n.to_string(),
                    dtype: d.to_string(),
                    dims: dims.to_vec(),
                    domains: Domains::One(None),
                })
                .collect(),
            unsupported,
        };
    };
    let file = &schema.file;
    let features = &schema.features;
    let feature = |n: &str| features.iter().find(|f| f.name == n);
    let model_names: Vec<String> = sig.inputs.iter().map(|(n, _)| n.clone()).collect();
    let feature_names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // one note per kind of conversion, with the features it applies to (not thirty notes)
    let mut converted: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let single_matrix = sig.inputs.len() == 1
        && tensors.len() == 1
        && match tensors[0].2.len() {
            2 => features.len() > 1 || feature(tensors[0].0).is_none(),
            1 => features.len() == 1 && feature(tensors[0].0).is_none(),
            _ => false,
        };

    let mut plans = Vec::new();
    let how = if single_matrix {
        let (name, dtype, dims) = tensors[0];
        let k = features.len();
        match dims.last() {
            Some(Dim::Fixed(n)) if dims.len() == 2 && *n as usize != k => problems.push(format!(
                "the model input {name:?} is {} ({n} columns), but the schema ({file}) has {k} features: {}",
                sig.inputs[0].1.describe(),
                list(&feature_names)
            )),
            Some(Dim::Fixed(_)) | None => {}
            Some(_) => notes.push(format!(
                "the column count of {name:?} is dynamic; {k} columns are used"
            )),
        }
        for f in features {
            match compatible(&f.dtype, dtype) {
                Compat::Yes => {}
                Compat::Converted(n) => converted.entry(n).or_default().push(f.name.clone()),
                Compat::No => problems.push(format!(
                    "feature {:?} is {} in the schema ({file}), but the model input {name:?} holds {dtype}",
                    f.name, f.dtype
                )),
            }
        }
        plans.push(InputPlan {
            name: name.to_string(),
            dtype: dtype.to_string(),
            dims: dims.to_vec(),
            domains: if dims.len() == 2 {
                Domains::Columns(features.iter().collect())
            } else {
                Domains::One(features.first())
            },
        });
        format!(
            "one {} input {name:?} against the {k} features of {file}, in order",
            sig.inputs[0].1.describe()
        )
    } else {
        // Per-feature inputs, matched by name.
        for (name, kind) in &sig.inputs {
            let Some(f) = feature(name) else { continue };
            let ValueKind::Tensor { dtype, dims } = kind else {
                problems.push(format!(
                    "feature {name:?} is {} in the schema ({file}), the model input is {}",
                    f.dtype,
                    kind.describe()
                ));
                continue;
            };
            match compatible(&f.dtype, dtype) {
                Compat::Yes => {}
                Compat::Converted(n) => converted.entry(n).or_default().push(name.to_string()),
                Compat::No => problems.push(format!(
                    "feature {name:?} is {} in the schema ({file}), but the model input {name:?} is {}",
                    f.dtype,
                    kind.describe()
                )),
            }
            if !shape_fits(f.shape.as_ref(), row_dims(dims)) {
                problems.push(format!(
                    "feature {name:?} is {} in the schema ({file}), but the model input {name:?} is {} (per row: [{}])",
                    shape_text(f.shape.as_ref()),
                    kind.describe(),
                    row_dims(dims).iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let not_in_schema: Vec<String> = model_names
            .iter()
            .filter(|n| feature(n).is_none())
            .cloned()
            .collect();
        let not_in_model: Vec<String> = feature_names
            .iter()
            .filter(|n| !model_names.contains(n))
            .cloned()
            .collect();
        if !not_in_schema.is_empty() || !not_in_model.is_empty() {
            problems.push(format!(
                "the model's inputs [{}] and the features of {file} [{}] differ: model inputs not in the schema: {}; schema features not among the model's inputs: {}. Name the model's inputs like the features, or give the model one [N, {}] tensor input for the features in order",
                sig.inputs
                    .iter()
                    .map(|(n, k)| format!("{n}: {}", k.describe()))
                    .collect::<Vec<_>>()
                    .join(", "),
                features
                    .iter()
                    .map(|f| format!("{}: {}", f.name, f.dtype))
                    .collect::<Vec<_>>()
                    .join(", "),
                list(&not_in_schema),
                list(&not_in_model),
                features.len()
            ));
        }
        for (name, dtype, dims) in &tensors {
            plans.push(InputPlan {
                name: name.to_string(),
                dtype: dtype.to_string(),
                dims: dims.to_vec(),
                domains: Domains::One(feature(name)),
            });
        }
        format!(
            "{} input(s) matched by name with the features of {file}",
            sig.inputs.len()
        )
    };
    for (n, names) in converted {
        notes.push(match names.len() {
            1 => format!("{}: {n}", names[0]),
            k => format!(
                "{n} for {k} features ({}{})",
                names.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                if k > 3 { ", …" } else { "" }
            ),
        });
    }
    let inputs = if problems.is_empty() {
        let mut m = how;
        if !notes.is_empty() {
            m.push_str(&format!(" ({})", notes.join("; ")));
        }
        Check::pass("inputs", m)
    } else {
        Check::fail("inputs", problems.join("; "))
    };
    Comparison {
        inputs,
        outputs: compare_outputs(sig, schema),
        plans,
        unsupported,
    }
}

fn compare_outputs(sig: &ModelSig, schema: &FeatureSchema) -> Check {
    let file = &schema.file;
    if schema.outputs.is_empty() {
        return Check::skip(
            "outputs",
            format!("the schema ({file}) declares no outputs"),
        );
    }
    let model_names: Vec<String> = sig.outputs.iter().map(|(n, _)| n.clone()).collect();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for o in &schema.outputs {
        let Some((_, kind)) = sig.outputs.iter().find(|(n, _)| *n == o.name) else {
            problems.push(format!(
                "schema output {:?} ({file}) is not an output of the model (its outputs: {})",
                o.name,
                list(&model_names)
            ));
            continue;
        };
        match kind {
            ValueKind::Tensor { dtype, dims } => {
                if compatible(&o.dtype, dtype) == Compat::No
                    && compatible(dtype, &o.dtype) == Compat::No
                {
                    problems.push(format!(
                        "output {:?} is {} in the schema ({file}), but the model's is {}",
                        o.name,
                        o.dtype,
                        kind.describe()
                    ));
                } else if !shape_fits(o.shape.as_ref(), row_dims(dims)) {
                    problems.push(format!(
                        "output {:?} is {} in the schema ({file}), but the model's is {}",
                        o.name,
                        shape_text(o.shape.as_ref()),
                        kind.describe()
                    ));
                }
            }
            ValueKind::Sequence(inner) if matches!(**inner, ValueKind::Map { .. }) => {
                let ValueKind::Map { value, .. } = &**inner else {
                    unreachable!()
                };
                if family(value) == family(&o.dtype) {
                    notes.push(format!(
                        "{:?} is a sequence of maps (ZipMap), one map per row",
                        o.name
                    ));
                } else {
                    problems.push(format!(
                        "output {:?} is {} in the schema ({file}), but the model's is {}",
                        o.name,
                        o.dtype,
                        kind.describe()
                    ));
                }
            }
            other => notes.push(format!(
                "{:?} is {}, not compared",
                o.name,
                other.describe()
            )),
        }
    }
    if problems.is_empty() {
        let mut m = format!(
            "{} schema output(s) found in the model with compatible types",
            schema.outputs.len()
        );
        if !notes.is_empty() {
            m.push_str(&format!(" ({})", notes.join("; ")));
        }
        Check::pass("outputs", m)
    } else {
        Check::fail("outputs", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::inputs::{batch_symbols, is_batched, shape_for, synth, Rng, Values};
    use super::*;

    fn f32t(dims: Vec<Dim>) -> ValueKind {
        ValueKind::Tensor {
            dtype: "float32".into(),
            dims,
        }
    }

    fn schema(yaml: &str) -> FeatureSchema {
        match crate::build::schema::parse("s.yaml", yaml.as_bytes()).unwrap() {
            crate::build::schema::Parsed::Schema(s) => s,
            _ => panic!(),
        }
    }

    fn iris_sig() -> ModelSig {
        ModelSig {
            inputs: vec![("input".into(), f32t(vec![Dim::Dynamic, Dim::Fixed(4)]))],
            outputs: vec![
                (
                    "label".into(),
                    ValueKind::Tensor {
                        dtype: "int64".into(),
                        dims: vec![Dim::Dynamic],
                    },
                ),
                (
                    "probabilities".into(),
                    f32t(vec![Dim::Dynamic, Dim::Fixed(3)]),
                ),
            ],
        }
    }

    const IRIS: &str = "features:\n  - {name: a, dtype: float32, range: {min: 4, max: 8}}\n  - {name: b, dtype: float32}\n  - {name: c, dtype: float64}\n  - {name: d, dtype: float32}\noutputs:\n  - {name: label, dtype: int64, categories: [0, 1, 2]}\n  - {name: probabilities, dtype: float32, shape: [3]}\n";

    #[test]
    fn one_conversion_note_for_many_features() {
        let mut y = String::from("features:\n");
        for i in 0..30 {
            y.push_str(&format!("  - {{name: f{i}, dtype: float64}}\n"));
        }
        let s = schema(&y);
        let mut sig = iris_sig();
        sig.inputs = vec![("X".into(), f32t(vec![Dim::Dynamic, Dim::Fixed(30)]))];
        let c = compare(&sig, Some(&s));
        assert!(c.inputs.passed, "{:?}", c.inputs);
        let m = &c.inputs.message;
        assert_eq!(m.matches("values are converted").count(), 1, "{m}");
        assert!(m.contains("for 30 features (f0, f1, f2, …)"), "{m}");
    }

    #[test]
    fn one_matrix_against_k_features() {
        let s = schema(IRIS);
        let c = compare(&iris_sig(), Some(&s));
        assert!(c.inputs.passed, "{:?}", c.inputs);
        assert!(c.inputs.message.contains("float64 values are converted"));
        assert!(c.outputs.passed, "{:?}", c.outputs);
        let syms = batch_symbols(&c.plans);
        assert!(is_batched(&c.plans));
        assert_eq!(shape_for(&c.plans[0], 7, &syms), vec![7, 4]);
        let v = synth(&c.plans[0], &[7, 4], &mut Rng::new(1));
        let Values::Float(v) = v else { panic!() };
        // column 0 comes from feature a's range
        assert!(v.iter().step_by(4).all(|x| (4.0..=8.0).contains(x)));
        assert!(v.iter().skip(1).step_by(4).all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn mismatches_name_both_sides() {
        let s = schema("features:\n  - {name: a, dtype: float32}\n  - {name: b, dtype: float32}\n  - {name: c, dtype: float32}\n");
        let c = compare(&iris_sig(), Some(&s));
        assert!(!c.inputs.passed);
        assert!(
            c.inputs.message.contains("4 columns") && c.inputs.message.contains("3 features"),
            "{}",
            c.inputs.message
        );
        let s = schema("features:\n  - {name: input, dtype: string, shape: [4]}\noutputs:\n  - {name: proba, dtype: float32}\n");
        let c = compare(&iris_sig(), Some(&s));
        assert!(
            c.inputs.message.contains("string in the schema")
                && c.inputs.message.contains("tensor(float32)"),
            "{}",
            c.inputs.message
        );
        assert!(
            !c.outputs.passed && c.outputs.message.contains("\"proba\""),
            "{}",
            c.outputs.message
        );
        // two inputs, names that match nothing
        let sig = ModelSig {
            inputs: vec![
                ("x".into(), f32t(vec![Dim::Dynamic, Dim::Fixed(1)])),
                ("y".into(), f32t(vec![Dim::Dynamic, Dim::Fixed(1)])),
            ],
            outputs: vec![],
        };
        let s = schema("features:\n  - {name: x, dtype: float32}\n  - {name: z, dtype: float32}\n");
        let c = compare(&sig, Some(&s));
        assert!(
            c.inputs.message.contains("not in the schema: y")
                && c.inputs.message.contains("not among the model's inputs: z"),
            "{}",
            c.inputs.message
        );
    }

    #[test]
    fn per_feature_inputs_with_shapes_and_symbols() {
        let sig = ModelSig {
            inputs: vec![
                (
                    "x".into(),
                    f32t(vec![
                        Dim::Symbol("batch".into()),
                        Dim::Symbol("seq".into()),
                        Dim::Fixed(4),
                    ]),
                ),
                (
                    "ids".into(),
                    ValueKind::Tensor {
                        dtype: "int8".into(),
                        dims: vec![Dim::Fixed(2), Dim::Symbol("batch".into())],
                    },
                ),
            ],
            outputs: vec![],
        };
        let s = schema("features:\n  - {name: x, dtype: float32, shape: [5, 4]}\n  - {name: ids, dtype: int64, shape: [-1], range: {min: -500, max: 500}}\n");
        let c = compare(&sig, Some(&s));
        assert!(c.inputs.passed, "{}", c.inputs.message);
        assert!(has_default_values(&c.plans), "x has no range");
        let s = schema("features:\n  - {name: x, dtype: float32, shape: [5, 4], range: {min: 0, max: 1}}\n  - {name: ids, dtype: int64, shape: [-1], categories: [1, 2]}\n");
        assert!(!has_default_values(&compare(&sig, Some(&s)).plans));
        let syms = batch_symbols(&c.plans);
        assert_eq!(shape_for(&c.plans[0], 64, &syms), vec![64, 5, 4]);
        assert_eq!(shape_for(&c.plans[1], 64, &syms), vec![2, 64]);
        // int8 values are clamped to the type
        let Values::Int(v) = synth(&c.plans[1], &[2, 64], &mut Rng::new(3)) else {
            panic!()
        };
        assert!(v.iter().all(|x| (-128..=127).contains(x)));
        // one value per row vs a [N, 3] input
        let s = schema("features:\n  - {name: x, dtype: float32}\n  - {name: ids, dtype: int64, shape: [-1]}\n");
        let c = compare(&sig, Some(&s));
        assert!(
            !c.inputs.passed && c.inputs.message.contains("one value per row"),
            "{}",
            c.inputs.message
        );
    }

    #[test]
    fn categories_and_strings() {
        let sig = ModelSig {
            inputs: vec![(
                "city".into(),
                ValueKind::Tensor {
                    dtype: "string".into(),
                    dims: vec![Dim::Dynamic, Dim::Fixed(1)],
                },
            )],
            outputs: vec![],
        };
        let s = schema("features:\n  - {name: city, dtype: string, categories: [paris, lyon]}\n");
        let c = compare(&sig, Some(&s));
        assert!(c.inputs.passed, "{}", c.inputs.message);
        let Values::Str(v) = synth(&c.plans[0], &[20, 1], &mut Rng::new(9)) else {
            panic!()
        };
        assert!(v.iter().all(|x| x == "paris" || x == "lyon"));
        assert!(v.iter().any(|x| x == "lyon"));
        // a numeric schema for a string input is a mismatch
        let s = schema("features:\n  - {name: city, dtype: float32}\n");
        assert!(!compare(&sig, Some(&s)).inputs.passed);
    }

    #[test]
    fn no_schema_and_unsupported_inputs() {
        let sig = ModelSig {
            inputs: vec![
                ("x".into(), f32t(vec![Dim::Fixed(1), Dim::Fixed(2)])),
                (
                    "m".into(),
                    ValueKind::Map {
                        key: "string".into(),
                        value: "float32".into(),
                    },
                ),
            ],
            outputs: vec![],
        };
        let c = compare(&sig, None);
        assert!(c.inputs.skipped && c.outputs.skipped);
        assert!(has_default_values(&c.plans));
        assert_eq!(c.unsupported.len(), 1);
        assert!(!is_batched(&c.plans));
    }

    #[test]
    fn zipmap_output_is_compatible() {
        let mut sig = iris_sig();
        sig.outputs[1].1 = ValueKind::Sequence(Box::new(ValueKind::Map {
            key: "int64".into(),
            value: "float32".into(),
        }));
        let s = schema(IRIS);
        let c = compare(&sig, Some(&s));
        assert!(
            c.outputs.passed && c.outputs.message.contains("ZipMap"),
            "{}",
            c.outputs.message
        );
    }
}
