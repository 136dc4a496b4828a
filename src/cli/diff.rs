use super::args::RegistryArgs;
use mlart::format::digest::Digest;
use mlart::format::display::escape;
use mlart::format::metadata::Metadata;
use mlart::interrupt::Cancel;
use mlart::{check::gate, Result};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The old bundle: a layout directory, an archive or a registry REF.
    old: String,
    /// The new bundle.
    new: String,
    /// Exit 1 when the bundles differ (as `git diff --exit-code`), 0 when they are the same.
    #[arg(long)]
    exit_code: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let old_bundle = super::gate::open_bundle(&a.old, &a.registry)?;
    let new_bundle = super::gate::open_bundle(&a.new, &a.registry)?;
    let (od, old) = (old_bundle.digest, old_bundle.metadata);
    let (nd, new) = (new_bundle.digest, new_bundle.metadata);
    let d = gate::diff(&a.old, &old, &a.new, &new)?;
    // the one verdict: a check that failed exits 1 whatever the output's form
    let verdict = if a.exit_code && od != nd {
        super::check_failed()
    } else {
        ExitCode::SUCCESS
    };
    if json {
        super::print_json(&serde_json::json!({"old_digest": od, "new_digest": nd, "diff": d}));
        return Ok(verdict);
    }
    outln!("{}", heading(&old, &od, &new, &nd));
    if od == nd {
        outln!("  identical bundles");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "\nFILES ({} changed, {} unchanged)",
        d.files.len(),
        d.unchanged_files
    );
    let rows: Vec<Vec<String>> = d
        .files
        .iter()
        .map(|f| {
            vec![
                f.change.clone(),
                f.kind.clone(),
                f.size_delta.map(|s| format!("{s:+} B")).unwrap_or_default(),
                f.path.clone(),
            ]
        })
        .collect();
    super::table(&["CHANGE", "KIND", "SIZE", "PATH"], &rows);
    if !d.metrics.is_empty() {
        outln!("\nMETRICS");
        let f = |v: Option<f64>| v.map(gate::num).unwrap_or_else(|| "-".into());
        let rows: Vec<Vec<String>> = d
            .metrics
            .iter()
            .map(|m| {
                vec![
                    m.metric.clone(),
                    f(m.old),
                    f(m.new),
                    m.delta
                        .map(|v| format!("{}{}", if v >= 0.0 { "+" } else { "" }, gate::num(v)))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        super::table(&["METRIC", "OLD", "NEW", "DELTA"], &rows);
    }
    for (title, lines) in [
        ("SCHEMA", &d.schema),
        ("ENV", &d.env),
        ("MODELS", &d.models),
    ] {
        if !lines.is_empty() {
            outln!("\n{title}");
            for l in lines {
                outln!("  {}", escape(l));
            }
        }
    }
    if !d.schema_breaking.is_empty() {
        outln!("\nBREAKING SCHEMA CHANGES");
        for l in &d.schema_breaking {
            outln!("  {}", escape(l));
        }
    }
    Ok(verdict)
}

/// The first line: `iris 1.0.0 (93ce…) -> 1.1.0 (ab00…)`, both names when they differ
/// (`iris 1.0.0 (…) -> odd 0.1.0 (…)`), so that another model does not read as a new version.
fn heading<F>(old: &Metadata<F>, od: &Digest, new: &Metadata<F>, nd: &Digest) -> String {
    let new_name = if new.name == old.name {
        String::new()
    } else {
        format!("{} ", escape(&new.name))
    };
    format!(
        "{} {} ({}) -> {new_name}{} ({})",
        escape(&old.name),
        escape(&old.version),
        od.short(),
        escape(&new.version),
        nd.short()
    )
}
