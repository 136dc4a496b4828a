//! Registry references and bundle locations (`oci:DIR:TAG`, `oci-archive:FILE:TAG`, REF):
//! parsed or refused, and a parsed reference prints back to one that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mlart::format::reference as r;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = r::parse_location(s);
    let _ = r::local_form(s);
    let _ = r::is_loopback(s);
    let _ = r::credential_key(s);
    if let Ok((reference, _)) = r::parse_reference(s) {
        let again = reference.to_string();
        let (back, _) = r::parse_reference(&again)
            .unwrap_or_else(|e| panic!("{s:?} parsed to {again:?}, which does not parse: {e}"));
        assert_eq!(back.to_string(), again, "{s:?}");
    }
});
