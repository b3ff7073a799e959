//! Every integration test of the host in one binary, so that wasmtime and the rest of orch are linked once rather than
//! once per file. Modules by subject; `support` holds what they share (the tiny test image, the `orch` binary).

mod bench;
mod cli;
mod examples;
mod fault;
mod field_plugins;
mod hostile;
mod lifecycle;
mod network;
mod newcomer;
mod parallel;
mod plan_golden;
mod plugin_runtime;
mod pool;
mod reaper;
mod registry;
mod support;
mod swarm;
