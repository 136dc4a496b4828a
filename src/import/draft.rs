//! What an importer found in a project folder: the fields of an mlart.yaml, with notes on
//! where they came from and warnings for what did not map. `init` renders it into the
//! mlart.yaml the user reviews; `bundle` on a folder without one parses the same text in
//! memory, so both see one spec.

use crate::error::{Error, IoContext, Result};
use crate::format::lineage::Training;
use crate::format::metadata::Kind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The kind of folder an importer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Plain files: kinds guessed from names.
    Files,
    Mlflow,
    Huggingface,
    Kitfile,
    Modelfile,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Files => "files",
            Origin::Mlflow => "mlflow",
            Origin::Huggingface => "huggingface",
            Origin::Kitfile => "kitfile",
            Origin::Modelfile => "modelfile",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        Some(match s.to_ascii_lowercase().as_str() {
            "files" => Origin::Files,
            "mlflow" => Origin::Mlflow,
            "huggingface" | "hf" => Origin::Huggingface,
            "kitfile" | "kitops" => Origin::Kitfile,
            "modelfile" | "modctl" => Origin::Modelfile,
            _ => return None,
        })
    }
}

/// One entry of a section, with the model details an importer knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DraftEntry {
    pub path: String,
    pub format: Option<String>,
    pub framework: Option<String>,
    pub samples: Option<String>,
}

impl DraftEntry {
    pub fn path(p: impl Into<String>) -> DraftEntry {
        DraftEntry {
            path: p.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    pub license: Option<String>,
    pub authors: Vec<String>,
    pub source: Option<String>,
    pub revision: Option<String>,
    /// Entries the importer placed; every other file of the folder is classified by name.
    pub entries: BTreeMap<Kind, Vec<DraftEntry>>,
    /// Files (relative paths) the entries above cover, so they are not listed again.
    pub claimed: Vec<String>,
    /// `datasets:` (name, uri).
    pub datasets: Vec<(String, Option<String>)>,
    pub training: Training,
    /// Comment lines at the top of mlart.yaml (run ids, model ids, where a field came from).
    pub notes: Vec<String>,
    /// `base_model:` as a URI (no digest: a README names a repository, not its content).
    pub base_model: Option<String>,
    /// YAML written commented out, for the user to finish.
    pub commented: Vec<String>,
    /// What did not map onto the spec: reported on stderr, in `--json`, and in the yaml.
    pub warnings: Vec<String>,
}

impl Draft {
    pub fn add(&mut self, kind: Kind, e: DraftEntry) {
        let list = self.entries.entry(kind).or_default();
        if !list.iter().any(|x| x.path == e.path) {
            self.claimed.push(e.path.clone());
            list.push(e);
        }
    }

    /// An entry inside another entry's folder, or the same path under a second kind, would be
    /// a file listed twice, which `bundle` refuses (a Kitfile's `model.path: models` with
    /// `parts: [models/tokenizer.json]`, or the other way round): the outer entry keeps the
    /// file, the inner one is dropped (its framework goes to the folder's entry when that has
    /// none), and a note in mlart.yaml says so.
    pub fn settle_overlaps(&mut self) {
        let all: Vec<(Kind, String)> = self
            .entries
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |e| (*k, e.path.clone())))
            .collect();
        // the entry that takes (kind, path) in, if another does
        let outer = |kind: Kind, path: &str| -> Option<(Kind, String)> {
            all.iter()
                .find(|(k, p)| {
                    (p.ends_with('/') && path != p && path.starts_with(p.as_str()))
                        || (p == path && *k < kind)
                })
                .cloned()
        };
        let mut moved: Vec<(Kind, String, String)> = Vec::new();
        let mut notes = Vec::new();
        for (kind, list) in self.entries.iter_mut() {
            list.retain(|e| match outer(*kind, &e.path) {
                Some((k, p)) => {
                    notes.push(format!(
                        "{} is inside {p} (`{k}`): bundled with it, not listed apart (`{kind}`)",
                        e.path
                    ));
                    if let Some(f) = &e.framework {
                        moved.push((k, p, f.clone()));
                    }
                    false
                }
                None => true,
            });
        }
        for (k, p, f) in moved {
            if let Some(e) = self
                .entries
                .get_mut(&k)
                .and_then(|l| l.iter_mut().find(|e| e.path == p))
            {
                e.framework.get_or_insert(f);
            }
        }
        self.entries.retain(|_, l| !l.is_empty());
        for n in notes {
            self.note(n);
        }
    }

    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(one_line(&w.into()));
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(one_line(&n.into()));
    }

    /// Is `rel` covered by an entry (the path itself, a folder above it, or a glob)?
    pub fn covers(&self, rel: &str) -> bool {
        self.claimed.iter().any(|c| {
            c == rel
                || (c.ends_with('/') && rel.starts_with(c.as_str()))
                || rel.starts_with(&format!("{c}/"))
                || (crate::build::collect::is_glob(c)
                    && globset::GlobBuilder::new(c)
                        .literal_separator(true)
                        .build()
                        .map(|g| g.compile_matcher().is_match(rel))
                        .unwrap_or(false))
        })
    }
}

/// Collapse line breaks: notes and warnings become YAML comments.
pub fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

/// Read a small side file (a manifest, a config, a header): at most `max` bytes, UTF-8. The
/// error names the file.
pub fn read_text(path: &Path, max: u64, what: &str) -> Result<String> {
    let f = std::fs::File::open(path).ctx("reading", path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).ctx("reading", path)?;
    if buf.len() as u64 > max {
        return Err(Error::input(format!(
            "{}: larger than {} KiB: not a {what}",
            path.display(),
            max >> 10
        )));
    }
    String::from_utf8(buf)
        .map_err(|_| Error::input(format!("{}: not UTF-8 text: not a {what}", path.display())))
}

/// Parse YAML into a JSON value; the error names the file and the position.
pub fn yaml_value(path: &Path, text: &str) -> Result<serde_json::Value> {
    serde_saphyr::from_str(text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        // (the library's message without its own position: the one above is said once)
        Error::input(format!(
            "{}: invalid YAML{loc}: {}",
            path.display(),
            crate::spec::yaml_message(&e)
        ))
    })
}

/// A relative path inside the project as an importer's manifest names it (`./x`, `x/`), or
/// None when it leaves the project (absolute, `..`) or names nothing.
pub fn project_path(p: &str) -> Option<String> {
    let p = p.trim();
    let p = p.strip_prefix("./").unwrap_or(p);
    if p.is_empty()
        || p == "."
        || p.starts_with('/')
        || p.contains('\\')
        || p.split('/').any(|c| c == "..")
        || p.as_bytes().get(1) == Some(&b':')
    {
        return None;
    }
    Some(p.to_string())
}

/// A file or folder a manifest names, checked: inside the project and present. A warning
/// (returned) otherwise.
pub fn existing(
    dir: &Path,
    file: &str,
    field: &str,
    p: &str,
) -> std::result::Result<String, String> {
    let Some(rel) = project_path(p) else {
        return Err(format!(
            "{file}: {field}: {p:?} is outside the project folder: not bundled"
        ));
    };
    if crate::build::collect::is_glob(&rel) {
        return Ok(rel);
    }
    let abs = dir.join(rel.trim_end_matches('/'));
    if !abs.exists() {
        return Err(format!(
            "{file}: {field}: {p:?} does not exist in the folder: not bundled"
        ));
    }
    if abs.is_dir() && !rel.ends_with('/') {
        return Ok(format!("{rel}/"));
    }
    Ok(rel)
}

/// A JSON value as one line of text (for warnings).
pub fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary_compat(77)])
    } else {
        s
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;

    fn paths(d: &Draft, k: Kind) -> Vec<String> {
        d.entries
            .get(&k)
            .map(|l| l.iter().map(|e| e.path.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn an_entry_inside_another_is_dropped_with_a_note() {
        // a part inside the model folder (another kind), a model file inside a part folder
        // (its framework kept), the same path under two kinds, and apart ones untouched
        let mut d = Draft::default();
        d.add(Kind::Model, DraftEntry::path("models/"));
        d.add(Kind::Config, DraftEntry::path("models/tokenizer.json"));
        d.add(Kind::Config, DraftEntry::path("Kitfile"));
        d.add(
            Kind::Model,
            DraftEntry {
                path: "weights/iris.onnx".into(),
                format: Some("onnx".into()),
                framework: Some("scikit-learn".into()),
                samples: None,
            },
        );
        d.add(Kind::Model, DraftEntry::path("weights/"));
        d.add(Kind::Docs, DraftEntry::path("README.md"));
        d.add(Kind::Config, DraftEntry::path("README.md"));
        d.settle_overlaps();
        assert_eq!(paths(&d, Kind::Model), ["models/", "weights/"]);
        // (the same path twice: the kind whose layers come first keeps it)
        let (first, second) = (Kind::Config.min(Kind::Docs), Kind::Config.max(Kind::Docs));
        assert!(paths(&d, first).contains(&"README.md".to_string()));
        assert!(!paths(&d, second).contains(&"README.md".to_string()));
        assert!(paths(&d, Kind::Config).contains(&"Kitfile".to_string()));
        assert!(!paths(&d, Kind::Config).contains(&"models/tokenizer.json".to_string()));
        let w = &d.entries[&Kind::Model][1];
        assert_eq!(w.framework.as_deref(), Some("scikit-learn"));
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("models/tokenizer.json is inside models/")),
            "{:?}",
            d.notes
        );
        assert_eq!(d.notes.len(), 3, "{:?}", d.notes);
    }
}
