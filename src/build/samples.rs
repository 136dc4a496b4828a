//! A model entry's `samples:` in the bundle. The spec names the samples once, on the model's
//! entry; `collect` then bundles them (kind `eval`, never a metrics report) unless another
//! entry already takes them, and the model's record in mlart.json says where they are
//! (`models[].samples`), so `validate BUNDLE` and `serve` run the same samples `validate` of
//! the project does.

use crate::build::collect::{is_glob, normalize};
use crate::error::Result;
use crate::format::metadata::Kind;
use crate::spec::{Entry, Spec};
use std::path::Path;

/// The entries that bundle the spec's samples: one per model entry with `samples:`, a file or
/// a folder of test data sets, at the model entry's line (kind eval, no metrics). `collect`
/// puts them after the spec's own entries and drops a path another entry also takes. A model
/// entry that names more than one file, or samples that are a glob or do not exist, are spec
/// errors (as `validate` of the project says).
pub(super) fn entries(spec: &Spec, root: &Path) -> Result<Vec<(Kind, Entry)>> {
    let mut out = Vec::new();
    for (kind, list) in &spec.sections {
        if *kind != Kind::Model {
            continue;
        }
        for e in list {
            let Some(s) = &e.samples else { continue };
            let model = normalize(&e.path);
            if is_glob(&e.path) || root.join(&model).is_dir() {
                return Err(spec.samples_need_one_model(e));
            }
            let rel = normalize(s);
            if is_glob(s) || rel.is_empty() {
                return Err(spec.error_at(
                    e.pos,
                    format!("samples: {s:?} is not a file or folder"),
                    "give the samples JSON file, or a folder of ONNX test data sets (test_data_set_N/), relative to the spec's folder",
                ));
            }
            let abs = root.join(&rel);
            if std::fs::symlink_metadata(&abs).is_err() {
                return Err(spec.error_at(
                    e.pos,
                    format!(
                        "samples: {s:?} does not exist (looked for {})",
                        abs.display()
                    ),
                    "fix the path (relative to the spec's folder) or remove `samples:`",
                ));
            }
            out.push((
                Kind::Eval,
                Entry {
                    path: rel,
                    format: None,
                    framework: None,
                    metrics: false,
                    samples: None,
                    pos: e.pos,
                },
            ));
        }
    }
    Ok(out)
}

/// The samples a model file of `entry` records (its path in the bundle).
pub(super) fn of_entry(entry: &Entry, kind: Kind) -> Option<String> {
    match kind {
        Kind::Model => entry.samples.as_deref().map(normalize),
        _ => None,
    }
}

impl crate::build::collect::SourceFile {
    /// A model's samples, as a path in the bundle (mlart.json `models[].samples`).
    pub fn samples(&self) -> Option<&str> {
        self.model.as_ref().and_then(|m| m.samples.as_deref())
    }
}
