//! Building clients: Docker credentials, TLS roots, the plain-HTTP rule.

use super::*;
use crate::error::{Error, IoContext, Result};
use crate::format::reference::{self};
use oci_client::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Credentials for `registry` from the Docker config (`DOCKER_CONFIG` or `~/.docker`):
/// `auths`, `credsStore`, `credHelpers`. None configured: anonymous.
pub fn credentials(registry: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let key = reference::credential_key(registry);
    match docker_credential::get_credential(&key) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(t)) => Ok(RegistryAuth::Bearer(t)),
        Err(E::ConfigNotFound | E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(E::ConfigReadError) => {
            // Missing file reads as ConfigReadError too: only a file that exists is an error.
            let dir = std::env::var_os("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
            match dir.map(|d| d.join("config.json")) {
                Some(p) if p.exists() => Err(Error::input(format!(
                    "{} cannot be read as a Docker config: fix or remove it",
                    p.display()
                ))),
                _ => Ok(RegistryAuth::Anonymous),
            }
        }
        // A helper that has nothing for this registry answers "credentials not found in
        // native keychain" and exits 1 (docker-credential-helpers): anonymous, as in docker.
        Err(E::HelperFailure { stdout, stderr, .. })
            if stdout.contains("credentials not found")
                || stderr.contains("credentials not found") =>
        {
            Ok(RegistryAuth::Anonymous)
        }
        Err(E::HelperFailure { helper, .. }) => Err(Error::input(format!(
            "the Docker credential helper {helper} failed for {key}: run `mlart login {registry}` again"
        ))),
        Err(e) => Err(Error::input(format!(
            "reading the credentials for {key} from the Docker config: {e}"
        ))),
    }
}

/// An oci-client for `registry`: TLS by default (system roots + `ca_files`), plain HTTP for
/// loopback registries (unless a CA file is given) or with `plain_http`.
pub fn client_for(registry: &str, opts: &Options) -> Result<Client> {
    let mut certs = Vec::new();
    for p in &opts.ca_files {
        let data = std::fs::read(p).ctx("reading the CA file", p)?;
        certs.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let http = opts.plain_http || (reference::is_loopback(registry) && certs.is_empty());
    let config = ClientConfig {
        protocol: if http {
            ClientProtocol::HttpsExcept(vec![registry.to_string()])
        } else {
            ClientProtocol::Https
        },
        extra_root_certificates: certs,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: concat!("mlart/", env!("CARGO_PKG_VERSION")),
        platform_resolver: None,
        ..Default::default()
    };
    Client::try_from(config)
        .map_err(|e| Error::input(format!("setting up the registry client: {e}")))
}
