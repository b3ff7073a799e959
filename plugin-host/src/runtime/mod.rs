//! The sandbox plugins run in: wasmtime components with a deny-all WASI (no preopened files, no sockets, no
//! environment or arguments, a fixed clock, seeded randomness, captured stdout/stderr), a memory limit, a fuel budget
//! and a wall-clock deadline per call, and a fresh instance for every call. Compiled components are cached on disk,
//! keyed by the component's hash and the engine's compatibility hash.
//!
//! [`bindings`]: the WIT bindings of each API version the host speaks; [`sandbox`]: what a plugin's store may do;
//! [`cache`]: the sealed compile cache; [`call`]: one call on a fresh instance, its failures classified.

mod bindings;
mod cache;
mod call;
mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine};

use super::PluginError;
use bindings::{Exports, Exports01, Exports02, Indices};
pub use bindings::{types, wit, wit01, wit02};
pub use call::CallOutput;
use sandbox::{EPOCH_TICK, add_sandboxed_wasi, deny_files_and_sockets};
pub use sandbox::{State, WaitRefused};
use wit::exports::orch::policy as ex;

/// The `orch:policy` version this host implements; plugins built against it or any version in [`OLDER_APIS`] run.
pub const API_VERSION: &str = "0.3.0";
/// Older minor versions whose plugins still run (0.x minors are not semver-compatible, so each is bound on its own).
pub const OLDER_APIS: &[&str] = &["0.2", "0.1"];

/// Whether a plugin built against `version` can run here: semver-compatible (Cargo's caret rule: same major, and
/// same minor while 0.x) with the current version or one of [`OLDER_APIS`]. A pre-release of a compatible version is
/// compatible too: its build metadata and pre-release tag say nothing about the interface.
pub fn api_compatible(version: &str) -> bool {
    let Ok(mut found) = semver::Version::parse(version) else { return false };
    found.pre = semver::Prerelease::EMPTY;
    found.build = semver::BuildMetadata::EMPTY;
    let current = API_VERSION.rsplit_once('.').map(|(mm, _)| mm).unwrap_or(API_VERSION);
    std::iter::once(current).chain(OLDER_APIS.iter().copied()).any(|v| semver::VersionReq::parse(&format!("^{v}")).is_ok_and(|req| req.matches(&found)))
}

/// Per-call limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub fuel: u64,
    pub deadline: Duration,
    pub output: super::limits::OutputLimits,
}

impl Default for Limits {
    fn default() -> Self {
        // A realistic policy call uses ~30k fuel and a few hundred KiB; these leave orders of magnitude of room.
        Limits { memory_bytes: 64 << 20, fuel: 200_000_000, deadline: Duration::from_secs(2), output: Default::default() }
    }
}

/// The wasmtime engine and linker, shared by every plugin of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    /// Seals compiled cache entries; without it nothing is read from the disk cache.
    seal: Option<super::sealed::SealKey>,
    pub limits: Limits,
}

/// Where a loaded plugin's time went (for the benchmark and `--verbose`).
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub from_cache: bool,
    pub load: Duration,
    /// Why a compiled cache entry was refused and rebuilt (a poisoned or shared cache), for the user to see.
    pub cache_note: Option<String>,
}

/// A compiled, type-checked plugin ready to be instantiated once per call.
pub struct LoadedPlugin {
    pub name: String,
    pub description: types::Description,
    /// The orch:policy version the plugin was built against.
    pub api_version: String,
    pub sha256: String,
    pub stats: LoadStats,
    pre: InstancePre<State>,
    indices: Indices,
    runtime: Arc<RuntimeShared>,
}

struct RuntimeShared {
    engine: Engine,
    limits: Limits,
}

impl Runtime {
    /// Where compiled components (and pulled ones, under `oci/`) are kept.
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }

    /// `cache_dir`: where compiled components are kept (`None` disables the disk cache).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Runtime, PluginError> {
        let limits = Limits::default();
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        // The pooling allocator halves a call's cost but reserving its pool costs ~5 ms at start-up: more than the
        // handful of calls one `orch` command makes. On-demand allocation it is.
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;
        // Epochs advance on an OS thread: a spinning guest must not be able to starve the ticker.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("orch-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch thread: {e}")))?;
        let mut linker = Linker::new(&engine);
        add_sandboxed_wasi(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;
        wit::Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| PluginError::Engine(e.to_string()))?;
        wit02::Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| PluginError::Engine(e.to_string()))?;
        wit01::Plugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(|e| PluginError::Engine(e.to_string()))?;
        // No key (no home directory, or an unsafe key file): compile every time rather than trust the cache.
        let seal = cache_dir.as_ref().and_then(|_| super::sealed::default_key_path()).and_then(|p| super::sealed::SealKey::load_or_create(&p).ok());
        Ok(Runtime { engine, linker, cache_dir, seal, limits })
    }

    /// Compiles (or loads from cache), checks the API version, links and describes a plugin.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let started = Instant::now();
        let sha = hex::encode(Sha256::digest(bytes));
        let (component, from_cache, cache_note) = self.compile(name, bytes, &sha)?;
        let api_version = self.check_api(name, &component)?;

        let mut linker = self.linker.clone();
        deny_files_and_sockets(&mut linker, &self.engine, &component).map_err(|e| PluginError::Link { plugin: name.into(), message: format!("{e:#}") })?;
        let pre = linker.instantiate_pre(&component).map_err(|e| PluginError::Link { plugin: name.into(), message: format!("{e:#}") })?;
        let not_a_plugin = |e: wasmtime::Error| PluginError::NotAPlugin { plugin: name.into(), message: format!("{e:#}") };
        let indices = if api_version.starts_with("0.1.") {
            Indices::V01(Exports01::new(&pre).map_err(not_a_plugin)?)
        } else if api_version.starts_with("0.2.") {
            Indices::V02(Exports02::new(&pre).map_err(not_a_plugin)?)
        } else {
            Indices::Current(Exports::new(&pre).map_err(not_a_plugin)?)
        };
        let runtime = Arc::new(RuntimeShared { engine: self.engine.clone(), limits: self.limits });
        let mut plugin = LoadedPlugin {
            name: name.into(),
            description: types::Description {
                name: name.into(),
                version: String::new(),
                summary: String::new(),
                settings_schema: String::new(),
                implements: vec![],
            },
            api_version,
            sha256: sha,
            stats: LoadStats::default(),
            pre,
            indices,
            runtime,
        };
        plugin.description = plugin.describe()?;
        // From here on the plugin goes by its own name (a path's file stem was only a stand-in).
        if !plugin.description.name.is_empty() {
            plugin.name = plugin.description.name.clone();
        }
        for policy in &plugin.description.implements {
            if !plugin.exports(*policy) {
                return Err(PluginError::InvalidOutput {
                    plugin: name.into(),
                    call: "describe".into(),
                    message: format!("it claims to implement {policy:?} but does not export orch:policy/{}", policy_interface(*policy)),
                });
            }
        }
        plugin.stats = LoadStats { from_cache, load: started.elapsed(), cache_note };
        Ok(plugin)
    }

    /// Finds the orch:policy version the component was built against and refuses incompatible ones.
    fn check_api(&self, name: &str, component: &Component) -> Result<String, PluginError> {
        let ty = component.component_type();
        let names: Vec<String> = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let version = names.iter().find_map(|n| n.strip_prefix("orch:policy/metadata@").map(str::to_string)).ok_or_else(|| PluginError::NotAPlugin {
            plugin: name.into(),
            message: format!("it does not export orch:policy/metadata (its exports: {})", if names.is_empty() { "none".into() } else { names.join(", ") }),
        })?;
        if !api_compatible(&version) {
            return Err(PluginError::IncompatibleApi { plugin: name.into(), found: version, supported: API_VERSION.into() });
        }
        Ok(version)
    }
}

/// The WIT interface name of a policy ("networks", "ports", …).
pub fn policy_interface(p: types::Policy) -> &'static str {
    match p {
        types::Policy::Networks => "networks",
        types::Policy::Ports => "ports",
        types::Policy::Health => "health",
        types::Policy::Images => "images",
        types::Policy::Services => "services",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_compatible_by_the_caret_rule() {
        for ok in ["0.3.0", "0.3.7", "0.3.1-rc.1", "0.3.0+build", "0.2.0", "0.2.9", "0.1.0"] {
            assert!(api_compatible(ok), "{ok}");
        }
        for refused in ["0.4.0", "1.0.0", "0.0.1", "3.0.0", "0.3", "", "zero", "0.3.x", "00.3.0"] {
            assert!(!api_compatible(refused), "{refused}");
        }
    }
}
