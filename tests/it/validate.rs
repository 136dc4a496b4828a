//! `mlart validate` and `bundle --validate` with the real ONNX Runtime from PyPI
//! (`onnxruntime==1.31.1` in the test venv), on the fixtures of scripts/make-onnx-fixtures.py.

use crate::support::registry::Registry;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/onnx")
}

/// The ONNX Runtime library of the test venv (`…/onnxruntime/capi/libonnxruntime.so.1.*`).
/// With MLART_REQUIRE_INTEROP=1 a missing one fails the test; otherwise the test skips.
pub fn ort_lib(test: &str) -> Option<PathBuf> {
    let venv = venv();
    let found = fs::read_dir(venv.join("lib")).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/onnxruntime/capi"))
            .filter_map(|capi| fs::read_dir(&capi).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("libonnxruntime.so.1.")
            })
    });
    if found.is_none() {
        if std::env::var("MLART_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!(
                "{test}: onnxruntime is required (MLART_REQUIRE_INTEROP=1) but not in the venv {}: run scripts/test",
                venv.display()
            );
        }
        eprintln!(
            "SKIP {test}: no onnxruntime in the venv {} (scripts/test installs it)",
            venv.display()
        );
    }
    found
}

/// mlart with ORT_DYLIB_PATH set to `lib` (and no $VIRTUAL_ENV to look in).
pub fn mlart_ort(lib: &Path) -> Command {
    let mut c = mlart();
    c.env("ORT_DYLIB_PATH", lib).env_remove("VIRTUAL_ENV");
    c
}

/// Run, return (exit code, stdout as JSON).
fn run_json(c: &mut Command) -> (i32, Value) {
    let out = run(c.arg("--json"));
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "killed by a signal: {:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

fn check<'a>(model: &'a Value, name: &str) -> &'a Value {
    model["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {model}"))
}

/// The message of the check `name` of a model's report.
fn message<'a>(model: &'a Value, name: &str) -> &'a str {
    check(model, name)["message"].as_str().unwrap()
}

fn validate_fixture(lib: &Path, model: &str, args: &[&str]) -> (i32, Value) {
    run_json(
        mlart_ort(lib)
            .current_dir(fixtures())
            .args(["validate", model, "--runs", "3"])
            .args(args),
    )
}

#[test]
fn the_iris_example_passes_with_its_samples() {
    let Some(lib) = ort_lib("the_iris_example_passes_with_its_samples") else {
        return;
    };
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "-f"])
            .arg(example().join("mlart.yaml"))
            .arg("--samples")
            .arg(example().join("samples/samples.json"))
            .args(["--runs", "20"]),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["format"], "mlart.validation.v1");
    assert_eq!(r["passed"], true);
    assert_eq!(r["runtime"]["version"], "1.31.1");
    assert_eq!(r["schema"], "schema/features.yaml");
    let m = &r["models"][0];
    assert_eq!(m["path"], "model/iris.onnx");
    assert_eq!(
        (m["validated"].clone(), m["passed"].clone()),
        (true.into(), true.into())
    );
    assert_eq!(m["ir_version"], 8);
    assert_eq!(
        m["opset"],
        serde_json::json!({"ai.onnx": 17, "ai.onnx.ml": 1})
    );
    assert_eq!(
        m["inputs"][0],
        serde_json::json!({"name": "input", "kind": "tensor", "dtype": "float32", "shape": [null, 4], "type": "tensor(float32)[?,4]"})
    );
    assert_eq!(m["outputs"][0]["dtype"], "int64");
    assert_eq!(m["outputs"][1]["shape"], serde_json::json!([null, 3]));
    for c in [
        "load",
        "inputs",
        "outputs",
        "run[batch=1]",
        "run[batch=7]",
        "run[batch=64]",
        "samples",
        "finite",
    ] {
        assert_eq!(check(m, c)["passed"], true, "{c}: {m}");
    }
    assert!(message(m, "samples").contains("5 sample row(s)"));
    assert!(message(m, "run[batch=64]").contains("[64, 4]"));
    let l = &m["latency"];
    assert_eq!(
        (l["batch_size"].clone(), l["runs"].clone()),
        (1.into(), 20.into())
    );
    for k in ["single_thread", "default_threads"] {
        let (p50, p95) = (
            l[k]["p50_ms"].as_f64().unwrap(),
            l[k]["p95_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p95 >= p50 && p95 < 1000.0, "{l}");
    }
    assert_eq!(r["summary"]["passed"], 1);

    // the human summary, on stdout
    let out = run(mlart_ort(&lib)
        .args(["validate", "-f"])
        .arg(example().join("mlart.yaml"))
        .args(["--runs", "2"]));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("model/iris.onnx: passed")
            && text.contains("run[batch=7]")
            && text.contains("latency (batch 1, 2 runs)")
            && text.contains("validation passed: 1 of 1 ONNX model(s) passed"),
        "{text}"
    );
}

#[test]
fn fixtures_pass_against_their_schemas() {
    let Some(lib) = ort_lib("fixtures_pass_against_their_schemas") else {
        return;
    };
    // several typed inputs (float, int64, string), matched by name, with samples
    let (code, r) = validate_fixture(
        &lib,
        "multi_input.onnx",
        &[
            "--schema",
            "multi_input.yaml",
            "--samples",
            "multi_input_samples.json",
        ],
    );
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    let dtypes: Vec<&str> = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["dtype"].as_str().unwrap())
        .collect();
    assert_eq!(dtypes, ["float32", "int64", "string"]);
    assert_eq!(m["inputs"][2]["shape"], serde_json::json!(["N", 1]));
    assert!(message(m, "inputs").contains("matched by name"));
    assert!(message(m, "samples").contains("9 value(s)"));
    assert_eq!(m["opset"]["ai.onnx.ml"], 2);

    // ZipMap: a sequence of maps, compared with the samples' list of objects
    let (code, r) = validate_fixture(
        &lib,
        "zipmap.onnx",
        &[
            "--schema",
            "zipmap.yaml",
            "--samples",
            "zipmap_samples.json",
        ],
    );
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(m["outputs"][1]["kind"], "sequence");
    assert_eq!(m["outputs"][1]["type"], "sequence(map(int64,float32))");
    assert!(message(m, "outputs").contains("ZipMap"));
    assert!(message(m, "samples").contains("12 value(s)"));

    // symbolic dims: batch follows the batch size, seq gets a fixed fill
    let (code, r) = validate_fixture(&lib, "dynamic.onnx", &["--schema", "dynamic.yaml"]);
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(
        m["inputs"][0]["shape"],
        serde_json::json!(["batch", "seq", 4])
    );
    assert!(message(m, "run[batch=64]").contains("x [64, 3, 4] -> y [64, 4], shape [3]"));

    // int64 ids within the schema's range
    let (code, r) = validate_fixture(&lib, "int64_input.onnx", &["--schema", "int64_input.yaml"]);
    assert_eq!(code, 0, "{r}");

    // no schema: compared with nothing, still run
    let (code, r) = validate_fixture(&lib, "zipmap.onnx", &["--batch-sizes", "2"]);
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(check(m, "inputs")["skipped"], true);
    assert!(check(m, "run[batch=2]")["passed"].as_bool().unwrap());
    assert_eq!(r["settings"]["batch_sizes"], serde_json::json!([2]));
}

#[test]
fn failures_name_the_problem() {
    let Some(lib) = ort_lib("failures_name_the_problem") else {
        return;
    };
    let msg = |r: &Value, c: &str| -> String {
        let m = &r["models"][0];
        assert_eq!(check(m, c)["passed"], false, "{c}: {m}");
        check(m, c)["message"].as_str().unwrap().to_string()
    };
    // NaN outputs
    let (code, r) = validate_fixture(&lib, "nan.onnx", &["--schema", "nan.yaml"]);
    assert_eq!(code, 1);
    assert_eq!(r["passed"], false);
    let m = msg(&r, "finite");
    assert!(m.contains("output \"y\"") && m.contains("NaN"), "{m}");
    assert_eq!(r["summary"]["failed"], 1);

    // a retyped and a renamed feature: both sides named
    let (code, r) = validate_fixture(&lib, "multi_input.onnx", &["--schema", "mismatch.yaml"]);
    assert_eq!(code, 1);
    let m = msg(&r, "inputs");
    assert!(
        m.contains("feature \"visits\" is string in the schema (mismatch.yaml)")
            && m.contains("tensor(int64)[N,1]")
            && m.contains("not in the schema: city")
            && m.contains("not among the model's inputs: town"),
        "{m}"
    );
    // 4 features for a 3-column input
    let (code, r) = validate_fixture(&lib, "zipmap.onnx", &["--schema", "four_features.yaml"]);
    assert_eq!(code, 1);
    let m = msg(&r, "inputs");
    assert!(m.contains("3 columns") && m.contains("4 features"), "{m}");

    // wrong expected sample outputs
    let (code, r) = validate_fixture(
        &lib,
        "zipmap.onnx",
        &["--samples", "zipmap_samples_wrong.json"],
    );
    assert_eq!(code, 1);
    let m = msg(&r, "samples");
    assert!(
        m.contains("output \"output_label\"") && m.contains("at [0]"),
        "{m}"
    );

    // the same runtime gives the same floats (up to JSON's last digit); an expected value
    // moved by 1e-3 fails, unless the tolerance allows it
    let (code, r) = validate_fixture(
        &lib,
        "multi_input.onnx",
        &[
            "--samples",
            "multi_input_samples.json",
            "--tolerance",
            "1e-9",
        ],
    );
    assert_eq!(code, 0, "{r}");
    let t = tempfile::tempdir().unwrap();
    let mut s: Value =
        serde_json::from_slice(&fs::read(fixtures().join("multi_input_samples.json")).unwrap())
            .unwrap();
    let p = s["expected"]["probabilities"][0][0].as_f64().unwrap();
    s["expected"]["probabilities"][0][0] = (p + 1e-3).into();
    let off = t.path().join("off.json");
    fs::write(&off, s.to_string()).unwrap();
    let (code, r) = validate_fixture(
        &lib,
        "multi_input.onnx",
        &["--samples", off.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(msg(&r, "samples").contains("[0, 0]"));
    let (code, _) = validate_fixture(
        &lib,
        "multi_input.onnx",
        &["--samples", off.to_str().unwrap(), "--tolerance", "0.01"],
    );
    assert_eq!(code, 0);

    // ids outside the embedding table: the runtime's own error, as a failed run
    let wide = t.path().join("wide.yaml");
    fs::write(
        &wide,
        "features:\n  - {name: ids, dtype: int64, shape: [5], range: {min: 0, max: 1000}}\n",
    )
    .unwrap();
    let (code, r) = validate_fixture(
        &lib,
        "int64_input.onnx",
        &["--schema", wide.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    let m = msg(&r, "run[batch=64]");
    assert!(
        m.contains("the runtime failed on synthetic inputs ids [64, 5]"),
        "{m}"
    );

    // a truncated file and an invalid graph: the runtime's message, with the file
    let (code, r) = validate_fixture(&lib, "truncated.onnx", &[]);
    assert_eq!(code, 1);
    let m = msg(&r, "load");
    assert!(
        m.contains("truncated.onnx") && m.contains("Protobuf parsing failed"),
        "{m}"
    );
    assert_eq!(r["models"][0]["checks"].as_array().unwrap().len(), 1);
    let (code, r) = validate_fixture(&lib, "invalid_graph.onnx", &[]);
    assert_eq!(code, 1);
    let m = msg(&r, "load");
    assert!(
        m.contains("invalid_graph.onnx") && m.contains("'ghost'"),
        "{m}"
    );
    // the header was still read
    assert_eq!(r["models"][0]["ir_version"], 8);

    // the human summary says FAILED and why
    let out = run(mlart_ort(&lib)
        .current_dir(fixtures())
        .args(["validate", "nan.onnx", "--runs", "0"]));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nan.onnx: FAILED")
            && text.contains("FAIL  finite")
            && text.contains("validation FAILED"),
        "{text}"
    );
}

/// Every fixture, garbage, an empty file and mangled models: a clean exit (0, 1 or 2) with
/// a JSON document, never a panic (101), an abort or a signal.
#[test]
fn no_input_crashes_it() {
    let Some(lib) = ort_lib("no_input_crashes_it") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    fs::write(t.path().join("empty.onnx"), b"").unwrap();
    files.push(t.path().join("empty.onnx"));
    let mut rnd = xorshift(0x2545f4914f6cdd1d);
    for (i, len) in [1usize, 10, 100, 4096, 100_000].into_iter().enumerate() {
        let b: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        let p = t.path().join(format!("garbage{i}.onnx"));
        fs::write(&p, b).unwrap();
        files.push(p);
    }
    // mangled copies of real models: bytes changed, cut, duplicated
    let models = [
        "zipmap.onnx",
        "multi_input.onnx",
        "dynamic.onnx",
        "int64_input.onnx",
    ];
    for i in 0..40 {
        let mut b = fs::read(fixtures().join(models[i % models.len()])).unwrap();
        for _ in 0..1 + rnd() % 6 {
            let at = (rnd() as usize) % b.len();
            match rnd() % 3 {
                0 => b[at] = rnd() as u8,
                1 => {
                    b.truncate(at.max(1));
                }
                _ => {
                    let tail = b[at..].to_vec();
                    b.extend(tail);
                }
            }
        }
        let p = t.path().join(format!("mangled{i}.onnx"));
        fs::write(&p, b).unwrap();
        files.push(p);
    }
    for f in &files {
        let out = run(mlart_ort(&lib).arg("--json").arg("validate").arg(f).args([
            "--runs",
            "1",
            "--batch-sizes",
            "1,7",
        ]));
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=2)),
            "{}: exit {:?}\nstderr: {}",
            f.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: no JSON on stdout ({e})", f.display()));
        if code == Some(2) {
            assert!(v["error"]["message"].is_string(), "{v}");
        } else {
            assert_eq!(v["format"], "mlart.validation.v1");
        }
        if f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("garbage")
        {
            assert_eq!(code, Some(1), "{}: {v}", f.display());
            assert_eq!(check(&v["models"][0], "load")["passed"], false);
        }
    }
}

#[test]
fn the_runtime_missing_or_wrong_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let model = fixtures().join("zipmap.onnx");
    let expect2 = |c: &mut Command, needles: &[&str]| {
        let err = fails(c, 2);
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        assert!(err.contains("pip install onnxruntime==1.31.1"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // `mlart validate MODEL --ort-lib LIB`
    let with_ort_lib = |lib: &Path| {
        let mut c = mlart();
        c.arg("validate").arg(&model).arg("--ort-lib").arg(lib);
        c
    };
    // nonexistent, by flag and by environment
    expect2(
        &mut with_ort_lib(Path::new("/nonexistent/libonnxruntime.so")),
        &["--ort-lib /nonexistent/libonnxruntime.so: no such file"],
    );
    expect2(
        mlart()
            .env("ORT_DYLIB_PATH", "/nonexistent/lib.so")
            .arg("validate")
            .arg(&model),
        &["ORT_DYLIB_PATH /nonexistent/lib.so"],
    );
    // a real library that is not ONNX Runtime (libc of this process)
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libc.so") || p.contains("/libc-"))
        .unwrap()
        .to_string();
    expect2(
        &mut with_ort_lib(Path::new(&libc)),
        &["does not export `OrtGetApiBase`"],
    );
    // an empty file and garbage
    let empty = t.path().join("libonnxruntime.so.1.31.1");
    fs::write(&empty, b"").unwrap();
    expect2(&mut with_ort_lib(&empty), &["the file is empty"]);
    let junk = t.path().join("junk.so");
    fs::write(&junk, b"not a library at all").unwrap();
    expect2(&mut with_ort_lib(&junk), &["not a shared library"]);
    // nothing anywhere: no flag, no ORT_DYLIB_PATH, no venv, no python3 on PATH
    let bin = t.path().join("bin");
    fs::create_dir(&bin).unwrap();
    expect2(
        mlart()
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("VIRTUAL_ENV")
            .env("PATH", &bin)
            .arg("validate")
            .arg(&model),
        &["ONNX Runtime was not found"],
    );
    let Some(lib) = ort_lib("the_runtime_missing_or_wrong_is_a_clear_error") else {
        return;
    };
    // truncated copies of the real library (dlopen would fault on them)
    let real = fs::read(&lib).unwrap();
    for cut in [100, real.len() / 2, real.len() - 1] {
        let p = t.path().join(format!("cut{cut}.so"));
        fs::write(&p, &real[..cut]).unwrap();
        expect2(&mut with_ort_lib(&p), &["truncated"]);
    }
    // found through $VIRTUAL_ENV when nothing else is given
    let (code, r) = run_json(
        mlart()
            .env_remove("ORT_DYLIB_PATH")
            .env("VIRTUAL_ENV", venv())
            .env("PATH", &bin)
            .args(["validate", "--runs", "1"])
            .arg(&model),
    );
    assert_eq!(code, 0, "{r}");
    assert!(r["runtime"]["library"]
        .as_str()
        .unwrap()
        .contains("onnxruntime/capi/libonnxruntime.so.1."));
    // --ort-lib wins over a broken ORT_DYLIB_PATH
    let (code, _) = run_json(
        mlart()
            .env("ORT_DYLIB_PATH", "/nonexistent")
            .args(["validate", "--runs", "0", "--ort-lib"])
            .arg(&lib)
            .arg(&model),
    );
    assert_eq!(code, 0);
}

#[test]
fn non_onnx_models_are_listed_not_validated() {
    // no runtime needed when there is nothing to run
    let t = tempfile::tempdir().unwrap();
    let pkl = t.path().join("model.pkl");
    fs::write(&pkl, b"\x80\x04not really a pickle").unwrap();
    let (code, r) = run_json(
        mlart()
            .env("ORT_DYLIB_PATH", "/nonexistent")
            .arg("validate")
            .arg(&pkl),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["passed"], true);
    let m = &r["models"][0];
    assert_eq!(
        (m["format"].clone(), m["validated"].clone()),
        ("pickle".into(), false.into())
    );
    assert!(m["reason"].as_str().unwrap().contains("only ONNX"));
    assert!(m.get("passed").is_none() && m.get("checks").is_none());
    assert_eq!(r["summary"]["not_validated"], 1);
    let out = run(mlart()
        .env("ORT_DYLIB_PATH", "/nonexistent")
        .arg("validate")
        .arg(&pkl));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("model.pkl: NOT VALIDATED")
            && text.contains("1 model(s) NOT validated (pickle)"),
        "{text}"
    );

    // in a project beside an ONNX model: listed, and `passed` follows the ONNX model
    let Some(lib) = ort_lib("non_onnx_models_are_listed_not_validated") else {
        return;
    };
    let p = example_copy();
    fs::write(p.path().join("model/extra.safetensors"), b"{}").unwrap();
    let spec = p.path().join("mlart.yaml");
    let text = fs::read_to_string(&spec).unwrap().replace(
        "    framework: scikit-learn\n",
        "    framework: scikit-learn\n  - model/extra.safetensors\n",
    );
    fs::write(&spec, text).unwrap();
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0", "-f"])
            .arg(&spec),
    );
    assert_eq!(code, 0, "{r}");
    let models = r["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["path"], "model/extra.safetensors");
    assert_eq!(models[0]["validated"], false);
    assert_eq!(models[0]["format"], "safetensors");
    assert_eq!(models[1]["passed"], true);
    assert_eq!(
        (
            r["summary"]["validated"].clone(),
            r["summary"]["not_validated"].clone()
        ),
        (1.into(), 1.into())
    );
}

#[test]
fn samples_in_the_spec_and_bad_samples_files() {
    let p = example_copy();
    let spec = p.path().join("mlart.yaml");
    let base = fs::read_to_string(&spec).unwrap();
    let with = |samples: &str| {
        fs::write(
            &spec,
            base.replace(
                "    framework: scikit-learn\n",
                &format!("    framework: scikit-learn\n    samples: {samples}\n"),
            ),
        )
        .unwrap();
    };
    // a samples path that leaves the project: a spec error with its position
    with("../outside.json");
    let err = fails(mlart().args(["validate", "-f"]).arg(&spec), 2);
    assert!(
        err.contains("mlart.yaml:10:") && err.contains("samples:"),
        "{err}"
    );
    // a samples file that is not one
    fs::write(p.path().join("bad.json"), b"{\"inputs\": {\"input\": 3}}").unwrap();
    with("bad.json");
    let err = fails(mlart().args(["validate", "-f"]).arg(&spec), 2);
    assert!(
        err.contains("bad.json") && err.contains("inputs.input is not an array"),
        "{err}"
    );
    for (body, needle) in [
        ("not json", "invalid JSON"),
        ("[]", "not a JSON object"),
        ("{\"inputs\": {}}", "`inputs` is empty"),
        (
            "{\"inputs\": {\"a\": [1]}, \"extra\": 1}",
            "unknown key \"extra\"",
        ),
    ] {
        let f = p.path().join("s.json");
        fs::write(&f, body).unwrap();
        let err = fails(
            mlart()
                .args(["validate", "-f"])
                .arg(&spec)
                .arg("--samples")
                .arg(&f),
            2,
        );
        assert!(
            err.contains(needle) && err.contains("s.json"),
            "{needle}: {err}"
        );
    }
    let err = fails(
        mlart()
            .args(["validate", "--samples", "/nonexistent.json", "-f"])
            .arg(&spec),
        2,
    );
    assert!(err.contains("does not exist"), "{err}");
    // usage errors
    for (args, needle) in [
        (vec!["--tolerance=-1"], "--tolerance"),
        (vec!["--tolerance=NaN"], "--tolerance"),
        (vec!["--batch-sizes", "0"], "--batch-sizes"),
        (vec!["--runs", "1000000"], "--runs"),
    ] {
        let err = fails(mlart().arg("validate").args(&args).arg("-f").arg(&spec), 2);
        assert!(err.contains(needle), "{err}");
    }
    let err = fails(
        mlart()
            .arg("validate")
            .arg(fixtures().join("zipmap.onnx"))
            .arg("--schema")
            .arg(example().join("README.md")),
        2,
    );
    assert!(
        err.contains("--schema") || err.contains("not a feature schema"),
        "{err}"
    );

    let Some(lib) = ort_lib("samples_in_the_spec_and_bad_samples_files") else {
        return;
    };
    with("samples/samples.json");
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0", "-f"])
            .arg(&spec),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["samples"], serde_json::json!(["samples/samples.json"]));
    assert_eq!(check(&r["models"][0], "samples")["passed"], true);
    // samples for other inputs fail the check, naming both sides
    fs::write(
        p.path().join("other.json"),
        b"{\"inputs\": {\"x\": [[1, 2, 3, 4]]}}",
    )
    .unwrap();
    with("other.json");
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0", "-f"])
            .arg(&spec),
    );
    assert_eq!(code, 1);
    let m = check(&r["models"][0], "samples")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("inputs [x]") && m.contains("[input]"), "{m}");
    // a report file, written whole
    let rep = p.path().join("out/report.json");
    fs::create_dir_all(rep.parent().unwrap()).unwrap();
    with("samples/samples.json");
    let out = run(mlart_ort(&lib)
        .args(["validate", "--runs", "0", "--report"])
        .arg(&rep)
        .arg("-f")
        .arg(&spec));
    assert!(out.status.success());
    let saved: Value = serde_json::from_slice(&fs::read(&rep).unwrap()).unwrap();
    assert_eq!(saved["passed"], true);
}

fn bundle_digest(c: &mut Command) -> String {
    json_ok(c)["manifest_digest"].as_str().unwrap().to_string()
}

#[test]
fn bundle_validate_stores_a_reproducible_report() {
    let Some(lib) = ort_lib("bundle_validate_stores_a_reproducible_report") else {
        return;
    };
    let p = example_copy();
    let spec = p.path().join("mlart.yaml");
    let t = tempfile::tempdir().unwrap();
    let build = |name: &str, validate: bool| {
        let out = t.path().join(name);
        let mut c = mlart_ort(&lib);
        c.arg("bundle").arg("-f").arg(&spec).arg("-o").arg(&out);
        if validate {
            c.arg("--validate");
        }
        (out.clone(), bundle_digest(&mut c))
    };
    let (a, da) = build("a.oci", true);
    let (_, db) = build("b.oci", true);
    assert_eq!(da, db, "bundle --validate must be reproducible");
    let (plain, dp) = build("plain.oci", false);
    assert_ne!(da, dp);
    let meta = json_ok(mlart().arg("inspect").arg(&a))["metadata"].clone();
    let v = &meta["validation"];
    assert_eq!(v["format"], "mlart.validation.v1");
    assert_eq!(v["passed"], true);
    assert_eq!(v["settings"]["timings"], false);
    assert!(v["runtime"].get("library").is_none(), "{v}");
    assert!(v["models"][0].get("latency").is_none(), "{v}");
    let io = &meta["models"][0]["io"];
    assert_eq!(io["inputs"][0]["name"], "input");
    assert_eq!(io["outputs"][1]["shape"], serde_json::json!([null, 3]));
    assert_eq!(io["opset"]["ai.onnx"], 17);
    assert_eq!(io["ir_version"], 8);
    let f = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "eval/validation.json")
        .expect("eval/validation.json in the bundle");
    assert_eq!(f["kind"], "eval");
    // without --validate: no report, no io, no file
    let meta = json_ok(mlart().arg("inspect").arg(&plain))["metadata"].clone();
    assert!(meta.get("validation").is_none());
    assert!(meta["models"][0].get("io").is_none());
    assert!(!meta.to_string().contains("validation.json"));
    // the stored report is the file in the bundle, byte for byte what the metadata holds
    let pulled = t.path().join("pulled");
    json_ok(
        mlart()
            .arg("pull")
            .arg(&a)
            .arg("-o")
            .arg(&pulled)
            .args(["--path", "eval/validation.json"]),
    );
    let file: Value =
        serde_json::from_slice(&fs::read(pulled.join("eval/validation.json")).unwrap()).unwrap();
    let meta = json_ok(mlart().arg("inspect").arg(&a))["metadata"].clone();
    assert_eq!(file, meta["validation"]);
    // the human output says it validated
    let out = run(mlart_ort(&lib)
        .arg("bundle")
        .arg("-f")
        .arg(&spec)
        .arg("-o")
        .arg(t.path().join("c.oci"))
        .arg("--validate"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("validated: 1 ONNX model(s) passed"));
}

#[test]
fn bundle_validate_refuses_failing_models_and_clashes() {
    let t = tempfile::tempdir().unwrap();
    // a project file where the report goes
    let p = example_copy();
    let spec = p.path().join("mlart.yaml");
    let text = fs::read_to_string(&spec).unwrap();
    fs::write(
        &spec,
        text.replace(
            "  - eval/metrics.json\n",
            "  - eval/metrics.json\n  - eval/validation.json\n",
        ),
    )
    .unwrap();
    fs::write(p.path().join("eval/validation.json"), b"{}").unwrap();
    let err = fails(
        mlart_ort(Path::new("/nonexistent"))
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(t.path().join("x.oci"))
            .arg("--validate"),
        2,
    );
    assert!(
        err.contains("eval/validation.json") && err.contains("clash"),
        "{err}"
    );
    assert!(!t.path().join("x.oci").exists());
    // no runtime: an input error, nothing written
    fs::write(&spec, &text).unwrap();
    fs::remove_file(p.path().join("eval/validation.json")).unwrap();
    let err = fails(
        mlart_ort(Path::new("/nonexistent"))
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(t.path().join("x.oci"))
            .arg("--validate"),
        2,
    );
    assert!(err.contains("pip install onnxruntime"), "{err}");
    assert!(!t.path().join("x.oci").exists());

    let Some(lib) = ort_lib("bundle_validate_refuses_failing_models_and_clashes") else {
        return;
    };
    // a model with NaN outputs: exit 1, no output, no leftovers
    fs::copy(
        fixtures().join("nan.onnx"),
        p.path().join("model/iris.onnx"),
    )
    .unwrap();
    fs::copy(
        fixtures().join("nan.yaml"),
        p.path().join("schema/features.yaml"),
    )
    .unwrap();
    let out_dir = t.path().join("out");
    let err = fails(
        mlart_ort(&lib)
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(out_dir.join("nan.oci"))
            .arg("--validate"),
        1,
    );
    assert!(
        err.contains("validation failed, nothing was bundled")
            && err.contains("model/iris.onnx: finite"),
        "{err}"
    );
    assert!(!out_dir.join("nan.oci").exists());
    assert!(leftovers(&out_dir).is_empty());
    // without --validate the same project bundles (validation is opt-in)
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(out_dir.join("nan.oci")),
    );
}

#[test]
fn validate_a_bundle_layout_archive_and_registry() {
    let Some(lib) = ort_lib("validate_a_bundle_layout_archive_and_registry") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("iris.oci");
    let archive = t.path().join("iris.tar");
    let spec = example().join("mlart.yaml");
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&layout),
    );
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&archive),
    );
    let samples = example().join("samples/samples.json");
    for target in [layout.clone(), archive.clone()] {
        let (code, r) = run_json(
            mlart_ort(&lib)
                .args(["validate", "--runs", "0"])
                .arg(&target)
                .arg("--samples")
                .arg(&samples),
        );
        assert_eq!(code, 0, "{r}");
        assert_eq!(r["schema"], "schema/features.yaml", "the bundle's schema");
        assert_eq!(r["models"][0]["path"], "model/iris.onnx");
        assert_eq!(check(&r["models"][0], "samples")["passed"], true);
    }
    // an artifact-form bundle too
    let art = t.path().join("art.oci");
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&art)
            .args(["--format", "artifact"]),
    );
    let (code, r) = run_json(mlart_ort(&lib).args(["validate", "--runs", "0"]).arg(&art));
    assert_eq!(code, 0, "{r}");
    // a schema given on the command line wins over the bundle's
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0"])
            .arg(&layout)
            .arg("--schema")
            .arg(fixtures().join("zipmap.yaml")),
    );
    assert_eq!(code, 1, "{r}");
    // not a bundle: a clear input error
    let err = fails(
        mlart_ort(&lib)
            .arg("validate")
            .arg(t.path().join("nothing.oci")),
        2,
    );
    assert!(
        err.contains("does not exist") && err.contains("registry REF"),
        "{err}"
    );
    let err = fails(mlart_ort(&lib).arg("validate").arg("missing.onnx"), 2);
    assert!(err.contains("missing.onnx does not exist"), "{err}");

    let Some(reg) = Registry::start("validate_a_bundle_layout_archive_and_registry") else {
        return;
    };
    let r = reg.reference("ml/iris:1.0.0");
    json_ok(mlart().arg("push").arg(&layout).arg(&r));
    let cache = t.path().join("cache");
    let (code, v) = run_json(
        mlart_ort(&lib)
            .env("XDG_CACHE_HOME", &cache)
            .args(["validate", "--runs", "0"])
            .arg(&r),
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["models"][0]["passed"], true);
    // only the model layer was fetched into the cache (no docs, eval, logs, ... layers)
    let cached: Vec<_> = fs::read_dir(cache.join("mlart/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");

    // bundle --push --validate: the same bundle (digest) as bundle --validate to a layout
    let local = t.path().join("validated.oci");
    let want = json_ok(
        mlart_ort(&lib)
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&local)
            .arg("--validate"),
    );
    assert_eq!(want["validation"]["passed"], 1, "{want}");
    let r2 = reg.reference("ml/iris:validated");
    let pushed = json_ok(
        mlart_ort(&lib)
            .arg("bundle")
            .arg("-f")
            .arg(&spec)
            .arg("--push")
            .arg(&r2)
            .arg("--validate"),
    );
    assert_eq!(pushed["digest"], want["manifest_digest"], "{pushed}");
    let meta = json_ok(mlart().arg("inspect").arg(&r2))["metadata"].clone();
    assert_eq!(meta["validation"]["passed"], true);
}

/// A model with its weights in an external data file: validated in the project and from a
/// bundle (every model file is fetched, not only the .onnx).
#[test]
fn external_data_travels_with_the_model() {
    let Some(lib) = ort_lib("external_data_travels_with_the_model") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("proj");
    fs::create_dir_all(p.join("model")).unwrap();
    for f in ["external.onnx", "external.onnx.data"] {
        fs::copy(fixtures().join(f), p.join("model").join(f)).unwrap();
    }
    fs::write(
        p.join("mlart.yaml"),
        "name: ext\nversion: '1'\nmodel:\n  - model/external.onnx\n  - {path: model/external.onnx.data, format: other}\n",
    )
    .unwrap();
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0", "-f"])
            .arg(p.join("mlart.yaml")),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["summary"]["passed"], 1);
    assert_eq!(r["summary"]["not_validated"], 1);
    let layout = t.path().join("ext.oci");
    json_ok(
        mlart()
            .arg("bundle")
            .arg("-f")
            .arg(p.join("mlart.yaml"))
            .arg("-o")
            .arg(&layout),
    );
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0"])
            .arg(&layout),
    );
    assert_eq!(code, 0, "{r}");
    let m = r["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"] == "model/external.onnx")
        .unwrap();
    assert_eq!(check(m, "run[batch=7]")["passed"], true, "{m}");
}

/// The fixtures are what the committed script makes, byte for byte.
#[test]
fn fixtures_are_reproducible() {
    let sums = fs::read_to_string(fixtures().join("SHA256SUMS")).unwrap();
    let mut listed = 0;
    for line in sums.lines() {
        let (hex, name) = line.split_once("  ").unwrap();
        assert_eq!(sha256_file(&fixtures().join(name)), hex, "{name}");
        listed += 1;
    }
    assert_eq!(listed + 1, tree_digests(&fixtures()).len());
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(py)
        .arg(repo().join("scripts/make-onnx-fixtures.py"))
        .arg("--out")
        .arg(t.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree_digests(t.path()), tree_digests(&fixtures()));
}

/// The reshape fixture's folder (model.onnx and two ONNX Model Zoo test data sets) copied.
fn reshape_copy() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("reshape"), t.path(), false);
    t
}

/// Replace the last float32 of a TensorProto file written by numpy_helper (raw_data, field 9,
/// is the last field): returns the value it had.
fn set_last_float(pb: &Path, x: f32) -> f32 {
    let mut b = fs::read(pb).unwrap();
    let n = b.len();
    let old = f32::from_le_bytes(b[n - 4..].try_into().unwrap());
    b[n - 4..].copy_from_slice(&x.to_le_bytes());
    fs::write(pb, b).unwrap();
    old
}

/// A model only real data can run (its `shape` input must be a valid shape): the ONNX Model
/// Zoo test data sets beside it are its samples; without them it is not validated, and not a
/// failure either (#19 item 10).
#[test]
fn model_zoo_test_data_sets_are_samples() {
    let Some(lib) = ort_lib("model_zoo_test_data_sets_are_samples") else {
        return;
    };
    let (code, r) = validate_fixture(&lib, "reshape/model.onnx", &[]);
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(
        (m["validated"].clone(), m["passed"].clone()),
        (true.into(), true.into()),
        "{m}"
    );
    let samples = check(m, "samples")["message"].as_str().unwrap();
    assert!(
        samples
            .contains("2 test data set(s) ran (reshape/test_data_set_0, reshape/test_data_set_1)")
            && samples.contains("24 value(s) of y match"),
        "{samples}"
    );
    let run1 = check(m, "run[batch=1]");
    assert_eq!(run1["skipped"], true, "{run1}");
    assert!(
        run1["message"].as_str().unwrap().starts_with(
            "synthetic input not valid for this model (its samples ran): the runtime failed"
        ),
        "{run1}"
    );
    assert_eq!(
        r["samples"],
        serde_json::json!(["reshape/test_data_set_0", "reshape/test_data_set_1"])
    );
    assert_eq!(m["producer"], "mlart-fixtures");

    // only synthetic inputs: not validated, not failed, and it says what to do
    let alone = tempfile::tempdir().unwrap();
    fs::copy(
        fixtures().join("reshape/model.onnx"),
        alone.path().join("model.onnx"),
    )
    .unwrap();
    let (code, r) = validate_fixture(&lib, alone.path().join("model.onnx").to_str().unwrap(), &[]);
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(m["validated"], false, "{m}");
    assert!(m["passed"].is_null(), "{m}");
    assert!(
        m["reason"]
            .as_str()
            .unwrap()
            .starts_with("synthetic input not valid for this model; add samples"),
        "{m}"
    );
    assert_eq!(check(m, "run[batch=7]")["skipped"], true);
    assert_eq!(
        (
            r["summary"]["validated"].clone(),
            r["summary"]["not_validated"].clone()
        ),
        (0.into(), 1.into())
    );
    let out = run(mlart_ort(&lib)
        .arg("validate")
        .arg(alone.path().join("model.onnx"))
        .args(["--runs", "0"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.contains(
                "model.onnx: NOT VALIDATED (synthetic input not valid for this model; add samples"
            )
            && text.contains("1 ONNX model(s) NOT validated"),
        "{text}"
    );
    // a set given with --samples (one set folder)
    let (code, r) = validate_fixture(
        &lib,
        alone.path().join("model.onnx").to_str().unwrap(),
        &["--samples", "reshape/test_data_set_1"],
    );
    assert_eq!(code, 0, "{r}");
    assert!(
        check(&r["models"][0], "samples")["message"]
            .as_str()
            .unwrap()
            .contains("1 test data set(s) ran (reshape/test_data_set_1)"),
        "{r}"
    );
}

#[test]
fn test_data_outputs_are_compared_with_tolerance() {
    let Some(lib) = ort_lib("test_data_outputs_are_compared_with_tolerance") else {
        return;
    };
    let t = reshape_copy();
    let model = t.path().join("model.onnx");
    let out0 = t.path().join("test_data_set_0/output_0.pb");
    let was = set_last_float(&out0, 100.0);
    let (code, r) = validate_fixture(&lib, model.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{r}");
    let c = check(&r["models"][0], "samples");
    let msg = c["message"].as_str().unwrap();
    assert_eq!(c["passed"], false);
    assert!(
        msg.contains("test_data_set_0: output \"y\" (output_0.pb): 1 of 12 value(s) differ by more than 0.0001 (max difference")
            && msg.contains("at [2, 3]: ")
            && msg.contains("expected 100)")
            && !msg.contains("test_data_set_1"),
        "{msg}"
    );
    // a small difference: the tolerance (--tolerance, default 1e-4) decides
    set_last_float(&out0, was + 0.001);
    let (code, r) = validate_fixture(&lib, model.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{r}");
    let (code, r) = validate_fixture(&lib, model.to_str().unwrap(), &["--tolerance", "0.01"]);
    assert_eq!(code, 0, "{r}");
    assert!(check(&r["models"][0], "samples")["message"]
        .as_str()
        .unwrap()
        .contains("floats within 0.01"));
    assert_eq!(r["settings"]["tolerance"], 0.01);
}

/// Hostile .pb files fail the samples check with the file named; nothing crashes.
#[test]
fn hostile_test_data_files_are_named() {
    let Some(lib) = ort_lib("hostile_test_data_files_are_named") else {
        return;
    };
    let t = reshape_copy();
    let model = t.path().join("model.onnx");
    let set = t.path().join("test_data_set_0");
    let good = fs::read(set.join("input_1.pb")).unwrap();
    let output = fs::read(set.join("output_0.pb")).unwrap();
    let mut huge = vec![
        0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
        0x01, 0x10, 0x01,
    ];
    huge.extend([0x4a, 0x04, 0, 0, 0, 0]); // raw_data: 4 bytes
    for (bytes, want) in [
        (
            good[..good.len() - 5].to_vec(),
            "input_1.pb: not an ONNX TensorProto",
        ),
        (
            b"\xff\xff\xff\xff\xff".to_vec(),
            "input_1.pb: not an ONNX TensorProto",
        ),
        (huge, "more than mlart's limit"),
        (vec![], "input_1.pb: data_type is 0 (UNDEFINED)"),
        // float32 [3, 4] (named y: bound by position) where the model takes int64 [2]
        (
            output.clone(),
            "input_1.pb holds float32, the model's input \"shape\" is tensor(int64)[2]",
        ),
    ] {
        fs::write(set.join("input_1.pb"), &bytes).unwrap();
        let (code, r) = validate_fixture(&lib, model.to_str().unwrap(), &[]);
        assert_eq!(code, 1, "{want}: {r}");
        let msg = check(&r["models"][0], "samples")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            msg.contains("test_data_set_0: ") && msg.contains(want),
            "{want}: {msg}"
        );
    }
    // raw_data shorter than the dims say
    fs::write(set.join("input_1.pb"), &good).unwrap();
    let mut short = output.clone();
    short.truncate(output.len() - 4);
    assert_eq!(short[10], 48, "raw_data's length byte");
    short[10] = 44;
    fs::write(set.join("output_0.pb"), &short).unwrap();
    let (code, r) = validate_fixture(&lib, model.to_str().unwrap(), &[]);
    assert_eq!(code, 1, "{r}");
    let msg = check(&r["models"][0], "samples")["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("output_0.pb: raw_data holds 44 bytes, and dims [3, 4] of float32 need 48"),
        "{msg}"
    );
}

/// `init` keeps the test data sets with the model (eval), `bundle` carries them, and
/// `validate BUNDLE` runs them: fetched with the model, nothing else.
#[test]
fn validate_bundle_uses_its_test_data() {
    let Some(lib) = ort_lib("validate_bundle_uses_its_test_data") else {
        return;
    };
    let t = reshape_copy();
    let init = json_ok(
        mlart()
            .arg("init")
            .arg(t.path())
            .args(["--name", "reshape"]),
    );
    assert_eq!(
        init["sections"]["model"],
        serde_json::json!(["model.onnx"]),
        "{init}"
    );
    assert_eq!(
        init["sections"]["eval"],
        serde_json::json!(["test_data_set_0/", "test_data_set_1/"]),
        "{init}"
    );
    let layout = t.path().join("build/reshape.oci");
    let b = json_ok(
        mlart_ort(&lib)
            .current_dir(t.path())
            .arg("bundle")
            .arg("-o")
            .arg(&layout)
            .arg("--validate"),
    );
    assert!(
        b["warnings"]
            .as_array()
            .map(|w| w.is_empty())
            .unwrap_or(true),
        "no metrics warnings for .pb: {b}"
    );
    let meta = json_ok(mlart().arg("inspect").arg(&layout))["metadata"].clone();
    assert_eq!(
        meta["validation"]["samples"],
        serde_json::json!(["test_data_set_0", "test_data_set_1"]),
        "{meta}"
    );
    assert_eq!(meta["validation"]["models"][0]["passed"], true);
    let kinds: Vec<(String, String)> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("test_data_set_1/output_0.pb".into(), "eval".into())),
        "{kinds:?}"
    );
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0"])
            .arg(&layout),
    );
    assert_eq!(code, 0, "{r}");
    let m = &r["models"][0];
    assert_eq!(m["passed"], true, "{m}");
    assert!(
        check(m, "samples")["message"]
            .as_str()
            .unwrap()
            .contains("2 test data set(s) ran (test_data_set_0, test_data_set_1)"),
        "{m}"
    );
}

/// A model entry's `samples:` reaches the bundle (the file, and `models[].samples` in
/// mlart.json), and `validate BUNDLE` (layout, archive, registry REF) runs them as `validate`
/// of the project does: wrong expected outputs fail both, with exit 1.
#[test]
fn samples_of_the_spec_travel_with_the_bundle() {
    use crate::support::fixtures::iris_with_samples;
    let t = tempfile::tempdir().unwrap();
    let bundle = |spec: &Path, out: &Path| {
        json_ok(mlart().arg("bundle").arg("-f").arg(spec).arg("-o").arg(out));
    };
    let good = iris_with_samples(&t.path().join("good"), false);
    let layout = t.path().join("good.oci");
    bundle(&good, &layout);
    let meta = json_ok(mlart().arg("inspect").arg(&layout))["metadata"].clone();
    assert_eq!(
        meta["models"][0]["samples"], "samples/samples.json",
        "{meta}"
    );
    // Samples no entry lists: bundled all the same, as eval (never a metrics report).
    let text = fs::read_to_string(&good).unwrap();
    let unlisted = text.replace("data:\n  - samples/samples.json\n", "");
    assert_ne!(unlisted, text);
    fs::write(&good, &unlisted).unwrap();
    let only = t.path().join("unlisted.oci");
    bundle(&good, &only);
    let meta = json_ok(mlart().arg("inspect").arg(&only))["metadata"].clone();
    let f = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "samples/samples.json")
        .unwrap_or_else(|| panic!("the samples are not in the bundle: {meta}"));
    assert_eq!(f["kind"], "eval", "{f}");
    assert_eq!(meta["models"][0]["samples"], "samples/samples.json");
    assert!(
        !meta["metric_sources"]
            .to_string()
            .contains("samples/samples.json"),
        "{meta}"
    );
    // Samples on an entry of more than one model file, or samples that are not there: a
    // spec error at bundle time, naming the field.
    for (from, to, needle) in [
        (
            "  - path: model/iris.onnx\n",
            "  - path: model/\n",
            "`samples` applies to one model file",
        ),
        (
            "samples: samples/samples.json",
            "samples: samples/nothing.json",
            "samples: \"samples/nothing.json\" does not exist",
        ),
    ] {
        fs::write(&good, unlisted.replace(from, to)).unwrap();
        let err = fails(
            mlart()
                .arg("bundle")
                .arg("-f")
                .arg(&good)
                .arg("-o")
                .arg(t.path().join("x.oci")),
            2,
        );
        assert!(err.contains("mlart.yaml:") && err.contains(needle), "{err}");
    }

    let Some(lib) = ort_lib("samples_of_the_spec_travel_with_the_bundle") else {
        return;
    };
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0"])
            .arg(&layout),
    );
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["samples"], serde_json::json!(["samples/samples.json"]));
    assert_eq!(check(&r["models"][0], "samples")["passed"], true, "{r}");

    // Wrong expected outputs: the project fails, and so does its bundle, in every store.
    let bad = iris_with_samples(&t.path().join("bad"), true);
    let (code, r) = run_json(
        mlart_ort(&lib)
            .args(["validate", "--runs", "0", "-f"])
            .arg(&bad),
    );
    assert_eq!(code, 1, "{r}");
    let want = message(&r["models"][0], "samples").to_string();
    assert!(want.contains("differ"), "{want}");
    let bad_layout = t.path().join("bad.oci");
    let bad_archive = t.path().join("bad.tar");
    bundle(&bad, &bad_layout);
    bundle(&bad, &bad_archive);
    let failed = |target: &std::ffi::OsStr, c: &mut Command| {
        let (code, r) = run_json(c.args(["validate", "--runs", "0"]).arg(target));
        assert_eq!(code, 1, "{target:?}: {r}");
        assert_eq!(r["passed"], false, "{r}");
        assert_eq!(message(&r["models"][0], "samples"), want, "{target:?}");
    };
    failed(bad_layout.as_os_str(), &mut mlart_ort(&lib));
    failed(bad_archive.as_os_str(), &mut mlart_ort(&lib));

    let Some(reg) = Registry::start("samples_of_the_spec_travel_with_the_bundle") else {
        return;
    };
    let r = reg.reference("ml/iris:bad-samples");
    json_ok(mlart().arg("push").arg(&bad_layout).arg(&r));
    let cache = t.path().join("cache");
    failed(
        std::ffi::OsStr::new(&r),
        mlart_ort(&lib).env("XDG_CACHE_HOME", &cache),
    );
}
