//! Registry failures as values: each `OciDistributionError` described and mapped to an `Error` once.

use super::*;
use crate::error::Error;
use crate::error::Kind;
use crate::interrupt::Cancel;
use oci_client::errors::OciDistributionError;
use oci_client::errors::OciErrorCode;

/// When `e` carries a `Retry-After` above `MLART_RETRY_AFTER_MAX`: why mlart did not wait.
pub fn wait_refused(e: &OciDistributionError) -> Option<String> {
    let asked = parse_retry_after(retry_after_header(e)?, std::time::SystemTime::now())?;
    let max = retry_after_max();
    if asked <= max {
        return None;
    }
    let max_s = max.as_secs();
    // A date a fraction of a second ahead still asks for that second.
    let secs = asked.as_secs() + u64::from(asked.subsec_nanos() > 0);
    let (status, url) = match e {
        OciDistributionError::TokenError { code, url, .. } => {
            return Some(format!(
                "the token endpoint {} answered {} and asks to retry after {secs} s, more than the {max_s} s mlart waits (MLART_RETRY_AFTER_MAX); try again later or raise MLART_RETRY_AFTER_MAX",
                printable(url, 200),
                status_text(*code)
            ));
        }
        OciDistributionError::ServerError { code, url, .. } => (status_text(*code), url),
        OciDistributionError::RegistryError { envelope, url, .. } => (
            envelope
                .errors
                .iter()
                .map(|x| format!("{:?}", x.code).to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", "),
            url,
        ),
        _ => return None,
    };
    let registry = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| url.clone());
    Some(format!(
        "the registry {registry} answered {status} and asks to retry after {secs} s, more than the {max_s} s mlart waits (MLART_RETRY_AFTER_MAX); try again later or raise MLART_RETRY_AFTER_MAX"
    ))
}

/// `429 Too Many Requests`, or the bare number of a code without a reason phrase.
pub fn status_text(code: u16) -> String {
    http::StatusCode::from_u16(code)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| code.to_string())
}

/// Text a server sent, fit for one line of a message: control characters (newlines, terminal
/// escapes) and runs of blanks become one space, and at most `max` characters are kept.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// What the token endpoint did, in words (a `TokenError` of the vendored oci-client).
pub fn token_failure(code: u16, url: &str, message: &str) -> String {
    let url = printable(url, 200);
    let message = printable(message, 200);
    if code == 200 {
        return format!(
            "the token endpoint {url} gave no usable token: {message}; check the registry's auth service (the realm of its WWW-Authenticate challenge)"
        );
    }
    let status = status_text(code);
    if message.is_empty() {
        format!("the token endpoint {url} answered {status}")
    } else {
        format!("the token endpoint {url} answered {status} ({message})")
    }
}

/// The registry (or a proxy in front of it) refuses a request body that large.
pub fn too_large(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::ServerError { code: 413, .. })
}

/// An oci-client error in words, with its source chain (reqwest hides the cause otherwise).
pub fn describe_oci(e: &OciDistributionError) -> String {
    if let OciDistributionError::TokenError {
        code, url, message, ..
    } = e
    {
        return token_failure(*code, url, message);
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

/// A connection that could not be made, where trying again cannot help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing listens there (connection refused).
    Refused,
    /// The host name does not resolve.
    UnknownHost,
    /// A TLS handshake answered in plain HTTP: the registry speaks HTTP.
    PlainHttp,
}

/// Which of [`Unreachable`] `e` is, from its cause chain (reqwest/hyper/rustls/io errors).
pub fn unreachable(e: &OciDistributionError) -> Option<Unreachable> {
    let OciDistributionError::RequestError(r) = e else {
        return None;
    };
    if r.status().is_some() {
        return None;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(r);
    while let Some(x) = src {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some(Unreachable::Refused);
            }
        }
        let t = x.to_string();
        if t.contains("InvalidContentType") || t.contains("corrupt message") {
            return Some(Unreachable::PlainHttp);
        }
        if t.starts_with("dns error") || t.contains("failed to lookup address") {
            return Some(Unreachable::UnknownHost);
        }
        if t.contains("Connection refused") {
            return Some(Unreachable::Refused);
        }
        src = x.source();
    }
    None
}

/// Whether the I/O error `e` (a read of a blob being fetched) is the registry refusing the
/// connection: it stopped, or went away, while a blob streamed.
pub fn refused_midway(e: &std::io::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = src {
        if x.to_string().contains("Connection refused") {
            return true;
        }
        src = match x.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            // (an io::Error's `source` skips the error it wraps: its `get_ref` is that one)
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => x.source(),
        };
    }
    false
}

fn unreachable_message(what: &str, doing: &str, u: Unreachable) -> String {
    let host = what.split('/').next().unwrap_or(what);
    match u {
        Unreachable::Refused => format!(
            "{what}: {doing}: cannot connect to {host}: connection refused. Is the registry running, and are the host and port right?"
        ),
        Unreachable::UnknownHost => format!(
            "{what}: {doing}: cannot resolve the host name of {host} (DNS). Check the spelling of the registry, and the network"
        ),
        Unreachable::PlainHttp => format!(
            "{what}: {doing}: {host} speaks plain HTTP, not HTTPS (it answered the TLS handshake in HTTP). If that is intended (a registry on your own network), add --plain-http"
        ),
    }
}

pub fn is_auth_error(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::ServerError { code, .. }
        | OciDistributionError::TokenError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RequestError(r) => r
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
    }
}

/// A refusal of the access (403, DENIED) rather than of the credentials (401).
fn is_denied(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. }
        | OciDistributionError::TokenError { code, .. } => *code == 403,
        OciDistributionError::RequestError(r) => r.status().is_some_and(|s| s.as_u16() == 403),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .all(|x| matches!(x.code, OciErrorCode::Denied)),
        _ => false,
    }
}

/// The registry's error codes that say "no such thing here".
fn is_unknown(code: &OciErrorCode) -> bool {
    matches!(
        code,
        OciErrorCode::BlobUnknown
            | OciErrorCode::BlobUploadUnknown
            | OciErrorCode::ManifestUnknown
            | OciErrorCode::NameUnknown
            | OciErrorCode::NotFound
    )
}

/// The one place a registry failure becomes an [`Error`], its kind decided by the variant and
/// the registry's error code (never by the text): credentials -> auth, unknown repository,
/// tag, manifest or blob -> not-found, everything else the registry or the network said ->
/// network. `what` names the registry and repository, `doing` the step.
pub fn map_err(cancel: &Cancel, what: &str, doing: &str, e: OciDistributionError) -> Error {
    map_err_from(
        cancel,
        &credentials::Source::Given,
        "<registry>",
        what,
        doing,
        e,
    )
}

/// [`map_err`] for requests made with credentials from `source` to `registry`: a refusal
/// says whose credentials were refused, or that none were found and where they were looked for.
pub fn map_err_from(
    cancel: &Cancel,
    source: &credentials::Source,
    registry: &str,
    what: &str,
    doing: &str,
    e: OciDistributionError,
) -> Error {
    if cancel.is_cancelled() {
        return Error::Interrupted;
    }
    if let Some(m) = wait_refused(&e) {
        return Error::of(Kind::Network, format!("{what}: {doing}: {m}"));
    }
    if let Some(u) = unreachable(&e) {
        return Error::of(Kind::Network, unreachable_message(what, doing, u));
    }
    match &e {
        OciDistributionError::TokenError { code, url, .. } if is_auth_error(&e) => {
            let detail = format!(
                "; its token endpoint {} answered {}",
                printable(url, 200),
                status_text(*code)
            );
            let m = credentials::refusal(source, registry, *code == 403, &detail);
            Error::of(Kind::Auth, format!("{what}: {doing}: {m}"))
        }
        e if is_auth_error(e) => {
            let m = credentials::refusal(source, registry, is_denied(e), "");
            Error::of(Kind::Auth, format!("{what}: {doing}: {m}"))
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| is_unknown(&x.code)) =>
        {
            Error::of(
                Kind::NotFound,
                format!("{what}: {doing}: not found ({envelope})"),
            )
        }
        e if is_not_found(e) => Error::of(
            Kind::NotFound,
            format!("{what}: {doing}: not found ({})", describe_oci(e)),
        ),
        _ => Error::of(
            Kind::Network,
            format!("{what}: {doing}: {}", describe_oci(&e)),
        ),
    }
}

/// The kind of a registry failure, by its variant and error codes: the same rule as
/// [`map_err`], for failures that travel inside an `io::Error` (a blob download).
pub fn kind_of(e: &OciDistributionError) -> Kind {
    if wait_refused(e).is_some() {
        Kind::Network
    } else if is_auth_error(e) {
        Kind::Auth
    } else if is_not_found(e) {
        Kind::NotFound
    } else {
        Kind::Network
    }
}

pub fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|x| is_unknown(&x.code))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_reconnect_is_found_down_the_cause_chain() {
        use std::io::{Error, ErrorKind};
        let refused = Error::new(ErrorKind::ConnectionRefused, "connect");
        // wrapped as a client's error is (an io::Error whose source is the cause)
        let wrapped = Error::other(Error::other(refused));
        assert!(refused_midway(&wrapped));
        let said = Error::other("tcp connect error: Connection refused (os error 111)");
        assert!(refused_midway(&said));
        assert!(!refused_midway(&Error::new(
            ErrorKind::InvalidData,
            "digest"
        )));
        assert!(!refused_midway(&Error::other("connection reset by peer")));
    }
}
