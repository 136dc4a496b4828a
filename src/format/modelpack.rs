//! The CNCF ModelPack model-spec (`application/vnd.cncf.model.*`) and the other model-artifact
//! dialects mlart reads: the older ModelPack (`vnd.cnai.model.*`, which modctl still writes),
//! KitOps ModelKits (`vnd.kitops.modelkit.*`) and Docker model artifacts (`vnd.docker.ai.*`).
//!
//! Media types, annotation keys, the mapping between mlart's kinds and each dialect's layer
//! types, and the ModelPack config document. Kinds map both ways (README, "Dialects"):
//!
//! | mlart kind | ModelPack layer type |
//! |---|---|
//! | model | `weight` (`weight.config` for tokenizer/config files beside weights) |
//! | data | `dataset` |
//! | docs, eval, logs, schema | `doc` |
//! | env, config | `code` (`weight.config` for the names in [`WEIGHT_CONFIG_NAMES`]) |

use crate::format::compression::Compression;
use crate::format::metadata::Kind;
use serde::Serialize;

pub const MANIFEST_ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
/// The older ModelPack (CloudNativeAI) names, still written by modctl releases.
pub const CNAI_MANIFEST_ARTIFACT_TYPE: &str = "application/vnd.cnai.model.manifest.v1+json";
pub const CNAI_CONFIG_MEDIA_TYPE: &str = "application/vnd.cnai.model.config.v1+json";

pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
pub const FILE_METADATA_ANNOTATION: &str = "org.cncf.model.file.metadata+json";
pub const CNAI_FILEPATH_ANNOTATION: &str = "org.cnai.model.filepath";

/// KitOps ModelKit: config `application/vnd.kitops.modelkit.config.v1+json` (the Kitfile as
/// JSON), layers `application/vnd.kitops.modelkit.<type>.v1.tar[+gzip|+zstd]`.
pub const KITOPS_CONFIG_MEDIA_TYPE: &str = "application/vnd.kitops.modelkit.config.v1+json";
pub const KITOPS_PREFIX: &str = "application/vnd.kitops.modelkit.";
/// Docker model artifacts: config `application/vnd.docker.ai.model.config.v0.1+json`, layers
/// such as `application/vnd.docker.ai.gguf.v3` (raw weights) and `…ai.license`.
pub const DOCKER_AI_PREFIX: &str = "application/vnd.docker.ai.";

/// File names that are the configuration of model weights (Hugging Face layout): a ModelPack
/// `weight.config` layer, mlart kind `config` (or `model` where the spec lists them so).
pub const WEIGHT_CONFIG_NAMES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "preprocessor_config.json",
    "chat_template.jinja",
];

/// The model-artifact dialects mlart reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// CNCF ModelPack, `vnd.cncf.model.*`.
    Modelpack,
    /// The older ModelPack, `vnd.cnai.model.*`.
    Cnai,
    Kitops,
    DockerAi,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Modelpack => "modelpack",
            Dialect::Cnai => "cnai",
            Dialect::Kitops => "kitops",
            Dialect::DockerAi => "docker-ai",
        }
    }

    /// The dialect of a manifest, from its artifactType and config media type.
    pub fn of(artifact_type: Option<&str>, config_media_type: &str) -> Option<Dialect> {
        let at = artifact_type.unwrap_or("");
        if at == MANIFEST_ARTIFACT_TYPE || config_media_type == CONFIG_MEDIA_TYPE {
            Some(Dialect::Modelpack)
        } else if at == CNAI_MANIFEST_ARTIFACT_TYPE || config_media_type == CNAI_CONFIG_MEDIA_TYPE {
            Some(Dialect::Cnai)
        } else if config_media_type == KITOPS_CONFIG_MEDIA_TYPE || at.starts_with(KITOPS_PREFIX) {
            Some(Dialect::Kitops)
        } else if config_media_type.starts_with(DOCKER_AI_PREFIX)
            || at.starts_with(DOCKER_AI_PREFIX)
        {
            Some(Dialect::DockerAi)
        } else {
            None
        }
    }
}

/// The ModelPack layer type of a file of mlart kind `kind` at `rel`.
pub fn layer_type(kind: Kind, rel: &str) -> &'static str {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    match kind {
        Kind::Model if WEIGHT_CONFIG_NAMES.contains(&name) => "weight.config",
        Kind::Model => "weight",
        Kind::Data => "dataset",
        Kind::Config if WEIGHT_CONFIG_NAMES.contains(&name) => "weight.config",
        Kind::Env | Kind::Config => "code",
        Kind::Docs | Kind::Eval | Kind::Logs | Kind::Schema => "doc",
    }
}

/// `application/vnd.cncf.model.<type>.v1.raw` or `….tar[+gzip|+zstd]`.
pub fn layer_media_type(layer_type: &str, raw: bool, c: Compression) -> String {
    if raw {
        format!("application/vnd.cncf.model.{layer_type}.v1.raw")
    } else {
        format!(
            "application/vnd.cncf.model.{layer_type}.v1.tar{}",
            c.suffix()
        )
    }
}

/// How a layer of a model-artifact dialect is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// The blob is the file.
    Raw,
    /// A tar stream, maybe compressed.
    Tar(Compression),
}

/// A layer media type of any dialect read: mlart's kind for it and how it is packed. None:
/// a media type of no dialect mlart knows.
pub fn classify_layer(mt: &str) -> Option<(Kind, Packing)> {
    let (rest, vendor) = if let Some(r) = mt.strip_prefix("application/vnd.cncf.model.") {
        (r, "model")
    } else if let Some(r) = mt.strip_prefix("application/vnd.cnai.model.") {
        (r, "model")
    } else if let Some(r) = mt.strip_prefix(KITOPS_PREFIX) {
        (r, "kitops")
    } else if let Some(r) = mt.strip_prefix(DOCKER_AI_PREFIX) {
        return Some(docker_ai_layer(r));
    } else {
        return None;
    };
    // <type>.v1.<packing>, type possibly dotted (weight.config)
    let (ty, packing) = rest.split_once(".v1.")?;
    let packing = match packing {
        "raw" => Packing::Raw,
        "tar" => Packing::Tar(Compression::None),
        "tar+gzip" => Packing::Tar(Compression::Gzip),
        "tar+zstd" => Packing::Tar(Compression::Zstd),
        _ => return None,
    };
    let kind = match (vendor, ty) {
        (_, "weight" | "model" | "modelpart") => Kind::Model,
        (_, "weight.config" | "config") => Kind::Config,
        (_, "dataset") => Kind::Data,
        (_, "doc" | "docs" | "readme" | "license") => Kind::Docs,
        (_, "code") => Kind::Config,
        // the older cnai spec's single layer type, KitOps' prompts
        (_, "layer" | "prompts") => Kind::Config,
        _ => return None,
    };
    Some((kind, packing))
}

/// Docker model artifact layers: GGUF/safetensors weights, the multimodal projector, the
/// license and the chat template; all raw.
fn docker_ai_layer(rest: &str) -> (Kind, Packing) {
    let kind = if rest.starts_with("gguf") || rest.starts_with("safetensors") || rest == "mmproj" {
        Kind::Model
    } else if rest.starts_with("license") {
        Kind::Docs
    } else {
        Kind::Config
    };
    (kind, Packing::Raw)
}

/// The ModelPack config document (`application/vnd.cncf.model.config.v1+json`), in the field
/// order of the spec; serialised canonically (sorted keys) by the builder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Config {
    pub descriptor: Descriptor,
    pub config: ModelConfig,
    pub modelfs: ModelFs,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<String>,
    pub name: String,
    #[serde(rename = "docURL", skip_serializing_if = "Option::is_none")]
    pub doc_url: Option<String>,
    #[serde(rename = "sourceURL", skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
    #[serde(rename = "datasetsURL", skip_serializing_if = "Vec::is_empty")]
    pub datasets_url: Vec<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl Default for ModelFs {
    fn default() -> Self {
        ModelFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// The value of `org.cncf.model.file.metadata+json` for a file written by mlart: normalised
/// (uid/gid 0, mode 0644/0755, mtime from SOURCE_DATE_EPOCH or 0), so it never makes two
/// builds of one project differ. `mtime` is RFC 3339.
pub fn file_metadata_json(name: &str, executable: bool, size: u64, mtime: &str) -> String {
    let v = serde_json::json!({
        "name": name,
        "mode": if executable { 0o755 } else { 0o644 },
        "uid": 0,
        "gid": 0,
        "size": size,
        "mtime": mtime,
        "typeflag": b'0',
    });
    String::from_utf8(crate::format::json::to_canonical_bytes(&v)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_both_ways() {
        for kind in Kind::ALL {
            let ty = layer_type(kind, "dir/file.bin");
            for (raw, c) in [
                (true, Compression::None),
                (false, Compression::Gzip),
                (false, Compression::Zstd),
            ] {
                let mt = layer_media_type(ty, raw, c);
                let (back, packing) = classify_layer(&mt).unwrap();
                assert_eq!(
                    packing,
                    if raw { Packing::Raw } else { Packing::Tar(c) },
                    "{mt}"
                );
                // doc/code are shared by several kinds: the kind comes back as the first of them
                assert_eq!(
                    layer_type(back, "dir/file.bin"),
                    ty,
                    "{kind} -> {mt} -> {back}"
                );
            }
        }
        assert_eq!(
            layer_type(Kind::Config, "hf/tokenizer.json"),
            "weight.config"
        );
        assert_eq!(
            classify_layer("application/vnd.cncf.model.weight.config.v1.raw"),
            Some((Kind::Config, Packing::Raw))
        );
    }

    #[test]
    fn other_dialects() {
        assert_eq!(
            classify_layer("application/vnd.cnai.model.layer.v1.tar+gzip"),
            Some((Kind::Config, Packing::Tar(Compression::Gzip)))
        );
        assert_eq!(
            classify_layer("application/vnd.kitops.modelkit.model.v1.tar"),
            Some((Kind::Model, Packing::Tar(Compression::None)))
        );
        assert_eq!(
            classify_layer("application/vnd.kitops.modelkit.modelpart.v1.tar"),
            Some((Kind::Model, Packing::Tar(Compression::None)))
        );
        assert_eq!(
            classify_layer("application/vnd.kitops.modelkit.dataset.v1.tar+gzip"),
            Some((Kind::Data, Packing::Tar(Compression::Gzip)))
        );
        assert_eq!(
            classify_layer("application/vnd.docker.ai.gguf.v3"),
            Some((Kind::Model, Packing::Raw))
        );
        assert_eq!(
            classify_layer("application/vnd.cncf.model.weight.v1.zip"),
            None
        );
        assert_eq!(
            classify_layer("application/vnd.oci.image.layer.v1.tar"),
            None
        );
        assert_eq!(
            Dialect::of(Some(MANIFEST_ARTIFACT_TYPE), "x"),
            Some(Dialect::Modelpack)
        );
        assert_eq!(
            Dialect::of(None, KITOPS_CONFIG_MEDIA_TYPE),
            Some(Dialect::Kitops)
        );
        assert_eq!(
            Dialect::of(None, CNAI_CONFIG_MEDIA_TYPE),
            Some(Dialect::Cnai)
        );
        assert_eq!(
            Dialect::of(None, "application/vnd.docker.ai.model.config.v0.1+json"),
            Some(Dialect::DockerAi)
        );
        assert_eq!(
            Dialect::of(None, "application/vnd.oci.image.config.v1+json"),
            None
        );
    }

    #[test]
    fn file_metadata_is_normalised() {
        let s = file_metadata_json("a.onnx", false, 5, "1970-01-01T00:00:00Z");
        assert_eq!(
            s,
            r#"{"gid":0,"mode":420,"mtime":"1970-01-01T00:00:00Z","name":"a.onnx","size":5,"typeflag":48,"uid":0}"#
        );
    }
}
