//! `policy-template`: publishes host ports on one address only (127.0.0.1 by default) and labels every service with
//! the team that owns it.
//!
//! Build: `orch plugin build` (or `cargo build --release --target wasm32-wasip2`).
//! Test:  `orch plugin test . --compose tests/compose.yaml --settings tests/settings.json --expect tests/expected.json`
//!        checks the fields this plugin decides; `cargo test` runs the tests below natively.
//! Use:   `orch up --plugin ./path/to/this/crate` or `[[plugins]] use = "./path/to/this/crate"` in orch.toml.

use orch_plugin_api::*;

/// The settings (`settings = { … }` in orch.toml). The doc comments become the JSON Schema's descriptions, shown by
/// `orch plugin inspect`; `deny_unknown_fields` turns a typo into an error that names the setting.
#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
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

/// `#[plugin]` tells orch which policies this plugin decides (here `services` and `ports`: the methods defined
/// below) and exports it.
#[plugin]
impl Plugin for PolicyTemplate {
    type Settings = Settings;

    fn describe() -> Description {
        describe("policy-template", env!("CARGO_PKG_VERSION"), "Publishes host ports on one address only and labels services with their team")
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        if s.host_ip.parse::<std::net::IpAddr>().is_err() {
            return vec![diagnostic(Level::Error, "template.host-ip", format!("{:?} is not an IP address", s.host_ip), Some("host-ip".into()))];
        }
        vec![]
    }

    fn services(snapshot: &Snapshot, s: &Settings) -> Result<ServicePlan, PluginError> {
        let mut plan = ServicePlan::default();
        if s.team.is_empty() {
            return Ok(plan);
        }
        for svc in &snapshot.services {
            plan.services.push(ServiceIntent { add_labels: key_values([("team", s.team.as_str())]), ..ServiceIntent::new(&svc.name) });
        }
        Ok(plan)
    }

    fn ports(snapshot: &Snapshot, s: &Settings) -> Result<PortPlan, PluginError> {
        let mut plan = PortPlan::default();
        for svc in &snapshot.services {
            for p in svc.ports.iter().filter(|p| p.strategy != PortStrategy::Unpublished) {
                plan.ports.push(PortIntent {
                    host_ip: Some(s.host_ip.clone()),
                    protocol: p.protocol.clone(),
                    ..PortIntent::new(&svc.name, p.container_port, p.strategy)
                });
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_their_paths() {
        let bad = validate_settings::<PolicyTemplate>(r#"{"host-ip": "localhost"}"#).unwrap_err();
        assert_eq!(bad[0].path.as_deref(), Some("host-ip"));
        let typo = validate_settings::<PolicyTemplate>(r#"{"teem": "data"}"#).unwrap_err();
        assert!(typo[0].message.contains("unknown field `teem`"), "{}", typo[0].message);
        assert!(validate_settings::<PolicyTemplate>(r#"{"host-ip": "::1", "team": "data"}"#).is_ok());
    }

    #[test]
    fn ports_go_to_the_chosen_address_and_services_get_the_team() {
        let snapshot = Snapshot { services: vec![Service { ports: vec![ServicePort::new(5432)], ..Service::new("db") }], ..Snapshot::default() };
        let settings = Settings { team: "data".into(), ..Settings::default() };
        let ports = PolicyTemplate::ports(&snapshot, &settings).unwrap();
        assert_eq!(ports.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
        let services = PolicyTemplate::services(&snapshot, &settings).unwrap();
        assert_eq!(services.services[0].add_labels, key_values([("team", "data")]));
        assert_eq!(PolicyTemplate::implements(), vec![Policy::Services, Policy::Ports]);
    }
}
