//! Cosign-style OCI signatures: a referrer manifest whose one layer is a Sigstore bundle over
//! the bundle's manifest (cosign v3's layout).

use super::dsse::sign_statement;
use super::keys::PrivateKey;
use crate::format::digest::Digest;
use crate::format::media_type::{BUNDLE_MEDIA_TYPE, EMPTY_CONFIG_MEDIA_TYPE};
use crate::format::signature::{OciSignature, COSIGN_PREDICATE, INTOTO_STATEMENT};
use serde_json::{json, Value};

pub fn oci_signature(
    key: &PrivateKey,
    name: &str,
    subject_media_type: &str,
    subject: &Digest,
    subject_size: u64,
) -> OciSignature {
    let statement = json!({
        "_type": INTOTO_STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": subject.hex()}}],
        "predicateType": COSIGN_PREDICATE,
        "predicate": {},
    });
    let bundle = sign_statement(key, &statement);
    let config = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": crate::format::media_type::MANIFEST_MEDIA_TYPE,
        "artifactType": BUNDLE_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": Digest::of(&config).as_str(), "size": config.len()},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": Digest::of(&bundle).as_str(), "size": bundle.len()}],
        "subject": {"mediaType": subject_media_type, "digest": subject.as_str(), "size": subject_size},
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": COSIGN_PREDICATE,
        },
    });
    let manifest = crate::format::json::to_canonical_bytes(&manifest);
    OciSignature {
        digest: Digest::of(&manifest),
        config,
        bundle,
        manifest,
    }
}

/// Check an OCI signature bundle is a cosign statement over `subject`.
pub fn check_oci_statement(statement: &Value, subject: &Digest) -> std::result::Result<(), String> {
    if statement["predicateType"] != COSIGN_PREDICATE {
        return Err(format!(
            "predicateType {} is not {COSIGN_PREDICATE}",
            statement["predicateType"]
        ));
    }
    let subjects = statement["subject"].as_array().ok_or("no subject")?;
    if !subjects
        .iter()
        .any(|s| s["digest"]["sha256"] == subject.hex())
    {
        return Err(format!("it signs another manifest, not {subject}"));
    }
    Ok(())
}
