//! The `samples` check: a model run on real inputs — a samples JSON file, or ONNX Model Zoo
//! test data sets (`test_data_set_N/input_I.pb`, `output_I.pb`) — and its outputs compared
//! with the expected ones (floats within the tolerance, the rest exactly).

use super::check::{self, OutValue};
use super::inputs::{self, Values};
use super::plan::{family, ModelSig};
use super::tensor_proto::{self, SampleTensor};
use super::tensors::{run, tensor, MAX_ELEMENTS};
use super::types::{Check, Dim, ValueKind};
use super::{SampleSet, SamplesFile};
use ort::session::Session;
use ort::value::DynValue;
use std::collections::BTreeMap;

pub type Feeds = Vec<(String, DynValue)>;

/// What running the samples gave.
pub struct SampleRun {
    pub check: Check,
    /// Runs done (for the `finite` check).
    pub runs: usize,
    /// The feeds of the first sample that ran (for the latency when no synthetic input ran).
    pub feeds: Option<Feeds>,
}

impl SampleRun {
    fn failed(name: &str, m: String) -> SampleRun {
        SampleRun {
            check: Check::fail("samples", format!("{name}: {m}")),
            runs: 0,
            feeds: None,
        }
    }
}

/// Does a sample of `shape` fit the model's declared dims (same rank, fixed dims equal)?
fn fits(shape: &[usize], dims: &[Dim]) -> bool {
    shape.len() == dims.len()
        && dims.iter().zip(shape).all(|(d, n)| match d {
            Dim::Fixed(f) => *f < 0 || *f as usize == *n,
            _ => true,
        })
}

/// The input tensor for a model input from sample values (shape checked).
fn feed(name: &str, kind: &ValueKind, shape: &[usize], values: Values) -> Result<DynValue, String> {
    let ValueKind::Tensor { dtype, dims } = kind else {
        return Err(format!(
            "input {name:?} is {}: samples can only give tensors",
            kind.describe()
        ));
    };
    if !fits(shape, dims) {
        return Err(format!(
            "{name} has shape {shape:?}, the model wants {}",
            kind.describe()
        ));
    }
    if shape.iter().product::<usize>() > MAX_ELEMENTS {
        return Err(format!("{name} is too large"));
    }
    tensor(dtype, shape, values).map_err(|e| format!("{name}: {e}"))
}

/// Run the samples of a JSON file and compare the expected outputs.
pub fn json_samples(
    session: &mut Session,
    sig: &ModelSig,
    s: &SamplesFile,
    tolerance: f64,
    finite: &mut Vec<String>,
) -> SampleRun {
    let fail = |m: String| SampleRun::failed(&s.file, m);
    // Unnamed inputs (an MLflow input example) are the model's by position.
    let bound;
    let s = if !s.inputs.is_empty()
        && s.inputs.len() == sig.inputs.len()
        && s.inputs
            .iter()
            .enumerate()
            .all(|(i, (n, _))| crate::build::schema::is_positional(n, "inputs", i))
    {
        bound = SamplesFile {
            file: s.file.clone(),
            inputs: s
                .inputs
                .iter()
                .zip(&sig.inputs)
                .map(|((_, v), (n, _))| (n.clone(), v.clone()))
                .collect(),
            expected: s.expected.clone(),
        };
        &bound
    } else {
        s
    };
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
        let Some((_, v)) = s.inputs.iter().find(|(n, _)| n == name) else {
            return fail(format!("no sample for input {name:?}"));
        };
        let ValueKind::Tensor { dtype, .. } = kind else {
            return fail(format!(
                "input {name:?} is {}: samples can only give tensors",
                kind.describe()
            ));
        };
        let (shape, flat) = match inputs::json_tensor(v) {
            Ok(x) => x,
            Err(e) => return fail(format!("inputs.{name}: {e}")),
        };
        let values = match inputs::typed(&flat, dtype, &shape) {
            Ok(v) => v,
            // (e starts with the value's place: `inputs.NAME[0][2]: …`)
            Err(e) => return fail(format!("inputs.{name}{e}")),
        };
        rows = rows.or(shape.first().copied());
        match feed(&format!("inputs.{name}"), kind, &shape, values) {
            Ok(t) => feeds.push((name.clone(), t)),
            Err(e) => return fail(e),
        }
    }
    let outs = match run(session, &feeds) {
        Ok(o) => o,
        Err(e) => return fail(format!("the runtime failed on the sample inputs: {e}")),
    };
    note_non_finite(&s.file, &outs, finite);
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
    let check = if !problems.is_empty() {
        Check::fail("samples", format!("{}: {}", s.file, problems.join("; ")))
    } else {
        let rows = rows.unwrap_or(1);
        Check::pass(
            "samples",
            if s.expected.is_empty() {
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
            },
        )
    };
    SampleRun {
        check,
        runs: 1,
        feeds: Some(feeds),
    }
}

fn note_non_finite(what: &str, outs: &[(String, OutValue)], finite: &mut Vec<String>) {
    for (o, v) in outs {
        if let Some(p) = check::non_finite(v) {
            finite.push(format!("{what}: output {o:?}: {p}"));
        }
    }
}

/// Read the `.pb` files of a set; an error names the file.
fn read_all(files: &[std::path::PathBuf]) -> Result<Vec<(String, SampleTensor)>, String> {
    files
        .iter()
        .map(|f| {
            let shown = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            tensor_proto::read(f)
                .map(|t| (shown.clone(), t))
                .map_err(|e| format!("{shown}: {e}"))
        })
        .collect()
}

/// Which model name each sample tensor is for: by the names in the files when they all name
/// one of `names`, else by position (`input_0.pb` the first input, …).
fn bind<'a>(
    tensors: &'a [(String, SampleTensor)],
    names: &[String],
    what: &str,
) -> Result<Vec<(&'a str, &'a SampleTensor, String)>, String> {
    let by_name = tensors.iter().enumerate().all(|(i, (_, t))| {
        !t.name.is_empty()
            && names.contains(&t.name)
            && !tensors[..i].iter().any(|(_, u)| u.name == t.name)
    });
    if by_name {
        return Ok(tensors
            .iter()
            .map(|(f, t)| (f.as_str(), t, t.name.clone()))
            .collect());
    }
    if tensors.len() > names.len() {
        return Err(format!(
            "{} {what} file(s), and the model has {} {what}(s) ({})",
            tensors.len(),
            names.len(),
            names.join(", ")
        ));
    }
    Ok(tensors
        .iter()
        .zip(names)
        .map(|((f, t), n)| (f.as_str(), t, n.clone()))
        .collect())
}

/// Run one test data set: Ok((values compared, output names compared, feeds)) or what failed.
fn one_set(
    session: &mut Session,
    sig: &ModelSig,
    set: &SampleSet,
    tolerance: f64,
    finite: &mut Vec<String>,
) -> Result<(usize, Vec<String>, Feeds), String> {
    let inputs = read_all(&set.inputs)?;
    let names: Vec<String> = sig.inputs.iter().map(|(n, _)| n.clone()).collect();
    let bound = bind(&inputs, &names, "input")?;
    if bound.len() != names.len() {
        return Err(format!(
            "{} input file(s), and the model has {} inputs ({})",
            bound.len(),
            names.len(),
            names.join(", ")
        ));
    }
    let mut feeds = Vec::new();
    for (file, t, name) in bound {
        let Some((_, kind)) = sig.inputs.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        if let ValueKind::Tensor { dtype, .. } = kind {
            if family(dtype) != family(t.dtype) {
                return Err(format!(
                    "{file} holds {}, the model's input {name:?} is {}",
                    t.dtype,
                    kind.describe()
                ));
            }
        }
        let what = format!("{file} (input {name:?})");
        feeds.push((name, feed(&what, kind, &t.shape, t.values.clone())?));
    }
    let outs =
        run(session, &feeds).map_err(|e| format!("the runtime failed on its inputs: {e}"))?;
    note_non_finite(&set.name, &outs, finite);
    let expected = read_all(&set.outputs)?;
    let out_names: Vec<String> = outs.iter().map(|(n, _)| n.clone()).collect();
    let mut compared = 0;
    let mut problems = Vec::new();
    let mut which = Vec::new();
    for (file, t, name) in bind(&expected, &out_names, "output")? {
        let Some((_, v)) = outs.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        match check::compare_tensor(v, &t.shape, &t.values, tolerance) {
            Ok(n) => {
                compared += n;
                which.push(name);
            }
            Err(m) => problems.push(format!("output {name:?} ({file}): {m}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok((compared, which, feeds))
}

/// Run every test data set of the model and compare the outputs they give.
pub fn test_data_sets(
    session: &mut Session,
    sig: &ModelSig,
    sets: &[SampleSet],
    tolerance: f64,
    finite: &mut Vec<String>,
) -> SampleRun {
    let mut runs = 0;
    let mut compared = 0;
    let mut outputs: Vec<String> = Vec::new();
    let mut first_feeds = None;
    let mut problems = Vec::new();
    for set in sets {
        match one_set(session, sig, set, tolerance, finite) {
            Ok((n, names, feeds)) => {
                runs += 1;
                compared += n;
                for o in names {
                    if !outputs.contains(&o) {
                        outputs.push(o);
                    }
                }
                first_feeds.get_or_insert(feeds);
            }
            Err(m) => problems.push(format!("{}: {m}", set.name)),
        }
    }
    let names = sets
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let check = if !problems.is_empty() {
        Check::fail("samples", problems.join("; "))
    } else if compared == 0 {
        Check::pass(
            "samples",
            format!(
                "{} test data set(s) ran ({names}; no output_*.pb to compare)",
                sets.len()
            ),
        )
    } else {
        Check::pass(
            "samples",
            format!(
                "{} test data set(s) ran ({names}); {compared} value(s) of {} match (floats within {tolerance})",
                sets.len(),
                outputs.join(", ")
            ),
        )
    };
    SampleRun {
        check,
        runs,
        feeds: first_feeds,
    }
}
