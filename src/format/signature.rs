//! The signature documents: OpenSSF model signing (`model.sig`) and cosign-v3 OCI referrers.

use crate::format::digest::Digest;

pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

pub const INTOTO_STATEMENT: &str = "https://in-toto.io/Statement/v1";

pub const OMS_PREDICATE: &str = "https://model_signing/signature/v1.0";

pub const COSIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

pub const OMS_FILE: &str = "model.sig";

/// Largest `model.sig` read back (it lists every file: about 170 bytes each, so some 390,000
/// files); a larger one is refused with that said, never cut short.
pub const MAX_OMS_BYTES: u64 = 64 << 20;

/// Paths model_signing ignores by default, plus the signature itself.
pub const OMS_IGNORE: &[&str] = &[".git", ".gitattributes", ".github", ".gitignore", OMS_FILE];

/// The signature referrer for a manifest: (config bytes, bundle bytes, manifest bytes).
#[derive(Debug, Clone)]
pub struct OciSignature {
    pub config: Vec<u8>,
    pub bundle: Vec<u8>,
    pub manifest: Vec<u8>,
    pub digest: Digest,
}
