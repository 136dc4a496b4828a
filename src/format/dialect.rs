//! Another tool's model artifact seen as an mlart bundle: a [`Metadata`] made from the manifest
//! (and the config's name and version) of a ModelPack, older ModelPack (cnai), KitOps ModelKit
//! or Docker model artifact that has no mlart.json.
//!
//! The manifest is the listing: a raw layer is one file (its digest is the file's sha256); a
//! tar layer is one `archive` entry whose files are known once it is read (extraction and
//! `verify` check the layer's digest, and the tar's diff_id where the config lists it). A layer
//! of a media type no dialect defines is kept as a file or archive, never dropped.

use crate::format::annotations::{KIND_ANNOTATION, TITLE_ANNOTATION};
use crate::format::metadata::{FileEntry, Form, Kind, Metadata, ModelEntry, FORMAT_VERSION};
use crate::format::modelpack::{self, Dialect, Packing};
use oci_spec::image::ImageManifest;
use serde_json::Value;

/// The file path a layer of any dialect gives its content, if any.
pub fn layer_path(annotations: Option<&std::collections::HashMap<String, String>>) -> Option<&str> {
    let a = annotations?;
    [
        modelpack::FILEPATH_ANNOTATION,
        modelpack::CNAI_FILEPATH_ANNOTATION,
        TITLE_ANNOTATION,
    ]
    .iter()
    .find_map(|k| a.get(*k).map(String::as_str))
    .filter(|p| !p.is_empty())
}

/// The metadata of a `dialect` artifact. `config` is its config blob (any JSON; `{}` when it
/// could not be read).
pub fn synthesize(dialect: Dialect, manifest: &ImageManifest, config: &Value) -> Metadata {
    let annotations = manifest.annotations().clone().unwrap_or_default();
    let ann = |k: &str| annotations.get(k).filter(|v| !v.is_empty()).cloned();
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    // name and version: ModelPack's descriptor, the Kitfile's package, the OCI annotations
    let (name, version, description, license, authors) = match dialect {
        Dialect::Kitops => {
            let p = &config["package"];
            (
                text(&p["name"]),
                text(&p["version"]),
                text(&p["description"]),
                text(&p["license"]),
                p["authors"].as_array().cloned().unwrap_or_default(),
            )
        }
        _ => {
            let d = &config["descriptor"];
            (
                text(&d["name"]),
                text(&d["version"]),
                text(&d["description"]),
                d["licenses"]
                    .as_array()
                    .map(|l| l.iter().filter_map(text).collect::<Vec<_>>().join(", "))
                    .filter(|s| !s.is_empty()),
                d["authors"].as_array().cloned().unwrap_or_default(),
            )
        }
    };
    // The format the ModelPack config gives the model (`config.format`): a weight file whose
    // name says none has it.
    let config_format = match dialect {
        Dialect::Modelpack | Dialect::Cnai => text(&config["config"]["format"])
            .map(|f| f.trim().to_ascii_lowercase())
            .filter(|f| !f.is_empty()),
        Dialect::Kitops | Dialect::DockerAi => None,
    };
    let mut files = Vec::new();
    let mut models = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        let mt = l.media_type().to_string();
        let digest = l.digest().to_string();
        let la = l.annotations().as_ref();
        let (kind, packing) = modelpack::classify_layer(&mt).unwrap_or_else(|| {
            // unknown: a tar if it says so, else the blob is the file
            let packing = match crate::format::compression::Compression::from_media_type(&mt) {
                Some(c) if mt.contains("tar") => Packing::Tar(c),
                _ => Packing::Raw,
            };
            (Kind::Config, packing)
        });
        // mlart's own kind annotation wins (a ModelPack written by mlart without mlart.json)
        let kind = la
            .and_then(|a| a.get(KIND_ANNOTATION))
            .and_then(|k| Kind::parse(k))
            .unwrap_or(kind);
        let hex = digest.trim_start_matches("sha256:");
        let path = layer_path(la)
            .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("layer-{i}-{}", &hex[..hex.len().min(12)]));
        let archive = matches!(packing, Packing::Tar(_));
        if kind == Kind::Model && !archive {
            models.push(ModelEntry {
                path: path.clone(),
                format: model_format(&path).or_else(|| config_format.clone()),
                framework: None,
                size: l.size(),
                sha256: digest.clone(),
                io: None,
                samples: None,
            });
        }
        files.push(FileEntry {
            path,
            kind,
            size: l.size(),
            sha256: digest.clone(),
            layer: digest.into(),
            archive,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Metadata {
        format_version: FORMAT_VERSION,
        name: name
            .or_else(|| ann("org.opencontainers.image.title"))
            .unwrap_or_else(|| "unnamed".into()),
        version: version
            .or_else(|| ann("org.opencontainers.image.version"))
            .unwrap_or_default(),
        description: description.or_else(|| ann("org.opencontainers.image.description")),
        license: license.or_else(|| ann("org.opencontainers.image.licenses")),
        authors: authors.iter().filter_map(text).collect(),
        source: text(&config["descriptor"]["sourceURL"])
            .or_else(|| ann("org.opencontainers.image.source")),
        revision: text(&config["descriptor"]["revision"])
            .or_else(|| ann("org.opencontainers.image.revision")),
        created: text(&config["descriptor"]["createdAt"])
            .or_else(|| ann("org.opencontainers.image.created")),
        form: match dialect {
            Dialect::Modelpack | Dialect::Cnai => Form::Modelpack,
            Dialect::Kitops | Dialect::DockerAi => Form::Artifact,
        },
        files,
        models,
        schema: None,
        metrics: Default::default(),
        metric_sources: Default::default(),
        env: None,
        validation: None,
        base: None,
        dialect: Some(dialect.as_str().into()),
        lineage: Default::default(),
    }
}

/// The model format a file name says (its extension), if any.
pub fn model_format(path: &str) -> Option<String> {
    let ext = path.rsplit('.').next()?.to_ascii_lowercase();
    Some(
        match ext.as_str() {
            "onnx" => "onnx",
            "safetensors" => "safetensors",
            "gguf" => "gguf",
            "pt" | "pth" | "bin" => "pytorch",
            "pkl" | "pickle" => "pickle",
            "joblib" => "joblib",
            _ => return None,
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(layers: Value, config_mt: &str, at: Option<&str>) -> ImageManifest {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_mt, "digest": format!("sha256:{}", "0".repeat(64)), "size": 2},
            "layers": layers,
        });
        if let Some(at) = at {
            m["artifactType"] = at.into();
        }
        serde_json::from_value(m).unwrap()
    }

    fn layer(mt: &str, hexc: char, ann: Value) -> Value {
        serde_json::json!({"mediaType": mt, "digest": format!("sha256:{}", hexc.to_string().repeat(64)), "size": 7, "annotations": ann})
    }

    #[test]
    fn modelpack_layers_become_files_and_archives() {
        let m = manifest(
            serde_json::json!([
                layer(
                    "application/vnd.cncf.model.weight.v1.raw",
                    'a',
                    serde_json::json!({"org.cncf.model.filepath": "model.safetensors"})
                ),
                layer(
                    "application/vnd.cncf.model.doc.v1.tar",
                    'b',
                    serde_json::json!({"org.cncf.model.filepath": "docs/"})
                ),
                layer(
                    "application/vnd.example.unknown",
                    'c',
                    serde_json::json!({})
                ),
            ]),
            modelpack::CONFIG_MEDIA_TYPE,
            Some(modelpack::MANIFEST_ARTIFACT_TYPE),
        );
        let config =
            serde_json::json!({"descriptor": {"name": "llm", "version": "2", "licenses": ["MIT"]}});
        let md = synthesize(Dialect::Modelpack, &m, &config);
        assert_eq!((md.name.as_str(), md.version.as_str()), ("llm", "2"));
        assert_eq!(md.license.as_deref(), Some("MIT"));
        assert_eq!(md.form, Form::Modelpack);
        let paths: Vec<(&str, Kind, bool)> = md
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.kind, f.archive))
            .collect();
        assert_eq!(
            paths,
            [
                ("docs", Kind::Docs, true),
                ("layer-2-cccccccccccc", Kind::Config, false),
                ("model.safetensors", Kind::Model, false)
            ]
        );
        assert_eq!(md.models[0].format.as_deref(), Some("safetensors"));
        assert_eq!(md.files[2].sha256, format!("sha256:{}", "a".repeat(64)));
    }

    /// A weight whose name says no format has the one the ModelPack config gives; a name
    /// that says one keeps it.
    #[test]
    fn the_config_gives_a_weight_its_format() {
        let w = |path: &str, c: char| {
            layer(
                "application/vnd.cncf.model.weight.v1.raw",
                c,
                serde_json::json!({ "org.cncf.model.filepath": path }),
            )
        };
        let m = manifest(
            serde_json::json!([w("model", 'a'), w("extra.gguf", 'b')]),
            modelpack::CONFIG_MEDIA_TYPE,
            Some(modelpack::MANIFEST_ARTIFACT_TYPE),
        );
        let config =
            serde_json::json!({"descriptor": {"name": "x"}, "config": {"format": " ONNX "}});
        let md = synthesize(Dialect::Modelpack, &m, &config);
        let formats: Vec<(&str, Option<&str>)> = md
            .models
            .iter()
            .map(|m| (m.path.as_str(), m.format.as_deref()))
            .collect();
        assert_eq!(
            formats,
            [("model", Some("onnx")), ("extra.gguf", Some("gguf"))]
        );
        let md = synthesize(Dialect::Modelpack, &m, &serde_json::json!({}));
        assert_eq!(md.models[0].format, None);
    }

    #[test]
    fn kitfile_names_the_package() {
        let m = manifest(
            serde_json::json!([layer(
                "application/vnd.kitops.modelkit.model.v1.tar",
                'a',
                serde_json::json!({})
            )]),
            modelpack::KITOPS_CONFIG_MEDIA_TYPE,
            None,
        );
        let config = serde_json::json!({"manifestVersion": "1.0.0", "package": {"name": "iris", "version": "1.0.0", "authors": ["a", 3]}});
        let md = synthesize(Dialect::Kitops, &m, &config);
        assert_eq!(md.name, "iris");
        assert_eq!(md.authors, ["a"]);
        assert!(md.files[0].archive);
        assert_eq!(md.files[0].kind, Kind::Model);
        assert_eq!(md.dialect.as_deref(), Some("kitops"));
    }
}
