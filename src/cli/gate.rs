use super::push::RegistryArgs;
use mlart::check::gate::{self, GateReport};
use mlart::store::layout::Source;
use mlart::{format::reference, spec, store::layout, Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The candidate: a layout directory, an archive or a registry REF.
    target: String,
    /// The bundle to compare with (layout, archive or REF), for change limits and schema.
    #[arg(long)]
    baseline: Option<String>,
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
pub fn open_bundle(
    target: &str,
    reg: &RegistryArgs,
) -> Result<(
    Box<dyn Source>,
    mlart::format::digest::Digest,
    mlart::format::metadata::Metadata,
)> {
    let loc = reference::parse_location(target)?;
    let (mut src, tag) = mlart::store::registry::open_location(&loc, &reg.options())?;
    let r = layout::resolve(src.as_mut(), tag.as_deref())?;
    let digest = mlart::format::digest::Digest::parse(r.descriptor.digest().as_ref())
        .map_err(Error::Input)?;
    let meta = mlart::store::metadata::read_metadata(src.as_mut(), &r.manifest)?;
    Ok((src, digest, meta))
}

/// The gate's inputs, shared by `gate` and `push --gate`.
pub struct GateInputs<'a> {
    pub target: &'a str,
    pub baseline: Option<&'a str>,
    pub policy: Option<&'a std::path::Path>,
    pub spec: &'a std::path::Path,
    pub keys: &'a [PathBuf],
    pub registry: &'a RegistryArgs,
}

/// Evaluate the policy on `target`: reads manifests and metadata only.
pub fn evaluate(g: &GateInputs) -> Result<GateReport> {
    let policy = match g.policy {
        Some(p) => mlart::spec::policy::load_policy(p)?,
        None => {
            let s = spec::load(g.spec).map_err(|e| match e {
                Error::Input(m) if m.starts_with("no spec file") => Error::input(format!(
                    "no policy: give --policy FILE, or run where mlart.yaml (with `gates:`) is, or -f SPEC ({m})"
                )),
                other => other,
            })?;
            s.gates.ok_or_else(|| {
                Error::input(format!(
                    "{} has no `gates:` section: add one or give --policy FILE",
                    g.spec.display()
                ))
            })?
        }
    };
    let (mut src, digest, meta) = open_bundle(g.target, g.registry)?;
    let base = match g.baseline {
        Some(b) => {
            let (_, d, m) = open_bundle(b, g.registry)
                .map_err(|e| Error::input(format!("the baseline {b}: {e}")))?;
            Some((d, m))
        }
        None => None,
    };
    let signature = if policy.signature == Some(mlart::spec::policy::Requirement::Required)
        && !g.keys.is_empty()
    {
        let keys = g
            .keys
            .iter()
            .map(|k| mlart::sign::load_public(k))
            .collect::<Result<Vec<_>>>()?;
        let (sigs, problems) =
            mlart::check::verify::oci_signatures(src.as_mut(), &digest, &keys, false)?;
        Some(if problems.is_empty() {
            Ok(sigs
                .iter()
                .filter_map(|s| s.key.clone())
                .collect::<Vec<_>>()
                .join(", "))
        } else {
            Err(problems.join("; "))
        })
    } else {
        None
    };
    let checks = gate::evaluate(&policy, &meta, base.as_ref().map(|(_, m)| m), signature);
    Ok(GateReport {
        candidate: g.target.to_string(),
        candidate_digest: digest.to_string(),
        baseline: g.baseline.map(String::from),
        baseline_digest: base.as_ref().map(|(d, _)| d.to_string()),
        passed: checks.iter().all(|c| c.passed),
        checks,
    })
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

pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    let report = evaluate(&GateInputs {
        target: &a.target,
        baseline: a.baseline.as_deref(),
        policy: a.policy.as_deref(),
        spec: &a.spec,
        keys: &a.keys,
        registry: &a.registry,
    })?;
    if let Some(md) = &a.markdown {
        std::fs::write(md, gate::markdown(&report)?).map_err(|e| Error::Io {
            context: format!("writing {}", md.display()),
            source: e,
        })?;
    }
    if json {
        super::print_json(&report);
    } else {
        print_table(&report);
        println!(
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
        ExitCode::from(1)
    })
}
