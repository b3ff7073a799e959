//! The sandbox plugins run in: wasmtime components with a deny-all WASI (no preopened files, no sockets, no
//! environment or arguments, a fixed clock, seeded randomness, captured stdout/stderr), a memory limit, a fuel budget
//! and a wall-clock deadline per call, and a fresh instance for every call. Compiled components are cached on disk,
//! keyed by the component's hash and the engine's compatibility hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginError;

/// The current `orch:policy` (what the host plans with and new plugins are built against).
pub mod wit {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../plugin-api/wit",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

/// `orch:policy@0.2` and `@0.1`, frozen: their plugins still run. Their records are the current ones minus what later
/// versions added, so values cross between versions through serde: fields the older side lacks are dropped on the
/// way in, and an older answer reads as a current one whose newer (optional) fields are unset.
pub mod wit02 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../plugin-api/wit-0.2",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}
pub mod wit01 {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../plugin-api/wit-0.1",
        additional_derives: [serde::Serialize, serde::Deserialize],
    });
}

use wit::exports::orch::policy as ex;
pub use wit::orch::policy::types;

/// The `orch:policy` version this host implements; plugins built against it or any version in [`OLDER_APIS`] run.
pub const API_VERSION: &str = "0.3.0";
/// Older minor versions whose plugins still run (0.x minors are not semver-compatible, so each is bound on its own).
pub const OLDER_APIS: &[&str] = &["0.2", "0.1"];

fn major_minor(v: &str) -> Option<(u64, u64)> {
    let mut it = v.split(['.', '-', '+']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Whether a plugin built against `version` can run here: the current version (semver: same major, and same minor
/// while 0.x) or one of [`OLDER_APIS`].
pub fn api_compatible(version: &str) -> bool {
    let Some(found) = major_minor(version) else { return false };
    let same = |v: &str| match (Some(found), major_minor(&format!("{v}.0"))) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b && a != 0,
        _ => false,
    };
    same(API_VERSION.rsplit_once('.').map(|(mm, _)| mm).unwrap_or(API_VERSION)) || OLDER_APIS.iter().any(|v| same(v))
}

/// Converts a value of one API version's type into the same value of another version's type.
fn bridge<A: serde::Serialize, B: serde::de::DeserializeOwned>(value: &A) -> wasmtime::Result<B> {
    let json = serde_json::to_value(value).map_err(|e| wasmtime::Error::msg(format!("orch: cannot convert between API versions: {e}")))?;
    serde_json::from_value(json).map_err(|e| wasmtime::Error::msg(format!("orch: cannot convert between API versions: {e}")))
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

const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Captured guest stdout/stderr per call.
const OUTPUT_CAPACITY: usize = 64 << 10;
/// Fixed wall clock seen by plugins: 2000-01-01T00:00:00Z.
const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// The wasmtime engine and linker, shared by every plugin of a process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    cache_dir: Option<PathBuf>,
    /// Seals compiled cache entries; without it nothing is read from the disk cache.
    seal: Option<super::sealed::SealKey>,
    pub limits: Limits,
}

/// What one store holds: the sandboxed WASI context, the limiter and what the guest logged.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    logs: Vec<(types::Level, String)>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wit::orch::policy::log::Host for State {
    fn log(&mut self, level: types::Level, message: String) {
        // Bounded, so a chatty plugin cannot grow the host's memory.
        if self.logs.len() < 1000 {
            self.logs.push((level, message.chars().take(4096).collect()));
        }
    }
}

impl types::Host for State {}

/// What an older API version's bindings need from the host: its `log` import, and where its exports are.
macro_rules! older_api {
    ($wit:ident, $exports:ident) => {
        impl $wit::orch::policy::log::Host for State {
            fn log(&mut self, level: $wit::orch::policy::types::Level, message: String) {
                use $wit::orch::policy::types::Level as Old;
                let level = match level {
                    Old::Debug => types::Level::Debug,
                    Old::Info => types::Level::Info,
                    Old::Warning => types::Level::Warning,
                    Old::Error => types::Level::Error,
                };
                wit::orch::policy::log::Host::log(self, level, message);
            }
        }

        impl $wit::orch::policy::types::Host for State {}

        struct $exports {
            metadata: $wit::exports::orch::policy::metadata::GuestIndices,
            networks: Option<$wit::exports::orch::policy::networks::GuestIndices>,
            ports: Option<$wit::exports::orch::policy::ports::GuestIndices>,
            health: Option<$wit::exports::orch::policy::health::GuestIndices>,
            images: Option<$wit::exports::orch::policy::images::GuestIndices>,
            services: Option<$wit::exports::orch::policy::services::GuestIndices>,
        }

        impl $exports {
            fn new(pre: &wasmtime::component::InstancePre<State>) -> wasmtime::Result<Self> {
                use $wit::exports::orch::policy as old;
                Ok($exports {
                    metadata: old::metadata::GuestIndices::new(pre)?,
                    networks: old::networks::GuestIndices::new(pre).ok(),
                    ports: old::ports::GuestIndices::new(pre).ok(),
                    health: old::health::GuestIndices::new(pre).ok(),
                    images: old::images::GuestIndices::new(pre).ok(),
                    services: old::services::GuestIndices::new(pre).ok(),
                })
            }
        }
    };
}
older_api!(wit02, Exports02);
older_api!(wit01, Exports01);

struct Limiter {
    max_memory: usize,
    denied: Option<usize>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = Some(desired);
            return Err(wasmtime::Error::msg("orch: plugin memory limit reached"));
        }
        Ok(true)
    }
    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct FixedWallClock;
impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

struct FixedMonotonicClock;
impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The monotonic clock plugins get: it stands still, a subscription for no time at all (a non-blocking poll) is
/// ready at once, and any real wait is refused with [`WaitRefused`]. wasmtime-wasi's own clock would block the host
/// thread in `sleep`, where neither fuel nor the epoch deadline can stop it.
struct FrozenClock<'a> {
    table: &'a mut ResourceTable,
}

/// A plugin asked to wait; the call fails with [`PluginError::Waited`].
#[derive(Debug, thiserror::Error)]
#[error("plugins cannot wait ({import}, {nanos} ns)")]
pub struct WaitRefused {
    import: &'static str,
    nanos: u64,
}

/// A plugin called a file or socket function; the call fails with [`PluginError::Forbidden`].
#[derive(Debug, thiserror::Error)]
#[error("plugins get no files or sockets ({import})")]
struct Denied {
    import: String,
}

struct ReadyNow;

#[async_trait::async_trait]
impl wasmtime_wasi_io::poll::Pollable for ReadyNow {
    async fn ready(&mut self) {}
}

impl FrozenClock<'_> {
    fn subscribe(&mut self, import: &'static str, nanos: u64) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi_io::poll::DynPollable>> {
        if nanos > 0 {
            return Err(wasmtime::Error::new(WaitRefused { import, nanos }));
        }
        let ready = self.table.push(ReadyNow)?;
        wasmtime_wasi_io::poll::subscribe(self.table, ready)
    }
}

impl wasmtime_wasi::p2::bindings::clocks::monotonic_clock::Host for FrozenClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }
    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }
    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi_io::poll::DynPollable>> {
        // The clock reads 0, so an instant is also the time to wait.
        self.subscribe("wasi:clocks/monotonic-clock#subscribe-instant", when)
    }
    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi_io::poll::DynPollable>> {
        self.subscribe("wasi:clocks/monotonic-clock#subscribe-duration", duration)
    }
}

struct HasFrozenClock;
impl wasmtime::component::HasData for HasFrozenClock {
    type Data<'a> = FrozenClock<'a>;
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

/// Where a plugin's exports are, by the API version it was built against.
enum Indices {
    Current(Exports),
    V02(Exports02),
    V01(Exports01),
}

struct Exports {
    metadata: ex::metadata::GuestIndices,
    networks: Option<ex::networks::GuestIndices>,
    ports: Option<ex::ports::GuestIndices>,
    health: Option<ex::health::GuestIndices>,
    images: Option<ex::images::GuestIndices>,
    services: Option<ex::services::GuestIndices>,
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

    fn cache_path(&self, sha: &str) -> Option<PathBuf> {
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{}-{:016x}.cwasm", &sha[..32], h.finish())))
    }

    /// The compiled component: from the sealed disk cache when an entry for exactly this component passes its
    /// check, else compiled afresh (and cached). The note says why a cache entry was not used.
    fn compile(&self, name: &str, bytes: &[u8], sha: &str) -> Result<(Component, bool, Option<String>), PluginError> {
        let cache = self.cache_path(sha).zip(self.seal.as_ref());
        let mut note = None;
        if let Some((path, seal)) = &cache
            && path.exists()
        {
            match seal.open(path, sha) {
                // SAFETY: the artifact was sealed by this user's key for exactly this component, so this orch's
                // engine (same compatibility hash, in the file name) produced it; wasmtime checks its header too.
                Ok(artifact) => match unsafe { Component::deserialize(&self.engine, &artifact) } {
                    Ok(c) => return Ok((c, true, None)),
                    Err(e) => note = Some(format!("compiled cache entry {} of plugin {name} could not be loaded ({e}); rebuilt it", path.display())),
                },
                Err(why) => note = Some(format!("compiled cache entry {} of plugin {name} was not used: {why}; rebuilt it", path.display())),
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(|e| PluginError::Compile { plugin: name.into(), message: format!("{e:#}") })?;
        if let Some((path, seal)) = &cache {
            write_atomically(path, &seal.seal(sha, &compiled));
        }
        // SAFETY: `compiled` was produced by this very engine a moment ago.
        let c =
            unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| PluginError::Compile { plugin: name.into(), message: format!("{e:#}") })?;
        Ok((c, false, note))
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
            Indices::Current(Exports {
                metadata: ex::metadata::GuestIndices::new(&pre).map_err(not_a_plugin)?,
                networks: ex::networks::GuestIndices::new(&pre).ok(),
                ports: ex::ports::GuestIndices::new(&pre).ok(),
                health: ex::health::GuestIndices::new(&pre).ok(),
                images: ex::images::GuestIndices::new(&pre).ok(),
                services: ex::services::GuestIndices::new(&pre).ok(),
            })
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

/// Files and sockets are not provided at all: every `wasi:filesystem` / `wasi:sockets` function the component
/// imports is defined as a trap that names the import, so a plugin touching them stops with a clear error instead
/// of quietly getting an I/O error. (Other imports link by semver; unknown ones fail at load time.)
const WASI_IO_RESOURCES: [&str; 4] = ["input-stream", "output-stream", "error", "pollable"];

fn deny_files_and_sockets(linker: &mut Linker<State>, engine: &Engine, component: &Component) -> wasmtime::Result<()> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;
    for (instance_name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !(instance_name.starts_with("wasi:filesystem/") || instance_name.starts_with("wasi:sockets/")) {
            continue;
        }
        let mut li = linker.instance(instance_name)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let full = format!("{instance_name}#{export}");
                    li.func_new(export, move |_, _, _, _| Err(Denied { import: full.clone() }.into()))?;
                }
                // Streams, errors and pollables are wasi:io's (already linked) re-exported here; keep them.
                ComponentItem::Resource(_) if !WASI_IO_RESOURCES.contains(&export) => li.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?,
                _ => {}
            }
        }
    }
    Ok(())
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

fn write_atomically(path: &Path, bytes: &[u8]) {
    // A cache write that fails only costs a recompile next time, so errors are ignored.
    let _ = crate::atomic::write(path, bytes);
}

/// Clocks, randomness, stdio and the exit/environment interfaces, all sandboxed; no filesystem, no sockets.
fn add_sandboxed_wasi(l: &mut Linker<State>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};
    use wasmtime_wasi::random::WasiRandom;
    clocks::wall_clock::add_to_linker::<State, WasiClocks>(l, State::clocks)?;
    clocks::monotonic_clock::add_to_linker::<State, HasFrozenClock>(l, |t| FrozenClock { table: &mut t.table })?;
    random::random::add_to_linker::<State, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<State, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<State, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::environment::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_input::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_output::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stdin::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stdout::add_to_linker::<State, WasiCli>(l, State::cli)?;
    cli::terminal_stderr::add_to_linker::<State, WasiCli>(l, State::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<State, HasTable>(l, |t| &mut t.table)?;
    sync::io::poll::add_to_linker::<State, HasTable>(l, |t| &mut t.table)?;
    sync::io::streams::add_to_linker::<State, HasTable>(l, |t| &mut t.table)?;
    Ok(())
}

struct HasTable;
impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Which call a failure happened in, for error messages.
#[derive(Clone, Copy)]
enum Call {
    Describe,
    ValidateSettings,
    Plan(types::Policy),
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Describe => f.write_str("describe"),
            Call::ValidateSettings => f.write_str("validate-settings"),
            Call::Plan(p) => write!(f, "{}.plan", policy_interface(*p)),
        }
    }
}

/// The output of one call, with what the guest logged and printed.
pub struct CallOutput<T> {
    pub value: T,
    pub logs: Vec<(types::Level, String)>,
    pub elapsed: Duration,
}

/// One policy's `plan` call on whichever API version the plugin speaks: an older plugin gets the snapshot without
/// the newer fields, and its answer is read back as the current type.
macro_rules! plan_call {
    ($store:ident, $instance:ident, $ix:ident, $policy:ident, $snapshot:ident) => {
        match $ix {
            Indices::Current(ix) => match &ix.$policy {
                Some(i) => i.load(&mut *$store, $instance)?.call_plan(&mut *$store, $snapshot).map(Some),
                None => Ok(None),
            },
            Indices::V02(ix) => match &ix.$policy {
                Some(i) => {
                    let old: wit02::orch::policy::types::Snapshot = bridge($snapshot)?;
                    let answer = i.load(&mut *$store, $instance)?.call_plan(&mut *$store, &old)?;
                    bridge(&answer).map(Some)
                }
                None => Ok(None),
            },
            Indices::V01(ix) => match &ix.$policy {
                Some(i) => {
                    let old: wit01::orch::policy::types::Snapshot = bridge($snapshot)?;
                    let answer = i.load(&mut *$store, $instance)?.call_plan(&mut *$store, &old)?;
                    bridge(&answer).map(Some)
                }
                None => Ok(None),
            },
        }
    };
}

impl LoadedPlugin {
    pub fn exports(&self, policy: types::Policy) -> bool {
        match (&self.indices, policy) {
            (Indices::Current(ix), types::Policy::Networks) => ix.networks.is_some(),
            (Indices::Current(ix), types::Policy::Ports) => ix.ports.is_some(),
            (Indices::Current(ix), types::Policy::Health) => ix.health.is_some(),
            (Indices::Current(ix), types::Policy::Images) => ix.images.is_some(),
            (Indices::Current(ix), types::Policy::Services) => ix.services.is_some(),
            (Indices::V01(ix), types::Policy::Networks) => ix.networks.is_some(),
            (Indices::V01(ix), types::Policy::Ports) => ix.ports.is_some(),
            (Indices::V01(ix), types::Policy::Health) => ix.health.is_some(),
            (Indices::V01(ix), types::Policy::Images) => ix.images.is_some(),
            (Indices::V01(ix), types::Policy::Services) => ix.services.is_some(),
            (Indices::V02(ix), types::Policy::Networks) => ix.networks.is_some(),
            (Indices::V02(ix), types::Policy::Ports) => ix.ports.is_some(),
            (Indices::V02(ix), types::Policy::Health) => ix.health.is_some(),
            (Indices::V02(ix), types::Policy::Images) => ix.images.is_some(),
            (Indices::V02(ix), types::Policy::Services) => ix.services.is_some(),
        }
    }

    pub fn implements(&self, policy: types::Policy) -> bool {
        self.description.implements.contains(&policy)
    }

    /// Runs `f` on a fresh instance in a fresh, limited store and turns every failure into a [`PluginError`].
    fn call<T: serde::Serialize>(
        &self,
        call: Call,
        f: impl FnOnce(&mut Store<State>, &wasmtime::component::Instance, &Indices) -> wasmtime::Result<T>,
    ) -> Result<CallOutput<T>, PluginError> {
        let started = Instant::now();
        let limits = self.runtime.limits;
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(seeded_rng(self.sha256.as_bytes()))
            .insecure_random(seeded_rng(b"insecure"))
            .insecure_random_seed(0x0c4c_0de5)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = State { wasi, table: ResourceTable::new(), limiter: Limiter { max_memory: limits.memory_bytes, denied: None }, logs: vec![] };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = (limits.deadline.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store.set_fuel(limits.fuel).map_err(|e| PluginError::Engine(e.to_string()))?;
        // Bounds what the host copies while lifting the answer, before `limits::check` can look at it: a guest can
        // hand back one buffer many times (every string pointing at the same bytes), which costs it nothing and the
        // host a copy each.
        store.set_hostcall_fuel(limits.output.copy_bytes());

        let result = self.pre.instantiate(&mut store).and_then(|instance| f(&mut store, &instance, &self.indices));
        let elapsed = started.elapsed();
        match result {
            Ok(value) => {
                // Checked before anything of it is used: no answer can make orch's own work unbounded.
                super::limits::check(&value, &limits.output, &self.name, &call.to_string())?;
                Ok(CallOutput { value, logs: std::mem::take(&mut store.data_mut().logs), elapsed })
            }
            Err(err) => Err(self.classify(call, err, &store, &stderr, &stdout, limits)),
        }
    }

    fn classify(
        &self,
        call: Call,
        err: wasmtime::Error,
        store: &Store<State>,
        stderr: &MemoryOutputPipe,
        stdout: &MemoryOutputPipe,
        limits: Limits,
    ) -> PluginError {
        let plugin = self.name.clone();
        let call = call.to_string();
        if let Some(requested) = store.data().limiter.denied {
            return PluginError::OutOfMemory { plugin, call, requested, limit: limits.memory_bytes };
        }
        if let Some(Denied { import }) = err.downcast_ref::<Denied>() {
            let capability = if import.starts_with("wasi:filesystem") { "the filesystem" } else { "the network" };
            return PluginError::Forbidden { plugin, call, capability: capability.into(), import: import.clone() };
        }
        if let Some(w) = err.downcast_ref::<WaitRefused>() {
            return PluginError::Waited { plugin, call, import: w.import.to_string(), waited_ms: w.nanos / 1_000_000 };
        }
        // Lifting the answer fails with a plain error: no trap and no wasm frames, since the guest has returned.
        if err.downcast_ref::<Trap>().is_none() && err.downcast_ref::<wasmtime::WasmBacktrace>().is_none() {
            return PluginError::Unreadable { plugin, call, cause: err.root_cause().to_string(), limit: limits.output.copy_bytes() };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel { plugin, call, fuel: limits.fuel },
            Some(Trap::Interrupt) => PluginError::Timeout { plugin, call, limit_ms: limits.deadline.as_millis() as u64 },
            _ => {
                let printed = String::from_utf8_lossy(&stderr.contents()).trim().to_string();
                let printed = if printed.is_empty() { String::from_utf8_lossy(&stdout.contents()).trim().to_string() } else { printed };
                // The cause first: the plugin's own panic message when it printed one, else the trap itself; the
                // backtrace (`<unknown>!<wasm function N>` lines) is kept for `ORCH_LOG=debug`.
                let panic = printed.lines().skip_while(|l| !l.contains("panicked at")).nth(1).map(str::trim).filter(|l| !l.is_empty());
                let root = err.root_cause().to_string();
                let flooded = stdout.contents().len() >= OUTPUT_CAPACITY || stderr.contents().len() >= OUTPUT_CAPACITY;
                let hint = match err.downcast_ref::<Trap>() {
                    _ if flooded => format!("; it printed more than {} KiB, the most a plugin's output may hold", OUTPUT_CAPACITY >> 10),
                    Some(Trap::StackOverflow) => "; its call stack overflowed (unbounded recursion?)".to_string(),
                    // Rust guests keep their stack in linear memory: overflowing it is an out-of-bounds access.
                    Some(Trap::MemoryOutOfBounds) => "; most likely its stack overflowed (deep recursion) — else a bug in the plugin".to_string(),
                    _ => String::new(),
                };
                let message = match panic {
                    Some(p) => format!("it panicked: {p} ({root}){hint}"),
                    None => format!("{root}{hint}"),
                };
                let backtrace = err.downcast_ref::<wasmtime::WasmBacktrace>().map(|b| b.to_string()).unwrap_or_default();
                PluginError::Trap { plugin, call, message, output: printed.lines().take(20).collect::<Vec<_>>().join("\n"), backtrace }
            }
        }
    }

    pub fn describe(&self) -> Result<types::Description, PluginError> {
        self.call(Call::Describe, |store, instance, ix| match ix {
            Indices::Current(ix) => ix.metadata.load(&mut *store, instance)?.call_describe(&mut *store),
            Indices::V02(ix) => bridge(&ix.metadata.load(&mut *store, instance)?.call_describe(&mut *store)?),
            Indices::V01(ix) => bridge(&ix.metadata.load(&mut *store, instance)?.call_describe(&mut *store)?),
        })
        .map(|o| o.value)
    }

    /// `Ok(problems)`: the plugin's own verdict on the settings (empty when they are fine).
    pub fn validate_settings(&self, settings: &str) -> Result<Vec<types::Diagnostic>, PluginError> {
        let out = self.call(Call::ValidateSettings, |store, instance, ix| match ix {
            Indices::Current(ix) => ix.metadata.load(&mut *store, instance)?.call_validate_settings(&mut *store, settings),
            Indices::V02(ix) => bridge(&ix.metadata.load(&mut *store, instance)?.call_validate_settings(&mut *store, settings)?),
            Indices::V01(ix) => bridge(&ix.metadata.load(&mut *store, instance)?.call_validate_settings(&mut *store, settings)?),
        })?;
        Ok(out.value.err().unwrap_or_default())
    }

    fn policy_call<T: serde::Serialize>(
        &self,
        policy: types::Policy,
        f: impl FnOnce(&mut Store<State>, &wasmtime::component::Instance, &Indices) -> wasmtime::Result<Option<Result<T, types::PluginError>>>,
    ) -> Result<CallOutput<T>, PluginError> {
        let out = self.call(Call::Plan(policy), f)?;
        let call = Call::Plan(policy).to_string();
        match out.value {
            None => Err(PluginError::NotAPlugin { plugin: self.name.clone(), message: format!("it does not export {call}") }),
            Some(Err(e)) => Err(PluginError::Refused { plugin: self.name.clone(), call, code: e.code, message: e.message, path: e.path }),
            Some(Ok(value)) => Ok(CallOutput { value, logs: out.logs, elapsed: out.elapsed }),
        }
    }

    pub fn plan_networks(&self, s: &types::Snapshot) -> Result<CallOutput<ex::networks::NetworkPlan>, PluginError> {
        self.policy_call(types::Policy::Networks, |store, instance, ix| plan_call!(store, instance, ix, networks, s))
    }

    pub fn plan_ports(&self, s: &types::Snapshot) -> Result<CallOutput<ex::ports::PortPlan>, PluginError> {
        self.policy_call(types::Policy::Ports, |store, instance, ix| plan_call!(store, instance, ix, ports, s))
    }

    pub fn plan_health(&self, s: &types::Snapshot) -> Result<CallOutput<ex::health::HealthPlan>, PluginError> {
        self.policy_call(types::Policy::Health, |store, instance, ix| plan_call!(store, instance, ix, health, s))
    }

    pub fn plan_images(&self, s: &types::Snapshot) -> Result<CallOutput<ex::images::ImagePlan>, PluginError> {
        self.policy_call(types::Policy::Images, |store, instance, ix| plan_call!(store, instance, ix, images, s))
    }

    pub fn plan_services(&self, s: &types::Snapshot) -> Result<CallOutput<ex::services::ServicePlan>, PluginError> {
        self.policy_call(types::Policy::Services, |store, instance, ix| plan_call!(store, instance, ix, services, s))
    }
}

/// Deterministic randomness for the guest (plugins must be reproducible; they get a seed in the snapshot anyway).
fn seeded_rng(seed: &[u8]) -> impl rand::Rng + Send + 'static {
    use rand::SeedableRng;
    let digest = Sha256::digest(seed);
    rand::rngs::StdRng::from_seed(digest.into())
}
