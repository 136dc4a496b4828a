//! Metrics read from evaluation reports (JSON, Python-style JSON, CSV, YAML): never a panic,
//! never a non-finite value kept silently.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in [
        "eval/metrics.json",
        "eval/metrics.csv",
        "eval/metrics.yaml",
        "eval/m.txt",
    ] {
        let _ = mlart::build::metrics::parse(name, data);
    }
});
