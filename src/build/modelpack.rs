//! The CNCF ModelPack form of a bundle (`--format modelpack`): which files share a layer, the
//! layers' media types and annotations, and the config document.
//!
//! Each file is a `.raw` layer (the blob is the file: no tar, nothing to unpack, and an
//! unchanged file is an unchanged blob), paths relative to the project exactly as in
//! mlart.yaml. Only a directory with many small files of one kind becomes one tar layer (a
//! manifest of ten thousand layers is one no registry takes). mlart.json and model.sig follow
//! as `doc` raw layers, so every verb of mlart reads a ModelPack bundle as it reads its own.

use crate::build::collect::SourceFile;
use crate::format::compression::Compression;
use crate::format::metadata::{rfc3339, Kind, LayerInfo, Metadata};
use crate::format::modelpack::{self, Config, Descriptor, ModelConfig, ModelFs};
use crate::spec::Spec;

/// A directory holding more small files of one kind than this gets one tar layer for them
/// (`layers::plan`); so do the project's top-level files.
pub const MAX_RAW_FILES_PER_DIR: usize = 16;

/// The `org.cncf.model.filepath` (and title) of the tar layer of a kind's many small top-level
/// files: `<kind>.tar[.gz|.zst]`, e.g. `model.tar`, `docs.tar.gz` (the artifact form's title
/// for it too). Its entries are the files' own paths (`a.txt`), as a directory's tar layer
/// holds `dir/x` and is annotated `dir`.
///
/// The spec only says the annotation is "the file path of the layer". The value has to be
/// one path component that is neither empty nor `.`, for what the clients do with it:
/// - modctl (`pkg/codec/tar.go`, `Decode`) ignores it for a tar layer and unpacks the entries
///   into the output directory;
/// - KitOps (`generateKitfileForModelPack`, `pkg/lib/filesystem/unpack/core.go`) refuses a
///   ModelPack without it on every layer ("unknown file path for layer"), requires a local
///   path (`VerifySubpath`: `filepath.IsLocal`) and unpacks the entries into
///   `filepath.Dir(path)`: `.` for one component, as for a directory's `dir`;
/// - modelpack-client (PyPI, `_pull_layer`) checks the path of every layer with
///   `_safe_destination`, which refuses `.` and the empty path ("artifact path must not be
///   empty"; an empty annotation falls back to the title), then unpacks the entries into
///   the output directory; with `unpack=False` it saves the layer as this path (plus `.tar`
///   when it has no archive extension).
///
/// So `.` (the project's root, the most literal value) breaks modelpack-client, and the
/// empty path breaks KitOps; a file name works for all three. A project with a top-level
/// file or directory of that name keeps its top-level files a layer each
/// (`layers::plan`).
pub fn loose_path(kind: Kind, compression: Compression) -> String {
    format!("{kind}.tar{}", compression.ext())
}

/// Media type, title (= file path) and the ModelPack annotations of a layer.
pub fn layer_annotations(
    kind: Kind,
    first: &SourceFile,
    dir: Option<&str>,
    compression: Compression,
    mtime: u64,
) -> (String, String, Vec<(String, String)>) {
    match dir {
        None => {
            let f = first;
            let mt = modelpack::layer_media_type(
                modelpack::layer_type(kind, &f.rel),
                true,
                Compression::None,
            );
            let name = f.rel.rsplit('/').next().unwrap_or(&f.rel);
            let meta = modelpack::file_metadata_json(name, f.executable, f.size, &rfc3339(mtime));
            (mt, f.rel.clone(), file_annotations(&f.rel, Some(meta)))
        }
        Some(dir) => {
            let mt =
                modelpack::layer_media_type(modelpack::layer_type(kind, ""), false, compression);
            (mt, dir.to_string(), file_annotations(dir, None))
        }
    }
}

/// `org.cncf.model.filepath` (+ the file metadata) of a layer.
pub fn file_annotations(path: &str, metadata: Option<String>) -> Vec<(String, String)> {
    let mut a = vec![(modelpack::FILEPATH_ANNOTATION.to_string(), path.to_string())];
    if let Some(m) = metadata {
        a.push((modelpack::FILE_METADATA_ANNOTATION.to_string(), m));
    }
    a
}

/// The ModelPack config of a bundle: descriptor from the spec, what is known of the model,
/// and the diff_ids of every layer.
pub fn config(spec: &Spec, metadata: &Metadata, layers: &[LayerInfo]) -> Vec<u8> {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    // The model format, when the bundle's models agree on one.
    let mut formats: Vec<&str> = metadata
        .models
        .iter()
        .filter_map(|m| m.format.as_deref())
        .collect();
    formats.sort_unstable();
    formats.dedup();
    let c = Config {
        descriptor: Descriptor {
            created_at: metadata.created.clone(),
            authors: spec.authors.clone(),
            name: spec.name.clone(),
            doc_url: None,
            source_url: non_empty(&spec.source),
            datasets_url: Vec::new(),
            version: spec.version.clone(),
            revision: non_empty(&spec.revision),
            licenses: non_empty(&spec.license).into_iter().collect(),
            title: Some(spec.name.clone()),
            description: non_empty(&spec.description),
        },
        config: {
            // The model facts `training:` carries (an importer fills them from config.json,
            // safetensors headers, a Kitfile or a Modelfile).
            let t = spec.lineage.training.clone().unwrap_or_default();
            ModelConfig {
                architecture: t.architecture,
                format: (formats.len() == 1).then(|| formats[0].to_string()),
                param_size: t.param_size,
                precision: t.precision,
                quantization: t.quantization,
            }
        },
        modelfs: ModelFs {
            diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
            ..ModelFs::default()
        },
    };
    crate::format::json::to_canonical_bytes(&c)
}
