//! `mlart copy SRC DST --format image|artifact|modelpack`: pull SRC's files into a temporary
//! directory (verified as usual), bundle them again in the new form (`build::convert`), store
//! the result at DST.

use super::copy::Args;
use mlart::build::bundle::Options;
use mlart::build::pipeline::{self, Destination, Stored};
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::{Error, Result};
use std::process::ExitCode;
use std::time::Instant;

pub fn run(a: &Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    let started = Instant::now();
    let form = a.format.expect("--format").form();
    // (the key first: a wrong path or password fails before anything is fetched)
    let key = match &a.sign {
        Some(k) => Some(std::sync::Arc::new(mlart::sign::load_private(k)?)),
        None => None,
    };
    let loc = reference::parse_location(&a.source)?;
    let is_registry = matches!(loc, Location::Registry { .. });
    let (mut src, tag) = mlart::store::registry::open_location(&loc, &a.registry.options())?;
    // The files pass through a temporary directory (TMPDIR), removed on every way out.
    let tmp = tempfile::Builder::new()
        .prefix(".mlart-convert-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temporary directory for the conversion".into(),
            source: e,
        })?;
    let files = tmp.path().join("files");
    let opts = mlart::extract::pull::PullOptions {
        strict: true,
        cancel: cancel.clone(),
        out: files.clone(),
        kinds: Vec::new(),
        paths: Vec::new(),
        cache: is_registry
            .then(mlart::extract::pull::default_cache)
            .flatten(),
        verify_keys: Vec::new(),
        require_all: false,
        platform: None,
        attestations: false,
        refused: "not converted",
    };
    let pb = super::progress_bar(0, json);
    pb.set_message(format!("reading {}", src.describe()));
    let pulled = mlart::extract::pull::pull(
        src.as_mut(),
        tag.as_deref(),
        &opts,
        &|_, ev| {
            if let mlart::store::BlobEvent::Bytes(n) = ev {
                pb.inc(n)
            }
        },
        &|t| super::set_total(&pb, t, json),
    )?;
    pb.finish_and_clear();
    let mut pulled = pulled;
    let meta = pulled
        .metadata
        .take()
        .map(mlart::store::entries::Entries::in_memory)
        .expect("pull returns the metadata")?;
    let kinds = pulled
        .files
        .iter()
        .map(|f| f.map(|f| (f.path, f.kind)))
        .collect::<Result<_>>()?;
    let (spec, sources) = mlart::build::convert::from_pulled(&files, &meta, &kinds)?;
    // The source's model.sig (written by the pull) covers the source's mlart.json, not the
    // new one: it never carries over.
    let source_signed = files.join(mlart::format::signature::OMS_FILE).is_file();
    let signed = key.is_some();
    let mut bopts = Options {
        form,
        cancel: cancel.clone(),
        sign: key,
        ..Options::default()
    };
    mlart::build::convert::keep_recorded(&meta, &mut bopts);
    let (dest, tag) = match reference::parse_location(&a.destination)? {
        Location::Registry { .. } => {
            let t = tag.clone().unwrap_or_else(|| meta.version.clone());
            let sink = super::args::registry_sink(&a.destination, &t, &a.registry, &a.upload)?;
            (Destination::Registry(Box::new(sink)), t)
        }
        Location::Local { path, tag: t } => {
            let t = t.or(tag.clone()).unwrap_or_else(|| meta.version.clone());
            (Destination::Local(path), t)
        }
    };
    let req = pipeline::Request {
        spec: &spec,
        opts: bopts,
        tag: tag.clone(),
        base: None,
        validate: None,
        attest: false,
    };
    let done = pipeline::bundle_files(req, sources, dest, &super::Bar::new(json))?;
    let seconds = started.elapsed().as_secs_f64();
    let (destination, shown) = match &done.stored {
        Stored::Local { output, .. } => (
            output.display().to_string(),
            format!("{}:{tag}", output.display()),
        ),
        // (a registry reference names its tag already)
        Stored::Registry(r) => (r.reference.clone(), r.reference.clone()),
    };
    let note = if signed {
        format!("signed with {}: a new model.sig over the same files and an OCI signature of the new manifest; the source's signatures do not cover it (its digest changed)", a.sign.as_ref().map(|k| k.display().to_string()).unwrap_or_default())
    } else if source_signed {
        "the source's model.sig and signatures do not cover the new manifest (its digest changed) and were not carried over: convert with --sign KEY to sign the copy (`pull --verify-key` needs its model.sig)".to_string()
    } else {
        "signatures of the source do not cover the new manifest (its digest changed): convert with --sign KEY to sign the copy".to_string()
    };
    if json {
        super::print_json(&serde_json::json!({
            "source": a.source,
            "source_digest": pulled.digest,
            "destination": destination,
            "tag": tag,
            "form": form.as_str(),
            "digest": done.manifest_digest.to_string(),
            "files": pulled.files.len(),
            "warnings": done.built[0].warnings,
            "note": note,
            "seconds": seconds,
        }));
    } else {
        for w in &done.built[0].warnings {
            super::warn(w);
        }
        outln!(
            "converted {} ({}) to the {} form at {shown} in {seconds:.2}s",
            a.source,
            pulled.digest,
            form.as_str()
        );
        outln!(
            "  manifest {} ({} files)",
            done.manifest_digest,
            pulled.files.len()
        );
        outln!("  note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `mlart convert …`, a verb mlart does not have (a hidden subcommand): says that converting
/// between forms is `copy --format`, with exit 2, instead of clap's "unrecognized subcommand".
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Hint {
    /// Whatever was given: ignored.
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<std::ffi::OsString>,
}

pub fn hint(_: Hint) -> Result<ExitCode> {
    Err(Error::usage(
        "mlart has no `convert` verb: converting between forms is `mlart copy SRC DST --format modelpack|image|artifact` (SRC pulled and verified, its files bundled again in the new form at DST; `mlart copy --help`)",
    ))
}
