//! Making a bundle: collect the files of a spec, write layers (tar or raw, compressed and hashed
//! in one pass), then config and manifest, into a store sink that it never needs to know.

mod ahead;
pub mod base;
pub mod bundle;
mod captured;
pub mod collect;
pub mod convert;
mod dual;
pub mod entries;
pub mod envinfo;
pub mod filelist;
mod filters;
mod folder;
pub mod layer;
pub mod layers;
mod metadoc;
pub mod metrics;
pub mod modelpack;
mod omsdoc;
pub mod pgzip;
pub mod pipeline;
mod resume;
mod samples;
pub mod schema;
mod source;
mod unreadable;
mod walk;
