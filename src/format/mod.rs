//! The documents of a bundle and the values every stage shares: digests, references, media
//! types, annotation keys, the mlart.json metadata, canonical JSON. A leaf: it uses nothing
//! of the crate but `error`.

pub mod annotations;
pub mod attestation;
pub mod compression;
pub mod dialect;
pub mod digest;
pub mod display;
pub mod feature_schema;
pub mod json;
pub mod lineage;
pub mod media_type;
pub mod metadata;
pub mod modelpack;
pub mod platform;
pub mod reference;
pub mod signature;
pub mod test_data;
pub mod units;
pub mod validation;
