use mlart::build::bundle::{self, CompressionChoice, Options};
use mlart::format::compression::Compression;
use mlart::format::metadata::Form;
use mlart::store::layout::{BlobSink as _, LayoutWriter, Staging};
use mlart::{build::collect, spec, Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The spec file.
    #[arg(short = 'f', long = "file", default_value = spec::SPEC_FILE)]
    spec: PathBuf,
    /// Output: a directory (OCI image layout) or a path ending in .tar (OCI archive).
    /// Default: build/<name>.oci
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// image: a runnable/mountable OCI image (files under /models); artifact: an OCI 1.1 artifact.
    #[arg(long, value_enum, default_value = "image")]
    format: FormArg,
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
    /// Model and data files of at least this many bytes get a layer of their own (image form).
    #[arg(long, default_value_t = bundle::DEFAULT_LARGE_FILE)]
    large_file: u64,
    /// Push straight to a registry instead of writing a layout (host[:port]/repository[:tag];
    /// the tag defaults to the spec's version). Each layer streams up as it is built.
    #[arg(long, value_name = "REF", conflicts_with = "output")]
    push: Option<String>,
    /// Sign with this private key (PEM): an OMS model.sig among the files, and an OCI
    /// signature of the manifest stored beside it in the layout.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Validate the ONNX models with ONNX Runtime first: nothing is bundled when a check
    /// fails (exit 1); the report goes into the metadata and eval/validation.json.
    #[arg(long)]
    validate: bool,
    #[command(flatten)]
    ort: super::validate::OrtArgs,
    #[command(flatten)]
    registry: super::push::RegistryArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormArg {
    Image,
    Artifact,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompressionArg {
    Auto,
    None,
    Gzip,
    Zstd,
}

#[derive(Serialize)]
struct Summary<'a> {
    output: String,
    archive: bool,
    name: &'a str,
    tag: &'a str,
    form: Form,
    manifest_digest: String,
    manifest_size: usize,
    config_digest: String,
    files: usize,
    input_bytes: u64,
    layers: &'a [mlart::format::metadata::LayerInfo],
    metrics: &'a mlart::format::metadata::Metrics,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    validation: Option<&'a mlart::check::validate::Summary>,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    base: Option<BaseSummary>,
}

/// `bundle --base`: the base as given and resolved, and the image built per platform.
#[derive(Serialize)]
struct BaseSummary {
    reference: String,
    digest: String,
    /// The output is an index (`--platform all` on a multi-platform base).
    index: bool,
    images: Vec<PlatformImage>,
}

#[derive(Serialize)]
struct PlatformImage {
    platform: String,
    base_digest: String,
    manifest_digest: String,
    config_digest: String,
}

fn base_summary(
    base: &mlart::store::base::Base,
    built: &[bundle::Built],
    index: bool,
) -> BaseSummary {
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

pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let spec = spec::load(&a.spec)?;
    let epoch = bundle::source_date_epoch()?;
    // Without a base the platform is fixed (linux/amd64 unless given): digests must not
    // depend on the machine. With one, it comes from the base.
    let choice = mlart::format::platform::PlatformChoice::parse(a.platform.as_deref())?;
    let platform = match (&a.base, &choice) {
        (None, mlart::format::platform::PlatformChoice::All) => {
            return Err(Error::input(
                "--platform all needs --base: it builds one image per platform of the base",
            ))
        }
        (None, mlart::format::platform::PlatformChoice::One(p)) => p.clone(),
        _ => mlart::format::platform::Platform::parse("linux/amd64")?,
    };
    if a.base.is_some() && matches!(a.format, FormArg::Artifact) {
        return Err(Error::input(
            "--base builds a runnable image: it cannot be combined with `--format artifact`",
        ));
    }
    let tag = a.tag.clone().unwrap_or_else(|| spec.version.clone());
    if !spec::is_valid_tag(&tag) {
        return Err(Error::input(format!(
            "--tag {tag:?} is not a valid OCI tag: use letters, digits, `.`, `_`, `-`"
        )));
    }
    let mut opts = Options {
        form: match a.format {
            FormArg::Image => Form::Image,
            FormArg::Artifact => Form::Artifact,
        },
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
    };
    let base = match &a.base {
        Some(b) => Some(mlart::store::base::resolve(
            b,
            &choice,
            &a.registry.options(),
        )?),
        None => None,
    };
    let makes_index = base.as_ref().is_some_and(|b| b.makes_index(&choice));
    if let Some(r) = &a.push {
        return push(
            &a,
            r,
            &spec,
            &opts,
            &tag,
            base.as_ref(),
            makes_index,
            json,
            started,
        );
    }
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("build").join(format!("{}.oci", spec.name)));
    let staging = Staging::new(&output)?;
    let mut files = collect::collect(&spec, &[output.clone(), staging.layout_dir()])?;
    let validated = a
        .validate
        .then(|| super::validate::before_bundle(&spec, &mut files, &mut opts, &a.ort, json))
        .transpose()?;
    let base_bytes: u64 = base
        .as_ref()
        .map(|b| b.blobs().iter().map(|x| x.size).sum())
        .unwrap_or(0);
    let total: u64 = files.iter().map(|f| f.size).sum::<u64>() + base_bytes;
    let pb = super::progress_bar(total, json);
    pb.set_message(format!("bundling {}", spec.name));
    let mut writer = LayoutWriter::create(&staging.layout_dir())?;
    if let Some(b) = &base {
        b.copy_into(&mut writer, &a.registry.options(), &|n| pb.inc(n))?;
    }
    let images = base.as_ref().map(|b| &b.images[..]).unwrap_or(&[]);
    let all = bundle::build_on(&spec, &files, &opts, images, &mut writer, &|n| pb.inc(n))?;
    let built = &all[0];
    let (top, manifest_digest, manifest_size) = if makes_index {
        let index = mlart::build::base::index(&all, images);
        let d = writer.put(&index)?;
        let mut desc = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageIndex,
            index.len() as u64,
            mlart::format::digest::oci_digest(&d),
        );
        desc.set_annotations(Some(
            [(
                mlart::format::annotations::REF_NAME.to_string(),
                tag.clone(),
            )]
            .into(),
        ));
        (desc, d, index.len())
    } else {
        (
            built.descriptor(opts.form, &tag),
            built.manifest_digest.clone(),
            built.manifest.len(),
        )
    };
    let mut index = vec![top];
    for b in &all {
        if let Some(sig) = &b.signature {
            index.push(writer.add_signature(sig)?);
        }
    }
    writer.write_index(index)?;
    let archive = staging.is_archive();
    staging.commit()?;
    pb.finish_and_clear();

    let summary = Summary {
        output: output.display().to_string(),
        archive,
        name: &spec.name,
        tag: &tag,
        form: opts.form,
        manifest_digest: manifest_digest.to_string(),
        manifest_size,
        config_digest: built.config_digest.to_string(),
        files: files.len(),
        input_bytes: built.input_bytes,
        layers: &built.layers,
        metrics: &built.metadata.metrics,
        warnings: &built.warnings,
        validation: validated.as_ref().map(|(_, r)| &r.summary),
        seconds: started.elapsed().as_secs_f64(),
        base: base.as_ref().map(|b| base_summary(b, &all, makes_index)),
    };
    if json {
        super::print_json(&summary);
    } else {
        for w in &built.warnings {
            eprintln!("warning: {w}");
        }
        println!(
            "bundled {} {} ({} files, {}) in {:.2}s",
            spec.name,
            tag,
            files.len(),
            super::human_size(built.input_bytes),
            summary.seconds
        );
        if let Some((_, r)) = &validated {
            println!(
                "  validated: {} ONNX model(s) passed, {} not validated (report in {})",
                r.summary.passed,
                r.summary.not_validated,
                super::validate::VALIDATION_FILE
            );
        }
        println!(
            "  {} {}: {}",
            if archive { "archive" } else { "layout" },
            output.display(),
            manifest_digest
        );
        if let Some(b) = &summary.base {
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
    Ok(ExitCode::SUCCESS)
}

fn print_base(b: &BaseSummary) {
    println!("  on base {} ({})", b.reference, b.digest);
    for i in &b.images {
        println!(
            "    {}: {} (base {})",
            i.platform, i.manifest_digest, i.base_digest
        );
    }
}

/// `bundle --push`: stream every layer to the registry as it is built, then the manifest.
#[allow(clippy::too_many_arguments)]
fn push(
    a: &Args,
    r: &str,
    spec: &spec::Spec,
    opts: &Options,
    tag: &str,
    base: Option<&mlart::store::base::Base>,
    makes_index: bool,
    json: bool,
    started: Instant,
) -> Result<ExitCode> {
    use mlart::format::reference::{self, Reference};
    let (reference, explicit) = reference::parse_reference(r)?;
    let reference = if explicit {
        reference
    } else {
        Reference::with_tag(
            reference.registry().into(),
            reference.repository().into(),
            tag.to_string(),
        )
    };
    let remote = mlart::registry::Remote::new(reference, &a.registry.options())?;
    let mut sink = mlart::store::registry_sink::RegistrySink::new(remote);
    let mut files = collect::collect(spec, &[])?;
    let mut opts = opts.clone();
    let opts = &mut opts;
    let _validated = a
        .validate
        .then(|| super::validate::before_bundle(spec, &mut files, opts, &a.ort, json))
        .transpose()?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let pb = super::progress_bar(total, json);
    pb.set_message(format!(
        "bundling {} to {}",
        spec.name,
        sink.remote().describe()
    ));
    // The base's layers first: skipped, mounted from the base's repository, or uploaded.
    if let Some(b) = base {
        sink.copy_blobs(&b.blobs(), &b.location, &a.registry.options())?;
    }
    let images = base.map(|b| &b.images[..]).unwrap_or(&[]);
    let all = bundle::build_on(spec, &files, opts, images, &mut sink, &|n| pb.inc(n))?;
    let built = &all[0];
    let mut report = if makes_index {
        for b in &all {
            sink.push_manifest_by_digest(
                &b.manifest,
                mlart::format::media_type::MANIFEST_MEDIA_TYPE,
            )?;
        }
        let index = mlart::build::base::index(&all, images);
        sink.push_manifest(&index, mlart::format::media_type::INDEX_MEDIA_TYPE)?
    } else {
        sink.push_manifest(
            &built.manifest,
            mlart::format::media_type::MANIFEST_MEDIA_TYPE,
        )?
    };
    for b in &all {
        if let Some(sig) = &b.signature {
            // The OCI signature: a referrer of the manifest just pushed.
            let pushed = mlart::store::referrers::push_referrers(
                sink.remote(),
                &b.manifest_digest,
                &[mlart::store::referrers::Referrer::from_signature(sig)],
            )?;
            report.signatures += pushed.pushed;
            report.referrers_tag = pushed.tag.or(report.referrers_tag);
        }
    }
    pb.finish_and_clear();
    if !json {
        for w in &built.warnings {
            eprintln!("warning: {w}");
        }
        if let Some(b) = base {
            print_base(&base_summary(b, &all, makes_index));
        }
    }
    let summary = super::push::Summary {
        report,
        seconds: started.elapsed().as_secs_f64(),
    };
    match base {
        Some(b) if json => {
            #[derive(Serialize)]
            struct WithBase<'a> {
                #[serde(flatten)]
                summary: &'a super::push::Summary,
                base: BaseSummary,
            }
            super::print_json(&WithBase {
                summary: &summary,
                base: base_summary(b, &all, makes_index),
            });
        }
        _ => super::push::print_summary(&summary, json),
    }
    Ok(ExitCode::SUCCESS)
}
