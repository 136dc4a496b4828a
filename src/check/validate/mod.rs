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
mod tensors;

pub use types::*;

#[cfg(feature = "validate")]
pub use library::{find_library, LibraryChoice};

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
    /// [`WORKER_ARG`], serving [`worker`] on stdin/stdout. A crash of the runtime (a signal,
    /// an abort) then fails that model's checks instead of ending mlart. None: in process.
    #[serde(default)]
    pub isolate: Option<PathBuf>,
    /// With `isolate`: seconds one model may take before its worker is stopped (0: no limit).
    #[serde(default)]
    pub timeout: u64,
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
        let bytes = std::fs::read(&f.abs).ctx("reading", &f.abs)?;
        match schema::parse(&f.rel, &bytes) {
            Ok(schema::Parsed::Schema(s)) => return Ok(Some(s)),
            Ok(schema::Parsed::NotASchema) => {}
            Err(why) => {
                return Err(Error::input(format!(
                    "{}: {why}. Fix the feature schema (format in README, \"Feature schema\"), or move the file to `docs`",
                    f.abs.display()
                )))
            }
        }
    }
    Ok(None)
}

/// The models of a spec (its `model:` files), with the samples its entries declare.
pub fn models_of_spec(spec: &Spec, files: &[SourceFile]) -> Result<Vec<ModelInput>> {
    let mut out: Vec<ModelInput> = files
        .iter()
        .filter(|f| f.kind == Kind::Model)
        .map(|f| ModelInput {
            path: f.rel.clone(),
            file: f.abs.clone(),
            format: f.format.clone(),
            samples: None,
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
                return Err(spec.error_at(
                    e.pos,
                    format!(
                        "`samples` applies to one model file, and {:?} is not one",
                        e.path
                    ),
                    "give `samples:` on an entry whose `path` names a single model file",
                ));
            };
            let abs = spec.root.join(s);
            let samples = load_samples(&abs, s).map_err(|err| match err {
                Error::Input(m) => spec.error_at(e.pos, format!("samples: {m}"), ""),
                other => other,
            })?;
            m.samples = Some(std::sync::Arc::new(samples));
        }
    }
    Ok(out)
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
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        match (&mode, is_onnx(m.format.as_deref())) {
            (Some(Mode::InProcess(rt)), true) => {
                progress(&m.path);
                reports.push(rt.validate_model(m, schema, opts));
            }
            (Some(Mode::Isolated(exe, o)), true) => {
                progress(&m.path);
                let (r, info) = isolated(exe, m, schema, o)?;
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
            .filter_map(|m| m.samples.as_ref().map(|s| s.file.clone()))
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

/// The argument that makes the mlart binary serve [`worker`].
pub const WORKER_ARG: &str = "__validate-worker";

/// What a worker process is asked (JSON on its stdin).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkerRequest {
    pub path: String,
    pub file: PathBuf,
    pub format: Option<String>,
    pub samples: Option<SamplesFile>,
    pub schema: Option<FeatureSchema>,
    pub opts: Options,
}

/// What a worker answers (JSON on its stdout).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerResponse {
    Report {
        report: Box<ModelReport>,
        runtime: RuntimeInfo,
    },
    Error {
        message: String,
        exit_code: u8,
    },
}

/// Serve one request in this (child) process.
#[cfg(feature = "validate")]
pub fn worker(req: WorkerRequest) -> WorkerResponse {
    let rt = match runtime::Runtime::get(req.opts.ort_lib.as_deref()) {
        Ok(rt) => rt,
        Err(e) => {
            return WorkerResponse::Error {
                message: e.to_string(),
                exit_code: e.exit_code(),
            }
        }
    };
    let m = ModelInput {
        path: req.path,
        file: req.file,
        format: req.format,
        samples: req.samples.map(std::sync::Arc::new),
    };
    WorkerResponse::Report {
        report: Box::new(rt.validate_model(&m, req.schema.as_ref(), &req.opts)),
        runtime: rt.info(true),
    }
}

/// Validate one model in a child process; a crash fails the model, not mlart.
#[cfg(feature = "validate")]
fn isolated(
    exe: &Path,
    m: &ModelInput,
    schema: Option<&FeatureSchema>,
    opts: &Options,
) -> Result<(ModelReport, Option<RuntimeInfo>)> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let req = WorkerRequest {
        path: m.path.clone(),
        file: m.file.clone(),
        format: m.format.clone(),
        samples: m.samples.as_deref().cloned(),
        schema: schema.cloned(),
        opts: opts.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(|e| Error::input(format!("{e}")))?;
    let mut child = Command::new(exe)
        .arg(WORKER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("starting {}", exe.display()),
            source: e,
        })?;
    // Feed the request and drain the answers on threads, so a worker that hangs can be
    // stopped at the deadline (or on Ctrl-C).
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || stdin.map(|mut w| w.write_all(&body)));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = (&mut r).take(64 << 20).read_to_end(&mut v);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            v
        })
    };
    let out_reader = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let err_reader = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    );
    let deadline = (opts.timeout > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_secs(opts.timeout));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                return Err(Error::Io {
                    context: format!("running {}", exe.display()),
                    source: e,
                });
            }
        }
        if crate::interrupt::requested() || deadline.is_some_and(|d| std::time::Instant::now() >= d)
        {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let written = writer.join().ok().flatten();
    if crate::interrupt::requested() {
        return Err(Error::Interrupted);
    }
    let mut failed = ModelReport::not_validated(&m.path, m.format.as_deref());
    failed.validated = true;
    failed.reason = None;
    failed.passed = Some(false);
    if let Ok(h) = onnx_header::scan_file(&m.file) {
        failed.ir_version = h.ir_version;
        failed.opset = h.opset;
    }
    let Some(status) = status else {
        failed.checks.push(Check::fail(
            "timeout",
            format!(
                "ONNX Runtime did not finish {} within {} s (--timeout); its worker was stopped",
                m.file.display(),
                opts.timeout
            ),
        ));
        return Ok((failed, None));
    };
    let out = std::process::Output {
        status,
        stdout,
        stderr,
    };
    if out.status.success() {
        if let Ok(resp) = serde_json::from_slice::<WorkerResponse>(&out.stdout) {
            return match resp {
                WorkerResponse::Report { report, runtime } => Ok((*report, Some(runtime))),
                WorkerResponse::Error { message, exit_code } => Err(if exit_code == 1 {
                    Error::Check(message)
                } else {
                    Error::Input(message)
                }),
            };
        }
    }
    // The worker died: a signal, an abort, or garbage on stdout.
    let how = describe_exit(&out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            format!(
                " (its last words: {})",
                l.chars().take(300).collect::<String>()
            )
        })
        .unwrap_or_default();
    if let Some(Err(e)) = written {
        tracing::debug!("writing to the worker: {e}");
    }
    let mut r = failed;
    r.checks.push(Check::fail(
        "crash",
        format!(
            "ONNX Runtime crashed on {} ({how}){tail}; mlart ran it in a separate process and carried on",
            m.file.display()
        ),
    ));
    Ok((r, None))
}

#[cfg(feature = "validate")]
fn describe_exit(s: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = s.signal() {
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGBUS => "SIGBUS",
                libc::SIGABRT => "SIGABRT",
                libc::SIGILL => "SIGILL",
                libc::SIGFPE => "SIGFPE",
                libc::SIGKILL => "SIGKILL, out of memory?",
                _ => "a signal",
            };
            return format!("killed by signal {sig}, {name}");
        }
    }
    match s.code() {
        Some(c) => format!("exit code {c}"),
        None => "no exit code".into(),
    }
}

#[cfg(feature = "validate")]
fn is_onnx(format: Option<&str>) -> bool {
    format == Some("onnx")
}

#[cfg(all(test, feature = "validate", unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn model() -> ModelInput {
        ModelInput {
            path: "model/iris.onnx".into(),
            file: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/iris/model/iris.onnx"),
            format: Some("onnx".into()),
            samples: None,
        }
    }

    #[test]
    fn a_worker_that_crashes_fails_the_model_not_mlart() {
        let d = tempfile::tempdir().unwrap();
        let segv = script(
            d.path(),
            "segv",
            "echo 'Segmentation fault in onnxruntime' >&2\nkill -SEGV $$",
        );
        let (r, info) = isolated(&segv, &model(), None, &Options::default()).unwrap();
        assert!(info.is_none());
        assert_eq!((r.validated, r.passed), (true, Some(false)));
        let c = &r.checks[0];
        assert_eq!(c.name, "crash");
        assert!(
            c.message.contains("signal 11, SIGSEGV")
                && c.message.contains("Segmentation fault in onnxruntime"),
            "{}",
            c.message
        );
        // the header is still read by the parent
        assert_eq!(r.ir_version, Some(8));
        let abort = script(d.path(), "abort", "kill -ABRT $$");
        let (r, _) = isolated(&abort, &model(), None, &Options::default()).unwrap();
        assert!(r.checks[0].message.contains("SIGABRT"), "{:?}", r.checks);
        let garbage = script(d.path(), "garbage", "echo not json");
        let (r, _) = isolated(&garbage, &model(), None, &Options::default()).unwrap();
        assert!(
            r.checks[0].message.contains("exit code 0"),
            "{:?}",
            r.checks
        );
        // a worker that cannot load the runtime: the error, as from the parent
        let err = script(
            d.path(),
            "err",
            "echo '{\"error\": {\"message\": \"no runtime here\", \"exit_code\": 2}}'",
        );
        let e = isolated(&err, &model(), None, &Options::default()).unwrap_err();
        // a worker that hangs is stopped at the deadline
        let hang = script(d.path(), "hang", "exec sleep 30");
        let opts = Options {
            timeout: 1,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let (r, _) = isolated(&hang, &model(), None, &opts).unwrap();
        assert!(started.elapsed().as_secs() < 10);
        assert_eq!(r.checks[0].name, "timeout", "{:?}", r.checks);
        assert_eq!(r.passed, Some(false));
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (2, "no runtime here".to_string())
        );
    }
}
