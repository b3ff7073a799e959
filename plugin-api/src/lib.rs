//! Write [orch](https://crates.io/crates/orch-plugin-api) policy plugins in Rust.
//!
//! A plugin is a WebAssembly component that orch runs in a sandbox: it gets a read-only [`Snapshot`] of the draft
//! plan (services, networks, its settings, the host's facts) and answers with intents (a subnet of some size, a port
//! from a range, a healthcheck, a placement…). This crate carries the `orch:policy` WIT package (`wit/policy.wit`,
//! version [`API_VERSION`]), its Rust bindings, and what makes a plugin short to write and test:
//!
//! - [`Plugin`]: implement the policies you decide; the others keep orch's plan as it is.
//! - [`#[plugin]`](plugin) on the impl derives which policies the plugin implements from the methods it defines (so
//!   none can be skipped by a stale list) and exports the component.
//! - Typed settings: `type Settings` is any serde + [`schemars::JsonSchema`] type; the SDK parses it, reports errors
//!   with their path (`rules[0].constraints[1]: …`) and publishes its JSON Schema (`orch plugin inspect`).
//! - Fixtures and builders: [`Snapshot::from_json`] reads `orch plan --format snapshot` output, and every record
//!   has `Default` or `new`, so a native test is a few lines.
//!
//! ```
//! use orch_plugin_api::*;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema, Default)]
//! #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
//! pub struct Settings {
//!     /// Memory limit for every service, in MiB.
//!     pub memory_mb: u64,
//! }
//!
//! pub struct Limits;
//!
//! #[plugin]
//! impl Plugin for Limits {
//!     type Settings = Settings;
//!
//!     fn describe() -> Description {
//!         describe("limits", "0.1.0", "A memory limit for every service")
//!     }
//!
//!     fn services(snapshot: &Snapshot, settings: &Settings) -> Result<ServicePlan, PluginError> {
//!         let limit = Resources { memory_limit: Some(settings.memory_mb << 20), ..Resources::default() };
//!         let services = snapshot.services.iter().map(|s| ServiceIntent { resources: Some(limit), ..ServiceIntent::new(&s.name) });
//!         Ok(ServicePlan { services: services.collect(), ..ServicePlan::default() })
//!     }
//! }
//!
//! // A native test: a snapshot with one service, typed settings, the answer.
//! let snapshot = Snapshot { services: vec![Service::new("db")], ..Snapshot::default() };
//! let plan = Limits::services(&snapshot, &Settings { memory_mb: 256 }).unwrap();
//! assert_eq!(plan.services[0].resources.unwrap().memory_limit, Some(256 << 20));
//! assert_eq!(Limits::implements(), vec![Policy::Services]);
//! assert!(validate_settings::<Limits>(r#"{"memory-mb": "lots"}"#).unwrap_err()[0].path.as_deref() == Some("memory-mb"));
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` (or `orch plugin build`); the `.wasm` is a component
//! orch loads directly.

/// Generated bindings of the `plugin` world (all policy interfaces).
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_orch_plugin",
        default_bindings_module: "orch_plugin_api::bindings",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

mod builders;
mod settings;

pub use bindings::exports::orch::policy::health::{HealthIntent, HealthPlan};
pub use bindings::exports::orch::policy::images::{ImageIntent, ImagePlan};
pub use bindings::exports::orch::policy::networks::{Attachments, NetworkIntent, NetworkPlan};
pub use bindings::exports::orch::policy::ports::{PortIntent, PortPlan};
pub use bindings::exports::orch::policy::services::{ServiceIntent, ServicePlan};
pub use bindings::orch::policy::types::*;
pub use builders::key_values;
/// Derives `implements` from the policies an `impl Plugin` defines and exports the plugin.
pub use orch_plugin_api_macros::plugin;
pub use schemars;
pub use settings::{NoSettings, parse_settings, settings_schema, validate_settings};

/// The version of the `orch:policy` package these bindings were generated from.
pub const API_VERSION: &str = "0.3.0";

/// A policy plugin. Put [`#[plugin]`](plugin) on the impl, define `describe` and the policies you decide; the others
/// keep their defaults (no opinion), and orch never calls them.
pub trait Plugin {
    /// The settings object (`settings = { … }` in orch.toml, `--plugin-setting NAME.KEY=VALUE`), parsed before every
    /// call. `#[serde(default, deny_unknown_fields)]` gives defaults and catches typos; doc comments become the
    /// schema's descriptions. [`NoSettings`] when the plugin takes none.
    type Settings: serde::de::DeserializeOwned + schemars::JsonSchema + Default + 'static;

    /// Name, version and summary (see [`describe`]); the SDK adds the settings schema and `implements`.
    fn describe() -> Description;

    /// The policies this plugin implements. `#[plugin]` writes it from the methods the impl defines.
    fn implements() -> Vec<Policy>;

    /// Checks beyond what the settings' types say (a port range's order, a known name…). Return every problem,
    /// each with the path of the offending setting.
    fn check_settings(_settings: &Self::Settings) -> Vec<Diagnostic> {
        vec![]
    }
    /// Per-service runtime shape: limits, tmpfs, logging, labels, environment, fixed names, placement.
    fn services(_snapshot: &Snapshot, _settings: &Self::Settings) -> Result<ServicePlan, PluginError> {
        Ok(ServicePlan::default())
    }
    /// Which image or build each service uses.
    fn images(_snapshot: &Snapshot, _settings: &Self::Settings) -> Result<ImagePlan, PluginError> {
        Ok(ImagePlan::default())
    }
    /// Networks, their IPAM, and which services attach where.
    fn networks(_snapshot: &Snapshot, _settings: &Self::Settings) -> Result<NetworkPlan, PluginError> {
        Ok(NetworkPlan::default())
    }
    /// How each container port is published on the host.
    fn ports(_snapshot: &Snapshot, _settings: &Self::Settings) -> Result<PortPlan, PluginError> {
        Ok(PortPlan::default())
    }
    /// Healthchecks and how readiness is awaited.
    fn health(_snapshot: &Snapshot, _settings: &Self::Settings) -> Result<HealthPlan, PluginError> {
        Ok(HealthPlan::default())
    }
}

/// Builds a [`Description`]; the SDK fills in the settings schema and the implemented policies.
pub fn describe(name: &str, version: &str, summary: &str) -> Description {
    Description { name: name.into(), version: version.into(), summary: summary.into(), settings_schema: String::new(), implements: vec![] }
}

/// What orch is told about plugin `T`: its own description, the schema of its settings and the policies it defines.
pub fn description<T: Plugin>() -> Description {
    let mut d = T::describe();
    d.implements = T::implements();
    if d.settings_schema.is_empty() {
        d.settings_schema = settings_schema::<T::Settings>();
    }
    d
}

impl Description {
    /// Replaces the generated JSON Schema of the settings (shown by `orch plugin inspect`).
    pub fn with_settings_schema(mut self, schema: &str) -> Self {
        self.settings_schema = schema.into();
        self
    }
}

/// Builds a [`Diagnostic`].
pub fn diagnostic(level: Level, code: &str, message: impl Into<String>, path: Option<String>) -> Diagnostic {
    Diagnostic { level, code: code.into(), message: message.into(), path }
}

/// Builds a [`PluginError`].
pub fn error(code: &str, message: impl Into<String>, path: Option<String>) -> PluginError {
    PluginError { code: code.into(), message: message.into(), path }
}

/// Writes to the user's log through the host (a no-op outside wasm, so plugin logic can be unit-tested natively).
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    bindings::orch::policy::log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}

#[doc(hidden)]
pub struct Export<T>(core::marker::PhantomData<T>);

mod adapter {
    use super::bindings::exports::orch::policy as ex;
    use super::*;

    /// The typed settings of a policy call; orch validated them before planning, so a failure here is a plugin bug.
    fn typed<T: Plugin>(snapshot: &Snapshot) -> Result<T::Settings, PluginError> {
        parse_settings::<T::Settings>(&snapshot.settings).map_err(|problems| {
            let first = problems.into_iter().next().expect("an error has a problem");
            error("settings.invalid", first.message, first.path)
        })
    }

    impl<T: Plugin> ex::metadata::Guest for Export<T> {
        fn describe() -> Description {
            description::<T>()
        }
        fn validate_settings(settings: String) -> Result<(), Vec<Diagnostic>> {
            super::validate_settings::<T>(&settings)
        }
    }
    impl<T: Plugin> ex::networks::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<NetworkPlan, PluginError> {
            T::networks(&snapshot, &typed::<T>(&snapshot)?)
        }
    }
    impl<T: Plugin> ex::ports::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<PortPlan, PluginError> {
            T::ports(&snapshot, &typed::<T>(&snapshot)?)
        }
    }
    impl<T: Plugin> ex::health::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<HealthPlan, PluginError> {
            T::health(&snapshot, &typed::<T>(&snapshot)?)
        }
    }
    impl<T: Plugin> ex::images::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<ImagePlan, PluginError> {
            T::images(&snapshot, &typed::<T>(&snapshot)?)
        }
    }
    impl<T: Plugin> ex::services::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<ServicePlan, PluginError> {
            T::services(&snapshot, &typed::<T>(&snapshot)?)
        }
    }
}

/// Exports a [`Plugin`] implementation as the component's `orch:policy` exports ([`#[plugin]`](plugin) calls it).
/// The exports exist only when compiling for wasm: their names (`orch:policy/networks@0.3.0#plan`) are not valid
/// native symbols, and a native build is for unit-testing the plugin's logic.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        type __OrchPluginExport = $crate::Export<$plugin>;
        #[cfg(target_family = "wasm")]
        $crate::bindings::__export_orch_plugin!(__OrchPluginExport with_types_in $crate::bindings);
    };
}
