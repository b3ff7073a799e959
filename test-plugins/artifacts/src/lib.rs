//! Paths of test plugin components, built by this crate's build script (tests only).
include!(concat!(env!("OUT_DIR"), "/paths.rs"));
