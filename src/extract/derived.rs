//! The `mlart.json` a pull writes into the folder of another tool's artifact (a ModelPack by
//! modctl or `modelpack-client`, a KitOps ModelKit, a Docker model): that artifact carries no
//! mlart.json, so without one `mlart verify DIR` and `mlart serve DIR` had nothing to read.
//!
//! It is made from what the pull wrote (every file, those unpacked from tar layers too, with
//! the sha256 computed as it was written) and from the metadata mlart makes of the manifest
//! (name, version, the models' formats as the ModelPack media types and config say). It says
//! what it is: `dialect` and a `derived` key (by `mlart pull`, the manifest digest, the
//! reference). No signature covers it, and none is made up for it.

use crate::error::{IoContext, Result};
use crate::format::digest::Digest;
use crate::format::metadata::{
    Derived, Form, Metadata, Metrics, ModelEntry, FORMAT_VERSION, METADATA_FILE,
};
use crate::format::signature::OMS_FILE;
use crate::store::entries::Entries;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// What wrote it, in the document's `derived.by`.
pub const BY: &str = "mlart pull";

/// The document, its fields in key order (written straight, as every mlart.json is: a
/// million files are streamed from `files`, never held). The fields of [`Metadata`] an
/// artifact of another tool cannot give (base, env, lineage, schema, validation) are absent.
#[derive(Serialize)]
struct Doc<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    authors: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<&'a str>,
    derived: &'a Derived,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dialect: Option<&'a str>,
    files: &'a Entries,
    form: Form,
    format_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    license: Option<&'a str>,
    metric_sources: &'a BTreeMap<String, String>,
    metrics: &'a Metrics,
    models: &'a [ModelEntry],
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    version: &'a str,
}

fn doc<'a>(
    meta: &'a Metadata<Entries>,
    files: &'a Entries,
    derived: &'a Derived,
    models: &'a [ModelEntry],
) -> Doc<'a> {
    Doc {
        authors: &meta.authors,
        created: meta.created.as_deref(),
        derived,
        description: meta.description.as_deref(),
        dialect: meta.dialect.as_deref(),
        files,
        form: meta.form,
        format_version: FORMAT_VERSION,
        license: meta.license.as_deref(),
        metric_sources: &meta.metric_sources,
        metrics: &meta.metrics,
        models,
        name: &meta.name,
        revision: meta.revision.as_deref(),
        source: meta.source.as_deref(),
        version: &meta.version,
    }
}

/// Write `root/mlart.json` for the files a pull of another tool's artifact wrote into `root`
/// (`files`, in path order) and its metadata as made from the manifest (`meta`). `Ok(Err)`:
/// nothing was written, and why (a warning): the artifact has a file `mlart.json` of its own
/// (never overwritten), or a `model.sig` (which an added file would fail).
pub fn write(
    root: &Path,
    meta: &Metadata<Entries>,
    files: &Entries,
    manifest: &Digest,
    reference: &str,
) -> Result<std::result::Result<Derived, String>> {
    for (name, why) in [
        (METADATA_FILE, "its own file of that name was written as it is (never overwritten): `mlart verify DIR` and `mlart serve DIR` read that file, which mlart did not make; serve or verify the reference itself"),
        (OMS_FILE, "the artifact carries a model.sig, which a file added beside the ones it signs would fail: `mlart verify DIR` checks the files against it"),
    ] {
        if std::fs::symlink_metadata(root.join(name)).is_ok() {
            return Ok(Err(format!(
                "{name} is one of the artifact's files, so no {METADATA_FILE} describing the pull was written: {why}"
            )));
        }
    }
    let derived = Derived {
        by: BY.into(),
        dialect: meta.dialect.clone().unwrap_or_default(),
        manifest: manifest.to_string(),
        reference: reference.into(),
    };
    let models = models(meta, files)?;
    let doc = doc(meta, files, &derived, &models);
    // A temp file beside it, then renamed (never over a file of that name: one that appeared
    // meanwhile is kept, and the pull fails).
    let dest = root.join(METADATA_FILE);
    let tmp = tempfile::NamedTempFile::new_in(root).ctx("writing in", root)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        let straight =
            crate::format::json::write_canonical_pretty(&doc, &mut w).ctx("writing", &dest)?;
        if !straight {
            // (not reached: Doc is in key order, as a unit test checks)
            drop(w);
            tmp.as_file().set_len(0).ctx("writing", &dest)?;
            let mut f = tmp.as_file();
            std::io::Seek::rewind(&mut f).ctx("writing", &dest)?;
            f.write_all(&crate::format::json::to_canonical_pretty(&doc))
                .ctx("writing", &dest)?;
        } else {
            w.flush().ctx("writing", &dest)?;
        }
    }
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .ctx("writing", &dest)?;
    tmp.as_file().sync_all().ctx("writing", &dest)?;
    tmp.persist_noclobber(&dest)
        .map_err(|e| e.error)
        .ctx("writing", &dest)?;
    Ok(Ok(derived))
}

/// The models: each file of kind `model` written, with the format the metadata made of the
/// manifest gives a raw weight layer (its name, else the ModelPack config's `format`), or,
/// for a file unpacked from a tar layer, the format its name says. A file of a weight tar
/// whose name says no model format (a README, a LICENSE) is listed under `files` only.
fn models(meta: &Metadata<Entries>, files: &Entries) -> Result<Vec<ModelEntry>> {
    let raw: HashMap<&str, &Option<String>> = meta
        .models
        .iter()
        .map(|m| (m.path.as_str(), &m.format))
        .collect();
    let mut archives: HashSet<Arc<str>> = HashSet::new();
    for f in meta.files.iter() {
        let f = f?;
        if f.archive {
            archives.insert(f.layer);
        }
    }
    let mut out = Vec::new();
    for f in files.iter() {
        let f = f?;
        if f.kind != crate::format::metadata::Kind::Model {
            continue;
        }
        let format = match raw.get(f.path.as_str()) {
            Some(format) if !archives.contains(&f.layer) => (*format).clone(),
            _ => match crate::format::dialect::model_format(&f.path) {
                Some(format) => Some(format),
                None if archives.contains(&f.layer) => continue,
                None => None,
            },
        };
        out.push(ModelEntry {
            format,
            framework: None,
            io: None,
            path: f.path,
            samples: None,
            sha256: f.sha256,
            size: f.size,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::metadata::{FileEntry, Kind};

    fn entry(path: &str, kind: Kind, layer: &str, archive: bool) -> FileEntry {
        FileEntry {
            archive,
            kind,
            layer: Arc::from(layer),
            path: path.into(),
            sha256: format!("sha256:{}", "ab".repeat(32)),
            size: 3,
        }
    }

    fn layer(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// What the pull of a ModelPack with a raw weight (its format from the config) and a tar
    /// of weights and a README gets: every file listed, the models with their formats, the
    /// document marked as derived, written straight in key order, and read back by mlart.
    #[test]
    fn writes_every_file_and_the_models_and_says_it_is_derived() {
        let (raw, tar, docs) = (layer('a'), layer('b'), layer('c'));
        let meta: Metadata = Metadata {
            authors: vec!["team".into()],
            base: None,
            created: None,
            description: Some("d".into()),
            dialect: Some("modelpack".into()),
            env: None,
            files: vec![
                entry("docs", Kind::Docs, &docs, true),
                entry("model.weights", Kind::Model, &raw, false),
                entry("shards", Kind::Model, &tar, true),
            ],
            form: Form::Modelpack,
            format_version: FORMAT_VERSION,
            license: Some("MIT".into()),
            lineage: Default::default(),
            metric_sources: Default::default(),
            metrics: Default::default(),
            models: vec![ModelEntry {
                format: Some("onnx".into()),
                framework: None,
                io: None,
                path: "model.weights".into(),
                samples: None,
                sha256: raw.clone(),
                size: 3,
            }],
            name: "n".into(),
            revision: None,
            schema: None,
            source: None,
            validation: None,
            version: "1".into(),
        };
        let meta = meta.clone().with_files(Entries::of(&meta.files).unwrap());
        let written = Entries::of(&[
            entry("docs/README.md", Kind::Docs, &docs, false),
            entry("model.weights", Kind::Model, &raw, false),
            entry("shards/README.md", Kind::Model, &tar, false),
            entry("shards/a.safetensors", Kind::Model, &tar, false),
        ])
        .unwrap();
        let t = tempfile::tempdir().unwrap();
        let digest = Digest::parse(&layer('d')).unwrap();
        let d = write(t.path(), &meta, &written, &digest, "reg/x:1")
            .unwrap()
            .unwrap();
        assert_eq!(d.manifest, layer('d'));
        let bytes = std::fs::read(t.path().join(METADATA_FILE)).unwrap();
        let back: Metadata = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.dialect.as_deref(), Some("modelpack"));
        assert_eq!((back.name.as_str(), back.version.as_str()), ("n", "1"));
        let paths: Vec<&str> = back.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "docs/README.md",
                "model.weights",
                "shards/README.md",
                "shards/a.safetensors"
            ]
        );
        assert!(back.files.iter().all(|f| !f.archive));
        let formats: Vec<(&str, Option<&str>)> = back
            .models
            .iter()
            .map(|m| (m.path.as_str(), m.format.as_deref()))
            .collect();
        assert_eq!(
            formats,
            [
                ("model.weights", Some("onnx")),
                ("shards/a.safetensors", Some("safetensors"))
            ]
        );
        let marked: crate::format::metadata::DerivedDoc = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(marked.derived.as_ref(), Some(&d));
        // in key order: the same bytes as the sorted tree
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            bytes,
            crate::format::json::to_canonical_pretty(&crate::format::json::canonical(v))
        );
        // ... written straight: no tree of a big list is built
        let listed = models(&meta, &written).unwrap();
        let straight = crate::format::json::in_order(
            &doc(&meta, &written, &d, &listed),
            serde_json::ser::PrettyFormatter::new(),
        );
        assert!(straight.is_some_and(|mut s| {
            s.push(b'\n');
            s == bytes
        }));
        let no_temp: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(no_temp, [METADATA_FILE]);

        // a file of the artifact named mlart.json (or model.sig) is never replaced
        for name in [METADATA_FILE, OMS_FILE] {
            let t = tempfile::tempdir().unwrap();
            std::fs::write(t.path().join(name), b"theirs").unwrap();
            let why = write(t.path(), &meta, &written, &digest, "reg/x:1")
                .unwrap()
                .unwrap_err();
            assert!(why.contains(name), "{why}");
            assert_eq!(std::fs::read(t.path().join(name)).unwrap(), b"theirs");
            assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
        }
    }
}
