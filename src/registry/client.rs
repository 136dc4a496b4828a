//! Building clients: TLS roots, the plain-HTTP rule (the credentials: `credentials`).

use super::*;
use crate::error::{Error, IoContext, Result};
use crate::format::reference::{self};
use oci_client::Client;
use std::time::Duration;

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
