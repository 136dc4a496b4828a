//! ONNX smoke tests with ONNX Runtime (`mlart validate`, `bundle --validate`).
//!
//! Each ONNX model is loaded by the runtime, its inputs and outputs are compared with the
//! feature schema, it runs on synthetic inputs made from the schema's ranges and categories
//! (several batch sizes) and on optional samples with expected outputs, every numeric output
//! must be finite, and the latency is measured. The result is a [`Report`]
//! (`"format": "mlart.validation.v1"`, documented in README "Validation").
//!
//! The runtime is loaded at run time (`ort` with `load-dynamic`) from `--ort-lib`, else
//! `ORT_DYLIB_PATH`, else the `onnxruntime` Python package of the active environment; it is
//! the cargo feature `validate` (on by default). Without it, the report types still exist (the
//! bundle metadata uses them) but nothing can be validated.

pub mod onnx_header;
pub use crate::format::validation as types;

#[cfg(feature = "validate")]
mod check;
#[cfg(feature = "validate")]
mod elf;
#[cfg(feature = "validate")]
pub mod inputs;
#[cfg(feature = "validate")]
mod library;
#[cfg(feature = "validate")]
pub mod plan;
#[cfg(feature = "validate")]
mod runtime;
#[cfg(feature = "validate")]
mod samples;
mod target;
#[cfg(feature = "validate")]
mod tensor_proto;
#[cfg(feature = "validate")]
mod tensors;
pub mod worker;

pub use target::{before_bundle, save_report, validate_target, BundleReader, Request};
pub use types::*;
pub use worker::{WorkerRequest, WorkerResponse, WORKER_ARG};

#[cfg(feature = "validate")]
pub use library::{find_library, LibraryChoice};
/// For `serve`: the one loaded runtime, and the model signature of a session's inputs/outputs.
#[cfg(feature = "validate")]
pub(crate) use runtime::Runtime;
#[cfg(feature = "validate")]
pub(crate) use tensors::kind_of;

use crate::build::collect::SourceFile;
use crate::build::schema;
use crate::error::{Error, IoContext, Result};
use crate::format::feature_schema::FeatureSchema;
use crate::format::metadata::Kind;
use crate::spec::Spec;
use std::path::{Path, PathBuf};

/// Is validation compiled into this build?
pub const AVAILABLE: bool = cfg!(feature = "validate");

/// The error for builds without the `validate` feature.
pub fn unavailable() -> Error {
    Error::input(
        "validation is unavailable in this build: mlart was built without the `validate` cargo feature (ONNX Runtime support). Rebuild it with default features, e.g. `cargo install --path .`",
    )
}

/// One model to validate.
#[derive(Clone, Debug)]
pub struct ModelInput {
    /// The name in the report: the path in the project or bundle, or as given.
    pub path: String,
    /// Where to read it.
    pub file: PathBuf,
    /// Detected or declared format (`onnx`, `pickle`, ...); None when unknown.
    pub format: Option<String>,
    /// Sample inputs and expected outputs for this model.
    pub samples: Option<std::sync::Arc<SamplesFile>>,
    /// ONNX Model Zoo test data sets (`test_data_set_N/input_I.pb`, `output_I.pb`) for this
    /// model: those beside it, or given as its samples.
    pub test_data: Vec<SampleSet>,
}

/// One test data set of a model (`test_data_set_N/`, format/test_data.rs): its `.pb` files,
/// read (and checked) where the model runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SampleSet {
    /// As named in the report: the set's folder, as the project, bundle or command line names it.
    pub name: String,
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
}

impl SampleSet {
    /// The sets the paths of `test_data::sets_beside`/`sets_in` name, their files at `abs(rel)`.
    pub fn from_paths(
        sets: Vec<crate::format::test_data::TestDataSet>,
        abs: impl Fn(&str) -> PathBuf,
    ) -> Vec<SampleSet> {
        sets.into_iter()
            .map(|s| SampleSet {
                name: s.dir,
                inputs: s.inputs.iter().map(|f| abs(f)).collect(),
                outputs: s.outputs.iter().map(|f| abs(f)).collect(),
            })
            .collect()
    }
}

/// The files of `dir` and of its `test_data_set_*` folders (relative, `/`-separated): what the
/// test data convention looks at on disk.
fn listing(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let names = |d: &Path| -> Result<Vec<(String, bool)>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d).ctx("reading", d)? {
            let e = e.ctx("reading", d)?;
            if let Some(n) = e.file_name().to_str() {
                v.push((n.to_string(), e.path().is_dir()));
            }
        }
        Ok(v)
    };
    for (n, is_dir) in names(dir)? {
        if !is_dir {
            out.push(n);
        } else if n.starts_with("test_data_set_") {
            for (f, sub) in names(&dir.join(&n))? {
                if !sub {
                    out.push(format!("{n}/{f}"));
                }
            }
        }
    }
    Ok(out)
}

/// The test data sets beside a model file on disk (`mlart validate path/model.onnx`).
pub fn sets_beside_file(model: &Path) -> Result<Vec<SampleSet>> {
    let dir = match model.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(name) = model.file_name().and_then(|n| n.to_str()) else {
        return Ok(vec![]);
    };
    let files = listing(&dir)?;
    let sets = crate::format::test_data::sets_beside(name, files.iter().map(String::as_str));
    let shown = |rel: &str| model.with_file_name(rel).display().to_string();
    Ok(SampleSet::from_paths(sets, |rel| dir.join(rel))
        .into_iter()
        .map(|mut s| {
            s.name = shown(&s.name);
            s
        })
        .collect())
}

/// Test data sets given as samples (`--samples DIR`, `samples: DIR/`): DIR is one
/// `test_data_set_N` folder, or a folder holding them. None of them is an input error.
pub fn load_sample_dir(dir: &Path, name: &str) -> Result<Vec<SampleSet>> {
    use crate::format::test_data::sets_in;
    let own = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.starts_with("test_data_set_"));
    let sets = match (own, dir.parent()) {
        (Some(own), Some(parent)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let sets = sets_in("", listing(parent)?.iter().map(String::as_str));
            SampleSet::from_paths(sets.into_iter().filter(|s| s.dir == own).collect(), |rel| {
                parent.join(rel)
            })
        }
        _ => SampleSet::from_paths(
            sets_in("", listing(dir)?.iter().map(String::as_str)),
            |rel| dir.join(rel),
        ),
    };
    if sets.is_empty() {
        return Err(Error::input(format!(
            "{name} holds no test data set: give a samples JSON file, or a folder `test_data_set_N` with input_0.pb, input_1.pb, … (and output_0.pb, … to compare), or a folder holding such folders (the ONNX Model Zoo layout)"
        )));
    }
    let trimmed = name.trim_end_matches('/');
    Ok(sets
        .into_iter()
        .map(|mut s| {
            s.name = if own.is_some() {
                trimmed.to_string()
            } else {
                format!("{trimmed}/{}", s.name)
            };
            s
        })
        .collect())
}

/// How to validate.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Options {
    /// The ONNX Runtime library (`--ort-lib`); else ORT_DYLIB_PATH, else the Python package.
    pub ort_lib: Option<PathBuf>,
    /// Synthetic batch sizes (for inputs whose first dimension is dynamic).
    pub batch_sizes: Vec<usize>,
    /// Timed runs for the latency percentiles; 0: no latency.
    pub runs: usize,
    /// Absolute tolerance for floating-point sample outputs.
    pub tolerance: f64,
    /// Record the latency and the runtime library's path. Off for the report stored in a
    /// bundle, which must be the same on every run.
    pub timings: bool,
    /// Run each model in a child process: this executable, with the argument
    /// [`WORKER_ARG`], serving [`worker::worker`] on stdin/stdout. A crash of the runtime (a signal,
    /// an abort) then fails that model's checks instead of ending mlart. None: in process.
    #[serde(default)]
    pub isolate: Option<PathBuf>,
    /// With `isolate`: seconds one model may take before its worker is stopped (0: no limit).
    #[serde(default)]
    pub timeout: u64,
    /// Cancelled on Ctrl-C: no further model starts and a running worker is stopped. (Not
    /// sent to a worker: the parent stops it.)
    #[serde(skip)]
    pub cancel: crate::interrupt::Cancel,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ort_lib: None,
            batch_sizes: DEFAULT_BATCH_SIZES.to_vec(),
            runs: DEFAULT_RUNS,
            tolerance: DEFAULT_TOLERANCE,
            timings: true,
            isolate: None,
            timeout: DEFAULT_TIMEOUT,
            cancel: Default::default(),
        }
    }
}

pub const DEFAULT_BATCH_SIZES: [usize; 3] = [1, 7, 64];
pub const DEFAULT_RUNS: usize = 50;
pub const DEFAULT_TOLERANCE: f64 = 1e-4;
/// Seconds per model (isolated runs).
pub const DEFAULT_TIMEOUT: u64 = 600;
/// Largest synthetic batch accepted.
pub const MAX_BATCH: usize = 65536;

impl Options {
    /// The settings as the report records them.
    pub fn settings(&self) -> Settings {
        Settings {
            batch_sizes: self.batch_sizes.clone(),
            runs: if self.timings { self.runs } else { 0 },
            tolerance: self.tolerance,
            timings: self.timings,
        }
    }

    /// Check the numbers the user gave.
    pub fn check(&self) -> Result<()> {
        if self.batch_sizes.is_empty() {
            return Err(Error::input(
                "--batch-sizes is empty: give at least one, e.g. --batch-sizes 1,7,64",
            ));
        }
        if let Some(b) = self
            .batch_sizes
            .iter()
            .find(|b| **b == 0 || **b > MAX_BATCH)
        {
            return Err(Error::input(format!(
                "--batch-sizes: {b} is not a batch size: use 1 to {MAX_BATCH}"
            )));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(Error::input(format!(
                "--tolerance {} is not a tolerance: use a number >= 0, e.g. 1e-4",
                self.tolerance
            )));
        }
        if self.runs > 100_000 {
            return Err(Error::input(format!(
                "--runs {} is too many: use at most 100000 (0 skips the latency)",
                self.runs
            )));
        }
        Ok(())
    }
}

/// A samples file: `inputs` (input name -> nested arrays) and optional `expected` (output
/// name -> nested arrays, or a list of objects for a sequence of maps).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SamplesFile {
    /// As named in the report.
    pub file: String,
    pub inputs: Vec<(String, serde_json::Value)>,
    pub expected: Vec<(String, serde_json::Value)>,
}

/// Largest samples or schema file read.
const MAX_SIDE_FILE: u64 = 64 << 20;

fn read_side_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input(format!("the {what} {} does not exist", path.display()))
        } else {
            Error::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }
        }
    })?;
    if !meta.is_file() {
        return Err(Error::input(format!(
            "the {what} {} is not a file",
            path.display()
        )));
    }
    if meta.len() > MAX_SIDE_FILE {
        return Err(Error::input(format!(
            "the {what} {} is {} bytes: at most {} MiB",
            path.display(),
            meta.len(),
            MAX_SIDE_FILE >> 20
        )));
    }
    std::fs::read(path).ctx("reading", path)
}

/// Read a samples file (format in README, "Validation"). A file that is not that shape is an
/// input error naming the file and the field.
pub fn load_samples(path: &Path, name: &str) -> Result<SamplesFile> {
    let bytes = read_side_file(path, "samples file")?;
    parse_samples(name, &bytes).map_err(|m| {
        Error::input(format!(
            "{}: {m}. A samples file is JSON: {{\"inputs\": {{NAME: [[...], ...]}}, \"expected\": {{OUTPUT: [...]}}}} (README, \"Validation\")",
            path.display()
        ))
    })
}

pub fn parse_samples(name: &str, bytes: &[u8]) -> std::result::Result<SamplesFile, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    if let Some(rows) = mlflow_example(&v) {
        // An MLflow input example: one unnamed input, fed to the model's by position.
        return Ok(SamplesFile {
            file: name.to_string(),
            inputs: vec![(crate::build::schema::positional_name("inputs", 0), rows)],
            expected: vec![],
        });
    }
    let obj = v.as_object().ok_or("not a JSON object")?;
    for k in obj.keys() {
        if k != "inputs" && k != "expected" {
            return Err(format!(
                "unknown key {k:?} (a samples file has `inputs` and `expected`)"
            ));
        }
    }
    let inputs = obj
        .get("inputs")
        .ok_or("no `inputs`")?
        .as_object()
        .ok_or("`inputs` is not an object of input name -> array")?;
    if inputs.is_empty() {
        return Err("`inputs` is empty".into());
    }
    let expected = match obj.get("expected") {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => return Err("`expected` is not an object of output name -> array".into()),
    };
    for (k, v) in inputs.iter() {
        if !v.is_array() {
            return Err(format!("inputs.{k} is not an array"));
        }
    }
    for (k, v) in expected.iter() {
        if !v.is_array() {
            return Err(format!("expected.{k} is not an array"));
        }
    }
    Ok(SamplesFile {
        file: name.to_string(),
        inputs: inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        expected: expected.into_iter().collect(),
    })
}

/// The rows of an MLflow input example (`input_example.json`, `serving_input_example.json`):
/// a bare array (a tensor), `{"inputs": [...]}`/`{"instances": [...]}` (one unnamed tensor),
/// or a pandas frame `{"columns": [...], "data": [...]}` / `{"dataframe_split": {...}}`.
fn mlflow_example(v: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match v {
        Value::Array(a) if !a.is_empty() => Some(v.clone()),
        Value::Object(o) => {
            let frame = o.get("dataframe_split").unwrap_or(v);
            if let (Some(Value::Array(_)), Some(d @ Value::Array(_))) =
                (frame.get("columns"), frame.get("data"))
            {
                return Some(d.clone());
            }
            match (o.len(), o.get("inputs").or(o.get("instances"))) {
                (1, Some(a @ Value::Array(rows))) if !rows.is_empty() => Some(a.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Read a feature schema file given on the command line (`--schema`).
pub fn load_schema(path: &Path) -> Result<FeatureSchema> {
    let bytes = read_side_file(path, "feature schema")?;
    let name = path.display().to_string();
    match schema::parse(&name, &bytes) {
        Ok(schema::Parsed::Schema(s)) => Ok(s),
        Ok(schema::Parsed::NotASchema) => Err(Error::input(format!(
            "{name} is not a feature schema: give a YAML/JSON file with `features:` (mlart) or an MLflow signature (README, \"Feature schema\")"
        ))),
        Err(why) => Err(Error::input(format!(
            "{name}: {why}. Fix the feature schema (README, \"Feature schema\")"
        ))),
    }
}

/// The feature schema of a project, as `bundle` picks it: the first schema-section file (by
/// path) that is a feature schema. An invalid one is an error, as in `bundle`.
pub fn schema_of_files(files: &[SourceFile]) -> Result<Option<FeatureSchema>> {
    let mut schema_files: Vec<&SourceFile> =
        files.iter().filter(|f| f.kind == Kind::Schema).collect();
    schema_files.sort_by(|a, b| a.rel.cmp(&b.rel));
    for f in schema_files {
        if f.size > crate::build::layer::CAPTURE_LIMIT {
            continue;
        }
        let abs = f.abs();
        let bytes = std::fs::read(&abs).ctx("reading", &abs)?;
        match schema::parse(&f.rel, &bytes) {
            Ok(schema::Parsed::Schema(s)) => return Ok(Some(s)),
            Ok(schema::Parsed::NotASchema) => {}
            Err(why) => {
                return Err(Error::input(format!(
                    "{}: {why}. Fix the feature schema (format in README, \"Feature schema\"), or move the file to `docs`",
                    abs.display()
                )))
            }
        }
    }
    Ok(None)
}

/// The models of a spec (its `model:` files), with the samples its entries declare, else
/// the test data sets the spec bundles beside them (format/test_data.rs).
pub fn models_of_spec(spec: &Spec, files: &[SourceFile]) -> Result<Vec<ModelInput>> {
    let rels: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
    let abs = |rel: &str| {
        files
            .iter()
            .find(|f| f.rel == rel)
            .map(|f| f.abs())
            .unwrap_or_else(|| spec.root.join(rel))
    };
    let mut out: Vec<ModelInput> = files
        .iter()
        .filter(|f| f.kind == Kind::Model)
        .map(|f| ModelInput {
            path: f.rel.clone(),
            file: f.abs(),
            format: f.format().map(str::to_string),
            samples: None,
            test_data: match f.format() {
                Some("onnx") => SampleSet::from_paths(
                    crate::format::test_data::sets_beside(&f.rel, rels.iter().copied()),
                    abs,
                ),
                _ => vec![],
            },
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    for (kind, entries) in &spec.sections {
        if *kind != Kind::Model {
            continue;
        }
        for e in entries {
            let Some(s) = &e.samples else { continue };
            let rel = e.path.trim_start_matches("./").trim_end_matches('/');
            let Some(m) = out.iter_mut().find(|m| m.path == rel) else {
                return Err(spec.samples_need_one_model(e));
            };
            let at = |err| match err {
                Error::Input(m) => spec.error_at(e.pos, format!("samples: {m}"), ""),
                other => other,
            };
            use_samples(m, &spec.root.join(s), s).map_err(at)?;
        }
    }
    Ok(out)
}

/// Give `m` the samples at `abs` (named `name` in the report): a samples JSON file, or a
/// folder of test data sets, which then replace the sets found beside the model.
fn use_samples(m: &mut ModelInput, abs: &Path, name: &str) -> Result<()> {
    if abs.is_dir() {
        m.test_data = load_sample_dir(abs, name)?;
        return Ok(());
    }
    m.samples = Some(std::sync::Arc::new(load_samples(abs, name)?));
    m.test_data.clear();
    Ok(())
}

/// The globs of a pull that fetches the samples a bundle records for a model (mlart.json
/// `models[].samples`, a path in the bundle): the file, or the files of the folder.
pub fn recorded_samples_globs(rel: &str) -> [String; 2] {
    let e = globset::escape(rel);
    [format!("{e}/*"), e]
}

/// Give `m` the samples the bundle `what` records for it (`rel`, mlart.json
/// `models[].samples`), pulled under `dir` as `samples:` gives them to `validate` of the
/// project. `Ok(false)` when they are not under `dir` (not pulled); a path that is not one
/// of a bundle is an error.
pub fn use_recorded_samples(m: &mut ModelInput, dir: &Path, rel: &str, what: &str) -> Result<bool> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.contains(['\\', '\0'])
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::input(format!(
            "{what}: mlart.json: the samples of model {} ({rel:?} in models[].samples) are not a path in the bundle: the metadata was not written by `mlart bundle`; bundle the project again",
            m.path
        )));
    }
    let abs = dir.join(rel);
    if std::fs::symlink_metadata(&abs).is_err() {
        return Ok(false);
    }
    use_samples(m, &abs, rel).map_err(|e| match e {
        Error::Input(msg) => Error::input(format!(
            "{what}: the samples of model {} ({rel}, mlart.json models[].samples): {msg}",
            m.path
        )),
        other => other,
    })?;
    Ok(true)
}

/// Validate `models` against `schema`. Non-ONNX models are listed as not validated. Errors
/// are for a runtime that cannot be loaded (only asked for when there is an ONNX model);
/// everything about a model is in its report.
#[cfg(feature = "validate")]
pub fn validate(
    models: &[ModelInput],
    schema: Option<&FeatureSchema>,
    opts: &Options,
    progress: &dyn Fn(&str),
) -> Result<Report> {
    opts.check()?;
    let needs_runtime = models.iter().any(|m| is_onnx(m.format.as_deref()));
    enum Mode {
        InProcess(&'static runtime::Runtime),
        Isolated(PathBuf, Options),
    }
    let mode = match (needs_runtime, &opts.isolate) {
        (false, _) => None,
        (true, None) => Some(Mode::InProcess(runtime::Runtime::get(
            opts.ort_lib.as_deref(),
        )?)),
        (true, Some(exe)) => {
            // The library is found and checked here, so its errors are the same either way;
            // the workers load exactly that file.
            let lib = library::checked_library(opts.ort_lib.as_deref())?;
            let mut o = opts.clone();
            o.ort_lib = Some(lib.path);
            o.isolate = None;
            Some(Mode::Isolated(exe.clone(), o))
        }
    };
    let mut runtime_info = match &mode {
        Some(Mode::InProcess(rt)) => Some(rt.info(opts.timings)),
        _ => None,
    };
    let mut reports = Vec::new();
    for m in models {
        if opts.cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        match (&mode, is_onnx(m.format.as_deref())) {
            (Some(Mode::InProcess(rt)), true) => {
                progress(&m.path);
                reports.push(rt.validate_model(m, schema, opts));
            }
            (Some(Mode::Isolated(exe, o)), true) => {
                progress(&m.path);
                let (r, info) = worker::isolated(exe, m, schema, o)?;
                if runtime_info.is_none() {
                    runtime_info = info.map(|mut i| {
                        if !opts.timings {
                            i.library = None;
                        }
                        i
                    });
                }
                reports.push(r);
            }
            _ => reports.push(ModelReport::not_validated(&m.path, m.format.as_deref())),
        }
    }
    let samples_files: Vec<String> = {
        let mut v: Vec<String> = models
            .iter()
            .flat_map(|m| {
                let sets = m.test_data.iter().map(|s| s.name.clone());
                m.samples
                    .as_ref()
                    .map(|s| s.file.clone())
                    .into_iter()
                    .chain(sets)
            })
            .collect();
        v.dedup();
        v
    };
    Ok(Report::new(
        reports,
        runtime_info,
        schema.map(|s| s.file.clone()),
        samples_files,
        opts.settings(),
    ))
}

#[cfg(feature = "validate")]
fn is_onnx(format: Option<&str>) -> bool {
    format == Some("onnx")
}
