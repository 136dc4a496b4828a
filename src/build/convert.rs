//! Re-expressing a bundle in another form (`mlart copy SRC DST --format …`) without its
//! project folder: the files of a pulled bundle, with the kinds, formats and frameworks its
//! metadata gives, become the spec and the source files of a new build.
//!
//! What the metadata says is kept: name, version, description, license, authors, source,
//! revision, `created` (so the file times of the new layers are the old ones), the validation
//! report and the models' I/O. Metrics, the feature schema and the environment summary are
//! parsed again from the same files, so they come out the same. The digest changes with the
//! form: signatures of the old manifest do not cover the new one.

use crate::build::bundle::Options;
use crate::build::collect::SourceFile;
use crate::error::{Error, Result};
use crate::format::metadata::{Kind, Metadata};
use crate::spec::Spec;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The spec and source files of the bundle pulled into `dir`: `files` are its paths (as pulled,
/// mlart.json and model.sig excluded) with their kinds.
pub fn from_pulled(
    dir: &Path,
    meta: &Metadata,
    files: &BTreeMap<String, Kind>,
) -> Result<(Spec, Vec<SourceFile>)> {
    let spec = Spec {
        file: dir.join("mlart.yaml"),
        root: dir.to_path_buf(),
        name: meta.name.clone(),
        version: meta.version.clone(),
        description: meta.description.clone(),
        license: meta.license.clone(),
        authors: meta.authors.clone(),
        source: meta.source.clone(),
        revision: meta.revision.clone(),
        sections: Vec::new(),
        gates: None,
        image: None,
        form: None,
        // the lineage the metadata recorded stays the bundle's
        lineage: meta.lineage.clone(),
        attest: false,
        exclude: Vec::new(),
    };
    let metric_files: BTreeSet<&str> = meta.metric_sources.values().map(String::as_str).collect();
    let mut out = Vec::new();
    let root: std::sync::Arc<std::path::Path> = dir.into();
    for (rel, &kind) in files {
        let abs = dir.join(rel);
        let m = std::fs::metadata(&abs).map_err(|e| Error::Io {
            context: format!("reading the pulled file {}", abs.display()),
            source: e,
        })?;
        let model = meta.models.iter().find(|x| &x.path == rel);
        #[cfg(unix)]
        let executable = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0;
        #[cfg(not(unix))]
        let executable = false;
        out.push(SourceFile {
            rel: rel.clone(),
            root: root.clone(),
            kind,
            size: m.len(),
            executable,
            model: crate::build::collect::ModelInfo::of(
                model.and_then(|x| x.format.clone()),
                model.and_then(|x| x.framework.clone()),
                model.and_then(|x| x.samples.clone()),
            ),
            metrics: kind == Kind::Eval && metric_files.contains(rel.as_str()),
        });
    }
    Ok((spec, out))
}

/// The build options that keep what the metadata recorded: `created` (as SOURCE_DATE_EPOCH)
/// and the validation record.
pub fn keep_recorded(meta: &Metadata, opts: &mut Options) {
    if let Some(epoch) = meta.created.as_deref().and_then(parse_rfc3339) {
        opts.epoch = Some(epoch);
    }
    if let Some(report) = &meta.validation {
        opts.validation = Some(crate::format::validation::BundleRecord {
            report: report.clone(),
            io: meta
                .models
                .iter()
                .filter_map(|m| m.io.clone().map(|io| (m.path.clone(), io)))
                .collect(),
        });
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` (what mlart writes) to Unix seconds; None for anything else.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // days from civil (Howard Hinnant), the inverse of `metadata::rfc3339`
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::metadata::rfc3339;

    #[test]
    fn rfc3339_round_trips() {
        for t in [0, 1, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "2023-11-14",
            "2023-13-14T00:00:00Z",
            "2023-11-14T22:13:20+01:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
