//! KitOps Kitfiles (`manifestVersion`, `package`, `model` with `parts`, `datasets`, `code`,
//! `docs`, `prompts`) -> the spec's fields. Every key that does not map is reported.

use super::draft::{existing, read_text, short, yaml_value, Draft, DraftEntry};
use crate::error::{Error, Result};
use crate::format::metadata::Kind;
use crate::format::modelpack::WEIGHT_CONFIG_NAMES;
use serde_json::{Map, Value};
use std::path::Path;

pub const KITFILE: &str = "Kitfile";

/// Known model formats by the framework a Kitfile names.
fn framework_format(fw: &str) -> Option<&'static str> {
    Some(match fw.to_ascii_lowercase().as_str() {
        "onnx" => "onnx",
        "gguf" | "llama.cpp" => "gguf",
        "safetensors" => "safetensors",
        "pytorch" | "torch" => "pytorch",
        "keras" => "keras",
        "tensorflow" => "tensorflow",
        "xgboost" => "xgboost",
        "lightgbm" => "lightgbm",
        _ => return None,
    })
}

fn entries<'a>(d: &mut Draft, v: Option<&'a Value>, field: &str) -> Vec<&'a Map<String, Value>> {
    match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, x)| match x.as_object() {
                Some(o) => Some(o),
                None => {
                    d.warn(format!(
                        "{KITFILE}: {field}[{i}]: not a mapping ({}): not mapped",
                        short(x)
                    ));
                    None
                }
            })
            .collect(),
        Some(Value::Object(o)) => vec![o],
        Some(x) => {
            d.warn(format!(
                "{KITFILE}: {field}: not a list ({}): not mapped",
                short(x)
            ));
            vec![]
        }
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Read the Kitfile in `dir`.
pub fn import(dir: &Path) -> Result<Draft> {
    let path = dir.join(KITFILE);
    let t = read_text(&path, 1 << 20, "Kitfile")?;
    let doc = yaml_value(&path, &t)?;
    let top = doc.as_object().ok_or_else(|| {
        Error::input(format!(
            "{}: not a mapping: a Kitfile has `manifestVersion`, `package`, `model`…",
            path.display()
        ))
    })?;
    let mut d = Draft::default();
    d.add(Kind::Config, DraftEntry::path(KITFILE));
    for (k, v) in top {
        match k.as_str() {
            "manifestVersion" => {}
            "package" => package(&mut d, v),
            "model" => model(dir, &mut d, v),
            "datasets" => {
                for (i, ds) in entries(&mut d, Some(v), "datasets").into_iter().enumerate() {
                    let field = format!("datasets[{i}]");
                    let name = text(ds.get("name"));
                    if let Some(p) = text(ds.get("path")) {
                        match existing(dir, KITFILE, &format!("{field}.path"), &p) {
                            Ok(rel) => d.add(Kind::Data, DraftEntry::path(rel)),
                            Err(w) => d.warn(w),
                        }
                    }
                    let name = name.or_else(|| text(ds.get("path")));
                    if let Some(n) = name {
                        if !d.datasets.iter().any(|(x, _)| *x == n) {
                            d.datasets.push((n, None));
                        }
                    }
                    others(&mut d, ds, &field, &["name", "path", "description"]);
                }
            }
            "code" | "docs" | "prompts" => {
                let kind = if k == "docs" {
                    Kind::Docs
                } else {
                    Kind::Config
                };
                for (i, e) in entries(&mut d, Some(v), k).into_iter().enumerate() {
                    let field = format!("{k}[{i}]");
                    match text(e.get("path")) {
                        Some(p) => match existing(dir, KITFILE, &format!("{field}.path"), &p) {
                            Ok(rel) => d.add(kind, DraftEntry::path(rel)),
                            Err(w) => d.warn(w),
                        },
                        None => d.warn(format!("{KITFILE}: {field}: no `path`: not mapped")),
                    }
                    others(&mut d, e, &field, &["path", "description"]);
                }
            }
            _ => d.warn(format!(
                "{KITFILE}: `{k}: {}` is not a Kitfile key mlart maps",
                short(v)
            )),
        }
    }
    Ok(d)
}

/// Report the keys of `m` other than `known` (and a per-entry license, which the spec has
/// only once).
fn others(d: &mut Draft, m: &Map<String, Value>, field: &str, known: &[&str]) {
    for (k, v) in m {
        if !known.contains(&k.as_str()) {
            d.warn(format!(
                "{KITFILE}: {field}.{k}: {} is not mapped",
                short(v)
            ));
        }
    }
}

fn package(d: &mut Draft, v: &Value) {
    let Some(p) = v.as_object() else {
        d.warn(format!("{KITFILE}: package: not a mapping: not mapped"));
        return;
    };
    for (k, v) in p {
        match k.as_str() {
            "name" => d.name = text(Some(v)),
            "version" => d.version = text(Some(v)),
            "description" => d.description = text(Some(v)),
            "license" => d.license = text(Some(v)),
            "authors" => {
                d.authors = match v {
                    Value::Array(a) => a.iter().filter_map(|x| text(Some(x))).collect(),
                    v => text(Some(v)).into_iter().collect(),
                }
            }
            _ => d.warn(format!(
                "{KITFILE}: package.{k}: {} is not mapped",
                short(v)
            )),
        }
    }
}

fn model(dir: &Path, d: &mut Draft, v: &Value) {
    let Some(m) = v.as_object() else {
        d.warn(format!("{KITFILE}: model: not a mapping: not mapped"));
        return;
    };
    let framework = text(m.get("framework"));
    let format = framework
        .as_deref()
        .and_then(framework_format)
        .map(str::to_string);
    for (k, v) in m {
        match k.as_str() {
            "path" => {
                if let Some(p) = text(Some(v)) {
                    match existing(dir, KITFILE, "model.path", &p) {
                        Ok(rel) => {
                            let is_dir = rel.ends_with('/');
                            d.add(
                                Kind::Model,
                                DraftEntry {
                                    path: rel,
                                    format: if is_dir { None } else { format.clone() },
                                    framework: framework.clone(),
                                    samples: None,
                                },
                            )
                        }
                        Err(w) => d.warn(w),
                    }
                }
            }
            "parts" => {
                let parts: Vec<Map<String, Value>> = entries(d, Some(v), "model.parts")
                    .into_iter()
                    .cloned()
                    .collect();
                for (i, part) in parts.iter().enumerate() {
                    let field = format!("model.parts[{i}]");
                    let Some(p) = text(part.get("path")) else {
                        d.warn(format!("{KITFILE}: {field}: no `path`: not mapped"));
                        continue;
                    };
                    match existing(dir, KITFILE, &format!("{field}.path"), &p) {
                        Ok(rel) => {
                            let base = rel.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                            let kind = if WEIGHT_CONFIG_NAMES.contains(&base) {
                                Kind::Config
                            } else {
                                Kind::Model
                            };
                            d.add(kind, DraftEntry::path(rel));
                        }
                        Err(w) => d.warn(w),
                    }
                    others(d, part, &field, &["path", "name", "type"]);
                }
            }
            "parameters" => match v.as_object() {
                Some(ps) => {
                    for (pk, pv) in ps {
                        d.training.parameters.insert(pk.clone(), pv.clone());
                    }
                }
                None => d.warn(format!(
                    "{KITFILE}: model.parameters: {} is not a mapping: not mapped",
                    short(v)
                )),
            },
            "framework" => {}
            "name" => {
                if d.name.is_none() {
                    d.name = text(Some(v));
                }
            }
            "description" => {
                if d.description.is_none() {
                    d.description = text(Some(v));
                }
            }
            "license" => {
                if d.license.is_none() {
                    d.license = text(Some(v));
                }
            }
            "version" => {
                if d.version.is_none() {
                    d.version = text(Some(v));
                }
            }
            _ => d.warn(format!("{KITFILE}: model.{k}: {} is not mapped", short(v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_not_dropped() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("m.onnx"), "x").unwrap();
        std::fs::write(
            t.path().join("Kitfile"),
            "manifestVersion: 1.0.0\npackage: {name: demo, version: 1.2.0, colour: blue}\nmodel:\n  path: ./m.onnx\n  framework: onnx\n  weird: 1\nsurprise: [1]\n",
        )
        .unwrap();
        let d = import(t.path()).unwrap();
        assert_eq!(d.entries[&Kind::Model][0].format.as_deref(), Some("onnx"));
        for w in ["package.colour", "model.weird", "`surprise"] {
            assert!(
                d.warnings.iter().any(|x| x.contains(w)),
                "{w}: {:?}",
                d.warnings
            );
        }
        std::fs::write(t.path().join("Kitfile"), "model: [unclosed").unwrap();
        let e = import(t.path()).unwrap_err().to_string();
        assert!(e.contains("Kitfile") && e.contains("invalid YAML"), "{e}");
        // the position once: ours, not again the YAML library's own
        assert_eq!(e.matches("line").count(), 1, "{e}");
        assert!(!e.contains("error: "), "{e}");
    }
}
