//! Signing: ECDSA P-256 keys (RustCrypto), DSSE envelopes in Sigstore bundles v0.3, the
//! OpenSSF Model Signing v1.0 (OMS) `model.sig` over a bundle's files, and cosign-style OCI
//! signatures (a referrer manifest whose one layer is the bundle).

use crate::error::{Error, IoContext, Result};
use crate::format::digest::Digest;
use crate::format::media_type::{BUNDLE_MEDIA_TYPE, EMPTY_CONFIG_MEDIA_TYPE};
use crate::format::signature::{
    OciSignature, COSIGN_PREDICATE, INTOTO_PAYLOAD_TYPE, INTOTO_STATEMENT, OMS_FILE, OMS_IGNORE,
    OMS_PREDICATE,
};
use base64::Engine as _;
use p256::ecdsa::{
    signature::Signer as _, signature::Verifier as _, DerSignature, SigningKey, VerifyingKey,
};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------- keys ----------------

/// A private key with where it came from (for messages; the key itself is never printed).
pub struct PrivateKey {
    pub key: SigningKey,
    pub path: PathBuf,
}

/// Never prints key material, only where the key came from.
impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.path.display())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({}, {})", self.path.display(), self.hint)
    }
}

impl PrivateKey {
    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }
}

/// A trusted public key.
#[derive(Clone)]
pub struct PublicKey {
    pub key: VerifyingKey,
    pub path: PathBuf,
    /// hex sha256 of the SPKI PEM (model_signing's `publicKey.hint`)
    pub hint: String,
}

pub fn key_hint(vk: &VerifyingKey) -> String {
    let pem = vk
        .to_public_key_pem(LineEnding::LF)
        .expect("encodable public key");
    hex::encode(Sha256::digest(pem.as_bytes()))
}

/// `mlart keygen -o PREFIX`: PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM).
/// Refuses to overwrite either file.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    use p256::elliptic_curve::Generate as _;
    let key_path = PathBuf::from(format!("{}.key", prefix.display()));
    let pub_path = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(Error::input(format!(
                "{} exists: mlart keygen never overwrites a key. Choose another -o, or remove the old key first",
                p.display()
            )));
        }
    }
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ctx("creating", dir)?;
    }
    let secret = p256::SecretKey::try_generate()
        .map_err(|e| Error::input(format!("the system random generator failed: {e}")))?;
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::input(format!("encoding the key: {e}")))?;
    let public = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| Error::input(format!("encoding the public key: {e}")))?;
    write_new(&key_path, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, public.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// Create `path` with `mode` (never replacing an existing file).
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    let _ = mode;
    let mut f = o.open(path).ctx("creating", path)?;
    f.write_all(data).ctx("writing", path)?;
    f.sync_all().ctx("writing", path)
}

const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

fn describe_algorithm(oid: &str, param: Option<&str>) -> String {
    match (oid, param) {
        ("1.2.840.113549.1.1.1", _) => "an RSA key".into(),
        ("1.3.101.112", _) => "an Ed25519 key".into(),
        ("1.3.101.113", _) => "an Ed448 key".into(),
        (OID_EC, Some("1.3.132.0.34")) => "an EC P-384 key".into(),
        (OID_EC, Some("1.3.132.0.35")) => "an EC P-521 key".into(),
        (OID_EC, Some("1.3.132.0.10")) => "an EC secp256k1 key".into(),
        (OID_EC, Some(p)) => format!("an EC key on curve {p}"),
        (o, _) => format!("a key of algorithm {o}"),
    }
}

fn wrong_key(path: &Path, what: &str) -> Error {
    Error::input(format!(
        "{} is {what}: mlart signs only with ECDSA P-256 keys (PKCS#8 PEM, encrypted PKCS#8, or SEC1 PEM); no conversion turns another key type into one. Make a P-256 key with `mlart keygen -o NAME`",
        path.display()
    ))
}

/// Check a PKCS#8 `PrivateKeyInfo` is P-256 before decoding it (for a clear message).
fn check_pkcs8_algorithm(path: &Path, der: &[u8]) -> Result<()> {
    let info = pkcs8::PrivateKeyInfoRef::try_from(der)
        .map_err(|e| Error::input(format!("{}: not a valid PKCS#8 key: {e}", path.display())))?;
    let oid = info.algorithm.oid.to_string();
    let param = info.algorithm.parameters_oid().ok().map(|o| o.to_string());
    if oid != OID_EC || param.as_deref() != Some(OID_P256) {
        return Err(wrong_key(path, &describe_algorithm(&oid, param.as_deref())));
    }
    Ok(())
}

/// Read a private key: PKCS#8 PEM (also encrypted: the password comes from
/// `MLART_KEY_PASSWORD` or, on a terminal, a prompt) or SEC1 PEM (`EC PRIVATE KEY`).
pub fn load_private(path: &Path) -> Result<PrivateKey> {
    let text = read_key_file(path)?;
    let (label, doc) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|e| {
        Error::input(format!(
            "{} is not a PEM key file ({e}): give the .key file `mlart keygen` wrote",
            path.display()
        ))
    })?;
    let key = match label {
        "PRIVATE KEY" => {
            check_pkcs8_algorithm(path, &doc)?;
            SigningKey::from_pkcs8_der(&doc)
                .map_err(|e| Error::input(format!("{}: invalid P-256 key: {e}", path.display())))?
        }
        "ENCRYPTED PRIVATE KEY" => {
            let password = key_password(path)?;
            let enc = pkcs8::EncryptedPrivateKeyInfoRef::try_from(doc.as_slice()).map_err(|e| {
                Error::input(format!("{}: invalid encrypted key: {e}", path.display()))
            })?;
            let plain = enc.decrypt(password.as_bytes()).map_err(|_| {
                Error::input(format!(
                    "{}: cannot decrypt the key: wrong password (MLART_KEY_PASSWORD) or an unsupported cipher",
                    path.display()
                ))
            })?;
            check_pkcs8_algorithm(path, plain.as_bytes())?;
            SigningKey::from_pkcs8_der(plain.as_bytes())
                .map_err(|e| Error::input(format!("{}: invalid P-256 key: {e}", path.display())))?
        }
        "EC PRIVATE KEY" => {
            let sk = p256::SecretKey::from_sec1_der(&doc).map_err(|_| {
                wrong_key(
                    path,
                    "an EC key that is not on the P-256 curve (or is malformed)",
                )
            })?;
            SigningKey::from(sk)
        }
        "RSA PRIVATE KEY" => return Err(wrong_key(path, "an RSA key")),
        "PUBLIC KEY" => {
            return Err(Error::input(format!(
            "{} is a public key: signing needs the private key (the .key file of `mlart keygen`)",
            path.display()
        )))
        }
        other => {
            return Err(Error::input(format!(
                "{}: a PEM {other:?}, not a private key",
                path.display()
            )))
        }
    };
    Ok(PrivateKey {
        key,
        path: path.to_path_buf(),
    })
}

fn key_password(path: &Path) -> Result<String> {
    if let Ok(p) = std::env::var("MLART_KEY_PASSWORD") {
        return Ok(p);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("password for {}: ", path.display()))
            .map_err(|e| Error::input(format!("reading the password: {e}")));
    }
    Err(Error::input(format!(
        "{} is encrypted: set MLART_KEY_PASSWORD (no terminal to ask on)",
        path.display()
    )))
}

fn read_key_file(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::input(format!("cannot read key {}: {e}", path.display())))?;
    if meta.len() > 64 << 10 {
        return Err(Error::input(format!(
            "{} is too large to be a key file",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).ctx("reading", path)?;
    // An empty file (an unset variable's `/dev/null`, a key never written) would otherwise be
    // reported by the PEM parser as odd data it does not hold.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::input(format!(
            "{} is empty, not a key: give the file `mlart keygen` wrote (PREFIX.key to sign, \
             PREFIX.pub to verify)",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::input(format!(
            "{} is not a PEM key file (not text)",
            path.display()
        ))
    })
}

/// Read a trusted public key (SPKI PEM, `PUBLIC KEY`).
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = read_key_file(path)?;
    let (label, doc) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|e| {
        Error::input(format!(
            "{} is not a PEM public key ({e}): give the .pub file `mlart keygen` wrote",
            path.display()
        ))
    })?;
    if label != "PUBLIC KEY" {
        return Err(Error::input(format!(
            "{} holds a PEM {label:?}: verify needs the public key (the .pub file), never the private one",
            path.display()
        )));
    }
    let spki = spki::SubjectPublicKeyInfoRef::try_from(doc.as_slice())
        .map_err(|e| Error::input(format!("{}: invalid public key: {e}", path.display())))?;
    let oid = spki.algorithm.oid.to_string();
    let param = spki.algorithm.parameters_oid().ok().map(|o| o.to_string());
    if oid != OID_EC || param.as_deref() != Some(OID_P256) {
        return Err(wrong_key(path, &describe_algorithm(&oid, param.as_deref())));
    }
    let key = VerifyingKey::from_public_key_der(&doc)
        .map_err(|e| Error::input(format!("{}: invalid P-256 public key: {e}", path.display())))?;
    Ok(PublicKey {
        hint: key_hint(&key),
        key,
        path: path.to_path_buf(),
    })
}

// ---------------- DSSE in a Sigstore bundle ----------------

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

// ---------------- OMS (model_signing v1.0) ----------------

/// Compare paths by components, as model_signing sorts resources.
fn by_components(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The OMS statement over `files` (relative path, sha256 hex), named `name`.
pub fn oms_statement(name: &str, files: &[(String, String)]) -> Value {
    let mut files: Vec<&(String, String)> = files.iter().collect();
    files.sort_by(|a, b| by_components(&a.0, &b.0));
    let mut root = Sha256::new();
    let mut resources = Vec::new();
    for (path, hexd) in files {
        root.update(hex::decode(hexd).expect("hex digest"));
        resources.push(json!({"algorithm": "sha256", "digest": hexd, "name": path}));
    }
    json!({
        "_type": INTOTO_STATEMENT,
        "subject": [{"name": name, "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": OMS_PREDICATE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false, "ignore_paths": OMS_IGNORE},
            "resources": resources,
        },
    })
}

/// The files an OMS statement lists (path -> sha256 hex), after checking its root digest.
pub fn oms_resources(
    statement: &Value,
) -> std::result::Result<std::collections::BTreeMap<String, String>, String> {
    if statement["predicateType"] != OMS_PREDICATE {
        return Err(format!(
            "predicateType {} is not {OMS_PREDICATE}",
            statement["predicateType"]
        ));
    }
    let res = statement["predicate"]["resources"]
        .as_array()
        .ok_or("no resources in the predicate")?;
    let mut root = Sha256::new();
    let mut out = std::collections::BTreeMap::new();
    for r in res {
        let (Some(name), Some(d)) = (r["name"].as_str(), r["digest"].as_str()) else {
            return Err("a resource without name or digest".into());
        };
        if r["algorithm"] != "sha256" {
            return Err(format!("{name}: unsupported algorithm {}", r["algorithm"]));
        }
        root.update(hex::decode(d).map_err(|_| format!("{name}: digest is not hex"))?);
        out.insert(name.to_string(), d.to_string());
    }
    let want = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap_or_default();
    if hex::encode(root.finalize()) != want {
        return Err(
            "the statement is inconsistent: its resources do not hash to the subject digest".into(),
        );
    }
    Ok(out)
}

/// Verify `dir/model.sig` against the files in `dir` (as model_signing does): returns the
/// verifying key's path, or a Check error naming what differs.
pub fn verify_dir(dir: &Path, keys: &[PublicKey]) -> Result<PathBuf> {
    verify_dir_known(dir, keys, &|_| None)
}

/// As `verify_dir`, for a directory whose files were hashed as they were written (`pull`'s
/// extractor): `known(rel)` gives a file's sha256 hex, and only the files it does not know are
/// read again. Every file is still listed, so one added or missing is found all the same.
pub fn verify_dir_known(
    dir: &Path,
    keys: &[PublicKey],
    known: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf> {
    let sig_path = dir.join(OMS_FILE);
    let bundle = std::fs::read(&sig_path).map_err(|_| {
        Error::Check(format!(
            "{}: no {OMS_FILE}: the directory is not signed",
            dir.display()
        ))
    })?;
    let (statement, key) = verify_bundle(&bundle, keys)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    check_dir(dir, &statement, known)?;
    Ok(key.path.clone())
}

/// `verify DIR` without a key: the files against what model.sig lists; its signature is NOT
/// checked (the caller says so).
pub fn check_dir_unsigned(dir: &Path) -> Result<()> {
    let sig_path = dir.join(OMS_FILE);
    let bundle = std::fs::read(&sig_path).map_err(|_| {
        Error::Check(format!(
            "{}: no {OMS_FILE}: nothing to check the files against",
            dir.display()
        ))
    })?;
    let statement = unverified_statement(&bundle)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    check_dir(dir, &statement, &|_| None)
}

fn check_dir(dir: &Path, statement: &Value, known: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let sig_path = dir.join(OMS_FILE);
    let want = oms_resources(statement)
        .map_err(|e| Error::Check(format!("{}: {e}", sig_path.display())))?;
    let ignore: Vec<String> = statement["predicate"]["serialization"]["ignore_paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut got = std::collections::BTreeMap::new();
    let mut it = walkdir::WalkDir::new(dir).sort_by_file_name().into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(|e| Error::Check(format!("{}: {e}", dir.display())))?;
        if e.depth() == 0 {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("under dir")
            .to_string_lossy()
            .replace('\\', "/");
        if ignore
            .iter()
            .any(|i| rel == *i || rel.starts_with(&format!("{i}/")))
        {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if e.file_type().is_symlink() {
            return Err(Error::Check(format!(
                "{}: {rel} is a symlink (the signature does not allow them)",
                dir.display()
            )));
        }
        if e.file_type().is_file() {
            if let Some(d) = known(&rel) {
                got.insert(rel, d);
                continue;
            }
            let mut f = std::fs::File::open(e.path()).ctx("reading", e.path())?;
            let mut h = crate::format::digest::HashWriter::new(std::io::sink());
            std::io::copy(&mut f, &mut h).ctx("reading", e.path())?;
            let (_, d, _) = h.finish();
            got.insert(rel, d.hex().to_string());
        }
    }
    let mut problems = Vec::new();
    for (p, d) in &want {
        match got.get(p) {
            None => problems.push(format!("{p} is missing")),
            Some(g) if g != d => problems.push(format!("{p} changed")),
            _ => {}
        }
    }
    for p in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("{p} is not in the signature (added)"));
    }
    if !problems.is_empty() {
        return Err(Error::Check(format!(
            "{}: the files do not match {OMS_FILE}: {}",
            dir.display(),
            problems.join("; ")
        )));
    }
    Ok(())
}

// ---------------- OCI signatures (cosign v3 layout) ----------------

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

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair(dir: &Path) -> (PrivateKey, PublicKey) {
        let (k, p) = keygen(&dir.join("k")).unwrap();
        (load_private(&k).unwrap(), load_public(&p).unwrap())
    }

    #[test]
    fn keygen_writes_0600_and_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let (k, _) = keygen(&d.path().join("release")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(keygen(&d.path().join("release"))
            .unwrap_err()
            .to_string()
            .contains("never overwrites"));
    }

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

    #[test]
    fn verify_dir_known_uses_given_digests_and_still_lists_every_file() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let dir = d.path().join("m");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
        std::fs::write(dir.join("sub/b.bin"), b"beta").unwrap();
        let hex_of = |b: &[u8]| hex::encode(Sha256::digest(b));
        let st = oms_statement(
            "m",
            &[
                ("a.txt".into(), hex_of(b"alpha")),
                ("sub/b.bin".into(), hex_of(b"beta")),
            ],
        );
        std::fs::write(dir.join(OMS_FILE), sign_statement(&k, &st)).unwrap();
        let keys = std::slice::from_ref(&p);
        verify_dir(&dir, keys).unwrap();
        // a known digest is taken as it is (the file is not read again): a wrong one fails ...
        let wrong = |rel: &str| (rel == "a.txt").then(|| hex_of(b"other"));
        let e = verify_dir_known(&dir, keys, &wrong)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.txt changed"), "{e}");
        // ... and a right one passes even when the file on disk is not read
        std::fs::write(dir.join("a.txt"), b"ALPHA").unwrap();
        let right = |rel: &str| (rel == "a.txt").then(|| hex_of(b"alpha"));
        verify_dir_known(&dir, keys, &right).unwrap();
        // files the caller does not know are still hashed, and an added one is still found
        std::fs::write(dir.join("sub/b.bin"), b"BETA").unwrap();
        std::fs::write(dir.join("extra"), b"x").unwrap();
        let e = verify_dir_known(&dir, keys, &right)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sub/b.bin changed"), "{e}");
        assert!(e.contains("extra is not in the signature"), "{e}");
    }

    #[test]
    fn resources_sort_by_path_components() {
        let st = oms_statement(
            "m",
            &[
                ("a.txt".into(), "11".repeat(32)),
                ("a/b".into(), "00".repeat(32)),
            ],
        );
        let names: Vec<&str> = st["predicate"]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["a/b", "a.txt"]);
    }

    #[test]
    fn hostile_keys_and_bundles_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.pem");
        std::fs::write(&f, "not a key").unwrap();
        assert!(load_private(&f).is_err());
        assert!(load_public(&f).is_err());
        // empty, or only blank lines: said so, for either kind of key
        for blank in ["", "\n \n"] {
            std::fs::write(&f, blank).unwrap();
            for e in [load_private(&f).err(), load_public(&f).err()] {
                let msg = e.expect("an empty key file is an error").to_string();
                assert!(msg.contains("x.pem is empty, not a key"), "{msg}");
            }
        }
        std::fs::write(
            &f,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(load_private(&f).is_err());
        let (_, p) = keypair(d.path());
        for junk in [&b"{"[..], b"{}", br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payloadType":"application/vnd.in-toto+json","payload":"!!","signatures":[]}}"#] {
            assert!(verify_bundle(junk, std::slice::from_ref(&p)).is_err());
        }
        // a public key is not a private key, and the other way round
        assert!(load_private(&p.path)
            .unwrap_err()
            .to_string()
            .contains("public key"));
        assert!(load_public(&d.path().join("k.key"))
            .unwrap_err()
            .to_string()
            .contains("never the private"));
    }
}
