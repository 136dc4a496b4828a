//! Where a bundle lives: a registry reference (`host[:port]/repo[:tag|@digest]`), an OCI layout
//! directory or an OCI archive. Telling them apart is done here, once, for every verb.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub use oci_client::Reference;

/// A place a bundle can be read from or written to.
#[derive(Clone, Debug)]
pub enum Location {
    /// A registry reference. `explicit_tag` is false when the user gave neither tag nor digest
    /// (oci-client then fills in `latest`).
    Registry {
        reference: Reference,
        explicit_tag: bool,
    },
    /// An OCI layout directory or an archive (`.tar`), with an optional tag.
    Local { path: PathBuf, tag: Option<String> },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry { reference, .. } => write!(f, "{}", reference.whole()),
            Location::Local { path, tag: Some(t) } => write!(f, "{}:{t}", path.display()),
            Location::Local { path, tag: None } => write!(f, "{}", path.display()),
        }
    }
}

/// Does the first path component of `s` name a registry host (`localhost`, has a `.` or `:`)?
fn looks_like_registry(s: &str) -> bool {
    let Some((host, rest)) = s.split_once('/') else {
        return false;
    };
    !rest.is_empty()
        && !host.is_empty()
        && (host == "localhost" || host.contains('.') || host.contains(':'))
        && !host.starts_with('.')
        && !s.contains("//")
        && !s.contains('\\')
}

/// Parse a registry reference (an optional `docker://` prefix is accepted).
pub fn parse_reference(s: &str) -> Result<(Reference, bool)> {
    let s = s.strip_prefix("docker://").unwrap_or(s);
    let r: Reference = s.parse().map_err(|e| {
        Error::input(format!(
            "{s:?} is not a valid registry reference ({e}): use host[:port]/repository[:tag|@sha256:…], e.g. localhost:5000/ml/iris:1.0.0"
        ))
    })?;
    let name_part = s.rsplit_once('/').map(|(_, last)| last).unwrap_or(s);
    let explicit = name_part.contains(':') || s.contains('@');
    Ok((r, explicit))
}

/// Tell a registry reference from a local layout or archive.
///
/// `docker://REF` is a registry; `oci:PATH[:TAG]` and `oci-archive:PATH[:TAG]` are local; an
/// existing path is local; otherwise a string whose first component looks like a host
/// (`localhost`, contains `.` or `:`) is a registry reference, anything else a local path.
pub fn parse_location(s: &str) -> Result<Location> {
    if s.starts_with("docker://") {
        let (reference, explicit_tag) = parse_reference(s)?;
        return Ok(Location::Registry {
            reference,
            explicit_tag,
        });
    }
    for prefix in ["oci:", "oci-archive:"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return Ok(match rest.rsplit_once(':') {
                Some((p, tag)) if !tag.contains('/') && !p.is_empty() => Location::Local {
                    path: PathBuf::from(p),
                    tag: Some(tag.to_string()),
                },
                _ => Location::Local {
                    path: PathBuf::from(rest),
                    tag: None,
                },
            });
        }
    }
    if Path::new(s).exists() || !looks_like_registry(s) {
        return Ok(Location::Local {
            path: PathBuf::from(s),
            tag: None,
        });
    }
    let (reference, explicit_tag) = parse_reference(s)?;
    Ok(Location::Registry {
        reference,
        explicit_tag,
    })
}

/// The form a local destination asks for: Some(true) for `oci-archive:…`, Some(false) for
/// `oci:…`, None when only the path tells (`.tar`: an archive).
pub fn local_form(s: &str) -> Option<bool> {
    if s.starts_with("oci-archive:") {
        Some(true)
    } else if s.starts_with("oci:") {
        Some(false)
    } else {
        None
    }
}

/// Is `registry` (host or host:port) a loopback address, where plain HTTP is allowed?
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(registry)
    };
    if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The key Docker uses for a registry in `config.json` and credential helpers.
pub fn credential_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        match parse_location("localhost:5000/ml/iris:1.0.0").unwrap() {
            Location::Registry {
                reference,
                explicit_tag,
            } => {
                assert_eq!(reference.registry(), "localhost:5000");
                assert_eq!(reference.repository(), "ml/iris");
                assert_eq!(reference.tag(), Some("1.0.0"));
                assert!(explicit_tag);
            }
            other => panic!("{other:?}"),
        }
        match parse_location("127.0.0.1:5000/ml/iris").unwrap() {
            Location::Registry { explicit_tag, .. } => assert!(!explicit_tag),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_location("build/iris.oci").unwrap(),
            Location::Local { .. }
        ));
        assert!(matches!(
            parse_location("iris.tar").unwrap(),
            Location::Local { .. }
        ));
        match parse_location("oci:build/x.oci:1.0").unwrap() {
            Location::Local { path, tag } => {
                assert_eq!(path, PathBuf::from("build/x.oci"));
                assert_eq!(tag.as_deref(), Some("1.0"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_location("docker://ghcr.io/a/b:1").unwrap(),
            Location::Registry { .. }
        ));
        assert!(parse_location("docker://Bad Ref").is_err());
    }

    #[test]
    fn loopback() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("localhost.example.com"));
    }
}
