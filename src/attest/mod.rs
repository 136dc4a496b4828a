//! Attestations: a SLSA Provenance v1 statement (where a bundle came from) and a CycloneDX 1.6
//! ML-BOM (what is in it), each an in-toto Statement v1 signed into a DSSE envelope (in a
//! Sigstore bundle v0.3, with `sign`'s keys) and stored as an OCI referrer of the bundle's
//! manifest whose artifactType names the predicate.
//!
//! A library of documents and envelopes: it reads and writes through `store` (a layout, an
//! archive or a registry as a `Source`/`Sink`), never through `build`, `registry` or `check`.
//! The documents are deterministic: they are made of the bundle's metadata, the spec file's
//! digest and the git state, never of the clock.

pub mod git;
pub mod mlbom;
pub mod provenance;
pub mod referrer;
pub mod summary;

use crate::error::{Error, Result};
use crate::format::attestation::AttestationKind;
use crate::format::digest::Digest;
use crate::format::digest::HashInto;
use crate::format::metadata::{FileEntry, Metadata};
use crate::sign::PrivateKey;
use crate::store::entries::Entries;
use crate::store::referrers::{Blob, BlobWriter, Referrer};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};
use std::sync::Arc;

pub use referrer::{attach_local, read, Found};

/// What the attestations are about: the bundle's manifest (and its config).
#[derive(Clone, Debug)]
pub struct Subject {
    pub manifest: Digest,
    pub media_type: String,
    pub size: u64,
    pub config: Digest,
}

/// The spec file a bundle was made from (path relative to the project, sha256 hex).
#[derive(Clone, Debug)]
pub struct SpecFile {
    pub path: String,
    pub sha256: String,
}

/// Everything the two documents are made of.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The bundle's metadata, its files a list on disk past a few MiB (read in order, one
    /// entry at a time: the documents list every file, and are written as they are read).
    pub metadata: &'a Metadata<Arc<Entries>>,
    pub subject: Subject,
    /// The spec file: known to `bundle`, and to `attest -f SPEC`.
    pub spec: Option<SpecFile>,
    /// The project's git state at build time (provenance only).
    pub git: Option<git::GitState>,
}

impl Inputs<'_> {
    /// The in-toto subjects: the manifest, then the config.
    fn subjects(&self) -> Value {
        let m = self.metadata;
        serde_json::json!([
            {"name": format!("{}:{}", m.name, m.version), "digest": {"sha256": self.subject.manifest.hex()}},
            {"name": format!("{}:{}/config", m.name, m.version), "digest": {"sha256": self.subject.config.hex()}},
        ])
    }

    /// The model files (`kind: model`): the ML-BOM names them up front.
    fn models(&self) -> Result<Vec<FileEntry>> {
        let mut out = Vec::new();
        for f in self.metadata.files.iter() {
            let f = f?;
            if f.kind == crate::format::metadata::Kind::Model {
                out.push(f);
            }
        }
        Ok(out)
    }
}

/// Where a statement's tree holds its per-file entries: a string element, the last of its
/// array, replaced by one element per file as the bytes are written (`write_statement`).
pub(crate) const FILES_HOLE: &str = "\u{1}mlart:per-file-entries\u{1}";

/// How a statement's tree lists the bundle's files.
pub(crate) enum Files<'a> {
    /// Where they go (`FILES_HOLE`): the bytes are written from the list (`write_statement`).
    Hole,
    /// Listed, each as its element (the tree in memory: tests compare the bytes).
    #[cfg_attr(not(test), allow(dead_code))]
    Listed(&'a [FileEntry]),
}

impl Files<'_> {
    /// Add the per-file elements (or the hole) to `list`.
    pub(crate) fn fill(&self, list: &mut Vec<Value>, each: impl Fn(&FileEntry) -> Value) {
        match self {
            Files::Hole => list.push(Value::from(FILES_HOLE)),
            Files::Listed(files) => list.extend(files.iter().map(each)),
        }
    }
}

fn io_err(e: io::Error) -> Error {
    Error::Io {
        context:
            "writing an attestation (into memory, or into a temp file in $TMPDIR when it is big)"
                .into(),
        source: e,
    }
}

fn internal(what: String) -> Error {
    Error::of(
        crate::error::Kind::Internal,
        format!("writing an attestation: {what}"),
    )
}

/// The canonical compact bytes of `tree` (which holds `FILES_HOLE` once, as the last element
/// of an array), the hole replaced by `each` of every file of `files`, in order: the bytes of
/// `to_canonical_bytes` of the tree with those elements in it, without the tree.
pub(crate) fn write_statement(
    w: &mut dyn Write,
    tree: &Value,
    files: &Entries,
    each: impl Fn(&FileEntry) -> Value,
) -> Result<()> {
    let bytes = crate::format::json::to_canonical_bytes(tree);
    let hole = crate::format::json::to_canonical_bytes(&FILES_HOLE);
    let mut at = bytes
        .windows(hole.len())
        .enumerate()
        .filter(|(_, w)| *w == hole);
    let (Some((i, _)), None) = (at.next(), at.next()) else {
        return Err(internal(
            "the statement has no single place for its files".into(),
        ));
    };
    let (mut before, after) = (&bytes[..i], &bytes[i + hole.len()..]);
    if !after.starts_with(b"]") {
        return Err(internal(
            "the place for the files is not the end of a list".into(),
        ));
    }
    // (no files: the comma before the hole goes with it)
    if files.is_empty() && before.ends_with(b",") {
        before = &before[..before.len() - 1];
    }
    let mut first = true;
    w.write_all(before).map_err(io_err)?;
    for f in files.iter() {
        let f = f?;
        if !first {
            w.write_all(b",").map_err(io_err)?;
        }
        first = false;
        w.write_all(&crate::format::json::to_canonical_bytes(&each(&f)))
            .map_err(io_err)?;
    }
    w.write_all(after).map_err(io_err)
}

/// The statement of `kind` for `inputs`, written as its canonical compact bytes.
pub fn write(kind: AttestationKind, inputs: &Inputs, w: &mut dyn Write) -> Result<()> {
    match kind {
        AttestationKind::Provenance => provenance::write(inputs, w),
        AttestationKind::Sbom => mlbom::write(inputs, &inputs.models()?, w),
    }
}

/// The statement of `kind` for `inputs` as a tree, every file in it (tests: the streamed
/// bytes are this tree's canonical bytes).
#[cfg(test)]
pub fn statement(kind: AttestationKind, inputs: &Inputs) -> Value {
    let files = inputs.metadata.files.to_vec().unwrap();
    match kind {
        AttestationKind::Provenance => provenance::tree(inputs, Files::Listed(&files)),
        AttestationKind::Sbom => {
            mlbom::statement_tree(inputs, &inputs.models().unwrap(), Files::Listed(&files))
        }
    }
}

/// One attestation made: its kind and the referrer that stores it (its envelope in memory,
/// or in a temp file for a large bundle).
#[derive(Clone, Debug)]
pub struct Made {
    pub kind: AttestationKind,
    pub referrer: Referrer,
}

/// Make and sign both attestations (deterministic: the same inputs and key give the same
/// bytes, RFC 6979); each DSSE signature names its key by `sign::key_id`. Each statement is
/// written as it is made into a spool (memory, then a temp file), hashed for its signature,
/// and copied once more as base64 into its envelope: memory does not grow with the files.
pub fn make(key: &PrivateKey, inputs: &Inputs) -> Result<Vec<Made>> {
    AttestationKind::ALL
        .into_iter()
        .map(|kind| {
            let envelope = envelope(key, kind, inputs)?;
            Ok(Made {
                kind,
                referrer: referrer::referrer(kind, envelope, &inputs.subject),
            })
        })
        .collect()
}

/// The signed envelope (a Sigstore bundle) of the statement of `kind`: the same bytes as
/// `sign::sign_attestation` of its tree.
fn envelope(key: &PrivateKey, kind: AttestationKind, inputs: &Inputs) -> Result<Blob> {
    let mut payload = BlobWriter::default();
    {
        let mut w = io::BufWriter::with_capacity(64 << 10, &mut payload);
        write(kind, inputs, &mut w)?;
        w.flush().map_err(io_err)?;
    }
    let payload = payload.finish().map_err(io_err)?;
    let mut pae = Sha256::new();
    pae.update(crate::sign::pae_header(payload.size).as_bytes());
    io::copy(&mut payload.open(), &mut HashInto(&mut pae)).map_err(io_err)?;
    let (before, after) =
        crate::sign::sign_streamed_attestation(key, &pae.finalize().into()).map_err(internal)?;
    let mut env = BlobWriter::default();
    {
        let mut w = io::BufWriter::with_capacity(64 << 10, &mut env);
        w.write_all(&before).map_err(io_err)?;
        let mut b64 =
            base64::write::EncoderWriter::new(&mut w, &base64::engine::general_purpose::STANDARD);
        io::copy(&mut payload.open(), &mut b64).map_err(io_err)?;
        b64.finish().map_err(io_err)?;
        drop(b64);
        w.write_all(&after).map_err(io_err)?;
        w.flush().map_err(io_err)?;
    }
    env.finish().map_err(io_err)
}

/// The digest `algorithm:hex` as an in-toto DigestSet (`{"sha256": hex}`).
pub(crate) fn digest_set(d: &str) -> Option<Value> {
    let (alg, hex) = crate::format::lineage::parse_digest(d).ok()?;
    Some(serde_json::json!({ alg: hex }))
}

/// `sha256:<hex>` or `<hex>` -> `<hex>`.
pub(crate) fn hex_of(sha256: &str) -> &str {
    sha256.strip_prefix("sha256:").unwrap_or(sha256)
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::*;
    use crate::format::lineage::{BaseModel, Dataset, Lineage, Training};

    /// A metadata document as the iris example's, with lineage (its files a list).
    pub fn metadata() -> Metadata<Arc<Entries>> {
        let mut m = metadata_listed();
        m.files.sort_by(|a, b| a.path.cmp(&b.path));
        let files = Arc::new(Entries::of(&m.files).unwrap());
        m.with_files(files)
    }

    /// The same, its files in memory.
    pub fn metadata_listed() -> Metadata {
        let mut m: Metadata = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "iris", "version": "1.0.0", "form": "image",
            "license": "Apache-2.0", "description": "iris classifier",
            "source": "https://github.com/mlart-dev/mlart", "revision": "abc",
            "created": "1970-01-01T00:00:00Z",
            "files": [
                {"path": "model/iris.onnx", "kind": "model", "size": 10, "sha256": format!("sha256:{}", "11".repeat(32)), "layer": format!("sha256:{}", "aa".repeat(32))},
                {"path": "requirements.txt", "kind": "env", "size": 5, "sha256": format!("sha256:{}", "22".repeat(32)), "layer": format!("sha256:{}", "bb".repeat(32))},
                {"path": "data/train.csv", "kind": "data", "size": 5, "sha256": format!("sha256:{}", "33".repeat(32)), "layer": format!("sha256:{}", "bb".repeat(32))},
            ],
            "models": [{"path": "model/iris.onnx", "format": "onnx", "framework": "scikit-learn", "size": 10, "sha256": format!("sha256:{}", "11".repeat(32)),
                "io": {"inputs": [{"name": "x", "kind": "tensor", "dtype": "float32", "type": "tensor(float32)[N,4]"}], "outputs": [{"name": "label", "kind": "tensor", "dtype": "int64", "type": "tensor(int64)[N]"}]}}],
            "schema": {"source": "mlart", "file": "schema/features.yaml", "features": [{"name": "sepal_length", "dtype": "float32"}], "outputs": [{"name": "species", "dtype": "string"}]},
            "metrics": {"accuracy": 0.97, "f1": 0.96, "broken": null},
            "metric_sources": {"accuracy": "eval/metrics.json"},
            "env": {"files": ["requirements.txt", "environment.yml"], "packages": {"numpy": "==2.1.0", "scikit-learn": ">=1.5", "pandas": "=2.2.3=py311_0", "onnx": "==1.17"}, "python": "3.11"},
        }))
        .unwrap();
        m.lineage = Lineage {
            datasets: vec![
                Dataset {
                    name: "iris".into(),
                    uri: Some("https://archive.ics.uci.edu/iris.data".into()),
                    digest: Some(format!("sha256:{}", "44".repeat(32))),
                },
                Dataset {
                    name: "holdout".into(),
                    uri: None,
                    digest: None,
                },
            ],
            base_model: Some(BaseModel {
                reference: None,
                uri: Some("https://huggingface.co/org/base".into()),
                digest: Some(format!("sha256:{}", "55".repeat(32))),
            }),
            training: Some(Training {
                command: Some("python train.py --seed 0".into()),
                parameters: [("C".to_string(), serde_json::json!(1.0))].into(),
                task: Some("classification".into()),
                architecture: Some("logistic-regression".into()),
                ..Default::default()
            }),
        };
        m
    }

    pub fn inputs(m: &Metadata<Arc<Entries>>) -> Inputs<'_> {
        Inputs {
            metadata: m,
            subject: Subject {
                manifest: Digest::of(b"manifest"),
                media_type: crate::format::media_type::MANIFEST_MEDIA_TYPE.into(),
                size: 8,
                config: Digest::of(b"config"),
            },
            spec: Some(SpecFile {
                path: "mlart.yaml".into(),
                sha256: "66".repeat(32),
            }),
            git: Some(git::GitState {
                commit: "77".repeat(20),
                remote: Some("https://github.com/mlart-dev/mlart.git".into()),
                dirty: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::metadata::Kind;

    fn key() -> PrivateKey {
        PrivateKey {
            key: p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap(),
            path: "k.key".into(),
        }
    }

    /// The streamed envelopes are `sign_attestation`'s bytes of the statements' trees, and
    /// the referrers the same.
    fn same_as_the_trees(m: &Metadata<Arc<Entries>>, git: bool) -> Vec<Made> {
        let mut i = testdata::inputs(m);
        if !git {
            i.git = None;
        }
        let made = make(&key(), &i).unwrap();
        for (kind, got) in AttestationKind::ALL.into_iter().zip(&made) {
            assert_eq!(got.kind, kind);
            let want = crate::sign::sign_attestation(&key(), &statement(kind, &i));
            let env = &got.referrer.blobs[1];
            assert!(
                env.to_vec().unwrap() == want,
                "{kind}: the envelopes differ"
            );
            let old = referrer::referrer(kind, Blob::of(want), &i.subject);
            assert_eq!(got.referrer.manifest, old.manifest, "{kind}");
            assert_eq!(got.referrer.digest(), old.digest());
        }
        made
    }

    #[test]
    fn streamed_attestations_are_the_trees_bytes() {
        same_as_the_trees(&testdata::metadata(), true);
        // no files, no lineage, no git: the lists hold nothing but the files' place
        let mut m = testdata::metadata_listed();
        m.lineage = Default::default();
        m.env = None;
        m.files.clear();
        let m = m.with_files(Arc::new(Entries::of(&[]).unwrap()));
        same_as_the_trees(&m, false);
        // names JSON escapes, and 25,000 files: the envelopes go to temp files
        let mut listed = testdata::metadata_listed();
        let layer: Arc<str> = format!("sha256:{}", "aa".repeat(32)).into();
        let mut paths: Vec<String> = vec!["a b/\"q\"\\.txt".into(), "é/ü\u{1}.bin".into()];
        paths.extend((0..25_000).map(|i| format!("d{}/f{i:05}", i % 7)));
        paths.sort();
        listed.files = paths
            .iter()
            .enumerate()
            .map(|(i, p)| FileEntry {
                archive: false,
                kind: if i % 5000 == 0 {
                    Kind::Model
                } else {
                    Kind::Data
                },
                layer: layer.clone(),
                path: p.clone(),
                sha256: format!("sha256:{}", hex::encode(Sha256::digest(i.to_le_bytes()))),
                size: i as u64,
            })
            .collect();
        let files = Arc::new(Entries::of(&listed.files).unwrap());
        let made = same_as_the_trees(&listed.with_files(files), true);
        // (the models among them named up front in the ML-BOM)
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|m| m.referrer.blobs[1].on_disk()));
    }

    #[test]
    fn a_tree_without_one_place_for_the_files_is_an_error() {
        let files = Entries::of(&[]).unwrap();
        for tree in [
            serde_json::json!({"a": []}),
            serde_json::json!({"a": [FILES_HOLE], "b": [FILES_HOLE]}),
            serde_json::json!({"a": [FILES_HOLE, 1]}),
        ] {
            let e = write_statement(&mut Vec::new(), &tree, &files, |_| Value::Null);
            assert!(e.is_err(), "{tree}");
        }
    }
}
