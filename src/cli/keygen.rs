use mlart::interrupt::Cancel;
use mlart::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM).
    #[arg(short, long, value_name = "PREFIX")]
    output: PathBuf,
}

pub fn run(a: Args, json: bool, _cancel: &Cancel) -> Result<ExitCode> {
    let (k, p) = mlart::sign::keygen(&a.output)?;
    let public = mlart::sign::load_public(&p)?;
    let (hint, keyid) = (public.hint, public.keyid);
    if json {
        super::print_json(&serde_json::json!({
            "private_key": k, "public_key": p, "key_hint": hint, "key_id": keyid,
        }));
    } else {
        outln!(
            "wrote {} (private, keep it secret) and {} (public)",
            k.display(),
            p.display()
        );
        outln!("  ECDSA P-256, key hint {hint}");
        outln!("  key id {keyid} (the keyid of its attestations' DSSE signatures)");
    }
    Ok(ExitCode::SUCCESS)
}
