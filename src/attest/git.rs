//! The git state of the project at build time (commit, remote, dirty), for the provenance
//! only: never in the bundle, whose digest must not depend on the work tree.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitState {
    pub commit: String,
    /// `remote.origin.url`, without any user name or password in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Tracked files changed, or untracked files not ignored.
    pub dirty: bool,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// The state of the git work tree that holds `dir`; None when it is not in one (or git is not
/// installed): the provenance then says nothing of a source revision.
pub fn state(dir: &Path) -> Option<GitState> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"])?;
    if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let dirty = git(dir, &["status", "--porcelain"]).map(|s| !s.is_empty())?;
    let remote = git(dir, &["config", "--get", "remote.origin.url"])
        .filter(|s| !s.is_empty())
        .map(|u| strip_credentials(&u));
    Some(GitState {
        commit,
        remote,
        dirty,
    })
}

/// `https://user:token@host/x` -> `https://host/x`: a token must never reach a document.
pub fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if let Some((_, host)) = auth.rsplit_once('@') {
            return format!("{scheme}://{host}{path}");
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_the_document() {
        assert_eq!(
            strip_credentials("https://bob:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(strip_credentials("https://tok@h.io"), "https://h.io");
        assert_eq!(
            strip_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
    }

    #[test]
    fn state_of_a_real_repository() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(state(d.path()), None, "not a repository");
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        std::fs::write(d.path().join("a"), "1").unwrap();
        run(&["add", "a"]);
        run(&["commit", "-qm", "x"]);
        run(&[
            "remote",
            "add",
            "origin",
            "https://u:secret@example.com/r.git",
        ]);
        let s = state(d.path()).unwrap();
        assert_eq!(s.commit.len(), 40);
        assert!(!s.dirty);
        assert_eq!(s.remote.as_deref(), Some("https://example.com/r.git"));
        std::fs::write(d.path().join("a"), "2").unwrap();
        assert!(state(d.path()).unwrap().dirty);
    }
}
