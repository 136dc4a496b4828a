//! mlart.yaml: any text parses to a spec or an error with a position, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = mlart::spec::parse(std::path::Path::new("fuzz/mlart.yaml"), text);
    }
});
