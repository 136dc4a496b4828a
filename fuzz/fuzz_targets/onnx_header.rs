//! The ONNX header reader (opsets, IR version, producer) on any bytes: an answer or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ =
        mlart::check::validate::onnx_header::scan(std::io::Cursor::new(data), data.len() as u64);
});
