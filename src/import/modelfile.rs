//! modctl Modelfiles (`NAME`, `ARCH`, `FAMILY`, `FORMAT`, `PARAMSIZE`, `PRECISION`,
//! `QUANTIZATION`, `CONFIG`, `MODEL`, `CODE`, `DATASET`, `DOC`; `#` comments) -> the spec's
//! fields. Unknown instructions are reported with their line.

use super::draft::{existing, read_text, Draft, DraftEntry};
use crate::error::Result;
use crate::format::metadata::Kind;
use std::path::Path;

pub const MODELFILE: &str = "Modelfile";

/// Read the Modelfile in `dir`.
pub fn import(dir: &Path) -> Result<Draft> {
    let path = dir.join(MODELFILE);
    let t = read_text(&path, 1 << 20, "Modelfile")?;
    let mut d = Draft::default();
    d.add(Kind::Config, DraftEntry::path(MODELFILE));
    let mut format: Option<String> = None;
    let mut models: Vec<String> = Vec::new();
    for (i, line) in t.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, arg) = match line.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim().trim_matches('"')),
            None => (line, ""),
        };
        if arg.is_empty() {
            d.warn(format!("{MODELFILE} line {n}: {cmd} has no value: ignored"));
            continue;
        }
        let value = Some(arg.to_string());
        let mut add = |d: &mut Draft, kind: Kind| match existing(
            dir,
            MODELFILE,
            &format!("line {n}: {cmd}"),
            arg,
        ) {
            Ok(rel) => {
                if kind == Kind::Model {
                    models.push(rel.clone());
                }
                d.add(kind, DraftEntry::path(rel))
            }
            Err(w) => d.warn(w),
        };
        match cmd.to_ascii_uppercase().as_str() {
            "NAME" => d.name = value,
            "ARCH" => d.training.architecture = value,
            "FAMILY" => {
                d.note(format!("{MODELFILE}: FAMILY {arg}"));
                d.warn(format!(
                    "{MODELFILE} line {n}: FAMILY {arg}: the spec has no model family; written into the description"
                ));
                d.description = Some(format!("{arg} model"));
            }
            "FORMAT" => format = value,
            "PARAMSIZE" => d.training.param_size = value,
            "PRECISION" => d.training.precision = value,
            "QUANTIZATION" => d.training.quantization = value,
            "CONFIG" => add(&mut d, Kind::Config),
            "MODEL" => add(&mut d, Kind::Model),
            "CODE" => add(&mut d, Kind::Config),
            "DATASET" => add(&mut d, Kind::Data),
            "DOC" => add(&mut d, Kind::Docs),
            _ => d.warn(format!(
                "{MODELFILE} line {n}: unknown instruction {cmd:?}: not mapped"
            )),
        }
    }
    // FORMAT applies to the model files (a folder's files are detected one by one); not to
    // a sharded model's index (`model.safetensors.index.json`), which is JSON, not weights,
    // and is left without a format as the Hugging Face importer leaves it.
    // A glob (`MODEL model*`) stamps every file it matches: one that matches an index is
    // listed file by file instead, so that the index can be left out.
    if let (Some(f), Some(list)) = (format, d.entries.get_mut(&Kind::Model)) {
        let f = f.to_ascii_lowercase();
        if crate::format::metadata::MODEL_FORMATS.contains(&f.as_str()) {
            let mut spread = Vec::new();
            for e in std::mem::take(list) {
                let matched = (models.contains(&e.path) && crate::build::collect::is_glob(&e.path))
                    .then(|| glob_files(dir, &e.path))
                    .flatten()
                    .filter(|m| m.iter().any(|p| is_index(p)));
                match matched {
                    Some(files) => {
                        spread.push(format!(
                            "{MODELFILE}: MODEL {} also matches {}: listed file by file, so that FORMAT {f} stamps the weights and not the index",
                            e.path,
                            files.iter().filter(|p| is_index(p)).cloned().collect::<Vec<_>>().join(", ")
                        ));
                        for p in files {
                            if !list.iter().any(|x| x.path == p) {
                                models.push(p.clone());
                                d.claimed.push(p.clone());
                                list.push(DraftEntry::path(p));
                            }
                        }
                    }
                    None => list.push(e),
                }
            }
            for e in list.iter_mut().filter(|e| {
                models.contains(&e.path) && !e.path.ends_with('/') && !is_index(&e.path)
            }) {
                e.format = Some(f.clone());
            }
            for n in spread {
                d.notes.push(n);
            }
        } else {
            d.warn(format!(
                "{MODELFILE}: FORMAT {f}: not a model format mlart knows ({}): formats are detected from the files",
                crate::format::metadata::MODEL_FORMATS.join(", ")
            ));
        }
    }
    Ok(d)
}

/// A sharded model's index (`model.safetensors.index.json`): JSON, not weights.
fn is_index(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".index.json")
}

/// Most files a MODEL glob is spread into (more: the glob is kept, unstamped if it matches an
/// index).
const MAX_GLOB_FILES: usize = 10_000;

/// The files of `dir` (relative paths, in order) that `glob` matches as `bundle` matches it
/// (`*` stays within a folder); None if it is not a valid glob or matches too many files.
fn glob_files(dir: &Path, glob: &str) -> Option<Vec<String>> {
    let m = globset::GlobBuilder::new(glob.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .ok()?
        .compile_matcher();
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for e in walk.flatten().filter(|e| e.file_type().is_file()) {
        let Ok(rel) = e.path().strip_prefix(dir) else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        if m.is_match(rel) {
            out.push(rel.to_string());
            if out.len() > MAX_GLOB_FILES {
                return None;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_and_unknowns() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("w.safetensors"), "x").unwrap();
        std::fs::write(
            t.path().join("Modelfile"),
            "# a comment\nNAME demo\nARCH transformer\nFORMAT safetensors\nPARAMSIZE 8b\nPRECISION bf16\nMODEL *.safetensors\nDOC ../secret\nFROBNICATE x\nNAME\n",
        )
        .unwrap();
        let d = import(t.path()).unwrap();
        assert_eq!(d.name.as_deref(), Some("demo"));
        assert_eq!(d.training.param_size.as_deref(), Some("8b"));
        assert_eq!(
            d.entries[&Kind::Model][0].format.as_deref(),
            Some("safetensors")
        );
        assert!(d
            .warnings
            .iter()
            .any(|w| w.contains("line 9") && w.contains("FROBNICATE")));
        assert!(d.warnings.iter().any(|w| w.contains("outside the project")));
        assert!(d.warnings.iter().any(|w| w.contains("line 10")));
    }

    /// The two weights stamped with FORMAT, the index beside them not.
    fn assert_index_unstamped(d: &Draft) {
        let formats: Vec<(&str, Option<&str>)> = d.entries[&Kind::Model]
            .iter()
            .map(|e| (e.path.as_str(), e.format.as_deref()))
            .collect();
        assert_eq!(
            formats,
            [
                ("model-00001-of-00002.safetensors", Some("safetensors")),
                ("model-00002-of-00002.safetensors", Some("safetensors")),
                ("model.safetensors.index.json", None),
            ]
        );
    }

    /// FORMAT stamps the weights, not a sharded model's index beside them.
    #[test]
    fn format_leaves_the_shard_index_alone() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
        ] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        std::fs::write(
            t.path().join("Modelfile"),
            "FORMAT safetensors\nMODEL model-00001-of-00002.safetensors\nMODEL model-00002-of-00002.safetensors\nMODEL model.safetensors.index.json\n",
        )
        .unwrap();
        let d = import(t.path()).unwrap();
        assert_index_unstamped(&d);
    }
    /// A MODEL glob that also matches the index is listed file by file: FORMAT stamps the
    /// weights, not the index (as it does for files named one by one).
    #[test]
    fn a_glob_matching_the_shard_index_leaves_the_index_unstamped() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer.json",
        ] {
            std::fs::write(t.path().join(f), "x").unwrap();
        }
        std::fs::write(
            t.path().join("Modelfile"),
            "FORMAT safetensors\nMODEL model*\nCONFIG tokenizer.json\n",
        )
        .unwrap();
        let d = import(t.path()).unwrap();
        assert_index_unstamped(&d);
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("MODEL model*") && n.contains("model.safetensors.index.json")),
            "{:?}",
            d.notes
        );
        // A glob that matches no index keeps its glob and its format.
        std::fs::write(
            t.path().join("Modelfile"),
            "FORMAT safetensors\nMODEL *.safetensors\n",
        )
        .unwrap();
        let d = import(t.path()).unwrap();
        let e = &d.entries[&Kind::Model][0];
        assert_eq!(
            (e.path.as_str(), e.format.as_deref()),
            ("*.safetensors", Some("safetensors"))
        );
    }
}
