//! Built against orch:policy@0.2.0: labels every service with what it saw of the snapshot (its volumes, a 0.2.0
//! field) and sets a memory limit, so a test can tell that an 0.2 plugin still gets its snapshot and that its
//! `services` answer (which has no placement) is applied without touching the placement the plan already has.
wit_bindgen::generate!({ world: "plugin", path: "../../plugin-api/wit-0.2" });

use exports::orch::policy::services::{Guest as Services, ServiceIntent, ServicePlan};
use exports::orch::policy::{health, images, networks, ports};
use orch::policy::types::{Description, Diagnostic, KeyValue, PluginError, Policy, Resources, Snapshot};

struct Api02;

impl exports::orch::policy::metadata::Guest for Api02 {
    fn describe() -> Description {
        Description {
            name: "api-0-2".into(),
            version: "0.2.0".into(),
            summary: "built against 0.2.0".into(),
            settings_schema: String::new(),
            implements: vec![Policy::Services],
        }
    }
    fn validate_settings(_: String) -> Result<(), Vec<Diagnostic>> {
        Ok(())
    }
}

impl Services for Api02 {
    fn plan(s: Snapshot) -> Result<ServicePlan, PluginError> {
        let services = s
            .services
            .iter()
            .map(|svc| {
                let volumes: Vec<String> = svc.volumes.iter().map(|m| format!("{}:{}", m.kind, m.target)).collect();
                ServiceIntent {
                    service: svc.name.clone(),
                    resources: Some(Resources { memory_limit: Some(64 << 20), memory_reservation: None, cpus: None }),
                    add_tmpfs: vec![],
                    logging: None,
                    add_labels: vec![KeyValue { key: "api-0-2.volumes".into(), value: volumes.join(",") }],
                    add_environment: vec![],
                    drop_container_name: false,
                }
            })
            .collect();
        Ok(ServicePlan { services, diagnostics: vec![] })
    }
}

// The `plugin` world exports every policy; this plugin lists only `services` in `implements`, so these never run.
impl networks::Guest for Api02 {
    fn plan(_: Snapshot) -> Result<networks::NetworkPlan, PluginError> {
        Ok(networks::NetworkPlan { networks: vec![], attachments: vec![], diagnostics: vec![] })
    }
}
impl ports::Guest for Api02 {
    fn plan(_: Snapshot) -> Result<ports::PortPlan, PluginError> {
        Ok(ports::PortPlan { ports: vec![], diagnostics: vec![] })
    }
}
impl health::Guest for Api02 {
    fn plan(_: Snapshot) -> Result<health::HealthPlan, PluginError> {
        Ok(health::HealthPlan { services: vec![], diagnostics: vec![] })
    }
}
impl images::Guest for Api02 {
    fn plan(_: Snapshot) -> Result<images::ImagePlan, PluginError> {
        Ok(images::ImagePlan { services: vec![], diagnostics: vec![] })
    }
}

// Export names (`orch:policy/services@0.2.0#plan`) are not valid native symbols: only the wasm build exports.
#[cfg(target_family = "wasm")]
export!(Api02);
