//! Annotation keys mlart writes and reads.

pub const KIND_ANNOTATION: &str = "ai.mlart.kind";

pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest annotation (and config label) naming the base image's manifest.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";
