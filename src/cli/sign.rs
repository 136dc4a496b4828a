use mlart::interrupt::Cancel;
use mlart::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::args::BundleTarget,
    /// The private key (PEM: PKCS#8, encrypted PKCS#8 with MLART_KEY_PASSWORD, or SEC1).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    registry: super::args::RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    let key = mlart::sign::load_private(&a.key)?;
    let (what, target, sig, added, tag) = match a.bundle.resolve()? {
        super::Target::Registry(r) => {
            let remote = mlart::registry::Remote::new(r, &a.registry.options())?;
            let what = remote.describe();
            let (target, sig, added, tag) = sign_remote(remote, &key)?;
            (what, target, sig, added, tag)
        }
        super::Target::Local(path, tag) => {
            let (target, sig, added) =
                mlart::check::verify::sign_layout(&path, tag.as_deref(), &key)?;
            (path.display().to_string(), target, sig, added, None)
        }
    };
    if json {
        let mut v =
            serde_json::json!({"manifest_digest": target, "signature_digest": sig, "added": added});
        if let Some(t) = tag {
            v["referrers_tag"] = t.into();
        }
        super::print_json(&v);
    } else if added {
        outln!("signed {what} {target}: signature {sig}");
    } else {
        outln!("{what} {target} already has this key's signature ({sig})");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sign the bundle a registry reference names and push the signature as its referrer:
/// (manifest digest, signature digest, added, fallback tag updated).
fn sign_remote(
    remote: mlart::registry::Remote,
    key: &mlart::sign::PrivateKey,
) -> Result<(
    mlart::format::digest::Digest,
    mlart::format::digest::Digest,
    bool,
    Option<String>,
)> {
    use mlart::store::layout::Source;
    let mut src = mlart::store::registry::RegistrySource::new(remote.clone());
    let r = mlart::store::layout::resolve_image(&mut src, None, "sign")?;
    let target = mlart::format::digest::Digest::of(&r.raw);
    let metadata = mlart::store::metadata::read_metadata(&mut src, &r.manifest)?;
    let sig = mlart::sign::oci_signature(
        key,
        &metadata.name,
        mlart::format::media_type::MANIFEST_MEDIA_TYPE,
        &target,
        r.raw.len() as u64,
    );
    let known = src
        .referrers(&target)?
        .iter()
        .any(|d| d.digest().to_string() == sig.digest.as_str());
    let pushed = mlart::store::referrers::push_referrers(
        &remote,
        &target,
        &[mlart::store::referrers::Referrer::from_signature(&sig)],
    )?;
    Ok((target, sig.digest, !known, pushed.tag))
}
