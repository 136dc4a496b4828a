//! `mlart push LAYOUT|ARCHIVE REF`.

use super::args::{RegistryArgs, UploadArgs};
use mlart::format::digest::Digest;
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::store::push::{BlobEvent, PushReport};
use mlart::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

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
    /// Run the release gate first and push nothing when a gate fails (exit 1); --baseline,
    /// --baseline-optional, --policy, -f and --key configure it.
    #[arg(long)]
    gate: bool,
    /// With --gate: the policy (the same flags as `mlart gate`).
    #[command(flatten)]
    policy: super::gate::PolicyArgs,
    #[command(flatten)]
    upload: UploadArgs,
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
    upload: &UploadArgs,
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
        &upload.options(args),
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
                BlobEvent::Resumed(held) => {
                    // the registry holds these already: the bars start there
                    overall.inc(held);
                    if let Some(b) = bars.get(d.as_str()) {
                        b.set_position(held);
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
    for b in &r.resumed {
        outln!(
            "  resumed {} at {} (the registry held it from an interrupted push)",
            b.digest,
            super::human_size(b.at)
        );
    }
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
    // (the gate reads the same image: `--tag T` of a layout is its `oci:DIR:T`)
    let mut gated = a.source.clone();
    if let (Location::Local { tag, path }, Some(t)) = (&mut src, a.tag) {
        let scheme = if path.is_dir() { "oci" } else { "oci-archive" };
        gated = format!("{scheme}:{}:{t}", path.display());
        *tag = Some(t);
    }
    if !a.gate && a.policy.given() {
        return Err(Error::of(
            mlart::error::Kind::Usage,
            "--baseline, --policy, -f and --key configure the release gate: add --gate (or drop them)",
        ));
    }
    if a.gate {
        let report = super::gate::evaluate(&a.policy.request(&gated), &a.registry)?;
        if !report.passed {
            return super::gate::refuse_push(&report, json);
        }
        if !json {
            eprintln!("gate passed ({} checks)", report.checks.len());
        }
    }
    let s = push_with_progress(
        &src,
        &a.reference,
        &a.registry,
        &a.upload,
        a.immutable,
        json,
    )?;
    print_summary(&s, json);
    Ok(ExitCode::SUCCESS)
}
