//! Where blobs and manifests live: the OCI layout directory, the OCI archive, the registry (via
//! `registry`), the local blob cache; and the one graph copy between any two of them.

pub mod base;
pub mod layout;
pub mod metadata;
pub mod push;
pub mod referrers;
pub mod registry;
pub mod registry_sink;
