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
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Build {
    /// Absolute, or resolved against the project's working directory.
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSecret {
    pub source: String,
    pub target: String,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    pub file: Option<PathBuf>,
    pub environment: Option<String>,
    pub external: bool,
}
