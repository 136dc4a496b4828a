//! Judging a bundle: ONNX validation, release gates, diffs, signature and digest verification,
//! inspection. These read bundles; they never build one.

pub mod attestations;
pub mod gate;
pub mod inspect;
pub mod pulled;
pub mod validate;
pub mod verify;
