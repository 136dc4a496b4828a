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
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let (r, _) = reference::parse_reference(&a.repository)?;
    let repo = format!("{}/{}", r.registry(), r.repository());
    let remote = Remote::new(r, &a.registry.options())?;
    let tags = remote.tags()?;
    if json {
        super::print_json(&serde_json::json!({"repository": repo, "tags": tags}));
    } else {
        for t in &tags {
            outln!("{t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
