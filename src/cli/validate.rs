//! `mlart validate [MODEL|BUNDLE]`: ONNX smoke tests with ONNX Runtime; and the part of
//! `bundle --validate` that runs before the bundle is built.

use super::push::RegistryArgs;
use mlart::build::collect::SourceFile;
use mlart::check::validate::{self, Report};
#[cfg(feature = "validate")]
use mlart::Error;
use mlart::{spec, Result};
#[cfg(feature = "validate")]
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

/// The bundle file that holds the report of `bundle --validate`.
pub const VALIDATION_FILE: &str = "eval/validation.json";

#[derive(clap::Args)]
#[cfg_attr(not(feature = "validate"), allow(dead_code))]
pub struct Args {
    /// What to validate: a model file (ONNX is run; other formats are listed as not validated),
    /// or a bundle (layout directory, archive, `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or a
    /// registry REF). Default: the models of the spec (-f).
    target: Option<String>,
    /// The spec whose models and feature schema to validate (when no TARGET is given).
    #[arg(short = 'f', long = "file", default_value = spec::SPEC_FILE)]
    spec: PathBuf,
    /// The feature schema to compare with (default: the spec's or the bundle's).
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Sample inputs and expected outputs (JSON) to run through every ONNX model (default:
    /// the `samples:` of the spec's model entries).
    #[arg(long, value_name = "FILE")]
    samples: Option<PathBuf>,
    /// Absolute tolerance for floating-point sample outputs (integers and strings: exact).
    #[arg(long, default_value_t = validate::DEFAULT_TOLERANCE)]
    tolerance: f64,
    /// Timed runs for the latency percentiles (0: no latency).
    #[arg(long, default_value_t = validate::DEFAULT_RUNS)]
    runs: usize,
    /// Synthetic batch sizes, for inputs whose first dimension is dynamic.
    #[arg(long, value_delimiter = ',', default_values_t = validate::DEFAULT_BATCH_SIZES)]
    batch_sizes: Vec<usize>,
    /// Seconds one model may take (loading and every run) before it fails with `timeout`
    /// (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = validate::DEFAULT_TIMEOUT)]
    timeout: u64,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Which tag of a layout or archive (default: its only manifest).
    #[arg(long)]
    tag: Option<String>,
    #[command(flatten)]
    ort: OrtArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Where ONNX Runtime comes from (shared with `bundle --validate`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OrtArgs {
    /// The ONNX Runtime library file (libonnxruntime.so.1.*). Default: $ORT_DYLIB_PATH, else
    /// the `onnxruntime` Python package ($VIRTUAL_ENV, else python3 on PATH).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

#[cfg(not(feature = "validate"))]
pub fn run(_a: Args, _json: bool) -> Result<ExitCode> {
    Err(validate::unavailable())
}

#[cfg(feature = "validate")]
/// What TARGET names.
enum Target {
    Spec,
    Model(PathBuf),
    Bundle(String),
    Missing(String),
}

#[cfg(feature = "validate")]
fn target_kind(t: Option<&str>) -> Target {
    let Some(t) = t else { return Target::Spec };
    if ["oci:", "oci-archive:", "docker://"]
        .iter()
        .any(|p| t.starts_with(p))
    {
        return Target::Bundle(t.to_string());
    }
    let p = Path::new(t);
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Target::Bundle(t.to_string()),
        Ok(_) if is_tar(p) => Target::Bundle(t.to_string()),
        Ok(_) => Target::Model(p.to_path_buf()),
        // Not a file: a registry REF, or a path that does not exist.
        Err(_) => match mlart::format::reference::parse_location(t) {
            Ok(mlart::format::reference::Location::Registry { .. }) => {
                Target::Bundle(t.to_string())
            }
            _ => Target::Missing(t.to_string()),
        },
    }
}

#[cfg(feature = "validate")]
/// Does the file look like a tar (an OCI archive)? `ustar` at offset 257.
fn is_tar(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 262];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[257..262] == b"ustar")
        .unwrap_or(false)
}

#[cfg(feature = "validate")]
pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    use std::sync::Arc;
    use validate::ModelInput;
    let opts = validate::Options {
        ort_lib: a.ort.ort_lib.clone(),
        batch_sizes: a.batch_sizes.clone(),
        runs: a.runs,
        tolerance: a.tolerance,
        timings: true,
        isolate: std::env::current_exe().ok(),
        timeout: a.timeout,
    };
    opts.check()?;
    let samples = a
        .samples
        .as_ref()
        .map(|p| validate::load_samples(p, &p.display().to_string()))
        .transpose()?
        .map(Arc::new);
    let schema_override = a.schema.as_deref().map(validate::load_schema).transpose()?;
    let tmp = tempfile::Builder::new()
        .prefix("mlart-validate-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temp directory".into(),
            source: e,
        })?;
    let (mut models, schema, what) = match target_kind(a.target.as_deref()) {
        Target::Spec => {
            let spec = spec::load(&a.spec)?;
            let files = mlart::build::collect::collect(&spec, &[])?;
            let models = validate::models_of_spec(&spec, &files)?;
            let schema = match schema_override {
                Some(s) => Some(s),
                None => validate::schema_of_files(&files)?,
            };
            (models, schema, a.spec.display().to_string())
        }
        Target::Model(p) => {
            let name = p.display().to_string();
            let format = mlart::build::collect::detect_format(&p, &name).or_else(|| {
                // An ONNX model without the .onnx extension: its header says so.
                validate::onnx_header::scan_file(&p)
                    .ok()
                    .filter(|h| h.ir_version.is_some() && !h.opset.is_empty())
                    .map(|_| "onnx".to_string())
            });
            let m = ModelInput {
                path: name.clone(),
                file: p,
                format,
                samples: None,
            };
            (vec![m], schema_override, name)
        }
        Target::Missing(t) => {
            return Err(Error::input(format!(
                "{t} does not exist: give a model file, a bundle (an OCI layout directory or archive) or a registry REF (host/repository:tag)"
            )))
        }
        Target::Bundle(t) => {
            let (models, schema) = from_bundle(&t, a.tag.as_deref(), &a.registry, tmp.path())?;
            (models, schema_override.or(schema), t)
        }
    };
    if models.is_empty() {
        return Err(Error::input(format!(
            "{what} has no model to validate: list the model files under `model:`"
        )));
    }
    if let Some(s) = &samples {
        for m in &mut models {
            m.samples = Some(s.clone());
        }
    }
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = validate::validate(&models, schema.as_ref(), &opts, &|p| {
        if tty {
            eprintln!("validating {p} ...");
        }
    })?;
    drop(tmp);
    if let Some(f) = &a.report {
        write_atomic(f, &mlart::format::json::to_canonical_pretty(&report))?;
    }
    if json {
        super::print_json(&report);
    } else {
        print_human(&report);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The models of a bundle: its metadata, and only its model files fetched (verified) into
/// `tmp`.
#[cfg(feature = "validate")]
fn from_bundle(
    target: &str,
    tag: Option<&str>,
    reg: &RegistryArgs,
    tmp: &Path,
) -> Result<(
    Vec<validate::ModelInput>,
    Option<mlart::format::feature_schema::FeatureSchema>,
)> {
    use mlart::format::reference::{self, Location};
    use mlart::registry;

    let loc = reference::parse_location(target)?;
    let (mut src, ltag) = mlart::store::registry::open_location(&loc, &reg.options())?;
    let tag = tag.map(String::from).or(ltag);
    let resolved = mlart::store::layout::resolve(src.as_mut(), tag.as_deref())?;
    let meta = mlart::store::metadata::read_metadata(src.as_mut(), &resolved.manifest)?;
    let out = tmp.join("models");
    // Only the model files are fetched (all of them: an ONNX model may keep its weights in
    // external data files beside it), and only when there is an ONNX model to run.
    if meta
        .models
        .iter()
        .any(|m| m.format.as_deref() == Some("onnx"))
    {
        let is_registry = matches!(loc, Location::Registry { .. });
        let opts = mlart::extract::pull::PullOptions {
            platform: None,
            out: out.clone(),
            kinds: vec!["model".into()],
            cache: if is_registry {
                mlart::extract::pull::default_cache()
            } else {
                None
            },
            remote: match &loc {
                Location::Registry { reference, .. } => {
                    Some(registry::Remote::new(reference.clone(), &reg.options())?)
                }
                Location::Local { .. } => None,
            },
            ..Default::default()
        };
        mlart::extract::pull::pull(src.as_mut(), tag.as_deref(), &opts, &|_, _| {}, &|_| {})?;
    }
    let models = meta
        .models
        .iter()
        .map(|m| validate::ModelInput {
            path: m.path.clone(),
            file: out.join(&m.path),
            format: m.format.clone(),
            samples: None,
        })
        .collect();
    Ok((models, meta.schema))
}

#[cfg(feature = "validate")]
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mlart-tmp-report-")
        .tempfile_in(&dir)
        .map_err(|e| Error::Io {
            context: format!("creating a file in {}", dir.display()),
            source: e,
        })?;
    std::io::Write::write_all(tmp.as_file_mut(), bytes).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(feature = "validate")]
/// The report for people.
pub fn print_human(r: &Report) {
    for m in &r.models {
        if !m.validated {
            println!(
                "{}: NOT VALIDATED ({})",
                m.path,
                m.reason.as_deref().unwrap_or("not run")
            );
            continue;
        }
        let mut facts = Vec::new();
        if let Some(v) = m.ir_version {
            facts.push(format!("IR {v}"));
        }
        if !m.opset.is_empty() {
            facts.push(format!(
                "opset {}",
                m.opset
                    .iter()
                    .map(|(d, v)| format!("{d} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(p) = &m.producer {
            facts.push(format!("by {p}"));
        }
        println!(
            "{}: {}{}",
            m.path,
            if m.passed == Some(true) {
                "passed"
            } else {
                "FAILED"
            },
            if facts.is_empty() {
                String::new()
            } else {
                format!(" ({})", facts.join("; "))
            }
        );
        let io: Vec<Vec<String>> = m
            .inputs
            .iter()
            .map(|i| ("input", i))
            .chain(m.outputs.iter().map(|o| ("output", o)))
            .map(|(k, i)| vec![k.to_string(), i.name.clone(), i.type_.clone()])
            .collect();
        if !io.is_empty() {
            super::table(&["", "NAME", "TYPE"], &io);
        }
        let rows: Vec<Vec<String>> = m
            .checks
            .iter()
            .map(|c| {
                vec![
                    super::status_word(c.passed, c.skipped).to_string(),
                    c.name.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        super::table(&["", "CHECK", "DETAIL"], &rows);
        if let Some(l) = &m.latency {
            println!(
                "  latency (batch {}, {} runs): 1 thread p50 {} ms, p95 {} ms; default threads p50 {} ms, p95 {} ms",
                l.batch_size,
                l.runs,
                l.single_thread.p50_ms,
                l.single_thread.p95_ms,
                l.default_threads.p50_ms,
                l.default_threads.p95_ms
            );
        }
    }
    let s = &r.summary;
    let mut line = format!(
        "validation {}: {} of {} ONNX model(s) passed",
        if r.passed { "passed" } else { "FAILED" },
        s.passed,
        s.validated
    );
    if s.not_validated > 0 {
        let formats: Vec<String> = r
            .models
            .iter()
            .filter(|m| !m.validated)
            .map(|m| m.format.clone().unwrap_or_else(|| "unknown".into()))
            .collect();
        line.push_str(&format!(
            "; {} model(s) NOT validated ({}): only ONNX models are run",
            s.not_validated,
            formats.join(", ")
        ));
    }
    if let Some(rt) = &r.runtime {
        line.push_str(&format!(" [ONNX Runtime {}]", rt.version));
    }
    println!("{line}");
}

/// `bundle --validate`, before anything is written: validate the spec's models against its
/// schema (no timings: the stored report must be the same on every run). On success, the
/// report is added to `files` as `eval/validation.json` (a file in the returned temp dir)
/// and to `opts` for the metadata; on failure nothing is bundled (exit 1).
#[cfg(feature = "validate")]
pub fn before_bundle(
    spec: &spec::Spec,
    files: &mut Vec<SourceFile>,
    opts: &mut mlart::build::bundle::Options,
    ort: &OrtArgs,
    json: bool,
) -> Result<(tempfile::TempDir, Report)> {
    if let Some(f) = files.iter().find(|f| f.rel == VALIDATION_FILE) {
        return Err(Error::input(format!(
            "{}: a project file named {VALIDATION_FILE} would clash with the validation report `bundle --validate` writes there; rename or move it",
            f.abs.display()
        )));
    }
    let models = validate::models_of_spec(spec, files)?;
    let schema = validate::schema_of_files(files)?;
    let vopts = validate::Options {
        ort_lib: ort.ort_lib.clone(),
        runs: 0,
        timings: false,
        isolate: std::env::current_exe().ok(),
        ..Default::default()
    };
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = validate::validate(&models, schema.as_ref(), &vopts, &|p| {
        if tty {
            eprintln!("validating {p} ...");
        }
    })?;
    if !report.passed {
        return Err(Error::Check(format!(
            "validation failed, nothing was bundled: {}. Run `mlart validate -f {}` for the whole report",
            report.failures().join("; "),
            spec.file.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix("mlart-validation-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temp directory".into(),
            source: e,
        })?;
    let path = tmp.path().join("validation.json");
    let bytes = mlart::format::json::to_canonical_pretty(&report);
    std::fs::write(&path, &bytes).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })?;
    files.push(SourceFile {
        rel: VALIDATION_FILE.into(),
        abs: path,
        kind: mlart::format::metadata::Kind::Eval,
        size: bytes.len() as u64,
        executable: false,
        format: None,
        framework: None,
        metrics: false,
    });
    opts.validation = Some(validate::BundleRecord::of(&report));
    Ok((tmp, report))
}

#[cfg(not(feature = "validate"))]
pub fn before_bundle(
    _spec: &spec::Spec,
    _files: &mut Vec<SourceFile>,
    _opts: &mut mlart::build::bundle::Options,
    _ort: &OrtArgs,
    _json: bool,
) -> Result<(tempfile::TempDir, Report)> {
    Err(validate::unavailable())
}

/// The hidden `__validate-worker` verb: one model, request on stdin, response on stdout (see
/// `mlart::check::validate::worker`). `mlart validate` runs every ONNX model this way, so a crash
/// of the runtime on a hostile model cannot take mlart down.
pub fn run_worker() -> ExitCode {
    use std::io::Read;
    let mut body = Vec::new();
    let resp = match std::io::stdin().read_to_end(&mut body) {
        Err(e) => validate::WorkerResponse::Error {
            message: format!("reading the request: {e}"),
            exit_code: 2,
        },
        Ok(_) => match serde_json::from_slice::<validate::WorkerRequest>(&body) {
            Err(e) => validate::WorkerResponse::Error {
                message: format!(
                    "{}: not a worker request ({e}); it is run by `mlart validate`",
                    validate::WORKER_ARG
                ),
                exit_code: 2,
            },
            Ok(req) => serve(req),
        },
    };
    println!("{}", serde_json::to_string(&resp).unwrap_or_default());
    ExitCode::SUCCESS
}

#[cfg(feature = "validate")]
fn serve(req: validate::WorkerRequest) -> validate::WorkerResponse {
    validate::worker(req)
}

#[cfg(not(feature = "validate"))]
fn serve(_req: validate::WorkerRequest) -> validate::WorkerResponse {
    let e = validate::unavailable();
    validate::WorkerResponse::Error {
        message: e.to_string(),
        exit_code: e.exit_code(),
    }
}
