//! Signing keys: ECDSA P-256 (RustCrypto), read from PEM (PKCS#8, encrypted PKCS#8, SEC1)
//! and made by `mlart keygen`; each named by its hint and its key id.

use crate::error::{Error, IoContext, Result};
use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

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
        write!(f, "PublicKey({}, {})", self.path.display(), self.keyid)
    }
}

impl PrivateKey {
    pub fn public(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// Its public half as a trusted key (to find what this key signed), named by the
    /// private key's path.
    pub fn trusted(&self) -> PublicKey {
        let key = self.public();
        PublicKey {
            hint: key_hint(&key),
            keyid: key_id(&key),
            key,
            path: self.path.clone(),
        }
    }
}

/// A trusted public key.
#[derive(Clone)]
pub struct PublicKey {
    pub key: VerifyingKey,
    pub path: PathBuf,
    /// hex sha256 of the SPKI PEM (model_signing's `publicKey.hint`)
    pub hint: String,
    /// hex sha256 of the SPKI DER (`key_id`): the keyid of the DSSE signatures it made
    pub keyid: String,
}

/// model_signing's `publicKey.hint` of a key: the hex SHA-256 of its SPKI PEM text (LF line
/// ends). Kept as model_signing defines it: its verifier compares the hint of `model.sig`.
pub fn key_hint(vk: &VerifyingKey) -> String {
    let pem = vk
        .to_public_key_pem(LineEnding::LF)
        .expect("encodable public key");
    hex::encode(Sha256::digest(pem.as_bytes()))
}

/// The key id of a public key: the hex SHA-256 of its DER SubjectPublicKeyInfo, the key hash
/// of RFC 6962 section 3.2 that Sigstore recommends for naming a public key (its
/// `PublicKeyIdentifier.hint`). It depends on the key only (not on how a PEM file wraps it),
/// and `openssl pkey -pubin -in KEY.pub -outform DER | sha256sum` prints the same.
pub fn key_id(vk: &VerifyingKey) -> String {
    let der = vk.to_public_key_der().expect("encodable public key");
    hex::encode(Sha256::digest(der.as_bytes()))
}

/// `mlart keygen -o PREFIX`: PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub (SPKI PEM).
/// Refuses to overwrite either file.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    use p256::elliptic_curve::Generate as _;
    // (`-o keys/` would write the hidden files keys/.key and keys/.pub)
    let shown = prefix.display().to_string();
    if shown.is_empty() || shown.ends_with(std::path::MAIN_SEPARATOR) || prefix.is_dir() {
        let example = format!(
            "{}{}release",
            shown,
            if shown.is_empty() || shown.ends_with(std::path::MAIN_SEPARATOR) {
                ""
            } else {
                std::path::MAIN_SEPARATOR_STR
            }
        );
        return Err(Error::of(
            crate::error::Kind::Usage,
            format!(
                "-o {shown} is a directory: give a prefix such as {example} (writes {example}.key and {example}.pub)"
            ),
        ));
    }
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
    let text = read_key_file(path, false)?;
    if !text.contains("-----BEGIN ") {
        return Err(Error::input(format!(
            "{} is not a PEM key file (no `-----BEGIN … PRIVATE KEY-----` line): give the .key file `mlart keygen` wrote",
            path.display()
        )));
    }
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

fn read_key_file(path: &Path, public: bool) -> Result<String> {
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
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::input(format!(
            "{} is not a PEM key file (not text)",
            path.display()
        ))
    })?;
    // Two keys in one file (`cat a.pub b.pub`) would otherwise be reported by the PEM parser
    // as bad Base64.
    let blocks = text
        .lines()
        .filter(|l| l.trim_start().starts_with("-----BEGIN "))
        .count();
    if blocks > 1 {
        return Err(Error::input(format!(
            "{} holds {blocks} PEM blocks: {}",
            path.display(),
            match public {
                true => "give one key per --key (repeat --key for several)",
                false => "a private key file holds one key (the .key file `mlart keygen` wrote)",
            }
        )));
    }
    Ok(text)
}

/// Read a trusted public key (SPKI PEM, `PUBLIC KEY`).
pub fn load_public(path: &Path) -> Result<PublicKey> {
    let text = read_key_file(path, true)?;
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
        keyid: key_id(&key),
        key,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sign::verify_bundle;

    /// A fresh key pair in `dir` (`dir/k.key`, `dir/k.pub`).
    pub(crate) fn keypair(dir: &Path) -> (PrivateKey, PublicKey) {
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
        // a directory (an existing one, or any PREFIX ending in /) is not a prefix: refused,
        // nothing written (it would make the hidden keys/.key and keys/.pub)
        let keys = d.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for (prefix, shown) in [
            (
                PathBuf::from(format!("{}/", keys.display())),
                format!("{}/", keys.display()),
            ),
            (keys.clone(), keys.display().to_string()),
            (
                d.path().join("new/"),
                format!("{}/", d.path().join("new").display()),
            ),
        ] {
            let e = keygen(&prefix).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "-o {shown} is a directory: give a prefix such as "
                )) && msg.contains("release (writes ")
                    && msg.contains("release.key and ")
                    && msg.ends_with("release.pub)"),
                "{msg}"
            );
        }
        assert_eq!(std::fs::read_dir(&keys).unwrap().count(), 0);
        assert!(!d.path().join("new").exists());
    }

    #[test]
    fn hostile_keys_and_bundles_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x.pem");
        std::fs::write(&f, "not a key").unwrap();
        let msg = load_private(&f).unwrap_err().to_string();
        assert!(
            msg.contains("no `-----BEGIN"),
            "says what is missing: {msg}"
        );
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
        // two keys in one file: said so, not a Base64 error
        let (k1, p1) = keygen(&d.path().join("one")).unwrap();
        let (_, p2) = keygen(&d.path().join("two")).unwrap();
        let both = [std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap()].concat();
        std::fs::write(&f, both).unwrap();
        let msg = load_public(&f).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "{} holds 2 PEM blocks: give one key per --key (repeat --key for several)",
                f.display()
            )
        );
        assert!(load_public(&p1).is_ok() && load_private(&k1).is_ok());
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

    #[test]
    fn key_id_is_the_sha256_of_the_spki_der_of_the_pub_file() {
        let d = tempfile::tempdir().unwrap();
        let (k, p) = keypair(d.path());
        let pem = std::fs::read_to_string(d.path().join("k.pub")).unwrap();
        let (label, der) = pkcs8::der::pem::decode_vec(pem.as_bytes()).unwrap();
        assert_eq!(label, "PUBLIC KEY");
        assert_eq!(p.keyid, hex::encode(Sha256::digest(&der)));
        assert_eq!(key_id(&k.public()), p.keyid);
        assert_eq!(p.hint, hex::encode(Sha256::digest(pem.as_bytes())));
        assert_ne!(p.keyid, p.hint);
    }
}
