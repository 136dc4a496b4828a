//! mlart: turn the artifacts of an ML project into reproducible OCI images and artifacts.
//!
//! Data flows one way: `spec` (mlart.yaml) -> `collect` (files, kinds, safety checks) ->
//! `layer` (tar, compress, hash in one pass) -> `bundle` (metadata, config, manifest) ->
//! a sink (`layout`). The library never prints and never exits; `main.rs` does.

pub mod base;
pub mod bundle;
pub mod collect;
pub mod digest;
pub mod envinfo;
pub mod error;
pub mod extract;
pub mod gate;
pub mod init;
pub mod inspect;
pub mod interrupt;
pub mod json;
pub mod layer;
pub mod layout;
pub mod metrics;
pub mod offload;
pub mod pgzip;
pub mod reference;
pub mod registry;
pub mod schema;
pub mod sign;
pub mod spec;
pub mod validate;
pub mod verify;

pub use error::{Error, Result};
