//! Feature schemas: mlart's own format (YAML/JSON with `features:`), and MLflow signatures
//! (an `MLmodel` file's `signature:`, or a JSON/YAML with `inputs`/`outputs`), normalised to
//! one form stored in the metadata document.

use crate::format::feature_schema::{Feature, FeatureSchema, DTYPES};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlartSchemaFile {
    features: Vec<Feature>,
    #[serde(default)]
    outputs: Vec<Feature>,
}

/// What a schema-section file turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Schema(FeatureSchema),
    /// Not a feature schema (kept as a plain file).
    NotASchema,
}

/// Parse a schema-section file. `Err` is a file that looks like a schema but is invalid.
pub fn parse(rel: &str, bytes: &[u8]) -> Result<Parsed, String> {
    let base = rel.rsplit('/').next().unwrap_or(rel);
    let ext = base
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !(base == "MLmodel" || matches!(ext.as_str(), "yaml" | "yml" | "json")) {
        return Ok(Parsed::NotASchema);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let doc: Value = if ext == "json" {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "invalid YAML: {}",
                e.to_string().lines().next().unwrap_or_default()
            )
        })?
    };
    let Some(obj) = doc.as_object() else {
        return Ok(Parsed::NotASchema);
    };
    if obj.contains_key("features") {
        // Parse typed from the text (not from `doc`): YAML scalars such as `y` or `no` must
        // stay strings where the schema wants strings.
        let f: MlartSchemaFile = if ext == "json" {
            serde_json::from_str(text).map_err(|e| format!("invalid mlart feature schema: {e}"))?
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let loc = e
                    .location()
                    .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                    .unwrap_or_default();
                format!(
                    "invalid mlart feature schema: {loc}{}",
                    e.to_string().lines().next().unwrap_or_default()
                )
            })?
        };
        let schema = FeatureSchema {
            source: "mlart".into(),
            file: rel.into(),
            features: f.features,
            outputs: f.outputs,
        };
        check(&schema)?;
        return Ok(Parsed::Schema(schema));
    }
    let sig = match obj.get("signature") {
        Some(s) => s,
        None if obj.contains_key("inputs") => &doc,
        None => return Ok(Parsed::NotASchema),
    };
    let features = mlflow_specs(sig.get("inputs"), "inputs")?;
    let outputs = mlflow_specs(sig.get("outputs"), "outputs")?;
    let schema = FeatureSchema {
        source: "mlflow".into(),
        file: rel.into(),
        features,
        outputs,
    };
    check(&schema)?;
    Ok(Parsed::Schema(schema))
}

fn check(s: &FeatureSchema) -> Result<(), String> {
    if s.features.is_empty() {
        return Err("the schema lists no features".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, f) in s.features.iter().chain(&s.outputs).enumerate() {
        if f.name.is_empty() {
            return Err(format!("feature #{} has an empty name", i + 1));
        }
        if !DTYPES.contains(&f.dtype.as_str()) {
            return Err(format!(
                "feature {:?}: unknown dtype {:?} (use one of {})",
                f.name,
                f.dtype,
                DTYPES.join(", ")
            ));
        }
        if let Some(r) = &f.range {
            if let (Some(lo), Some(hi)) = (r.min, r.max) {
                if lo > hi {
                    return Err(format!(
                        "feature {:?}: range min {lo} is above max {hi}",
                        f.name
                    ));
                }
            }
        }
        if let Some(shape) = &f.shape {
            if shape.iter().any(|d| *d < -1) {
                return Err(format!(
                    "feature {:?}: shape dims must be >= 0, or -1 for dynamic",
                    f.name
                ));
            }
        }
        if i < s.features.len() && !names.insert(f.name.clone()) {
            return Err(format!("feature {:?} is listed twice", f.name));
        }
    }
    Ok(())
}

/// MLflow stores the specs as a JSON string inside YAML; accept that or a plain list.
fn mlflow_specs(v: Option<&Value>, what: &str) -> Result<Vec<Feature>, String> {
    let list: Value = match v {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("signature {what}: invalid JSON: {e}"))?
        }
        Some(v) => v.clone(),
    };
    let Value::Array(items) = list else {
        return Err(format!(
            "signature {what}: expected a list of column or tensor specs"
        ));
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let ty = it
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("signature {what}[{i}]: no `type`"))?;
        let name = it.get("name").and_then(Value::as_str).map(str::to_string);
        let required = it.get("required").and_then(Value::as_bool).unwrap_or(true);
        let f = if ty == "tensor" {
            let ts = it
                .get("tensor-spec")
                .ok_or_else(|| format!("signature {what}[{i}]: tensor without `tensor-spec`"))?;
            let dt = ts
                .get("dtype")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("signature {what}[{i}]: tensor-spec without dtype"))?;
            // MLflow's tensor shape includes the batch dimension (`[-1, 30]`: any number of
            // rows of 30); the feature schema holds the per-row shape (`[30]`, none for one
            // value per row).
            let shape: Option<Vec<i64>> = match ts.get("shape") {
                None | Some(Value::Null) => None,
                Some(Value::Array(a)) => {
                    let dims = a
                        .iter()
                        .map(|d| {
                            d.as_i64().filter(|d| *d >= -1).ok_or_else(|| {
                                format!("signature {what}[{i}]: tensor-spec shape {a:?}: a dimension is not an integer >= -1")
                            })
                        })
                        .collect::<Result<Vec<i64>, String>>()?;
                    match dims.get(1..) {
                        None | Some([]) => None,
                        Some(row) => Some(row.to_vec()),
                    }
                }
                Some(v) => {
                    return Err(format!(
                        "signature {what}[{i}]: tensor-spec shape {v} is not a list"
                    ))
                }
            };
            Feature {
                name: name.unwrap_or_else(|| positional_name(what, i)),
                dtype: numpy_dtype(dt)
                    .ok_or_else(|| format!("signature {what}[{i}]: unknown tensor dtype {dt:?}"))?,
                shape,
                nullable: false,
                description: None,
                range: None,
                categories: None,
                default: None,
            }
        } else {
            Feature {
                name: name.unwrap_or_else(|| positional_name(what, i)),
                dtype: mlflow_dtype(ty)
                    .ok_or_else(|| format!("signature {what}[{i}]: unknown column type {ty:?}"))?
                    .into(),
                shape: None,
                nullable: !required,
                description: None,
                range: None,
                categories: None,
                default: None,
            }
        };
        out.push(f);
    }
    Ok(out)
}

/// The name of the `i`th unnamed tensor of an MLflow signature (`inputs` or `outputs`):
/// `input[0]`, `output[1]`. `mlart validate` fits such tensors to the model's by position.
pub fn positional_name(what: &str, i: usize) -> String {
    format!("{}[{i}]", what.trim_end_matches('s'))
}

/// Is `name` the positional name of the `i`th tensor of `what`?
pub fn is_positional(name: &str, what: &str, i: usize) -> bool {
    name == positional_name(what, i)
}

fn mlflow_dtype(t: &str) -> Option<&'static str> {
    Some(match t {
        "double" => "float64",
        "float" => "float32",
        "long" => "int64",
        "integer" => "int32",
        "boolean" => "bool",
        "string" => "string",
        "binary" => "binary",
        "datetime" => "datetime",
        _ => return None,
    })
}

fn numpy_dtype(t: &str) -> Option<String> {
    let t = t.trim_start_matches(['<', '>', '|', '=']);
    let s = match t {
        "float16" | "f2" => "float16",
        "float32" | "f4" | "float" => "float32",
        "float64" | "f8" | "double" => "float64",
        "int8" | "i1" => "int8",
        "int16" | "i2" => "int16",
        "int32" | "i4" => "int32",
        "int64" | "i8" => "int64",
        "uint8" | "u1" => "uint8",
        "uint16" | "u2" => "uint16",
        "uint32" | "u4" => "uint32",
        "uint64" | "u8" => "uint64",
        "bool" => "bool",
        "str" | "object" | "string" => "string",
        _ if t.starts_with('U') || t.starts_with("<U") => "string",
        _ => return None,
    };
    Some(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(p: Parsed) -> FeatureSchema {
        match p {
            Parsed::Schema(s) => s,
            Parsed::NotASchema => panic!("not a schema"),
        }
    }

    #[test]
    fn mlart_yaml() {
        let s = schema(parse("s/f.yaml", b"features:\n  - name: a\n    dtype: float32\n    range: {min: 0, max: 1}\noutputs:\n  - {name: y, dtype: int64}\n").unwrap());
        assert_eq!(s.features[0].range.as_ref().unwrap().max, Some(1.0));
        assert_eq!(s.outputs[0].dtype, "int64");
    }

    #[test]
    fn mlflow_mlmodel_and_json() {
        let mlmodel = br#"flavors: {}
signature:
  inputs: '[{"type": "double", "name": "sepal length (cm)", "required": true}, {"type": "string", "name": "c", "required": false}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
"#;
        let s = schema(parse("model/MLmodel", mlmodel).unwrap());
        assert_eq!(s.source, "mlflow");
        assert_eq!(s.features[0].dtype, "float64");
        assert!(s.features[1].nullable);
        // [-1]: one value per row; unnamed: by position.
        assert_eq!(s.outputs[0].shape, None);
        assert_eq!(s.outputs[0].name, "output[0]");
        let j = br#"{"inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}, "name": "x"}]}"#;
        let f = &schema(parse("sig.json", j).unwrap()).features[0];
        assert_eq!(f.dtype, "float32");
        // the batch dimension is not part of the per-row shape
        assert_eq!(f.shape, Some(vec![4]));
        let j = br#"{"inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 30]}}]}"#;
        let f = &schema(parse("sig.json", j).unwrap()).features[0];
        assert_eq!(
            (f.name.as_str(), f.shape.clone()),
            ("input[0]", Some(vec![30]))
        );
        let bad = br#"{"inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, "x"]}}]}"#;
        assert!(parse("sig.json", bad).unwrap_err().contains("shape"));
    }

    #[test]
    fn bad_schemas() {
        assert!(
            parse("f.yaml", b"features:\n  - name: a\n    dtype: complex\n")
                .unwrap_err()
                .contains("unknown dtype")
        );
        assert!(parse("f.yaml", b"features:\n  - name: a\n")
            .unwrap_err()
            .contains("dtype"));
        assert!(parse(
            "f.yaml",
            b"features:\n  - {name: a, dtype: int8, colour: 1}\n"
        )
        .unwrap_err()
        .contains("colour"));
        assert!(parse(
            "f.yaml",
            b"features:\n  - {name: a, dtype: int8}\n  - {name: a, dtype: int8}\n"
        )
        .unwrap_err()
        .contains("twice"));
        assert!(parse(
            "f.yaml",
            b"features:\n  - {name: a, dtype: int8, range: {min: 2, max: 1}}\n"
        )
        .unwrap_err()
        .contains("above"));
        assert!(parse("f.json", b"{\"inputs\": \"[oops\"}").is_err());
        assert!(matches!(
            parse("notes.md", b"x").unwrap(),
            Parsed::NotASchema
        ));
        assert!(matches!(
            parse("other.yaml", b"a: 1\n").unwrap(),
            Parsed::NotASchema
        ));
    }
}
