//! What a plugin's store may do: a deny-all WASI (no files, sockets, environment or arguments; a fixed wall clock,
//! a frozen monotonic clock that refuses waits, seeded randomness, captured stdout/stderr) and a memory limiter.

use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::types;

pub(super) const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Captured guest stdout/stderr per call.
pub(super) const OUTPUT_CAPACITY: usize = 64 << 10;
/// Fixed wall clock seen by plugins: 2000-01-01T00:00:00Z.
const FIXED_WALL_CLOCK: Duration = Duration::from_secs(946_684_800);

/// What one store holds: the sandboxed WASI context, the limiter and what the guest logged.
pub struct State {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) logs: Vec<(types::Level, String)>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

pub(super) struct Limiter {
    pub(super) max_memory: usize,
    pub(super) denied: Option<usize>,
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

pub(super) struct FixedWallClock;
impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FIXED_WALL_CLOCK
    }
}

pub(super) struct FixedMonotonicClock;
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
    pub(super) import: &'static str,
    pub(super) nanos: u64,
}

/// A plugin called a file or socket function; the call fails with [`PluginError::Forbidden`].
#[derive(Debug, thiserror::Error)]
#[error("plugins get no files or sockets ({import})")]
pub(super) struct Denied {
    pub(super) import: String,
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

/// Files and sockets are not provided at all: every `wasi:filesystem` / `wasi:sockets` function the component
/// imports is defined as a trap that names the import, so a plugin touching them stops with a clear error instead
/// of quietly getting an I/O error. (Other imports link by semver; unknown ones fail at load time.)
const WASI_IO_RESOURCES: [&str; 4] = ["input-stream", "output-stream", "error", "pollable"];

pub(super) fn deny_files_and_sockets(linker: &mut Linker<State>, engine: &Engine, component: &Component) -> wasmtime::Result<()> {
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

/// Clocks, randomness, stdio and the exit/environment interfaces, all sandboxed; no filesystem, no sockets.
pub(super) fn add_sandboxed_wasi(l: &mut Linker<State>) -> wasmtime::Result<()> {
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

/// Deterministic randomness for the guest (plugins must be reproducible; they get a seed in the snapshot anyway).
pub(super) fn seeded_rng(seed: &[u8]) -> impl rand::Rng + Send + 'static {
    use rand::SeedableRng;
    let digest = Sha256::digest(seed);
    rand::rngs::StdRng::from_seed(digest.into())
}
