//! SLSA Provenance v1 (`https://slsa.dev/provenance/v1`) in an in-toto Statement v1: where a
//! bundle came from. The subject is the bundle's manifest and config; the build definition
//! holds the spec and every resolved input (each bundled file, the datasets, the base model,
//! the base image, the source revision); the run details name mlart and its version.

use super::{digest_set, hex_of, Files, Inputs};
use crate::error::Result;
use crate::format::attestation::SLSA_PREDICATE;
use crate::format::metadata::FileEntry;
use crate::format::signature::INTOTO_STATEMENT;
use serde_json::{json, Map, Value};

/// The build type: what `externalParameters` and `internalParameters` mean.
pub const BUILD_TYPE: &str = "https://mlart.dev/attestations/bundle/v1";
/// The builder: the mlart command line.
pub const BUILDER_ID: &str = "https://mlart.dev/cli";

/// The `resolvedDependencies` name of the source revision.
pub const SOURCE: &str = "source";

/// The statement's canonical compact bytes, written to `w` with its files read one at a time.
pub fn write(inputs: &Inputs, w: &mut dyn std::io::Write) -> Result<()> {
    super::write_statement(
        w,
        &tree(inputs, Files::Hole),
        &inputs.metadata.files,
        file_dep,
    )
}

/// One bundled file as a resolved dependency.
fn file_dep(f: &FileEntry) -> Value {
    json!({
        "name": f.path,
        "digest": {"sha256": hex_of(&f.sha256)},
        "annotations": {"kind": f.kind, "size": f.size},
    })
}

/// The statement as a tree, its files as `files` says.
pub(crate) fn tree(inputs: &Inputs, files: Files) -> Value {
    let m = inputs.metadata;
    let mut external = Map::new();
    external.insert("name".into(), json!(m.name));
    external.insert("version".into(), json!(m.version));
    external.insert("form".into(), json!(m.form));
    if let Some(s) = &inputs.spec {
        external.insert(
            "spec".into(),
            json!({"path": s.path, "digest": {"sha256": s.sha256}}),
        );
    }
    if let Some(s) = &m.source {
        external.insert("source".into(), json!(s));
    }
    if let Some(r) = &m.revision {
        external.insert("revision".into(), json!(r));
    }
    if let Some(t) = &m.lineage.training {
        external.insert("training".into(), serde_json::to_value(t).expect("json"));
    }

    let mut deps = Vec::new();
    if let Some(g) = &inputs.git {
        let uri = match &g.remote {
            Some(r) => format!("git+{r}@{}", g.commit),
            None => format!("git+file:.@{}", g.commit),
        };
        deps.push(json!({
            "name": SOURCE,
            "uri": uri,
            "digest": {"gitCommit": g.commit},
            "annotations": {"dirty": g.dirty},
        }));
    }
    for d in &m.lineage.datasets {
        let mut r =
            json!({"name": format!("dataset:{}", d.name), "annotations": {"kind": "dataset"}});
        if let Some(u) = &d.uri {
            r["uri"] = json!(u);
        }
        if let Some(ds) = d.digest.as_deref().and_then(digest_set) {
            r["digest"] = ds;
        }
        if r.get("uri").is_none() && r.get("digest").is_none() {
            // A ResourceDescriptor needs a uri, a digest or content: name it as a URN.
            r["uri"] = json!(format!("urn:mlart:dataset:{}", d.name));
        }
        deps.push(r);
    }
    if let Some(b) = &m.lineage.base_model {
        let mut r = json!({"name": "base_model", "uri": b.locator(), "annotations": {"kind": "base_model"}});
        if let Some(ds) = b.digest.as_deref().and_then(digest_set) {
            r["digest"] = ds;
        }
        deps.push(r);
    }
    if let Some(b) = &m.base {
        deps.push(json!({
            "name": "base_image",
            "digest": digest_set(&b.digest).unwrap_or_else(|| json!({})),
            "annotations": {"kind": "base_image", "platform": b.platform},
        }));
    }
    files.fill(&mut deps, file_dep);

    let mut run = json!({
        "builder": {"id": BUILDER_ID, "version": {"mlart": env!("CARGO_PKG_VERSION")}},
        "metadata": {},
    });
    if let Some(c) = &m.created {
        // SOURCE_DATE_EPOCH (the bundle's `created`), never the clock.
        run["metadata"]["startedOn"] = json!(c);
        run["metadata"]["finishedOn"] = json!(c);
    }
    json!({
        "_type": INTOTO_STATEMENT,
        "subject": inputs.subjects(),
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"formatVersion": m.format_version},
                "resolvedDependencies": deps,
            },
            "runDetails": run,
        },
    })
}

/// What a gate reads back from a provenance predicate.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub builder: Option<String>,
    pub build_type: Option<String>,
    /// The source revision (git commit), when the build was in a git work tree.
    pub commit: Option<String>,
    pub repository: Option<String>,
    /// Whether that tree had changes not committed.
    pub dirty: Option<bool>,
    /// Datasets named in the provenance, and those of them without a digest.
    pub datasets: Vec<String>,
    pub datasets_without_digest: Vec<String>,
    pub base_model: Option<String>,
    pub base_model_digest: Option<String>,
    /// Resolved inputs in all.
    pub inputs: usize,
}

impl Summary {
    /// Take in one resolved dependency (read one at a time, never all held).
    pub fn add_dependency(&mut self, d: &Value) {
        self.inputs += 1;
        let first_digest = |d: &Value| {
            d["digest"]
                .as_object()
                .and_then(|o| o.iter().next())
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
        };
        let name = d["name"].as_str().unwrap_or_default();
        if name == SOURCE {
            self.commit = d["digest"]["gitCommit"].as_str().map(String::from);
            self.repository = d["uri"].as_str().map(String::from);
            self.dirty = d["annotations"]["dirty"].as_bool();
        } else if let Some(ds) = name.strip_prefix("dataset:") {
            self.datasets.push(ds.to_string());
            if first_digest(d).is_none() {
                self.datasets_without_digest.push(ds.to_string());
            }
        } else if name == "base_model" {
            self.base_model = d["uri"].as_str().map(String::from);
            self.base_model_digest = first_digest(d);
        }
    }
}

/// Read the fields gates check out of a provenance statement held as a tree.
pub fn summarize(statement: &Value) -> Summary {
    let p = &statement["predicate"];
    let mut s = Summary {
        builder: p["runDetails"]["builder"]["id"].as_str().map(String::from),
        build_type: p["buildDefinition"]["buildType"].as_str().map(String::from),
        ..Default::default()
    };
    for d in p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        s.add_dependency(d);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::testdata;
    use crate::format::attestation::AttestationKind;

    #[test]
    fn provenance_holds_subject_inputs_and_is_deterministic() {
        let m = testdata::metadata();
        let i = testdata::inputs(&m);
        let st = crate::attest::statement(AttestationKind::Provenance, &i);
        assert_eq!(
            st,
            crate::attest::statement(AttestationKind::Provenance, &i),
            "same inputs, same statement"
        );
        assert_eq!(st["_type"], INTOTO_STATEMENT);
        assert_eq!(st["predicateType"], SLSA_PREDICATE);
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            i.subject.manifest.hex()
        );
        assert_eq!(st["subject"][1]["digest"]["sha256"], i.subject.config.hex());
        let bd = &st["predicate"]["buildDefinition"];
        assert_eq!(
            bd["externalParameters"]["spec"]["digest"]["sha256"],
            "66".repeat(32)
        );
        assert_eq!(
            bd["externalParameters"]["training"]["command"],
            "python train.py --seed 0"
        );
        let deps = bd["resolvedDependencies"].as_array().unwrap();
        let by = |n: &str| {
            deps.iter()
                .find(|d| d["name"] == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert_eq!(by("model/iris.onnx")["digest"]["sha256"], "11".repeat(32));
        assert_eq!(by("dataset:iris")["digest"]["sha256"], "44".repeat(32));
        assert_eq!(by("dataset:holdout")["uri"], "urn:mlart:dataset:holdout");
        assert_eq!(by("base_model")["digest"]["sha256"], "55".repeat(32));
        assert_eq!(by(SOURCE)["digest"]["gitCommit"], "77".repeat(20));
        assert_eq!(
            st["predicate"]["runDetails"]["builder"]["version"]["mlart"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(
            st["predicate"]["runDetails"]["metadata"]["startedOn"],
            "1970-01-01T00:00:00Z"
        );

        let s = summarize(&st);
        assert_eq!(s.commit.as_deref(), Some("77".repeat(20).as_str()));
        assert_eq!(s.dirty, Some(false));
        assert_eq!(s.datasets, vec!["iris", "holdout"]);
        assert_eq!(s.datasets_without_digest, vec!["holdout"]);
        assert_eq!(s.inputs, 3 + 2 + 1 + 1);
    }

    #[test]
    fn without_git_or_lineage_there_is_no_source_entry() {
        let mut m = testdata::metadata();
        m.lineage = Default::default();
        let mut i = testdata::inputs(&m);
        i.git = None;
        i.spec = None;
        let st = crate::attest::statement(AttestationKind::Provenance, &i);
        let s = summarize(&st);
        assert_eq!((s.commit, s.dirty), (None, None));
        assert!(s.datasets.is_empty());
        assert!(st["predicate"]["buildDefinition"]["externalParameters"]
            .get("spec")
            .is_none());
    }
}
