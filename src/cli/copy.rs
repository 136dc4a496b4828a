//! `mlart copy SRC DST`: registry ref, layout directory or archive, in any combination.

use super::args::{RegistryArgs, UploadArgs};
use super::push;
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::Result;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// From: a registry REF, a layout directory or an archive (`oci:DIR[:TAG]`,
    /// `oci-archive:FILE[:TAG]`, `docker://REF` also work).
    pub(super) source: String,
    /// To: a registry REF, a layout directory or an archive (a path ending in .tar, or
    /// `oci-archive:FILE[:TAG]` whatever its name; `oci:DIR[:TAG]` is always a directory).
    pub(super) destination: String,
    /// Re-express the bundle in another form (image, artifact, modelpack; also from another
    /// tool's ModelPack or KitOps ModelKit): the same files, a new manifest digest. Signatures
    /// of the source do not carry over: sign the copy with --sign.
    #[arg(long, value_enum)]
    pub(super) format: Option<super::bundle::FormArg>,
    /// With --format: sign the converted bundle with this private key (PEM), as `bundle
    /// --sign` does: a new OMS model.sig over the same files and an OCI signature of the new
    /// manifest. (A copy without --format keeps the source's signatures: it needs none.)
    #[arg(long, value_name = "KEY", requires = "format")]
    pub(super) sign: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(super) upload: UploadArgs,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

pub fn run(mut a: Args, json: bool, cancel: &Cancel) -> Result<ExitCode> {
    a.registry.cancel = cancel.clone();
    if a.format.is_some() {
        return super::convert::run(&a, json, cancel);
    }
    let started = Instant::now();
    let src = reference::parse_location(&a.source)?;
    match reference::parse_location(&a.destination)? {
        Location::Registry { .. } => {
            let s = push::push_with_progress(
                &src,
                &a.destination,
                &a.registry,
                &a.upload,
                false,
                json,
            )?;
            push::print_summary(&s, json);
        }
        Location::Local { path, tag } => {
            let pb = super::progress_bar(0, json);
            pb.set_message(format!("copying {src}"));
            let (digest, tag) = mlart::store::push::copy_to_local(
                &src,
                &path,
                reference::local_form(&a.destination),
                tag.as_deref(),
                &a.registry.options(),
                &|_, ev| {
                    if let mlart::store::BlobEvent::Bytes(n) = ev {
                        // the total is not known ahead: what has been copied so far (no bar
                        // until something is)
                        super::set_total(&pb, pb.length().unwrap_or(0) + n, json);
                        pb.inc(n)
                    }
                },
            )?;
            pb.finish_and_clear();
            let seconds = started.elapsed().as_secs_f64();
            if json {
                super::print_json(&serde_json::json!({
                    "source": src.to_string(),
                    "destination": path.display().to_string(),
                    "tag": tag,
                    "digest": digest.to_string(),
                    "seconds": seconds,
                }));
            } else {
                outln!("copied {src} to {}:{tag}", path.display());
                outln!("  manifest {digest} in {seconds:.2}s");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
