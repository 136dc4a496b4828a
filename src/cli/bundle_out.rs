//! Where `mlart bundle` puts its result besides a plain `-o PATH`: `-o oci:DIR:TAG` (added to
//! the layout there, its other tags kept), `-o oci-archive:FILE[:TAG]`, and `--push REF
//! --gate` (built in a temp layout, gated, and pushed only when the gate passes).

use super::args::{RegistryArgs, UploadArgs};
use mlart::check::gate::GateReport;
use mlart::format::reference::{self, Location, Reference};
use mlart::store::layout_tags::Placed;
use mlart::{Error, Result};
use std::path::{Path, PathBuf};

/// `-o oci:DIR[:TAG]` or `-o oci-archive:FILE[:TAG]`.
pub struct Named {
    pub path: PathBuf,
    pub archive: bool,
    pub tag: Option<String>,
}

/// `-o` in the `oci:`/`oci-archive:` form (None: a plain path, or no `-o`). Its tag and
/// `--tag` must agree.
pub fn named(output: Option<&Path>, tag: Option<&str>) -> Result<Option<Named>> {
    let Some(s) = output.and_then(Path::to_str) else {
        return Ok(None);
    };
    let Some(archive) = reference::local_form(s) else {
        return Ok(None);
    };
    let Location::Local { path, tag: named } = reference::parse_location(s)? else {
        return Ok(None);
    };
    if let (Some(t), Some(n)) = (tag, &named) {
        if t != n {
            return Err(Error::usage(format!(
                "-o {s} tags the bundle {n:?} and --tag says {t:?}: give the tag once (`-o {}:{}:{t}`, or drop --tag)",
                if archive { "oci-archive" } else { "oci" },
                path.display()
            )));
        }
    }
    Ok(Some(Named {
        path,
        archive,
        tag: named,
    }))
}

/// The tags a layout or archive at `path` holds besides `tag` (those a plain `-o` replaces),
/// read before it is replaced.
pub fn held_besides(path: &Path, tag: &str) -> Placed {
    Placed {
        replaced_tags: mlart::store::layout_tags::held_besides(path, tag),
        ..Placed::default()
    }
}

/// `bundle --push REF --gate`: the registry reference the built bundle goes to (REF, tagged
/// `tag` when it names no tag), checked before anything is built.
pub fn push_reference(r: &str, tag: &str) -> Result<String> {
    let (reference, explicit) = reference::parse_reference(r)?;
    Ok(if explicit {
        reference.whole()
    } else {
        Reference::with_tag(
            reference.registry().into(),
            reference.repository().into(),
            tag.to_string(),
        )
        .whole()
    })
}

/// A temp folder for the layout `bundle --push --gate` gates before pushing: in the current
/// folder, named so that a bundle's walk leaves it out and the next run removes it if this one
/// is killed.
pub fn gate_dir(name: &str) -> Result<tempfile::TempDir> {
    let here = Path::new(".");
    mlart::interrupt::temp_dir_in(here, "tmp", &format!("gate-{name}")).map_err(|e| Error::Io {
        context: "creating a temp directory in the current folder".into(),
        source: e,
    })
}

/// Gate the layout at `layout` (tagged `tag`) with the bundle's spec file; Ok(None) when it
/// passed, else what `push --gate` returns on a failed gate.
pub fn gate(
    flags: &super::gate::GateFlags,
    spec: &Path,
    layout: &Path,
    tag: &str,
    reg: &RegistryArgs,
    json: bool,
) -> Result<Option<std::process::ExitCode>> {
    let target = format!("oci:{}:{tag}", layout.display());
    let report: GateReport = super::gate::evaluate(&flags.request(&target, spec), reg)?;
    if !report.passed {
        return super::gate::refuse_push(&report, json).map(Some);
    }
    if !json {
        eprintln!("gate passed ({} checks)", report.checks.len());
    }
    Ok(None)
}

/// Push the gated layout to `reference` as `push` does.
pub fn push_gated(
    layout: &Path,
    tag: &str,
    reference: &str,
    reg: &RegistryArgs,
    upload: &UploadArgs,
    immutable: bool,
    json: bool,
) -> Result<super::push::Summary> {
    let src = Location::Local {
        path: layout.to_path_buf(),
        tag: Some(tag.to_string()),
    };
    super::push::push_with_progress(&src, reference, reg, upload, immutable, json)
}
