//! Rust SDK for orch policy plugins: the `orch:policy` WIT bindings, a [`Plugin`] trait whose policy methods default
//! to "no opinion", and [`export_plugin!`] to export it. A plugin is one file:
//!
//! ```ignore
//! use orch_plugin_api::*;
//! struct Mine;
//! impl Plugin for Mine {
//!     fn describe() -> Description { describe("mine", "0.1.0", "What it decides", &[Policy::Networks]) }
//!     fn networks(s: &Snapshot) -> Result<NetworkPlan, PluginError> { Ok(NetworkPlan::empty()) }
//! }
//! export_plugin!(Mine);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release`; the `.wasm` is a component orch loads directly.

/// Generated bindings of the `plugin` world (all policy interfaces).
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_orch_plugin",
        default_bindings_module: "orch_plugin_api::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::orch::policy::health::{HealthIntent, HealthPlan};
pub use bindings::exports::orch::policy::images::{ImageIntent, ImagePlan};
pub use bindings::exports::orch::policy::networks::{Attachments, NetworkIntent, NetworkPlan};
pub use bindings::exports::orch::policy::ports::{PortIntent, PortPlan};
pub use bindings::exports::orch::policy::services::{ServiceIntent, ServicePlan};
pub use bindings::orch::policy::types::*;

/// The version of the `orch:policy` package these bindings were generated from.
pub const API_VERSION: &str = "0.3.0";

/// A policy plugin. Implement `describe` and the policies you list in it; the others keep their defaults.
pub trait Plugin {
    fn describe() -> Description;

    /// Checks the settings object before anything runs. Return every problem, not just the first.
    fn validate_settings(_settings: &str) -> Result<(), Vec<Diagnostic>> {
        Ok(())
    }
    fn networks(_snapshot: &Snapshot) -> Result<NetworkPlan, PluginError> {
        Ok(NetworkPlan::empty())
    }
    fn ports(_snapshot: &Snapshot) -> Result<PortPlan, PluginError> {
        Ok(PortPlan { ports: vec![], diagnostics: vec![] })
    }
    fn health(_snapshot: &Snapshot) -> Result<HealthPlan, PluginError> {
        Ok(HealthPlan { services: vec![], diagnostics: vec![] })
    }
    fn images(_snapshot: &Snapshot) -> Result<ImagePlan, PluginError> {
        Ok(ImagePlan { services: vec![], diagnostics: vec![] })
    }
    fn services(_snapshot: &Snapshot) -> Result<ServicePlan, PluginError> {
        Ok(ServicePlan { services: vec![], diagnostics: vec![] })
    }
}

impl NetworkPlan {
    pub fn empty() -> Self {
        NetworkPlan { networks: vec![], attachments: vec![], diagnostics: vec![] }
    }
}

impl NetworkIntent {
    /// An intent that changes nothing yet: set the fields you decide (`NetworkIntent { internal: Some(true), ..NetworkIntent::new("db") }`).
    pub fn new(name: &str) -> Self {
        NetworkIntent { name: name.into(), subnet: None, gateway: None, ip_range: None, internal: None, driver: None, driver_opts: vec![] }
    }
}

impl ServiceIntent {
    /// An intent that changes nothing yet: set the fields you decide.
    pub fn new(service: &str) -> Self {
        ServiceIntent {
            service: service.into(),
            resources: None,
            add_tmpfs: vec![],
            logging: None,
            add_labels: vec![],
            add_environment: vec![],
            drop_container_name: false,
            placement: None,
        }
    }
}

impl Description {
    /// The JSON Schema of the plugin's settings (shown by `orch plugin inspect`).
    pub fn with_settings_schema(mut self, schema: &str) -> Self {
        self.settings_schema = schema.into();
        self
    }
}

/// Builds a [`Description`].
pub fn describe(name: &str, version: &str, summary: &str, implements: &[Policy]) -> Description {
    Description { name: name.into(), version: version.into(), summary: summary.into(), settings_schema: String::new(), implements: implements.to_vec() }
}

/// Builds a [`Diagnostic`].
pub fn diagnostic(level: Level, code: &str, message: impl Into<String>, path: Option<String>) -> Diagnostic {
    Diagnostic { level, code: code.into(), message: message.into(), path }
}

/// Builds a [`PluginError`].
pub fn error(code: &str, message: impl Into<String>, path: Option<String>) -> PluginError {
    PluginError { code: code.into(), message: message.into(), path }
}

/// Parses the settings JSON into `T` (use `#[serde(default, deny_unknown_fields)]` to get defaults and typo checks).
pub fn parse_settings<T: serde::de::DeserializeOwned>(settings: &str) -> Result<T, PluginError> {
    let text = if settings.trim().is_empty() { "{}" } else { settings };
    serde_json::from_str(text).map_err(|e| error("settings.invalid", format!("invalid settings: {e}"), None))
}

/// Writes to the user's log through the host (a no-op outside wasm, so plugin logic can be unit-tested natively).
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    bindings::orch::policy::log::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}

/// A settings parse error as `validate_settings` reports it.
pub fn settings_problems(e: PluginError) -> Vec<Diagnostic> {
    vec![diagnostic(Level::Error, &e.code, e.message, e.path)]
}

impl EnvKind {
    /// `test`, `dev`, `ci` or `prod`, as settings name the kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvKind::Test => "test",
            EnvKind::Dev => "dev",
            EnvKind::Ci => "ci",
            EnvKind::Prod => "prod",
        }
    }
}

impl Snapshot {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl Service {
    /// A service with this name and nothing else set: a starting point for tests and fixtures
    /// (`Service { image: Some("postgres:15".into()), ..Service::new("db") }`).
    pub fn new(name: &str) -> Service {
        Service {
            name: name.into(),
            image: None,
            build: None,
            container_name: None,
            ports: vec![],
            networks: vec![],
            healthcheck: None,
            wait: vec![],
            labels: vec![],
            environment: vec![],
            depends_on: vec![],
            resources: Resources { memory_limit: None, memory_reservation: None, cpus: None },
            tmpfs: vec![],
            logging: None,
            volumes: vec![],
            cap_add: vec![],
            cap_drop: vec![],
            privileged: false,
            read_only: false,
            network_mode: None,
            secrets: vec![],
            configs: vec![],
            profiles: vec![],
            user: None,
            placement: vec![],
        }
    }

    /// The image's repository without registry host, path or tag: `docker.io/library/postgres:15` → `postgres`.
    pub fn image_base(&self) -> Option<&str> {
        let image = self.image.as_deref()?;
        let without_digest = image.split('@').next().unwrap_or(image);
        let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
        Some(last.split(':').next().unwrap_or(last))
    }
}

#[doc(hidden)]
pub struct Export<T>(core::marker::PhantomData<T>);

mod adapter {
    use super::bindings::exports::orch::policy as ex;
    use super::*;

    impl<T: Plugin> ex::metadata::Guest for Export<T> {
        fn describe() -> Description {
            T::describe()
        }
        fn validate_settings(settings: String) -> Result<(), Vec<Diagnostic>> {
            T::validate_settings(&settings)
        }
    }
    impl<T: Plugin> ex::networks::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<NetworkPlan, PluginError> {
            T::networks(&snapshot)
        }
    }
    impl<T: Plugin> ex::ports::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<PortPlan, PluginError> {
            T::ports(&snapshot)
        }
    }
    impl<T: Plugin> ex::health::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<HealthPlan, PluginError> {
            T::health(&snapshot)
        }
    }
    impl<T: Plugin> ex::images::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<ImagePlan, PluginError> {
            T::images(&snapshot)
        }
    }
    impl<T: Plugin> ex::services::Guest for Export<T> {
        fn plan(snapshot: Snapshot) -> Result<ServicePlan, PluginError> {
            T::services(&snapshot)
        }
    }
}

/// Exports a [`Plugin`] implementation as the component's `orch:policy` exports. The exports exist only when
/// compiling for wasm: their names (`orch:policy/networks@0.1.0#plan`) are not valid native symbols, and a native
/// build is for unit-testing the plugin's logic.
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
