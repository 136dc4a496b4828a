use mlart::interrupt::Cancel;
use mlart::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The project folder (default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The bundle's name (default: from the folder name).
    #[arg(long)]
    name: Option<String>,
    /// Overwrite an existing mlart.yaml.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args, json: bool, _cancel: &Cancel) -> Result<ExitCode> {
    let r = mlart::import::init::init(&a.dir, a.name.as_deref(), a.force)?;
    if json {
        super::print_json(&r);
    } else {
        outln!("wrote {} (name: {})", r.path, r.name);
        for (k, v) in &r.sections {
            outln!("  {k:<7} {}", v.join(", "));
        }
        if !r.unclassified.is_empty() {
            outln!(
                "  not included (listed as comments): {}",
                r.unclassified.join(", ")
            );
        }
        outln!("review it, then run `mlart bundle`");
    }
    Ok(ExitCode::SUCCESS)
}
