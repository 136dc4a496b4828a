//! DSSE envelopes of in-toto statements, in Sigstore bundles v0.3 (as cosign v3 stores its
//! signatures and model_signing its `model.sig`).

use super::keys::{key_hint, PrivateKey, PublicKey};
use crate::format::media_type::BUNDLE_MEDIA_TYPE;
use crate::format::signature::{INTOTO_PAYLOAD_TYPE, INTOTO_STATEMENT};
use base64::Engine as _;
use p256::ecdsa::{signature::Signer as _, signature::Verifier as _, DerSignature};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn pae(payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        INTOTO_PAYLOAD_TYPE.len(),
        INTOTO_PAYLOAD_TYPE,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

/// Sign an in-toto statement: a Sigstore bundle v0.3 with a DSSE envelope (deterministic:
/// RFC 6979 nonces, so the same key and statement give the same bytes).
pub fn sign_statement(key: &PrivateKey, statement: &Value) -> Vec<u8> {
    let payload = crate::format::json::to_canonical_bytes(statement);
    let sig: DerSignature = key.key.sign(&pae(&payload));
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(&key.public())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": B64.encode(&payload),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(sig.as_bytes()), "keyid": ""}],
        },
    });
    crate::format::json::to_canonical_pretty(&bundle)
}

/// Check a Sigstore bundle's DSSE signature against `keys`; the statement and the key that
/// verified it. `Err` says why none did.
pub fn verify_bundle<'k>(
    bundle: &[u8],
    keys: &'k [PublicKey],
) -> std::result::Result<(Value, &'k PublicKey), String> {
    let b: Value = serde_json::from_slice(bundle)
        .map_err(|e| format!("not a Sigstore bundle (invalid JSON: {e})"))?;
    if b["mediaType"] != BUNDLE_MEDIA_TYPE {
        return Err(format!(
            "not a Sigstore bundle v0.3 (mediaType {})",
            b["mediaType"]
        ));
    }
    let env = &b["dsseEnvelope"];
    if env["payloadType"] != INTOTO_PAYLOAD_TYPE {
        return Err(format!(
            "unexpected DSSE payloadType {}",
            env["payloadType"]
        ));
    }
    let payload = env["payload"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .ok_or("the DSSE payload is not base64")?;
    let sigs = env["signatures"]
        .as_array()
        .ok_or("the DSSE envelope has no signatures")?;
    let msg = pae(&payload);
    let hint = b["verificationMaterial"]["publicKey"]["hint"].as_str();
    for s in sigs {
        let Some(raw) = s["sig"].as_str().and_then(|x| B64.decode(x).ok()) else {
            continue;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_der(&raw) else {
            continue;
        };
        for k in keys {
            if hint.is_some_and(|h| h != k.hint) {
                continue;
            }
            if k.key.verify(&msg, &sig).is_ok() {
                let statement: Value = serde_json::from_slice(&payload)
                    .map_err(|e| format!("the signed payload is not JSON: {e}"))?;
                if statement["_type"] != INTOTO_STATEMENT {
                    return Err(format!(
                        "the signed payload is not an in-toto statement v1 ({})",
                        statement["_type"]
                    ));
                }
                return Ok((statement, k));
            }
        }
    }
    Err(match hint {
        Some(h) if !keys.iter().any(|k| k.hint == h) => {
            format!("{OTHER_KEY} (hint {h}), not by any key given")
        }
        _ => "the signature does not verify with any key given".into(),
    })
}

/// How `verify_bundle`'s error starts when the signature was made by a key not given.
pub const OTHER_KEY: &str = "signed by another key";

/// The in-toto statement of a Sigstore bundle, signature NOT checked (`verify` without a
/// key compares the files with what model.sig lists, and says no signature was checked).
pub fn unverified_statement(bundle: &[u8]) -> std::result::Result<Value, String> {
    let b: Value = serde_json::from_slice(bundle).map_err(|e| format!("invalid JSON: {e}"))?;
    let payload = b["dsseEnvelope"]["payload"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .ok_or("the DSSE payload is not base64")?;
    serde_json::from_slice(&payload).map_err(|e| format!("the payload is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys::tests::keypair;
    use crate::sign::oms::{oms_resources, oms_statement};

    #[test]
    fn dsse_round_trip_and_tamper() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let st = oms_statement(
            "m",
            &[
                ("b/x".into(), "00".repeat(32)),
                ("a.txt".into(), "11".repeat(32)),
            ],
        );
        let b = sign_statement(&k, &st);
        assert_eq!(b, sign_statement(&k, &st), "deterministic");
        let (got, _) = verify_bundle(&b, std::slice::from_ref(&p)).unwrap();
        assert_eq!(oms_resources(&got).unwrap().len(), 2);
        // another key
        let d2 = tempfile::tempdir().unwrap();
        let (_, other) = keypair(d2.path());
        assert!(verify_bundle(&b, &[other])
            .unwrap_err()
            .contains("another key"));
        // a changed payload
        let mut v: Value = serde_json::from_slice(&b).unwrap();
        let payload = B64
            .decode(v["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let tampered = String::from_utf8(payload)
            .unwrap()
            .replace(&"11".repeat(32), &"22".repeat(32));
        v["dsseEnvelope"]["payload"] = B64.encode(tampered).into();
        assert!(verify_bundle(&serde_json::to_vec(&v).unwrap(), &[p]).is_err());
    }
}
