//! `mlart validate BUNDLE`: the bundle's models (and the test data sets beside them) fetched
//! for validation.

use super::args::RegistryArgs;
use mlart::check::validate;
use mlart::Result;
use std::path::Path;

/// The models of a bundle: its metadata, and only its model files and the test data sets
/// beside its ONNX models (format/test_data.rs) fetched (verified) into `tmp`. (Here, not in
/// `check`: it takes the registry and extraction, and extraction itself uses `check` to
/// verify signatures.)
pub fn bundle_models(
    target: &str,
    tag: Option<&str>,
    reg: &RegistryArgs,
    tmp: &Path,
) -> Result<(
    Vec<validate::ModelInput>,
    Option<mlart::format::feature_schema::FeatureSchema>,
)> {
    use mlart::extract::pull;
    use mlart::format::metadata::Kind;
    use mlart::format::reference::{self, Location};
    use mlart::format::test_data;

    let loc = reference::parse_location(target)?;
    let (mut src, ltag) = mlart::store::registry::open_location(&loc, &reg.options())?;
    let tag = tag.map(String::from).or(ltag);
    let resolved = mlart::store::layout::resolve(src.as_mut(), tag.as_deref())?;
    let meta = mlart::store::metadata::read_metadata(src.as_mut(), &resolved.manifest)
        .and_then(mlart::store::entries::Entries::in_memory)?;
    let out = tmp.join("models");
    let all: Vec<&str> = meta.files.iter().map(|f| f.path.as_str()).collect();
    let sets_of = |m: &mlart::format::metadata::ModelEntry| match m.format.as_deref() {
        Some("onnx") => test_data::sets_beside(&m.path, all.iter().copied()),
        _ => vec![],
    };
    let test_files: Vec<&str> = meta
        .models
        .iter()
        .flat_map(sets_of)
        .flat_map(|s| s.inputs.into_iter().chain(s.outputs))
        .filter_map(|p| all.iter().copied().find(|a| *a == p))
        .collect();
    // The samples the bundle records for its ONNX models (the spec's `samples:`).
    let is_onnx = |m: &&mlart::format::metadata::ModelEntry| m.format.as_deref() == Some("onnx");
    let samples: Vec<&str> = meta
        .models
        .iter()
        .filter(is_onnx)
        .filter_map(|m| m.samples.as_deref())
        .collect();
    // Only the model files are fetched (all of them: an ONNX model may keep its weights in
    // external data files beside it), and only when there is an ONNX model to run.
    if meta.models.iter().any(|m| is_onnx(&m)) {
        // A registry's layers go through the local cache, as a pull's do.
        let from_registry = matches!(loc, Location::Registry { .. });
        // With test data sets or samples, the model files and those by path (kinds and paths
        // intersect).
        let (kinds, paths) = if test_files.is_empty() && samples.is_empty() {
            (vec!["model".into()], vec![])
        } else {
            let models = meta.files.iter().filter(|f| f.kind == Kind::Model);
            let paths = models
                .map(|f| f.path.as_str())
                .chain(test_files.iter().copied())
                .map(globset::escape)
                .chain(
                    samples
                        .iter()
                        .flat_map(|s| validate::recorded_samples_globs(s)),
                )
                .collect();
            (vec![], paths)
        };
        let opts = pull::PullOptions {
            strict: false,
            out: out.clone(),
            kinds,
            paths,
            cache: from_registry.then(pull::default_cache).flatten(),
            cancel: reg.cancel.clone(),
            ..Default::default()
        };
        pull::pull(src.as_mut(), tag.as_deref(), &opts, &|_, _| {}, &|_| {})?;
    }
    let mut models = Vec::new();
    for m in &meta.models {
        let mut input = validate::ModelInput {
            path: m.path.clone(),
            file: out.join(&m.path),
            format: m.format.clone(),
            samples: None,
            test_data: validate::SampleSet::from_paths(sets_of(m), |rel| out.join(rel)),
        };
        if let Some(s) = m.samples.as_deref().filter(|_| is_onnx(&m)) {
            if !validate::use_recorded_samples(&mut input, &out, s, target)? {
                return Err(mlart::Error::input(format!(
                    "{target}: its mlart.json names {s} as the samples of model {} (models[].samples), and the bundle holds no such file or folder: the metadata does not match the files; bundle the project again",
                    m.path
                )));
            }
        }
        models.push(input);
    }
    Ok((models, meta.schema))
}
