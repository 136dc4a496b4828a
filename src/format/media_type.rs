//! Media types mlart writes and reads.

pub const ARTIFACT_TYPE: &str = "application/vnd.mlart.bundle.v1+json";

pub const METADATA_MEDIA_TYPE: &str = "application/vnd.mlart.bundle.config.v1+json";

pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// index.json and manifests larger than this are refused (registries use 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Largest base image config accepted.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
