use mlart::import::draft::Origin;
use mlart::import::init::{GitInfo, InitOptions};
use mlart::interrupt::Cancel;
use mlart::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The project folder (default: the current one).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The bundle's name (default: the imported one, else from the folder name).
    #[arg(long)]
    name: Option<String>,
    /// Overwrite an existing mlart.yaml.
    #[arg(long)]
    force: bool,
    /// Read the folder as: mlflow, huggingface, kitfile, modelfile or files (default: detected).
    #[arg(long, value_name = "KIND")]
    from: Option<String>,
}

/// `mlart import …`, a verb users guess: whatever follows it is taken, to answer with the
/// verbs that do import.
#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<std::ffi::OsString>,
}

/// The one-paragraph answer to `mlart import …` (a usage error: exit 2).
pub fn import_hint(a: ImportArgs) -> Result<ExitCode> {
    let dir = match a
        .rest
        .iter()
        .rev()
        .find(|x| !x.to_string_lossy().starts_with('-'))
    {
        Some(d) => d.to_string_lossy().into_owned(),
        None => "DIR".to_string(),
    };
    Err(Error::usage(format!(
        "mlart has no `import` command: importing is what `init` does. `mlart init --from mlflow|huggingface|kitfile|modelfile|files {dir}` writes {dir}/mlart.yaml from an MLflow, Hugging Face, KitOps or modctl folder (without --from the kind is detected), or `mlart bundle {dir}` bundles such a folder directly with that spec in memory (docs/importing.md)"
    )))
}

pub fn run(a: Args, json: bool, _cancel: &Cancel) -> Result<ExitCode> {
    let from = match a.from.as_deref() {
        None => None,
        Some(f) => Some(Origin::parse(f).ok_or_else(|| {
            Error::usage(format!(
                "--from {f:?}: use mlflow, huggingface, kitfile, modelfile or files"
            ))
        })?),
    };
    let git = mlart::attest::git::state(&a.dir).map(|g| GitInfo {
        source: g.remote,
        revision: g.commit,
        dirty: g.dirty,
    });
    let opts = InitOptions {
        name: a.name,
        force: a.force,
        from,
        git,
    };
    let r = mlart::import::init::init_with(&a.dir, &opts)?;
    for w in &r.warnings {
        super::warn(w);
    }
    if json {
        super::print_json(&r);
    } else {
        match r.from.as_str() {
            "files" => outln!("wrote {} (name: {})", r.path, r.name),
            from => outln!(
                "wrote {} (name: {}, from the {from} folder)",
                r.path,
                r.name
            ),
        }
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
