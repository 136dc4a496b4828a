//! `mlart push LAYOUT|ARCHIVE REF` (and the registry flags every registry verb shares).

use mlart::format::digest::Digest;
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::registry;
use mlart::store::push::{BlobEvent, PushReport};
use mlart::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// How to reach registries: flattened into every verb that takes a registry REF.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP (no TLS) to the registry. Loopback registries (localhost, 127.x,
    /// [::1]) use HTTP without this flag unless --ca-file is given.
    #[arg(long)]
    pub plain_http: bool,
    /// A PEM file of extra CA certificates to trust for the registry (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// The command's cancellation token (set by `run` from `main`'s; not a flag).
    #[arg(skip)]
    pub cancel: mlart::interrupt::Cancel,
}

/// `--platform` of the reading verbs: which image of a multi-platform index to read.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PlatformArg {
    /// From a multi-platform index (`bundle --platform all`): the image of this platform,
    /// os/arch[/variant] (default: this machine's Linux platform, or the index's only image).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

impl PlatformArg {
    pub fn parse(&self) -> mlart::Result<Option<mlart::format::platform::Platform>> {
        self.platform
            .as_deref()
            .map(mlart::format::platform::Platform::parse)
            .transpose()
    }
}

impl RegistryArgs {
    pub fn options(&self) -> registry::Options {
        registry::Options {
            plain_http: self.plain_http,
            ca_files: self.ca_file.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// What to push: an OCI layout directory or archive (`oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]` also work), or another registry REF.
    source: String,
    /// Where to: host[:port]/repository[:tag]. Without a tag, the source's tag is kept.
    reference: String,
    /// Which tag of the source layout (default: its only manifest).
    #[arg(long)]
    tag: Option<String>,
    /// Refuse to move an existing tag to other content (exit 1); the same content is fine.
    #[arg(long)]
    immutable: bool,
    /// Run the release gate first and push nothing when a gate fails (exit 1).
    #[arg(long)]
    gate: bool,
    /// With --gate: the bundle to compare with (layout, archive or REF).
    #[arg(long, requires = "gate")]
    baseline: Option<String>,
    /// With --gate: a --baseline that does not exist is a notice, not an error.
    #[arg(long, requires = "baseline")]
    baseline_optional: bool,
    /// With --gate: the policy file (default: `gates:` of -f SPEC).
    #[arg(long, requires = "gate")]
    policy: Option<PathBuf>,
    /// With --gate: the spec whose `gates:` to use.
    #[arg(short = 'f', long = "file", default_value = mlart::spec::SPEC_FILE, requires = "gate")]
    spec: PathBuf,
    /// With --gate: trusted public key(s) for `signature: required`.
    #[arg(long = "key", requires = "gate")]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Serialize)]
pub struct Summary {
    #[serde(flatten)]
    pub report: PushReport,
    pub seconds: f64,
}

/// Push `src` to the registry `dst` with a progress bar; shared with `copy`.
pub fn push_with_progress(
    src: &Location,
    dst: &str,
    args: &RegistryArgs,
    immutable: bool,
    json: bool,
) -> Result<Summary> {
    let started = Instant::now();
    let Location::Registry {
        reference,
        explicit_tag,
    } = reference::parse_location(dst)?
    else {
        return Err(Error::input(format!(
            "{dst:?} is not a registry reference: use host[:port]/repository[:tag], e.g. localhost:5000/ml/iris:1.0.0"
        )));
    };
    let pb = super::progress_bar(0, json);
    pb.set_message(format!("pushing {}", reference.whole()));
    let bars = BlobBars::new(&pb);
    let report = mlart::store::push::push(
        src,
        &reference,
        explicit_tag,
        immutable,
        &args.options(),
        bars.callback(),
        &|total| super::set_total(&pb, total, json),
    )?;
    pb.finish_and_clear();
    Ok(Summary {
        report,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// An overall bar plus one bar per blob in flight (all hidden when the overall one is).
pub struct BlobBars {
    multi: Option<indicatif::MultiProgress>,
    overall: indicatif::ProgressBar,
}

impl BlobBars {
    pub fn new(overall: &indicatif::ProgressBar) -> Self {
        let multi = (!overall.is_hidden()).then(|| {
            let m = indicatif::MultiProgress::new();
            m.add(overall.clone());
            m
        });
        BlobBars {
            multi,
            overall: overall.clone(),
        }
    }

    pub fn callback(&self) -> mlart::store::push::PushProgress {
        let overall = self.overall.clone();
        let multi = self.multi.clone();
        let bars: Mutex<HashMap<String, indicatif::ProgressBar>> = Mutex::new(HashMap::new());
        let style =
            indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
        Arc::new(move |d: &Digest, ev: BlobEvent| {
            let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                BlobEvent::Start(size) => {
                    if let Some(m) = &multi {
                        let b = m.add(indicatif::ProgressBar::new(size));
                        b.set_style(style.clone());
                        b.set_message(d.short().to_string());
                        bars.insert(d.to_string(), b);
                    }
                }
                BlobEvent::Bytes(n) => {
                    overall.inc(n);
                    if let Some(b) = bars.get(d.as_str()) {
                        b.inc(n);
                    }
                }
                BlobEvent::Retry(sent) => {
                    overall.set_position(overall.position().saturating_sub(sent));
                    if let Some(b) = bars.get(d.as_str()) {
                        b.set_position(0);
                    }
                }
                BlobEvent::Done(how) => {
                    if let Some(b) = bars.remove(d.as_str()) {
                        // Bytes not streamed (already there, mounted, cached) count whole.
                        if matches!(how, "skipped" | "mounted" | "cached") {
                            overall.inc(b.length().unwrap_or(0));
                        }
                        b.finish_and_clear();
                        if let Some(m) = &multi {
                            m.remove(&b);
                        }
                    }
                }
            }
        })
    }
}

pub fn print_summary(s: &Summary, json: bool) {
    if json {
        super::print_json(s);
        return;
    }
    let r = &s.report;
    outln!("pushed {}@{}", r.reference, r.digest);
    if let Some(prev) = &r.moved_from {
        let tag = r.reference.rsplit_once(':').map_or("", |(_, t)| t);
        outln!("  tag {tag} moved from {prev} to {}", r.digest);
    }
    outln!(
        "  blobs: {} uploaded ({}), {} skipped, {} mounted in {:.2}s",
        r.blobs.uploaded,
        super::human_size(r.bytes_uploaded),
        r.blobs.skipped,
        r.blobs.mounted,
        s.seconds
    );
    if r.attestations > 0 {
        outln!("  attestations: {} pushed as referrers", r.attestations);
    }
    if r.signatures > 0 {
        outln!(
            "  signatures: {} pushed as referrers{}",
            r.signatures,
            r.referrers_tag
                .as_ref()
                .map(|t| format!(" (fallback tag {t})"))
                .unwrap_or_default()
        );
    }
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let mut src = reference::parse_location(&a.source)?;
    if let (Location::Local { tag, .. }, Some(t)) = (&mut src, a.tag) {
        *tag = Some(t);
    }
    if a.gate {
        let report = super::gate::evaluate(&super::gate::GateInputs {
            target: &a.source,
            baseline: a.baseline.as_deref(),
            policy: a.policy.as_deref(),
            spec: &a.spec,
            keys: &a.keys,
            registry: &a.registry,
            baseline_optional: a.baseline_optional,
        })?;
        if !report.passed {
            if json {
                super::print_json(&serde_json::json!({"pushed": false, "gate": report}));
                return Ok(super::check_failed());
            }
            super::gate::print_table(&report);
            let failed: Vec<String> = report
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.name, c.reason))
                .collect();
            return Err(Error::Check(format!(
                "not pushed: the release gate failed ({})",
                failed.join("; ")
            )));
        }
        if !json {
            eprintln!("gate passed ({} checks)", report.checks.len());
        }
    }
    let s = push_with_progress(&src, &a.reference, &a.registry, a.immutable, json)?;
    print_summary(&s, json);
    Ok(ExitCode::SUCCESS)
}
