//! `mlart bundle` from start to end: collect the spec's files, [add the validation report],
//! build the layers, config and manifest(s) [on a base image], and store them in the
//! destination: a layout directory or archive, or a registry that each layer streams into.
//!
//! Build knows neither the registry client nor validation: the caller brings the judgement
//! (`Request::validate`) and the way to fetch a base's layers (`BaseFetch`), and hands over the
//! registry already opened as a `store` sink.

use crate::build::base;
use crate::build::bundle::{self, Built, Options};
use crate::build::collect::{self, SourceFile};
use crate::build::filelist::{FileList, ListWriter};
use crate::error::{Error, Result};
use crate::format::digest::Digest;
use crate::format::media_type::{INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::format::metadata::{Form, Kind, LayerInfo, Metrics};
use crate::format::platform::{Platform, PlatformChoice};
use crate::format::validation::{BundleRecord, Report, Summary};
use crate::spec::Spec;
use crate::store::base::Base;
use crate::store::layout::{BlobSink as _, LayoutWriter, Staging};
use crate::store::push::PushReport;
use crate::store::referrers::{push_referrers, Referrer};
use crate::store::registry_sink::RegistrySink;
use serde::Serialize;
use std::path::PathBuf;

/// The bundle file that holds the report of `bundle --validate`.
pub const VALIDATION_FILE: &str = "eval/validation.json";

/// Where the bundle goes.
pub enum Destination {
    /// An OCI image layout directory, or an OCI archive when the path ends in `.tar`.
    Local(PathBuf),
    /// A registry (tagged by the sink's reference): each layer streams up as it is built.
    Registry(Box<RegistrySink>),
}

/// Bringing a base image's layers into the destination. It takes the registry settings,
/// which build does not know of: the caller implements it.
pub trait BaseFetch {
    /// Copy the layers into a layout being written, each verified as it streams; `progress`
    /// gets the bytes copied.
    fn copy_to_layout(
        &self,
        base: &Base,
        w: &mut LayoutWriter,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()>;
    /// Bring the layers into the registry's repository: skipped when there, else mounted or
    /// uploaded.
    fn copy_to_registry(&self, base: &Base, sink: &mut RegistrySink) -> Result<()>;
}

/// `--base`: the resolved base image and how its layers are fetched.
pub struct OnBase<'a> {
    pub base: &'a Base,
    /// One image per platform of the base and an index over them (`--platform all`).
    pub index: bool,
    pub fetch: &'a dyn BaseFetch,
}

/// The form, tag and attestation choice of one bundle: the command line's choices over the
/// spec's `form:`, `version` and `attest:`, checked against each other.
pub struct Settings {
    pub form: Form,
    pub tag: String,
    pub attest: bool,
}

/// What the command line chose; `None`/`false` leaves it to the spec.
#[derive(Default)]
pub struct Choices<'a> {
    pub form: Option<Form>,
    pub tag: Option<&'a str>,
    pub attest: bool,
    /// A signing key was given (`--sign`).
    pub signing: bool,
    /// `--base`: a runnable image on a base image.
    pub on_base: bool,
}

/// Resolve `choices` against `spec`: an error of kind usage or input names the flag or spec
/// field at fault and the fix.
pub fn settings(spec: &Spec, choices: &Choices) -> Result<Settings> {
    let form = choices.form.or(spec.form).unwrap_or(Form::Image);
    if choices.on_base && form != Form::Image {
        let f = form.as_str();
        return Err(Error::input(format!(
            "--base builds a runnable image: it cannot be combined with the {f} form (`--format {f}`, or `form: {f}` in the spec)"
        )));
    }
    let attest = choices.attest || spec.attest;
    if attest && !choices.signing {
        return Err(Error::of(
            crate::error::Kind::Usage,
            if choices.attest {
                "--attest needs --sign KEY: the provenance and ML-BOM are signed with the bundle's key"
            } else {
                "the spec says `attest: true`, which needs --sign KEY: the provenance and ML-BOM are signed with the bundle's key (or remove `attest: true`)"
            },
        ));
    }
    let tag = choices
        .tag
        .map_or_else(|| spec.version.clone(), str::to_string);
    if !crate::spec::is_valid_tag(&tag) {
        return Err(Error::input(format!(
            "--tag {tag:?} is not a valid OCI tag: use letters, digits, `.`, `_`, `-`"
        )));
    }
    Ok(Settings { form, tag, attest })
}

/// Judges the collected files before anything is written (`bundle --validate`): the report
/// to store in the bundle, or an error and nothing is bundled.
pub type Validate<'a> = &'a dyn Fn(&[SourceFile]) -> Result<Report>;

/// What to bundle.
pub struct Request<'a> {
    pub spec: &'a Spec,
    pub opts: Options,
    /// The tag in the layout, or of the registry reference when it has none.
    pub tag: String,
    pub base: Option<OnBase<'a>>,
    pub validate: Option<Validate<'a>>,
    /// Also make the provenance and ML-BOM attestations, signed with `opts.sign`'s key
    /// (`--attest`, `attest: true`).
    pub attest: bool,
}

/// Progress of the bytes read and written; the caller draws it.
pub trait Progress: Sync {
    /// The work starts: `total` bytes, described by `message`.
    fn start(&self, total: u64, message: String);
    fn advance(&self, bytes: u64);
    /// Everything is stored.
    fn finish(&self);
}

/// Where the bundle was stored.
pub enum Stored {
    Local { output: PathBuf, archive: bool },
    Registry(PushReport),
}

/// What `bundle` did.
pub struct Bundled {
    pub name: String,
    pub tag: String,
    pub form: Form,
    pub stored: Stored,
    /// One bundle per platform (one without `--platform all`); the first one is the summary's.
    pub built: Vec<Built>,
    /// The manifest (or index) the tag names, and its size.
    pub manifest_digest: Digest,
    pub manifest_size: usize,
    /// Input files (with the validation report).
    pub files: usize,
    /// `--validate`: the report stored in the bundle.
    pub validation: Option<Report>,
    pub base: Option<BaseSummary>,
}

/// The summary of a bundle written to a layout or archive (`bundle --json`).
#[derive(Serialize)]
pub struct LocalSummary<'a> {
    pub output: String,
    pub archive: bool,
    pub name: &'a str,
    pub tag: &'a str,
    pub form: Form,
    pub manifest_digest: String,
    pub manifest_size: usize,
    pub config_digest: String,
    pub files: usize,
    pub input_bytes: u64,
    pub layers: &'a [LayerInfo],
    /// How the file layers' blobs were stored: written (tar and compressed layers), cloned
    /// (a reflink of a raw layer's file), copied (as it was hashed), linked (`--link`).
    pub stored: &'a crate::store::place::Counts,
    pub metrics: &'a Metrics,
    pub warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<&'a Summary>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<&'a BaseSummary>,
}

impl Bundled {
    /// The summary of a local bundle (None for one pushed: the push report says it).
    pub fn local_summary(&self, seconds: f64) -> Option<LocalSummary<'_>> {
        let Stored::Local { output, archive } = &self.stored else {
            return None;
        };
        let built = &self.built[0];
        Some(LocalSummary {
            output: output.display().to_string(),
            archive: *archive,
            name: &self.name,
            tag: &self.tag,
            form: self.form,
            manifest_digest: self.manifest_digest.to_string(),
            manifest_size: self.manifest_size,
            config_digest: built.config_digest.to_string(),
            files: self.files,
            input_bytes: built.input_bytes,
            layers: &built.layers,
            stored: &built.stored,
            metrics: &built.metadata.metrics,
            warnings: &built.warnings,
            validation: self.validation.as_ref().map(|r| &r.summary),
            seconds,
            base: self.base.as_ref(),
        })
    }
}

/// The image config's platform: without a base it is fixed (linux/amd64 unless given), so
/// digests do not depend on the machine; on a base it comes from the base.
pub fn platform(choice: &PlatformChoice, on_base: bool) -> Result<Platform> {
    match (on_base, choice) {
        (false, PlatformChoice::All) => Err(Error::input(
            "--platform all needs --base: it builds one image per platform of the base",
        )),
        (false, PlatformChoice::One(p)) => Ok(p.clone()),
        _ => Platform::parse("linux/amd64"),
    }
}

/// `bundle --base`: the base as given and resolved, and the image built per platform.
#[derive(Serialize)]
pub struct BaseSummary {
    pub reference: String,
    pub digest: String,
    /// The output is an index (`--platform all` on a multi-platform base).
    pub index: bool,
    pub images: Vec<PlatformImage>,
}

#[derive(Serialize)]
pub struct PlatformImage {
    pub platform: String,
    pub base_digest: String,
    pub manifest_digest: String,
    pub config_digest: String,
}

impl BaseSummary {
    fn of(base: &Base, built: &[Built], index: bool) -> BaseSummary {
        BaseSummary {
            reference: base.given.clone(),
            digest: base.digest.to_string(),
            index,
            images: base
                .images
                .iter()
                .zip(built)
                .map(|(i, b)| PlatformImage {
                    platform: i.platform.to_string(),
                    base_digest: i.manifest_digest.to_string(),
                    manifest_digest: b.manifest_digest.to_string(),
                    config_digest: b.config_digest.to_string(),
                })
                .collect(),
        }
    }
}

/// Bundle `req.spec` into `dest`.
pub fn bundle(req: Request, dest: Destination, progress: &dyn Progress) -> Result<Bundled> {
    run(req, None, dest, progress)
}

/// Bundle `files` (not collected from the spec: the files of a bundle being converted,
/// `build::convert`) into `dest`.
pub fn bundle_files(
    req: Request,
    files: Vec<SourceFile>,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<Bundled> {
    run(req, Some(files), dest, progress)
}

fn run(
    mut req: Request,
    given: Option<Vec<SourceFile>>,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<Bundled> {
    if req.attest && req.opts.sign.is_none() {
        return Err(Error::of(
            crate::error::Kind::Usage,
            "--attest (or `attest: true` in the spec) needs --sign KEY: the attestations are signed with the bundle's key",
        ));
    }
    // A layout is staged beside its final place; neither may be collected into the bundle.
    let dest = match dest {
        Destination::Local(output) => {
            let staging = Staging::new(&output)?;
            Staged::Local(output, staging)
        }
        Destination::Registry(sink) => Staged::Registry(sink),
    };
    let exclude = match &dest {
        Staged::Local(output, staging) => vec![output.clone(), staging.layout_dir()],
        Staged::Registry(_) => Vec::new(),
    };
    let mut files = match given {
        Some(files) => FileList::of(files)?,
        // (a folder that cannot be listed is said at its spec entry too)
        None => collected(req.spec, &exclude, req.opts.spill)
            .map_err(|e| super::unreadable::explain(req.spec, e))?,
    };
    let validation = match req.validate {
        Some(v) => Some(add_validation(v, &mut files, &mut req.opts)?),
        None => None,
    };
    // (a project file that cannot be opened is said at its spec entry, once the staged
    // output is gone)
    let stored = match dest {
        Staged::Local(output, staging) => to_local(&req, &files, output, staging, progress),
        Staged::Registry(sink) => to_registry(&req, &files, *sink, progress),
    }
    .map_err(|e| super::unreadable::explain(req.spec, e))?;
    progress.finish();
    let makes_index = req.base.as_ref().is_some_and(|b| b.index);
    Ok(Bundled {
        name: req.spec.name.clone(),
        tag: req.tag.clone(),
        form: req.opts.form,
        base: req
            .base
            .as_ref()
            .map(|b| BaseSummary::of(b.base, &stored.built, makes_index)),
        stored: stored.to,
        built: stored.built,
        manifest_digest: stored.manifest_digest,
        manifest_size: stored.manifest_size,
        files: files.len(),
        validation: validation.map(|(_, r)| r),
    })
}

/// A destination being written.
enum Staged {
    Local(PathBuf, Staging),
    Registry(Box<RegistrySink>),
}

/// What a destination got: where, the bundle(s), and the manifest or index the tag names.
struct Done {
    to: Stored,
    built: Vec<Built>,
    manifest_digest: Digest,
    manifest_size: usize,
}

/// Whether `bundle --validate` looks at `f`: a model or schema file, an ONNX file (a folder of
/// two says nothing of which model its test data sets are for), a test data set's file.
fn validation_reads(f: &SourceFile) -> bool {
    matches!(f.kind, Kind::Model | Kind::Schema)
        || f.rel.to_ascii_lowercase().ends_with(".onnx")
        || crate::format::test_data::is_test_data(&f.rel)
}

/// The spec's files, in path order, in a list that is on disk past `spill` bytes.
fn collected(spec: &Spec, exclude: &[PathBuf], spill: usize) -> Result<FileList> {
    let mut list = ListWriter::new(spill);
    // (the walk's sorted runs are at least 64 KiB: `MLART_LIST_MEMORY=0` keeps every list on
    // disk, not a temp file per file)
    let runs = spill.max(64 << 10);
    collect::collect_each(spec, exclude, runs, &mut |f| list.push_next(&f))?;
    list.finish()
}

/// The validation report as a bundle file and in the metadata (`--validate`). The temp dir
/// holds the file until the bundle is built. The validation is given only the files it looks
/// at (model and schema files, ONNX files, test data sets: a few, whatever the file count),
/// read from the list as it streams.
fn add_validation(
    validate: Validate,
    files: &mut FileList,
    opts: &mut Options,
) -> Result<(tempfile::TempDir, Report)> {
    let mut looked_at = Vec::new();
    for item in files.iter() {
        let (_, f) = item?;
        if f.rel == VALIDATION_FILE {
            return Err(Error::input(format!(
                "{}: a project file named {VALIDATION_FILE} would clash with the validation report `bundle --validate` writes there; rename or move it",
                f.abs().display()
            )));
        }
        if validation_reads(&f) {
            looked_at.push(f);
        }
    }
    let report = validate(&looked_at)?;
    drop(looked_at);
    let tmp = tempfile::Builder::new()
        .prefix("mlart-validation-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temp directory".into(),
            source: e,
        })?;
    // (at its path in the bundle below the temp dir: a SourceFile is read at root/rel)
    let path = tmp.path().join(VALIDATION_FILE);
    let bytes = crate::format::json::to_canonical_pretty(&report);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, &bytes));
    written.map_err(|e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    })?;
    // (at its place in path order, as the bundle's files are)
    let mut report_file = Some(SourceFile {
        rel: VALIDATION_FILE.into(),
        root: tmp.path().into(),
        kind: Kind::Eval,
        size: bytes.len() as u64,
        executable: false,
        model: None,
        metrics: false,
    });
    let mut with = ListWriter::new(opts.spill);
    for item in files.iter() {
        let (_, f) = item?;
        if let Some(r) = report_file.take_if(|r| r.rel < f.rel) {
            with.push_next(&r)?;
        }
        with.push_next(&f)?;
    }
    if let Some(r) = report_file {
        with.push_next(&r)?;
    }
    *files = with.finish()?;
    opts.validation = Some(BundleRecord::of(&report));
    Ok((tmp, report))
}

fn to_local(
    req: &Request,
    files: &FileList,
    output: PathBuf,
    staging: Staging,
    progress: &dyn Progress,
) -> Result<Done> {
    let (spec, opts, tag) = (req.spec, &req.opts, &req.tag);
    let base = req.base.as_ref();
    let base_bytes: u64 = base
        .map(|b| b.base.blobs().iter().map(|x| x.size).sum())
        .unwrap_or(0);
    let total: u64 = files.total_size() + base_bytes;
    progress.start(total, format!("bundling {}", spec.name));
    let mut writer = LayoutWriter::create(&staging.layout_dir())?;
    if let Some(b) = base {
        b.fetch
            .copy_to_layout(b.base, &mut writer, &|n| progress.advance(n))?;
    }
    let images = base.map(|b| &b.base.images[..]).unwrap_or(&[]);
    let all = bundle::build_on(spec, files, opts, images, &mut writer, &|n| {
        progress.advance(n)
    })?;
    let makes_index = base.is_some_and(|b| b.index);
    let (top, manifest_digest, manifest_size) = if makes_index {
        let index = base::index(&all, images);
        let d = writer.put(&index)?;
        let mut desc = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageIndex,
            index.len() as u64,
            crate::format::digest::oci_digest(&d),
        );
        desc.set_annotations(Some(
            [(
                crate::format::annotations::REF_NAME.to_string(),
                tag.clone(),
            )]
            .into(),
        ));
        (desc, d, index.len())
    } else {
        let built = &all[0];
        (
            built.descriptor(opts.form, tag),
            built.manifest_digest.clone(),
            built.manifest.len(),
        )
    };
    let mut index = vec![top];
    for b in &all {
        if let Some(sig) = &b.signature {
            index.push(writer.add_signature(sig)?);
        }
        for r in attestations(req, b)? {
            for blob in &r.blobs {
                writer.put_reader(&mut blob.open(), &blob.digest, blob.size)?;
            }
            writer.put(&r.manifest)?;
            index.push(r.oci_descriptor()?);
        }
    }
    writer.write_index(index)?;
    let archive = staging.is_archive();
    staging.commit()?;
    Ok(Done {
        to: Stored::Local { output, archive },
        built: all,
        manifest_digest,
        manifest_size,
    })
}

fn to_registry(
    req: &Request,
    files: &FileList,
    mut sink: RegistrySink,
    progress: &dyn Progress,
) -> Result<Done> {
    let (spec, opts) = (req.spec, &req.opts);
    let base = req.base.as_ref();
    let total: u64 = files.total_size();
    progress.start(
        total,
        format!("bundling {} to {}", spec.name, sink.remote().describe()),
    );
    // The base's layers first: skipped, mounted from the base's repository, or uploaded.
    if let Some(b) = base {
        b.fetch.copy_to_registry(b.base, &mut sink)?;
    }
    let images = base.map(|b| &b.base.images[..]).unwrap_or(&[]);
    let all = bundle::build_on(spec, files, opts, images, &mut sink, &|n| {
        progress.advance(n)
    })?;
    let makes_index = base.is_some_and(|b| b.index);
    let (mut report, manifest_digest, manifest_size) = if makes_index {
        for b in &all {
            sink.push_manifest_by_digest(&b.manifest, MANIFEST_MEDIA_TYPE)?;
        }
        let index = base::index(&all, images);
        let report = sink.push_manifest(&index, INDEX_MEDIA_TYPE)?;
        (report, Digest::of(&index), index.len())
    } else {
        let b = &all[0];
        let report = sink.push_manifest(&b.manifest, MANIFEST_MEDIA_TYPE)?;
        (report, b.manifest_digest.clone(), b.manifest.len())
    };
    for b in &all {
        if let Some(sig) = &b.signature {
            // The OCI signature: a referrer of the manifest just pushed.
            let pushed = push_referrers(
                sink.remote(),
                &b.manifest_digest,
                &[Referrer::from_signature(sig)],
            )?;
            report.signatures += pushed.pushed;
            report.referrers_tag = pushed.tag.or(report.referrers_tag);
        }
        let atts = attestations(req, b)?;
        if !atts.is_empty() {
            let pushed = push_referrers(sink.remote(), &b.manifest_digest, &atts)?;
            report.attestations += pushed.pushed;
            report.referrers_tag = pushed.tag.or(report.referrers_tag);
        }
    }
    Ok(Done {
        to: Stored::Registry(report),
        built: all,
        manifest_digest,
        manifest_size,
    })
}

/// With `req.attest`: the signed provenance and ML-BOM of one built bundle, as referrers. The
/// git state of the project goes into the provenance only, never into the bundle.
fn attestations(req: &Request, b: &Built) -> Result<Vec<Referrer>> {
    let (true, Some(key)) = (req.attest, req.opts.sign.as_ref()) else {
        return Ok(Vec::new());
    };
    let spec_bytes = std::fs::read(&req.spec.file).map_err(|e| Error::Io {
        context: format!("reading {}", req.spec.file.display()),
        source: e,
    })?;
    // (the attestations list every file: read from the bundle's list one at a time)
    let metadata = b.metadata.clone().with_files(b.files.clone());
    let inputs = crate::attest::Inputs {
        metadata: &metadata,
        subject: crate::attest::Subject {
            manifest: b.manifest_digest.clone(),
            media_type: MANIFEST_MEDIA_TYPE.into(),
            size: b.manifest.len() as u64,
            config: b.config_digest.clone(),
        },
        spec: Some(crate::attest::SpecFile {
            path: req
                .spec
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            sha256: Digest::of(&spec_bytes).hex().to_string(),
        }),
        git: crate::attest::git::state(&req.spec.root),
    };
    Ok(crate::attest::make(key, &inputs)?
        .into_iter()
        .map(|m| m.referrer)
        .collect())
}
