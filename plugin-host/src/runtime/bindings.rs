//! The WIT bindings of every `orch:policy` version the host speaks, where a loaded plugin's exports are, and the
//! bridge between versions.

use wasmtime::component::InstancePre;

use super::State;

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

/// Converts a value of one API version's type into the same value of another version's type.
pub(super) fn bridge<A: serde::Serialize, B: serde::de::DeserializeOwned>(value: &A) -> wasmtime::Result<B> {
    let json = serde_json::to_value(value).map_err(|e| wasmtime::Error::msg(format!("orch: cannot convert between API versions: {e}")))?;
    serde_json::from_value(json).map_err(|e| wasmtime::Error::msg(format!("orch: cannot convert between API versions: {e}")))
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

        pub(super) struct $exports {
            pub(super) metadata: $wit::exports::orch::policy::metadata::GuestIndices,
            pub(super) networks: Option<$wit::exports::orch::policy::networks::GuestIndices>,
            pub(super) ports: Option<$wit::exports::orch::policy::ports::GuestIndices>,
            pub(super) health: Option<$wit::exports::orch::policy::health::GuestIndices>,
            pub(super) images: Option<$wit::exports::orch::policy::images::GuestIndices>,
            pub(super) services: Option<$wit::exports::orch::policy::services::GuestIndices>,
        }

        impl $exports {
            pub(super) fn new(pre: &wasmtime::component::InstancePre<State>) -> wasmtime::Result<Self> {
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

/// Where a plugin's exports are, by the API version it was built against.
pub(super) enum Indices {
    Current(Exports),
    V02(Exports02),
    V01(Exports01),
}

pub(super) struct Exports {
    pub(super) metadata: ex::metadata::GuestIndices,
    pub(super) networks: Option<ex::networks::GuestIndices>,
    pub(super) ports: Option<ex::ports::GuestIndices>,
    pub(super) health: Option<ex::health::GuestIndices>,
    pub(super) images: Option<ex::images::GuestIndices>,
    pub(super) services: Option<ex::services::GuestIndices>,
}

impl Exports {
    /// The current version's exports; only `metadata` is required.
    pub(super) fn new(pre: &InstancePre<State>) -> wasmtime::Result<Self> {
        Ok(Exports {
            metadata: ex::metadata::GuestIndices::new(pre)?,
            networks: ex::networks::GuestIndices::new(pre).ok(),
            ports: ex::ports::GuestIndices::new(pre).ok(),
            health: ex::health::GuestIndices::new(pre).ok(),
            images: ex::images::GuestIndices::new(pre).ok(),
            services: ex::services::GuestIndices::new(pre).ok(),
        })
    }
}

impl Indices {
    /// Whether the plugin exports `policy`'s interface.
    pub(super) fn exports(&self, policy: types::Policy) -> bool {
        macro_rules! has {
            ($ix:ident) => {
                match policy {
                    types::Policy::Networks => $ix.networks.is_some(),
                    types::Policy::Ports => $ix.ports.is_some(),
                    types::Policy::Health => $ix.health.is_some(),
                    types::Policy::Images => $ix.images.is_some(),
                    types::Policy::Services => $ix.services.is_some(),
                }
            };
        }
        match self {
            Indices::Current(ix) => has!(ix),
            Indices::V02(ix) => has!(ix),
            Indices::V01(ix) => has!(ix),
        }
    }
}
