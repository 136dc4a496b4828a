//! What `mlart validate` validates (the spec's models, one model file, or a bundle's models)
//! and the judgement `bundle --validate` asks for before anything is built.

use super::{ModelInput, Options, Report};
use crate::build::collect::SourceFile;
use crate::error::{Error, Result};
use crate::format::feature_schema::FeatureSchema;
use crate::spec::Spec;
use std::path::{Path, PathBuf};

/// What `mlart validate [TARGET]` is asked to validate.
pub struct Request<'a> {
    /// A model file, a bundle (layout, archive, `oci:`/`oci-archive:` name, registry REF), or
    /// None for the models of the spec.
    pub target: Option<&'a str>,
    /// The spec (used when there is no target).
    pub spec: &'a Path,
    /// A feature schema file that replaces the spec's or the bundle's (`--schema`).
    pub schema: Option<&'a Path>,
    /// A samples file run through every model (`--samples`).
    pub samples: Option<&'a Path>,
    pub opts: Options,
}

/// Reads a bundle's models for validation: `(target, dir)` to the models (their files fetched,
/// verified, under `dir`) and the bundle's feature schema. Reading a bundle takes the registry
/// and extraction, which `check` does not depend on: the caller brings it.
pub type BundleReader<'a> =
    &'a dyn Fn(&str, &Path) -> Result<(Vec<ModelInput>, Option<FeatureSchema>)>;

/// What TARGET names.
#[cfg(feature = "validate")]
enum Target {
    Spec,
    Model(PathBuf),
    Bundle(String),
    Missing(String),
}

#[cfg(feature = "validate")]
fn target_kind(t: Option<&str>) -> Target {
    let Some(t) = t else { return Target::Spec };
    if ["oci:", "oci-archive:", "docker://"]
        .iter()
        .any(|p| t.starts_with(p))
    {
        return Target::Bundle(t.to_string());
    }
    let p = Path::new(t);
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Target::Bundle(t.to_string()),
        Ok(_) if is_tar(p) => Target::Bundle(t.to_string()),
        Ok(_) => Target::Model(p.to_path_buf()),
        // Not a file: a registry REF, or a path that does not exist.
        Err(_) => match crate::format::reference::parse_location(t) {
            Ok(crate::format::reference::Location::Registry { .. }) => {
                Target::Bundle(t.to_string())
            }
            _ => Target::Missing(t.to_string()),
        },
    }
}

/// Does the file look like a tar (an OCI archive)? `ustar` at offset 257.
#[cfg(feature = "validate")]
fn is_tar(p: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 262];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|_| &head[257..262] == b"ustar")
        .unwrap_or(false)
}

/// `mlart validate`: find the models TARGET names, then validate them. `progress` gets the
/// path of each model as it starts. Err for what cannot be validated at all; a model that
/// fails its checks is in the report (`passed: false`).
#[cfg(feature = "validate")]
pub fn validate_target(
    req: &Request,
    read_bundle: BundleReader,
    progress: &dyn Fn(&str),
) -> Result<Report> {
    use std::sync::Arc;
    req.opts.check()?;
    // `--samples`: a JSON file, or test data sets (a folder).
    let (samples, sets) = match req.samples {
        Some(p) if p.is_dir() => (
            None,
            Some(super::load_sample_dir(p, &p.display().to_string())?),
        ),
        Some(p) => (
            Some(Arc::new(super::load_samples(p, &p.display().to_string())?)),
            None,
        ),
        None => (None, None),
    };
    let schema_override = req.schema.map(super::load_schema).transpose()?;
    let tmp = tempfile::Builder::new()
        .prefix("mlart-validate-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temp directory".into(),
            source: e,
        })?;
    let (mut models, schema, what) = match target_kind(req.target) {
        Target::Spec => {
            let spec = crate::spec::load(req.spec)?;
            let files = crate::build::collect::collect(&spec, &[])?;
            let models = super::models_of_spec(&spec, &files)?;
            let schema = match schema_override {
                Some(s) => Some(s),
                None => super::schema_of_files(&files)?,
            };
            (models, schema, req.spec.display().to_string())
        }
        Target::Model(p) => {
            let name = p.display().to_string();
            let format = crate::build::collect::detect_format(&p, &name).or_else(|| {
                // An ONNX model without the .onnx extension: its header says so.
                super::onnx_header::scan_file(&p)
                    .ok()
                    .filter(|h| h.ir_version.is_some() && !h.opset.is_empty())
                    .map(|_| "onnx".to_string())
            });
            let test_data = match format.as_deref() {
                Some("onnx") => super::sets_beside_file(&p)?,
                _ => vec![],
            };
            let m = ModelInput {
                path: name.clone(),
                file: p,
                format,
                samples: None,
                test_data,
            };
            (vec![m], schema_override, name)
        }
        Target::Missing(t) => {
            return Err(Error::input(format!(
                "{t} does not exist: give a model file, a bundle (an OCI layout directory or archive) or a registry REF (host/repository:tag)"
            )))
        }
        Target::Bundle(t) => {
            let (models, schema) = read_bundle(&t, tmp.path())?;
            (models, schema_override.or(schema), t)
        }
    };
    if models.is_empty() {
        return Err(Error::input(format!(
            "{what} has no model to validate: list the model files under `model:`"
        )));
    }
    if samples.is_some() || sets.is_some() {
        for m in &mut models {
            m.samples = samples.clone();
            m.test_data = sets.clone().unwrap_or_default();
        }
    }
    let report = super::validate(&models, schema.as_ref(), &req.opts, progress)?;
    drop(tmp);
    Ok(report)
}

#[cfg(not(feature = "validate"))]
pub fn validate_target(
    _req: &Request,
    _read_bundle: BundleReader,
    _progress: &dyn Fn(&str),
) -> Result<Report> {
    Err(super::unavailable())
}

/// `bundle --validate`, before anything is written: validate the spec's models (`files` as
/// collected) against its schema, without timings (the report stored in a bundle must be the
/// same on every run). A model that fails is an error (exit 1): nothing is bundled.
#[cfg(feature = "validate")]
pub fn before_bundle(
    spec: &Spec,
    files: &[SourceFile],
    ort_lib: Option<PathBuf>,
    isolate: Option<PathBuf>,
    cancel: &crate::interrupt::Cancel,
    progress: &dyn Fn(&str),
) -> Result<Report> {
    let models = super::models_of_spec(spec, files)?;
    let schema = super::schema_of_files(files)?;
    let opts = Options {
        ort_lib,
        runs: 0,
        timings: false,
        isolate,
        cancel: cancel.clone(),
        ..Default::default()
    };
    let report = super::validate(&models, schema.as_ref(), &opts, progress)?;
    if !report.passed {
        return Err(Error::Check(format!(
            "validation failed, nothing was bundled: {}. Run `mlart validate -f {}` for the whole report",
            report.failures().join("; "),
            spec.file.display()
        )));
    }
    Ok(report)
}

#[cfg(not(feature = "validate"))]
pub fn before_bundle(
    _spec: &Spec,
    _files: &[SourceFile],
    _ort_lib: Option<PathBuf>,
    _isolate: Option<PathBuf>,
    _cancel: &crate::interrupt::Cancel,
    _progress: &dyn Fn(&str),
) -> Result<Report> {
    Err(super::unavailable())
}

/// Write the JSON report to `path` (`--report`): whole or not at all.
pub fn save_report(path: &Path, report: &Report) -> Result<()> {
    let bytes = crate::format::json::to_canonical_pretty(report);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mlart-tmp-report-")
        .tempfile_in(&dir)
        .map_err(|e| Error::Io {
            context: format!("creating a file in {}", dir.display()),
            source: e,
        })?;
    std::io::Write::write_all(tmp.as_file_mut(), &bytes).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })?;
    tmp.persist(path).map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e.error,
    })?;
    Ok(())
}
