//! The CycloneDX 1.6 ML-BOM of a bundle, as an in-toto statement (predicate
//! `https://cyclonedx.org/bom`): a `machine-learning-model` component per model with its model
//! card (task, architecture, inputs and outputs, performance metrics), `data` components for
//! the datasets, `library` components with purls for the pinned Python and conda packages, and
//! every file with its hash.

use super::{hex_of, Files, Inputs};
use crate::error::Result;
use crate::format::attestation::CYCLONEDX_PREDICATE;
use crate::format::metadata::FileEntry;
use crate::format::metadata::{Kind, Metadata};
use crate::format::signature::INTOTO_STATEMENT;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const SPEC_VERSION: &str = "1.6";

/// CycloneDX's name of a hash algorithm.
fn hash_alg(alg: &str) -> Option<&'static str> {
    match alg {
        "sha256" => Some("SHA-256"),
        "sha384" => Some("SHA-384"),
        "sha512" => Some("SHA-512"),
        _ => None,
    }
}

fn hashes_of(digest: Option<&str>) -> Option<Value> {
    let (alg, hex) = crate::format::lineage::parse_digest(digest?).ok()?;
    Some(json!([{"alg": hash_alg(alg)?, "content": hex}]))
}

/// A serial number that stays the same for the same bundle: a name-based UUID (version 5
/// layout) over the manifest digest.
fn serial_number(manifest_hex: &str) -> String {
    let h = Sha256::digest(format!("mlart-bom:{manifest_hex}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// (purl's percent-encoding of a name, version or qualifier value)
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' | b'+' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A purl for a pinned conda package (`environment.yml`): `[CHANNEL::]name` with `=V`, `==V`,
/// `=V=BUILD` or `V BUILD` -> `pkg:conda/name@V?build=BUILD&channel=CHANNEL`. Ranges, globs
/// and unpinned packages have no one version: None.
pub fn conda_purl(key: &str, spec: &str) -> Option<(String, String, String)> {
    let (channel, name) = match key.rsplit_once("::") {
        Some((c, n)) => (Some(c).filter(|c| !c.is_empty()), n),
        None => (None, key),
    };
    let spec = spec.trim();
    let rest = spec
        .strip_prefix("==")
        .or_else(|| spec.strip_prefix('='))
        .unwrap_or(spec);
    let mut parts = rest.splitn(2, ['=', ' ']);
    let ver = parts.next().unwrap_or_default().trim();
    if name.is_empty()
        || ver.is_empty()
        || !ver.starts_with(|c: char| c.is_ascii_alphanumeric())
        || ver.contains(['*', ',', '<', '>', '!', '|', '=', ' '])
    {
        return None;
    }
    let mut quals = Vec::new();
    if let Some(build) = parts
        .next()
        .map(str::trim)
        .filter(|b| !b.is_empty() && !b.contains(['*', ' ', '=']))
    {
        quals.push(format!("build={}", enc(build)));
    }
    if let Some(c) = channel {
        quals.push(format!("channel={}", enc(c)));
    }
    let mut p = format!("pkg:conda/{}@{}", enc(name), enc(ver));
    if !quals.is_empty() {
        p.push('?');
        p.push_str(&quals.join("&"));
    }
    Some((name.to_string(), ver.to_string(), p))
}

/// A purl for a pinned package: `==V` (pip) -> pkg:pypi, `=V[=BUILD]` (conda, as bundles
/// made before `EnvSummary::conda` kept them) -> pkg:conda. Ranges and unpinned packages have
/// no one version: None.
pub fn purl(name: &str, constraint: &str) -> Option<(String, String)> {
    if let Some(v) = constraint.strip_prefix("==") {
        let v = v.trim();
        if v.is_empty() || v.contains(['*', ',', '<', '>', '=', '!', ' ']) {
            return None;
        }
        let name = name.to_ascii_lowercase().replace('_', "-");
        return Some((v.to_string(), format!("pkg:pypi/{}@{}", enc(&name), enc(v))));
    }
    if let Some(v) = constraint.strip_prefix('=') {
        let mut parts = v.trim().splitn(2, '=');
        let ver = parts.next().unwrap_or_default();
        if ver.is_empty() || ver.contains(['*', ',', '<', '>', '!', ' ']) {
            return None;
        }
        let mut p = format!("pkg:conda/{}@{}", enc(name), enc(ver));
        if let Some(build) = parts.next().filter(|b| !b.is_empty() && !b.contains('*')) {
            p.push_str(&format!("?build={}", enc(build)));
        }
        return Some((ver.to_string(), p));
    }
    None
}

fn model_card<F>(m: &Metadata<F>, model_path: &str) -> Value {
    let training = m.lineage.training.as_ref();
    let entry = m.models.iter().find(|x| x.path == model_path);
    let mut params = serde_json::Map::new();
    if let Some(t) = training.and_then(|t| t.task.as_ref()) {
        params.insert("task".into(), json!(t));
    }
    if let Some(f) = entry.and_then(|e| e.framework.as_ref()) {
        params.insert("architectureFamily".into(), json!(f));
    }
    if let Some(a) = training.and_then(|t| t.architecture.as_ref()) {
        params.insert("modelArchitecture".into(), json!(a));
    }
    if !m.lineage.datasets.is_empty() {
        params.insert(
            "datasets".into(),
            m.lineage
                .datasets
                .iter()
                .map(|d| json!({"ref": format!("dataset:{}", d.name)}))
                .collect(),
        );
    }
    // Inputs and outputs: the ONNX signature when validated, else the feature schema.
    let (inputs, outputs): (Vec<String>, Vec<String>) = match entry.and_then(|e| e.io.as_ref()) {
        Some(io) => (
            io.inputs
                .iter()
                .map(|i| format!("{}: {}", i.name, i.type_))
                .collect(),
            io.outputs
                .iter()
                .map(|i| format!("{}: {}", i.name, i.type_))
                .collect(),
        ),
        None => match &m.schema {
            Some(s) => (
                s.features
                    .iter()
                    .map(|f| format!("{}: {}", f.name, f.dtype))
                    .collect(),
                s.outputs
                    .iter()
                    .map(|f| format!("{}: {}", f.name, f.dtype))
                    .collect(),
            ),
            None => (vec![], vec![]),
        },
    };
    if !inputs.is_empty() {
        params.insert(
            "inputs".into(),
            inputs.iter().map(|f| json!({"format": f})).collect(),
        );
    }
    if !outputs.is_empty() {
        params.insert(
            "outputs".into(),
            outputs.iter().map(|f| json!({"format": f})).collect(),
        );
    }
    let metrics: Vec<Value> = m
        .metrics
        .iter()
        .filter_map(|(k, v)| v.map(|v| json!({"type": k, "value": v.to_string()})))
        .collect();
    let mut card = json!({"modelParameters": params});
    if !metrics.is_empty() {
        card["quantitativeAnalysis"] = json!({"performanceMetrics": metrics});
    }
    card
}

/// One bundled file as a component.
fn file_component(f: &FileEntry) -> Value {
    json!({
        "type": "file",
        "bom-ref": format!("file:{}", f.path),
        "name": f.path,
        "hashes": [{"alg": "SHA-256", "content": hex_of(&f.sha256)}],
        "properties": [{"name": "mlart:kind", "value": f.kind.as_str()}],
    })
}

/// The BOM, its model files `models` (`kind: model`, in path order), every file as `files`
/// says.
fn bom(inputs: &Inputs, models: &[FileEntry], files: Files) -> Value {
    let m = inputs.metadata;
    let mhex = inputs.subject.manifest.hex();
    let mut components = Vec::new();
    let mut model_refs = Vec::new();
    for f in models.iter().filter(|f| f.kind == Kind::Model) {
        let r = format!("model:{}", f.path);
        model_refs.push(r.clone());
        let mut c = json!({
            "type": "machine-learning-model",
            "bom-ref": r,
            "name": f.path,
            "hashes": [{"alg": "SHA-256", "content": hex_of(&f.sha256)}],
            "modelCard": model_card(m, &f.path),
        });
        if let Some(fmt) = m
            .models
            .iter()
            .find(|x| x.path == f.path)
            .and_then(|x| x.format.as_ref())
        {
            c["properties"] = json!([{"name": "mlart:format", "value": fmt}]);
        }
        components.push(c);
    }
    let mut depends = Vec::new();
    if let Some(b) = &m.lineage.base_model {
        let mut c =
            json!({"type": "machine-learning-model", "bom-ref": "base-model", "name": b.locator()});
        if let Some(h) = hashes_of(b.digest.as_deref()) {
            c["hashes"] = h;
        }
        components.push(c);
        depends.push("base-model".to_string());
    }
    for d in &m.lineage.datasets {
        let r = format!("dataset:{}", d.name);
        let mut data = json!({"type": "dataset", "name": d.name});
        if let Some(u) = &d.uri {
            data["contents"] = json!({"url": u});
        }
        let mut c = json!({"type": "data", "bom-ref": r, "name": d.name, "data": [data]});
        if let Some(h) = hashes_of(d.digest.as_deref()) {
            c["hashes"] = h;
        }
        components.push(c);
        depends.push(r);
    }
    let mut libraries = Vec::new();
    if let Some(env) = &m.env {
        for (name, constraint) in &env.packages {
            if let Some((version, purl)) = purl(name, constraint) {
                libraries.push(json!({"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}));
            }
        }
        for (key, spec) in &env.conda {
            if let Some((name, version, purl)) = conda_purl(key, spec) {
                libraries.push(json!({"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}));
            }
        }
    }
    libraries.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    libraries.dedup_by(|a, b| a["bom-ref"] == b["bom-ref"]);
    depends.extend(
        libraries
            .iter()
            .filter_map(|l| l["bom-ref"].as_str().map(String::from)),
    );
    components.extend(libraries);
    files.fill(&mut components, file_component);

    let mut bundle = json!({
        "type": "machine-learning-model",
        "bom-ref": "bundle",
        "name": m.name,
        "version": m.version,
        "purl": format!("pkg:oci/{}@sha256%3A{mhex}", m.name),
    });
    if let Some(d) = &m.description {
        bundle["description"] = json!(d);
    }
    if let Some(l) = &m.license {
        bundle["licenses"] = json!([{"license": {"name": l}}]);
    }
    let mut metadata = json!({
        "tools": {"components": [{"type": "application", "name": "mlart", "version": env!("CARGO_PKG_VERSION")}]},
        "component": bundle,
    });
    if let Some(c) = &m.created {
        metadata["timestamp"] = json!(c);
    }
    let mut dependencies: Vec<Value> = model_refs
        .iter()
        .map(|r| json!({"ref": r, "dependsOn": depends}))
        .collect();
    dependencies.push(json!({"ref": "bundle", "dependsOn": model_refs}));
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial_number(mhex),
        "version": 1,
        "metadata": metadata,
        "components": components,
        "dependencies": dependencies,
    })
}

/// The statement as a tree, its files as `files` says.
pub(crate) fn statement_tree(inputs: &Inputs, models: &[FileEntry], files: Files) -> Value {
    json!({
        "_type": INTOTO_STATEMENT,
        "subject": inputs.subjects(),
        "predicateType": CYCLONEDX_PREDICATE,
        "predicate": bom(inputs, models, files),
    })
}

/// The statement's canonical compact bytes, written to `w` with its files read one at a time
/// (`models`: the model files, which it names up front).
pub fn write(inputs: &Inputs, models: &[FileEntry], w: &mut dyn std::io::Write) -> Result<()> {
    let tree = statement_tree(inputs, models, Files::Hole);
    super::write_statement(w, &tree, &inputs.metadata.files, file_component)
}

/// Counts of an ML-BOM's components by type (for `inspect`).
pub type Summary = std::collections::BTreeMap<String, usize>;

/// Count one component.
pub fn add_component(s: &mut Summary, c: &Value) {
    *s.entry(c["type"].as_str().unwrap_or("?").to_string())
        .or_insert(0) += 1;
}

/// Counts of an ML-BOM's components by type, of a statement held as a tree.
pub fn summarize(statement: &Value) -> Summary {
    let mut out = Summary::new();
    for c in statement["predicate"]["components"]
        .as_array()
        .into_iter()
        .flatten()
    {
        add_component(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::testdata;
    use crate::format::attestation::AttestationKind;

    #[test]
    fn purls_only_for_pinned_packages() {
        assert_eq!(purl("numpy", "==2.1.0").unwrap().1, "pkg:pypi/numpy@2.1.0");
        assert_eq!(
            purl("Scikit_Learn", "==1.5").unwrap().1,
            "pkg:pypi/scikit-learn@1.5"
        );
        assert_eq!(
            purl("pandas", "=2.2.3=py311_0").unwrap().1,
            "pkg:conda/pandas@2.2.3?build=py311_0"
        );
        for c in [">=1.5", "", "==1.*", "~=1.2", "==1.0,<2", "=1.*"] {
            assert_eq!(purl("x", c), None, "{c}");
        }
    }

    #[test]
    fn conda_purls_name_the_channel_and_build() {
        let p = |k: &str, s: &str| conda_purl(k, s).map(|x| x.2);
        assert_eq!(
            p("conda-forge::pandas", "==2.2.1").as_deref(),
            Some("pkg:conda/pandas@2.2.1?channel=conda-forge")
        );
        assert_eq!(
            p("numpy", "=1.26.4").as_deref(),
            Some("pkg:conda/numpy@1.26.4")
        );
        assert_eq!(
            p("conda-forge::libblas", "=3.9.0=20_linux64_openblas").as_deref(),
            Some("pkg:conda/libblas@3.9.0?build=20_linux64_openblas&channel=conda-forge")
        );
        assert_eq!(
            p("numpy", "1.26.4 py311_0").as_deref(),
            Some("pkg:conda/numpy@1.26.4?build=py311_0")
        );
        assert_eq!(
            conda_purl("conda-forge::pandas", "==2.2.1").unwrap().0,
            "pandas"
        );
        for s in ["", ">=1.5", "=1.*", "1.2|1.3", "=1.26.*", "<2", "==", "=*"] {
            assert_eq!(p("x", s), None, "{s}");
        }
    }

    #[test]
    fn the_bom_lists_models_data_libraries_files() {
        let m = testdata::metadata();
        let i = testdata::inputs(&m);
        let st = crate::attest::statement(AttestationKind::Sbom, &i);
        assert_eq!(
            st,
            crate::attest::statement(AttestationKind::Sbom, &i),
            "deterministic"
        );
        let bom = &st["predicate"];
        assert_eq!(bom["specVersion"], "1.6");
        let sn = bom["serialNumber"].as_str().unwrap();
        assert!(sn.starts_with("urn:uuid:") && sn.len() == 45, "{sn}");
        let comps = bom["components"].as_array().unwrap();
        let model = comps
            .iter()
            .find(|c| c["bom-ref"] == "model:model/iris.onnx")
            .unwrap();
        let card = &model["modelCard"];
        assert_eq!(card["modelParameters"]["task"], "classification");
        assert_eq!(
            card["modelParameters"]["architectureFamily"],
            "scikit-learn"
        );
        assert_eq!(
            card["modelParameters"]["inputs"][0]["format"],
            "x: tensor(float32)[N,4]"
        );
        assert_eq!(
            card["modelParameters"]["datasets"][0]["ref"],
            "dataset:iris"
        );
        let perf = card["quantitativeAnalysis"]["performanceMetrics"]
            .as_array()
            .unwrap();
        assert_eq!(perf.len(), 2, "the null metric is left out");
        let iris = comps
            .iter()
            .find(|c| c["bom-ref"] == "dataset:iris")
            .unwrap();
        assert_eq!(iris["hashes"][0]["content"], "44".repeat(32));
        let purls: Vec<&str> = comps.iter().filter_map(|c| c["purl"].as_str()).collect();
        assert_eq!(
            purls,
            vec![
                "pkg:conda/pandas@2.2.3?build=py311_0",
                "pkg:pypi/numpy@2.1.0",
                "pkg:pypi/onnx@1.17"
            ]
        );
        let counts = summarize(&st);
        assert_eq!(counts["file"], 3);
        assert_eq!(counts["machine-learning-model"], 2);
        assert_eq!(counts["data"], 2);
    }
}
