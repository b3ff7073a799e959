//! The built-in policy plugins, as the component bytes `build.rs` compiled from `plugins/*`.

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
