//! The library's error type. The CLI maps `Error::exit_code` to the process exit code:
//! 2 for bad input or usage, 1 for a check that failed.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// An I/O failure, with what was being done and on which path.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A check failed (gate, verify, validate): exit code 1.
    #[error("{0}")]
    Check(String),
    /// The user interrupted the work (Ctrl-C); nothing was left behind.
    #[error("interrupted: the partial output was removed")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Check(_) => 1,
            _ => 2,
        }
    }

    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    /// A short machine-readable name for `--json` error output.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Spec { .. } => "spec",
            Error::Input(_) => "input",
            Error::Io { .. } => "io",
            Error::Check(_) => "check",
            Error::Interrupted => "interrupted",
        }
    }
}

/// Attach "what was being done on which path" to an `io::Error`.
pub trait IoContext<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|source| {
            if crate::interrupt::requested() {
                return Error::Interrupted;
            }
            Error::Io {
                context: format!("{what} {}", path.display()),
                source,
            }
        })
    }
}
