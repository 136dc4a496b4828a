//! `mlart gate`: the release gate of `check::gate`, rendered as a table, JSON or Markdown.

use super::args::RegistryArgs;
use mlart::check::gate::{self, GateReport};
use mlart::check::inspect::{self, Opened};
use mlart::interrupt::Cancel;
use mlart::{spec, Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The candidate: a layout directory, an archive or a registry REF.
    target: String,
    /// The bundle to compare with (layout, archive or REF), for change limits and schema.
    #[arg(long)]
    baseline: Option<String>,
    /// A --baseline that does not exist (the first release) is a notice, not an error.
    #[arg(long, requires = "baseline")]
    baseline_optional: bool,
    /// The policy file (`gates:` ...). Default: `gates:` of the spec (-f).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The spec whose `gates:` to use when --policy is not given.
    #[arg(short = 'f', long = "file", default_value = spec::SPEC_FILE)]
    spec: PathBuf,
    /// Trusted public key(s) for `signature: required`.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Also write the report as Markdown to this file (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Open a layout, archive or REF and read its manifest digest and metadata (nothing else).
pub fn open_bundle(target: &str, reg: &RegistryArgs) -> Result<Opened> {
    inspect::open_bundle(target, &super::opener(reg))
}

/// Evaluate the policy on the request's target (manifests and metadata only), reaching
/// registries as `reg` says: `gate` and `push --gate`.
pub fn evaluate(req: &gate::Request, reg: &RegistryArgs) -> Result<GateReport> {
    gate::gate(req, &super::opener(reg))
}

/// The per-check table for people.
pub fn print_table(report: &GateReport) {
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            vec![
                super::status_word(c.passed, c.skipped).into(),
                c.name.clone(),
                c.value.map(gate::num).unwrap_or_default(),
                c.threshold.clone().unwrap_or_default(),
                c.baseline.map(gate::num).unwrap_or_default(),
                c.delta
                    .map(|v| format!("{}{}", if v >= 0.0 { "+" } else { "" }, gate::num(v)))
                    .unwrap_or_default(),
                c.reason.clone(),
            ]
        })
        .collect();
    super::table(
        &[
            "",
            "CHECK",
            "VALUE",
            "THRESHOLD",
            "BASELINE",
            "DELTA",
            "DETAIL",
        ],
        &rows,
    );
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let report = evaluate(
        &gate::Request {
            target: &a.target,
            baseline: a.baseline.as_deref(),
            policy: a.policy.as_deref(),
            spec: &a.spec,
            keys: &a.keys,
            baseline_optional: a.baseline_optional,
        },
        &a.registry,
    )?;
    if let Some(md) = &a.markdown {
        std::fs::write(md, gate::markdown(&report)?).map_err(|e| Error::Io {
            context: format!("writing {}", md.display()),
            source: e,
        })?;
    }
    if json {
        super::print_json(&report);
    } else {
        for n in &report.notices {
            outln!("notice: {n}");
        }
        print_table(&report);
        outln!(
            "{} {} ({})",
            if report.passed {
                "gate passed:"
            } else {
                "gate FAILED:"
            },
            report.candidate,
            report.candidate_digest
        );
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        super::check_failed()
    })
}
