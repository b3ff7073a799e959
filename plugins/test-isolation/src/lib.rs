//! `test-isolation`: makes a compose file written for one copy safe to run many times in parallel (seeds 000, 002).
//!
//! In the environment kinds it applies to (test and ci by default) it drops fixed `container_name`s that would leak
//! onto shared networks (all of them with `drop-names = "always"`), publishes fixed
//! host ports on ephemeral ports instead, carves fixed subnets per environment, puts known databases' data
//! directories on tmpfs, gives services without limits default memory/cpu limits, and caps json-file logs. It refuses
//! `network_mode: host` and `bridge`, which every environment would share.

use std::collections::BTreeMap;

use orch_plugin_api::*;

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Environment kinds to isolate.
    #[schemars(extend("items" = {"enum": ["test", "dev", "ci", "prod"]}))]
    pub kinds: Vec<String>,
    /// Default memory limit in MiB for services without one (0: leave unlimited).
    pub memory_mb: u64,
    /// Default CPU limit for services without one (0: leave unlimited).
    pub cpus: f64,
    /// Put known databases' data directories on tmpfs.
    pub tmpfs_databases: bool,
    /// Extra image → data directory pairs for tmpfs.
    pub data_dirs: BTreeMap<String, String>,
    /// json-file log size cap, e.g. "10m" ("" leaves logging alone).
    pub log_max_size: String,
    /// Prefix length of carved subnets replacing fixed ones.
    #[schemars(range(min = 16, max = 28))]
    pub prefix: u8,
    /// Which fixed `container_name`s to drop. orch never uses them as container names; they live on as network
    /// aliases, which are private to the environment's own networks. "shared" (default) drops them where a service
    /// joins an external network, where the alias would be seen by other environments; "always" drops every one
    /// (code that still uses the old names then breaks, which is how to find it).
    #[schemars(extend("enum" = ["shared", "always"]))]
    pub drop_names: String,
    /// `network_mode: host` or `bridge` puts a service on a network every environment shares: "refuse" (default)
    /// fails the plan, "allow" lets it through (orch still warns).
    #[schemars(extend("enum" = ["refuse", "allow"]))]
    pub shared_networks: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kinds: vec!["test".into(), "ci".into()],
            memory_mb: 512,
            cpus: 1.0,
            tmpfs_databases: true,
            data_dirs: BTreeMap::new(),
            log_max_size: "10m".into(),
            prefix: 24,
            drop_names: "shared".into(),
            shared_networks: "refuse".into(),
        }
    }
}

/// Where well-known database images keep their data.
pub fn data_dir(image_base: &str) -> Option<&'static str> {
    Some(match image_base {
        "postgres" | "postgis" | "timescaledb" => "/var/lib/postgresql/data",
        "mysql" | "mariadb" => "/var/lib/mysql",
        "redis" | "valkey" => "/data",
        "clickhouse-server" | "clickhouse" => "/var/lib/clickhouse",
        "mongo" | "mongodb" => "/data/db",
        _ => return None,
    })
}

/// The settings, when they apply to the snapshot's environment kind.
fn applies<'a>(snapshot: &Snapshot, s: &'a Settings) -> Option<&'a Settings> {
    s.kinds.iter().any(|k| k == snapshot.env_kind.as_str()).then_some(s)
}

pub struct TestIsolation;

#[plugin]
impl Plugin for TestIsolation {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "test-isolation",
            env!("CARGO_PKG_VERSION"),
            "Parallel-safe test environments: no fixed container names, host ports or subnets; tmpfs databases; default limits; capped logs",
        )
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        let mut problems = vec![];
        for k in &s.kinds {
            if !["test", "dev", "ci", "prod"].contains(&k.as_str()) {
                problems.push(diagnostic(Level::Error, "isolation.kind", format!("unknown environment kind {k:?}"), Some("kinds".into())));
            }
        }
        if !(16..=28).contains(&s.prefix) {
            problems.push(diagnostic(Level::Error, "isolation.prefix", format!("prefix must be 16..28, not {}", s.prefix), Some("prefix".into())));
        }
        if s.drop_names != "shared" && s.drop_names != "always" {
            problems.push(diagnostic(
                Level::Error,
                "isolation.drop-names",
                format!("drop-names must be \"shared\" or \"always\", not {:?}", s.drop_names),
                Some("drop-names".into()),
            ));
        }
        if s.shared_networks != "refuse" && s.shared_networks != "allow" {
            problems.push(diagnostic(
                Level::Error,
                "isolation.shared-networks",
                format!("shared-networks must be \"refuse\" or \"allow\", not {:?}", s.shared_networks),
                Some("shared-networks".into()),
            ));
        }
        if s.cpus < 0.0 {
            problems.push(diagnostic(Level::Error, "isolation.cpus", "cpus must not be negative", Some("cpus".into())));
        }
        problems
    }

    fn services(snapshot: &Snapshot, settings: &Settings) -> Result<ServicePlan, PluginError> {
        let mut plan = ServicePlan { services: vec![], diagnostics: vec![] };
        let Some(s) = applies(snapshot, settings) else {
            return Ok(plan);
        };
        let external = |n: &str| snapshot.networks.iter().any(|x| x.name == n && x.external);
        for svc in &snapshot.services {
            let shared = svc.networks.iter().any(|n| external(&n.network));
            let drop = svc.container_name.is_some() && (s.drop_names == "always" || shared);
            if drop {
                plan.diagnostics.push(diagnostic(
                    Level::Info,
                    "isolation.name-dropped",
                    format!(
                        "{}: fixed container name {:?} dropped{}",
                        svc.name,
                        svc.container_name.as_deref().unwrap_or_default(),
                        if shared { " (it would be an alias on a network other environments share)" } else { "" }
                    ),
                    Some(format!("services.{}.container_name", svc.name)),
                ));
            }
            let mut intent = ServiceIntent { drop_container_name: drop, ..ServiceIntent::new(&svc.name) };
            if svc.resources.memory_limit.is_none() || svc.resources.cpus.is_none() {
                intent.resources = Some(Resources {
                    memory_limit: svc.resources.memory_limit.or((s.memory_mb > 0).then_some(s.memory_mb << 20)),
                    memory_reservation: None,
                    cpus: svc.resources.cpus.or((s.cpus > 0.0).then_some(s.cpus)),
                });
            }
            if s.tmpfs_databases {
                let base = svc.image_base().unwrap_or_default();
                let dir = s.data_dirs.get(base).map(String::as_str).or_else(|| data_dir(base));
                if let Some(dir) = dir.filter(|d| !svc.tmpfs.iter().any(|t| t.split(':').next() == Some(*d))) {
                    intent.add_tmpfs.push(dir.to_string());
                    plan.diagnostics.push(diagnostic(
                        Level::Info,
                        "isolation.tmpfs",
                        format!("{}: {dir} on tmpfs (fast, discarded with the environment)", svc.name),
                        Some(format!("services.{}.tmpfs", svc.name)),
                    ));
                }
            }
            // A size cap the compose file set, or another log driver it chose, is the user's decision.
            let uncapped_json = |l: &Logging| (l.driver == "json-file" || l.driver.is_empty()) && !l.options.iter().any(|kv| kv.key == "max-size");
            if !s.log_max_size.is_empty() && svc.logging.as_ref().is_none_or(uncapped_json) {
                let mut options = svc.logging.as_ref().map(|l| l.options.clone()).unwrap_or_default();
                options.push(KeyValue { key: "max-size".into(), value: s.log_max_size.clone() });
                if !options.iter().any(|kv| kv.key == "max-file") {
                    options.push(KeyValue { key: "max-file".into(), value: "3".into() });
                }
                intent.logging = Some(Logging { driver: "json-file".into(), options });
            }
            plan.services.push(intent);
        }
        Ok(plan)
    }

    fn networks(snapshot: &Snapshot, settings: &Settings) -> Result<NetworkPlan, PluginError> {
        let mut plan = NetworkPlan::empty();
        let Some(s) = applies(snapshot, settings) else {
            return Ok(plan);
        };
        if s.shared_networks == "refuse" {
            for svc in &snapshot.services {
                if let Some(mode @ ("host" | "bridge")) = svc.network_mode.as_deref() {
                    plan.diagnostics.push(diagnostic(
                        Level::Error,
                        "isolation.shared-network",
                        format!(
                            "service {}: network_mode {mode} puts it on a network every environment shares, so parallel copies collide; remove it, use a network of the compose file, or set test-isolation's shared-networks = \"allow\"",
                            svc.name
                        ),
                        Some(format!("services.{}.network_mode", svc.name)),
                    ));
                }
            }
        }
        for n in snapshot.networks.iter().filter(|n| !n.external) {
            if let Some(SubnetRequest::Fixed(cidr)) = &n.subnet {
                plan.diagnostics.push(diagnostic(
                    Level::Info,
                    "isolation.subnet",
                    format!("network {}: fixed subnet {cidr} replaced by a /{} carved for this environment", n.name, s.prefix),
                    Some(format!("networks.{}", n.name)),
                ));
                // orch drops the fixed gateway and ip-range along with the subnet they belonged to.
                plan.networks.push(NetworkIntent { subnet: Some(SubnetRequest::Size(s.prefix)), ..NetworkIntent::new(&n.name) });
            }
        }
        Ok(plan)
    }

    fn ports(snapshot: &Snapshot, settings: &Settings) -> Result<PortPlan, PluginError> {
        let mut plan = PortPlan { ports: vec![], diagnostics: vec![] };
        if applies(snapshot, settings).is_none() {
            return Ok(plan);
        }
        for svc in &snapshot.services {
            for p in svc.ports.iter().filter(|p| matches!(p.strategy, PortStrategy::Fixed(_))) {
                plan.ports.push(PortIntent {
                    service: svc.name.clone(),
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    host_ip: p.host_ip.clone(),
                    strategy: PortStrategy::Ephemeral,
                });
            }
        }
        Ok(plan)
    }
}
