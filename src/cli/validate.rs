//! `mlart validate [MODEL|BUNDLE]`: ONNX smoke tests with ONNX Runtime (`check::validate`);
//! the report rendered for people; and the hidden worker verb.

use super::args::RegistryArgs;
use mlart::check::validate::{self, Report};
use mlart::interrupt::Cancel;
use mlart::{spec, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
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

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let req = validate::Request {
        target: a.target.as_deref(),
        spec: &a.spec,
        schema: a.schema.as_deref(),
        samples: a.samples.as_deref(),
        opts: validate::Options {
            cancel: cancel.clone(),
            ort_lib: a.ort.ort_lib.clone(),
            batch_sizes: a.batch_sizes.clone(),
            runs: a.runs,
            tolerance: a.tolerance,
            timings: true,
            isolate: std::env::current_exe().ok(),
            timeout: a.timeout,
        },
    };
    let read_bundle = |t: &str, dir: &Path| {
        super::validate_bundle::bundle_models(t, a.tag.as_deref(), &a.registry, dir)
    };
    let report = validate::validate_target(&req, &read_bundle, &announce(json))?;
    if let Some(f) = &a.report {
        validate::save_report(f, &report)?;
    }
    if json {
        super::print_json(&report);
    } else {
        print_human(&report);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        super::check_failed()
    })
}

/// The progress of a validation: each model's name on stderr, for people at a terminal.
pub fn announce(json: bool) -> impl Fn(&str) {
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    move |p: &str| {
        if tty {
            eprintln!("validating {p} ...");
        }
    }
}

/// The report for people.
pub fn print_human(r: &Report) {
    for m in &r.models {
        if !m.validated {
            outln!(
                "{}: NOT VALIDATED ({})",
                m.path,
                m.reason.as_deref().unwrap_or("not run")
            );
            if m.checks.is_empty() {
                continue;
            }
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
        if let Some(p) = m.producer.as_deref().filter(|p| !p.trim().is_empty()) {
            facts.push(format!("by {p}"));
        }
        if m.validated {
            outln!(
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
        }
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
            outln!(
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
        let (onnx, other): (Vec<_>, Vec<_>) = r
            .models
            .iter()
            .filter(|m| !m.validated)
            .partition(|m| m.format.as_deref() == Some("onnx"));
        let formats: Vec<String> = other
            .iter()
            .map(|m| m.format.clone().unwrap_or_else(|| "unknown".into()))
            .collect();
        if !formats.is_empty() {
            line.push_str(&format!(
                "; {} model(s) NOT validated ({}): only ONNX models are run",
                formats.len(),
                formats.join(", ")
            ));
        }
        if !onnx.is_empty() {
            let paths: Vec<&str> = onnx.iter().map(|m| m.path.as_str()).collect();
            line.push_str(&format!(
                "; {} ONNX model(s) NOT validated ({}): synthetic input not valid for this model; add samples",
                onnx.len(),
                paths.join(", ")
            ));
        }
    }
    if let Some(rt) = &r.runtime {
        line.push_str(&format!(" [ONNX Runtime {}]", rt.version));
    }
    outln!("{line}");
}

/// The hidden `__validate-worker` verb: one model, request on stdin, response on stdout (see
/// `mlart::check::validate::worker`).
pub fn run_worker() -> ExitCode {
    use std::io::Read;
    let mut body = Vec::new();
    let resp = match std::io::stdin().read_to_end(&mut body) {
        Ok(_) => validate::worker::serve(&body),
        Err(e) => validate::WorkerResponse::unreadable(&e),
    };
    rawln!("{}", serde_json::to_string(&resp).unwrap_or_default());
    ExitCode::SUCCESS
}
