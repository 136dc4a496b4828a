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

/// A string that can only be meant as a local path: absolute or `./`-relative, or ending in
/// `.oci`, `.tar` or `/`.
fn looks_like_path(s: &str) -> bool {
    s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || s.ends_with('/')
        || s.ends_with(".oci")
        || s.ends_with(".tar")
        || s.ends_with(".tar.gz")
        || s.ends_with(".tgz")
        || s.ends_with(std::path::MAIN_SEPARATOR)
}

/// distribution/reference's grammar: the pattern oci-spec's `Reference::from_str` matches, with
/// its captures (name, tag, digest), but compiled with ASCII classes as Go's RE2 reads it.
/// oci-spec's Unicode `\w` lets a tag hold letters no registry accepts, and compiling it took
/// ~60 ms of every registry command's start (a third of an unchanged re-push); this one ~0.3 ms.
const GRAMMAR: &str = r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$";

/// `s` as a `Reference`, as oci-spec parses it (registry, Docker Hub's `library/` default,
/// `latest` when neither tag nor digest is given, the same length checks), ASCII only.
fn reference_of(s: &str) -> std::result::Result<Reference, &'static str> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::RegexBuilder::new(GRAMMAR)
            .unicode(false)
            .build()
            .expect("the reference grammar compiles")
    });
    if s.is_empty() {
        return Err("repository name must have at least one component");
    }
    let c = re.captures(s).ok_or("invalid reference format")?;
    let name = &c[1];
    let (mut registry, mut repository) = match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            (host.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if registry == "index.docker.io" {
        registry = "docker.io".to_string();
    }
    if registry == "docker.io" && !repository.contains('/') {
        repository = format!("library/{repository}");
    }
    // The grammar lets a first component without `.`/`:` be a host (`Foo/bar`), which then is
    // Docker Hub's repository `Foo/bar`: distribution refuses uppercase there, oci-spec does
    // not (its test of it is commented out), and `docker.io/Foo/bar` would not parse back.
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    if repository.len() > 255 {
        return Err("repository name must not be more than 255 characters");
    }
    let tag = c.get(2).map(|m| m.as_str().to_string());
    let Some(digest) = c.get(3).map(|m| m.as_str().to_string()) else {
        let tag = tag.unwrap_or_else(|| "latest".to_string());
        return Ok(Reference::with_tag(registry, repository, tag));
    };
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex.len(), 64),
        Some(("sha384", hex)) => (hex.len(), 96),
        Some(("sha512", hex)) => (hex.len(), 128),
        _ => return Err("unsupported digest algorithm"),
    };
    if hex_len.0 != hex_len.1 {
        return Err("invalid checksum digest length");
    }
    Ok(match tag {
        Some(tag) => Reference::with_tag_and_digest(registry, repository, tag, digest),
        None => Reference::with_digest(registry, repository, digest),
    })
}

/// Parse a registry reference (an optional `docker://` prefix is accepted).
pub fn parse_reference(s: &str) -> Result<(Reference, bool)> {
    let s = s.strip_prefix("docker://").unwrap_or(s);
    let r: Reference = reference_of(s).map_err(|e| {
        Error::input(match what_is_wrong(s) {
            Some(why) => format!("{s:?} is not a valid registry reference: {why}"),
            None => format!(
                "{s:?} is not a valid registry reference ({e}): use host[:port]/repository[:tag|@sha256:…], e.g. localhost:5000/ml/iris:1.0.0"
            ),
        })
    })?;
    let name_part = s.rsplit_once('/').map(|(_, last)| last).unwrap_or(s);
    let explicit = name_part.contains(':') || s.contains('@');
    Ok((r, explicit))
}

/// Which part of the refused reference `s` is wrong, and the fix: an uppercase repository
/// (with the lowercase form), a tag outside its charset or length, a digest that is not
/// `sha256:` and 64 hex digits. None when it is none of those (the grammar's own word then).
fn what_is_wrong(s: &str) -> Option<String> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    // The tag is after the last `:` of the last component (a `:` before a `/` is a port).
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    let (host, repository) = match name.split_once('/') {
        Some((h, r)) if h.contains(['.', ':']) || h == "localhost" => (Some(h), r),
        _ => (None, name),
    };
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        let mut fixed = host.map(|h| format!("{h}/")).unwrap_or_default();
        fixed.push_str(&repository.to_ascii_lowercase());
        if let Some(t) = tag {
            fixed.push_str(&format!(":{t}"));
        }
        if let Some(d) = digest {
            fixed.push_str(&format!("@{d}"));
        }
        return Some(format!(
            "repository names must be lowercase ({repository:?} has capital letters; the registry's host may have them). Write it as {fixed:?}"
        ));
    }
    if let Some(t) = tag {
        let bad: Vec<char> = t
            .chars()
            .filter(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .collect();
        let why = if t.is_empty() {
            Some("is empty (nothing after `:`)".to_string())
        } else if !bad.is_empty() {
            let mut shown = String::new();
            for c in bad {
                if !shown.contains(c) {
                    shown.push(c);
                }
            }
            Some(format!("has {shown:?}, which no tag may hold"))
        } else if t.starts_with(['.', '-']) {
            Some("starts with `.` or `-`".to_string())
        } else if t.len() > 128 {
            Some(format!("is {} characters long", t.len()))
        } else {
            None
        };
        if let Some(why) = why {
            return Some(format!(
                "the tag {t:?} {why}. A tag is 1 to 128 ASCII letters, digits, `_`, `.` and `-`, and does not start with `.` or `-` (e.g. `1.0.0`, `v2-rc_1`)"
            ));
        }
    }
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:");
        // (sha384 and sha512 digests of their length parse too: only sha256 is taught here)
        let good = hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            || d.starts_with("sha384:")
            || d.starts_with("sha512:");
        if !good {
            let what = match hex {
                Some(h) if h.len() != 64 => format!("has {} characters after `sha256:`", h.len()),
                Some(_) => "has a character that is not a hex digit".to_string(),
                None => "does not start with `sha256:`".to_string(),
            };
            return Some(format!(
                "the digest {d:?} {what}. A digest is `sha256:` followed by the 64 lowercase hex digits of the manifest's SHA-256 (`mlart inspect` and `mlart push` print it), e.g. `{name_tag}@sha256:{}`",
                "0123456789abcdef".repeat(4)
            ));
        }
    }
    None
}

/// Tell a registry reference from a local layout or archive.
///
/// `docker://REF` is a registry; `oci:PATH[:TAG]` and `oci-archive:PATH[:TAG]` are local; an
/// existing path is local; otherwise a string whose first component looks like a host
/// (`localhost`, contains `.` or `:`) is a registry reference, one that can only be a path
/// (absolute, `./…`, ending in `.oci`, `.tar` or `/`) local, and anything else (`ml/iris:1.0`)
/// refused with the three spellings.
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
    if Path::new(s).exists() || (!looks_like_registry(s) && looks_like_path(s)) {
        return Ok(Location::Local {
            path: PathBuf::from(s),
            tag: None,
        });
    }
    if s.contains("//") && !s.contains("://") {
        return Err(Error::usage(format!(
            "{s:?} has an empty component (`//`): write the registry, repository and tag with one `/` between them, e.g. `localhost:5000/ml/iris:1.0.0`"
        )));
    }
    if !looks_like_registry(s) {
        return Err(Error::usage(format!(
            "{s:?} is neither an existing path nor a registry reference (its first component has no `.` or `:` and is not `localhost`), and mlart will not guess. Write it as one of: a registry, `docker://REGISTRY/{s}` or `localhost:5000/{s}`; an OCI layout directory, `oci:DIR[:TAG]` (or a path ending in `.oci` or `/`); an OCI archive, `oci-archive:FILE[:TAG]` (or a path ending in `.tar`)"
        )));
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
        // an empty component: said so, not "no `.` or `:`"
        let e = parse_location("127.0.0.1:5000//ml/iris")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty component"), "{e}");
        assert!(!e.contains("has no `.`"), "{e}");
    }

    /// The ASCII grammar reads every reference as oci-spec does: same parts, same refusals.
    #[test]
    fn references_parse_as_oci_spec_parses_them() {
        let hex = "0123456789abcdef".repeat(8);
        let long_repo = format!("localhost/{}", "a".repeat(256));
        let cases = [
            "busybox".to_string(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "ubuntu:22.04".into(),
            "library/ubuntu".into(),
            "docker.io/ubuntu".into(),
            "index.docker.io/library/ubuntu:1".into(),
            "localhost/a".into(),
            "localhost:5000/ml/iris:1.0.0".into(),
            "127.0.0.1:5000/ml/iris".into(),
            "ghcr.io/org/team/model-x_y.z__w:v1.2-rc_3".into(),
            "Registry.Example.COM/a/b".into(),
            "a-b.example/c--d/e".into(),
            format!("localhost:5000/a/b@sha256:{}", &hex[..64]),
            format!("localhost:5000/a/b:1@sha256:{}", &hex[..64]),
            format!("localhost:5000/a/b@sha512:{hex}"),
            format!("localhost:5000/a/b@sha384:{}", &hex[..96]),
            format!("localhost:5000/a/b@sha256:{}", &hex[..63]),
            format!("localhost:5000/a/b@md5:{}", &hex[..32]),
            format!("localhost:5000/a/b@sha256:{}", &hex[..31]),
            format!("localhost:5000/a/b:{}", "t".repeat(128)),
            format!("localhost:5000/a/b:{}", "t".repeat(129)),
            long_repo,
            String::new(),
            ":tag".into(),
            "localhost:5000/".into(),
            "localhost:5000/a//b".into(),
            "localhost:5000/A/b".into(),
            "localhost:5000/-a".into(),
            "localhost:5000/a:".into(),
            "localhost:5000/a:.x".into(),
            "localhost:5000/a b".into(),
            "localhost:5000/a:b c".into(),
            "-host.example/a".into(),
            "[::1]:5000/a/b".into(),
            "host:port/a".into(),
        ];
        for s in &cases {
            let ours = reference_of(s);
            let theirs: std::result::Result<Reference, _> = s.parse();
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.whole(), b.whole(), "{s:?}");
                    assert_eq!(
                        (a.registry(), a.repository(), a.tag(), a.digest()),
                        (b.registry(), b.repository(), b.tag(), b.digest()),
                        "{s:?}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(*a, b.to_string(), "{s:?}"),
                _ => panic!("{s:?}: ours {ours:?}, oci-spec {theirs:?}"),
            }
        }
        // An uppercase first component without `.`/`:` (so Docker Hub's repository): oci-spec
        // takes it, and prints a reference that does not parse back; refused here as
        // distribution refuses it. (Found by fuzz/fuzz_targets/reference.rs, its corpus has it.)
        for s in ["bbbXjb/0r.c.00r.ipo.0", "Foo/bar:1", "ABC/d"] {
            let theirs: Reference = s.parse().unwrap();
            assert!(theirs.whole().parse::<Reference>().is_err(), "{s:?}");
            assert_eq!(
                reference_of(s).unwrap_err(),
                "repository name must be lowercase"
            );
            let e = parse_reference(s).unwrap_err().to_string();
            assert!(e.contains("must be lowercase"), "{e}");
        }
        assert!(reference_of("Registry.Example.COM/a/b").is_ok());
        // Unicode letters in a tag: oci-spec's `\w` takes them, no registry does (Go's RE2
        // `\w` is ASCII), so they are refused here before any request is made
        assert!("localhost:5000/a:tägs".parse::<Reference>().is_ok());
        assert_eq!(
            reference_of("localhost:5000/a:tägs").unwrap_err(),
            "invalid reference format"
        );
        let e = parse_reference("localhost:5000/a:tägs")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid registry reference"), "{e}");
    }

    /// A refused reference says which part is wrong and how to write it.
    #[test]
    fn refusals_name_the_part_and_the_fix() {
        let msg = |s: &str| parse_reference(s).unwrap_err().to_string();
        let e = msg("localhost:5000/ML/Iris:1.0.0");
        assert!(
            e.contains("repository names must be lowercase")
                && e.contains("\"localhost:5000/ml/iris:1.0.0\""),
            "{e}"
        );
        assert!(!e.contains("invalid reference format"), "{e}");
        let e = msg("Foo/bar:1");
        assert!(
            e.contains("must be lowercase") && e.contains("\"foo/bar:1\""),
            "{e}"
        );
        let e = msg("localhost:5000/repo:bad!tag");
        assert!(
            e.contains("the tag \"bad!tag\" has \"!\"") && e.contains("1 to 128"),
            "{e}"
        );
        let e = msg(&format!("localhost:5000/repo:{}", "t".repeat(129)));
        assert!(e.contains("is 129 characters long"), "{e}");
        let e = msg("localhost:5000/repo:-x");
        assert!(e.contains("starts with `.` or `-`"), "{e}");
        let e = msg("localhost:5000/repo@sha256:abc");
        assert!(
            e.contains("the digest \"sha256:abc\" has 3 characters after `sha256:`")
                && e.contains("64"),
            "{e}"
        );
        let e = msg(&format!("localhost:5000/repo@md5:{}", "a".repeat(32)));
        assert!(e.contains("does not start with `sha256:`"), "{e}");
        // what none of those explains keeps the grammar's word and the general form
        let e = msg("localhost:5000/a b");
        assert!(
            e.contains("invalid reference format") && e.contains("host[:port]"),
            "{e}"
        );
        // through parse_location, as every verb reads it
        let e = parse_location("localhost:5000/ML/Iris:1.0.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be lowercase"), "{e}");
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

    #[test]
    fn ambiguous_names_are_refused_not_guessed() {
        let e = parse_location("ml/iris:1.0.0").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("docker://") && m.contains("oci:DIR") && m.contains("oci-archive:FILE"),
            "{m}"
        );
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        assert!(parse_location("iris").is_err());
        for local in [
            "build/iris.oci",
            "out/",
            "iris.tar",
            "/tmp/x/y",
            "./y",
            "oci:y:1",
        ] {
            assert!(
                matches!(parse_location(local), Ok(Location::Local { .. })),
                "{local}"
            );
        }
        for reg in [
            "localhost/ml/iris",
            "ghcr.io/o/m:1",
            "127.0.0.1:5000/m",
            "docker://ml/iris:1",
        ] {
            assert!(
                matches!(parse_location(reg), Ok(Location::Registry { .. })),
                "{reg}"
            );
        }
    }
}
