//! The documents of a bundle and the values every stage shares: digests, references, media
//! types, annotation keys, the mlart.json metadata, canonical JSON. A leaf: it uses nothing
//! of the crate but `error`.

pub mod digest;
pub mod json;
pub mod reference;
