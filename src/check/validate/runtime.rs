//! ONNX Runtime through `ort` (load-dynamic): find and load the library, run the checks.
//!
//! Nothing of `ort` is called before `ort::init_from` succeeded (its other entry points load
//! the library themselves and panic when it is missing). Model loading and running happen
//! inside `catch_unwind` as a last line of defence: `ort` has `unreachable!`/`expect` paths
//! for types it does not know; a panic there becomes a failed check, not a crash.

use super::check::{self, OutValue};
use super::plan::{self, InputPlan, ModelSig, Values};
use super::types::{Check, Dim, Latency, ModelReport, Percentiles, RuntimeInfo, ValueKind};
use super::{ModelInput, Options, SamplesFile};
use crate::error::{Error, Result};
use crate::format::feature_schema::FeatureSchema;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, DynValueTypeMarker, Tensor, TensorElementType, ValueType};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// How to get the runtime, for every "not found / cannot load" error.
const HOW: &str = "Install ONNX Runtime with `pip install onnxruntime==1.31.1` (mlart uses the library of the `onnxruntime` Python package in $VIRTUAL_ENV, else of the `python3` on PATH), or give the library file with --ort-lib PATH or ORT_DYLIB_PATH=PATH (libonnxruntime.so.1.* on Linux, libonnxruntime.*.dylib on macOS)";

/// Largest tensor (elements) made or read.
const MAX_ELEMENTS: usize = 1 << 24;

/// The library to load and how it was found.
#[derive(Clone, Debug)]
pub struct LibraryChoice {
    pub path: PathBuf,
    /// `--ort-lib`, `ORT_DYLIB_PATH`, or the Python package's directory.
    pub from: String,
}

/// Find the ONNX Runtime library: `--ort-lib`, then `ORT_DYLIB_PATH`, then the `onnxruntime`
/// package in `$VIRTUAL_ENV`, then the one `python3` on PATH imports.
pub fn find_library(explicit: Option<&Path>) -> Result<LibraryChoice> {
    if let Some(p) = explicit {
        return existing(p, "--ort-lib");
    }
    if let Some(v) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return existing(Path::new(&v), "ORT_DYLIB_PATH");
    }
    let mut looked = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let venv = PathBuf::from(venv);
        for sp in site_packages(&venv) {
            let capi = sp.join("onnxruntime").join("capi");
            if let Some(lib) = library_in(&capi) {
                return Ok(LibraryChoice {
                    path: lib,
                    from: format!(
                        "the onnxruntime package of $VIRTUAL_ENV ({})",
                        venv.display()
                    ),
                });
            }
        }
        looked.push(format!("$VIRTUAL_ENV {}", venv.display()));
    }
    match python_package_dir() {
        Some(dir) => {
            if let Some(lib) = library_in(&dir.join("capi")) {
                return Ok(LibraryChoice {
                    path: lib,
                    from: format!("the onnxruntime package of python3 ({})", dir.display()),
                });
            }
            looked.push(format!("{} (no libonnxruntime in capi/)", dir.display()));
        }
        None => looked.push("python3 on PATH (no onnxruntime package)".into()),
    }
    Err(Error::input(format!(
        "ONNX Runtime was not found: no --ort-lib, no ORT_DYLIB_PATH, and no onnxruntime Python package (looked at {}). {HOW}",
        looked.join("; ")
    )))
}

/// [`find_library`], and the file checked to be a whole shared library: `dlopen` faults
/// (SIGBUS) on a truncated one.
pub fn checked_library(explicit: Option<&Path>) -> Result<LibraryChoice> {
    let choice = find_library(explicit)?;
    super::elf::check(&choice.path).map_err(|why| {
        Error::input(format!(
            "cannot load ONNX Runtime from {} (from {}): {why}. {HOW}",
            choice.path.display(),
            choice.from
        ))
    })?;
    Ok(choice)
}

fn existing(p: &Path, from: &str) -> Result<LibraryChoice> {
    if !p.is_file() {
        return Err(Error::input(format!(
            "{from} {}: no such file. {HOW}",
            p.display()
        )));
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    Ok(LibraryChoice {
        path: abs,
        from: from.to_string(),
    })
}

fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(venv.join("lib")) {
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path().join("site-packages"))
            .collect();
        names.sort();
        out.extend(names);
    }
    out.push(venv.join("Lib").join("site-packages"));
    out
}

/// The runtime library in the package's `capi/` directory. The wheel ships
/// `libonnxruntime.so.1.31.1` (no plain `libonnxruntime.so`).
fn library_in(capi: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(capi).ok()?;
    let mut libs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.contains("providers")
                && (n.starts_with("libonnxruntime.so")
                    || (n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
                    || n == "onnxruntime.dll")
        })
        .collect();
    libs.sort_by_key(|n| (n.len(), n.clone()));
    libs.pop().map(|n| capi.join(n))
}

/// Where `python3` would import `onnxruntime` from (without importing it).
fn python_package_dir() -> Option<PathBuf> {
    let script = "import importlib.util as u\ns = u.find_spec('onnxruntime')\nprint(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

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
        r.passed = Some(r.checks.iter().all(|c| c.passed));
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
        r.producer = session.metadata().ok().and_then(|md| md.producer());
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
        let cmp = plan::compare(&sig, schema);
        r.checks.push(cmp.inputs.clone());
        r.checks.push(cmp.outputs.clone());

        let mut finite_problems: Vec<String> = Vec::new();
        let mut runs_done = 0usize;
        let mut latency_feeds: Option<Vec<(String, DynValue)>> = None;
        if !cmp.unsupported.is_empty() {
            r.checks.push(Check::skip(
                "run",
                format!(
                    "no synthetic values can be made for input(s) {}: mlart makes tensors of numbers, bools and strings",
                    cmp.unsupported.join(", ")
                ),
            ));
        } else {
            let syms = plan::batch_symbols(&cmp.plans);
            let batches: Vec<Option<usize>> = if plan::is_batched(&cmp.plans) {
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
                        let mut problems = Vec::new();
                        for (o, v) in &outs {
                            if let Some((_, k)) = sig.outputs.iter().find(|(n, _)| n == o) {
                                if let Some(p) = check::shape_mismatch(v, k) {
                                    problems.push(format!("output {o:?} {p}"));
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
                        r.checks.push(if problems.is_empty() {
                            Check::pass(name, format!("inputs {shapes} -> {desc}"))
                        } else {
                            Check::fail(name, format!("inputs {shapes}: {}", problems.join("; ")))
                        });
                        if latency_feeds.is_none() {
                            latency_feeds = Some(feeds);
                        }
                    }
                    Err(e) => r.checks.push(Check::fail(
                        name,
                        format!("the runtime failed on synthetic inputs {shapes}: {e}"),
                    )),
                }
            }
        }
        if let Some(s) = &m.samples {
            let (c, ran) =
                samples_check(&mut session, &sig, s, opts.tolerance, &mut finite_problems);
            runs_done += ran as usize;
            r.checks.push(c);
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

/// `1.31.1` from the build info (`git-branch=rel-1.31.1, ...`) or the library's file name.
fn version_of(info: &str, lib: &Path) -> String {
    if let Some(rest) = info.split("rel-").nth(1) {
        let v: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    let name = lib
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split(".so.")
        .nth(1)
        .map(String::from)
        .unwrap_or_else(|| "unknown".into())
}

fn dtype_name(t: &TensorElementType) -> String {
    use TensorElementType as T;
    match t {
        T::Float32 => "float32",
        T::Float64 => "float64",
        T::Float16 => "float16",
        T::Bfloat16 => "bfloat16",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Uint8 => "uint8",
        T::Uint16 => "uint16",
        T::Uint32 => "uint32",
        T::Uint64 => "uint64",
        T::Bool => "bool",
        T::String => "string",
        T::Complex64 => "complex64",
        T::Complex128 => "complex128",
        other => return format!("{other:?}").to_ascii_lowercase(),
    }
    .into()
}

fn kind_of(t: &ValueType) -> ValueKind {
    match t {
        ValueType::Tensor {
            ty,
            shape,
            dimension_symbols,
        } => ValueKind::Tensor {
            dtype: dtype_name(ty),
            dims: shape
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    if *d >= 0 {
                        Dim::Fixed(*d)
                    } else {
                        match dimension_symbols.get(i) {
                            Some(s) if !s.is_empty() => Dim::Symbol(s.clone()),
                            _ => Dim::Dynamic,
                        }
                    }
                })
                .collect(),
        },
        ValueType::Sequence(inner) => ValueKind::Sequence(Box::new(kind_of(inner))),
        ValueType::Map { key, value } => ValueKind::Map {
            key: dtype_name(key),
            value: dtype_name(value),
        },
        ValueType::Optional(inner) => ValueKind::Optional(Box::new(kind_of(inner))),
    }
}

/// A tensor of `dtype` from typed values.
fn tensor(dtype: &str, shape: &[usize], v: Values) -> std::result::Result<DynValue, String> {
    let n: usize = shape.iter().product();
    if v.len() != n {
        return Err(format!("{} values for shape {shape:?}", v.len()));
    }
    let shape: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    macro_rules! mk {
        ($data:expr, $t:ty, $conv:expr) => {
            Tensor::from_array((shape, $data.into_iter().map($conv).collect::<Vec<$t>>()))
                .map(|t| t.into_dyn())
        };
    }
    let r = match (dtype, v) {
        ("float32", Values::Float(x)) => mk!(x, f32, |v| v as f32),
        ("float64", Values::Float(x)) => mk!(x, f64, |v| v),
        ("float16", Values::Float(x)) => mk!(x, half::f16, half::f16::from_f64),
        ("bfloat16", Values::Float(x)) => mk!(x, half::bf16, half::bf16::from_f64),
        ("int8", Values::Int(x)) => mk!(x, i8, |v| v as i8),
        ("int16", Values::Int(x)) => mk!(x, i16, |v| v as i16),
        ("int32", Values::Int(x)) => mk!(x, i32, |v| v as i32),
        ("int64", Values::Int(x)) => mk!(x, i64, |v| v),
        ("uint8", Values::UInt(x)) => mk!(x, u8, |v| v as u8),
        ("uint16", Values::UInt(x)) => mk!(x, u16, |v| v as u16),
        ("uint32", Values::UInt(x)) => mk!(x, u32, |v| v as u32),
        ("uint64", Values::UInt(x)) => mk!(x, u64, |v| v),
        ("bool", Values::Bool(x)) => mk!(x, bool, |v| v),
        ("string", Values::Str(x)) => {
            if x.iter().any(|s| s.contains('\0')) {
                return Err("a string with a NUL character".into());
            }
            Tensor::from_string_array((shape, &*x)).map(|t| t.into_dyn())
        }
        (d, _) => return Err(format!("cannot make a {d} tensor")),
    };
    r.map_err(|e| e.to_string())
}

/// Synthetic feeds for a batch size, and their shapes as text.
fn feeds_for(
    plans: &[InputPlan],
    batch: usize,
    syms: &std::collections::BTreeSet<String>,
) -> std::result::Result<(Vec<(String, DynValue)>, String), String> {
    let mut rng = plan::Rng::new(0x6d6c_6172_7400 ^ batch as u64);
    let mut feeds = Vec::new();
    let mut shapes = Vec::new();
    for p in plans {
        let shape = plan::shape_for(p, batch, syms);
        let n = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .filter(|n| *n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "input {:?} would be {shape:?}: more than mlart's limit of {MAX_ELEMENTS} elements; try smaller --batch-sizes",
                    p.name
                )
            })?;
        let _ = n;
        let values = plan::synth(p, &shape, &mut rng);
        let t = tensor(&p.dtype, &shape, values).map_err(|e| format!("input {:?}: {e}", p.name))?;
        shapes.push(format!("{} {:?}", p.name, shape));
        feeds.push((p.name.clone(), t));
    }
    Ok((feeds, shapes.join(", ")))
}

fn run_raw(s: &mut Session, feeds: &[(String, DynValue)]) -> std::result::Result<(), String> {
    let inputs: Vec<(&str, SessionInputValue)> =
        feeds.iter().map(|(n, v)| (n.as_str(), v.into())).collect();
    s.run(inputs).map(|_| ()).map_err(|e| e.to_string())
}

/// Run and copy every output out.
fn run(
    s: &mut Session,
    feeds: &[(String, DynValue)],
) -> std::result::Result<Vec<(String, OutValue)>, String> {
    let inputs: Vec<(&str, SessionInputValue)> =
        feeds.iter().map(|(n, v)| (n.as_str(), v.into())).collect();
    let outs = s.run(inputs).map_err(|e| e.to_string())?;
    Ok(outs
        .iter()
        .map(|(name, v)| (name.to_string(), out_value(&v)))
        .collect())
}

fn out_value(v: &DynValue) -> OutValue {
    match v.dtype() {
        ValueType::Tensor { ty, shape, .. } => {
            if shape.iter().map(|d| (*d).max(0) as u128).product::<u128>() > MAX_ELEMENTS as u128 {
                return OutValue::Other(format!(
                    "a tensor of shape {:?}, too large to inspect",
                    &shape[..]
                ));
            }
            tensor_out(v, *ty)
        }
        ValueType::Sequence(_) => match v.try_extract_sequence::<DynValueTypeMarker>() {
            Ok(items) => OutValue::Seq(items.iter().map(out_value).collect()),
            Err(e) => OutValue::Other(format!("a sequence ({e})")),
        },
        ValueType::Map { key, value } => map_out(v, *key, *value),
        other => OutValue::Other(format!("{other}")),
    }
}

fn tensor_out(v: &DynValue, ty: TensorElementType) -> OutValue {
    use TensorElementType as T;
    let dims = |s: &ort::value::Shape| s.iter().map(|d| (*d).max(0) as usize).collect::<Vec<_>>();
    macro_rules! ext {
        ($t:ty, $variant:ident, $conv:expr) => {
            match v.try_extract_tensor::<$t>() {
                Ok((s, d)) => OutValue::$variant {
                    shape: dims(s),
                    data: d.iter().map($conv).collect(),
                },
                Err(e) => OutValue::Other(format!("a tensor ({e})")),
            }
        };
    }
    match ty {
        T::Float32 => ext!(f32, Float, |x| *x as f64),
        T::Float64 => ext!(f64, Float, |x| *x),
        T::Float16 => ext!(half::f16, Float, |x| x.to_f64()),
        T::Bfloat16 => ext!(half::bf16, Float, |x| x.to_f64()),
        T::Int8 => ext!(i8, Int, |x| *x as i64),
        T::Int16 => ext!(i16, Int, |x| *x as i64),
        T::Int32 => ext!(i32, Int, |x| *x as i64),
        T::Int64 => ext!(i64, Int, |x| *x),
        T::Uint8 => ext!(u8, UInt, |x| *x as u64),
        T::Uint16 => ext!(u16, UInt, |x| *x as u64),
        T::Uint32 => ext!(u32, UInt, |x| *x as u64),
        T::Uint64 => ext!(u64, UInt, |x| *x),
        T::Bool => ext!(bool, Bool, |x| *x),
        T::String => match v.try_extract_strings() {
            Ok((s, d)) => OutValue::Str {
                shape: dims(s),
                data: d,
            },
            Err(e) => OutValue::Other(format!("a string tensor ({e})")),
        },
        other => OutValue::Other(format!("a tensor of {}", dtype_name(&other))),
    }
}

fn map_out(v: &DynValue, key: TensorElementType, value: TensorElementType) -> OutValue {
    use TensorElementType as T;
    macro_rules! kv {
        ($k:ty, $v:ty) => {
            match v.try_extract_key_values::<$k, $v>() {
                Ok(kv) => OutValue::Map(
                    kv.into_iter()
                        .map(|(k, x)| (k.to_string(), x as f64))
                        .collect(),
                ),
                Err(e) => OutValue::Other(format!("a map ({e})")),
            }
        };
    }
    match (key, value) {
        (T::Int64, T::Float32) => kv!(i64, f32),
        (T::Int64, T::Float64) => kv!(i64, f64),
        (T::Int64, T::Int64) => kv!(i64, i64),
        (T::String, T::Float32) => kv!(String, f32),
        (T::String, T::Float64) => kv!(String, f64),
        (T::String, T::Int64) => kv!(String, i64),
        (k, x) => OutValue::Other(format!("map({},{})", dtype_name(&k), dtype_name(&x))),
    }
}

/// Run the samples and compare the expected outputs. Returns the check and whether it ran.
fn samples_check(
    session: &mut Session,
    sig: &ModelSig,
    s: &SamplesFile,
    tolerance: f64,
    finite: &mut Vec<String>,
) -> (Check, bool) {
    let fail = |m: String| (Check::fail("samples", format!("{}: {m}", s.file)), false);
    let given: Vec<&str> = s.inputs.iter().map(|(n, _)| n.as_str()).collect();
    let wanted: Vec<&str> = sig.inputs.iter().map(|(n, _)| n.as_str()).collect();
    let mut g = given.clone();
    g.sort();
    let mut w = wanted.clone();
    w.sort();
    if g != w {
        return fail(format!(
            "the samples have inputs [{}], the model's are [{}]",
            given.join(", "),
            wanted.join(", ")
        ));
    }
    let mut feeds = Vec::new();
    let mut rows = None;
    for (name, kind) in &sig.inputs {
        let v = &s
            .inputs
            .iter()
            .find(|(n, _)| n == name)
            .expect("same names")
            .1;
        let ValueKind::Tensor { dtype, dims } = kind else {
            return fail(format!(
                "input {name:?} is {}: samples can only give tensors",
                kind.describe()
            ));
        };
        let (shape, flat) = match plan::json_tensor(v) {
            Ok(x) => x,
            Err(e) => return fail(format!("inputs.{name}: {e}")),
        };
        let fits = shape.len() == dims.len()
            && dims.iter().zip(&shape).all(|(d, n)| match d {
                Dim::Fixed(f) => *f < 0 || *f as usize == *n,
                _ => true,
            });
        if !fits {
            return fail(format!(
                "inputs.{name} has shape {shape:?}, the model wants {}",
                kind.describe()
            ));
        }
        if shape.iter().product::<usize>() > MAX_ELEMENTS {
            return fail(format!("inputs.{name} is too large"));
        }
        let values = match plan::typed(&flat, dtype) {
            Ok(v) => v,
            Err(e) => return fail(format!("inputs.{name}: {e}")),
        };
        rows = rows.or(shape.first().copied());
        match tensor(dtype, &shape, values) {
            Ok(t) => feeds.push((name.clone(), t)),
            Err(e) => return fail(format!("inputs.{name}: {e}")),
        }
    }
    let outs = match run(session, &feeds) {
        Ok(o) => o,
        Err(e) => return fail(format!("the runtime failed on the sample inputs: {e}")),
    };
    for (o, v) in &outs {
        if let Some(p) = check::non_finite(v) {
            finite.push(format!("samples: output {o:?}: {p}"));
        }
    }
    let outs: BTreeMap<&str, &OutValue> = outs.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut problems = Vec::new();
    let mut compared = 0;
    for (name, e) in &s.expected {
        let Some(v) = outs.get(name.as_str()) else {
            problems.push(format!(
                "expected.{name} is not an output of the model (its outputs: {})",
                outs.keys().copied().collect::<Vec<_>>().join(", ")
            ));
            continue;
        };
        match check::compare_expected(v, e, tolerance) {
            Ok(n) => compared += n,
            Err(m) => problems.push(format!("output {name:?}: {m}")),
        }
    }
    if !problems.is_empty() {
        return (
            Check::fail("samples", format!("{}: {}", s.file, problems.join("; "))),
            true,
        );
    }
    let rows = rows.unwrap_or(1);
    let msg = if s.expected.is_empty() {
        format!(
            "{rows} sample row(s) from {} ran (no expected outputs given)",
            s.file
        )
    } else {
        format!(
            "{rows} sample row(s) from {} ran; {compared} value(s) of {} match (floats within {tolerance})",
            s.file,
            s.expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        )
    };
    (Check::pass("samples", msg), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            version_of(
                "ORT Build Info: git-branch=rel-1.31.1, git-commit-id=abc",
                Path::new("x")
            ),
            "1.31.1"
        );
        assert_eq!(
            version_of("", Path::new("/a/libonnxruntime.so.1.31.1")),
            "1.31.1"
        );
        assert_eq!(version_of("", Path::new("/a/onnxruntime.dll")), "unknown");
    }

    #[test]
    fn library_in_capi() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(library_in(d.path()), None);
        for n in [
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.1.31.1",
            "__init__.py",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        assert_eq!(
            library_in(d.path()).unwrap(),
            d.path().join("libonnxruntime.so.1.31.1")
        );
    }

    #[test]
    fn missing_explicit_library_is_an_input_error() {
        let e = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(
            m.contains("--ort-lib") && m.contains("pip install onnxruntime==1.31.1"),
            "{m}"
        );
    }
}
