//! The plugin author's path, as library calls: [`scaffold`] makes a new plugin crate from the template, [`test`]
//! checks what a plugin decides for a compose file against an expected file. `orch plugin new` and `orch plugin
//! test` are these calls plus what they print.

pub mod scaffold;
pub mod test;
