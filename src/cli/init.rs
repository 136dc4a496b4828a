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
        println!("wrote {} (name: {})", r.path, r.name);
        for (k, v) in &r.sections {
            println!("  {k:<7} {}", v.join(", "));
        }
        if !r.unclassified.is_empty() {
            println!(
                "  not included (listed as comments): {}",
                r.unclassified.join(", ")
            );
        }
        println!("review it, then run `mlart bundle`");
    }
    Ok(ExitCode::SUCCESS)
}
