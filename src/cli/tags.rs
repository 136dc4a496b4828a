//! `mlart tags REPO`: the tags of a registry repository.

use super::args::RegistryArgs;
use mlart::format::reference;
use mlart::interrupt::Cancel;
use mlart::registry::Remote;
use mlart::Result;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// host[:port]/repository (a tag, if given, is ignored).
    repository: String,
    /// Also list the `sha256-<hex>` tags that hold signatures and attestations where the
    /// registry has no referrers API (the distribution spec's fallback tags).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let (r, _) = reference::parse_reference(&a.repository)?;
    let repo = format!("{}/{}", r.registry(), r.repository());
    let remote = Remote::new(r, &a.registry.options())?;
    // In version order (`sort -V`: 1.9.0 before 1.10.0), so that the last is the newest release.
    let mut all = remote.tags()?;
    all.sort_by(|a, b| mlart::format::display::version_cmp(a, b));
    let (referrers, tags): (Vec<String>, Vec<String>) = all
        .into_iter()
        .partition(|t| mlart::registry::referrers::is_fallback_tag(t));
    let shown = |t: &Vec<String>| -> Vec<String> {
        match a.all {
            true => t.iter().chain(&referrers).cloned().collect(),
            false => t.clone(),
        }
    };
    if json {
        super::print_json(&serde_json::json!({
            "repository": repo, "tags": shown(&tags), "referrers_tags": referrers,
        }));
    } else {
        for t in shown(&tags) {
            outln!("{}", mlart::format::display::escape(&t));
        }
        if !a.all && !referrers.is_empty() {
            eprintln!(
                "({} referrers tag(s) sha256-… of signatures and attestations not shown: --all lists them)",
                referrers.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
