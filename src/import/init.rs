//! `mlart init`: look at a project folder, guess the kind of each file, and write mlart.yaml
//! from the template in templates/.

use super::draft::{Draft, DraftEntry, Origin};
use super::{hf, kitfile, mlflow, modelfile};
use crate::build::collect::is_glob;
use crate::error::{Error, IoContext, Result};
use crate::format::metadata::Kind;
use crate::spec;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const TEMPLATE: &str = include_str!("../../templates/mlart.yaml.j2");

/// Folders never scanned: tool caches, environments, build outputs.
const SKIP_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env.d",
    "node_modules",
    "__pycache__",
    ".ipynb_checkpoints",
    "build",
    "dist",
    "target",
    ".mypy_cache",
    ".pytest_cache",
    ".tox",
    "mlruns",
    ".dvc",
];

#[derive(Debug, Serialize)]
pub struct InitResult {
    pub path: String,
    pub name: String,
    /// The kind of folder it was read as.
    pub from: Origin,
    /// kind -> entries written
    pub sections: BTreeMap<String, Vec<String>>,
    pub unclassified: Vec<String>,
    /// What did not map onto the spec (also written as comments in mlart.yaml).
    pub warnings: Vec<String>,
}

#[derive(Serialize)]
struct Section {
    kind: &'static str,
    help: &'static str,
    entries: Vec<String>,
}

fn help(k: Kind) -> &'static str {
    match k {
        Kind::Model => "model: the model files (format detected from the extension; `- {path: m.bin, format: pickle}` to say it)",
        Kind::Data => "data: datasets (optional; large files get a layer of their own)",
        Kind::Schema => "schema: the feature schema (mlart YAML with `features:`, or an MLflow signature/MLmodel)",
        Kind::Env => "env: environment specs (requirements.txt, environment.yml, pyproject.toml)",
        Kind::Config => "config: pipeline configs, hyperparameters, DAGs",
        Kind::Docs => "docs: model cards, explainability reports, images",
        Kind::Eval => "eval: evaluation reports; metrics are read from JSON, CSV and YAML",
        Kind::Logs => "logs: training logs",
    }
}

/// Guess the kind of a file from its path.
pub fn classify(rel: &str) -> Option<Kind> {
    let lower = rel.to_ascii_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    let dirs: Vec<&str> = lower.split('/').collect::<Vec<_>>();
    let dirs = &dirs[..dirs.len() - 1];
    let in_dir = |names: &[&str]| dirs.iter().any(|d| names.contains(d));
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if base == spec::SPEC_FILE
        || base == crate::build::collect::IGNORE_FILE
        || base.starts_with('.')
    {
        return None;
    }
    if base == "mlmodel" {
        return Some(Kind::Schema);
    }
    // ONNX Model Zoo sample data beside a model: validation samples, kept as eval.
    if crate::format::test_data::is_test_data(rel) {
        return Some(Kind::Eval);
    }
    if matches!(
        ext,
        "onnx"
            | "pkl"
            | "pickle"
            | "joblib"
            | "safetensors"
            | "pt"
            | "pth"
            | "h5"
            | "keras"
            | "gguf"
            | "ubj"
            | "tflite"
            | "pb"
            | "ckpt"
            | "bin"
    ) {
        return Some(Kind::Model);
    }
    if base.starts_with("requirements") && ext == "txt"
        || matches!(
            base,
            "environment.yml"
                | "environment.yaml"
                | "conda.yaml"
                | "conda.yml"
                | "pyproject.toml"
                | "pipfile"
                | "pipfile.lock"
                | "poetry.lock"
                | "uv.lock"
                | "python_env.yaml"
        )
    {
        return Some(Kind::Env);
    }
    if matches!(ext, "yaml" | "yml" | "json")
        && (base.contains("schema")
            || base.contains("signature")
            || base.contains("features")
            || in_dir(&["schema", "schemas"]))
    {
        return Some(Kind::Schema);
    }
    if ext == "log" || in_dir(&["logs", "log"]) {
        return Some(Kind::Logs);
    }
    if in_dir(&["eval", "evaluation", "metrics", "reports", "results"])
        || (matches!(ext, "json" | "csv" | "yaml" | "yml")
            && (base.contains("metric")
                || base.contains("confusion")
                || base.contains("report")
                || base.contains("eval")))
    {
        return Some(Kind::Eval);
    }
    if matches!(
        ext,
        "md" | "rst" | "pdf" | "html" | "png" | "jpg" | "jpeg" | "svg" | "ipynb"
    ) || in_dir(&["docs", "doc"])
    {
        return Some(Kind::Docs);
    }
    if matches!(
        ext,
        "yaml" | "yml" | "json" | "toml" | "cfg" | "ini" | "conf"
    ) || base == "mlproject"
        || base == "dvc.yaml"
        || in_dir(&["config", "configs", "conf"])
    {
        return Some(Kind::Config);
    }
    if matches!(
        ext,
        "csv" | "parquet" | "feather" | "arrow" | "npy" | "npz" | "tsv" | "jsonl" | "tfrecord"
    ) || in_dir(&["data", "dataset", "datasets"])
    {
        return Some(Kind::Data);
    }
    None
}

/// Settings of `mlart init`.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// The bundle's name (default: the importer's, else the folder's).
    pub name: Option<String>,
    /// Overwrite an existing mlart.yaml.
    pub force: bool,
    /// Read the folder as this kind (default: detected).
    pub from: Option<Origin>,
    /// The git work tree the folder is in (the CLI reads it): `source` and `revision`.
    pub git: Option<GitInfo>,
}

/// Where the project's files come from in git.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitInfo {
    /// The remote URL, without credentials.
    pub source: Option<String>,
    pub revision: String,
    /// The work tree had changes not committed.
    pub dirty: bool,
}

/// Scan `dir` and write `dir/mlart.yaml` (refusing to overwrite it unless `force`).
pub fn init(dir: &Path, name: Option<&str>, force: bool) -> Result<InitResult> {
    init_with(
        dir,
        &InitOptions {
            name: name.map(str::to_string),
            force,
            ..Default::default()
        },
    )
}

/// The files of a project folder (relative, `/`-separated, sorted), tool caches and hidden
/// folders left out.
pub fn scan(dir: &Path) -> Result<Vec<String>> {
    if !dir.is_dir() {
        return Err(Error::input(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut files: Vec<String> = Vec::new();
    let mut it = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(|e| Error::Io {
            context: format!("scanning {}", dir.display()),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("walk error")),
        })?;
        let n = e.file_name().to_string_lossy();
        if e.depth() > 0
            && e.file_type().is_dir()
            && (SKIP_DIRS.contains(&n.as_ref()) || n.starts_with('.'))
        {
            it.skip_current_dir();
            continue;
        }
        if e.file_type().is_file() {
            if let Ok(rel) = e.path().strip_prefix(dir) {
                // A name a spec entry cannot name (it would be read as a drive letter, a
                // separator, or not at all) is left out, with a warning, not written broken.
                match rel.to_str() {
                    Some(r)
                        if !r.contains(['\\', '\n', '\r'])
                            && r.as_bytes().get(1) != Some(&b':') =>
                    {
                        files.push(r.to_string())
                    }
                    _ => tracing::warn!(
                        "{}: left out of mlart.yaml: its name cannot be written in a spec (not UTF-8, a backslash, a line break, or `:` second); rename it to bundle it",
                        e.path().display()
                    ),
                }
            }
        }
    }
    Ok(files)
}

/// The kind of folder: a Kitfile or Modelfile (the manifest of the tool being left), an
/// MLflow model (MLmodel), a Hugging Face folder (config.json beside weights), else files.
pub fn detect(dir: &Path, files: &[String]) -> Origin {
    if dir.join(kitfile::KITFILE).is_file() {
        Origin::Kitfile
    } else if dir.join(modelfile::MODELFILE).is_file() {
        Origin::Modelfile
    } else if mlflow::model_dir(dir).is_some() {
        Origin::Mlflow
    } else if hf::detect(dir, files) {
        Origin::Huggingface
    } else {
        Origin::Files
    }
}

/// The draft of a folder, read by the importer of its kind (`from`, or detected).
pub fn draft(dir: &Path, files: &[String], from: Option<Origin>) -> Result<(Origin, Draft)> {
    let origin = from.unwrap_or_else(|| detect(dir, files));
    let missing = |f: &str| {
        Error::input(format!(
            "{}: no {f}: not a{} {} folder (drop `--from` to detect the kind)",
            dir.display(),
            if origin == Origin::Mlflow { "n" } else { "" },
            origin.as_str()
        ))
    };
    let d = match origin {
        Origin::Files => Draft::default(),
        Origin::Mlflow if mlflow::model_dir(dir).is_none() => return Err(missing("MLmodel")),
        Origin::Mlflow => mlflow::import(dir)?,
        Origin::Huggingface if !dir.join("config.json").is_file() => {
            return Err(missing("config.json"))
        }
        Origin::Huggingface => hf::import(dir, files)?,
        Origin::Kitfile if !dir.join(kitfile::KITFILE).is_file() => return Err(missing("Kitfile")),
        Origin::Kitfile => kitfile::import(dir)?,
        Origin::Modelfile if !dir.join(modelfile::MODELFILE).is_file() => {
            return Err(missing("Modelfile"))
        }
        Origin::Modelfile => modelfile::import(dir)?,
    };
    Ok((origin, d))
}

/// The mlart.yaml text for a folder, and what `init` reports about it.
pub fn render(dir: &Path, opts: &InitOptions) -> Result<(String, InitResult)> {
    let files = scan(dir)?;
    let (origin, mut d) = draft(dir, &files, opts.from)?;
    d.settle_overlaps();
    if let Some(g) = &opts.git {
        d.source = d.source.take().or(g.source.clone());
        d.revision = Some(g.revision.clone());
        if g.dirty {
            d.note(format!(
                "revision {}: the work tree had changes not committed when this was written",
                g.revision
            ));
        }
    }
    let spec_path = dir.join(spec::SPEC_FILE);
    let mut by_kind: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    let mut unclassified = Vec::new();
    let mut dir_kinds: BTreeMap<String, Option<Option<Kind>>> = BTreeMap::new();
    for f in &files {
        if d.covers(f) {
            if let Some((top, _)) = f.split_once('/') {
                dir_kinds.insert(top.to_string(), None);
            }
            continue;
        }
        let k = classify(f);
        if let Some((top, _)) = f.split_once('/') {
            let slot = dir_kinds.entry(top.to_string()).or_insert(Some(k));
            if *slot != Some(k) {
                *slot = None;
            }
        }
        match k {
            Some(k) => by_kind.entry(k).or_default().push(f.clone()),
            None => {
                if !f.ends_with(spec::SPEC_FILE) && !f.ends_with(crate::build::collect::IGNORE_FILE)
                {
                    unclassified.push(f.clone())
                }
            }
        }
    }
    // A top-level folder whose files are all one kind is listed as the folder.
    for (top, k) in &dir_kinds {
        if is_glob(top) || d.claimed.iter().any(|c| c.starts_with(&format!("{top}/"))) {
            continue; // listed file by file, escaped
        }
        if let Some(Some(k)) = k {
            if let Some(list) = by_kind.get_mut(k) {
                list.retain(|f| !f.starts_with(&format!("{top}/")));
                list.push(format!("{top}/"));
                list.sort();
            }
        }
    }
    let name = match opts.name.as_deref() {
        Some(n) => n.to_string(),
        None => match d.name.as_deref().map(sanitize_name) {
            Some(n) if n != "model" || d.name.as_deref() == Some("model") => n,
            _ => {
                let base = std::fs::canonicalize(dir)
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "model".into());
                sanitize_name(&base)
            }
        },
    };
    if !spec::is_valid_name(&name) {
        return Err(Error::input(format!("--name {name:?} cannot name an OCI repository: use lowercase letters, digits and . _ -")));
    }
    let version = match d.version.take() {
        Some(v) if spec::is_valid_tag(&v) => v,
        Some(v) => {
            d.warn(format!(
                "version {v:?} cannot tag an OCI image: 0.1.0 written instead"
            ));
            "0.1.0".into()
        }
        None => "0.1.0".into(),
    };
    if by_kind.is_empty() && d.entries.is_empty() {
        let found = if unclassified.is_empty() {
            "no file".to_string()
        } else {
            let more = if unclassified.len() > 5 { ", …" } else { "" };
            format!(
                "only files of no known kind ({}{more})",
                unclassified[..unclassified.len().min(5)].join(", ")
            )
        };
        return Err(Error::input(format!(
            "{}: found {found}, so there is nothing to put in mlart.yaml. Add the model file (e.g. model.onnx) to the folder, or write mlart.yaml by hand (README: \"The spec\")",
            dir.display()
        )));
    }
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let sections: Vec<Section> = Kind::ALL
        .iter()
        .map(|k| {
            let mut entries: Vec<String> = d
                .entries
                .get(k)
                .map(|l| l.iter().map(entry_yaml).collect())
                .unwrap_or_default();
            let mut paths: Vec<String> = d
                .entries
                .get(k)
                .map(|l| l.iter().map(|e| e.path.clone()).collect())
                .unwrap_or_default();
            for e in by_kind.get(k).cloned().unwrap_or_default() {
                entries.push(yaml_scalar(&if is_glob(&e) {
                    globset::escape(&e)
                } else {
                    e.clone()
                }));
                paths.push(e);
            }
            if !paths.is_empty() {
                listed.insert(k.to_string(), paths);
            }
            Section {
                kind: k.as_str(),
                help: help(*k),
                entries,
            }
        })
        .collect();
    let opt_field = |k: &str, v: &Option<String>, example: &str| match v {
        Some(v) => format!("{k}: {}", yaml_scalar(v)),
        None => format!("# {k}: {example}"),
    };
    let mut fields = vec![
        opt_field("license", &d.license, "Apache-2.0"),
        if d.authors.is_empty() {
            "# authors: [Your Team <team@example.com>]".to_string()
        } else {
            format!(
                "authors: {}",
                serde_json::to_string(&d.authors).unwrap_or_default()
            )
        },
        opt_field("source", &d.source, "https://github.com/org/repo"),
        opt_field("revision", &d.revision, "<git commit>"),
    ];
    if d.source.is_some() || d.revision.is_some() {
        fields.push("# (source and revision: from the git work tree at `mlart init`)".into());
    }
    let mut lineage = Vec::new();
    if !d.datasets.is_empty() {
        lineage.push("datasets:".to_string());
        for (n, u) in &d.datasets {
            match u {
                Some(u) => lineage.push(format!(
                    "  - {{name: {}, uri: {}}}",
                    serde_json::to_string(n).unwrap_or_default(),
                    serde_json::to_string(u).unwrap_or_default()
                )),
                None => lineage.push(format!(
                    "  - {{name: {}}}",
                    serde_json::to_string(n).unwrap_or_default()
                )),
            }
        }
    }
    if let Some(u) = &d.base_model {
        lineage.push(format!(
            "base_model: {{uri: {}}}",
            serde_json::to_string(u).unwrap_or_default()
        ));
    }
    let t = &d.training;
    if *t != Default::default() {
        lineage.push("training:".into());
        for (k, v) in [
            ("command", &t.command),
            ("task", &t.task),
            ("architecture", &t.architecture),
            ("param_size", &t.param_size),
            ("precision", &t.precision),
            ("quantization", &t.quantization),
        ] {
            if let Some(v) = v {
                lineage.push(format!(
                    "  {k}: {}",
                    serde_json::to_string(v).unwrap_or_default()
                ));
            }
        }
        if !t.parameters.is_empty() {
            lineage.push(format!(
                "  parameters: {}",
                serde_json::to_string(&t.parameters).unwrap_or_default()
            ));
        }
    }
    for c in &d.commented {
        lineage.push(format!("# {}", super::draft::one_line(c)));
    }
    let description = d
        .description
        .clone()
        .unwrap_or_else(|| format!("{name} model"));
    let mut env = minijinja::Environment::new();
    env.add_template("mlart.yaml", TEMPLATE)
        .map_err(|e| Error::input(format!("template: {e}")))?;
    let text = env
        .get_template("mlart.yaml")
        .and_then(|t| {
            t.render(minijinja::context! {
                origin => origin.as_str(),
                notes => d.notes.clone(),
                name => name.clone(),
                version => version.clone(),
                description => yaml_scalar(&super::draft::one_line(&description)),
                fields => fields,
                sections => minijinja::Value::from(minijinja::value::Serde(&sections)),
                lineage => lineage,
                warnings => d.warnings.clone(),
                unclassified => minijinja::Value::from(minijinja::value::Serde(&unclassified)),
            })
        })
        .map_err(|e| Error::input(format!("template: {e}")))?;
    // What we write must load: a guard against a template or quoting mistake.
    spec::parse(&spec_path, &text).map_err(|e| {
        Error::input(format!(
            "the spec made from {} does not load ({e}); please report this",
            dir.display()
        ))
    })?;
    Ok((
        text,
        InitResult {
            path: spec_path.display().to_string(),
            name,
            from: origin,
            sections: listed,
            unclassified,
            warnings: d.warnings,
        },
    ))
}

/// Scan `dir` and write `dir/mlart.yaml` (refusing to overwrite it unless `force`).
pub fn init_with(dir: &Path, opts: &InitOptions) -> Result<InitResult> {
    let spec_path = dir.join(spec::SPEC_FILE);
    if spec_path.exists() && !opts.force {
        return Err(Error::input(format!(
            "{} already exists: mlart init will not overwrite it. Edit it, or pass --force to write a new one",
            spec_path.display()
        )));
    }
    let (text, r) = render(dir, opts)?;
    let tmp = tempfile::NamedTempFile::new_in(dir).ctx("writing in", dir)?;
    std::fs::write(tmp.path(), &text).ctx("writing", tmp.path())?;
    tmp.persist(&spec_path).map_err(|e| Error::Io {
        context: format!("writing {}", spec_path.display()),
        source: e.error,
    })?;
    Ok(r)
}

/// The spec of a folder that has no mlart.yaml (an MLflow model, a Hugging Face folder, a
/// Kitfile or Modelfile project, plain files): what `init` would write, parsed in memory.
/// With the importer's warnings.
pub fn spec_of_folder(dir: &Path) -> Result<(spec::Spec, InitResult)> {
    let (text, r) = render(dir, &InitOptions::default())?;
    let s = spec::parse(&dir.join(spec::SPEC_FILE), &text)?;
    Ok((s, r))
}

/// The spec `bundle [DIR]` bundles: DIR's mlart.yaml; DIR itself when it is a spec file;
/// `default_spec` without DIR; or, for a folder without a spec, the spec `mlart init` would
/// write for it, with the import's report for the caller to show.
pub fn spec_for_bundle(
    dir: Option<&Path>,
    default_spec: &Path,
) -> Result<(spec::Spec, Option<InitResult>)> {
    match dir {
        Some(d) if d.is_dir() && !d.join(spec::SPEC_FILE).exists() => {
            let (s, r) = spec_of_folder(d)?;
            Ok((s, Some(r)))
        }
        Some(d) if d.is_dir() => Ok((spec::load(&d.join(spec::SPEC_FILE))?, None)),
        Some(f) => Ok((spec::load(f)?, None)),
        None => Ok((spec::load(default_spec)?, None)),
    }
}

fn entry_yaml(e: &DraftEntry) -> String {
    if e.format.is_none() && e.framework.is_none() && e.samples.is_none() {
        return yaml_scalar(&e.path);
    }
    let mut parts = vec![format!("path: {}", yaml_scalar(&e.path))];
    for (k, v) in [
        ("format", &e.format),
        ("framework", &e.framework),
        ("samples", &e.samples),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}: {}", yaml_scalar(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

fn sanitize_name(s: &str) -> String {
    let mut out = String::new();
    for c in s.to_ascii_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "model".into()
    } else {
        out
    }
}

/// Quote a string for YAML when it needs it.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ' '))
        && !s.starts_with(['-', ' ', '.'])
        && !s.ends_with(' ')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        );
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("string")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_common_files() {
        assert_eq!(classify("model/iris.onnx"), Some(Kind::Model));
        assert_eq!(classify("requirements.txt"), Some(Kind::Env));
        assert_eq!(classify("schema/features.yaml"), Some(Kind::Schema));
        assert_eq!(classify("eval/metrics.json"), Some(Kind::Eval));
        assert_eq!(classify("eval/confusion_matrix.csv"), Some(Kind::Eval));
        assert_eq!(classify("docs/model_card.md"), Some(Kind::Docs));
        assert_eq!(classify("logs/train.log"), Some(Kind::Logs));
        assert_eq!(classify("config/params.yaml"), Some(Kind::Config));
        assert_eq!(classify("data/train.parquet"), Some(Kind::Data));
        // ONNX Model Zoo test data: samples (eval), not TensorFlow models
        assert_eq!(classify("test_data_set_0/input_0.pb"), Some(Kind::Eval));
        assert_eq!(classify("m/test_data_set_1/output_0.pb"), Some(Kind::Eval));
        assert_eq!(classify("saved_model.pb"), Some(Kind::Model));
        assert_eq!(classify("train.py"), None);
        assert_eq!(classify("mlart.yaml"), None);
    }

    #[test]
    fn names_and_quoting() {
        assert_eq!(sanitize_name("My Project_2"), "my-project-2");
        assert_eq!(sanitize_name("___"), "model");
        assert_eq!(yaml_scalar("model/a.onnx"), "model/a.onnx");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
    }
}
