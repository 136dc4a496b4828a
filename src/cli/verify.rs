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
    /// A trusted public key (SPKI PEM); repeat for several. Any one satisfies verify.
    #[arg(long = "key", required = true)]
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
    registry: super::push::RegistryArgs,
    #[command(flatten)]
    platform: super::push::PlatformArg,
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
        // pulled files: model.sig against the directory
        let r = mlart::sign::verify_dir(&a.target, &keys);
        let (ok, msg) = match &r {
            Ok(k) => (
                true,
                format!(
                    "{}: model.sig verifies with {}; every file matches",
                    a.target.display(),
                    k.display()
                ),
            ),
            Err(e) => (false, e.to_string()),
        };
        if json {
            super::print_json(&serde_json::json!({"target": a.target, "ok": ok, "message": msg}));
        } else if ok {
            outln!("{msg}");
        }
        return match r {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(e @ Error::Check(_)) if json => Ok(ExitCode::from(e.exit_code())),
            Err(e) => Err(e),
        };
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
        if let Some(found) = &attestations {
            super::attest::print(found, true);
        }
        for s in &r.oci_signatures {
            match (&s.key, &s.reason) {
                (Some(k), _) => outln!("  OCI signature {}: valid ({k})", s.digest),
                (None, Some(why)) => outln!("  OCI signature {}: INVALID ({why})", s.digest),
                _ => {}
            }
        }
        match &r.model_signature {
            Some(s) if s.valid => {
                outln!("  model.sig: valid ({})", s.key.as_deref().unwrap_or(""))
            }
            Some(s) => outln!(
                "  model.sig: INVALID ({})",
                s.reason.as_deref().unwrap_or("")
            ),
            None => outln!("  model.sig: none in this bundle"),
        }
        outln!(
            "  {} blobs and {} files match their digests",
            r.blobs_verified,
            r.files_verified
        );
        if r.ok {
            outln!("verified {} {}", r.target, r.manifest_digest);
        }
    }
    if r.ok {
        Ok(ExitCode::SUCCESS)
    } else if json {
        Ok(super::check_failed())
    } else {
        Err(Error::Check(format!(
            "{} {} failed verification: {}",
            r.target,
            r.manifest_digest,
            r.problems.join("; ")
        )))
    }
}
