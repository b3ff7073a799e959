//! One call: a fresh instance in a fresh, limited store (memory, fuel, an epoch deadline, bounded output), on
//! whichever API version the plugin speaks, and every failure classified as a [`PluginError`].

use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::Trap;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::{Indices, bridge, wit01, wit02};
use super::sandbox::{Denied, EPOCH_TICK, FixedMonotonicClock, FixedWallClock, Limiter, OUTPUT_CAPACITY, State, WaitRefused, seeded_rng};
use super::{Limits, LoadedPlugin, PluginError, ex, policy_interface, types};

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
    /// Whether the plugin exports `policy`'s interface (what it implements is what it says in [`LoadedPlugin::description`]).
    pub fn exports(&self, policy: types::Policy) -> bool {
        self.indices.exports(policy)
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
                crate::limits::check(&value, &limits.output, &self.name, &call.to_string())?;
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
