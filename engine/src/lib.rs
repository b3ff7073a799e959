//! The container engine behind a narrow trait, with the Docker (bollard) implementation. Everything orch does to an
//! engine goes through [`Engine`]: [`docker::DockerEngine`] talks to a real daemon, [`fake::FakeEngine`] keeps
//! everything in memory for unit tests of ordering, rollback and conflicts, [`swarm::SwarmEngine`] runs each
//! container as a service of a Docker Swarm cluster, and [`AnyEngine`] is whichever of the real two a project chose.

mod any;
mod docker;
#[cfg(feature = "fake")]
pub mod fake;
pub mod retry;
mod swarm;

pub use any::{AnyEngine, EngineKind};
pub use docker::{DockerEngine, api};
pub use swarm::SwarmEngine;

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;

// The plan layer, at the paths this crate names it by.
use orch_plan::{facts, labels, plan};

use crate::facts::Facts;

/// Memory assumed for a service without a limit (admission and the swarm engine's node accounting).
pub const DEFAULT_SERVICE_MEMORY: u64 = 128 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine ({0}); is the daemon running and is DOCKER_HOST right?")]
    Unreachable(String),
    /// The engine accepted the request but gave no answer in time: it is stalled or overloaded.
    #[error("{what}: the Docker engine did not answer within {after:?}; check that the daemon is healthy (`docker info`), or raise ORCH_ENGINE_TIMEOUT")]
    Timeout { what: String, after: Duration },
    /// The engine refused a request with this HTTP status (404 and 409 have their own variants).
    #[error("{what}: the Docker engine answered {status}: {message}")]
    Api { what: String, status: u16, message: String },
    /// The request got no usable answer (connection dropped, unreadable response).
    #[error("{what}: talking to the Docker engine failed: {source}")]
    Transport {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// The spec asks for something this engine cannot do (an option its API version lacks).
    #[error("{what}: {message}")]
    Unsupported { what: String, message: String },
    /// Preparing a request failed on this side (packing files into an archive).
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A host port the container publishes is bound by someone else.
    #[error("{what}: a host port it publishes is taken: {message}")]
    PortTaken { what: String, message: String },
    /// The engine refused a network's subnet: it overlaps a network made since the plan was made (by another user's
    /// orch, another tool). Carving again around what the engine holds now resolves it.
    #[error("{what}: subnet {subnet} is taken on the engine ({message})")]
    SubnetTaken { what: String, subnet: String, message: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
}

impl EngineError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::NotFound(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub subnets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// (host port, container port, protocol)
    pub published: Vec<(u16, u16, String)>,
}

/// A network as the engine reports it in detail (`orch network status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub subnets: Vec<String>,
    pub gateways: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Names of the containers attached, sorted.
    pub containers: Vec<String>,
}

/// A network to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A host port binding of a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: Option<String>,
    /// `None`: the engine picks a free port.
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    /// `CONTAINER:ALIAS` links: the alias resolves to that container for this one only.
    pub links: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    Volume {
        source: Option<String>,
        target: String,
        read_only: bool,
        nocopy: bool,
        subpath: Option<String>,
    },
    /// With `create_host_path` or an SELinux label the bind goes through the engine's `-v` form, which creates a
    /// missing host path and relabels; otherwise a missing host path is an error.
    Bind {
        source: String,
        target: String,
        read_only: bool,
        propagation: Option<String>,
        selinux: Option<String>,
        create_host_path: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
        mode: Option<u32>,
    },
}

/// A file copied into a container after it is created and before it starts (secrets and configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute path in the container.
    pub target: String,
    pub content: Vec<u8>,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
}

/// A container to create; `endpoints[0]` is attached at creation, the rest before start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PortBinding>,
    pub endpoints: Vec<Endpoint>,
    pub healthcheck: Option<orch_compose::Healthcheck>,
    pub memory: Option<u64>,
    pub memory_reservation: Option<u64>,
    pub cpus: Option<f64>,
    pub tmpfs: Vec<String>,
    pub mounts: Vec<MountSpec>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub restart: Option<String>,
    pub log_driver: Option<(String, BTreeMap<String, String>)>,
    pub stop_timeout_s: Option<i64>,
    /// Engine network mode: `none`, `host`, `bridge` or `container:NAME`; such a container has no endpoints.
    pub network_mode: Option<String>,
    /// `CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    /// `PORT/PROTOCOL` exposed without publishing.
    pub expose: Vec<String>,
    pub files: Vec<FileSpec>,
    pub runtime: orch_compose::Runtime,
}

/// A container as the engine reports it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    /// created, running, restarting, exited, paused, dead
    pub status: String,
    pub exit_code: Option<i64>,
    /// starting, healthy, unhealthy (when the container has a healthcheck)
    pub health: Option<String>,
    /// (container port, protocol, host ip, host port)
    pub ports: Vec<(u16, String, String, u16)>,
    /// network name → IPv4 address
    pub addresses: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub started_at: Option<String>,
    /// The healthcheck the container was created with.
    pub healthcheck: Option<orch_compose::Healthcheck>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSpec {
    pub tag: String,
    /// A tar archive of the build context, on disk (streamed to the engine).
    pub context: std::path::PathBuf,
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub network: Option<String>,
    pub shm_size: Option<u64>,
    pub extra_hosts: Vec<String>,
    pub cache_from: Vec<String>,
    pub platform: Option<String>,
    pub pull: bool,
}

/// A volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// How much of a captured command's output [`Engine::exec`] keeps.
pub const EXEC_CAPTURE: usize = 16 << 20;

/// A resource's labels.
pub type Labels = BTreeMap<String, String>;

/// Which resources to select by label, e.g. `orch.env=1a2b3c4d`.
pub type LabelFilter = Vec<String>;

/// What orch needs from a container engine.
pub trait Engine: Send + Sync {
    fn list_networks(&self) -> impl Future<Output = Result<Vec<NetworkSummary>, EngineError>> + Send;
    fn list_containers(&self) -> impl Future<Output = Result<Vec<ContainerSummary>, EngineError>> + Send;
    fn list_images(&self) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
    /// Networks carrying all of these labels (`key=value` or `key`).
    fn networks_labelled(&self, labels: &LabelFilter) -> impl Future<Output = Result<Vec<NetworkSummary>, EngineError>> + Send;
    fn containers_labelled(&self, labels: &LabelFilter) -> impl Future<Output = Result<Vec<ContainerSummary>, EngineError>> + Send;
    /// (name, labels) of volumes carrying all of these labels.
    fn volumes_labelled(&self, labels: &LabelFilter) -> impl Future<Output = Result<Vec<(String, Labels)>, EngineError>> + Send;
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool, EngineError>> + Send;
    /// Gives an image another name (`repo:tag`).
    fn tag_image(&self, image: &str, tag: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Removes an image orch made for itself (a helper of a build); a missing image is success.
    fn remove_image(&self, image: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn build_image(&self, spec: BuildSpec) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn create_network(&self, spec: &NetworkSpec) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Disconnects every endpoint, then removes; a missing network is success. Pass the id: a name may be shared.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn inspect_network(&self, name: &str) -> impl Future<Output = Result<NetworkSummary, EngineError>> + Send;
    /// A network with its driver, gateways and attached containers.
    fn network_info(&self, name: &str) -> impl Future<Output = Result<NetworkInfo, EngineError>> + Send;
    /// Attaches a container (any, by name or id) to a network under these aliases; one attached already is success.
    fn connect_network(&self, network: &str, container: &str, aliases: &[String]) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Detaches a container from a network; one that is not attached is success.
    fn disconnect_network(&self, network: &str, container: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// The memory a running container uses now, counted as `docker stats` does (without the inactive page cache);
    /// `None` when it is not running or the engine cannot say.
    fn container_memory(&self, id: &str) -> impl Future<Output = Result<Option<u64>, EngineError>> + Send;
    /// The size of a local image; `None` when it is not there.
    fn image_size(&self, image: &str) -> impl Future<Output = Result<Option<u64>, EngineError>> + Send;
    /// The id (`sha256:…`) a local image reference stands for now; `None` when there is no such image.
    fn image_id(&self, image: &str) -> impl Future<Output = Result<Option<String>, EngineError>> + Send;
    /// Creates a volume, or finds the one of that name (the engine does not refuse it): returns the labels of the
    /// volume the name now stands for, so the caller can tell its own from another's.
    fn create_volume(&self, spec: &VolumeSpec) -> impl Future<Output = Result<Labels, EngineError>> + Send;
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Creates the container, connects its other networks and copies its files in; it is not started.
    fn create_container(&self, spec: &ContainerSpec) -> impl Future<Output = Result<String, EngineError>> + Send;
    fn start_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Stops gracefully; without `timeout_s` the container's own stop timeout (`stop_grace_period`) applies.
    fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Force-removes with anonymous volumes; a missing container is success.
    fn remove_container(&self, id: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    fn inspect_container(&self, id: &str) -> impl Future<Output = Result<ContainerState, EngineError>> + Send;
    /// The container's output so far as (is_stderr, line).
    fn logs(&self, id: &str, tail: Option<usize>) -> impl Future<Output = Result<Vec<(bool, String)>, EngineError>> + Send;
    /// Streams the container's output to `sink` (is_stderr, line) until it stops (or forever with `follow`).
    fn stream_logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
        sink: &(dyn Fn(bool, &str) + Sync),
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Runs a command in the container; returns its exit code and combined output (the first [`EXEC_CAPTURE`] bytes,
    /// with a note saying how much was left out).
    fn exec(&self, id: &str, cmd: &[String]) -> impl Future<Output = Result<(i64, String), EngineError>> + Send;
    /// Runs a command attached to this process: its stdin feeds the command, its output streams here in full, with a
    /// pseudo-terminal when `tty`. Returns the command's exit code.
    fn exec_attached(&self, id: &str, cmd: &[String], tty: bool) -> impl Future<Output = Result<i64, EngineError>> + Send;
    /// Whether the engine places services on nodes (applies `deploy.placement.constraints`); one engine does not.
    fn places_services(&self) -> bool {
        false
    }
    /// (available, total) bytes of memory one environment can use; `None` when unknown. The host's own by default.
    fn memory(&self) -> impl Future<Output = Result<Option<(u64, u64)>, EngineError>> + Send {
        async { Ok(orch_plan::procfs::memory()) }
    }
}

/// Collects the facts a plan must respect from the engine and the host's routes.
pub async fn gather_facts<E: Engine>(engine: &E) -> Result<Facts, EngineError> {
    let (networks, containers, images) = tokio::try_join!(engine.list_networks(), engine.list_containers(), engine.list_images())?;
    let mut facts = Facts { engine_consulted: true, places_services: engine.places_services(), ..Facts::default() };
    facts.taken_subnets.extend(networks.iter().flat_map(|n| n.subnets.iter()).filter_map(|s| s.parse::<Ipv4Net>().ok()).map(|n| n.trunc()));
    facts.taken_host_ports.extend(containers.iter().flat_map(|c| c.published.iter().map(|p| p.0)));
    facts.local_images.extend(images);
    facts.add_host_routes();
    facts.add_host_listeners();
    Ok(facts)
}
