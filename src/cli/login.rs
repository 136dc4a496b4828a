//! `mlart login REGISTRY` / `mlart logout REGISTRY`: credentials stored the way `docker login`
//! stores them (credential helper when configured, else `auths` in config.json).

use super::args::RegistryArgs;
use mlart::format::reference;
use mlart::interrupt::Cancel;
use mlart::registry::{login, Remote};
use mlart::{Error, Result};
use oci_client::secrets::RegistryAuth;
use std::io::Read;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The registry host[:port].
    registry: String,
    /// The user name.
    #[arg(short, long)]
    username: Option<String>,
    /// The password (visible in the process list and shell history: prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Store the credentials without checking them against the registry.
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    registry_args: RegistryArgs,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The registry host[:port].
    registry: String,
}

fn host(s: &str) -> Result<String> {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    if s.is_empty() || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(Error::input(format!(
            "{s:?} is not a registry host: give host[:port], e.g. localhost:5000 or ghcr.io"
        )));
    }
    Ok(s.to_string())
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry_args.cancel = cancel.clone();
    let registry = host(&a.registry)?;
    let user = a.username.clone().ok_or_else(|| {
        Error::input(
            "give the user name with -u/--username (and the password with --password-stdin)",
        )
    })?;
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => {
            return Err(Error::input(
                "--password and --password-stdin exclude each other: use --password-stdin",
            ))
        }
        (Some(p), false) => {
            if !json {
                eprintln!("warning: --password is visible to other users: prefer --password-stdin");
            }
            p.clone()
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::input(format!("reading the password from stdin: {e}")))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => {
            return Err(Error::input(
                "give the password on standard input with --password-stdin (e.g. `echo \"$TOKEN\" | mlart login REGISTRY -u USER --password-stdin`)",
            ))
        }
    };
    if password.is_empty() {
        return Err(Error::input("the password is empty"));
    }
    if !a.no_verify {
        let (r, _) = reference::parse_reference(&format!("{registry}/mlart-login-check"))?;
        let remote = Remote::with_auth(
            r,
            &a.registry_args.options(),
            RegistryAuth::Basic(user.clone(), password.clone()),
        )?;
        remote.check_credentials()?;
    }
    let stored = login::store(&registry, &user, &password)?;
    if json {
        super::print_json(&serde_json::json!({
            "registry": stored.registry,
            "username": user,
            "stored_in": stored.store,
        }));
    } else {
        outln!(
            "logged in to {registry} as {user} (credentials in {})",
            stored.store
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_logout(a: LogoutArgs, json: bool, _cancel: &Cancel) -> Result<ExitCode> {
    let registry = host(&a.registry)?;
    let found = login::erase(&registry)?;
    if json {
        super::print_json(&serde_json::json!({"registry": registry, "removed": found}));
    } else if found {
        outln!("logged out of {registry}");
    } else {
        outln!("not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
