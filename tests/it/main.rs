//! Integration tests: the `mlart` binary on real projects, checked by what it writes and by
//! real third-party tools (skopeo, umoci, the OCI schema validator).

mod attest;
mod attest_carry;
mod attest_scale;
mod base;
mod bundle;
mod cache;
mod compat;
mod display;
mod explore;
mod foreign_pull;
mod gate;
mod hostile_layers;
mod httpproxy;
mod import;
mod interop;
mod layout_tags;
mod messages2;
mod modelpack;
mod modelpack_loose;
mod packaging;
mod recompressed;
mod registry;
mod registry_sign;
mod resume_bundle;
mod resume_push;
mod scale;
mod serve;
mod sign;
mod support;
mod token_faults;
mod validate;
