//! `mlart copy SRC DST`: registry ref, layout directory or archive, in any combination.

use super::args::{RegistryArgs, UploadArgs};
use super::push;
use mlart::format::digest::Digest;
use mlart::format::reference::{self, Location};
use mlart::interrupt::Cancel;
use mlart::store::layout_tags::Placed;
use mlart::Result;
use std::path::Path;
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
            let form = reference::local_form(&a.destination);
            // `oci:DIR:TAG` adds to the layout there; a plain path replaces it
            let add = form == Some(false) && tag.is_some();
            let done = mlart::store::push::copy_to_local(
                &src,
                &path,
                form,
                tag.as_deref(),
                add,
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
            let (digest, tag, placed) = (done.digest, done.tag, done.placed);
            if json {
                let mut v = serde_json::json!({
                    "source": src.to_string(),
                    "destination": path.display().to_string(),
                    "tag": tag,
                    "digest": digest.to_string(),
                    "seconds": seconds,
                });
                placed_json(&mut v, &placed);
                super::print_json(&v);
            } else {
                outln!(
                    "copied {src} to {}:{}",
                    path.display(),
                    mlart::format::display::escape(&tag)
                );
                outln!("  manifest {digest} in {seconds:.2}s");
                print_placed(&path, &tag, &digest, &placed);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The fields of `placed` in `copy --json` and `bundle --json`, each only when it says
/// something: `kept_tags` (added to a layout), `moved_from`, `replaced_tags`.
pub(super) fn placed_json(v: &mut serde_json::Value, placed: &Placed) {
    if !placed.kept_tags.is_empty() {
        v["kept_tags"] = serde_json::json!(placed.kept_tags);
    }
    if let Some(m) = &placed.moved_from {
        v["moved_from"] = serde_json::json!(m);
    }
    if !placed.replaced_tags.is_empty() {
        v["replaced_tags"] = serde_json::json!(placed.replaced_tags);
    }
}

/// What writing `tag` to `path` did to what was there: the tags kept beside it, the tag
/// moved, and (a warning) the tags lost with a replaced layout or archive.
pub(super) fn print_placed(path: &Path, tag: &str, digest: &Digest, placed: &Placed) {
    use mlart::format::display::{escape, escape_path};
    let list = |tags: &[String]| {
        tags.iter()
            .map(|t| escape(t).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !placed.kept_tags.is_empty() {
        outln!(
            "  added to {}, which also holds {}",
            escape_path(path),
            list(&placed.kept_tags)
        );
    }
    if let Some(prev) = &placed.moved_from {
        outln!("  tag {} moved from {prev} to {digest}", escape(tag));
    }
    if !placed.replaced_tags.is_empty() {
        let p = escape_path(path);
        let how = if path.is_dir() {
            format!("write oci:{p}:TAG to add a tag instead")
        } else {
            "an archive is written whole: keep several tags in a layout, written as oci:DIR:TAG"
                .to_string()
        };
        eprintln!(
            "warning: replaced {p}, which also held {}: {how}",
            list(&placed.replaced_tags)
        );
    }
}
