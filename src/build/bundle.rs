//! Assemble a bundle: group files into layers, stream them to a sink, parse metrics, schema
//! and env from the captured small files, write the metadata document, config and manifest.

use crate::build::collect::SourceFile;
use crate::build::filelist::FileList;
use crate::build::layer::{self, LayerDigests};
use crate::error::{Error, Result};
use crate::format::annotations::{KIND_ANNOTATION, TITLE_ANNOTATION};
use crate::format::compression::Compression;
use crate::format::digest::oci_digest;
use crate::format::digest::Digest;
use crate::format::json;
use crate::format::media_type::MANIFEST_MEDIA_TYPE;
use crate::format::media_type::{ARTIFACT_TYPE, METADATA_MEDIA_TYPE};
use crate::format::metadata::Kind;
use crate::format::metadata::{
    rfc3339, Form, LayerInfo, Metadata, ModelEntry, FORMAT_VERSION, METADATA_FILE, MODEL_DIR,
};
use crate::spec::Spec;
use crate::store::layout::BlobSink;
use oci_spec::image::{Descriptor, MediaType};
use std::collections::{BTreeMap, HashMap};

/// Model and data files at least this large get a layer of their own in the image form.
pub const DEFAULT_LARGE_FILE: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionChoice {
    /// none for model and data, gzip for the text kinds
    Auto,
    All(Compression),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub form: Form,
    pub compression: CompressionChoice,
    pub large_file: u64,
    /// SOURCE_DATE_EPOCH: file mtimes and `created`. None: mtime 0, no `created`.
    pub epoch: Option<u64>,
    pub os: String,
    pub arch: String,
    /// The platform variant (`v8` of linux/arm64/v8), if any.
    pub variant: Option<String>,
    /// Sign: an OMS `model.sig` among the files and an OCI signature of the manifest.
    pub sign: Option<std::sync::Arc<crate::sign::PrivateKey>>,
    /// `--validate`: the report (metadata `validation`) and the models' I/O (`models[].io`).
    pub validation: Option<crate::format::validation::BundleRecord>,
    /// Cancelled on Ctrl-C: the layer being written stops at its next read.
    pub cancel: crate::interrupt::Cancel,
    /// Layers built at once (`crate::build::layers::jobs`; 1: one after the other). The
    /// bytes never depend on it.
    pub jobs: usize,
    /// `--link`: raw layers in a layout are hard links to their files (opt-in: editing a
    /// source file in place afterwards changes the blob).
    pub link: bool,
    /// The file lists of the build stay in memory up to this many bytes, then go to temp
    /// files (`crate::build::entries`; `entries::memory_limit()` reads `MLART_LIST_MEMORY`).
    /// The bytes never depend on it.
    pub spill: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            form: Form::Image,
            compression: CompressionChoice::Auto,
            large_file: DEFAULT_LARGE_FILE,
            epoch: None,
            os: "linux".into(),
            arch: "amd64".into(),
            variant: None,
            sign: None,
            validation: None,
            cancel: Default::default(),
            jobs: crate::build::layers::jobs(),
            link: false,
            spill: crate::store::entries::SPILL,
        }
    }
}

/// Read `SOURCE_DATE_EPOCH` (unset or empty: None; anything but a non-negative integer: error).
pub fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(_) => Ok(None),
        Ok(s) => parse_epoch(&s),
    }
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): a later `created` is a date
/// other tools (skopeo, containerd) cannot read.
const MAX_EPOCH: u64 = 253_402_300_799;

/// `SOURCE_DATE_EPOCH`'s value: empty is unset; else whole seconds since 1970, up to year 9999.
fn parse_epoch(s: &str) -> Result<Option<u64>> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_EPOCH => Ok(Some(n)),
        Ok(_) => Err(Error::input(format!(
            "SOURCE_DATE_EPOCH={s} is past the year 9999 (at most {MAX_EPOCH}): dates past it are not RFC 3339, and skopeo or containerd would refuse the image. Set it to e.g. $(git log -1 --format=%ct), or unset it"
        ))),
        Err(_) => Err(Error::input(format!(
            "SOURCE_DATE_EPOCH={s:?} is not a number of seconds since 1970: set it to e.g. $(git log -1 --format=%ct), or unset it"
        ))),
    }
}

// ---------------- the metadata document ----------------

/// The result of a build.
#[derive(Debug)]
pub struct Built {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layers: Vec<LayerInfo>,
    /// mlart.json without its `files` (empty here: see `files`).
    pub metadata: Metadata,
    /// mlart.json's `files`: on disk past a few MiB, read back as often as needed.
    pub files: std::sync::Arc<crate::store::entries::Entries>,
    pub warnings: Vec<String>,
    pub input_bytes: u64,
    /// With `Options::sign`: the OCI signature of the manifest, for the caller to store
    /// (beside the bundle in a layout, as a referrer in a registry).
    pub signature: Option<crate::format::signature::OciSignature>,
    /// How the file layers' blobs were stored (written, cloned, copied, linked).
    pub stored: crate::store::place::Counts,
}

impl Built {
    /// The manifest's descriptor for index.json (with the tag).
    pub fn descriptor(&self, form: Form, tag: &str) -> Descriptor {
        let mut d = Descriptor::new(
            MediaType::ImageManifest,
            self.manifest.len() as u64,
            oci_digest(&self.manifest_digest),
        );
        let mut a = HashMap::new();
        a.insert(
            crate::format::annotations::REF_NAME.to_string(),
            tag.to_string(),
        );
        d.set_annotations(Some(a));
        let artifact_type = match form {
            Form::Artifact => Some(ARTIFACT_TYPE),
            Form::Modelpack => Some(crate::format::modelpack::MANIFEST_ARTIFACT_TYPE),
            Form::Image => None,
        };
        if let Some(at) = artifact_type {
            d.set_artifact_type(Some(MediaType::Other(at.into())));
        }
        d
    }
}

/// Build the bundle of `spec` from `files` into `sink`. `progress` gets the number of input
/// bytes read as they are read.
pub fn build<S: BlobSink + Send>(
    spec: &Spec,
    files: &FileList,
    opts: &Options,
    sink: &mut S,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Built> {
    let mut built = build_on(spec, files, opts, &[], sink, progress)?;
    Ok(built.remove(0))
}

/// Build runnable images: the bundle's layers on top of each of `bases` (image form; the base
/// layers must reach the sink by other means, see `crate::store::base::Base::copy_into`). The file layers
/// are built once and shared; each base gets its own metadata layer, config and manifest.
/// No bases: one bundle, as `build`.
pub fn build_on<S: BlobSink + Send>(
    spec: &Spec,
    files: &FileList,
    opts: &Options,
    bases: &[crate::store::base::BaseImage],
    sink: &mut S,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Built>> {
    if !bases.is_empty() && opts.form != Form::Image {
        return Err(Error::input(
            "--base builds a runnable image: it cannot be combined with `--format artifact`",
        ));
    }
    let mtime = opts.epoch.unwrap_or(0);
    let created = opts.epoch.map(rfc3339);
    let prefix = match opts.form {
        Form::Image => format!("{MODEL_DIR}/"),
        Form::Artifact | Form::Modelpack => String::new(),
    };
    let mut layers: Vec<LayerInfo> = Vec::new();
    // What reading each file gave, at its place in `files` (on disk past a few MiB: a
    // bundle's memory does not grow with its file count); the files whose bytes were captured
    // (parsed below); the models.
    let table = crate::build::entries::Table::new(files.len(), opts.spill)?;
    let looked: std::sync::Mutex<Vec<crate::build::captured::Looked>> = Default::default();
    let models: std::sync::Mutex<Vec<ModelEntry>> = Default::default();
    let mut descriptors: Vec<Descriptor> = Vec::new();

    // (each file is looked at once, as the layers are planned)
    let reserved = |f: &SourceFile| {
        let reserved = (opts.form != Form::Artifact && f.rel == METADATA_FILE)
            || (opts.sign.is_some() && f.rel == crate::format::signature::OMS_FILE);
        if reserved {
            return Err(Error::input(format!(
                "{}: a project file named {} would clash with the one mlart writes; rename or move it",
                f.abs().display(),
                f.rel
            )));
        }
        Ok(())
    };
    let plans = crate::build::layers::plan(files, opts, &reserved)?;
    let placer = sink.placer();
    let resumable = sink.resumable();
    if opts.link && placer.is_none() {
        return Err(Error::input(
            "--link hard-links files into a layout on the same filesystem: it cannot be combined with --push; bundle to a directory with -o, then push it",
        ));
    }
    let done = |layer: usize, f: &SourceFile, fd: layer::FileDigest| -> Result<()> {
        let i = fd.at;
        if f.kind == Kind::Model {
            models
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(ModelEntry {
                    path: f.rel.clone(),
                    format: f.format().map(str::to_string),
                    framework: f.framework().map(str::to_string),
                    samples: f.samples().map(str::to_string),
                    size: fd.size,
                    sha256: fd.digest().into_string(),
                    io: opts
                        .validation
                        .as_ref()
                        .and_then(|v| v.io.get(&f.rel).cloned()),
                });
        }
        table.put(
            i,
            &crate::build::entries::Read {
                layer: layer as u32,
                size: fd.size,
                sha256: fd.sha256,
            },
        )?;
        if fd.captured.is_some() || crate::build::captured::needs_capture(f) {
            looked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((i, f.clone(), fd.captured));
        }
        Ok(())
    };
    let cx = crate::build::layers::Context {
        prefix: &prefix,
        mtime,
        capture: &crate::build::captured::needs_capture,
        progress,
        cancel: &opts.cancel,
        placer: placer.as_ref(),
        link: opts.link,
        done: &done,
        resume: resumable.as_ref(),
    };
    let built_layers = crate::build::layers::build_all(&plans, sink, &cx, opts.jobs)?;
    let mut looked = looked.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut models = models.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut stored = crate::store::place::Counts::default();
    for (p, b) in plans.iter().zip(built_layers) {
        let ld = b.digests;
        stored.add(b.method);
        let (mut media_type, mut title) = if p.raw {
            let f = &p.first;
            (
                format!("application/vnd.mlart.{}.v1.raw", p.kind),
                f.rel.clone(),
            )
        } else {
            let mt = match opts.form {
                Form::Image => format!(
                    "application/vnd.oci.image.layer.v1.tar{}",
                    p.compression.suffix()
                ),
                // (ModelPack: replaced by its own media type below)
                Form::Artifact | Form::Modelpack => format!(
                    "application/vnd.mlart.{}.v1.tar{}",
                    p.kind,
                    p.compression.suffix()
                ),
            };
            let title = if p.files.len() == 1 && p.kind.is_bulk() {
                p.first.rel.clone()
            } else if let Some(dir) = &p.dir {
                // (the artifact form's folder of many small files; ModelPack's title is set
                // below)
                format!("{}-{dir}.tar{}", p.kind, p.compression.ext())
            } else {
                format!("{}.tar{}", p.kind, p.compression.ext())
            };
            (mt, title)
        };
        let mut extra = Vec::new();
        if opts.form == Form::Modelpack {
            (media_type, title, extra) = crate::build::modelpack::layer_annotations(
                p.kind,
                &p.first,
                p.dir.as_deref(),
                p.compression,
                mtime,
            );
        }
        descriptors.push(layer_descriptor(
            &ld,
            &media_type,
            p.kind.as_str(),
            &title,
            &extra,
        ));
        layers.push(LayerInfo {
            digest: ld.digest.clone(),
            size: ld.size,
            diff_id: ld.diff_id,
            media_type,
            kind: p.kind.to_string(),
            title,
            files: p.files.len(),
        });
    }

    // Parse what was captured; everything is still a file of the bundle.
    let crate::build::captured::Parsed {
        mut warnings,
        metrics,
        metric_sources,
        schemas,
        env,
    } = crate::build::captured::parse(&mut looked)?;
    drop(looked);
    models.sort_by(|a, b| a.path.cmp(&b.path));
    warnings.extend(
        models
            .iter()
            .filter(|m| m.size == 0)
            .map(|m| empty_model(spec, &m.path)),
    );
    // The file list, in path order (the order of `files`), from what the layers read.
    let mut list = crate::store::entries::Writer::new(
        layers.iter().map(|l| l.digest.as_str().into()).collect(),
        opts.spill,
    );
    let mut all = files.iter();
    table.read_all(&mut |i, r| {
        let (at, f) = all.next().ok_or_else(|| {
            Error::of(
                crate::error::Kind::Internal,
                "building the metadata: the file list ends early",
            )
        })??;
        if at != i {
            return Err(Error::of(
                crate::error::Kind::Internal,
                format!("building the metadata: {} is at {at}, not {i}", f.rel),
            ));
        }
        list.push(&f.rel, f.kind, r.size, &r.sha256, r.layer)
    })?;
    drop(table);
    let entries = std::sync::Arc::new(list.finish()?);
    if opts.link && opts.form == Form::Image {
        warnings.push("--link: the image form keeps files in tar layers, so nothing was linked; raw layers (one blob per file) are in `--format modelpack` and `--format artifact`".into());
    }
    warnings.extend(crate::build::layers::many_layers(
        &plans,
        layers.len(),
        opts,
    ));
    if spec.image.is_some() && opts.form != Form::Image {
        warnings.push("the spec's `image:` settings apply to the image form only; ignored".into());
    }
    if let Some(b) = spec
        .lineage
        .base_model
        .as_ref()
        .filter(|b| b.digest.is_none())
    {
        warnings.push(format!("base_model {} has no digest: the provenance names it but cannot pin its content; add `digest: sha256:…` to mlart.yaml", b.locator()));
    }
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        name: spec.name.clone(),
        version: spec.version.clone(),
        description: spec.description.clone(),
        license: spec.license.clone(),
        authors: spec.authors.clone(),
        source: spec.source.clone(),
        revision: spec.revision.clone(),
        created: created.clone(),
        form: opts.form,
        files: Vec::new(),
        models,
        schema: schemas.into_iter().next(),
        metrics,
        metric_sources,
        env: (!env.files.is_empty()).then_some(env),
        validation: opts.validation.as_ref().map(|v| v.report.clone()),
        base: None,
        dialect: None,
        lineage: spec.lineage.clone(),
    };
    let staged = Staged {
        layers,
        descriptors,
        warnings,
        input_bytes: files.total_size(),
        created,
        mtime,
        stored,
        entries,
    };
    if bases.is_empty() {
        return Ok(vec![finish(spec, opts, &staged, metadata, None, sink)?]);
    }
    bases
        .iter()
        .map(|b| finish(spec, opts, &staged, metadata.clone(), Some(b), sink))
        .collect()
}

/// The file layers of a bundle, before its metadata layer, config and manifest.
struct Staged {
    layers: Vec<LayerInfo>,
    descriptors: Vec<Descriptor>,
    warnings: Vec<String>,
    input_bytes: u64,
    created: Option<String>,
    mtime: u64,
    stored: crate::store::place::Counts,
    entries: std::sync::Arc<crate::store::entries::Entries>,
}

/// The metadata layer (image form), config and manifest of a staged bundle with its
/// `metadata`, on `base` if any.
fn finish<S: BlobSink>(
    spec: &Spec,
    opts: &Options,
    staged: &Staged,
    mut metadata: Metadata,
    base: Option<&crate::store::base::BaseImage>,
    sink: &mut S,
) -> Result<Built> {
    metadata.base = base.map(|b| b.record());
    let mut layers = staged.layers.clone();
    let mut descriptors = staged.descriptors.clone();
    let (created, mtime) = (staged.created.clone(), staged.mtime);
    let entries = &*staged.entries;
    let mut meta = {
        let streamed = crate::build::entries::Streamed {
            entries,
            failed: Default::default(),
        };
        let doc = metadata.clone().with_files(&streamed);
        crate::build::metadoc::MetaDoc::of_in_order(&doc, || {
            streamed
                .failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
        })?
    };
    let mut annotations = manifest_annotations(spec, created.as_deref());
    if let Some(b) = base {
        annotations.insert(
            crate::format::annotations::BASE_DIGEST_ANNOTATION.into(),
            b.manifest_digest.to_string(),
        );
    }

    let (config_desc, artifact_type) = match opts.form {
        Form::Image => {
            // The metadata document is /models/mlart.json in the last layer.
            let c = match opts.compression {
                CompressionChoice::All(c) => c,
                CompressionChoice::Auto => Compression::Gzip,
            };
            let w = sink.begin()?;
            let path = format!("{MODEL_DIR}/{METADATA_FILE}");
            let sig_path = format!("{MODEL_DIR}/{}", crate::format::signature::OMS_FILE);
            let mut oms = oms_with_metadata(spec, opts, entries, &mut meta)?;
            let len = meta.len;
            let mut entries: Vec<(&str, u64, &mut dyn std::io::Read)> =
                vec![(&path, len, meta.reader()?)];
            if let Some(o) = &mut oms {
                let len = o.len;
                entries.push((&sig_path, len, o.reader()?));
            }
            let (w, ld) = layer::write_tar_entries(w, &mut entries, c, mtime)?;
            sink.commit(w, &ld.digest, ld.size)?;
            let mt = format!("application/vnd.oci.image.layer.v1.tar{}", c.suffix());
            let title = format!("{METADATA_FILE}.tar{}", c.ext());
            descriptors.push(layer_descriptor(&ld, &mt, "metadata", &title, &[]));
            layers.push(LayerInfo {
                digest: ld.digest.clone(),
                size: ld.size,
                diff_id: ld.diff_id,
                media_type: mt,
                kind: "metadata".into(),
                title,
                files: 1,
            });
            let config = crate::build::base::image_config(
                spec,
                opts,
                base,
                &layers,
                &annotations,
                created.as_deref(),
            );
            if let Some(b) = base {
                // The base's layers come first, below /models.
                descriptors.splice(0..0, b.layers.iter().map(|l| l.descriptor.clone()));
                layers.splice(0..0, b.layer_infos());
            }
            let d = sink.put(&config)?;
            (
                Descriptor::new(MediaType::ImageConfig, config.len() as u64, oci_digest(&d)),
                None,
            )
        }
        Form::Modelpack => {
            // mlart.json, then model.sig (over the files and mlart.json, as in the image
            // form: both are files of what a ModelPack client pulls), as `doc` raw layers.
            // (stored first: its digest is taken as it is copied, and the statement reuses it
            // instead of reading the document once more)
            let mut raws: Vec<(&str, &str, Digest, u64)> =
                vec![("metadata", METADATA_FILE, meta.put(sink)?, meta.len)];
            if let Some(mut oms) = oms_with_metadata(spec, opts, entries, &mut meta)? {
                let d = oms.put(sink)?;
                raws.push(("signature", crate::format::signature::OMS_FILE, d, oms.len));
            }
            for (kind, path, d, size) in raws {
                let ld = LayerDigests {
                    digest: d.clone(),
                    size,
                    diff_id: d,
                };
                let mt = crate::format::modelpack::layer_media_type("doc", true, Compression::None);
                let meta = crate::format::modelpack::file_metadata_json(
                    path,
                    false,
                    ld.size,
                    &rfc3339(mtime),
                );
                let extra = crate::build::modelpack::file_annotations(path, Some(meta));
                descriptors.push(layer_descriptor(&ld, &mt, kind, path, &extra));
                layers.push(LayerInfo {
                    digest: ld.digest.clone(),
                    size: ld.size,
                    diff_id: ld.diff_id,
                    media_type: mt,
                    kind: kind.into(),
                    title: path.into(),
                    files: 1,
                });
            }
            let config = crate::build::modelpack::config(spec, &metadata, &layers);
            let d = sink.put(&config)?;
            (
                Descriptor::new(
                    MediaType::Other(crate::format::modelpack::CONFIG_MEDIA_TYPE.into()),
                    config.len() as u64,
                    oci_digest(&d),
                ),
                Some(crate::format::modelpack::MANIFEST_ARTIFACT_TYPE),
            )
        }
        Form::Artifact => {
            if let Some(key) = &opts.sign {
                // model.sig as a raw layer: `pull` and `oras pull` write it beside the files.
                let mut oms =
                    crate::build::omsdoc::signed(key, &spec.name, entries, None, opts.spill)?;
                let d = oms.put(sink)?;
                let ld = LayerDigests {
                    digest: d.clone(),
                    size: oms.len,
                    diff_id: d,
                };
                let mt = "application/vnd.mlart.signature.v1.raw".to_string();
                descriptors.push(layer_descriptor(
                    &ld,
                    &mt,
                    "signature",
                    crate::format::signature::OMS_FILE,
                    &[],
                ));
                layers.push(LayerInfo {
                    digest: ld.digest.clone(),
                    size: ld.size,
                    diff_id: ld.diff_id,
                    media_type: mt,
                    kind: "signature".into(),
                    title: crate::format::signature::OMS_FILE.into(),
                    files: 1,
                });
            }
            let d = meta.put(sink)?;
            (
                Descriptor::new(
                    MediaType::Other(METADATA_MEDIA_TYPE.into()),
                    meta.len,
                    oci_digest(&d),
                ),
                Some(ARTIFACT_TYPE),
            )
        }
    };
    let config_digest = Digest::parse(config_desc.digest().as_ref()).map_err(Error::Input)?;
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_desc,
        "layers": descriptors,
        "annotations": annotations,
    });
    if let Some(at) = artifact_type {
        m["artifactType"] = at.into();
    }
    let manifest = json::to_canonical_bytes(&m);
    let manifest_digest = sink.put_manifest_blob(&manifest)?;
    let signature = opts.sign.as_ref().map(|key| {
        crate::sign::oci_signature(
            key,
            &spec.name,
            MANIFEST_MEDIA_TYPE,
            &manifest_digest,
            manifest.len() as u64,
        )
    });
    Ok(Built {
        stored: staged.stored.clone(),
        signature,
        manifest,
        manifest_digest,
        config_digest,
        layers,
        metadata,
        files: staged.entries.clone(),
        warnings: staged.warnings.clone(),
        input_bytes: staged.input_bytes,
    })
}

/// With `--sign`: model.sig, the OMS statement over the files and mlart.json (`meta`), signed
/// (the image and ModelPack forms, where mlart.json is a file of what a client pulls).
fn oms_with_metadata(
    spec: &Spec,
    opts: &Options,
    entries: &crate::store::entries::Entries,
    meta: &mut crate::build::metadoc::MetaDoc,
) -> Result<Option<crate::build::metadoc::MetaDoc>> {
    let Some(key) = &opts.sign else {
        return Ok(None);
    };
    let digest = meta.digest()?;
    crate::build::omsdoc::signed(
        key,
        &spec.name,
        entries,
        Some((METADATA_FILE, digest.hex())),
        opts.spill,
    )
    .map(Some)
}

fn layer_descriptor(
    ld: &LayerDigests,
    media_type: &str,
    kind: &str,
    title: &str,
    extra: &[(String, String)],
) -> Descriptor {
    let mt = match media_type {
        "application/vnd.oci.image.layer.v1.tar" => MediaType::ImageLayer,
        "application/vnd.oci.image.layer.v1.tar+gzip" => MediaType::ImageLayerGzip,
        "application/vnd.oci.image.layer.v1.tar+zstd" => MediaType::ImageLayerZstd,
        other => MediaType::Other(other.into()),
    };
    let mut d = Descriptor::new(mt, ld.size, oci_digest(&ld.digest));
    let mut a = HashMap::new();
    a.insert(KIND_ANNOTATION.to_string(), kind.to_string());
    a.insert(TITLE_ANNOTATION.to_string(), title.to_string());
    a.extend(extra.iter().cloned());
    d.set_annotations(Some(a));
    d
}

fn manifest_annotations(spec: &Spec, created: Option<&str>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            a.insert(format!("org.opencontainers.image.{k}"), v);
        }
    };
    put("title", Some(spec.name.clone()));
    put("version", Some(spec.version.clone()));
    put("description", spec.description.clone());
    put("licenses", spec.license.clone());
    put(
        "authors",
        (!spec.authors.is_empty()).then(|| spec.authors.join(", ")),
    );
    put("source", spec.source.clone());
    put("revision", spec.revision.clone());
    put("created", created.map(str::to_string));
    a
}

// ---------------- reading a bundle back ----------------

/// The warning for a model file of 0 bytes (a failed export or download, a placeholder), which
/// is bundled as it is: it names the file and the spec's `model:` entry it came from.
fn empty_model(spec: &Spec, rel: &str) -> String {
    let entry = spec
        .sections
        .iter()
        .filter(|(k, _)| *k == Kind::Model)
        .flat_map(|(_, entries)| entries)
        .find(|e| {
            let p = e.path.trim_start_matches("./").trim_end_matches('/');
            let glob = || {
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .is_ok_and(|g| g.compile_matcher().is_match(rel))
            };
            p == rel
                || p == "."
                || rel.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
                || glob()
        });
    let from = match entry {
        Some(e) => format!(
            "the `model:` entry `{}` ({}:{})",
            e.path,
            spec.file.display(),
            e.pos.line
        ),
        None => format!("the `model:` section of {}", spec.file.display()),
    };
    format!(
        "{rel} is empty (0 bytes), from {from}: a model file with no bytes is almost always a mistake (an export or download that failed); it is bundled as it is. Write the model there, or drop it from the spec"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_is_whole_seconds_up_to_year_9999() {
        assert_eq!(parse_epoch("").unwrap(), None);
        assert_eq!(parse_epoch("0").unwrap(), Some(0));
        assert_eq!(parse_epoch("253402300799").unwrap(), Some(MAX_EPOCH));
        let e = parse_epoch("253402300800").unwrap_err().to_string();
        assert!(e.contains("year 9999") && e.contains("unset it"), "{e}");
        assert!(parse_epoch("99999999999999").is_err());
        for bad in ["abc", "-5", "1e9", " 1700000000", "1.5"] {
            let e = parse_epoch(bad).unwrap_err().to_string();
            assert!(e.contains("not a number of seconds"), "{bad}: {e}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
