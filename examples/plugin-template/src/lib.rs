//! `policy-template`: publishes host ports on one address only (127.0.0.1 by default) and labels every service with
//! the team that owns it. Replace the policy with yours; `orch plugin test` checks it against tests/expected-plan.json.
//!
//! Build: `orch plugin build` (or `cargo build --release --target wasm32-wasip2`).
//! Test:  `orch plugin test . --compose tests/compose.yaml --settings tests/settings.json --expect tests/expected-plan.json`
//! Use:   `orch up --plugin ./path/to/this/crate` or `[[plugins]] use = "./path/to/this/crate"` in orch.toml.

use orch_plugin_api::*;

#[derive(serde::Deserialize, Debug)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The host address ports are published on.
    pub host_ip: String,
    /// Added to every service as the `team` label ("" adds none).
    pub team: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { host_ip: "127.0.0.1".into(), team: String::new() }
    }
}

pub struct PolicyTemplate;

impl Plugin for PolicyTemplate {
    fn describe() -> Description {
        describe("policy-template", env!("CARGO_PKG_VERSION"), "Publishes host ports on one address only and labels services with their team", &[Policy::Services, Policy::Ports])
            .with_settings_schema(r#"{"type":"object","additionalProperties":false,"properties":{"host-ip":{"type":"string"},"team":{"type":"string"}}}"#)
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<Diagnostic>> {
        let s: Settings = parse_settings(settings).map_err(settings_problems)?;
        if s.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(vec![diagnostic(Level::Error, "template.host-ip", format!("{:?} is not an IP address", s.host_ip), Some("host-ip".into()))]);
        }
        Ok(())
    }

    fn services(snapshot: &Snapshot) -> Result<ServicePlan, PluginError> {
        let s: Settings = parse_settings(&snapshot.settings)?;
        let mut plan = ServicePlan { services: vec![], diagnostics: vec![] };
        if s.team.is_empty() {
            return Ok(plan);
        }
        for svc in &snapshot.services {
            plan.services.push(ServiceIntent { add_labels: vec![KeyValue { key: "team".into(), value: s.team.clone() }], ..ServiceIntent::new(&svc.name) });
        }
        Ok(plan)
    }

    fn ports(snapshot: &Snapshot) -> Result<PortPlan, PluginError> {
        let s: Settings = parse_settings(&snapshot.settings)?;
        let mut plan = PortPlan { ports: vec![], diagnostics: vec![] };
        for svc in &snapshot.services {
            for p in svc.ports.iter().filter(|p| p.strategy != PortStrategy::Unpublished) {
                plan.ports.push(PortIntent {
                    service: svc.name.clone(),
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    host_ip: Some(s.host_ip.clone()),
                    strategy: p.strategy.clone(),
                });
            }
        }
        Ok(plan)
    }
}

export_plugin!(PolicyTemplate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_bad_address() {
        assert!(PolicyTemplate::validate_settings(r#"{"host-ip": "localhost"}"#).is_err());
        assert!(PolicyTemplate::validate_settings(r#"{"host-ip": "::1", "team": "data"}"#).is_ok());
    }
}
