//! Signature documents: Sigstore bundles with DSSE envelopes (OCI signatures, model.sig,
//! attestations) checked against a key, and PEM keys: refused or accepted, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Keys {
    _dir: tempfile::TempDir,
    public: Vec<mlart::sign::PublicKey>,
    scratch: std::path::PathBuf,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        // an encrypted PEM input is decrypted with this, never prompted for
        std::env::set_var("MLART_KEY_PASSWORD", "fuzz");
        let dir = tempfile::tempdir().unwrap();
        let (_, p) = mlart::sign::keygen(&dir.path().join("k")).unwrap();
        let public = vec![mlart::sign::load_public(&p).unwrap()];
        let scratch = dir.path().join("input.pem");
        Keys {
            _dir: dir,
            public,
            scratch,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    if let Ok((statement, _)) = mlart::sign::verify_bundle(data, &k.public) {
        let d = mlart::format::digest::Digest::of(b"subject");
        let _ = mlart::sign::check_oci_statement(&statement, &d);
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let d = mlart::format::digest::Digest::of(b"subject");
        let _ = mlart::sign::check_oci_statement(&v, &d);
        let _ = mlart::attest::provenance::summarize(&v);
        let _ = mlart::attest::mlbom::summarize(&v);
    }
    std::fs::write(&k.scratch, data).unwrap();
    let _ = mlart::sign::load_public(&k.scratch);
    let _ = mlart::sign::load_private(&k.scratch);
});
