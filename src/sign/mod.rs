//! Signing: ECDSA P-256 keys (RustCrypto), DSSE envelopes in Sigstore bundles v0.3, the
//! OpenSSF Model Signing v1.0 (OMS) `model.sig` over a bundle's files, and cosign-style OCI
//! signatures (a referrer manifest whose one layer is the bundle).

mod dsse;
mod envelope;
mod keys;
mod oci;
mod oms;

pub use dsse::{
    other_signer, pae_header, sign_attestation, sign_statement, sign_streamed,
    sign_streamed_attestation, unverified_statement, verify_bundle, OTHER_KEY,
};
pub use envelope::{open_streamed, Payload, MAX_REST};
pub use keys::{key_hint, key_id, keygen, load_private, load_public, PrivateKey, PublicKey};
pub use oci::{check_oci_statement, oci_signature};
pub use oms::{
    check_dir, check_dir_unsigned, oms_resources, oms_resources_each, oms_resources_sorted,
    oms_statement, verify_dir, Listed,
};
