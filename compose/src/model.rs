//! The normalised compose model: every short/long form folded into one shape, sizes in bytes, durations in ms.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Project {
    /// Top-level `name:`, else `--project-name`, else the directory of the first file (normalised).
    pub name: String,
    /// The directory relative paths (build contexts, env files, bind mounts) are resolved against.
    pub working_dir: PathBuf,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, Secret>,
    /// Top-level `configs:`; same sources as secrets plus inline `content:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, Secret>,
    /// Services present in the file but disabled by profiles.
    pub disabled_services: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `None` values are passed through from the caller's environment at run time (compose's `- KEY` form).
    pub environment: BTreeMap<String, Option<String>>,
    pub ports: Vec<Port>,
    pub expose: Vec<String>,
    pub volumes: Vec<Mount>,
    pub tmpfs: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub depends_on: BTreeMap<String, Dependency>,
    /// Attached networks; services without `networks:` are on `default`.
    pub networks: BTreeMap<String, ServiceNetwork>,
    pub profiles: Vec<String>,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    pub secrets: Vec<ServiceSecret>,
    pub restart: Option<String>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub logging: Option<Logging>,
    pub stop_grace_period_ms: Option<u64>,
    /// `configs:` of the service, like `secrets:` (default target `/<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ServiceSecret>,
    /// `none`, `host`, `bridge`, `service:NAME` or `container:NAME`; services with it have no `networks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `SERVICE[:ro|rw]` or `container:NAME[:ro|rw]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    /// `links:` as (service, alias): the alias resolves to the service for this container only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<(String, String)>,
    /// `always`, `never`, `missing`, `build` (compose's `if_not_present` is `missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// Container options the engine applies as written.
    #[serde(default, skip_serializing_if = "Runtime::is_empty")]
    pub runtime: Runtime,
}

/// Container options applied as written by the engine: no policy decides them, so they travel from the compose file
/// through the plan to the container unchanged. Sizes are bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Runtime {
    /// `deploy.placement.constraints` (`node.labels.ssd==true`): applied by the swarm engine; one engine has one node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// `HOST:IP` entries (compose's `HOST=IP` and mapping forms normalised).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// `gpus:` and `deploy.resources.reservations.devices`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    /// As written; `service:NAME` is resolved to the service's container by the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oom_kill_disable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    /// Bytes; -1 is unlimited swap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blkio: Option<Blkio>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
}

/// A Swarm placement constraint as Swarm reads it: (key, whether the operator is `==` rather than `!=`, value), both
/// sides trimmed; `None` without an operator.
pub fn split_constraint(c: &str) -> Option<(&str, bool, &str)> {
    let (key, equal, value) = match c.split_once("==") {
        Some((k, v)) => (k, true, v),
        None => c.split_once("!=").map(|(k, v)| (k, false, v))?,
    };
    Some((key.trim(), equal, value.trim()))
}

impl Runtime {
    pub fn is_empty(&self) -> bool {
        self == &Runtime::default()
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    pub source: String,
    pub target: String,
    /// cgroup permissions, `rwm` by default.
    pub permissions: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DeviceRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// -1: all devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Blkio {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<(String, u16)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<(String, u64)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<(String, u64)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<(String, u64)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Build {
    /// Absolute, or resolved against the project's working directory.
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The Dockerfile's text, when given inline (`dockerfile_inline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    /// Build-time network (`network:`), e.g. `host` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_cache: Option<bool>,
    /// Extra tags the built image also gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Named build contexts (`additional_contexts`): name → an absolute directory, `docker-image://REF` or
    /// `service:NAME`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_contexts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Published {
    /// A fixed host port.
    Port(u16),
    /// Any free host port in the inclusive range.
    Range(u16, u16),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Port {
    pub target: u16,
    /// `None`: ephemeral (the engine picks a host port).
    pub published: Option<Published>,
    pub host_ip: Option<String>,
    pub protocol: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// volume, bind or tmpfs.
    pub kind: String,
    /// Named volume, or host path (absolute) for binds; none for anonymous volumes and tmpfs.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub tmpfs_size: Option<u64>,
    /// tmpfs file mode (octal as a number, e.g. 0o1777).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_mode: Option<u32>,
    /// Bind propagation: private, rprivate, shared, rshared, slave, rslave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// SELinux relabel: `z` (shared) or `Z` (private).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// Bind: create the host path when missing (true for the short syntax, as in compose).
    #[serde(default, skip_serializing_if = "is_false")]
    pub create_host_path: bool,
    /// Volume: do not copy the image's content into a new volume.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    /// Volume: mount only this path inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

impl Mount {
    /// A mount of `kind` at `target` with every option at its default.
    pub fn new(kind: &str, target: &str) -> Mount {
        Mount {
            kind: kind.into(),
            source: None,
            target: target.into(),
            read_only: false,
            tmpfs_size: None,
            tmpfs_mode: None,
            propagation: None,
            selinux: None,
            create_host_path: false,
            nocopy: false,
            subpath: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Healthcheck {
    /// Docker's form: ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"].
    pub test: Vec<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub start_period_ms: Option<u64>,
    pub start_interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Dependency {
    pub condition: Condition,
    pub required: bool,
    pub restart: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    pub memory_limit: Option<u64>,
    pub memory_reservation: Option<u64>,
    pub cpus: Option<f64>,
    pub cpus_reservation: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// A secret or config a service uses. `target` is absolute: `/run/secrets/NAME` for secrets and `/NAME` for configs
/// unless given.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSecret {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// `name:` — the engine-side name; only honoured for external networks (orch derives its own names).
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam: Vec<IpamConfig>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IpamConfig {
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Volume {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config: exactly one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    pub file: Option<PathBuf>,
    /// The variable named by `environment:`.
    pub environment: Option<String>,
    pub external: bool,
    /// Inline `content:` (configs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}
