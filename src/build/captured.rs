//! The small files a bundle reads for its metadata (metrics reports, feature schemas,
//! environment specs): kept in memory as their layer reads them, parsed once all are read.

use crate::build::collect::SourceFile;
use crate::build::{envinfo, layer, metrics, schema};
use crate::error::{Error, Result};
use crate::format::feature_schema::FeatureSchema;
use crate::format::metadata::{EnvSummary, Kind, Metrics};
use std::collections::BTreeMap;

/// Files whose bytes are kept as they are read, to be parsed: metrics reports, feature
/// schemas, environment specs.
pub(super) fn needs_capture(f: &SourceFile) -> bool {
    match f.kind {
        Kind::Eval => f.metrics,
        Kind::Schema | Kind::Env => true,
        _ => false,
    }
}

/// What the captured files (metrics reports, feature schemas, env specs) gave.
pub(super) struct Parsed {
    pub warnings: Vec<String>,
    pub metrics: Metrics,
    pub metric_sources: BTreeMap<String, String>,
    pub schemas: Vec<FeatureSchema>,
    pub env: EnvSummary,
}

/// A file a layer read for its metadata: its place in the bundle's list, the file, and its
/// bytes if it was small enough to keep.
pub(super) type Looked = (usize, SourceFile, Option<Vec<u8>>);

/// Parse the captured files, in path order (the order of their places in the bundle's list):
/// which warning comes first, which report's metric is kept.
pub(super) fn parse(looked: &mut [Looked]) -> Result<Parsed> {
    let mut warnings = Vec::new();
    let mut metrics = Metrics::new();
    let mut metric_sources = BTreeMap::new();
    let mut schemas: Vec<FeatureSchema> = Vec::new();
    let mut env = EnvSummary::default();
    // (in path order: which warning comes first, which report's metric is kept)
    looked.sort_by_key(|l| l.0);
    for (_, f, captured) in looked.iter() {
        let Some(bytes) = captured else {
            if needs_capture(f) {
                warnings.push(format!(
                    "{}: larger than {} MiB, not parsed",
                    f.rel,
                    layer::CAPTURE_LIMIT >> 20
                ));
            }
            continue;
        };
        match f.kind {
            Kind::Eval => match metrics::parse(&f.rel, bytes) {
                Ok(m) => {
                    for (k, v) in m {
                        if let Some(prev) = metric_sources.get(&k) {
                            warnings.push(format!("{}: metric {k:?} is also in {prev}; keeping the value from {prev}", f.rel));
                            continue;
                        }
                        metric_sources.insert(k.clone(), f.rel.clone());
                        metrics.insert(k, v);
                    }
                }
                Err(metrics::NotMetrics::Skip(why)) => warnings.push(format!(
                    "{}: no metrics read ({why}); it stays in the bundle as a file. Mark it `metrics: false` in the spec to silence this",
                    f.rel
                )),
                Err(metrics::NotMetrics::NumericNames(names)) => {
                    let shown: Vec<String> =
                        names.iter().take(3).map(|n| format!("{n:?}")).collect();
                    return Err(Error::input(format!(
                        "{}: this eval file would give metrics named {}{}: names that are numbers, so it is a table of values (a CSV without a header, say), not a metrics report. Mark it `metrics: false` in the spec's `eval:` entry (`- path: {}` with `metrics: false`) to keep it as a plain file, or give it `name,value` rows",
                        f.abs().display(),
                        shown.join(", "),
                        if names.len() > 3 { ", …" } else { "" },
                        f.rel
                    )));
                }
            },
            Kind::Schema => match schema::parse(&f.rel, bytes) {
                Ok(schema::Parsed::Schema(s)) => schemas.push(s),
                Ok(schema::Parsed::NotASchema) => {}
                Err(why) => {
                    return Err(Error::input(format!(
                        "{}: {why}. Fix the feature schema (format in README, \"Feature schema\"), or move the file to `docs`",
                        f.abs().display()
                    )))
                }
            },
            Kind::Env => {
                if let Err(why) = envinfo::add(&mut env, &f.rel, bytes) {
                    warnings.push(format!("{}: not summarised ({why})", f.rel));
                }
            }
            _ => {}
        }
    }
    if schemas.len() > 1 {
        warnings.push(format!(
            "several feature schemas ({}); using {}",
            schemas
                .iter()
                .map(|s| s.file.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            schemas[0].file
        ));
    }

    Ok(Parsed {
        warnings,
        metrics,
        metric_sources,
        schemas,
        env,
    })
}
