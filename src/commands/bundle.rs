use mlart::bundle::{self, CompressionChoice, Form, Options};
use mlart::layer::Compression;
use mlart::layout::{LayoutWriter, Staging};
use mlart::{collect, spec, Error, Result};
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
    /// The image config's platform, os/arch.
    #[arg(long, default_value = "linux/amd64")]
    platform: String,
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
    layers: &'a [bundle::LayerInfo],
    metrics: &'a mlart::metrics::Metrics,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    validation: Option<&'a mlart::validate::Summary>,
    seconds: f64,
}

pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let spec = spec::load(&a.spec)?;
    let epoch = bundle::source_date_epoch()?;
    let (os, arch) = a
        .platform
        .split_once('/')
        .filter(|(o, a)| !o.is_empty() && !a.is_empty())
        .ok_or_else(|| {
            Error::input(format!(
                "--platform {:?} is not os/arch: use e.g. linux/amd64 or linux/arm64",
                a.platform
            ))
        })?;
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
        os: os.to_string(),
        arch: arch.to_string(),
        sign: match &a.sign {
            Some(k) => Some(std::sync::Arc::new(mlart::sign::load_private(k)?)),
            None => None,
        },
        validation: None,
    };
    if let Some(r) = &a.push {
        return push(&a, r, &spec, &opts, &tag, json, started);
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
    let total: u64 = files.iter().map(|f| f.size).sum();
    let pb = super::progress_bar(total, json);
    pb.set_message(format!("bundling {}", spec.name));
    let mut writer = LayoutWriter::create(&staging.layout_dir())?;
    let built = bundle::build(&spec, &files, &opts, &mut writer, &|n| pb.inc(n))?;
    let mut index = vec![built.descriptor(opts.form, &tag)];
    if let Some(sig) = &built.signature {
        index.push(writer.add_signature(sig)?);
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
        manifest_digest: built.manifest_digest.to_string(),
        manifest_size: built.manifest.len(),
        config_digest: built.config_digest.to_string(),
        files: files.len(),
        input_bytes: built.input_bytes,
        layers: &built.layers,
        metrics: &built.metadata.metrics,
        warnings: &built.warnings,
        validation: validated.as_ref().map(|(_, r)| &r.summary),
        seconds: started.elapsed().as_secs_f64(),
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
            built.manifest_digest
        );
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

/// `bundle --push`: stream every layer to the registry as it is built, then the manifest.
fn push(
    a: &Args,
    r: &str,
    spec: &spec::Spec,
    opts: &Options,
    tag: &str,
    json: bool,
    started: Instant,
) -> Result<ExitCode> {
    use mlart::reference::{self, Reference};
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
    let mut sink = mlart::registry::RegistrySink::new(remote);
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
    let built = bundle::build(spec, &files, opts, &mut sink, &|n| pb.inc(n))?;
    let mut report = sink.push_manifest(&built.manifest, mlart::layout::MANIFEST_MEDIA_TYPE)?;
    if let Some(sig) = &built.signature {
        // The OCI signature: a referrer of the manifest just pushed.
        let pushed = mlart::registry::push_referrers(
            sink.remote(),
            &built.manifest_digest,
            &[mlart::registry::Referrer::from_signature(sig)],
        )?;
        report.signatures = pushed.pushed;
        report.referrers_tag = pushed.tag;
    }
    pb.finish_and_clear();
    if !json {
        for w in &built.warnings {
            eprintln!("warning: {w}");
        }
    }
    super::push::print_summary(
        &super::push::Summary {
            report,
            seconds: started.elapsed().as_secs_f64(),
        },
        json,
    );
    Ok(ExitCode::SUCCESS)
}
