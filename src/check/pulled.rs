//! `verify DIR` of a folder pulled from another tool's artifact: no model.sig, and the
//! `mlart.json` that `mlart pull` made from the files it wrote (`extract::derived`). The
//! files are checked against that list (every one there, none changed, none added); nothing
//! signs it, and verify says so.

use crate::error::{Error, IoContext, Result};
use crate::format::metadata::{Derived, DerivedDoc, METADATA_FILE};
use crate::format::signature::OMS_FILE;
use crate::store::runs::{Batch, Runs};
use std::path::Path;

/// What the `derived` key of `dir/mlart.json` says, when the folder has no model.sig and its
/// mlart.json is one `mlart pull` made (None: a folder verified against its model.sig).
pub fn derived(dir: &Path) -> Result<Option<Derived>> {
    if std::fs::symlink_metadata(dir.join(OMS_FILE)).is_ok() {
        return Ok(None);
    }
    let path = dir.join(METADATA_FILE);
    let Ok(f) = std::fs::File::open(&path) else {
        return Ok(None);
    };
    // (every key but `derived` skipped as it streams: a list of a million files is not held)
    let doc: DerivedDoc = serde_json::from_reader(std::io::BufReader::with_capacity(64 << 10, f))
        .map_err(|e| {
        Error::Check(format!(
            "{}: not an mlart.json mlart reads ({e}): it was changed after the pull; pull again",
            path.display()
        ))
    })?;
    Ok(doc.derived)
}

/// The files of `dir` against the list of its `mlart.json` (itself aside): what is missing,
/// changed or added, as model.sig's check says it.
pub fn check(dir: &Path) -> Result<()> {
    let path = dir.join(METADATA_FILE);
    let mut f = std::fs::File::open(&path).ctx("reading", &path)?;
    let meta = crate::store::metadata::parse(&path.display().to_string(), &mut f)?;
    let spill = crate::store::entries::memory_limit()?.max(64 << 10);
    let mut runs: Runs<[u8; 32]> = Runs::new(spill);
    let mut batch: Batch<[u8; 32]> = Batch::default();
    for e in meta.files.iter() {
        let e = e?;
        let mut sha = [0u8; 32];
        hex::decode_to_slice(e.sha256.trim_start_matches("sha256:"), &mut sha).map_err(|_| {
            Error::Check(format!(
                "{}: {}: sha256 {:?} is not one",
                path.display(),
                e.path,
                e.sha256
            ))
        })?;
        batch.push(&e.path, 0, &sha);
        if batch.size() > 64 << 10 {
            runs.add(&mut batch)?;
        }
    }
    runs.add(&mut batch)?;
    crate::sign::check_dir(dir, runs.merged()?, &[METADATA_FILE.into()], METADATA_FILE)
}
