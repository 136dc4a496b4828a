//! OCI platforms (`os/architecture[/variant]`) and how a bundle records its base image.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parse `os/arch[/variant]` (`x86_64`, `aarch64`, `armhf` and the like are understood).
    pub fn parse(s: &str) -> Result<Platform> {
        let bad = || {
            Error::input(format!(
                "--platform {s:?} is not os/arch[/variant]: use e.g. linux/amd64, linux/arm64 or linux/arm/v7 (with --base also `all`)"
            ))
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len())
            || parts.iter().any(|p| {
                p.is_empty()
                    || !p
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            })
        {
            return Err(bad());
        }
        let os = parts[0].to_ascii_lowercase();
        let (architecture, alias_variant) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = parts
            .get(2)
            .map(|v| v.to_ascii_lowercase())
            .or(alias_variant);
        Ok(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// The Linux platform of the machine mlart runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            "loongarch64" => "loong64",
            other => other,
        };
        let (architecture, variant) = normalize_arch(arch);
        Platform {
            os: "linux".into(),
            architecture,
            variant,
        }
    }

    /// The variant with the defaults filled in (arm64 is v8, arm v7, amd64 v1), as containerd
    /// compares them.
    fn normalized_variant(&self) -> Option<String> {
        let v = self.variant.as_deref();
        match (self.architecture.as_str(), v) {
            ("arm64", None | Some("8") | Some("v8")) => Some("v8".into()),
            ("arm", None | Some("7")) => Some("v7".into()),
            ("arm", Some("6")) => Some("v6".into()),
            ("arm", Some("5")) => Some("v5".into()),
            ("amd64", None | Some("v1")) => Some("v1".into()),
            (_, v) => v.map(str::to_string),
        }
    }

    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && self.normalized_variant() == other.normalized_variant()
    }

    /// From an OCI/Docker `platform` object or an image config (`os`, `architecture`,
    /// `variant`). None when os or architecture is missing.
    pub fn from_json(v: &Value) -> Option<Platform> {
        let os = v.get("os")?.as_str()?.to_string();
        let architecture = v.get("architecture")?.as_str()?.to_string();
        if os.is_empty() || architecture.is_empty() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant: v
                .get("variant")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    /// Attestation manifests (BuildKit) are listed as unknown/unknown.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

/// Go's names for architectures, from Rust's and the usual aliases.
fn normalize_arch(a: &str) -> (String, Option<String>) {
    match a {
        "x86_64" | "x86-64" => ("amd64".into(), None),
        "aarch64" => ("arm64".into(), Some("v8".into())),
        "x86" | "i386" | "i686" => ("386".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        other => (other.to_string(), None),
    }
}

/// Which platform(s) of a base to build on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformChoice {
    /// The host's Linux platform (a single-image base is taken whatever its platform).
    Host,
    One(Platform),
    /// Every platform of an index base (one image per platform, and an index).
    All,
}

impl PlatformChoice {
    /// `--platform` with `--base`: none (the host), `all`, or os/arch[/variant].
    pub fn parse(s: Option<&str>) -> Result<PlatformChoice> {
        match s {
            None => Ok(PlatformChoice::Host),
            Some("all") => Ok(PlatformChoice::All),
            Some(p) => Platform::parse(p).map(PlatformChoice::One),
        }
    }
}

/// How the bundle's metadata document (`mlart.json`) records its base: the base image's
/// manifest digest and platform — never the reference as spelled, so `busybox:1.36` and
/// `busybox@sha256:…` give the same bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    pub digest: String,
    pub platform: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(p.matches(&Platform::parse("linux/arm64/v8").unwrap()));
        assert!(p.matches(&Platform::parse("linux/aarch64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/x86_64").unwrap()));
        assert!(!Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/amd64/v3").unwrap()));
        assert!(Platform::parse("linux/arm")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v7").unwrap()));
        assert!(!Platform::parse("linux/arm/v6")
            .unwrap()
            .matches(&Platform::parse("linux/arm/v7").unwrap()));
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "linux/am d64",
            "",
        ] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(Platform::host().to_string(), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(Platform::host().to_string(), "linux/arm64/v8");
        assert_eq!(PlatformChoice::parse(None).unwrap(), PlatformChoice::Host);
        assert_eq!(
            PlatformChoice::parse(Some("all")).unwrap(),
            PlatformChoice::All
        );
    }
}
