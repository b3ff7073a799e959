//! `bpo-networks`: the BPO project's five network tiers (main, gpu, db, monitoring, external).
//!
//! Every service is attached to the tiers its name (or, failing that, its image) is assigned in the settings; the
//! defaults are the BPO team's own table. db, gpu and monitoring are `internal` (no route out), and only services on a
//! publishing tier (external by default) keep host ports. Subnets are carved per environment by default so parallel
//! environments never collide; `"subnets": "fixed"` reproduces the BPO document's 172.30–34.0.0/16 for one dev stack.

use std::collections::BTreeMap;

use orch_plugin_api::*;

pub const TIERS: [&str; 5] = ["main", "gpu", "db", "monitoring", "external"];
const INTERNAL_TIERS: [&str; 3] = ["gpu", "db", "monitoring"];

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// "carved" (per environment, default) or "fixed" (the BPO document's subnets).
    #[schemars(extend("enum" = ["carved", "fixed"]))]
    pub subnets: String,
    /// Prefix length of carved tier subnets.
    #[schemars(range(min = 16, max = 28))]
    pub prefix: u8,
    /// Service (or image) name → tiers. Merged over the defaults; an empty list removes a default.
    #[schemars(extend("additionalProperties" = {"type": "array", "items": {"enum": TIERS}}))]
    pub assignments: BTreeMap<String, Vec<String>>,
    /// Tiers of services that match no assignment.
    #[schemars(extend("items" = {"enum": TIERS}))]
    pub default_tiers: Vec<String>,
    /// Only services on one of these tiers publish host ports.
    #[schemars(extend("items" = {"enum": TIERS}))]
    pub publish_tiers: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            subnets: "carved".into(),
            prefix: 24,
            assignments: BTreeMap::new(),
            default_tiers: vec!["main".into()],
            publish_tiers: vec!["external".into()],
        }
    }
}

/// The BPO document's service-to-tier table.
pub fn default_assignments() -> BTreeMap<String, Vec<String>> {
    let table: &[(&str, &[&str])] = &[
        ("postgres", &["main", "db"]),
        ("prefect-db", &["main", "db"]),
        ("pgbouncer", &["main", "db"]),
        ("prefect-server", &["main", "external"]),
        ("prefect-agent", &["main", "gpu"]),
        ("api", &["main", "gpu", "external"]),
        ("redis", &["main"]),
        ("ollama", &["main", "gpu"]),
        ("label-studio", &["main", "external"]),
        ("grafana", &["main", "monitoring"]),
        ("prometheus", &["main", "monitoring"]),
    ];
    table.iter().map(|(k, v)| (k.to_string(), v.iter().map(|t| t.to_string()).collect())).collect()
}

/// The BPO document's fixed subnets: (tier, subnet, gateway, ip-range).
const FIXED: [(&str, &str, &str, Option<&str>); 5] = [
    ("main", "172.30.0.0/16", "172.30.0.1", Some("172.30.240.0/20")),
    ("gpu", "172.31.0.0/16", "172.31.0.1", None),
    ("db", "172.32.0.0/16", "172.32.0.1", None),
    ("monitoring", "172.33.0.0/16", "172.33.0.1", None),
    ("external", "172.34.0.0/16", "172.34.0.1", None),
];

impl Settings {
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut out = vec![];
        if self.subnets != "carved" && self.subnets != "fixed" {
            out.push(diagnostic(
                Level::Error,
                "bpo.settings",
                format!("`subnets` must be \"carved\" or \"fixed\", not {:?}", self.subnets),
                Some("subnets".into()),
            ));
        }
        if !(16..=28).contains(&self.prefix) {
            out.push(diagnostic(Level::Error, "bpo.settings", format!("`prefix` must be between 16 and 28, not {}", self.prefix), Some("prefix".into())));
        }
        let tier_lists = self
            .assignments
            .iter()
            .map(|(k, v)| (format!("assignments.{k}"), v))
            .chain([("default-tiers".to_string(), &self.default_tiers), ("publish-tiers".to_string(), &self.publish_tiers)]);
        for (path, tiers) in tier_lists {
            for t in tiers {
                if !TIERS.contains(&t.as_str()) {
                    out.push(diagnostic(
                        Level::Error,
                        "bpo.unknown-tier",
                        format!("unknown tier {t:?}; the tiers are {}", TIERS.join(", ")),
                        Some(path.clone()),
                    ));
                }
            }
        }
        out
    }

    fn table(&self) -> BTreeMap<String, Vec<String>> {
        let mut table = default_assignments();
        table.extend(self.assignments.iter().map(|(k, v)| (normalize(k), v.clone())));
        table
    }

    /// The tiers a service belongs to, in tier order.
    pub fn tiers_of(&self, service: &Service) -> Vec<String> {
        self.tiers_in(&self.table(), service)
    }

    fn tiers_in(&self, table: &BTreeMap<String, Vec<String>>, service: &Service) -> Vec<String> {
        let found = table.get(&normalize(&service.name)).or_else(|| service.image_base().and_then(|base| table.get(&normalize(base))));
        let tiers = found.unwrap_or(&self.default_tiers);
        TIERS.iter().filter(|t| tiers.iter().any(|x| x == *t)).map(|t| t.to_string()).collect()
    }
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', ' '], "-")
}

pub struct BpoNetworks;

#[plugin]
impl Plugin for BpoNetworks {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "bpo-networks",
            env!("CARGO_PKG_VERSION"),
            "BPO five-tier networks: main, gpu, db, monitoring, external; db/gpu/monitoring internal; only the external tier publishes ports",
        )
    }

    fn check_settings(settings: &Settings) -> Vec<Diagnostic> {
        settings.check()
    }

    fn networks(snapshot: &Snapshot, settings: &Settings) -> Result<NetworkPlan, PluginError> {
        let mut plan = NetworkPlan::empty();
        for tier in TIERS {
            let (subnet, gateway, ip_range) = if settings.subnets == "fixed" {
                let (_, subnet, gw, range) = FIXED.iter().find(|f| f.0 == tier).expect("every tier has a fixed subnet");
                (SubnetRequest::Fixed(subnet.to_string()), Some(gw.to_string()), range.map(str::to_string))
            } else {
                (SubnetRequest::Size(settings.prefix), None, None)
            };
            plan.networks.push(NetworkIntent {
                name: tier.into(),
                subnet: Some(subnet),
                gateway,
                ip_range,
                internal: Some(INTERNAL_TIERS.contains(&tier)),
                driver: Some("bridge".into()),
                driver_opts: vec![],
            });
        }
        let table = settings.table();
        for service in &snapshot.services {
            // Aliases the service already had keep working on every tier it joins.
            let mut aliases: Vec<String> = service.networks.iter().flat_map(|n| n.aliases.iter().cloned()).collect();
            aliases.sort();
            aliases.dedup();
            let networks = settings
                .tiers_in(&table, service)
                .into_iter()
                .map(|tier| ServiceNetwork { network: tier, aliases: aliases.clone(), ipv4_address: None })
                .collect();
            plan.attachments.push(Attachments { service: service.name.clone(), networks });
        }
        Ok(plan)
    }

    fn ports(snapshot: &Snapshot, settings: &Settings) -> Result<PortPlan, PluginError> {
        let mut plan = PortPlan { ports: vec![], diagnostics: vec![] };
        for service in &snapshot.services {
            let publishes = service.networks.iter().any(|n| settings.publish_tiers.contains(&n.network));
            if publishes {
                continue;
            }
            for port in service.ports.iter().filter(|p| p.strategy != PortStrategy::Unpublished) {
                let path = format!("services.{}.ports.{}/{}", service.name, port.container_port, port.protocol);
                plan.diagnostics.push(diagnostic(
                    Level::Info,
                    "bpo.port-dropped",
                    format!(
                        "{} is not on a publishing tier ({}); its port {} stays inside the environment",
                        service.name,
                        settings.publish_tiers.join(", "),
                        port.container_port
                    ),
                    Some(path),
                ));
                plan.ports.push(PortIntent {
                    service: service.name.clone(),
                    container_port: port.container_port,
                    protocol: port.protocol.clone(),
                    host_ip: port.host_ip.clone(),
                    strategy: PortStrategy::Unpublished,
                });
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, image: &str) -> Service {
        Service { image: Some(image.into()), ..Service::new(name) }
    }

    #[test]
    fn tiers_by_name_then_image_then_default() {
        let s = Settings::default();
        assert_eq!(s.tiers_of(&service("api", "x")), ["main", "gpu", "external"]);
        assert_eq!(s.tiers_of(&service("Label_Studio", "x")), ["main", "external"]);
        assert_eq!(s.tiers_of(&service("db", "docker.io/library/postgres:15-alpine")), ["main", "db"]);
        assert_eq!(s.tiers_of(&service("worker", "busybox")), ["main"]);
    }

    #[test]
    fn settings_override_and_are_checked() {
        let s: Settings = serde_json::from_str(r#"{"assignments": {"worker": ["gpu", "main"]}, "default-tiers": ["monitoring"]}"#).unwrap();
        assert_eq!(s.tiers_of(&service("worker", "x")), ["main", "gpu"]);
        assert_eq!(s.tiers_of(&service("other", "x")), ["monitoring"]);
        let bad: Settings = serde_json::from_str(r#"{"subnets": "both", "prefix": 30, "publish-tiers": ["roof"]}"#).unwrap();
        let codes: Vec<String> = bad.check().into_iter().map(|d| d.code).collect();
        assert_eq!(codes, ["bpo.settings", "bpo.settings", "bpo.unknown-tier"]);
    }
}
