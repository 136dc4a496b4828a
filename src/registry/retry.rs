//! The retry policy: which failures are retried, exponential backoff, `Retry-After`, Ctrl-C.

use super::*;
use crate::interrupt::Cancel;
use oci_client::errors::OciDistributionError;
use oci_client::errors::OciErrorCode;
use std::time::Duration;

pub fn max_retries() -> u32 {
    std::env::var("MLART_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

pub fn backoff_base(attempt: u32) -> Duration {
    let ms = std::env::var("MLART_RETRY_BASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(250);
    Duration::from_millis((ms << attempt.min(6)).min(8_000))
}

/// The cap on a registry's `Retry-After` (`MLART_RETRY_AFTER_MAX` seconds, default 60): asked
/// to wait longer, mlart gives up at once (`wait_refused`).
pub fn retry_after_max() -> Duration {
    Duration::from_secs(
        std::env::var("MLART_RETRY_AFTER_MAX")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(60),
    )
}

/// A `Retry-After` beyond this is not a wait but a broken header: ordinary backoff instead.
pub const RETRY_AFTER_ABSURD: Duration = Duration::from_secs(24 * 3600);

/// The `Retry-After` text of a 429 or 503 (or of a retryable registry error envelope, which
/// comes from a 429), from the registry or its token endpoint, as the vendored oci-client keeps
/// it (vendor/README.md).
pub fn retry_after_header(e: &OciDistributionError) -> Option<&str> {
    match e {
        OciDistributionError::ServerError {
            code: 429 | 503,
            retry_after,
            ..
        }
        | OciDistributionError::TokenError {
            code: 429 | 503,
            retry_after,
            ..
        } => retry_after.as_deref(),
        OciDistributionError::RegistryError { retry_after, .. } if retryable(e) => {
            retry_after.as_deref()
        }
        _ => None,
    }
}

/// The wait a `Retry-After` value asks for (RFC 9110 section 10.2.3: delay-seconds, or an
/// HTTP-date in any of its three forms, against the clock `now`; a date past is no wait).
/// None when it is neither, or absurd (more than a day): the caller backs off as usual.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim_matches([' ', '\t']);
    let wait = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(v.parse::<u64>().ok()?)
    } else {
        // IMF-fixdate, rfc850 or asctime (the `httpdate` crate, as hyper used it).
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    (wait <= RETRY_AFTER_ABSURD).then_some(wait)
}

/// How long to wait before trying again after `e` (attempt `attempt`, from 0): the registry's
/// `Retry-After` on a 429/503 when it has a usable one (never less than the ordinary backoff),
/// else exponential backoff. None: the registry asks for more than `MLART_RETRY_AFTER_MAX`,
/// so give up now (`wait_refused` says why).
pub fn backoff(what: &str, attempt: u32, e: &OciDistributionError) -> Option<Duration> {
    let base = backoff_base(attempt);
    let why = describe_oci(e);
    let Some(raw) = retry_after_header(e) else {
        tracing::debug!("{what}: {why}; retrying in {base:?} (backoff, attempt {attempt})");
        return Some(base);
    };
    match parse_retry_after(raw, std::time::SystemTime::now()) {
        Some(asked) if asked > retry_after_max() => {
            tracing::debug!(
                "{what}: {why}; the registry asks to retry after {asked:?} (Retry-After: {raw:?}), more than MLART_RETRY_AFTER_MAX ({:?}): giving up",
                retry_after_max()
            );
            None
        }
        Some(asked) => {
            let wait = asked.max(base);
            tracing::debug!(
                "{what}: {why}; retrying in {wait:?} (Retry-After: {raw:?}, backoff {base:?})"
            );
            Some(wait)
        }
        None => {
            tracing::debug!(
                "{what}: {why}; Retry-After {raw:?} is neither seconds nor an HTTP-date (or absurd): retrying in {base:?} (backoff, attempt {attempt})"
            );
            Some(base)
        }
    }
}

/// Sleep `d`, waking early when `cancel` is cancelled (a `Retry-After` wait can be a minute):
/// false when cancelled, and the caller gives up (`map_err` then reports the interruption).
pub async fn pause(cancel: &Cancel, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// 5xx, 429, 408, connection resets, timeouts and broken bodies are worth another try; a
/// refused connection, an unknown host or a plain-HTTP answer to TLS are not.
pub fn retryable(e: &OciDistributionError) -> bool {
    match e {
        // The registry, or its token endpoint (the realm of a Bearer challenge).
        OciDistributionError::ServerError { code, .. }
        | OciDistributionError::TokenError { code, .. } => {
            *code >= 500 || *code == 429 || *code == 408
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|x| match &x.code {
                OciErrorCode::Toomanyrequests => true,
                OciErrorCode::Other(c) => c.eq_ignore_ascii_case("unavailable"),
                _ => false,
            })
        }
        // reqwest's status errors (blob HEAD uses `error_for_status`) carry only the code.
        OciDistributionError::RequestError(r) => match r.status() {
            Some(s) => s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408,
            // Refused, unknown host, plain HTTP: the same answer every time (#19).
            None if super::errors::unreachable(e).is_some() => false,
            None => {
                r.is_connect() || r.is_timeout() || r.is_request() || r.is_body() || r.is_decode()
            }
        },
        OciDistributionError::IoError(_) => true,
        _ => false,
    }
}

/// The first line of a failure, short enough for a retry notice.
fn describe_short(e: &OciDistributionError) -> String {
    let s = super::errors::describe_oci(e);
    let s = s.lines().next().unwrap_or_default();
    super::errors::printable(s, 160)
}

pub async fn retry<T, F, Fut>(
    cancel: &Cancel,
    what: &str,
    mut f: F,
) -> std::result::Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, OciDistributionError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < max_retries() && retryable(&e) => {
                // Refused (`map_err` says why: `wait_refused`) or interrupted: give up.
                match backoff(what, attempt, &e) {
                    Some(wait) => {
                        // Said at default verbosity: a silent wait looks like a hang.
                        tracing::warn!(
                            "{what}: registry busy or connection lost ({}), retry {}/{} in {:.1} s",
                            describe_short(&e),
                            attempt + 1,
                            max_retries(),
                            wait.as_secs_f64()
                        );
                        if !pause(cancel, wait).await {
                            return Err(e);
                        }
                        attempt += 1;
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// 1994-11-06 08:49:37 UTC, the example of RFC 9110.
    const RFC_EXAMPLE: i64 = 784_111_777;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    #[test]
    fn delay_seconds() {
        let now = SystemTime::now();
        for (v, want) in [
            ("2", 2),
            ("0", 0),
            (" 7\t", 7),
            ("0002", 2),
            ("86400", 86_400),
        ] {
            assert_eq!(
                parse_retry_after(v, now),
                Some(Duration::from_secs(want)),
                "{v:?}"
            );
        }
    }

    #[test]
    fn malformed_negative_and_absurd_values_are_none() {
        let now = SystemTime::now();
        for v in [
            "",
            " ",
            "soon",
            "-5",
            "+3",
            "1.5",
            "2 s",
            "2s",
            "0x10",
            "١٢", // Arabic-Indic digits
            "86401",
            "1000000000",
            "99999999999999999999999",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov  6 08:49 1994",
            "Sun Nov \u{e9}6 08:49:37 1994",
            "Thu, 29 Feb 1900 00:00:00 GMT",
            // A date far ahead is absurd too.
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert_eq!(parse_retry_after(v, now), None, "{v:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        for v in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            // Against a clock 30 s before that date: 30 s; after it: no wait.
            assert_eq!(
                parse_retry_after(v, at(RFC_EXAMPLE - 30)),
                Some(Duration::from_secs(30)),
                "{v:?}"
            );
            assert_eq!(
                parse_retry_after(v, at(RFC_EXAMPLE + 5)),
                Some(Duration::ZERO),
                "{v:?}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun Nov  6 10:49:37 1994", at(RFC_EXAMPLE)),
            Some(Duration::from_secs(7200))
        );
    }

    proptest::proptest! {
        #[test]
        fn any_header_text_never_panics(v in "\\PC{0,40}") {
            let _ = parse_retry_after(&v, SystemTime::now());
        }

        #[test]
        fn date_like_text_never_panics(
            v in "[A-Za-z]{0,9},? ?[0-9 ]{0,3}[- ]?[A-Za-z]{0,3}[- ]?[0-9]{0,5} [0-9:]{0,9} ?(GMT)?"
        ) {
            let _ = parse_retry_after(&v, SystemTime::now());
        }
    }

    fn server_error(code: u16, retry_after: Option<&str>) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://registry.example:5000/v2/ml/iris/blobs/uploads/".into(),
            message: String::new(),
            retry_after: retry_after.map(str::to_string),
        }
    }

    /// What the vendored oci-client keeps of the response reaches the backoff: 429 and 503
    /// honour it, other codes do not; garbage falls back to the exponential backoff.
    #[test]
    fn backoff_follows_the_retry_after_the_client_kept() {
        let base = backoff_base(0);
        assert!(base < Duration::from_secs(2));
        let b = |code, ra| backoff("t", 0, &server_error(code, ra));
        assert_eq!(b(429, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(b(503, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(b(429, Some("0")), Some(base), "never less than the backoff");
        assert_eq!(b(500, Some("3")), Some(base), "only 429 and 503");
        assert_eq!(b(429, None), Some(base));
        for garbage in ["soon", "-5", "", "99999999999999999999999", "1000000000"] {
            assert_eq!(b(429, Some(garbage)), Some(base), "{garbage:?}");
            assert!(wait_refused(&server_error(429, Some(garbage))).is_none());
        }
        // A TOOMANYREQUESTS envelope (a 429 with a JSON body) carries it too.
        let envelope = serde_json::from_str(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .unwrap();
        let e = OciDistributionError::RegistryError {
            envelope,
            url: "https://registry.example/v2/ml/iris/manifests/1".into(),
            retry_after: Some("4".into()),
        };
        assert_eq!(backoff("t", 0, &e), Some(Duration::from_secs(4)));
    }

    fn token_error(code: u16, message: &str, retry_after: Option<&str>) -> OciDistributionError {
        OciDistributionError::TokenError {
            code,
            url: "https://auth.example/token".into(),
            message: message.into(),
            retry_after: retry_after.map(str::to_string),
        }
    }

    /// The token endpoint's failures (the vendored oci-client's `TokenError`) follow the policy
    /// of the registry's own: 429/5xx/408 retried, `Retry-After` on 429/503 honoured and
    /// capped, 401/403 the credentials message, a 200 that is no token not retried.
    #[test]
    fn token_endpoint_errors_follow_the_retry_policy() {
        for code in [429, 500, 502, 503, 504, 408] {
            assert!(retryable(&token_error(code, "", None)), "{code}");
        }
        for code in [200, 400, 401, 403, 404] {
            assert!(!retryable(&token_error(code, "", None)), "{code}");
        }
        assert!(is_auth_error(&token_error(401, "", None)));
        assert!(is_auth_error(&token_error(403, "", None)));
        assert!(!is_auth_error(&token_error(429, "", None)));
        let base = backoff_base(0);
        let b = |code, ra| backoff("t", 0, &token_error(code, "", ra));
        assert_eq!(b(429, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(b(503, Some("3")), Some(Duration::from_secs(3)));
        assert_eq!(b(500, Some("3")), Some(base));
        assert_eq!(b(429, Some("3600")), None);
        let msg = wait_refused(&token_error(429, "", Some("3600"))).unwrap();
        assert!(
            msg.starts_with("the token endpoint https://auth.example/token answered 429 Too Many Requests and asks to retry after 3600 s"),
            "{msg}"
        );
        assert!(msg.contains("MLART_RETRY_AFTER_MAX"), "{msg}");
        let msg = map_err(
            &Cancel::default(),
            "r/x:1",
            "listing tags",
            token_error(401, "no", None),
        )
        .to_string();
        assert!(
            msg.contains("its token endpoint https://auth.example/token answered 401 Unauthorized")
                && msg.contains("mlart login"),
            "{msg}"
        );
        assert_eq!(
            describe_oci(&token_error(503, "down\n\x1b[2Jfor now", None)),
            "the token endpoint https://auth.example/token answered 503 Service Unavailable (down [2Jfor now)"
        );
        assert!(describe_oci(&token_error(200, "the token is empty", None))
            .starts_with("the token endpoint https://auth.example/token gave no usable token: the token is empty;"));
    }

    #[test]
    fn printable_makes_one_short_line() {
        assert_eq!(printable("  a\r\n\tb\u{7}c  ", 10), "a b c");
        assert_eq!(printable("", 10), "");
        assert_eq!(printable("\u{1b}[31mred", 10), "[31mred");
        assert_eq!(printable("ééééé", 3), "ééé…");
        assert_eq!(printable("abc", 3), "abc");
    }

    #[test]
    fn a_wait_above_the_cap_gives_up_with_a_clear_message() {
        let e = server_error(429, Some("3600"));
        assert_eq!(backoff("t", 0, &e), None);
        let msg = wait_refused(&e).unwrap();
        assert!(msg.contains("registry.example:5000"), "{msg}");
        assert!(msg.contains("429 Too Many Requests"), "{msg}");
        assert!(msg.contains("retry after 3600 s"), "{msg}");
        assert!(msg.contains("MLART_RETRY_AFTER_MAX"), "{msg}");
        let msg = map_err(
            &Cancel::default(),
            "registry.example:5000/ml/iris:1",
            "uploading blob x",
            e,
        )
        .to_string();
        assert!(msg.starts_with("registry.example:5000/ml/iris:1: uploading blob x: the registry registry.example:5000 answered 429"), "{msg}");
        // At the cap itself it waits.
        assert_eq!(
            backoff("t", 0, &server_error(503, Some("60"))),
            Some(Duration::from_secs(60))
        );
        assert!(wait_refused(&server_error(503, Some("60"))).is_none());
        // 61 s on a 503: refused, its status named.
        let msg = wait_refused(&server_error(503, Some("61"))).unwrap();
        assert!(
            msg.contains("503 Service Unavailable") && msg.contains("after 61 s"),
            "{msg}"
        );
    }
}
