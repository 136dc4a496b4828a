//! The library's error type. Every error has a [`Kind`], decided where the error is born (never
//! by reading its text), and the kind alone decides the process exit code:
//!
//! | kind | exit |
//! |---|---|
//! | ok | 0 |
//! | check-failed (gate, verify, validate, `diff --exit-code`) | 1 |
//! | usage, input (spec, flags, keys, local files) | 2 |
//! | auth, not-found, network (registry or network) | 3 |
//! | integrity (digest or size mismatch, tampered file or signature) | 4 |
//! | interrupted (Ctrl-C; partial output removed) | 130 |
//! | internal (a bug in mlart) | 70 |

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is: decides the exit code and the `--json` error kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The command line is wrong.
    Usage,
    /// Bad input: the spec, a flag's value, a key, a local file or bundle.
    Input,
    /// The registry refused the credentials, or asked for some.
    Auth,
    /// The registry has no such repository, tag, manifest or blob.
    NotFound,
    /// The registry could not be reached, or failed (5xx after retries, a refusal).
    Network,
    /// A digest or size mismatch; a tampered file or signature.
    Integrity,
    /// A check ran and failed (gate, verify, validate).
    CheckFailed,
    /// The user interrupted the work.
    Interrupted,
    /// A bug in mlart.
    Internal,
}

impl Kind {
    /// The one rule from kind to process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::CheckFailed => 1,
            Kind::Usage | Kind::Input => 2,
            Kind::Auth | Kind::NotFound | Kind::Network => 3,
            Kind::Integrity => 4,
            Kind::Internal => 70,
            Kind::Interrupted => 130,
        }
    }

    /// The name `--json` error output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Input => "input",
            Kind::Auth => "auth",
            Kind::NotFound => "not-found",
            Kind::Network => "network",
            Kind::Integrity => "integrity",
            Kind::CheckFailed => "check-failed",
            Kind::Interrupted => "interrupted",
            Kind::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem in the spec file, with its position: `file:line:col: message. hint`.
    #[error("{}:{line}:{column}: {message}{}", file.display(), hint.as_ref().map(|h| format!(". {h}")).unwrap_or_default())]
    Spec {
        file: PathBuf,
        line: u32,
        column: u32,
        message: String,
        hint: Option<String>,
    },
    /// Bad input that is not tied to a spec position (the message names what and the fix).
    #[error("{0}")]
    Input(String),
    /// An I/O failure, with what was being done and on which path. Its kind is input, unless
    /// the failure was born with another ([`io_error`]: a digest mismatch, a download that
    /// failed).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A failure of kind `kind` other than the ones above (registry, integrity, usage, internal).
    #[error("{message}")]
    Other { kind: Kind, message: String },
    /// A check failed (gate, verify, validate): exit code 1.
    #[error("{0}")]
    Check(String),
    /// The user interrupted the work (Ctrl-C); nothing was left behind.
    #[error("interrupted: the partial output was removed")]
    Interrupted,
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    /// An error of the given kind.
    pub fn of(kind: Kind, msg: impl Into<String>) -> Self {
        match kind {
            Kind::Input => Error::Input(msg.into()),
            Kind::CheckFailed => Error::Check(msg.into()),
            Kind::Interrupted => Error::Interrupted,
            kind => Error::Other {
                kind,
                message: msg.into(),
            },
        }
    }

    /// An error about an `io::Error` `e`, described by `msg`: of the kind `e` was born with
    /// (a digest mismatch stays integrity, a broken download network), else input.
    pub fn from_io(e: &io::Error, msg: impl Into<String>) -> Self {
        Error::of(kind_of_io(e).unwrap_or(Kind::Input), msg)
    }

    pub fn integrity(msg: impl Into<String>) -> Self {
        Error::of(Kind::Integrity, msg)
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::of(Kind::Usage, msg)
    }

    /// The kind of this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Spec { .. } | Error::Input(_) => Kind::Input,
            Error::Io { source, .. } => kind_of_io(source).unwrap_or(Kind::Input),
            Error::Other { kind, .. } => *kind,
            Error::Check(_) => Kind::CheckFailed,
            Error::Interrupted => Kind::Interrupted,
        }
    }

    /// The process exit code: decided by the kind alone.
    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

/// The payload of an `io::Error` born with a kind: a failure met inside a `Read` or `Write`
/// (a digest mismatch while streaming, a download the network broke) keeps its kind through
/// the `io::Error` that carries it, so it is known from its type, never from its text.
/// Problems said one by one up to a limit, the rest counted: a check of a million files that
/// all differ gives a report, not a million lines (`verify`, `pull`, a folder's model.sig).
#[derive(Debug, Default)]
pub struct Capped {
    said: Vec<String>,
    more: usize,
}

impl Capped {
    /// Problems said at most, of one sort.
    pub const SHOWN: usize = 1000;

    pub fn push(&mut self, p: String) {
        if self.said.len() < Self::SHOWN {
            self.said.push(p);
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.said.is_empty()
    }

    /// The problems, and a last line counting the rest (`... and N more{what}`).
    pub fn into_vec(mut self, what: &str) -> Vec<String> {
        if self.more > 0 {
            self.said.push(format!("... and {} more{what}", self.more));
        }
        self.said
    }

    /// The problems on one line (`; ` between them), None when there are none.
    pub fn joined(&self) -> Option<String> {
        if self.said.is_empty() {
            return None;
        }
        let mut s = self.said.join("; ");
        if self.more > 0 {
            s.push_str(&format!("; ... and {} more", self.more));
        }
        Some(s)
    }
}

#[derive(Debug)]
pub struct IoKind {
    pub kind: Kind,
    pub message: String,
}

impl std::fmt::Display for IoKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IoKind {}

/// An `io::Error` of the given kind (`InvalidData` for integrity, `Other` otherwise).
pub fn io_error(kind: Kind, message: impl Into<String>) -> io::Error {
    let io_kind = if kind == Kind::Integrity {
        io::ErrorKind::InvalidData
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(
        io_kind,
        IoKind {
            kind,
            message: message.into(),
        },
    )
}

/// The kind an `io::Error` was born with (looking through wrapped errors), if any.
pub fn kind_of_io(e: &io::Error) -> Option<Kind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|x| x as _);
    while let Some(x) = cur {
        if let Some(k) = x.downcast_ref::<IoKind>() {
            return Some(k.kind);
        }
        cur = match x.downcast_ref::<io::Error>() {
            Some(inner) => inner.get_ref().map(|y| y as _),
            None => x.source(),
        };
    }
    None
}

/// Attach "what was being done on which path" to an `io::Error`.
pub trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T>;
    /// As `ctx`, with the path made only on an error (not built for every file read).
    fn ctx_with(self, what: &str, path: impl FnOnce() -> std::path::PathBuf) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|source| {
            // (an error born of a cancelled token carries kind interrupted: `Error::kind`)
            if crate::error::kind_of_io(&source) == Some(Kind::Interrupted) {
                return Error::Interrupted;
            }
            Error::Io {
                context: format!("{what} {}", path.display()),
                source,
            }
        })
    }

    fn ctx_with(self, what: &str, path: impl FnOnce() -> std::path::PathBuf) -> Result<T> {
        match self {
            Ok(v) => Ok(v),
            Err(e) => Err(e).ctx(what, &path()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_says_the_first_thousand_and_counts_the_rest() {
        let mut c = Capped::default();
        assert!(c.is_empty() && c.joined().is_none());
        for i in 0..Capped::SHOWN + 5 {
            c.push(format!("p{i}"));
        }
        let line = c.joined().unwrap();
        assert!(
            line.starts_with("p0; p1; ") && line.ends_with("; ... and 5 more"),
            "{line}"
        );
        let all = c.into_vec(" problems");
        assert_eq!(all.len(), Capped::SHOWN + 1);
        assert_eq!(all[Capped::SHOWN - 1], format!("p{}", Capped::SHOWN - 1));
        assert_eq!(all.last().unwrap(), "... and 5 more problems");
    }

    #[test]
    fn each_kind_has_its_exit_code_and_name() {
        let table = [
            (Kind::CheckFailed, 1, "check-failed"),
            (Kind::Usage, 2, "usage"),
            (Kind::Input, 2, "input"),
            (Kind::Auth, 3, "auth"),
            (Kind::NotFound, 3, "not-found"),
            (Kind::Network, 3, "network"),
            (Kind::Integrity, 4, "integrity"),
            (Kind::Internal, 70, "internal"),
            (Kind::Interrupted, 130, "interrupted"),
        ];
        for (k, code, name) in table {
            assert_eq!(k.exit_code(), code, "{k:?}");
            assert_eq!(k.as_str(), name);
            let e = Error::of(k, "m");
            assert_eq!(e.kind(), k, "{k:?} round-trips through Error::of");
            assert_eq!(e.exit_code(), code);
        }
    }

    #[test]
    fn a_digest_mismatch_read_from_a_file_is_an_integrity_error() {
        use crate::format::digest::{Digest, VerifyReader};
        use std::io::Read;
        let mut r = VerifyReader::new(&b"tampered"[..], Digest::of(b"original"), 8);
        let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        let e: Result<()> = Err(e).ctx("reading", Path::new("blob"));
        assert_eq!(e.unwrap_err().kind(), Kind::Integrity);
        // an ordinary I/O error stays input
        let plain: Result<()> =
            Err(io::Error::other("disk on fire")).ctx("reading", Path::new("blob"));
        assert_eq!(plain.unwrap_err().kind(), Kind::Input);
        let _ = r.read(&mut [0u8; 1]);
    }
}
