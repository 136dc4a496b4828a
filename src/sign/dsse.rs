//! DSSE envelopes of in-toto statements, in Sigstore bundles v0.3 (as cosign v3 stores its
//! signatures and model_signing its `model.sig`).

use super::keys::{key_hint, key_id, PrivateKey, PublicKey};
use crate::format::media_type::BUNDLE_MEDIA_TYPE;
use crate::format::signature::{INTOTO_PAYLOAD_TYPE, INTOTO_STATEMENT};
use base64::Engine as _;
use p256::ecdsa::{signature::Signer as _, DerSignature};
use serde_json::{json, Value};
use sha2::Digest as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What DSSE's pre-authentication encoding puts before a payload of `len` bytes.
pub fn pae_header(len: u64) -> String {
    format!(
        "DSSEv1 {} {} {len} ",
        INTOTO_PAYLOAD_TYPE.len(),
        INTOTO_PAYLOAD_TYPE,
    )
}

fn pae(payload: &[u8]) -> Vec<u8> {
    let mut v = pae_header(payload.len() as u64).into_bytes();
    v.extend_from_slice(payload);
    v
}

/// Sign an in-toto statement: a Sigstore bundle v0.3 with a DSSE envelope (deterministic:
/// RFC 6979 nonces, so the same key and statement give the same bytes). The DSSE keyid is
/// empty, as model_signing writes `model.sig` (and as mlart's OCI signatures always were).
pub fn sign_statement(key: &PrivateKey, statement: &Value) -> Vec<u8> {
    seal(key, statement, "")
}

/// Sign an attestation's statement: as `sign_statement`, with the DSSE signature's keyid the
/// signing key's `key_id` (the id a DSSE verifier such as securesystemslib finds the key by).
pub fn sign_attestation(key: &PrivateKey, statement: &Value) -> Vec<u8> {
    seal(key, statement, &key_id(&key.public()))
}

fn seal(key: &PrivateKey, statement: &Value, keyid: &str) -> Vec<u8> {
    let payload = crate::format::json::to_canonical_bytes(statement);
    let sig: DerSignature = key.key.sign(&pae(&payload));
    bundle_bytes(key, &B64.encode(&payload), &sig, keyid)
}

/// The Sigstore bundle of one DSSE signature, the payload given as its base64.
fn bundle_bytes(key: &PrivateKey, payload_b64: &str, sig: &DerSignature, keyid: &str) -> Vec<u8> {
    let bundle = json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(&key.public())}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": payload_b64,
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(sig.as_bytes()), "keyid": keyid}],
        },
    });
    crate::format::json::to_canonical_pretty(&bundle)
}

/// `sign_statement` for a statement too big to hold: `pae_sha256` is the sha256 of the
/// payload's pre-authentication encoding (`pae_header`, then the payload: the canonical
/// compact JSON of the statement). The bundle's bytes before and after the payload's base64,
/// which goes between them: the same bytes as `sign_statement`'s (RFC 6979: the same
/// signature).
pub fn sign_streamed(
    key: &PrivateKey,
    pae_sha256: &[u8; 32],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    seal_streamed(key, pae_sha256, "")
}

/// `sign_attestation` for a statement too big to hold, as `sign_streamed` is for
/// `sign_statement`: the signature's keyid is the key's `key_id`.
pub fn sign_streamed_attestation(
    key: &PrivateKey,
    pae_sha256: &[u8; 32],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    seal_streamed(key, pae_sha256, &key_id(&key.public()))
}

fn seal_streamed(
    key: &PrivateKey,
    pae_sha256: &[u8; 32],
    keyid: &str,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    use p256::ecdsa::signature::hazmat::PrehashSigner as _;
    const HOLE: &str = "@mlart-payload@";
    let sig: DerSignature = key
        .key
        .sign_prehash(pae_sha256)
        .map_err(|e| format!("signing: {e}"))?;
    let mut before = bundle_bytes(key, HOLE, &sig, keyid);
    let quoted = format!("\"{HOLE}\"");
    let at = before
        .windows(quoted.len())
        .position(|w| w == quoted.as_bytes())
        .ok_or("the bundle has no place for its payload")?;
    let after = before.split_off(at + quoted.len() - 1);
    before.truncate(at + 1);
    Ok((before, after))
}

/// Check a Sigstore bundle's DSSE signature against `keys`; the statement and the key that
/// verified it. `Err` says why none did. Every key is tried; the unsigned names of the key (the
/// bundle's `publicKey.hint`, a signature's DSSE `keyid`) must then be the verifying key's when
/// given: one changed after signing is said to be, not reported as another key's signature.
/// An empty keyid (model.sig, OCI signatures, attestations made before keyids) names no key.
pub fn verify_bundle<'k>(
    bundle: &[u8],
    keys: &'k [PublicKey],
) -> std::result::Result<(Value, &'k PublicKey), String> {
    let b: Value = serde_json::from_slice(bundle)
        .map_err(|e| format!("not a Sigstore bundle (invalid JSON: {e})"))?;
    check_header(&b)?;
    let payload = b["dsseEnvelope"]["payload"]
        .as_str()
        .and_then(|p| B64.decode(p).ok())
        .ok_or("the DSSE payload is not base64")?;
    let pae_sha256: [u8; 32] = sha2::Sha256::digest(pae(&payload)).into();
    let k = check_signatures(&b, &pae_sha256, keys)?;
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("the signed payload is not JSON: {e}"))?;
    if statement["_type"] != INTOTO_STATEMENT {
        return Err(format!(
            "the signed payload is not an in-toto statement v1 ({})",
            statement["_type"]
        ));
    }
    Ok((statement, k))
}

/// A bundle's media type and DSSE payloadType.
pub(super) fn check_header(b: &Value) -> std::result::Result<(), String> {
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
    Ok(())
}

/// The key of `keys` that a DSSE signature of bundle `b` verifies with, over the payload whose
/// pre-authentication encoding has the SHA-256 `pae_sha256` (`verify_bundle`'s rules and
/// messages; `b`'s payload itself is not read).
pub(super) fn check_signatures<'k>(
    b: &Value,
    pae_sha256: &[u8; 32],
    keys: &'k [PublicKey],
) -> std::result::Result<&'k PublicKey, String> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    check_header(b)?;
    let env = &b["dsseEnvelope"];
    let sigs = env["signatures"]
        .as_array()
        .ok_or("the DSSE envelope has no signatures")?;
    let hint = b["verificationMaterial"]["publicKey"]["hint"].as_str();
    let mut keyids = Vec::new();
    for s in sigs {
        let keyid = s["keyid"].as_str().filter(|id| !id.is_empty());
        keyids.extend(keyid);
        let Some(raw) = s["sig"].as_str().and_then(|x| B64.decode(x).ok()) else {
            continue;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_der(&raw) else {
            continue;
        };
        // Every key is tried, whatever the hint and the keyid say: neither is signed, so one
        // that names another key must not pass a good signature off as another key's.
        let Some(k) = keys
            .iter()
            .find(|k| k.key.verify_prehash(pae_sha256, &sig).is_ok())
        else {
            continue;
        };
        if let Some(h) = hint.filter(|h| *h != k.hint) {
            return Err(unsigned_name_changed(
                k,
                "bundle's publicKey.hint",
                h,
                &k.hint,
            ));
        }
        if let Some(id) = keyid.filter(|id| *id != k.keyid) {
            return Err(unsigned_name_changed(k, "DSSE keyid", id, &k.keyid));
        }
        return Ok(k);
    }
    Err(match (keyids.first(), hint) {
        (Some(id), _) if !keys.iter().any(|k| k.keyid == *id) => other_key(&format!("key id {id}")),
        (_, Some(h)) if !keys.iter().any(|k| k.hint == h) => other_key(&format!("hint {h}")),
        _ => "the signature does not verify with any key given".into(),
    })
}

/// The reason of a signature made by a key not given, that key named by `name` (`hint H`,
/// `key id I`), said once: `signed by another key (hint H), not by any key given`.
fn other_key(name: &str) -> String {
    format!("{OTHER_KEY} ({name}){OTHER_KEY_END}")
}

const OTHER_KEY_END: &str = ", not by any key given";

/// The signer a reason of [`other_key`] names (`hint H`, `key id I`).
pub fn other_signer(reason: &str) -> Option<&str> {
    reason
        .strip_prefix(OTHER_KEY)?
        .strip_prefix(" (")?
        .strip_suffix(OTHER_KEY_END)?
        .strip_suffix(')')
}

/// A good signature by `k` whose unsigned key name (`what`) says `found`, not `want`.
fn unsigned_name_changed(k: &PublicKey, what: &str, found: &str, want: &str) -> String {
    format!(
        "the signature verifies with {}, but the {what} {found} is not that key's ({want}): it is not covered by the signature and was changed after signing. Sign it again with the key",
        k.path.display()
    )
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
        let err = verify_bundle(&b, &[other]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "signed by another key (hint {}), not by any key given",
                p.hint
            )
        );
        assert_eq!(
            other_signer(&err),
            Some(format!("hint {}", p.hint).as_str())
        );
        assert_eq!(other_signer("the signature does not verify"), None);
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

    #[test]
    fn attestations_name_their_key_and_a_changed_name_is_said() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let st = oms_statement("m", &[("a".into(), "11".repeat(32))]);
        let b = sign_attestation(&k, &st);
        assert_eq!(b, sign_attestation(&k, &st), "deterministic");
        let v: Value = serde_json::from_slice(&b).unwrap();
        let keyid = &v["dsseEnvelope"]["signatures"][0]["keyid"];
        assert_eq!(keyid, &Value::from(p.keyid.clone()));
        verify_bundle(&b, std::slice::from_ref(&p)).unwrap();
        // the keyid, or the hint, changed: the signature still verifies, and that is said
        for (ptr, what) in [
            ("/dsseEnvelope/signatures/0/keyid", "DSSE keyid"),
            ("/verificationMaterial/publicKey/hint", "publicKey.hint"),
        ] {
            let mut e = v.clone();
            *e.pointer_mut(ptr).unwrap() = "ab".repeat(32).into();
            let err = verify_bundle(&serde_json::to_vec(&e).unwrap(), std::slice::from_ref(&p))
                .unwrap_err();
            assert!(
                err.contains(what) && err.contains("changed after signing"),
                "{err}"
            );
            assert!(!err.starts_with(OTHER_KEY), "{err}");
        }
        // signed by another key: named by its key id
        let d2 = tempfile::tempdir().unwrap();
        let (_, other) = keypair(d2.path());
        let err = verify_bundle(&b, &[other]).unwrap_err();
        assert!(
            err.starts_with(OTHER_KEY) && err.contains(&p.keyid),
            "{err}"
        );
        assert_eq!(
            other_signer(&err),
            Some(format!("key id {}", p.keyid).as_str())
        );
        // an empty keyid (model.sig, OCI signatures) names no key: it verifies
        let plain = sign_statement(&k, &st);
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["dsseEnvelope"]["signatures"][0]["keyid"], "");
        verify_bundle(&plain, &[p]).unwrap();
    }
}
