//! Which files of a bundle a pull's `--kind` and `--path` select.

use crate::error::{Error, Result};
use crate::format::metadata::{FileEntry, Kind};

/// The files a pull's `--kind` and `--path` select: a file must match both (an empty list
/// matches everything). A test on one entry, so the metadata's list is read as it streams.
pub struct Selector {
    kinds: Vec<Kind>,
    globs: globset::GlobSet,
    any_path: bool,
    /// The options as given, for messages.
    asked: (Vec<String>, Vec<String>),
}

impl Selector {
    /// An input error for a kind that is none or a glob that is not one.
    pub fn new(kinds: &[String], paths: &[String]) -> Result<Selector> {
        let mut ks = Vec::new();
        for k in kinds {
            for k in k.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                ks.push(Kind::parse(k).ok_or_else(|| {
                    Error::input(format!(
                        "--kind {k:?} is not a kind: use {}",
                        Kind::ALL.map(|k| k.as_str()).join(", ")
                    ))
                })?);
            }
        }
        let mut gb = globset::GlobSetBuilder::new();
        for p in paths {
            let g = globset::GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .map_err(|e| Error::input(format!("--path {p:?} is not a valid glob: {e}")))?;
            gb.add(g);
        }
        let globs = gb
            .build()
            .map_err(|e| Error::input(format!("--path: {e}")))?;
        Ok(Selector {
            kinds: ks,
            globs,
            any_path: paths.is_empty(),
            asked: (kinds.to_vec(), paths.to_vec()),
        })
    }

    /// Whether every file is selected (no `--kind`, no `--path`).
    pub fn is_all(&self) -> bool {
        self.kinds.is_empty() && self.any_path
    }

    pub fn matches(&self, f: &FileEntry) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&f.kind))
            && (self.any_path || self.globs.is_match(&f.path))
    }

    /// The error for a selection that matched none of the bundle's files, naming the first
    /// `shown` of `some` (the bundle's files, `total` in all).
    pub fn none_matched(&self, some: &[(String, Kind)], total: usize) -> Error {
        let mut listed = some
            .iter()
            .map(|(p, k)| format!("{p} ({k})"))
            .collect::<Vec<_>>()
            .join(", ");
        if total > some.len() {
            listed.push_str(&format!(", ... and {} more", total - some.len()));
        }
        Error::input(format!(
            "no file of the bundle matches the selection (--kind {:?}, --path {:?}); its files: {listed}",
            self.asked.0, self.asked.1,
        ))
    }
}
