//! Implements only `metadata` of orch:policy@0.4.0.
wit_bindgen::generate!({ world: "network-plugin", path: "wit" });

use exports::orch::policy::metadata::Guest as Metadata;
use exports::orch::policy::networks::{Guest as Networks, NetworkPlan};
use orch::policy::types::{Description, Diagnostic, PluginError, Policy, Snapshot};

struct Future;

impl Metadata for Future {
    fn describe() -> Description {
        Description { name: "future-api".into(), version: "0.0.0".into(), summary: "built against 0.4.0".into(), settings_schema: String::new(), implements: vec![Policy::Networks] }
    }
    fn validate_settings(_: String) -> Result<(), Vec<Diagnostic>> {
        Ok(())
    }
}

impl Networks for Future {
    fn plan(_: Snapshot) -> Result<NetworkPlan, PluginError> {
        Ok(NetworkPlan { networks: vec![], attachments: vec![], diagnostics: vec![] })
    }
}

export!(Future);
