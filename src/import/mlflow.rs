//! MLflow model folders (`MLmodel`, `conda.yaml`, `python_env.yaml`, `requirements.txt`,
//! `input_example.json`): flavors -> framework and model format, the signature -> the feature
//! schema (the MLmodel itself, in `schema`), env files -> `env`, the input example ->
//! validation samples of an ONNX model, run id / model uuid -> the description and notes.

use super::draft::{existing, read_text, short, yaml_value, Draft, DraftEntry};
use crate::error::{Error, Result};
use crate::format::metadata::Kind;
use serde_json::Value;
use std::path::Path;

pub const MLMODEL: &str = "MLmodel";
const MAX_MLMODEL: u64 = 1 << 20;

/// flavor -> (framework, keys naming its model data, format)
const FLAVORS: &[(&str, &str, &[&str], Option<&str>)] = &[
    ("onnx", "onnx", &["data"], Some("onnx")),
    ("sklearn", "scikit-learn", &["pickled_model"], None),
    ("xgboost", "xgboost", &["data"], Some("xgboost")),
    ("lightgbm", "lightgbm", &["data"], Some("lightgbm")),
    (
        "pytorch",
        "pytorch",
        &["model_data", "data"],
        Some("pytorch"),
    ),
    (
        "tensorflow",
        "tensorflow",
        &["saved_model_dir", "data"],
        Some("tensorflow"),
    ),
    ("keras", "keras", &["data"], Some("keras")),
    (
        "transformers",
        "transformers",
        &["model_binary", "source_model_name"],
        None,
    ),
    ("catboost", "catboost", &["data"], Some("other")),
    ("statsmodels", "statsmodels", &["data"], Some("pickle")),
    ("prophet", "prophet", &["model_data", "data"], Some("other")),
    ("spark", "spark", &["model_data"], Some("other")),
    ("h2o", "h2o", &["data"], Some("other")),
];

/// Where the MLmodel of `dir` is: `""` (an MLflow model folder), `artifacts/` (an MLflow 3
/// logged model as the file store keeps it: `models/<model_id>/{artifacts/MLmodel, metrics/,
/// params/, meta.yaml}`) or `artifacts/<path>/` (an MLflow 2 run: `<run_id>/{artifacts/<path>/
/// MLmodel, metrics/, params/, meta.yaml}`, with one logged model). None: not an MLflow folder.
pub fn model_dir(dir: &Path) -> Option<String> {
    if dir.join(MLMODEL).is_file() {
        return Some(String::new());
    }
    let artifacts = dir.join("artifacts");
    if artifacts.join(MLMODEL).is_file() {
        return Some("artifacts/".into());
    }
    let mut found = std::fs::read_dir(&artifacts)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(MLMODEL).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string));
    match (found.next(), found.next()) {
        (Some(one), None) if super::draft::project_path(&one).is_some() => {
            Some(format!("artifacts/{one}/"))
        }
        _ => None,
    }
}

/// Read the MLflow model in `dir` (or in its `artifacts/`, [`model_dir`]) into a draft. An
/// MLflow `metrics/` folder (one file per metric, `timestamp value step` lines) beside the
/// model or in it is the `eval` kind: each metric is the value MLflow reports (highest step,
/// then latest timestamp).
pub fn import(dir: &Path) -> Result<Draft> {
    let prefix = model_dir(dir).unwrap_or_default();
    let mut d = import_model(&dir.join(&prefix))?;
    if !prefix.is_empty() {
        for list in d.entries.values_mut() {
            for e in list.iter_mut() {
                e.path = format!("{prefix}{}", e.path);
                e.samples = e.samples.take().map(|s| format!("{prefix}{s}"));
            }
        }
        d.claimed = d.claimed.iter().map(|c| format!("{prefix}{c}")).collect();
        d.note(format!("the MLflow model is in {prefix}"));
    }
    for m in [format!("{prefix}metrics"), "metrics".to_string()] {
        if dir.join(&m).is_dir() && !d.covers(&format!("{m}/x")) {
            d.add(Kind::Eval, DraftEntry::path(format!("{m}/")));
            d.note(format!(
                "{m}/: MLflow metric files (one per metric, a line per value logged): each metric is the value MLflow reports, the last value logged (highest step, then latest timestamp)"
            ));
        }
    }
    Ok(d)
}

fn import_model(dir: &Path) -> Result<Draft> {
    let path = dir.join(MLMODEL);
    let text = read_text(&path, MAX_MLMODEL, "MLflow MLmodel file")?;
    let doc = yaml_value(&path, &text)?;
    let file = MLMODEL;
    let Some(top) = doc.as_object() else {
        return Err(Error::input(format!(
            "{}: not a mapping: an MLmodel file has `flavors:`",
            path.display()
        )));
    };
    let flavors = match top.get("flavors") {
        Some(Value::Object(f)) if !f.is_empty() => f,
        Some(_) => {
            return Err(Error::input(format!(
                "{}: `flavors` is not a mapping of flavor -> settings",
                path.display()
            )))
        }
        None => {
            return Err(Error::input(format!(
                "{}: no `flavors`: not an MLflow model",
                path.display()
            )))
        }
    };
    let mut d = Draft::default();
    d.add(Kind::Schema, DraftEntry::path(MLMODEL));

    // The framework flavor (the one that is not the generic python_function).
    let primary = flavors
        .iter()
        .find(|(k, _)| k.as_str() != "python_function")
        .or_else(|| flavors.iter().next());
    let mut model_format: Option<String> = None;
    if let Some((flavor, conf)) = primary {
        let known = FLAVORS.iter().find(|f| f.0 == flavor);
        let keys: &[&str] = match known {
            Some(f) => f.2,
            None => &["data", "model_path", "model_data", "artifacts"],
        };
        if known.is_none() {
            d.warn(format!(
                "{file}: flavors.{flavor}: a flavor mlart does not know: its files are listed by kind, with no framework"
            ));
        }
        let pyfunc = flavors.get("python_function");
        let data = keys
            .iter()
            .find_map(|k| conf.get(*k).and_then(Value::as_str).map(|v| (*k, v)))
            .or_else(|| {
                pyfunc
                    .and_then(|p| p.get("model_path").or(p.get("data")))
                    .and_then(Value::as_str)
                    .map(|v| ("python_function.model_path", v))
            });
        let framework = known.map(|f| f.1.to_string());
        let mut format = known.and_then(|f| f.3).map(str::to_string);
        if flavor == "sklearn" {
            format = match conf.get("serialization_format").and_then(Value::as_str) {
                Some("pickle") | Some("cloudpickle") | None => Some("pickle".into()),
                Some(_) => Some("other".into()),
            };
        }
        match data {
            Some((key, p)) => match existing(dir, file, &format!("flavors.{flavor}.{key}"), p) {
                Ok(rel) => {
                    let is_dir = rel.ends_with('/');
                    if is_dir && format.as_deref() == Some("onnx") {
                        format = None;
                    }
                    model_format = format.clone();
                    d.add(
                        Kind::Model,
                        DraftEntry {
                            path: rel,
                            // A format names a file's; a folder's files are detected one by one.
                            format: if is_dir { None } else { format },
                            framework,
                            samples: None,
                        },
                    );
                }
                Err(w) => d.warn(w),
            },
            None => d.warn(format!(
                "{file}: flavors.{flavor}: names no model file: list the model's files under `model:`"
            )),
        }
        let version_key = format!("{flavor}_version");
        if let Some(v) = conf.get(&version_key).and_then(Value::as_str) {
            d.note(format!("{file}: {flavor} {v}"));
        }
        d.description = Some(format!(
            "{} model exported by MLflow",
            known.map(|f| f.1).unwrap_or(flavor)
        ));
    }

    // The input example: samples for `mlart validate` of an ONNX model; a doc otherwise.
    let example = top
        .get("saved_input_example_info")
        .and_then(|i| i.get("artifact_path"))
        .and_then(Value::as_str)
        .unwrap_or("input_example.json");
    for ex in [example, "serving_input_example.json"] {
        if dir.join(ex).is_file() {
            d.add(Kind::Docs, DraftEntry::path(ex));
        }
    }
    if model_format.as_deref() == Some("onnx") && dir.join(example).is_file() {
        if let Some(m) = d.entries.get_mut(&Kind::Model).and_then(|l| l.first_mut()) {
            m.samples = Some(example.to_string());
        }
    }

    // The signature is read from the MLmodel by `bundle` (schema section); say what it holds.
    match top.get("signature") {
        None | Some(Value::Null) => d.warn(format!(
            "{file}: no `signature`: the bundle has no feature schema (log the model with a signature)"
        )),
        Some(sig) => {
            if let Some(p) = sig.get("params").filter(|p| !p.is_null()) {
                d.warn(format!(
                    "{file}: signature.params {} are not part of a feature schema: not mapped",
                    short(p)
                ));
            }
        }
    }

    // Identity: run id, model uuid/id, when and by which MLflow.
    let s = |k: &str| top.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut ids = Vec::new();
    if let Some(r) = s("run_id") {
        ids.push(format!("run {r}"));
    }
    if let Some(u) = s("model_uuid") {
        ids.push(format!("model uuid {u}"));
    }
    if let Some(m) = s("model_id") {
        ids.push(format!("model id {m}"));
    }
    if !ids.is_empty() {
        if let Some(desc) = &mut d.description {
            desc.push_str(&format!(" ({})", ids.join(", ")));
        }
    }
    for k in [
        "run_id",
        "model_uuid",
        "model_id",
        "artifact_path",
        "mlflow_version",
        "utc_time_created",
    ] {
        if let Some(v) = s(k) {
            d.note(format!("{file}: {k}: {v}"));
        }
    }
    if let Some(m) = top.get("metadata").filter(|m| !m.is_null()) {
        d.warn(format!(
            "{file}: metadata {} is not mapped (the spec has no free-form metadata)",
            short(m)
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            std::fs::write(t.path().join(p), c).unwrap();
        }
        t
    }

    #[test]
    fn onnx_flavor_with_example() {
        let t = folder(&[
            ("MLmodel", "flavors:\n  onnx: {data: model.onnx, onnx_version: 1.17.0}\n  python_function: {data: model.onnx, loader_module: mlflow.onnx}\nrun_id: abc123\nmodel_uuid: u-1\nsignature:\n  inputs: '[{\"type\": \"tensor\", \"tensor-spec\": {\"dtype\": \"float32\", \"shape\": [-1, 4]}}]'\n"),
            ("model.onnx", "x"),
            ("input_example.json", "[[1,2,3,4]]"),
        ]);
        let d = import(t.path()).unwrap();
        let m = &d.entries[&Kind::Model][0];
        assert_eq!(m.path, "model.onnx");
        assert_eq!(m.format.as_deref(), Some("onnx"));
        assert_eq!(m.samples.as_deref(), Some("input_example.json"));
        assert!(d.description.unwrap().contains("run abc123"));
        assert!(d.notes.iter().any(|n| n.contains("model_uuid: u-1")));
    }

    /// The folders of MLflow's file store (mlflow 3.18, `MLFLOW_ALLOW_FILE_STORE=true`): a
    /// logged model `mlruns/<exp>/models/<model_id>/` holds `artifacts/MLmodel` and `metrics/`;
    /// an MLflow 2 run `mlruns/<exp>/<run_id>/` holds `artifacts/<path>/MLmodel` and `metrics/`.
    #[test]
    fn file_store_folders_with_metrics() {
        let t = tempfile::tempdir().unwrap();
        for d in ["artifacts/model", "metrics", "params"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        for (p, c) in [
            (
                "artifacts/model/MLmodel",
                "flavors:\n  sklearn: {pickled_model: model.pkl}\n",
            ),
            ("artifacts/model/model.pkl", "x"),
            ("metrics/accuracy", "1 0.5 0\n2 0.9 1\n"),
            ("meta.yaml", "run_id: r\n"),
        ] {
            std::fs::write(t.path().join(p), c).unwrap();
        }
        assert_eq!(model_dir(t.path()).as_deref(), Some("artifacts/model/"));
        let d = import(t.path()).unwrap();
        assert_eq!(d.entries[&Kind::Model][0].path, "artifacts/model/model.pkl");
        assert_eq!(d.entries[&Kind::Schema][0].path, "artifacts/model/MLmodel");
        assert_eq!(d.entries[&Kind::Eval][0].path, "metrics/");
        assert!(d.notes.iter().any(|n| n.contains("last value logged")));
        // two models in artifacts/: not one MLflow model
        std::fs::create_dir_all(t.path().join("artifacts/other")).unwrap();
        std::fs::write(t.path().join("artifacts/other/MLmodel"), "flavors: {}\n").unwrap();
        assert_eq!(model_dir(t.path()), None);
        assert_eq!(
            model_dir(&t.path().join("artifacts/model")).as_deref(),
            Some("")
        );
    }

    #[test]
    fn hostile_mlmodels_are_errors_naming_the_file() {
        for (text, want) in [
            ("flavors: [1, 2", "invalid YAML"),
            ("- a\n- b\n", "not a mapping"),
            ("run_id: x\n", "no `flavors`"),
            ("flavors: 3\n", "`flavors` is not a mapping"),
        ] {
            let t = folder(&[("MLmodel", text)]);
            let e = import(t.path()).unwrap_err().to_string();
            assert!(e.contains("MLmodel") && e.contains(want), "{text}: {e}");
        }
        let t = folder(&[("MLmodel", "flavors:\n  onnx: {data: ../../etc/passwd}\n")]);
        let d = import(t.path()).unwrap();
        assert!(d.warnings.iter().any(|w| w.contains("outside the project")));
        assert!(!d.entries.contains_key(&Kind::Model));
    }
}
