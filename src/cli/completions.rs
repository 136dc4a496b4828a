//! `mlart completions SHELL` and `mlart man`: shell completion scripts and roff man pages,
//! generated from the clap definitions so they cannot drift from the real flags.

use mlart::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write one page per verb (mlart.1, mlart-bundle.1, …) into DIR instead of printing the
    /// main page on stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The completion script on stdout. Install it, for example, with
/// `mlart completions bash > ~/.local/share/bash-completion/completions/mlart`.
pub fn run(a: Args, cmd: clap::Command) -> Result<ExitCode> {
    let mut cmd = public(cmd);
    let mut buf = Vec::new();
    let name = cmd.get_name().to_string();
    clap_complete::generate(a.shell, &mut cmd, name, &mut buf);
    rawln!("{}", String::from_utf8_lossy(&buf).trim_end_matches('\n'));
    Ok(ExitCode::SUCCESS)
}

/// The man page of `mlart` (roff) on stdout, or every verb's page written into `--out DIR`.
pub fn run_man(a: ManArgs, json: bool, cmd: clap::Command) -> Result<ExitCode> {
    // (clap's own `help` verb gets no page, as in clap_mangen::generate_to)
    let cmd = public(cmd).disable_help_subcommand(true);
    let Some(dir) = a.out else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut buf)
            .map_err(|e| Error::from_io(&e, "cannot render the man page"))?;
        rawln!("{}", String::from_utf8_lossy(&buf).trim_end_matches('\n'));
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::from_io(&e, format!("cannot create {}", dir.display())))?;
    clap_mangen::generate_to(cmd.clone(), &dir)
        .map_err(|e| Error::from_io(&e, format!("cannot write man pages to {}", dir.display())))?;
    let prefix = cmd.get_name().to_string();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::from_io(&e, format!("cannot list {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".1")
        })
        .collect();
    paths.sort();
    if json {
        super::print_json(&serde_json::json!({ "pages": paths }));
    } else {
        outln!("wrote {} man pages to {}", paths.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The command line users see. clap_complete offers hidden verbs too (its bash script lists
/// every subcommand), so the internal ones (`__validate-worker`) are left out of a copy of the
/// top-level command: its name, version, about, global flags and visible verbs.
fn public(cmd: clap::Command) -> clap::Command {
    let mut out = clap::Command::new(env!("CARGO_BIN_NAME"))
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        out = out.long_about(about.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_command_keeps_every_visible_verb_and_flag() {
        let full = clap::Command::new("mlart")
            .about("about")
            .arg(clap::Arg::new("json").long("json").global(true))
            .subcommand(clap::Command::new("bundle").arg(clap::Arg::new("format").long("format")))
            .subcommand(clap::Command::new("__worker").hide(true));
        let public = super::public(full);
        let verbs: Vec<&str> = public.get_subcommands().map(|c| c.get_name()).collect();
        assert_eq!(verbs, ["bundle"]);
        assert!(public.get_arguments().any(|a| a.get_id() == "json"));
        assert_eq!(public.get_about().unwrap().to_string(), "about");
    }
}
