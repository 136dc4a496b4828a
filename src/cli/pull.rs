//! `mlart pull REF -o DIR [--kind model,schema] [--path GLOB]`: verified, safe extraction; the
//! bundle's attestations go to DIR.attestations/ beside it.

use super::args::RegistryArgs;
use mlart::format::display::escape;
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::Result;
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// A registry REF (host[:port]/repository[:tag|@digest]), or a layout directory or archive.
    source: String,
    /// The directory to write the files into (must not exist, or be empty). Default: ./NAME,
    /// NAME the repository's last component (or the layout's or archive's file stem).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Only files of these kinds (comma-separated or repeated): model, data, schema, env,
    /// config, docs, eval, logs. With --path, a file must match both.
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Only files whose path matches this glob (repeatable), e.g. 'reports/*'. With --kind,
    /// a file must match both (a kind and a glob).
    #[arg(long)]
    path: Vec<String>,
    /// Do not use the local blob cache ($XDG_CACHE_HOME/mlart).
    #[arg(long)]
    no_cache: bool,
    /// A trusted public key (repeatable): write nothing unless an OCI signature and the
    /// bundle's model.sig verify with one of them. The bundle's attestations, written to
    /// OUT.attestations/ beside the files, are then only those signed by one of them.
    #[arg(long = "verify-key", value_name = "PUB")]
    verify_keys: Vec<PathBuf>,
    /// With --verify-key: require an OCI signature by every key.
    #[arg(long, requires = "verify_keys")]
    require_all: bool,
    /// Refuse the pull (exit 4, nothing written) when a layer holds an entry the bundle's
    /// metadata does not list, or the same entry twice; without it they are skipped with a
    /// warning.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    platform: super::args::PlatformArg,
}

#[derive(Serialize)]
struct Summary {
    #[serde(flatten)]
    report: mlart::extract::pull::PullReport,
    seconds: f64,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let started = Instant::now();
    let loc = reference::parse_location(&a.source)?;
    let is_registry = matches!(loc, Location::Registry { .. });
    let output = match &a.output {
        Some(o) => o.clone(),
        None => default_output(&loc)?,
    };
    let (mut src, tag) = mlart::store::registry::open_location(&loc, &a.registry.options())?;
    let opts = mlart::extract::pull::PullOptions {
        cancel: cancel.clone(),
        out: output.clone(),
        kinds: a.kind.clone(),
        paths: a.path.clone(),
        cache: if is_registry && !a.no_cache {
            mlart::extract::pull::default_cache()
        } else {
            None
        },
        verify_keys: a
            .verify_keys
            .iter()
            .map(|k| mlart::sign::load_public(k))
            .collect::<Result<Vec<_>>>()?,
        require_all: a.require_all,
        platform: a.platform.parse()?,
        strict: a.strict,
        refused: "not pulled",
        attestations: true,
    };
    let pb = super::progress_bar(0, json);
    pb.set_message(format!("pulling {}", src.describe()));
    let bars = super::push::BlobBars::new(&pb);
    let cb = bars.callback();
    let report = mlart::extract::pull::pull(
        src.as_mut(),
        tag.as_deref(),
        &opts,
        &|d, ev| cb(d, ev),
        &|t| super::set_total(&pb, t, json),
    )?;
    pb.finish_and_clear();
    for w in &report.warnings {
        super::warn(&format!("{}: {w}", report.reference));
    }
    let s = Summary {
        report,
        seconds: started.elapsed().as_secs_f64(),
    };
    if json {
        // (the list of files streams from its temp file: a million paths are not one string)
        super::stream_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &s.report;
    outln!(
        "pulled {} files from {} into {} in {:.2}s",
        r.files.len(),
        escape(&r.reference),
        escape(&r.output),
        s.seconds
    );
    outln!("  manifest {}", r.digest);
    outln!(
        "  layers: {} of {} needed, {} fetched ({}), {} from the cache",
        r.layers.needed,
        r.layers.total,
        r.layers.fetched,
        super::human_size(r.bytes_downloaded),
        r.layers.cached
    );
    for b in &r.resumed {
        outln!(
            "  resumed {} at {}: an interrupted pull had left it in the cache",
            b.digest,
            super::human_size(b.at)
        );
    }
    for k in &r.verified_by {
        outln!("  signature verified: {k}");
    }
    for a in &r.attestations {
        let state = match &a.verified_by {
            Some(k) => format!("signature verified: {k}"),
            None => "signature not checked: --verify-key PUB checks it".into(),
        };
        outln!("  attestation {} -> {} ({state})", a.kind, escape(&a.file));
    }
    if let Some(d) = &r.derived {
        outln!(
            "  wrote mlart.json: the files above and the {} manifest, for `mlart verify` and `mlart serve` of the folder (another tool's artifact has none; no signature covers it)",
            d.dialect
        );
    }
    for f in r.files.iter() {
        outln!("  {}", escape(&f?.path));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pull` without `-o`: `./NAME`, NAME the repository's last component, or the file stem of a
/// layout or archive (`build/iris.oci` -> `./iris`).
fn default_output(loc: &Location) -> Result<PathBuf> {
    let name = match loc {
        Location::Registry { reference, .. } => reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        Location::Local { path, .. } => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if name.is_empty() || name.starts_with('.') {
        return Err(mlart::Error::usage(
            "cannot name the output folder after this source: give -o DIR",
        ));
    }
    Ok(PathBuf::from(name))
}
