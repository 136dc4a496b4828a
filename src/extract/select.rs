//! Which files of a bundle a pull's `--kind` and `--path` select.

use crate::error::{Error, Result};
use crate::format::metadata::{FileEntry, Kind, Metadata};

/// Which files of `meta` the options select.
pub fn select<'m>(
    meta: &'m Metadata,
    kinds: &[String],
    paths: &[String],
) -> Result<Vec<&'m FileEntry>> {
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
    let set = gb
        .build()
        .map_err(|e| Error::input(format!("--path: {e}")))?;
    let out: Vec<&FileEntry> = meta
        .files
        .iter()
        .filter(|f| ks.is_empty() || ks.contains(&f.kind))
        .filter(|f| paths.is_empty() || set.is_match(&f.path))
        .collect();
    if out.is_empty() {
        return Err(Error::input(format!(
            "no file of the bundle matches the selection (--kind {:?}, --path {:?}); its files: {}",
            kinds,
            paths,
            meta.files
                .iter()
                .map(|f| format!("{} ({})", f.path, f.kind))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}
