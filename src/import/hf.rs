//! Hugging Face model folders: `config.json` (architectures, model_type, torch_dtype) ->
//! architecture and precision; safetensors headers (the 8-byte length and the JSON header
//! only, never the weights) -> parameter count and dtype; a sharded checkpoint with its index
//! -> one model entry; tokenizer and generation configs -> `config`; the README's front
//! matter -> license, datasets, base model (a URI, no digest), task.

use super::draft::{read_text, short, yaml_value, Draft, DraftEntry};
use crate::error::{Error, IoContext, Result};
use crate::format::metadata::Kind;
use crate::format::modelpack::WEIGHT_CONFIG_NAMES;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

const MAX_CONFIG: u64 = 4 << 20;
/// The safetensors library refuses headers over 100 MB; so do we, before reading one.
pub const MAX_HEADER: u64 = 100_000_000;

/// Does `dir` look like a Hugging Face model folder?
pub fn detect(dir: &Path, files: &[String]) -> bool {
    dir.join("config.json").is_file()
        && files.iter().any(|f| {
            !f.contains('/')
                && (f.ends_with(".safetensors") || f.ends_with(".bin") || f.ends_with(".gguf"))
        })
}

/// What the header of one safetensors file says.
#[derive(Debug, Default, PartialEq)]
pub struct Header {
    pub params: u64,
    pub dtypes: BTreeSet<String>,
}

fn dtype_bytes(dt: &str) -> Option<u64> {
    Some(match dt {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        "F4" | "F6_E2M3" | "F6_E3M2" => return Some(0), // sub-byte: sizes not checked
        _ => return None,
    })
}

/// Read the header of a safetensors file: the little-endian u64 length, then that many bytes
/// of JSON; each tensor's dtype, shape and offsets checked against the file's size.
pub fn read_header(path: &Path) -> Result<Header> {
    let bad = |m: String| {
        Error::input(format!(
            "{}: not a valid safetensors file: {m}",
            path.display()
        ))
    };
    let mut f = std::fs::File::open(path).ctx("reading", path)?;
    let size = f.metadata().ctx("reading", path)?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| {
        bad(format!(
            "{size} bytes: shorter than the 8-byte header length"
        ))
    })?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(bad(format!("header length {n} is over the 100 MB limit")));
    }
    if n > size - 8 {
        return Err(bad(format!(
            "header length {n} is beyond the end of the file ({size} bytes)"
        )));
    }
    let mut buf = Vec::with_capacity(n as usize);
    (&mut f)
        .take(n)
        .read_to_end(&mut buf)
        .ctx("reading", path)?;
    let v: Value = serde_json::from_slice(&buf).map_err(|e| bad(format!("header JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("the header is not a JSON object".into()))?;
    let data_len = size - 8 - n;
    let mut h = Header::default();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let field = |k: &str| bad(format!("tensor {name:?}: `{k}` missing or malformed"));
        let dt = t
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| field("dtype"))?;
        let shape: Vec<u64> = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| field("shape"))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| field("shape")))
            .collect::<Result<_>>()?;
        let off: Vec<u64> = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| field("data_offsets"))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| field("data_offsets")))
            .collect::<Result<_>>()?;
        let count = shape
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .ok_or_else(|| bad(format!("tensor {name:?}: shape {shape:?} overflows")))?;
        let width =
            dtype_bytes(dt).ok_or_else(|| bad(format!("tensor {name:?}: unknown dtype {dt:?}")))?;
        if off[0] > off[1] || off[1] > data_len {
            return Err(bad(format!(
                "tensor {name:?}: data_offsets {off:?} outside the {data_len} bytes of data"
            )));
        }
        if width > 0 && count.checked_mul(width) != Some(off[1] - off[0]) {
            return Err(bad(format!(
                "tensor {name:?}: {dt} {shape:?} is not the {} bytes of its data_offsets",
                off[1] - off[0]
            )));
        }
        h.params = h
            .params
            .checked_add(count)
            .ok_or_else(|| bad("the parameter count overflows".into()))?;
        h.dtypes.insert(dt.to_string());
    }
    Ok(h)
}

/// `7.2b`, `124m`, `1.5k`: ModelPack's paramSize.
pub fn param_size(n: u64) -> String {
    let (v, unit) = match n {
        n if n >= 1_000_000_000 => (n as f64 / 1e9, "b"),
        n if n >= 1_000_000 => (n as f64 / 1e6, "m"),
        n if n >= 1_000 => (n as f64 / 1e3, "k"),
        n => return n.to_string(),
    };
    let s = format!("{v:.1}");
    format!("{}{unit}", s.trim_end_matches(".0"))
}

/// torch/safetensors dtype -> ModelPack precision.
fn precision(dt: &str) -> Option<&'static str> {
    Some(match dt.to_ascii_lowercase().trim_start_matches("torch.") {
        "float16" | "f16" | "half" => "fp16",
        "bfloat16" | "bf16" => "bf16",
        "float32" | "f32" | "float" => "fp32",
        "float64" | "f64" => "fp64",
        "int8" | "i8" => "int8",
        "uint8" | "u8" => "uint8",
        "f8_e4m3" | "float8_e4m3fn" => "fp8",
        _ => return None,
    })
}

/// Read the Hugging Face folder `dir` (its top-level `files`) into a draft.
pub fn import(dir: &Path, files: &[String]) -> Result<Draft> {
    let mut d = Draft::default();
    let cpath = dir.join("config.json");
    let text = read_text(&cpath, MAX_CONFIG, "Hugging Face config.json")?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| Error::input(format!("{}: invalid JSON: {e}", cpath.display())))?;
    let config = config
        .as_object()
        .cloned()
        .ok_or_else(|| Error::input(format!("{}: not a JSON object", cpath.display())))?;
    let arch = match config.get("architectures") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .next()
            .map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    d.training.architecture = arch.clone().or(model_type.clone());
    let cfg_dtype = config
        .get("torch_dtype")
        .or(config.get("dtype"))
        .and_then(Value::as_str);
    if let Some(dt) = cfg_dtype {
        match precision(dt) {
            Some(p) => d.training.precision = Some(p.into()),
            None => d.warn(format!(
                "config.json: torch_dtype {dt:?}: no ModelPack precision for it"
            )),
        }
    }
    if let Some(q) = config.get("quantization_config") {
        d.training.quantization = q
            .get("quant_method")
            .and_then(Value::as_str)
            .map(str::to_string);
    }

    // Weights: safetensors (sharded with an index, or single), else other weight files.
    let top: Vec<&String> = files.iter().filter(|f| !f.contains('/')).collect();
    let shards: Vec<&String> = top
        .iter()
        .copied()
        .filter(|f| f.ends_with(".safetensors"))
        .collect();
    let mut params = 0u64;
    let mut dtypes = BTreeSet::new();
    for s in &shards {
        let h = read_header(&dir.join(s))?;
        params += h.params;
        dtypes.extend(h.dtypes);
    }
    for idx in top
        .iter()
        .filter(|f| f.ends_with(".safetensors.index.json"))
    {
        let p = dir.join(idx);
        let t = read_text(&p, MAX_CONFIG * 16, "safetensors index")?;
        let v: Value = serde_json::from_str(&t)
            .map_err(|e| Error::input(format!("{}: invalid JSON: {e}", p.display())))?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::input(format!("{}: no `weight_map` object", p.display())))?;
        let named: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        for n in named {
            if !shards.iter().any(|s| s.as_str() == n) {
                return Err(Error::input(format!(
                    "{}: weight_map names the shard {n:?}, which is not in the folder",
                    p.display()
                )));
            }
        }
        d.add(
            Kind::Model,
            DraftEntry {
                path: idx.to_string(),
                format: None,
                framework: Some("transformers".into()),
                samples: None,
            },
        );
    }
    // Shards `model-00001-of-00004.safetensors` are one model: one glob entry.
    let sharded: Vec<&&String> = shards.iter().filter(|s| s.contains("-of-")).collect();
    if sharded.len() > 1 {
        let stem = sharded[0].split('-').next().unwrap_or("model");
        d.add(
            Kind::Model,
            DraftEntry {
                path: format!("{stem}-*-of-*.safetensors"),
                format: Some("safetensors".into()),
                framework: Some("transformers".into()),
                samples: None,
            },
        );
    }
    for s in &shards {
        if !d.covers(s) {
            d.add(
                Kind::Model,
                DraftEntry {
                    path: s.to_string(),
                    format: Some("safetensors".into()),
                    framework: Some("transformers".into()),
                    samples: None,
                },
            );
        }
    }
    if params > 0 {
        d.training.param_size = Some(param_size(params));
        d.note(format!(
            "safetensors headers: {params} parameters ({})",
            dtypes.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
        let from_st: BTreeSet<&str> = dtypes.iter().filter_map(|t| precision(t)).collect();
        match (&d.training.precision, from_st.len()) {
            (None, 1) => d.training.precision = from_st.first().map(|s| s.to_string()),
            (Some(p), 1) if !from_st.contains(p.as_str()) => d.warn(format!(
                "config.json: torch_dtype says {p}, the safetensors headers {}: precision from config.json",
                from_st.first().unwrap_or(&"?")
            )),
            _ => {}
        }
    }
    for f in &top {
        if WEIGHT_CONFIG_NAMES.contains(&f.as_str()) {
            d.add(Kind::Config, DraftEntry::path(f.as_str()));
        }
    }
    let what = match (&arch, &model_type) {
        (Some(a), Some(m)) => format!("{m} model ({a})"),
        (Some(a), None) => format!("{a} model"),
        (None, Some(m)) => format!("{m} model"),
        (None, None) => "Hugging Face model".into(),
    };
    d.description = Some(what);
    if let Some(readme) = top.iter().find(|f| f.eq_ignore_ascii_case("readme.md")) {
        front_matter(dir, readme, &mut d)?;
    }
    Ok(d)
}

/// The model card's YAML front matter.
fn front_matter(dir: &Path, readme: &str, d: &mut Draft) -> Result<()> {
    let p = dir.join(readme);
    let text = read_text(&p, MAX_CONFIG, "model card")?;
    let Some(rest) = text.strip_prefix("---\n").or(text.strip_prefix("---\r\n")) else {
        return Ok(());
    };
    let Some(end) = rest.find("\n---") else {
        d.warn(format!(
            "{readme}: the front matter has no closing `---`: not read"
        ));
        return Ok(());
    };
    let v = yaml_value(&p, &rest[..end + 1])?;
    let Some(m) = v.as_object() else {
        return Ok(());
    };
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![],
        }
    };
    for (k, v) in m {
        match k.as_str() {
            "license" => d.license = list(v).first().cloned(),
            "datasets" => {
                for ds in list(v) {
                    let uri = (!ds.contains(char::is_whitespace))
                        .then(|| format!("https://huggingface.co/datasets/{ds}"));
                    d.datasets.push((ds, uri));
                }
            }
            "base_model" => {
                // The spec has one base model: the first; a URI without digest (the README names
                // a repository, not its content), so the provenance names it without pinning it.
                let all = list(v);
                if let Some(b) = all.first().filter(|b| !b.contains(char::is_whitespace)) {
                    d.base_model = Some(format!("https://huggingface.co/{b}"));
                    d.note(format!(
                        "{readme}: base_model {b}: no digest (add `digest: sha256:…` to pin its content in the provenance)"
                    ));
                }
                for b in all.iter().skip(1) {
                    d.warn(format!(
                        "{readme}: base_model {b:?}: the spec has one base model (the first); not mapped"
                    ));
                }
            }
            "pipeline_tag" => d.training.task = v.as_str().map(str::to_string),
            "model_name" => {
                if let Some(s) = v.as_str() {
                    d.description = Some(s.to_string());
                }
            }
            _ => d.warn(format!(
                "{readme}: front matter `{k}: {}` is not mapped",
                short(v)
            )),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(header: &[u8], data: usize) -> tempfile::NamedTempFile {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header);
        b.extend(std::iter::repeat_n(0u8, data));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b).unwrap();
        f
    }

    #[test]
    fn headers_counted_and_checked() {
        let f = st(br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}"#, 12);
        let h = read_header(f.path()).unwrap();
        assert_eq!(h.params, 6);
        assert!(h.dtypes.contains("F16"));
        for (hdr, data, want) in [
            (&br#"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,10]}}"#[..], 12, "not the 10 bytes"),
            (br#"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,99]}}"#, 12, "outside"),
            (br#"{"w":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#, 1, "unknown dtype"),
            (br#"{"w":{"shape":[1],"data_offsets":[0,1]}}"#, 1, "`dtype`"),
            (br#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,1]}}"#, 1, "overflows"),
            (br#"[1,2]"#, 0, "not a JSON object"),
            (br#"{"w":"#, 0, "header JSON"),
        ] {
            let f = st(hdr, data);
            let e = read_header(f.path()).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("safetensors"), "{e}");
        }
        // A huge length is refused before anything is read or allocated.
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(f.path(), &b).unwrap();
        assert!(read_header(f.path())
            .unwrap_err()
            .to_string()
            .contains("100 MB"));
        let mut b = 1000u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        std::fs::write(f.path(), &b).unwrap();
        assert!(read_header(f.path())
            .unwrap_err()
            .to_string()
            .contains("beyond the end"));
        std::fs::write(f.path(), b"abc").unwrap();
        assert!(read_header(f.path())
            .unwrap_err()
            .to_string()
            .contains("shorter"));
    }

    #[test]
    fn sizes() {
        assert_eq!(param_size(7_241_732_096), "7.2b");
        assert_eq!(param_size(124_000_000), "124m");
        assert_eq!(param_size(3_072), "3.1k");
        assert_eq!(param_size(12), "12");
    }
}
