//! Where blobs and manifests live: the OCI layout directory, the OCI archive, the registry (via
//! `registry`), the local blob cache; and the one graph copy between any two of them.

pub mod layout;
pub mod metadata;
