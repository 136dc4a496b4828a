//! The user's Docker credentials for a registry (`DOCKER_CONFIG` or `~/.docker`: `auths`,
//! `credHelpers`, `credsStore`, in docker's order) and where they came from, so that a refusal
//! can say whose credentials were refused, or that there were none, and in which file.

use super::login::config_path;
use super::RegistryAuth;
use crate::error::{Error, Result};
use crate::format::reference;
use std::path::{Path, PathBuf};

/// Where the credentials a [`super::Remote`] sends came from. Never holds a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Given by the caller (`login` checking new ones, tests).
    #[default]
    Given,
    /// None found (anonymous): the Docker config read (it may not exist), and the helper
    /// asked, if one was.
    None {
        config: PathBuf,
        helper: Option<String>,
    },
    /// Found: the user (None: an identity token) and where (the config file, or the helper
    /// and the config file that names it).
    Found { user: Option<String>, from: String },
}

/// Credentials and where they came from.
pub struct Found {
    pub auth: RegistryAuth,
    pub source: Source,
}

/// The credentials for `registry` from the Docker config, as docker looks them up:
/// `credHelpers` for the registry, then `auths`, then `credsStore`. None configured (or no
/// config file): anonymous.
pub fn lookup(registry: &str) -> Result<Found> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let key = reference::credential_key(registry);
    let Ok(path) = config_path() else {
        return Ok(anonymous(PathBuf::from("~/.docker/config.json"), None));
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(anonymous(path, None)),
        Err(e) => {
            return Err(Error::input(format!(
                "{}: cannot read the Docker config ({e}): fix its permissions or remove it",
                path.display()
            )))
        }
    };
    let unreadable = || {
        Error::input(format!(
            "{} cannot be read as a Docker config: fix or remove it",
            path.display()
        ))
    };
    let conf: serde_json::Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|_| unreadable())?
    };
    let found = |c: DockerCredential, from: String| {
        let (auth, user) = match c {
            DockerCredential::UsernamePassword(u, p) => {
                (RegistryAuth::Basic(u.clone(), p), Some(u))
            }
            DockerCredential::IdentityToken(t) => (RegistryAuth::Bearer(t), None),
        };
        Found {
            auth,
            source: Source::Found { user, from },
        }
    };
    let named = |field: &str| {
        conf.get(field)
            .and_then(|h| {
                if field == "credHelpers" {
                    h.get(&key)
                } else {
                    Some(h)
                }
            })
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let helper = match named("credHelpers") {
        Some(h) => Some((h, "credHelpers")),
        None => {
            // `auths` alone (the helpers taken out)
            let mut plain = conf.clone();
            if let Some(o) = plain.as_object_mut() {
                o.remove("credsStore");
                o.remove("credHelpers");
            }
            match docker_credential::get_credential_from_reader(
                plain.to_string().as_bytes(),
                &key,
            ) {
                Ok(c) => return Ok(found(c, path.display().to_string())),
                Err(E::NoCredentialConfigured) => named("credsStore").map(|h| (h, "credsStore")),
                Err(E::ConfigReadError) => return Err(unreadable()),
                Err(e) => {
                    return Err(Error::input(format!(
                        "{}: the credentials for {key} in `auths` cannot be read ({e}): run `mlart login {registry}` again",
                        path.display()
                    )))
                }
            }
        }
    };
    let Some((name, field)) = helper else {
        return Ok(anonymous(path, None));
    };
    let prog = format!("docker-credential-{name}");
    let whence = format!("`{field}` in {}", path.display());
    let remove = match field {
        "credsStore" => format!("remove `credsStore` from {}", path.display()),
        _ => format!(
            "remove the `credHelpers` entry for {key} from {}",
            path.display()
        ),
    };
    if !name.contains('/') && !on_path(&prog) {
        return Err(Error::input(format!(
            "the Docker config {} names the credential helper {name:?} ({field}), but its program {prog} is not on PATH: install {prog}, or {remove}",
            path.display()
        )));
    }
    let one = serde_json::json!({ "credHelpers": { &key: &name } }).to_string();
    match docker_credential::get_credential_from_reader(one.as_bytes(), &key) {
        Ok(c) => Ok(found(c, format!("{prog}, named by {whence}"))),
        // A helper that has nothing for this registry answers "credentials not found in
        // native keychain" and exits 1 (docker-credential-helpers): anonymous, as in docker.
        Err(E::HelperFailure { stdout, stderr, .. })
            if stdout.contains("credentials not found")
                || stderr.contains("credentials not found") =>
        {
            Ok(anonymous(path, Some(prog)))
        }
        Err(E::HelperFailure { .. }) => Err(Error::input(format!(
            "the Docker credential helper {prog} (named by {whence}) failed for {key}: run `mlart login {registry}` again, or {remove}"
        ))),
        Err(e) => Err(Error::input(format!(
            "running the Docker credential helper {prog} (named by {whence}) for {key}: {e}: check that it works (`echo {key} | {prog} get`), or {remove}"
        ))),
    }
}

fn anonymous(config: PathBuf, helper: Option<String>) -> Found {
    Found {
        auth: RegistryAuth::Anonymous,
        source: Source::None { config, helper },
    }
}

/// Is there an executable `prog` in a directory of PATH?
fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        let p: &Path = &d.join(prog);
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The message of a registry's refusal (`detail`: what its token endpoint answered, or
/// empty), by where the credentials came from; `denied`: the registry knows the user but
/// refuses the access (403, DENIED), rather than the credentials (401).
pub fn refusal(source: &Source, registry: &str, denied: bool, detail: &str) -> String {
    let who = |user: &Option<String>| match user {
        Some(u) => format!("the credentials of {}", crate::format::display::escape(u)),
        None => "the identity token".to_string(),
    };
    match source {
        Source::Given => format!(
            "the registry asks for credentials (or refused them{detail}): run `mlart login {registry}` or check the Docker config"
        ),
        Source::None { config, helper } => format!(
            "the registry asks for credentials, and none were found for {registry} in {}{}{detail}: run `mlart login {registry}`",
            config.display(),
            helper
                .as_ref()
                .map(|h| format!(" (nor by {h})"))
                .unwrap_or_default()
        ),
        Source::Found { user, from } if denied => format!(
            "the registry refused access with {} for {registry} (from {from}){detail}: check that this account may do this here, or run `mlart login {registry}` with another one",
            who(user)
        ),
        Source::Found { user, from } => format!(
            "the registry refused {} for {registry} (from {from}){detail}: run `mlart login {registry}` again",
            who(user)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_whose_credentials_or_that_there_were_none() {
        let found = Source::Found {
            user: Some("alice".into()),
            from: "/h/.docker/config.json".into(),
        };
        assert_eq!(
            refusal(&found, "r:5000", false, ""),
            "the registry refused the credentials of alice for r:5000 (from /h/.docker/config.json): run `mlart login r:5000` again"
        );
        assert!(refusal(&found, "r:5000", true, "")
            .starts_with("the registry refused access with the credentials of alice for r:5000"));
        let none = Source::None {
            config: "/d/config.json".into(),
            helper: None,
        };
        assert_eq!(
            refusal(&none, "r:5000", false, ""),
            "the registry asks for credentials, and none were found for r:5000 in /d/config.json: run `mlart login r:5000`"
        );
        let odd = Source::Found {
            user: Some("a\u{1b}[31mb".into()),
            from: "f".into(),
        };
        assert!(!refusal(&odd, "r", false, "").contains('\u{1b}'));
    }
}
