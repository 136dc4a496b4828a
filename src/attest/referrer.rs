//! Attestations as OCI referrers: the manifest that holds one (empty config, one Sigstore
//! bundle v0.3 layer with the DSSE envelope, `subject` = the bundle's manifest, artifactType
//! naming the predicate), storing them (a layout's index.json, any `store::Sink`), and reading
//! and checking them back from any `store::Source`.

use super::summary::{Statement, Summary};
use super::{Made, Subject};
use crate::error::Result;
use crate::format::attestation::{AttestationKind, PREDICATE_ANNOTATION};
use crate::format::digest::Digest;
use crate::format::media_type::{BUNDLE_MEDIA_TYPE, EMPTY_CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::signature::INTOTO_STATEMENT;
use crate::sign::PublicKey;
use crate::store::referrers::{Blob, BlobWriter, Referrer};
use crate::store::{layout, Sink, Source};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

/// The referrer that stores a signed envelope of `kind` about `subject`.
pub fn referrer(kind: AttestationKind, envelope: Blob, subject: &Subject) -> Referrer {
    let config = Blob::of(b"{}".to_vec());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": kind.artifact_type(),
        "config": {"mediaType": EMPTY_CONFIG_MEDIA_TYPE, "digest": config.digest.as_str(), "size": config.size},
        "layers": [{"mediaType": BUNDLE_MEDIA_TYPE, "digest": envelope.digest.as_str(), "size": envelope.size}],
        "subject": {"mediaType": subject.media_type, "digest": subject.manifest.as_str(), "size": subject.size},
        "annotations": {
            "dev.sigstore.bundle.content": "dsse-envelope",
            PREDICATE_ANNOTATION: kind.predicate_type(),
        },
    });
    Referrer {
        manifest: crate::format::json::to_canonical_bytes(&manifest),
        blobs: vec![config, envelope],
    }
}

/// Store attestations in any sink (a registry: with the referrers tag-schema fallback).
/// Returns the fallback tag when one was updated.
pub fn attach(sink: &dyn Sink, subject: &Digest, made: &[Made]) -> Result<Option<String>> {
    let refs: Vec<Referrer> = made.iter().map(|m| m.referrer.clone()).collect();
    crate::store::copy::copy_referrers(sink, subject, &refs)
}

/// Add attestations to a layout directory or an archive (rewritten beside itself, then
/// renamed over it: nothing changes on failure). Returns how many were new.
pub fn attach_local(path: &Path, made: &[Made]) -> Result<usize> {
    let refs: Vec<Referrer> = made.iter().map(|m| m.referrer.clone()).collect();
    crate::store::referrers::add_to_local(path, &refs)
}

/// An attestation found beside a bundle, and what checking it said.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    pub kind: AttestationKind,
    /// The referrer manifest's digest.
    pub digest: String,
    pub predicate_type: String,
    /// The signature verified with a trusted key (this one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub verified: bool,
    /// Why it does not hold (None: it does, or no key was given to check it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What its statement says (verified when `verified`, else as read, for `inspect`): the
    /// provenance summary or the ML-BOM's component counts; its per-file lists were counted as
    /// they were read, never held.
    #[serde(skip)]
    pub summary: Option<Summary>,
    /// The envelope (the Sigstore bundle) when it holds, as it was stored: what `pull`
    /// writes. In memory when small, else in a temp file.
    #[serde(skip)]
    pub envelope: Option<Blob>,
}

impl Found {
    /// The provenance summary, when it is one that was read.
    pub fn provenance(&self) -> Option<&super::provenance::Summary> {
        match &self.summary {
            Some(Summary::Provenance(s)) => Some(s),
            _ => None,
        }
    }
}

/// Read the attestations of the manifest `subject` from `src`. With `keys`, each envelope's
/// signature is checked (else they are read unverified, for `inspect`); every one is checked
/// to be an in-toto statement of its predicate about `subject`. Attestations of other
/// manifests are left out. Each envelope is read as it streams (into memory when small, else a
/// temp file), whatever its size: memory does not grow with the bundle's file count.
pub fn read(src: &dyn Source, subject: &Digest, keys: &[PublicKey]) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for d in src.attestation_referrers(subject)? {
        let kind = d
            .artifact_type()
            .as_ref()
            .and_then(|a| AttestationKind::of_artifact_type(a.as_ref()));
        let Some(kind) = kind else { continue };
        let digest = d.digest().to_string();
        let mut found = Found {
            kind,
            digest: digest.clone(),
            predicate_type: String::new(),
            key: None,
            verified: false,
            problem: None,
            summary: None,
            envelope: None,
        };
        match check_one(src, &d, subject, kind, keys) {
            Ok(None) => continue, // another manifest's
            Ok(Some(Checked {
                statement,
                key,
                envelope,
            })) => {
                found.predicate_type = statement.predicate_type.unwrap_or_default();
                found.verified = key.is_some();
                found.key = key;
                found.summary = Some(statement.summary);
                found.envelope = Some(envelope);
            }
            Err(why) => found.problem = Some(why),
        }
        out.push(found);
    }
    out.sort_by(|a, b| (a.kind, &a.digest).cmp(&(b.kind, &b.digest)));
    Ok(out)
}

/// An attestation that holds: its statement, the key that verified it (with keys), its
/// envelope.
struct Checked {
    statement: Statement,
    key: Option<String>,
    envelope: Blob,
}

/// One referrer: Ok(None) when it is about another manifest; what it holds when it does;
/// Err(why) when it does not.
fn check_one(
    src: &dyn Source,
    d: &oci_spec::image::Descriptor,
    subject: &Digest,
    kind: AttestationKind,
    keys: &[PublicKey],
) -> std::result::Result<Option<Checked>, String> {
    let raw = layout::read_blob(src, d, crate::format::media_type::MAX_MANIFEST_BYTES)
        .map_err(|e| format!("its manifest cannot be read: {e}"))?;
    let m: oci_spec::image::ImageManifest =
        serde_json::from_slice(&raw).map_err(|e| format!("not an OCI manifest: {e}"))?;
    match m.subject() {
        Some(s) if s.digest().to_string() == subject.as_str() => {}
        Some(_) => return Ok(None),
        None => return Err("the referrer has no subject".into()),
    }
    let layer = m
        .layers()
        .iter()
        .find(|l| l.media_type().to_string() == BUNDLE_MEDIA_TYPE)
        .ok_or("the referrer holds no Sigstore bundle layer")?;
    // The envelope, verified against its digest as it is read (into memory, or a temp file).
    let envelope = (|| {
        let r = crate::store::BlobRef::of(layer).map_err(|e| e.to_string())?;
        let mut from = src
            .open_blob_verified(&r.digest, r.size)
            .map_err(|e| e.to_string())?;
        let mut w = BlobWriter::default();
        std::io::copy(&mut from, &mut w).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())
    })()
    .map_err(|e| format!("its envelope cannot be read: {e}"))?;
    let (mut payload, key) = crate::sign::open_streamed(&mut envelope.open(), keys)?;
    let statement = payload
        .reader()
        .map_err(|e| format!("reading its payload back: {e}"))
        .and_then(|r| super::summary::read(kind, std::io::BufReader::new(r)))?;
    let key = key.map(|k| k.path.display().to_string());
    if statement.type_.as_deref() != Some(INTOTO_STATEMENT) {
        let what = statement.type_.as_deref().unwrap_or("no _type");
        return Err(if key.is_some() {
            format!("the signed payload is not an in-toto statement v1 ({what})")
        } else {
            format!("not an in-toto statement v1 ({what})")
        });
    }
    if statement.predicate_type.as_deref() != Some(kind.predicate_type()) {
        return Err(format!(
            "its predicateType is {}, not {} as its artifactType says",
            statement.predicate_type.as_deref().unwrap_or("absent"),
            kind.predicate_type()
        ));
    }
    let about_subject = statement
        .subject
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["digest"]["sha256"] == subject.hex()));
    if !about_subject {
        return Err(format!(
            "its signed subject is another bundle, not {subject}: it was made for a different manifest"
        ));
    }
    Ok(Some(Checked {
        statement,
        key,
        envelope,
    }))
}

/// What `verify --require` says of the attestations found: one problem per required kind
/// that has no attestation which verified.
pub fn requirement_problems(found: &[Found], required: &[AttestationKind]) -> Vec<String> {
    let mut problems = Vec::new();
    for k in required {
        if found
            .iter()
            .any(|f| f.kind == *k && f.verified && f.problem.is_none())
        {
            continue;
        }
        let bad: Vec<String> = found
            .iter()
            .filter(|f| f.kind == *k)
            .map(|f| {
                format!(
                    "{} ({})",
                    f.digest,
                    f.problem.as_deref().unwrap_or("not verified")
                )
            })
            .collect();
        problems.push(if bad.is_empty() {
            format!(
                "no {k} attestation: make one with `mlart attest TARGET --key KEY` (or `mlart bundle --sign KEY --attest`)"
            )
        } else {
            format!("no valid {k} attestation: {}", bad.join("; "))
        });
    }
    problems
}
