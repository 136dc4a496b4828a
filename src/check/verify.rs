//! `mlart verify`: OCI signatures (referrers beside the bundle), the OMS `model.sig`, and
//! every digest: each blob against its descriptor, each file against the metadata index.

use crate::error::{Error, Result};
use crate::format::annotations::KIND_ANNOTATION;
use crate::format::compression::Compression;
use crate::format::digest::{Digest, HashReader};
use crate::format::metadata::{Form, METADATA_FILE, MODEL_DIR};
use crate::sign::{self, PublicKey};
use crate::store::layout::{self, Source};
use crate::store::runs::{Batch, Peeked, Runs};
use serde::Serialize;
use std::io::Read;

#[derive(Debug, Serialize)]
pub struct SignatureCheck {
    pub digest: String,
    pub valid: bool,
    /// `valid`; `other-key` (made by a key that was not given: not a failure);
    /// `invalid` (tampered, malformed, or not over this bundle); `not-checked` (no --key).
    pub status: SignatureStatus,
    /// The trusted key that verified it.
    pub key: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureStatus {
    Valid,
    OtherKey,
    Invalid,
    NotChecked,
}

impl SignatureCheck {
    fn checked(digest: String, res: std::result::Result<String, String>) -> SignatureCheck {
        match res {
            Ok(key) => SignatureCheck {
                digest,
                valid: true,
                status: SignatureStatus::Valid,
                key: Some(key),
                reason: None,
            },
            Err(reason) => SignatureCheck {
                digest,
                valid: false,
                status: if reason.starts_with(sign::OTHER_KEY) {
                    SignatureStatus::OtherKey
                } else {
                    SignatureStatus::Invalid
                },
                key: None,
                reason: Some(reason),
            },
        }
    }
    fn not_checked(digest: String) -> SignatureCheck {
        SignatureCheck {
            digest,
            valid: false,
            status: SignatureStatus::NotChecked,
            key: None,
            reason: Some("no --key given: not checked".into()),
        }
    }
}

/// What one trusted key (`--key`) found.
#[derive(Debug, Serialize)]
pub struct KeyResult {
    pub key: String,
    /// A signature by this key verified.
    pub verified: bool,
    /// The OCI signatures it made.
    pub oci_signatures: Vec<String>,
    /// It made the bundle's model.sig.
    pub model_sig: bool,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub manifest_digest: String,
    pub oci_signatures: Vec<SignatureCheck>,
    /// The OMS model.sig: None when the bundle has none.
    pub model_signature: Option<SignatureCheck>,
    pub blobs_verified: usize,
    pub files_verified: usize,
    pub problems: Vec<String>,
    pub ok: bool,
    /// Of the problems, some are bytes that are not what their digest says: a blob that does
    /// not match its descriptor's digest or size, or a file whose content does not match the
    /// metadata's sha256 (exit 4, as `pull` gives; other problems are a failed check, exit 1).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub integrity: bool,
    /// False when no --key was given: digests and structure only.
    pub signatures_checked: bool,
    /// Per trusted key: whether it signed this bundle.
    pub keys: Vec<KeyResult>,
    /// One line: what was verified, by which key, or that no signature was checked.
    pub summary: String,
    /// When the source is a multi-platform index: the index and the platform of the image
    /// verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<layout::IndexChoice>,
}

/// A `sha256:<hex>` digest's bytes.
fn sha_bytes(d: &str) -> std::result::Result<[u8; 32], String> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(d.strip_prefix("sha256:").unwrap_or(d), &mut b)
        .map_err(|_| format!("{d:?} is not a sha256 digest"))?;
    Ok(b)
}

/// Problems found comparing the lists, at most `Capped::SHOWN` of each sort said one by one.
#[derive(Default)]
struct Join {
    problems: crate::error::Capped,
    oms: crate::error::Capped,
}

impl Join {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn oms(&mut self, p: String) {
        self.oms.push(p);
    }

    fn problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems).into_vec(" problems with files")
    }

    /// What differs between the files and model.sig, if anything.
    fn oms_diff(&self) -> Option<String> {
        self.oms.joined()
    }
}

/// A model.sig as it was read: its digest, and its statement (decoded into a temp file past a
/// few MiB) with the key that verified it ("" without keys), or why it does not hold.
struct OmsRead {
    digest: String,
    opened: std::result::Result<(sign::Payload, String), String>,
}

/// Read a model.sig as it streams (it lists every file: tens of MB for 200,000 files), its
/// signature checked with `keys` when there are any.
fn open_oms(r: &mut dyn Read, keys: &[PublicKey]) -> std::result::Result<OmsRead, String> {
    let mut h = HashReader::new(r);
    let opened = sign::open_streamed(&mut h, keys)
        .map(|(p, k)| {
            (
                p,
                k.map(|k| k.path.display().to_string()).unwrap_or_default(),
            )
        })
        .map_err(|e| match keys.is_empty() {
            true => format!("not a valid signature document: {e}"),
            false => e,
        });
    // (the rest, for the digest: a bundle cut short or with trailing bytes is refused above)
    std::io::copy(&mut h, &mut std::io::sink()).map_err(|e| e.to_string())?;
    let (_, d, _) = h.finish();
    Ok(OmsRead {
        digest: d.to_string(),
        opened,
    })
}

/// Verify a layout or archive with the trusted `keys`.
pub fn verify_source(
    src: &mut dyn Source,
    tag: Option<&str>,
    keys: &[PublicKey],
    require_all: bool,
) -> Result<Report> {
    verify_platform(src, tag, None, keys, require_all)
}

/// Verify; from a multi-platform index, the image of `platform` (None: this machine's).
pub fn verify_platform(
    src: &mut dyn Source,
    tag: Option<&str>,
    platform: Option<&crate::format::platform::Platform>,
    keys: &[PublicKey],
    require_all: bool,
) -> Result<Report> {
    let what = src.describe();
    let r = layout::resolve_platform(src, tag, platform)?;
    let target = Digest::parse(r.descriptor.digest().as_ref()).map_err(Error::Input)?;
    let metadata = crate::store::metadata::read_metadata(src, &r.manifest)?;

    // 1. OCI signatures: the referrers whose subject is this manifest.
    let (sigs, mut problems) = oci_signatures(src, &target, keys, require_all)?;

    // 2. Every blob and every file: stream each layer once, hash its entries. What the
    // layers hold is sorted on disk past a few MiB (`store::runs`), then read beside the
    // metadata's list (also in path order) and model.sig's: a million files are checked in
    // bounded memory.
    // The metadata made from another tool's manifest names its layers' files (a handful).
    let owners: Vec<crate::format::metadata::FileEntry> = match metadata.dialect {
        Some(_) => metadata.files.to_vec()?,
        None => Vec::new(),
    };
    let spill = crate::store::entries::memory_limit()?.max(64 << 10);
    let mut got: Runs<[u8; 32]> = Runs::new(spill);
    let mut batch: Batch<[u8; 32]> = Batch::default();
    let mut oms: Option<OmsRead> = None;
    let mut blobs = 0;
    let mut integrity = false;
    for l in r.manifest.layers() {
        let mt = l.media_type().to_string();
        let kind = l
            .annotations()
            .as_ref()
            .and_then(|a| a.get(KIND_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        // The file a raw layer is (another tool's: as the metadata made from its manifest
        // names it), or the tar layer of another tool that an `archive` entry stands for.
        let own = owners.iter().find(|f| *f.layer == *l.digest().as_ref());
        let title = own
            .map(|f| f.path.clone())
            .or_else(|| {
                crate::format::dialect::layer_path(l.annotations().as_ref()).map(String::from)
            })
            .unwrap_or_default();
        let archive = own.filter(|f| f.archive);
        let res = (|| -> std::result::Result<(), String> {
            let mut rd = layout::open_verified(src, l).map_err(|e| e.to_string())?;
            if let Some(f) = archive {
                // its digest is checked at EOF; its files are what the layer holds
                std::io::copy(&mut rd, &mut std::io::sink()).map_err(|e| e.to_string())?;
                batch.push(&f.path, 0, &sha_bytes(&f.sha256)?);
                return Ok(());
            }
            if mt.ends_with(".raw") || metadata.dialect.is_some() {
                if kind == "signature" {
                    oms = Some(open_oms(&mut rd, keys)?);
                } else {
                    let mut h = HashReader::new(rd);
                    std::io::copy(&mut h, &mut std::io::sink()).map_err(|e| e.to_string())?;
                    let (_, d, _) = h.finish();
                    batch.push(&title, 0, &sha_bytes(d.as_str())?);
                }
                return Ok(());
            }
            let comp = Compression::from_media_type(&mt)
                .ok_or_else(|| format!("unknown media type {mt}"))?;
            let dec = crate::format::compression::decoder(rd, comp).map_err(|e| e.to_string())?;
            let mut ar = tar::Archive::new(dec);
            for e in ar.entries().map_err(|e| e.to_string())? {
                let mut e = e.map_err(|e| e.to_string())?;
                if !e.header().entry_type().is_file() {
                    continue;
                }
                let p = e
                    .path()
                    .map_err(|e| e.to_string())?
                    .to_string_lossy()
                    .into_owned();
                let rel = match metadata.form {
                    Form::Image => {
                        let p = p.trim_start_matches("./");
                        match p.strip_prefix(&format!("{MODEL_DIR}/")) {
                            Some(r) => r.to_string(),
                            // The base image's rootfs (`bundle --base`): not bundle files.
                            None if metadata.base.is_some() => continue,
                            None => p.to_string(),
                        }
                    }
                    Form::Artifact | Form::Modelpack => p.trim_start_matches("./").to_string(),
                };
                if rel == crate::format::signature::OMS_FILE && kind == "metadata" {
                    oms = Some(open_oms(&mut e, keys)?);
                    continue;
                }
                let mut h = HashReader::new(&mut e);
                std::io::copy(&mut h, &mut std::io::sink()).map_err(|e| e.to_string())?;
                let (_, d, _) = h.finish();
                batch.push(&rel, 0, &sha_bytes(d.as_str())?);
                if batch.size() > 64 << 10 {
                    got.add(&mut batch).map_err(|e| e.to_string())?;
                }
            }
            // drain to the end so the blob digest is checked
            let mut rest = ar.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| e.to_string())?;
            Ok(())
        })();
        match res {
            Ok(()) => blobs += 1,
            Err(e) => {
                // What stopped the read may be a symptom (a tar header that does not parse):
                // the blob read whole once more says whether its bytes are its digest's.
                let whole = layout::open_verified(src, l)
                    .and_then(|mut r| {
                        std::io::copy(&mut r, &mut std::io::sink())
                            .map_err(|e| Error::from_io(&e, e.to_string()))
                    })
                    .map(|_| ());
                match whole {
                    Err(d) if d.kind() == crate::error::Kind::Integrity => {
                        integrity = true;
                        problems.push(format!("layer {} ({title}): {d}", l.digest()));
                    }
                    _ => problems.push(format!("layer {} ({title}): {e}", l.digest())),
                }
            }
        }
        got.add(&mut batch)?;
    }

    // 3. The OMS model.sig over the files (and mlart.json in the image form): its listing,
    // compared with the files below as they come.
    // model.sig's files, sorted by path on disk like the layers' (its own order is by
    // components); what does not hold is said once, below.
    let oms = oms.map(|o| {
        let listed = o.opened.and_then(|(mut payload, key)| {
            let r = payload
                .reader()
                .map_err(|e| format!("reading the statement back: {e}"))?;
            Ok((sign::oms_resources_sorted(r, spill)?.0, key))
        });
        (o.digest, listed)
    });
    let (oms, mut signed_it) = match oms {
        Some((digest, Ok((merged, key)))) => (Some((digest, Ok(key))), Some(Peeked::new(merged)?)),
        Some((digest, Err(e))) => (Some((digest, Err(e))), None),
        None => (None, None),
    };

    // Each file of the layers (sorted), beside the metadata's and model.sig's lists.
    let mut files = 0;
    let mut join = Join::default();
    let mut read_error: Option<Error> = None;
    let mut merged = got.merged()?;
    // (a list that cannot be read back from its temp file ends the check with that error)
    let mut listed = metadata
        .files
        .iter()
        .map_while(|f| match f {
            Ok(f) => Some(f),
            Err(e) => {
                read_error.get_or_insert(e);
                None
            }
        })
        .peekable();
    let mut last: Option<String> = None;
    while let Some(rec) = merged.next()? {
        if last.as_deref() == Some(rec.rel.as_str()) {
            join.problem(format!("{}: appears more than once in the layers", rec.rel));
            continue;
        }
        // the metadata's files before this one: in no layer
        while let Some(f) = listed.next_if(|f| f.path < rec.rel) {
            join.problem(format!(
                "{}: listed in the metadata but in no layer",
                f.path
            ));
        }
        match listed.next_if(|f| f.path == rec.rel) {
            Some(f) if sha_bytes(&f.sha256).ok() == Some(rec.data) => files += 1,
            Some(_) => {
                integrity = true;
                join.problem(format!(
                    "{}: its content does not match the metadata's sha256",
                    rec.rel
                ))
            }
            None => {
                let is_metadata = metadata.form != Form::Artifact && rec.rel == METADATA_FILE;
                if !is_metadata {
                    join.problem(stray_entry(&rec.rel));
                }
            }
        }
        if let Some(it) = signed_it.as_mut() {
            while let Some(p) = it.next_if(|p| p.rel < rec.rel)? {
                join.oms(format!("{} missing", p.rel));
            }
            match it.next_if(|p| p.rel == rec.rel)? {
                Some(p) if p.data == rec.data => {}
                Some(p) => join.oms(format!("{} changed", p.rel)),
                None => join.oms(format!("{} added", rec.rel)),
            }
            while let Some(p) = it.next_if(|p| p.rel == rec.rel)? {
                join.oms(format!("{} listed twice", p.rel));
            }
        }
        last = Some(rec.rel);
    }
    for f in listed {
        join.problem(format!(
            "{}: listed in the metadata but in no layer",
            f.path
        ));
    }
    if let Some(e) = read_error {
        return Err(e);
    }
    if let Some(mut it) = signed_it {
        while let Some(p) = it.next_if(|_| true)? {
            join.oms(format!("{} missing", p.rel));
        }
    }
    problems.extend(join.problems());

    let model_signature = oms.map(|(digest, listed)| {
        let res = listed.and_then(|key| match join.oms_diff() {
            Some(diff) => Err(format!("the files do not match model.sig: {diff}")),
            None => Ok(key),
        });
        let check = match res {
            Ok(_) if keys.is_empty() => SignatureCheck::not_checked(digest),
            r => SignatureCheck::checked(digest, r),
        };
        match (check.status, &check.reason) {
            // made by a key not given: reported per key; any one key is enough
            (SignatureStatus::Invalid, Some(reason)) => {
                problems.push(format!("model.sig: {reason}"))
            }
            (SignatureStatus::OtherKey, Some(reason)) if sigs.iter().all(|s| !s.valid) => {
                problems.push(format!("model.sig: {reason}"))
            }
            _ => {}
        }
        check
    });
    let keys_found = key_results(keys, &sigs, model_signature.as_ref());
    let ok = problems.is_empty();
    let summary = summary(
        &what,
        target.as_str(),
        ok,
        &keys_found,
        blobs,
        files,
        &problems,
    );
    Ok(Report {
        target: what,
        manifest_digest: target.to_string(),
        oci_signatures: sigs,
        model_signature,
        blobs_verified: blobs,
        files_verified: files,
        problems,
        ok,
        integrity: integrity && !ok,
        signatures_checked: !keys.is_empty(),
        keys: keys_found,
        summary,
        index: r.index,
    })
}

fn key_results(
    keys: &[PublicKey],
    sigs: &[SignatureCheck],
    model_sig: Option<&SignatureCheck>,
) -> Vec<KeyResult> {
    keys.iter()
        .map(|k| {
            let name = k.path.display().to_string();
            let by_key = |s: &&SignatureCheck| s.valid && s.key.as_deref() == Some(name.as_str());
            let oci: Vec<String> = sigs
                .iter()
                .filter(by_key)
                .map(|s| s.digest.clone())
                .collect();
            let oms = model_sig.iter().any(by_key);
            let mut what = oci
                .iter()
                .map(|d| format!("OCI signature {d}"))
                .collect::<Vec<_>>();
            if oms {
                what.push("model.sig".into());
            }
            let verified = !what.is_empty();
            KeyResult {
                message: if verified {
                    format!("{name} signed this bundle ({})", what.join(", "))
                } else {
                    format!("{name} did not sign this bundle (no signature by it verifies)")
                },
                key: name,
                verified,
                oci_signatures: oci,
                model_sig: oms,
            }
        })
        .collect()
}

/// The one summary line of `verify`.
fn summary(
    target: &str,
    digest: &str,
    ok: bool,
    keys: &[KeyResult],
    blobs: usize,
    files: usize,
    problems: &[String],
) -> String {
    let digests = format!("{blobs} blobs and {files} files match their digests");
    if !ok {
        return format!("FAILED: {target} {digest}: {}", problems.join("; "));
    }
    if keys.is_empty() {
        return format!(
            "NO SIGNATURE CHECKED: {target} {digest}: {digests}, but no --key was given, so no signature was verified (add --key PUB to check who signed it)"
        );
    }
    let by: Vec<&str> = keys
        .iter()
        .filter(|k| k.verified)
        .map(|k| k.key.as_str())
        .collect();
    let not: Vec<&str> = keys
        .iter()
        .filter(|k| !k.verified)
        .map(|k| k.key.as_str())
        .collect();
    let others = if !not.is_empty() {
        format!(
            "; {} did not sign it, which is fine: any one trusted key is enough (--require-all wants every key)",
            not.join(", ")
        )
    } else {
        String::new()
    };
    format!(
        "VERIFIED: {target} {digest}: signed by {}{others}; {digests}",
        by.join(", ")
    )
}

/// Check the OCI signatures of `target`: each referrer's result, and what fails the check
/// (none valid; with `require_all`, a key without a valid signature).
pub fn oci_signatures(
    src: &mut dyn Source,
    target: &Digest,
    keys: &[PublicKey],
    require_all: bool,
) -> Result<(Vec<SignatureCheck>, Vec<String>)> {
    let mut problems = Vec::new();
    let referrers = src.referrers(target)?;
    let mut sigs = Vec::new();
    for d in &referrers {
        let digest = d.digest().to_string();
        let res = check_signature(src, d, target, keys);
        if let Err(reason) = &res {
            if reason.starts_with("signs another manifest") {
                continue; // a signature of another bundle in the same layout
            }
        }
        sigs.push(if keys.is_empty() {
            SignatureCheck::not_checked(digest)
        } else {
            SignatureCheck::checked(digest, res)
        });
    }
    if keys.is_empty() {
        // `verify` without --key: digests and structure only, said plainly by the caller
    } else if sigs.is_empty() {
        problems.push(
            "no OCI signature: sign it with `mlart sign` or `mlart bundle --sign`".to_string(),
        );
    } else if require_all {
        for k in keys {
            let p = k.path.display().to_string();
            if !sigs.iter().any(|s| s.key.as_deref() == Some(p.as_str())) {
                problems.push(format!("no valid OCI signature by {p} (--require-all)"));
            }
        }
    } else if !sigs.iter().any(|s| s.valid) {
        problems.push(none_verifies(&sigs));
    }
    Ok((sigs, problems))
}

/// No OCI signature verifies: which keys did sign it, when their signatures name them.
fn none_verifies(sigs: &[SignatureCheck]) -> String {
    let mut signers: Vec<&str> = sigs
        .iter()
        .filter_map(|s| s.reason.as_deref().and_then(sign::other_signer))
        .collect();
    signers.dedup();
    match signers.is_empty() {
        true => "no OCI signature verifies with the keys given".to_string(),
        false => format!(
            "no OCI signature verifies with the keys given: it is signed by another key ({}). Give that key's public key (`--key PUB`; `mlart keygen` printed its hint), or sign the bundle with yours (`mlart sign`)",
            signers.join("; ")
        ),
    }
}

pub fn check_signature(
    src: &mut dyn Source,
    d: &oci_spec::image::Descriptor,
    target: &Digest,
    keys: &[PublicKey],
) -> std::result::Result<String, String> {
    let raw = layout::read_blob(src, d, 1 << 20).map_err(|e| e.to_string())?;
    let m: oci_spec::image::ImageManifest =
        serde_json::from_slice(&raw).map_err(|e| format!("not a manifest: {e}"))?;
    let subject = m.subject().as_ref().ok_or("no subject")?;
    if subject.digest().to_string() != target.as_str() {
        return Err(format!("signs another manifest ({})", subject.digest()));
    }
    let layer = m
        .layers()
        .iter()
        .find(|l| l.media_type().to_string() == crate::format::media_type::BUNDLE_MEDIA_TYPE)
        .ok_or("no Sigstore bundle layer")?;
    let b = layout::read_blob(src, layer, 1 << 20).map_err(|e| e.to_string())?;
    let (st, key) = sign::verify_bundle(&b, keys)?;
    sign::check_oci_statement(&st, target)?;
    Ok(key.path.display().to_string())
}

/// Add an OCI signature to a layout directory (index.json rewritten atomically) or an archive
/// (written again beside itself, then renamed over it).
pub fn sign_layout(
    dir: &std::path::Path,
    tag: Option<&str>,
    key: &sign::PrivateKey,
) -> Result<(Digest, Digest, bool)> {
    use crate::error::IoContext;
    let mut src = layout::open(dir)?;
    let r = layout::resolve_image(src.as_mut(), tag, "sign")?;
    let target = Digest::parse(r.descriptor.digest().as_ref()).map_err(Error::Input)?;
    let metadata = crate::store::metadata::read_metadata(src.as_mut(), &r.manifest)?;
    let sig = sign::oci_signature(
        key,
        &metadata.name,
        crate::format::media_type::MANIFEST_MEDIA_TYPE,
        &target,
        r.raw.len() as u64,
    );
    if !dir.is_dir() {
        // An archive is written again beside itself with the signature, then renamed over
        // the old file (as `attest ARCHIVE`): nothing changes on failure.
        drop(src);
        let refs = [crate::store::referrers::Referrer::from_signature(&sig)];
        let added = crate::store::referrers::add_to_local(dir, &refs)? > 0;
        return Ok((target, sig.digest, added));
    }
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(&src.index_bytes()?)
        .map_err(|e| Error::input(format!("index.json: {e}")))?;
    let manifests = index["manifests"]
        .as_array_mut()
        .ok_or_else(|| Error::input("index.json has no manifests"))?;
    let added = !manifests.iter().any(|m| m["digest"] == sig.digest.as_str());
    let blobs = dir.join("blobs/sha256");
    for b in [&sig.config, &sig.bundle, &sig.manifest] {
        let p = blobs.join(Digest::of(b).hex());
        if !p.exists() {
            let tmp = tempfile::NamedTempFile::new_in(&blobs).ctx("writing in", &blobs)?;
            std::fs::write(tmp.path(), b).ctx("writing", tmp.path())?;
            tmp.persist(&p).map_err(|e| Error::Io {
                context: format!("writing {}", p.display()),
                source: e.error,
            })?;
        }
    }
    if added {
        manifests
            .push(serde_json::to_value(layout::signature_descriptor(&sig)).expect("descriptor"));
        let tmp = tempfile::NamedTempFile::new_in(dir).ctx("writing in", dir)?;
        std::fs::write(tmp.path(), crate::format::json::to_canonical_bytes(&index))
            .ctx("writing", tmp.path())?;
        tmp.persist(&index_path).map_err(|e| Error::Io {
            context: format!("writing {}", index_path.display()),
            source: e.error,
        })?;
    }
    Ok((target, sig.digest, added))
}

/// What a verify problem says of `rel`, found in a layer but not in the metadata: a whiteout
/// (an OCI layer's mark that deletes a lower file, `DIR/.wh.NAME`, or hides a whole
/// directory, `DIR/.wh..wh..opq`) is named as the deletion it is.
fn stray_entry(rel: &str) -> String {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, rel),
    };
    match name.strip_prefix(".wh.") {
        Some(".wh..opq") => format!(
            "{}: emptied by an opaque whiteout ({rel}) in a layer the metadata does not have",
            dir.map_or_else(|| "the bundle's folder".to_string(), |d| format!("{d}/"))
        ),
        Some(gone) => format!(
            "{}: deleted by a whiteout ({rel}) in a layer the metadata does not have",
            dir.map_or_else(|| gone.to_string(), |d| format!("{d}/{gone}"))
        ),
        None => format!("{rel}: in a layer but not in the metadata"),
    }
}
