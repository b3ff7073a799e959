//! The plan: what orch will create for one environment. `draft` builds it from the compose model; plugins then
//! change it (see `plugins::apply`), `resolve` makes it concrete and `validate` checks it.
//!
//! The JSON form of [`Plan`] (`orch plan --format json`) is a stable interface, versioned by [`PLAN_FORMAT`].

use std::collections::BTreeMap;

use orch_compose::{Build, Condition, Healthcheck, Logging, Mount, Project, Published, Resources, Runtime};
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
            (crate::labels::ENV.to_string(), self.env_id.clone()),
            (crate::labels::PROJECT.to_string(), self.project.clone()),
            (crate::labels::ENV_KIND.to_string(), format!("{:?}", self.env_kind).to_lowercase()),
        ])
    }

    /// The engine-side name of a resource of this environment: `<project>__<env>__<name>`. Project names never
    /// contain `__` (nor end in `_`) and environment ids have no `_` at all, so the first two `__` split a name back
    /// into its parts: two environments can never share a name (`-` could not do that, as both parts may contain it).
    pub fn resource_name(&self, name: &str) -> String {
        resource_name(&self.project, &self.env_id, name)
    }
}

/// `<project>__<env>__<name>`: see [`Identity::resource_name`].
pub fn resource_name(project: &str, env: &str, name: &str) -> String {
    format!("{project}{SEP}{env}{SEP}{name}")
}

/// The compose file's labels without those under `orch.`: orch's own, which the reaper and `gc` decide from
/// (`orch.lifetime`, `orch.expires`, `orch.marker`…), so a repository may not set them. Each one dropped is a warning
/// (an exported plan carries orch's labels and is imported again without them).
fn user_labels(plan: &mut Plan, path: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let (ours, theirs): (BTreeMap<_, _>, BTreeMap<_, _>) = labels.iter().map(|(k, v)| (k.clone(), v.clone())).partition(|(k, _)| k.starts_with("orch."));
    for k in ours.keys() {
        plan.diagnose(
            Level::Warning,
            "compose.reserved-label",
            format!("{path}: label {k} dropped: labels under `orch.` are orch's own and it sets them itself; rename it if it is yours"),
            Some(format!("{path}.labels.{k}")),
            "orch",
        );
    }
    theirs
}

/// What separates the project, the environment and the resource in an engine-side name.
pub const SEP: &str = "__";

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
    /// Container ports exposed to other containers without being published (`expose:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `none`, `host`, `bridge`, `service:NAME` (a service of this environment) or `container:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `SERVICE[:ro|rw]` of this environment, or `container:NAME[:ro|rw]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// (service, alias): the alias resolves to that service for this container only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(String, String)>,
    /// Secrets and configs, as files in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// The compose profiles the service belongs to (it is in the plan because one of them is active, or none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Container options applied as written (capabilities, ulimits, sysctls, DNS, devices…).
    #[serde(default, skip_serializing_if = "Runtime::is_empty")]
    pub runtime: Runtime,
}

/// A secret or config the container reads as a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePlan {
    /// `secret` or `config`.
    pub kind: String,
    pub name: String,
    /// Absolute path in the container.
    pub target: String,
    pub source: FileSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl FilePlan {
    /// A file source without ownership or mode is bind-mounted read-only, as compose does; everything else is
    /// copied into the container before it starts, with its owner and mode.
    pub fn is_bind(&self) -> bool {
        matches!(self.source, FileSource::File { .. }) && self.uid.is_none() && self.gid.is_none() && self.mode.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    /// A host file.
    File { path: std::path::PathBuf },
    /// The value of a variable, read when the plan was made; the plan's JSON names the variable, never the value.
    Environment {
        variable: String,
        #[serde(skip)]
        value: String,
    },
    /// Inline content (configs).
    Content { content: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumePlan {
    pub docker_name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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

/// Who set a field the compose file gave.
const COMPOSE: &str = "compose";

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
    for (name, n) in &project.networks {
        draft_network(&mut plan, identity, name, n);
    }
    for (name, v) in &project.volumes {
        let docker_name = if v.external { v.name.clone().unwrap_or_else(|| name.clone()) } else { identity.resource_name(name) };
        let labels = user_labels(&mut plan, &format!("volumes.{name}"), &v.labels);
        plan.volumes
            .insert(name.clone(), VolumePlan { docker_name, external: v.external, driver: v.driver.clone(), driver_opts: v.driver_opts.clone(), labels });
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
        let service = draft_service(&mut plan, project, variables, name, s, one_shots.contains(&name));
        plan.services.insert(name.clone(), service);
    }
    plan
}

/// A network of the compose file in the plan: orch's name unless external, its IPAM as asked.
fn draft_network(plan: &mut Plan, identity: &Identity, name: &String, n: &orch_compose::Network) {
    let ipam = n.ipam.first();
    let subnet_request = ipam.and_then(|c| c.subnet.clone()).map(SubnetRequest::Fixed);
    let docker_name = if n.external { n.name.clone().unwrap_or_else(|| name.clone()) } else { identity.resource_name(name) };
    if !n.external && n.name.is_some() {
        plan.diagnose(
            Level::Info,
            "compose.network-name-ignored",
            format!(
                "network {name} asks for the fixed name {:?}; orch names it {docker_name} so environments do not collide",
                n.name.as_deref().unwrap_or_default()
            ),
            Some(format!("networks.{name}.name")),
            "orch",
        );
    }
    let labels = user_labels(plan, &format!("networks.{name}"), &n.labels);
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
            labels,
        },
    );
    plan.set_by(format!("networks.{name}"), COMPOSE);
    if ipam.is_some_and(|c| c.subnet.is_some()) {
        plan.set_by(format!("networks.{name}.subnet"), COMPOSE);
    }
}

/// A service of the compose file in the plan: orch's container name, ports as strategies, a wait strategy (exit 0
/// for a one-shot, the healthcheck when it has one, else running), its files.
fn draft_service(
    plan: &mut Plan,
    project: &Project,
    variables: &BTreeMap<String, String>,
    name: &String,
    s: &orch_compose::Service,
    one_shot: bool,
) -> ServicePlan {
    let identity = plan.identity.clone();
    let environment = s.environment.iter().filter_map(|(k, v)| v.clone().or_else(|| variables.get(k).cloned()).map(|v| (k.clone(), v))).collect();
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
    let wait = if one_shot {
        vec![WaitStrategy::ExitZero]
    } else if has_health {
        vec![WaitStrategy::Healthcheck]
    } else {
        vec![WaitStrategy::Running]
    };
    let networks = s.networks.iter().map(|(n, a)| (n.clone(), Attachment { aliases: a.aliases.clone(), ipv4_address: a.ipv4_address.clone() })).collect();
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
    let labels = user_labels(plan, &format!("services.{name}"), &s.labels);
    let mut build = s.build.clone();
    if let Some(b) = &mut build {
        b.labels = user_labels(plan, &format!("services.{name}.build"), &b.labels);
    }
    let service = ServicePlan {
        container_name: identity.resource_name(name),
        image: s.image.clone(),
        build,
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
        labels,
        restart: s.restart.clone(),
        requested_container_name: s.container_name.clone(),
        hostname: s.hostname.clone(),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        logging: s.logging.clone(),
        stop_grace_period_ms: s.stop_grace_period_ms,
        expose: s.expose.clone(),
        network_mode: network_mode(plan, project, name, s),
        volumes_from: s.volumes_from.clone(),
        links: s.links.clone(),
        files: files(plan, project, name, s, variables),
        pull_policy: s.pull_policy.clone(),
        profiles: s.profiles.clone(),
        runtime: s.runtime.clone(),
    };

    let mut service = service;
    // A service sharing another's network namespace starts after it, however the compose file named it.
    if let Some(target) = service.network_mode.as_deref().and_then(|m| m.strip_prefix("service:")) {
        service.depends_on.entry(target.to_string()).or_insert(Condition::ServiceStarted);
    }
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
    service
}

/// The service's secrets and configs as files; external ones (Swarm objects) cannot be mounted and are reported.
fn files(plan: &mut Plan, project: &Project, service: &str, s: &orch_compose::Service, variables: &BTreeMap<String, String>) -> Vec<FilePlan> {
    let mut out = vec![];
    for (kind, list, defined) in [("secret", &s.secrets, &project.secrets), ("config", &s.configs, &project.configs)] {
        for (i, r) in list.iter().enumerate() {
            let Some(def) = defined.get(&r.source) else {
                continue;
            };
            let path = Some(format!("services.{service}.{kind}s[{i}]"));
            let source = if def.external {
                plan.diagnose(
                    Level::Warning,
                    "compose.external-not-mounted",
                    format!(
                        "{kind} {} is external, an object of Docker Swarm; on one engine orch cannot mount it, so {} will not exist in service {service}",
                        r.source, r.target
                    ),
                    path,
                    "compose",
                );
                continue;
            } else if let Some(f) = &def.file {
                FileSource::File { path: f.clone() }
            } else if let Some(var) = &def.environment {
                match variables.get(var) {
                    Some(value) => FileSource::Environment { variable: var.clone(), value: value.clone() },
                    None => {
                        plan.diagnose(
                            Level::Error,
                            "compose.secret-variable-unset",
                            format!("{kind} {} comes from the variable {var}, which is not set; export it or put it in .env", r.source),
                            path,
                            "compose",
                        );
                        continue;
                    }
                }
            } else if let Some(content) = &def.content {
                FileSource::Content { content: content.clone() }
            } else {
                continue;
            };
            out.push(FilePlan {
                kind: kind.into(),
                name: r.source.clone(),
                target: r.target.clone(),
                source,
                uid: r.uid.clone(),
                gid: r.gid.clone(),
                mode: r.mode,
            });
        }
    }
    out
}

/// `network_mode` keeps isolation when it stays inside the environment (`none`, `service:`, a `container:` that names
/// a service of this project); `host` and `bridge` leave it, which the plan says, and a plugin may refuse.
fn network_mode(plan: &mut Plan, project: &Project, name: &str, s: &orch_compose::Service) -> Option<String> {
    let mode = s.network_mode.as_deref()?;
    let path = Some(format!("services.{name}.network_mode"));
    match mode {
        "none" => {}
        "host" => plan.diagnose(
            Level::Warning,
            "compose.network-mode-host",
            format!("service {name} uses the host's network: it is not isolated from other environments or the host, its ports are the host's own (two environments of this project will collide on them), and service names of the environment do not resolve from it"),
            path,
            "orch",
        ),
        "bridge" | "default" => plan.diagnose(
            Level::Warning,
            "compose.network-mode-bridge",
            format!("service {name} is on Docker's default bridge, shared by every container on this host: it is reachable from other environments and cannot resolve the services of its own"),
            path,
            "orch",
        ),
        m if m.starts_with("service:") => {}
        m => {
            let target = m.strip_prefix("container:").unwrap_or(m);
            let inside = project.services.iter().find(|(n, svc)| *n != name && (*n == target || svc.container_name.as_deref() == Some(target)));
            if let Some((service, _)) = inside {
                return Some(format!("service:{service}"));
            } else {
                plan.diagnose(
                    Level::Warning,
                    "compose.network-mode-foreign",
                    format!("service {name} joins the network of container {target}, which is not part of this environment: it shares that container's network with every environment of this project"),
                    path,
                    "orch",
                );
            }
        }
    }
    Some(mode.to_string())
}
