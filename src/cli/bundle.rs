//! `mlart bundle`: the flags become a `build::pipeline` request; the result is rendered.

use mlart::build::bundle::{self, CompressionChoice, Options};
use mlart::build::pipeline::{
    self, BaseSummary, Bundled, Choices, Destination, OnBase, Settings, Stored,
};
use mlart::format::compression::Compression;
use mlart::format::display::{escape, escape_path};
use mlart::format::metadata::Form;
use mlart::format::platform::PlatformChoice;
use mlart::interrupt::Cancel;
use mlart::store::layout_tags::Placed;
use mlart::{spec, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The project folder (its mlart.yaml; without one, the spec `mlart init` would write for
    /// it: an MLflow model, a Hugging Face folder, a Kitfile or Modelfile project), or a spec
    /// file. Default: the spec of `-f`.
    #[arg(value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The spec file.
    #[arg(short = 'f', long = "file", default_value = spec::SPEC_FILE)]
    spec: PathBuf,
    /// Output: a directory (OCI image layout) or a path ending in .tar (OCI archive), replaced
    /// when it exists; `oci:DIR:TAG` adds the bundle, tagged TAG, to the layout DIR and keeps
    /// its other tags; `oci-archive:FILE[:TAG]` is an archive whatever its name.
    /// Default: build/<name>.oci
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// image: a runnable/mountable OCI image (files under /models); artifact: an OCI 1.1
    /// artifact; modelpack: a CNCF ModelPack model artifact (modctl, KitOps, Harbor, CRI-O).
    /// Default: the spec's `form:`, else image.
    #[arg(long, value_enum)]
    format: Option<FormArg>,
    /// auto: none for model and data, gzip for the rest.
    #[arg(long, value_enum, default_value = "auto")]
    compression: CompressionArg,
    /// The tag in the layout (default: the spec's version).
    #[arg(long)]
    tag: Option<String>,
    /// The image config's platform, os/arch[/variant] (default linux/amd64). With --base: the
    /// platform to take from a multi-platform base (default: this machine's), or `all` for
    /// one image per platform of the base and an index.
    #[arg(long)]
    platform: Option<String>,
    /// Build a runnable image on top of this base image: a registry REF, `oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, a layout or an archive (e.g. busybox, for a KServe modelcar).
    #[arg(long, value_name = "REF")]
    base: Option<String>,
    /// Model and data files of at least this size get a layer of their own (bytes, or e.g.
    /// 64K, 16M; at least 1).
    #[arg(long, value_name = "SIZE", default_value_t = bundle::DEFAULT_LARGE_FILE, value_parser = large_file)]
    large_file: u64,
    /// Push straight to a registry instead of writing a layout (host[:port]/repository[:tag];
    /// the tag defaults to the spec's version). Each layer streams up as it is built.
    #[arg(long, value_name = "REF", conflicts_with = "output")]
    push: Option<String>,
    /// With --push: refuse to move an existing tag to other content (exit 1; the blobs are
    /// uploaded, the tag is not moved); the same content is fine.
    #[arg(long, requires = "push")]
    immutable: bool,
    /// With --push: build into a temp layout, run the release gate on it, and push only when
    /// it passes (else exit 1, nothing uploaded, no tag moved); --baseline,
    /// --baseline-optional, --policy and --key configure it, the policy defaulting to the
    /// spec's `gates:`.
    #[arg(long, requires = "push")]
    gate: bool,
    #[command(flatten)]
    gate_policy: super::gate::GateFlags,
    /// Hard-link raw layers' files (ModelPack, artifact) into the layout instead of copying
    /// them: no copy at all, but the blob *is* the file, so editing it in place afterwards
    /// changes the bundle (`mlart verify` then fails). Same filesystem only (else copied).
    #[arg(long, conflicts_with = "push")]
    link: bool,
    /// Sign with this private key (PEM): an OMS model.sig among the files, and an OCI
    /// signature of the manifest stored beside it in the layout.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Also attach signed attestations: SLSA provenance and a CycloneDX ML-BOM (needs --sign;
    /// `attest: true` in the spec does the same).
    #[arg(long)]
    attest: bool,
    /// Validate the ONNX models with ONNX Runtime first: nothing is bundled when a check
    /// fails (exit 1); the report goes into the metadata and eval/validation.json.
    #[arg(long)]
    validate: bool,
    #[command(flatten)]
    ort: super::validate::OrtArgs,
    /// With --push: how blobs of known digest (raw layers) are uploaded.
    #[command(flatten)]
    upload: super::args::UploadArgs,
    #[command(flatten)]
    registry: super::args::RegistryArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum FormArg {
    Image,
    Artifact,
    Modelpack,
}

impl FormArg {
    pub(super) fn form(self) -> Form {
        match self {
            FormArg::Image => Form::Image,
            FormArg::Artifact => Form::Artifact,
            FormArg::Modelpack => Form::Modelpack,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    Auto,
    None,
    Gzip,
    Zstd,
}

/// `--large-file`: a size of at least 1 byte (0 would give every model and data file, empty
/// ones too, a layer of its own).
fn large_file(s: &str) -> std::result::Result<u64, String> {
    match mlart::format::units::parse_size(s)? {
        0 => Err(format!(
            "{s:?} would give every model and data file, empty ones too, a layer of its own: give at least 1 (byte; the default is 16M, i.e. {} bytes)",
            bundle::DEFAULT_LARGE_FILE
        )),
        n => Ok(n),
    }
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    if a.upload.chunk_size.is_some() && a.push.is_none() {
        return Err(mlart::Error::input(
            "--chunk-size sets how `--push` uploads a blob; a bundle written to a directory or archive has no uploads: add --push REF, or drop --chunk-size",
        ));
    }
    let started = Instant::now();
    // (clap's `requires = "push"` lets these through alone: said here)
    if a.push.is_none() && (a.gate || a.immutable) {
        return Err(mlart::Error::of(
            mlart::error::Kind::Usage,
            "--gate and --immutable are about the push of `bundle --push REF`: a bundle written to a layout or archive moves no registry tag. Add --push REF, or gate the layout with `mlart gate` before `mlart push --gate`",
        ));
    }
    if !a.gate && a.gate_policy.given() {
        return Err(mlart::Error::of(
            mlart::error::Kind::Usage,
            "--baseline, --policy and --key configure the release gate of `bundle --push REF --gate`: add --gate (or drop them)",
        ));
    }
    let named = super::bundle_out::named(a.output.as_deref(), a.tag.as_deref())?;
    let (mut spec, imported) = mlart::import::init::spec_for_bundle(a.dir.as_deref(), &a.spec)?;
    if let (Some(r), Some(d)) = (&imported, &a.dir) {
        eprintln!(
            "note: {} has no {}: bundling it as a{} {} folder (`mlart init` writes this spec to review)",
            escape_path(d),
            spec::SPEC_FILE,
            if r.from.as_str() == "mlflow" { "n" } else { "" },
            r.from.as_str()
        );
        for w in &r.warnings {
            super::warn(w);
        }
    }
    let epoch = bundle::source_date_epoch()?;
    let choice = PlatformChoice::parse(a.platform.as_deref())?;
    let platform = pipeline::platform(&choice, a.base.is_some())?;
    let Settings { form, tag, attest } = pipeline::settings(
        &spec,
        &Choices {
            form: a.format.map(FormArg::form),
            tag: a
                .tag
                .as_deref()
                .or(named.as_ref().and_then(|n| n.tag.as_deref())),
            attest: a.attest,
            signing: a.sign.is_some(),
            on_base: a.base.is_some(),
        },
    )?;
    let opts = Options {
        cancel: cancel.clone(),
        form,
        compression: match a.compression {
            CompressionArg::Auto => CompressionChoice::Auto,
            CompressionArg::None => CompressionChoice::All(Compression::None),
            CompressionArg::Gzip => CompressionChoice::All(Compression::Gzip),
            CompressionArg::Zstd => CompressionChoice::All(Compression::Zstd),
        },
        large_file: a.large_file,
        epoch,
        os: platform.os,
        arch: platform.architecture,
        variant: platform.variant,
        sign: match &a.sign {
            Some(k) => Some(std::sync::Arc::new(mlart::sign::load_private(k)?)),
            None => None,
        },
        validation: None,
        jobs: mlart::build::layers::jobs(),
        link: a.link,
        spill: mlart::store::entries::memory_limit()?,
    };
    let base = match &a.base {
        Some(b) => Some(mlart::store::base::resolve(
            b,
            &choice,
            &a.registry.options(),
        )?),
        None => None,
    };
    // Where it goes: a registry; a temp layout to gate (`--push --gate`) or to add to a
    // layout (`-o oci:DIR:TAG`); a layout or archive replacing what is there.
    let mut gated = None;
    let mut output = None;
    let mut placed = Placed::default();
    let dest = match (&a.push, &named) {
        (Some(r), _) if a.gate => {
            let reference = super::bundle_out::push_reference(r, &tag)?;
            let dir = super::bundle_out::gate_dir(&spec.name)?;
            let layout = dir.path().join(format!("{}.oci", spec.name));
            gated = Some((dir, reference));
            Destination::Local(layout)
        }
        (Some(r), _) => {
            let mut sink = super::args::registry_sink(r, &tag, &a.registry, &a.upload)?;
            sink.immutable = a.immutable;
            Destination::Registry(Box::new(sink))
        }
        (None, Some(n)) => {
            let add = !n.archive && n.tag.is_some();
            let out = mlart::store::layout_tags::Output::new(&n.path, Some(n.archive), &tag, add)?;
            // (what is there is neither bundled nor, when added to, replaced)
            spec.exclude.push(n.path.clone());
            let layout = out.layout_dir();
            output = Some(out);
            Destination::Local(layout)
        }
        (None, None) => {
            let path = a
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from("build").join(format!("{}.oci", spec.name)));
            placed = super::bundle_out::held_besides(&path, &tag);
            Destination::Local(path)
        }
    };
    let announce = super::validate::announce(json);
    let validate = |files: &[mlart::build::collect::SourceFile]| {
        mlart::check::validate::before_bundle(
            &spec,
            files,
            a.ort.ort_lib.clone(),
            std::env::current_exe().ok(),
            cancel,
            &announce,
        )
    };
    let req = pipeline::Request {
        spec: &spec,
        opts,
        tag: tag.clone(),
        base: base.as_ref().map(|b| OnBase {
            base: b,
            index: b.makes_index(&choice),
            fetch: &a.registry,
        }),
        validate: a.validate.then_some(&validate as pipeline::Validate),
        attest,
    };
    let mut done = pipeline::bundle(req, dest, &super::Bar::new(json))?;
    if let Some((dir, reference)) = &gated {
        // Nothing is uploaded before the gate passes: it reads the temp layout.
        let layout = dir.path().join(format!("{}.oci", spec.name));
        let policy = &a.gate_policy;
        if let Some(code) =
            super::bundle_out::gate(policy, &spec.file, &layout, &tag, &a.registry, json)?
        {
            return Ok(code);
        }
        let s = super::bundle_out::push_gated(
            &layout,
            &tag,
            reference,
            &a.registry,
            &a.upload,
            a.immutable,
            json,
        )?;
        print_pushed(&done, &s.report, started.elapsed().as_secs_f64(), json);
        return Ok(ExitCode::SUCCESS);
    }
    if let (Some(out), Some(n)) = (output, &named) {
        placed = out.commit()?;
        done.stored = Stored::Local {
            output: n.path.clone(),
            archive: n.archive,
        };
    }
    let seconds = started.elapsed().as_secs_f64();
    match &done.stored {
        Stored::Local { output, .. } => {
            print_local(&done, seconds, &placed, json);
            if !json {
                super::copy::print_placed(output, &done.tag, &done.manifest_digest, &placed);
            }
        }
        Stored::Registry(report) => print_pushed(&done, report, seconds, json),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_local(done: &Bundled, seconds: f64, placed: &Placed, json: bool) {
    let Some(s) = done.local_summary(seconds) else {
        return;
    };
    if json {
        let (kept, replaced) = (&placed.kept_tags, &placed.replaced_tags);
        if kept.is_empty() && replaced.is_empty() && placed.moved_from.is_none() {
            return super::print_json(&s);
        }
        let mut v = serde_json::to_value(&s).unwrap_or_default();
        super::copy::placed_json(&mut v, placed);
        return super::print_json(&v);
    }
    let built = &done.built[0];
    for w in &built.warnings {
        super::warn(w);
    }
    outln!(
        "bundled {} {} ({} files, {}) in {seconds:.2}s",
        escape(s.name),
        escape(s.tag),
        s.files,
        super::human_size(s.input_bytes),
    );
    let st = &s.stored;
    if st.linked + st.cloned + st.copied > 0 {
        outln!(
            "  raw layers: {} linked, {} cloned (reflink), {} copied",
            st.linked,
            st.cloned,
            st.copied
        );
    }
    if let Some(r) = &done.validation {
        outln!(
            "  validated: {} ONNX model(s) passed, {} not validated (report in {})",
            r.summary.passed,
            r.summary.not_validated,
            pipeline::VALIDATION_FILE
        );
    }
    outln!(
        "  {} {}: {}",
        if s.archive { "archive" } else { "layout" },
        escape(&s.output),
        s.manifest_digest
    );
    if let Some(b) = &done.base {
        print_base(b);
    }
    let rows: Vec<Vec<String>> = built
        .layers
        .iter()
        .map(|l| {
            vec![
                l.kind.clone(),
                super::human_size(l.size),
                l.digest.short().to_string(),
                l.title.clone(),
            ]
        })
        .collect();
    super::table(&["KIND", "SIZE", "DIGEST", "TITLE"], &rows);
}

fn print_base(b: &BaseSummary) {
    outln!("  on base {} ({})", escape(&b.reference), b.digest);
    for i in &b.images {
        outln!(
            "    {}: {} (base {})",
            i.platform,
            i.manifest_digest,
            i.base_digest
        );
    }
}

/// `bundle --push`: as `push` reports, with the base when there is one.
fn print_pushed(done: &Bundled, report: &mlart::store::push::PushReport, seconds: f64, json: bool) {
    if !json {
        for w in &done.built[0].warnings {
            super::warn(w);
        }
        if let Some(b) = &done.base {
            print_base(b);
        }
    }
    let summary = super::push::Summary {
        report: report.clone(),
        seconds,
    };
    match &done.base {
        Some(base) if json => {
            #[derive(Serialize)]
            struct WithBase<'a> {
                #[serde(flatten)]
                summary: &'a super::push::Summary,
                base: &'a BaseSummary,
            }
            super::print_json(&WithBase {
                summary: &summary,
                base,
            });
        }
        _ => super::push::print_summary(&summary, json),
    }
}
