//! `port-ranges`: where each environment kind publishes host ports (seeds 001 and 004).
//!
//! Defaults: dev and prod keep the compose file's standard ports; test picks from 30000–40000 and ci from the
//! dynamic pool 9500–9999, hashed so the same environment gets the same ports on every run. Per-service settings
//! override the strategy (`fixed`, `range`, `hashed`, `ephemeral`, `unpublished`).

use std::collections::BTreeMap;

use orch_plugin_api::*;

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Keep what the compose file says.
    Standard,
    Range,
    Hashed,
    Ephemeral,
    Unpublished,
    Fixed,
}

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KindRule {
    pub strategy: Strategy,
    /// "START-END", for range and hashed.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+-[0-9]+$"))]
    pub range: Option<String>,
}

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServiceRule {
    pub strategy: Strategy,
    /// "START-END", for range and hashed.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[0-9]+-[0-9]+$"))]
    pub range: Option<String>,
    /// For `fixed`: the host port (else the container port).
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Per environment kind (test, dev, ci, prod); merged over the defaults.
    #[schemars(extend("propertyNames" = {"enum": ["test", "dev", "ci", "prod"]}))]
    pub kinds: BTreeMap<String, KindRule>,
    /// Per service, whatever the kind.
    pub services: BTreeMap<String, ServiceRule>,
    /// Publish on this host address only (e.g. "127.0.0.1").
    pub host_ip: Option<String>,
}

fn default_kinds() -> BTreeMap<String, KindRule> {
    let rule = |strategy, range: Option<&str>| KindRule { strategy, range: range.map(String::from) };
    BTreeMap::from([
        ("dev".to_string(), rule(Strategy::Standard, None)),
        ("prod".to_string(), rule(Strategy::Standard, None)),
        ("test".to_string(), rule(Strategy::Hashed, Some("30000-40000"))),
        ("ci".to_string(), rule(Strategy::Hashed, Some("9500-9999"))),
    ])
}

pub fn parse_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.split_once('-')?;
    let (start, end) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (start > 0 && start <= end).then_some(PortRange { start, end })
}

impl Settings {
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut out = vec![];
        for (k, rule) in &self.kinds {
            if !["test", "dev", "ci", "prod"].contains(&k.as_str()) {
                out.push(diagnostic(
                    Level::Error,
                    "ports.kind",
                    format!("unknown environment kind {k:?}; use test, dev, ci or prod"),
                    Some(format!("kinds.{k}")),
                ));
            }
            out.extend(check_range(&rule.strategy, rule.range.as_deref(), &format!("kinds.{k}")));
        }
        for (s, rule) in &self.services {
            out.extend(check_range(&rule.strategy, rule.range.as_deref(), &format!("services.{s}")));
        }
        out
    }

    fn rule_for(&self, kind: EnvKind) -> KindRule {
        let mut kinds = default_kinds();
        kinds.extend(self.kinds.clone());
        kinds.remove(kind.as_str()).expect("every kind has a default")
    }
}

fn check_range(strategy: &Strategy, range: Option<&str>, path: &str) -> Vec<Diagnostic> {
    match (strategy, range) {
        (Strategy::Range | Strategy::Hashed, None) => {
            vec![diagnostic(Level::Error, "ports.range", "range and hashed need `range: \"START-END\"`", Some(path.into()))]
        }
        (_, Some(r)) if parse_range(r).is_none() => {
            vec![diagnostic(Level::Error, "ports.range", format!("invalid range {r:?}; use \"START-END\" with 1 ≤ START ≤ END ≤ 65535"), Some(path.into()))]
        }
        _ => vec![],
    }
}

fn strategy(rule_strategy: &Strategy, range: Option<&str>, fixed: Option<u16>, current: &PortStrategy, container_port: u16) -> PortStrategy {
    let r = || range.and_then(parse_range).expect("checked by validate-settings");
    match rule_strategy {
        Strategy::Standard => *current,
        Strategy::Range => PortStrategy::Range(r()),
        Strategy::Hashed => PortStrategy::Hashed(r()),
        Strategy::Ephemeral => PortStrategy::Ephemeral,
        Strategy::Unpublished => PortStrategy::Unpublished,
        Strategy::Fixed => PortStrategy::Fixed(fixed.unwrap_or(container_port)),
    }
}

pub struct PortRanges;

#[plugin]
impl Plugin for PortRanges {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "port-ranges",
            env!("CARGO_PKG_VERSION"),
            "Host ports per environment kind: dev/prod standard, test hashed in 30000-40000, ci hashed in 9500-9999; per-service overrides",
        )
    }

    fn check_settings(settings: &Settings) -> Vec<Diagnostic> {
        settings.check()
    }

    fn ports(snapshot: &Snapshot, settings: &Settings) -> Result<PortPlan, PluginError> {
        if let Some(d) = settings.check().into_iter().next() {
            return Err(error(&d.code, d.message, d.path));
        }
        let kind = settings.rule_for(snapshot.env_kind);
        let mut plan = PortPlan { ports: vec![], diagnostics: vec![] };
        for service in &snapshot.services {
            let rule = settings.services.get(&service.name);
            for port in service.ports.iter().filter(|p| p.strategy != PortStrategy::Unpublished || rule.is_some()) {
                let strategy = match rule {
                    Some(r) => strategy(&r.strategy, r.range.as_deref(), r.port, &port.strategy, port.container_port),
                    None => strategy(&kind.strategy, kind.range.as_deref(), None, &port.strategy, port.container_port),
                };
                let host_ip = settings.host_ip.clone().or_else(|| port.host_ip.clone());
                if strategy == port.strategy && host_ip == port.host_ip {
                    continue;
                }
                plan.ports.push(PortIntent {
                    service: service.name.clone(),
                    container_port: port.container_port,
                    protocol: port.protocol.clone(),
                    host_ip,
                    strategy,
                });
            }
        }
        Ok(plan)
    }
}
