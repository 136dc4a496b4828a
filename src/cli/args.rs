//! The argument groups that several verbs flatten in: how to reach registries, which
//! platform of an index to read; and what the registry flags do for the library.

use mlart::build::pipeline;
use mlart::interrupt::Cancel;
use mlart::registry;
use mlart::store::base::Base;
use mlart::Result;
use std::path::PathBuf;

/// How to reach registries: flattened into every verb that takes a registry REF.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP (no TLS) to the registry. Loopback registries (localhost, 127.x,
    /// [::1]) use HTTP without this flag unless --ca-file is given.
    #[arg(long)]
    pub plain_http: bool,
    /// A PEM file of extra CA certificates to trust for the registry (repeatable).
    #[arg(long = "ca-file", value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// The command's cancellation token (set by `run` from `main`'s; not a flag).
    #[arg(skip)]
    pub cancel: Cancel,
}

/// How `push`, `copy` and `bundle --push` upload blobs.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct UploadArgs {
    /// Upload a blob larger than SIZE in chunks of SIZE, one PATCH each (e.g. 16M, 256M; at
    /// least 1M; default 64M). Where the registry keeps a session at its last whole request,
    /// an interrupted push loses at most one chunk; a registry that caps request bodies gets
    /// requests it accepts. A blob up to SIZE goes in one request: a SIZE larger than every
    /// blob (1T) never chunks.
    #[arg(long, value_name = "SIZE", value_parser = registry::parse_chunk_size)]
    pub chunk_size: Option<u64>,
}

impl UploadArgs {
    /// With the registry settings: upload sessions are recorded in the cache
    /// (`<cache>/uploads`), so that the next push continues an interrupted one.
    pub fn options(&self, reg: &RegistryArgs) -> registry::Options {
        registry::Options {
            upload: registry::UploadOptions {
                chunk_size: self.chunk_size,
                sessions: mlart::extract::pull::default_cache().map(|c| c.join("uploads")),
            },
            ..reg.options()
        }
    }
}

/// The bundle `sign` and `attest` add to: a layout, an archive or a registry REF, and the tag.
#[derive(clap::Args, Clone, Debug)]
pub struct BundleTarget {
    /// An OCI layout directory or archive (`.tar`, `oci-archive:FILE[:TAG]`) made by `mlart
    /// bundle`, or a bundle in a registry (host[:port]/repository[:tag|@digest]). An archive
    /// is written again beside itself and renamed over the old file.
    pub target: PathBuf,
    /// Which tag of the layout (default: its only bundle).
    #[arg(long)]
    pub tag: Option<String>,
}

impl BundleTarget {
    /// Where it is: `super::target` of the path and tag.
    pub fn resolve(&self) -> Result<super::Target> {
        super::target(&self.target, self.tag.as_deref())
    }
}

/// `--platform` of the reading verbs: which image of a multi-platform index to read.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PlatformArg {
    /// From a multi-platform index (`bundle --platform all`): the image of this platform,
    /// os/arch[/variant] (default: this machine's Linux platform, or the index's only image).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

impl PlatformArg {
    pub fn parse(&self) -> mlart::Result<Option<mlart::format::platform::Platform>> {
        self.platform
            .as_deref()
            .map(mlart::format::platform::Platform::parse)
            .transpose()
    }
}

impl RegistryArgs {
    pub fn options(&self) -> registry::Options {
        registry::Options {
            plain_http: self.plain_http,
            ca_files: self.ca_file.clone(),
            cancel: self.cancel.clone(),
            upload: registry::UploadOptions::default(),
        }
    }
}

/// A base's layers reach the bundle with the registry settings of the command line.
impl pipeline::BaseFetch for RegistryArgs {
    fn copy_to_layout(
        &self,
        base: &Base,
        w: &mut mlart::store::layout::LayoutWriter,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        base.copy_into(w, &self.options(), progress)
    }

    fn copy_to_registry(
        &self,
        base: &Base,
        sink: &mut mlart::store::registry_sink::RegistrySink,
    ) -> Result<()> {
        sink.copy_blobs(&base.blobs(), &base.location, &self.options())
    }
}

/// `--push REF`: the registry sink, tagged with the spec's version when REF has no tag. It
/// uploads as `push` does (`--chunk-size`, sessions recorded in the cache), so that the next
/// run after an interruption sends only what the registry lacks.
pub fn registry_sink(
    r: &str,
    tag: &str,
    reg: &RegistryArgs,
    upload: &UploadArgs,
) -> Result<mlart::store::registry_sink::RegistrySink> {
    use mlart::format::reference::{self, Reference};
    let (reference, explicit) = reference::parse_reference(r)?;
    let reference = if explicit {
        reference
    } else {
        Reference::with_tag(
            reference.registry().into(),
            reference.repository().into(),
            tag.to_string(),
        )
    };
    let remote = mlart::registry::Remote::new(reference, &upload.options(reg))?;
    Ok(mlart::store::registry_sink::RegistrySink::new(remote))
}
