//! ONNX Runtime through `ort` (load-dynamic): load the library (found by [`super::library`]),
//! run the checks.
//!
//! Nothing of `ort` is called before `ort::init_from` succeeded (its other entry points load
//! the library themselves and panic when it is missing). Model loading and running happen
//! inside `catch_unwind` as a last line of defence: `ort` has `unreachable!`/`expect` paths
//! for types it does not know; a panic there becomes a failed check, not a crash.

use super::check;
use super::inputs;
use super::library::{checked_library, version_of, HOW};
use super::plan::{self, ModelSig};
use super::tensors::{feeds_for, kind_of, run, run_raw};
use super::types::{Check, Latency, ModelReport, Percentiles, RuntimeInfo};
use super::{samples, ModelInput, Options};
use crate::error::{Error, Result};
use crate::format::feature_schema::FeatureSchema;
use ort::session::Session;
use ort::value::DynValue;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Why an ONNX model that only synthetic inputs could be run on, and they did not suit it, is
/// not validated.
pub const NO_SAMPLES: &str = "synthetic input not valid for this model; add samples (test_data_set_N/input_I.pb and output_I.pb beside it, the ONNX Model Zoo layout, or `samples:`)";

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Run `f` with panics caught and the panic message kept off stderr.
fn guarded<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| tracing::debug!("caught: {info}")));
    let r = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    r.map_err(|p| panic_text(p.as_ref()))
}

/// The loaded runtime: one per process (ONNX Runtime allows one environment).
pub struct Runtime {
    env: ort::environment::Environment,
    version: String,
    library: PathBuf,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

impl Runtime {
    /// Load the runtime (once per process).
    pub fn get(explicit: Option<&Path>) -> Result<&'static Runtime> {
        if let Some(r) = RUNTIME.get() {
            return Ok(r);
        }
        let choice = checked_library(explicit)?;
        let what = format!("{} (from {})", choice.path.display(), choice.from);
        let rt = guarded(|| -> Result<Runtime> {
            let builder = ort::init_from(&choice.path).map_err(|e| {
                Error::input(format!(
                    "cannot load ONNX Runtime from {what}: {e}. It must be ONNX Runtime 1.{} or newer. {HOW}",
                    ort::MINOR_VERSION
                ))
            })?;
            let logger: ort::logging::LoggerFunction = Arc::new(|level, _cat, _id, loc, msg| {
                use ort::logging::LogLevel;
                match level {
                    LogLevel::Fatal | LogLevel::Error | LogLevel::Warning => {
                        tracing::debug!("onnxruntime: {msg} ({loc})")
                    }
                    _ => tracing::trace!("onnxruntime: {msg} ({loc})"),
                }
            });
            let env = builder
                .with_name("mlart")
                .with_telemetry(false)
                .with_logger(logger)
                .build()
                .map_err(|e| {
                    Error::input(format!("ONNX Runtime from {what} did not start: {e}. {HOW}"))
                })?;
            env.set_log_level(ort::logging::LogLevel::Warning);
            let version = version_of(ort::info(), &choice.path);
            Ok(Runtime {
                env,
                version,
                library: choice.path.clone(),
            })
        })
        .map_err(|p| {
            Error::input(format!(
                "cannot load ONNX Runtime from {what}: the library is not a usable ONNX Runtime ({p}). {HOW}"
            ))
        })??;
        Ok(RUNTIME.get_or_init(|| rt))
    }

    /// The environment sessions are built in (`serve` builds its own, with its thread settings).
    pub(crate) fn env(&self) -> &ort::environment::Environment {
        &self.env
    }

    pub fn info(&self, with_path: bool) -> RuntimeInfo {
        RuntimeInfo {
            version: self.version.clone(),
            library: with_path.then(|| self.library.display().to_string()),
        }
    }

    fn session(&self, file: &Path, single_thread: bool) -> std::result::Result<Session, String> {
        let mut b = Session::builder(&self.env).map_err(|e| e.to_string())?;
        if single_thread {
            b = b
                .with_intra_threads(1)
                .map_err(|e| e.to_string())?
                .with_inter_threads(1)
                .map_err(|e| e.to_string())?;
        }
        b.commit_from_file(file).map_err(|e| e.to_string())
    }

    /// Validate one ONNX model. Never fails: every problem is a failed check.
    pub fn validate_model(
        &self,
        m: &ModelInput,
        schema: Option<&FeatureSchema>,
        opts: &Options,
    ) -> ModelReport {
        let mut r = ModelReport::not_validated(&m.path, m.format.as_deref());
        r.validated = true;
        r.reason = None;
        if let Ok(h) = super::onnx_header::scan_file(&m.file) {
            r.ir_version = h.ir_version;
            r.opset = h.opset;
        }
        let base = r.clone();
        let mut r = match guarded(|| {
            let mut r = base.clone();
            self.checks(&mut r, m, schema, opts);
            r
        }) {
            Ok(r) => r,
            Err(p) => {
                let mut r = base;
                r.checks.push(Check::fail(
                    "internal",
                    format!("the ONNX Runtime binding failed on this model ({p}); it may use a type mlart cannot handle"),
                ));
                r
            }
        };
        let passed = r.checks.iter().all(|c| c.passed);
        if r.reason.is_some() && passed {
            // Loaded and checked, but never run on inputs that suit it: not validated.
            r.validated = false;
            r.passed = None;
        } else {
            r.reason = None;
            r.passed = Some(passed);
        }
        r
    }

    fn checks(
        &self,
        r: &mut ModelReport,
        m: &ModelInput,
        schema: Option<&FeatureSchema>,
        opts: &Options,
    ) {
        let mut session = match self.session(&m.file, true) {
            Ok(s) => s,
            Err(e) => {
                r.checks.push(Check::fail(
                    "load",
                    format!("ONNX Runtime cannot load {}: {e}", m.file.display()),
                ));
                return;
            }
        };
        r.checks.push(Check::pass(
            "load",
            format!("loaded by ONNX Runtime {}", self.version),
        ));
        // An empty producer name is no producer (it printed `by )`).
        r.producer = session
            .metadata()
            .ok()
            .and_then(|md| md.producer())
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        let sig = ModelSig {
            inputs: session
                .inputs()
                .iter()
                .map(|o| (o.name().to_string(), kind_of(o.dtype())))
                .collect(),
            outputs: session
                .outputs()
                .iter()
                .map(|o| (o.name().to_string(), kind_of(o.dtype())))
                .collect(),
        };
        r.inputs = sig.inputs.iter().map(|(n, k)| k.io_info(n)).collect();
        r.outputs = sig.outputs.iter().map(|(n, k)| k.io_info(n)).collect();
        let bound = schema.and_then(|s| plan::bind_positional(&sig, s));
        let cmp = plan::compare(&sig, bound.as_ref().or(schema));
        r.checks.push(cmp.inputs.clone());
        r.checks.push(cmp.outputs.clone());

        let mut finite_problems: Vec<String> = Vec::new();
        let mut runs_done = 0usize;
        let mut latency_feeds: Option<Vec<(String, DynValue)>> = None;
        // Synthetic runs the model refused (a runtime error) or answered with outputs of
        // other shapes than declared: their checks, by index. Shape tensors, split sizes and
        // data-dependent shapes are such inputs that synthetic values cannot satisfy.
        let mut unsuitable: Vec<usize> = Vec::new();
        let mut synthetic_passed = 0usize;
        if !cmp.unsupported.is_empty() {
            r.checks.push(Check::skip(
                "run",
                format!(
                    "no synthetic values can be made for input(s) {}: mlart makes tensors of numbers, bools and strings",
                    cmp.unsupported.join(", ")
                ),
            ));
        } else {
            let syms = inputs::batch_symbols(&cmp.plans);
            let batches: Vec<Option<usize>> = if inputs::is_batched(&cmp.plans) {
                opts.batch_sizes.iter().map(|b| Some(*b)).collect()
            } else {
                vec![None]
            };
            for b in batches {
                let name = b
                    .map(|b| format!("run[batch={b}]"))
                    .unwrap_or_else(|| "run".into());
                let (feeds, shapes) = match feeds_for(&cmp.plans, b.unwrap_or(1), &syms) {
                    Ok(x) => x,
                    Err(e) => {
                        r.checks.push(Check::fail(name, e));
                        continue;
                    }
                };
                match run(&mut session, &feeds) {
                    Ok(outs) => {
                        runs_done += 1;
                        let mut shape_problems = Vec::new();
                        let mut problems = Vec::new();
                        for (o, v) in &outs {
                            if let Some((_, k)) = sig.outputs.iter().find(|(n, _)| n == o) {
                                if let Some(p) = check::shape_mismatch(v, k) {
                                    shape_problems.push(format!("output {o:?} {p}"));
                                }
                            }
                            if let Some(cats) = schema
                                .and_then(|s| s.outputs.iter().find(|f| f.name == *o))
                                .and_then(|f| f.categories.as_ref())
                            {
                                if let Some(p) = check::outside_categories(v, cats) {
                                    problems.push(format!("output {o:?}: {p}"));
                                }
                            }
                            if let Some(p) = check::non_finite(v) {
                                finite_problems.push(format!("{name}: output {o:?}: {p}"));
                            }
                        }
                        let desc = outs
                            .iter()
                            .map(|(o, v)| format!("{o} {}", v.describe()))
                            .collect::<Vec<_>>()
                            .join(", ");
                        if problems.is_empty() && !shape_problems.is_empty() {
                            unsuitable.push(r.checks.len());
                        }
                        problems.extend(shape_problems);
                        r.checks.push(if problems.is_empty() {
                            synthetic_passed += 1;
                            Check::pass(name, format!("inputs {shapes} -> {desc}"))
                        } else {
                            Check::fail(name, format!("inputs {shapes}: {}", problems.join("; ")))
                        });
                        if latency_feeds.is_none() {
                            latency_feeds = Some(feeds);
                        }
                    }
                    Err(e) => {
                        unsuitable.push(r.checks.len());
                        r.checks.push(Check::fail(
                            name,
                            format!("the runtime failed on synthetic inputs {shapes}: {e}"),
                        ))
                    }
                }
            }
        }
        let sampled = match (&m.samples, m.test_data.is_empty()) {
            (Some(s), _) => Some(samples::json_samples(
                &mut session,
                &sig,
                s,
                opts.tolerance,
                &mut finite_problems,
            )),
            (None, false) => Some(samples::test_data_sets(
                &mut session,
                &sig,
                &m.test_data,
                opts.tolerance,
                &mut finite_problems,
            )),
            (None, true) => None,
        };
        let samples_passed = sampled.as_ref().map(|s| s.check.passed);
        if let Some(s) = sampled {
            runs_done += s.runs;
            latency_feeds = latency_feeds.or(s.feeds);
            r.checks.push(s.check);
        }
        // Every synthetic run refused, on values mlart made up: they do not suit this model.
        // Not a failure: the samples decide; without samples the model is not validated.
        // (Values the schema describes are not guesses: refusing those is a failure.)
        if synthetic_passed == 0
            && !unsuitable.is_empty()
            && samples_passed != Some(false)
            && plan::has_default_values(&cmp.plans)
        {
            let why = match samples_passed {
                Some(_) => "synthetic input not valid for this model (its samples ran)",
                None => {
                    r.reason = Some(NO_SAMPLES.into());
                    "synthetic input not valid for this model; add samples"
                }
            };
            for i in unsuitable {
                let c = &r.checks[i];
                r.checks[i] = Check::skip(c.name.clone(), format!("{why}: {}", c.message));
            }
        }
        if runs_done > 0 {
            r.checks.push(if finite_problems.is_empty() {
                Check::pass(
                    "finite",
                    format!("every numeric output of {runs_done} run(s) is finite"),
                )
            } else {
                Check::fail("finite", finite_problems.join("; "))
            });
        }
        if opts.timings && opts.runs > 0 {
            if let Some(feeds) = &latency_feeds {
                match self.latency(&mut session, &m.file, feeds, opts.runs) {
                    Ok(l) => r.latency = Some(l),
                    Err(e) => r.checks.push(Check::fail("latency", e)),
                }
            }
        }
    }

    fn latency(
        &self,
        single: &mut Session,
        file: &Path,
        feeds: &[(String, DynValue)],
        runs: usize,
    ) -> std::result::Result<Latency, String> {
        let batch = feeds
            .first()
            .and_then(|(_, v)| v.dtype().tensor_shape().and_then(|s| s.first().copied()))
            .unwrap_or(1)
            .max(0) as usize;
        let time = |s: &mut Session| -> std::result::Result<Percentiles, String> {
            run_raw(s, feeds)?; // warm-up
            let mut t = Vec::with_capacity(runs);
            for _ in 0..runs {
                let start = Instant::now();
                run_raw(s, feeds)?;
                t.push(start.elapsed().as_secs_f64());
            }
            Ok(Percentiles::of(t))
        };
        let single_thread = time(single)?;
        let mut default = self
            .session(file, false)
            .map_err(|e| format!("loading the model with default threads: {e}"))?;
        let default_threads = time(&mut default)?;
        Ok(Latency {
            batch_size: batch,
            runs,
            single_thread,
            default_threads,
        })
    }
}
