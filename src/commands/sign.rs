use mlart::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// An OCI layout directory made by `mlart bundle`.
    target: PathBuf,
    /// The private key (PEM: PKCS#8, encrypted PKCS#8 with MLART_KEY_PASSWORD, or SEC1).
    #[arg(long)]
    key: PathBuf,
    /// Which tag of the layout (default: its only bundle).
    #[arg(long)]
    tag: Option<String>,
}

pub fn run(a: Args, json: bool) -> Result<ExitCode> {
    let key = mlart::sign::load_private(&a.key)?;
    let (target, sig, added) = mlart::verify::sign_layout(&a.target, a.tag.as_deref(), &key)?;
    if json {
        super::print_json(
            &serde_json::json!({"manifest_digest": target, "signature_digest": sig, "added": added}),
        );
    } else if added {
        println!("signed {} {target}: signature {sig}", a.target.display());
    } else {
        println!(
            "{} {target} already has this key's signature ({sig})",
            a.target.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
