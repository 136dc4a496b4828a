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
    #[command(flatten)]
    policy: PolicyArgs,
    /// Also write the report as Markdown to this file (e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// The policy flags that `gate` and `push --gate` share.
#[derive(clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub flags: GateFlags,
    /// The spec whose `gates:` to use when --policy is not given [default: mlart.yaml].
    #[arg(short = 'f', long = "file")]
    spec: Option<PathBuf>,
}

/// The policy flags of every gate, `bundle --push --gate` too (whose spec is the bundle's).
#[derive(clap::Args)]
pub struct GateFlags {
    /// The bundle to compare with (layout, archive or REF), for change limits and schema.
    #[arg(long)]
    baseline: Option<String>,
    /// A --baseline that does not exist (the first release) is a notice, not an error.
    #[arg(long, requires = "baseline")]
    baseline_optional: bool,
    /// The policy file (`gates:` ...). Default: `gates:` of the spec (-f).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Trusted public key(s) for `signature: required`.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
}

impl GateFlags {
    /// The gate request of `target` with these flags, the policy from `spec` unless --policy.
    pub fn request<'a>(&'a self, target: &'a str, spec: &'a std::path::Path) -> gate::Request<'a> {
        gate::Request {
            target,
            baseline: self.baseline.as_deref(),
            policy: self.policy.as_deref(),
            spec,
            keys: &self.keys,
            baseline_optional: self.baseline_optional,
        }
    }

    /// Whether any of the flags was given.
    pub fn given(&self) -> bool {
        self.baseline.is_some() || self.policy.is_some() || !self.keys.is_empty()
    }
}

impl PolicyArgs {
    /// The gate request of `target` with these flags.
    pub fn request<'a>(&'a self, target: &'a str) -> gate::Request<'a> {
        self.flags.request(
            target,
            self.spec
                .as_deref()
                .unwrap_or(std::path::Path::new(spec::SPEC_FILE)),
        )
    }

    /// Whether any of the flags was given.
    pub fn given(&self) -> bool {
        self.flags.given() || self.spec.is_some()
    }
}

/// A failed gate before a push (`push --gate`, `bundle --push --gate`): with `--json` the
/// report (`"pushed": false`) and exit 1, else the table and the error naming the checks.
pub fn refuse_push(report: &GateReport, json: bool) -> Result<ExitCode> {
    if json {
        super::print_json(&serde_json::json!({"pushed": false, "gate": report}));
        return Ok(super::check_failed());
    }
    print_table(report);
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    Err(Error::Check(format!(
        "not pushed: the release gate failed ({})",
        failed.join("; ")
    )))
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
    let report = evaluate(&a.policy.request(&a.target), &a.registry)?;
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
