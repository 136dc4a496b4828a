use mlart::format::display::escape;
use mlart::interrupt::Cancel;
use mlart::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An OCI layout or archive, or a registry REF (host[:port]/repository[:tag|@digest]):
    /// checks OCI signatures, model.sig and every digest. Or a directory of pulled files with
    /// a model.sig (checks the files against it).
    target: PathBuf,
    /// A trusted public key (SPKI PEM); repeat for several. Any one satisfies verify. Without
    /// one, only digests and structure are checked, and verify says no signature was checked.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Require a valid OCI signature by every key given.
    #[arg(long)]
    require_all: bool,
    /// Which tag of the layout (default: its only bundle).
    #[arg(long)]
    tag: Option<String>,
    /// Require signed attestations of the bundle: `provenance`, `sbom` (comma-separated):
    /// each must be there, signed by a key given, and about this manifest.
    #[arg(long, value_name = "KINDS", value_delimiter = ',')]
    require: Vec<String>,
    #[command(flatten)]
    registry: super::args::RegistryArgs,
    #[command(flatten)]
    platform: super::args::PlatformArg,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let keys = a
        .keys
        .iter()
        .map(|k| mlart::sign::load_public(k))
        .collect::<Result<Vec<_>>>()?;
    let required = super::attest::parse_required(&a.require)?;
    if a.target.is_dir() && !a.target.join("oci-layout").exists() {
        // pulled files: model.sig against the directory, or, for another tool's artifact
        // (no model.sig), the mlart.json `mlart pull` made of what it wrote
        if let Some(d) = mlart::check::pulled::derived(&a.target)? {
            return derived_dir(&a.target, &d, !keys.is_empty(), json);
        }
        let r = if keys.is_empty() {
            mlart::sign::check_dir_unsigned(&a.target).map(|()| None)
        } else {
            mlart::sign::verify_dir(&a.target, &keys).map(Some)
        };
        let (ok, msg) = match &r {
            Ok(Some(k)) => (
                true,
                format!(
                    "VERIFIED: {}: model.sig verifies with {}; every file matches",
                    a.target.display(),
                    k.display()
                ),
            ),
            Ok(None) => (
                true,
                format!(
                    "NO SIGNATURE CHECKED: {}: every file matches what model.sig lists, but no --key was given, so its signature was not verified (add --key PUB)",
                    a.target.display()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        if json {
            super::print_json(&serde_json::json!({
                "target": a.target, "ok": ok, "signatures_checked": !keys.is_empty(),
                "checked_against": mlart::format::signature::OMS_FILE,
                "message": msg, "summary": msg,
            }));
        } else if ok {
            outln!("{}", escape(&msg));
        }
        return dir_exit(r.map(|_| ()), json);
    }
    // A registry REF names its manifest itself: no tag.
    let (mut src, tag): (Box<dyn mlart::store::layout::Source>, _) =
        match super::target(&a.target, a.tag.as_deref())? {
            super::Target::Registry(r) => {
                let remote = mlart::registry::Remote::new(r, &a.registry.options())?;
                (
                    Box::new(mlart::store::registry::RegistrySource::new(remote)),
                    None,
                )
            }
            super::Target::Local(path, tag) => (mlart::store::layout::open(&path)?, tag),
        };
    let tag = tag.as_deref();
    let platform = a.platform.parse()?;
    let mut r = mlart::check::verify::verify_platform(
        src.as_mut(),
        tag,
        platform.as_ref(),
        &keys,
        a.require_all,
    )?;
    // --require: the attestations of the manifest verified.
    let attestations = match required.is_empty() {
        true => None,
        false => {
            let digest =
                mlart::format::digest::Digest::parse(&r.manifest_digest).map_err(Error::Input)?;
            let found = mlart::attest::read(src.as_ref(), &digest, &keys)?;
            let problems = mlart::attest::referrer::requirement_problems(&found, &required);
            r.ok &= problems.is_empty();
            r.problems.extend(problems);
            Some(found)
        }
    };
    if json {
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        if let Some(found) = &attestations {
            v["attestations"] = super::attest::to_json(found);
        }
        super::print_json(&v);
    } else {
        use mlart::check::verify::SignatureStatus as S;
        if let Some(found) = &attestations {
            super::attest::print(found, true);
        }
        for s in &r.oci_signatures {
            let why = escape(s.reason.as_deref().unwrap_or(""));
            match s.status {
                S::Valid => outln!(
                    "  OCI signature {}: valid ({})",
                    s.digest,
                    escape(s.key.as_deref().unwrap_or(""))
                ),
                // (the reason names the signer and says it is not a key given, once)
                S::OtherKey => outln!("  OCI signature {}: {why}", s.digest),
                S::Invalid => outln!("  OCI signature {}: INVALID ({why})", s.digest),
                S::NotChecked => outln!(
                    "  OCI signature {}: present, not checked (no --key)",
                    s.digest
                ),
            }
        }
        match &r.model_signature {
            Some(s) => match s.status {
                S::Valid => outln!(
                    "  model.sig: valid ({})",
                    escape(s.key.as_deref().unwrap_or(""))
                ),
                S::OtherKey => outln!("  model.sig: {}", escape(s.reason.as_deref().unwrap_or(""))),
                S::Invalid => outln!(
                    "  model.sig: INVALID ({})",
                    escape(s.reason.as_deref().unwrap_or(""))
                ),
                S::NotChecked => outln!(
                    "  model.sig: present, lists every file; signature not checked (no --key)"
                ),
            },
            None => outln!("  model.sig: none in this bundle"),
        }
        for k in &r.keys {
            outln!("  key {}", escape(&k.message));
        }
        outln!(
            "  {} blobs and {} files match their digests",
            r.blobs_verified,
            r.files_verified
        );
        if r.ok {
            outln!("{}", escape(&r.summary));
        }
    }
    if r.ok {
        Ok(ExitCode::SUCCESS)
    } else if json {
        Ok(match r.integrity {
            true => ExitCode::from(mlart::error::Kind::Integrity.exit_code()),
            false => super::check_failed(),
        })
    } else if r.integrity {
        Err(Error::integrity(format!(
            "{} {} failed verification: {}",
            r.target,
            r.manifest_digest,
            r.problems.join("; ")
        )))
    } else {
        Err(Error::Check(format!(
            "{} {} failed verification: {}",
            r.target,
            r.manifest_digest,
            r.problems.join("; ")
        )))
    }
}

/// A pulled directory's result as verify's exit: a failed check in `--json` is the JSON
/// printed (exit 1), else the error.
fn dir_exit(r: Result<()>, json: bool) -> Result<ExitCode> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ Error::Check(_)) if json => Ok(ExitCode::from(e.exit_code())),
        Err(e) => Err(e),
    }
}

/// `verify DIR` of a folder pulled from another tool's artifact: its files against the
/// mlart.json the pull made (`d` says from what). Nothing signs that list: with `--key` the
/// folder is refused (exit 1), without, verify says no signature was checked.
fn derived_dir(
    dir: &std::path::Path,
    d: &mlart::format::metadata::Derived,
    keys: bool,
    json: bool,
) -> Result<ExitCode> {
    let made = format!(
        "its mlart.json was made by `{}` from the {} manifest {} ({}), another tool's artifact",
        d.by, d.dialect, d.manifest, d.reference
    );
    let r = match keys {
        true => Err(Error::Check(format!(
            "{}: no model.sig: {made}, which carries none, so no signature covers these files. Verify the artifact itself (`mlart verify {} --key PUB`, its OCI signature), or the files without --key",
            dir.display(),
            d.reference
        ))),
        false => mlart::check::pulled::check(dir),
    };
    let (ok, msg) = match &r {
        Ok(()) => (
            true,
            format!(
                "NO SIGNATURE CHECKED: {}: every file matches the list of {made}; nothing signs that list",
                dir.display()
            ),
        ),
        Err(e) => (false, e.to_string()),
    };
    if json {
        super::print_json(&serde_json::json!({
            "target": dir, "ok": ok, "signatures_checked": false,
            "checked_against": mlart::format::metadata::METADATA_FILE, "derived": d,
            "message": msg, "summary": msg,
        }));
    } else if ok {
        outln!("{}", escape(&msg));
    }
    dir_exit(r, json)
}
