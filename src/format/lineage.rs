//! Lineage: where a model came from (the datasets it was trained on, the model it started
//! from, how it was trained). Declared in mlart.yaml, recorded in mlart.json when given (all
//! optional: a bundle without lineage has the same metadata as before), and restated in the
//! provenance and ML-BOM attestations.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<BaseModel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<Dataset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
}

impl Lineage {
    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty() && self.base_model.is_none() && self.training.is_none()
    }
}

/// A dataset the model was trained or evaluated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// `sha256:<64 hex>` (or another `algorithm:hex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// The model this one was fine-tuned or distilled from: an OCI reference or a URI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl BaseModel {
    /// The reference or URI, whichever is given.
    pub fn locator(&self) -> &str {
        self.reference
            .as_deref()
            .or(self.uri.as_deref())
            .unwrap_or_default()
    }
}

/// How the model was trained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Its architecture (`logistic-regression`, `transformer`, ...): the ML-BOM model card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its size in parameters (`7b`, `124m`, ...): ModelPack's `config.paramSize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_size: Option<String>,
    /// Hyperparameters, as written in the spec (strings, numbers, booleans).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// The weights' numeric precision (`bf16`, `fp32`, ...): ModelPack's `config.precision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    /// The quantization (`awq`, `gptq`, `q4_k_m`, ...): ModelPack's `config.quantization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// What the model does (`classification`, `text-generation`, ...): the ML-BOM model card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// Split `algorithm:hex` and check it (sha256/sha384/sha512 with the right hex length).
pub fn parse_digest(s: &str) -> Result<(&str, &str), String> {
    let (alg, hex) = s.split_once(':').ok_or_else(|| {
        format!("digest {s:?} is not `algorithm:hex` (e.g. sha256:<64 hex digits>)")
    })?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest {s:?}: unsupported algorithm {alg:?} (use sha256, sha384 or sha512)"
            ))
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {s:?}: a {alg} digest is {len} lowercase hex digits"
        ));
    }
    Ok((alg, hex))
}
