//! Built against orch:policy@0.1.0: puts every service on a `legacy` network of size /28 and reports what it saw of
//! the snapshot, so a test can tell that an 0.1 plugin still gets its snapshot and that its answer is applied.
wit_bindgen::generate!({ world: "network-plugin", path: "../../plugin-api/wit-0.1" });

use exports::orch::policy::metadata::Guest as Metadata;
use exports::orch::policy::networks::{Attachments, Guest as Networks, NetworkIntent, NetworkPlan};
use orch::policy::types::{Description, Diagnostic, Level, PluginError, Policy, ServiceNetwork, Snapshot, SubnetRequest};

struct Legacy;

impl Metadata for Legacy {
    fn describe() -> Description {
        Description { name: "legacy-api".into(), version: "0.1.0".into(), summary: "built against 0.1.0".into(), settings_schema: String::new(), implements: vec![Policy::Networks] }
    }
    fn validate_settings(_: String) -> Result<(), Vec<Diagnostic>> {
        Ok(())
    }
}

impl Networks for Legacy {
    fn plan(s: Snapshot) -> Result<NetworkPlan, PluginError> {
        let network = NetworkIntent {
            name: "legacy".into(),
            subnet: Some(SubnetRequest::Size(28)),
            gateway: None,
            ip_range: None,
            internal: Some(true),
            driver: None,
            driver_opts: vec![],
        };
        let attachments = s
            .services
            .iter()
            .map(|svc| Attachments { service: svc.name.clone(), networks: vec![ServiceNetwork { network: "legacy".into(), aliases: vec![], ipv4_address: None }] })
            .collect();
        let seen: Vec<String> = s.services.iter().map(|svc| format!("{}:{}", svc.name, svc.image.clone().unwrap_or_default())).collect();
        let note = Diagnostic { level: Level::Info, code: "legacy.seen".into(), message: format!("0.1 plugin saw {}", seen.join(",")), path: None };
        Ok(NetworkPlan { networks: vec![network], attachments, diagnostics: vec![note] })
    }
}

export!(Legacy);
