//! Where the served models come from: a bundle (layout directory, archive, `oci:`/
//! `oci-archive:` name, registry REF: only the model files are pulled, through the blob cache
//! for a registry, each checked against the metadata's sha256), or a directory `mlart pull`
//! wrote. With trusted keys, nothing is served unless the signatures verify.

use crate::check::inspect::OpenLocation;
use crate::error::{Error, IoContext, Result};
use crate::extract::pull;
use crate::format::digest::HashWriter;
use crate::format::metadata::{Metadata, METADATA_FILE};
use crate::sign::PublicKey;
use crate::store::entries::Entries;
use std::path::{Path, PathBuf};

/// The bundle's models, on disk and verified.
pub struct Loaded {
    /// (its list of files stays on disk: a bundle of many files costs no memory here)
    pub metadata: Metadata<Entries>,
    /// Model `path` is at `dir/path`, and so are the samples the models record.
    pub dir: PathBuf,
    /// The manifest digest (None for a pulled directory).
    pub digest: Option<String>,
    /// The trusted keys that verified it (empty without `--key`).
    pub verified_by: Vec<String>,
    /// The temp directory the models were pulled into (removed on drop).
    _tmp: Option<tempfile::TempDir>,
}

/// How to read the source.
pub struct SourceOptions<'a> {
    pub keys: &'a [PublicKey],
    /// The blob cache for a registry source.
    pub cache: Option<PathBuf>,
    pub cancel: crate::interrupt::Cancel,
    pub open: OpenLocation<'a>,
}

/// Is `p` a directory of pulled files (not an OCI layout)?
fn is_pulled_dir(p: &Path) -> bool {
    p.is_dir() && !p.join("oci-layout").exists()
}

pub fn load(source: &str, o: &SourceOptions) -> Result<Loaded> {
    let p = Path::new(source);
    if is_pulled_dir(p) {
        return load_dir(p, o.keys);
    }
    let loc = crate::format::reference::parse_location(source)?;
    let is_registry = matches!(loc, crate::format::reference::Location::Registry { .. });
    let (mut src, tag) = (o.open)(&loc)?;
    let resolved = crate::store::layout::resolve(src.as_mut(), tag.as_deref())?;
    let metadata = crate::store::metadata::read_metadata(src.as_mut(), &resolved.manifest)?;
    no_models(&metadata, source)?;
    let tmp = tempfile::Builder::new()
        .prefix("mlart-serve-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temp directory for the models".into(),
            source: e,
        })?;
    let out = tmp.path().join("models");
    let (kinds, paths) = models_and_samples(&metadata)?;
    let opts = pull::PullOptions {
        strict: true,
        out: out.clone(),
        kinds,
        paths,
        cache: if is_registry { o.cache.clone() } else { None },
        verify_keys: o.keys.to_vec(),
        cancel: o.cancel.clone(),
        refused: "not served",
        ..Default::default()
    };
    let report = pull::pull(src.as_mut(), tag.as_deref(), &opts, &|_, _| {}, &|_| {})?;
    Ok(Loaded {
        metadata,
        dir: out,
        digest: Some(report.digest),
        verified_by: report.verified_by,
        _tmp: Some(tmp),
    })
}

/// The selection of a pull for serving: the model files (kind `model`), and when the models
/// record samples (mlart.json `models[].samples`) those too, by path.
fn models_and_samples(m: &Metadata<Entries>) -> Result<(Vec<String>, Vec<String>)> {
    let samples: Vec<&str> = m
        .models
        .iter()
        .filter_map(|m| m.samples.as_deref())
        .collect();
    if samples.is_empty() {
        return Ok((vec!["model".into()], vec![]));
    }
    let mut paths = Vec::new();
    for f in m.files.iter() {
        let f = f?;
        if f.kind == crate::format::metadata::Kind::Model {
            paths.push(globset::escape(&f.path));
        }
    }
    paths.extend(
        samples
            .iter()
            .flat_map(|s| crate::check::validate::recorded_samples_globs(s)),
    );
    Ok((vec![], paths))
}

fn no_models(m: &Metadata<Entries>, source: &str) -> Result<()> {
    if m.models.is_empty() {
        return Err(Error::input(format!(
            "{source} has no model to serve: its mlart.json lists no file under `models` (list the model files under `model:` in mlart.yaml and bundle again)"
        )));
    }
    Ok(())
}

/// A directory `mlart pull` wrote: its mlart.json, and with keys its model.sig over every
/// file; without keys, each model file is checked against the metadata's sha256.
fn load_dir(dir: &Path, keys: &[PublicKey]) -> Result<Loaded> {
    let meta_path = dir.join(METADATA_FILE);
    let mut f = std::fs::File::open(&meta_path).map_err(|_| {
        Error::input(format!(
            "{} is a directory without {METADATA_FILE}: give a bundle (an OCI layout directory, an archive or a registry REF) or a directory written by `mlart pull` (a whole pull of an mlart bundle, or any pull of another tool's artifact, writes {METADATA_FILE}). Files that another tool unpacked (`modctl extract`, `kit unpack`) come without one: serve the reference or layout itself (`mlart serve REF`), or pull it with `mlart pull REF -o DIR`",
            dir.display()
        ))
    })?;
    // (read as it streams, its list of files kept on disk)
    let metadata = crate::store::metadata::parse(&meta_path.display().to_string(), &mut f)?;
    no_models(&metadata, &dir.display().to_string())?;
    let mut verified_by = Vec::new();
    if !keys.is_empty() {
        let k = crate::sign::verify_dir(dir, keys)?;
        verified_by.push(k.display().to_string());
    }
    for m in &metadata.models {
        let rel = crate::extract::clean_path(&m.path).map_err(|e| {
            Error::input(format!(
                "{}: model path {:?}: {e}",
                meta_path.display(),
                m.path
            ))
        })?;
        let file = dir.join(&rel);
        let mut f = std::fs::File::open(&file).map_err(|_| {
            Error::input(format!(
                "{}: the model {} is missing (pull the whole bundle, or at least --kind model)",
                dir.display(),
                m.path
            ))
        })?;
        let mut h = HashWriter::new(std::io::sink());
        std::io::copy(&mut f, &mut h).ctx("reading", &file)?;
        let (_, d, _) = h.finish();
        let want = m.sha256.strip_prefix("sha256:").unwrap_or(&m.sha256);
        if d.hex() != want {
            return Err(Error::integrity(format!(
                "{}: {} does not match its sha256 in {METADATA_FILE} (sha256:{want} there, {d} on disk): the file changed after the pull; pull it again",
                dir.display(),
                m.path
            )));
        }
    }
    Ok(Loaded {
        metadata,
        dir: dir.to_path_buf(),
        digest: None,
        verified_by,
        _tmp: None,
    })
}

/// The name each model is served under: its file name without the extension, or (when two
/// share one) its path with `/` as `-`.
pub fn model_names(paths: &[String]) -> Vec<String> {
    let stem = |p: &str| {
        Path::new(p)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.to_string())
    };
    let stems: Vec<String> = paths.iter().map(|p| stem(p)).collect();
    paths
        .iter()
        .zip(&stems)
        .map(|(p, s)| {
            if stems.iter().filter(|x| *x == s).count() > 1 {
                let no_ext = p.strip_suffix(".onnx").unwrap_or(p);
                no_ext.replace('/', "-")
            } else {
                s.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        let n = super::model_names(&[
            "model/iris.onnx".into(),
            "a/m.onnx".into(),
            "b/m.onnx".into(),
        ]);
        assert_eq!(n, vec!["iris", "a-m", "b-m"]);
    }
}
