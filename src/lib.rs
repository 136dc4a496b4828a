//! mlart: turn the artifacts of an ML project into reproducible OCI images and artifacts.
//!
//! The pipeline, one module area per stage (arrows point down it; DESIGN.md §10):
//!
//! ```text
//! spec (mlart.yaml) -> build (collect, layers, config, manifest) -> store (layout, archive,
//! registry; one graph copy) -> sign / check (validate, gate, diff, verify)
//! ```
//!
//! `format` holds the documents every stage shares and depends on nothing else of the crate.
//! The library never prints and never exits; the binary (`main.rs`, `cli/`) does.

pub mod attest;
pub mod build;
pub mod check;
pub mod error;
pub mod extract;
pub mod format;
pub mod import;
pub mod interrupt;
pub mod offload;
pub mod registry;
/// `mlart serve` (ONNX Runtime: the `validate` feature).
#[cfg(feature = "validate")]
pub mod serve;
pub mod sign;
pub mod spec;
pub mod store;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
