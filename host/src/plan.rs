//! The plan: what orch will create for one environment. `draft` builds it from the compose model; plugins then
//! change it (see `plugins::apply`), `resolve` makes it concrete and `validate` checks it.
//!
//! The JSON form of [`Plan`] (`orch plan --format json`) is a stable interface, versioned by [`PLAN_FORMAT`].

use std::collections::BTreeMap;

use orch_compose::{Build, Condition, Healthcheck, Logging, Mount, Project, Published, Resources};
use serde::{Deserialize, Serialize};

/// Version of the plan's JSON format; bumped on any incompatible change.
pub const PLAN_FORMAT: &str = "orch.plan/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EnvKind {
    #[default]
    Test,
    Dev,
    Ci,
    Prod,
}

impl std::str::FromStr for EnvKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "test" => Ok(EnvKind::Test),
            "dev" => Ok(EnvKind::Dev),
            "ci" => Ok(EnvKind::Ci),
            "prod" => Ok(EnvKind::Prod),
            other => Err(format!("unknown environment kind {other:?}; use test, dev, ci or prod")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub level: Level,
    pub code: String,
    pub message: String,
    pub path: Option<String>,
    /// "compose", "orch" or "plugin:NAME".
    pub source: String,
}

/// Who an environment is: the names of everything derive from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub project: String,
    pub env_id: String,
    pub env_kind: EnvKind,
}

impl Identity {
    /// Stable per (project, environment): what plugins get instead of randomness.
    pub fn seed(&self) -> u64 {
        fnv1a(format!("{}/{}", self.project, self.env_id).as_bytes())
    }

    /// Labels every resource of this environment carries, so it can be found and removed from labels alone.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("orch.env".to_string(), self.env_id.clone()),
            ("orch.project".to_string(), self.project.clone()),
            ("orch.env-kind".to_string(), format!("{:?}", self.env_kind).to_lowercase()),
        ])
    }

    /// The engine-side name of a resource of this environment: `<project>-<env>-<name>`.
    pub fn resource_name(&self, name: &str) -> String {
        format!("{}-{}-{}", self.project, self.env_id, name)
    }
}

/// A small, stable hash (FNV-1a, 64 bit): the same on every machine and Rust version.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    #[serde(flatten)]
    pub identity: Identity,
    /// Plugins applied, in order.
    pub plugins: Vec<String>,
    pub networks: BTreeMap<String, NetworkPlan>,
    pub services: BTreeMap<String, ServicePlan>,
    pub volumes: BTreeMap<String, VolumePlan>,
    pub diagnostics: Vec<Diagnostic>,
    /// Field path → who set it, oldest first (`orch plan --explain`). Empty unless asked for in JSON output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubnetRequest {
    /// A subnet with this prefix length, carved from orch's pools for this environment.
    Size(u8),
    /// Exactly this CIDR.
    Fixed(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The engine-side name (`<project>-<env>-<name>`, or the real name of an external network).
    pub docker_name: String,
    pub external: bool,
    pub internal: bool,
    pub driver: String,
    pub subnet_request: Option<SubnetRequest>,
    /// The concrete subnet, after resolution.
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PortStrategy {
    Fixed { port: u16 },
    Range { start: u16, end: u16 },
    Hashed { start: u16, end: u16 },
    Ephemeral,
    Unpublished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
    pub strategy: PortStrategy,
    /// The host port after resolution; `None` for ephemeral (read back after start) and unpublished ports.
    pub host_port: Option<u16>,
}

impl PortPlan {
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    Either,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WaitStrategy {
    Running,
    Healthcheck,
    Tcp { container_port: u16 },
    Http { container_port: u16, path: String, status: u16 },
    LogLine { pattern: String, stream: LogStream, times: u32 },
    ExitZero,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub container_name: String,
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub ports: Vec<PortPlan>,
    pub networks: BTreeMap<String, Attachment>,
    pub healthcheck: Option<Healthcheck>,
    pub wait: Vec<WaitStrategy>,
    pub depends_on: BTreeMap<String, Condition>,
    pub resources: Resources,
    pub tmpfs: Vec<String>,
    pub volumes: Vec<Mount>,
    pub labels: BTreeMap<String, String>,
    pub restart: Option<String>,
    /// The compose file's `container_name`: kept as a network alias so addresses that used it still resolve.
    pub requested_container_name: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub logging: Option<Logging>,
    pub stop_grace_period_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub docker_name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
}

impl Plan {
    /// Records that `source` set the field at `path` (the last entry wins).
    pub fn set_by(&mut self, path: impl Into<String>, source: &str) {
        let chain = self.provenance.entry(path.into()).or_default();
        if chain.last().map(String::as_str) != Some(source) {
            chain.push(source.to_string());
        }
    }

    pub fn diagnose(&mut self, level: Level, code: &str, message: impl Into<String>, path: Option<String>, source: &str) {
        self.diagnostics.push(Diagnostic { level, code: code.into(), message: message.into(), path, source: source.into() });
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

/// The draft plan: the compose model, normalised, with orch's names and default wait strategies.
pub fn draft(project: &Project, identity: &Identity, variables: &BTreeMap<String, String>) -> Plan {
    let mut plan = Plan {
        format: PLAN_FORMAT.into(),
        identity: identity.clone(),
        plugins: vec![],
        networks: BTreeMap::new(),
        services: BTreeMap::new(),
        volumes: BTreeMap::new(),
        diagnostics: vec![],
        provenance: BTreeMap::new(),
    };
    const COMPOSE: &str = "compose";
    for (name, n) in &project.networks {
        let ipam = n.ipam.first();
        let subnet_request = ipam.and_then(|c| c.subnet.clone()).map(SubnetRequest::Fixed);
        let docker_name = if n.external { n.name.clone().unwrap_or_else(|| name.clone()) } else { identity.resource_name(name) };
        if !n.external && n.name.is_some() {
            plan.diagnose(
                Level::Info,
                "compose.network-name-ignored",
                format!("network {name} asks for the fixed name {:?}; orch names it {docker_name} so environments do not collide", n.name.as_deref().unwrap_or_default()),
                Some(format!("networks.{name}.name")),
                "orch",
            );
        }
        plan.networks.insert(
            name.clone(),
            NetworkPlan {
                docker_name,
                external: n.external,
                internal: n.internal,
                driver: n.driver.clone().unwrap_or_else(|| "bridge".into()),
                subnet_request,
                subnet: None,
                gateway: ipam.and_then(|c| c.gateway.clone()),
                ip_range: ipam.and_then(|c| c.ip_range.clone()),
                driver_opts: n.driver_opts.clone(),
                labels: n.labels.clone(),
            },
        );
        plan.set_by(format!("networks.{name}"), COMPOSE);
        if ipam.is_some_and(|c| c.subnet.is_some()) {
            plan.set_by(format!("networks.{name}.subnet"), COMPOSE);
        }
    }
    for (name, v) in &project.volumes {
        let docker_name = if v.external { v.name.clone().unwrap_or_else(|| name.clone()) } else { identity.resource_name(name) };
        plan.volumes.insert(
            name.clone(),
            VolumePlan { docker_name, external: v.external, driver: v.driver.clone(), driver_opts: v.driver_opts.clone() },
        );
    }
    // Services that others wait on with service_completed_successfully are one-shots: done when they exit 0.
    let one_shots: Vec<&String> = project
        .services
        .values()
        .flat_map(|s| s.depends_on.iter())
        .filter(|(_, d)| d.condition == Condition::ServiceCompletedSuccessfully)
        .map(|(n, _)| n)
        .collect();
    for (name, s) in &project.services {
        let environment = s
            .environment
            .iter()
            .filter_map(|(k, v)| v.clone().or_else(|| variables.get(k).cloned()).map(|v| (k.clone(), v)))
            .collect();
        let ports = s
            .ports
            .iter()
            .map(|p| PortPlan {
                container_port: p.target,
                protocol: p.protocol.clone(),
                host_ip: p.host_ip.clone(),
                strategy: match p.published {
                    Some(Published::Port(port)) => PortStrategy::Fixed { port },
                    Some(Published::Range(start, end)) => PortStrategy::Range { start, end },
                    None => PortStrategy::Ephemeral,
                },
                host_port: None,
            })
            .collect::<Vec<_>>();
        let has_health = s.healthcheck.as_ref().is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"));
        let wait = if one_shots.contains(&name) {
            vec![WaitStrategy::ExitZero]
        } else if has_health {
            vec![WaitStrategy::Healthcheck]
        } else {
            vec![WaitStrategy::Running]
        };
        let networks = s
            .networks
            .iter()
            .map(|(n, a)| (n.clone(), Attachment { aliases: a.aliases.clone(), ipv4_address: a.ipv4_address.clone() }))
            .collect();
        if s.container_name.is_some() {
            plan.diagnose(
                Level::Info,
                "compose.container-name-alias",
                format!(
                    "service {name} asks for the fixed container name {:?}; orch names the container {} and keeps the old name as a network alias",
                    s.container_name.as_deref().unwrap_or_default(),
                    identity.resource_name(name)
                ),
                Some(format!("services.{name}.container_name")),
                "orch",
            );
        }
        let service = ServicePlan {
            container_name: identity.resource_name(name),
            image: s.image.clone(),
            build: s.build.clone(),
            command: s.command.clone(),
            entrypoint: s.entrypoint.clone(),
            environment,
            ports,
            networks,
            healthcheck: s.healthcheck.clone(),
            wait,
            depends_on: s.depends_on.iter().map(|(n, d)| (n.clone(), d.condition)).collect(),
            resources: s.resources.clone(),
            tmpfs: s.tmpfs.clone(),
            volumes: s.volumes.clone(),
            labels: s.labels.clone(),
            restart: s.restart.clone(),
            requested_container_name: s.container_name.clone(),
            hostname: s.hostname.clone(),
            user: s.user.clone(),
            working_dir: s.working_dir.clone(),
            logging: s.logging.clone(),
            stop_grace_period_ms: s.stop_grace_period_ms,
        };
        let p = format!("services.{name}");
        plan.set_by(format!("{p}.image"), COMPOSE);
        plan.set_by(format!("{p}.networks"), COMPOSE);
        for port in &service.ports {
            plan.set_by(format!("{p}.ports.{}", port.key()), COMPOSE);
        }
        if service.healthcheck.is_some() {
            plan.set_by(format!("{p}.healthcheck"), COMPOSE);
        }
        plan.set_by(format!("{p}.wait"), if has_health { COMPOSE } else { "orch" });
        if service.resources != Resources::default() {
            plan.set_by(format!("{p}.resources"), COMPOSE);
        }
        plan.services.insert(name.clone(), service);
    }
    plan
}
