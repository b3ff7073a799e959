//! [`Engine`] on a Docker Swarm cluster, through a manager's API. The planner and the lifecycle stay unaware of it:
//! each "container" of the trait is a Swarm service of one task, named and labelled as the container would be.
//!
//! - networks are attachable overlays with the subnet orch carved; the swarm's own address pools count as taken;
//! - a service runs 1 replica with endpoint mode `dnsrr` (no virtual IP: IPVS may be missing), its aliases on each
//!   overlay, host ports published in `host` mode; created with 0 replicas, started by scaling to 1, stopped by scaling
//!   to 0; a one-shot (awaited to exit 0) is a replicated job, created when it starts;
//! - secrets and configs files are Swarm configs labelled with their service, removed with it;
//! - every service of an environment is placed on one node (the Ready, Active node with the most free memory when the
//!   environment starts), so its host ports and `orch port` stay meaningful;
//! - state, health, ports and addresses come from the task's container when it runs on the node orch talks to (exact
//!   health, `exec`), else from the task; logs come from the service, on any node.
//!
//! Images, volumes (the ready marker among them) and builds stay on the manager's own engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig,
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob, Task, TaskSpec, TaskSpecContainerSpec, TaskState,
};

use super::docker::{classify, forward_lines, gone_is_done, label_filters, logs_options, mounts_and_binds, ms_to_ns};
use super::*;
use crate::labels;

/// On every Swarm object orch makes for a service (its configs): the service it belongs to.
const OF_SERVICE: &str = "orch.swarm-service";
/// On each service: the node its environment is placed on.
const NODE: &str = "orch.node";
/// On each service with a healthcheck: the check as JSON. bollard's model calls the field `HealthCheck` but Docker
/// answers `Healthcheck`, so a spec read back through bollard has lost it; an update puts it back from here.
const HEALTHCHECK: &str = "orch.swarm-healthcheck";
/// The address pool Swarm allocates overlays from when `docker swarm init` was given none.
const SWARM_DEFAULT_POOL: &str = "10.0.0.0/8";
/// Swarm keeps a config's data below this size.
const CONFIG_MAX: usize = 500 * 1024;
/// How long removal waits for Swarm to take a service's containers or a network off this node.
const REMOVE_WAIT: Duration = Duration::from_secs(30);
/// How long `start_container` waits for the task to be scheduled and its container started (`up` gives up at its own
/// timeout first, normally: a loaded node can take minutes to prepare many tasks).
const START_WAIT: Duration = Duration::from_secs(900);
/// How long a task may stay unschedulable (Swarm says why) before the start fails.
const UNSCHEDULABLE_WAIT: Duration = Duration::from_secs(15);

/// A Swarm manager's API, with the manager's own engine for images, volumes and the containers of local tasks.
#[derive(Clone)]
pub struct SwarmEngine {
    docker: Docker,
    local: DockerEngine,
    /// Environment (`project/env`) → the node its services are placed on.
    placed: Arc<Mutex<BTreeMap<String, String>>>,
    /// Jobs created but not started: Swarm runs a job as soon as it exists.
    jobs: Arc<Mutex<BTreeMap<String, ServiceSpec>>>,
    /// `HOST:PORT` every node pulls from (orch.toml `registry`), and what this process pushed there: local image →
    /// the reference the nodes pull.
    registry: Option<String>,
    pushed: Arc<tokio::sync::Mutex<BTreeMap<String, String>>>,
}

/// Removal and inspection must not fail on the race with Swarm's own cleanup.
fn what_service(name: &str) -> String {
    format!("swarm service {name}")
}

impl SwarmEngine {
    /// Connects as [`DockerEngine::connect`] does and checks that the engine is an active Swarm manager.
    pub async fn connect() -> Result<SwarmEngine, EngineError> {
        let local = DockerEngine::connect().await?;
        let docker = local.client().clone();
        let info = docker.info().await.map_err(classify("the Docker engine"))?;
        let swarm = info.swarm.unwrap_or_default();
        let active = swarm.local_node_state.map(|s| s.to_string()) == Some("active".into());
        if !active || swarm.control_available != Some(true) {
            return Err(EngineError::Unsupported {
                what: "the swarm engine".into(),
                message: "the Docker engine orch talks to is not a Swarm manager; run `docker swarm init` there (or point DOCKER_HOST at a \
                          manager), or use the local engine (`--engine local`)"
                    .into(),
            });
        }
        Ok(SwarmEngine { docker, local, placed: Arc::default(), jobs: Arc::default(), registry: None, pushed: Arc::default() })
    }

    pub fn local(&self) -> &DockerEngine {
        &self.local
    }

    /// The registry every node can pull from: with more than one node, images orch has only locally (built or
    /// imported here) are tagged `REGISTRY/IMAGE` and pushed there, and services run that reference.
    pub fn with_registry(mut self, registry: Option<String>) -> SwarmEngine {
        self.registry = registry;
        self
    }

    /// The reference the swarm's nodes run `image` by: unchanged on a single node, for an image that names a
    /// registry or a digest, or without a registry; else pushed to the registry (once per process).
    async fn distribute(&self, image: &str) -> Result<String, EngineError> {
        let Some(registry) = &self.registry else { return Ok(image.to_string()) };
        let first = image.split('/').next().unwrap_or_default();
        let names_registry = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        if names_registry || image.contains('@') || self.nodes().await?.len() < 2 {
            return Ok(image.to_string());
        }
        let mut pushed = self.pushed.lock().await;
        if let Some(r) = pushed.get(image) {
            return Ok(r.clone());
        }
        let tagged = if image.rsplit('/').next().unwrap_or(image).contains(':') { image.to_string() } else { format!("{image}:latest") };
        let target = format!("{}/{tagged}", registry.trim_end_matches('/'));
        self.local.tag_image(image, &target).await?;
        let (repo, tag) = target.rsplit_once(':').expect("tagged above");
        let opts = bollard::query_parameters::PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = self.docker.push_image(repo, Some(opts), None);
        use futures_util::StreamExt;
        while let Some(item) = stream.next().await {
            item.map_err(|e| EngineError::Api {
                what: format!("pushing image {image} to {registry}"),
                status: 500,
                message: format!("{e} (is `registry` in orch.toml reachable from every node?)"),
            })?;
        }
        pushed.insert(image.to_string(), target.clone());
        Ok(target)
    }

    async fn service(&self, name: &str) -> Result<Service, EngineError> {
        self.docker.inspect_service(name, None::<bollard::query_parameters::InspectServiceOptions>).await.map_err(classify(&what_service(name)))
    }

    async fn services(&self, filter: &LabelFilter) -> Result<Vec<Service>, EngineError> {
        let opts = bollard::query_parameters::ListServicesOptionsBuilder::default().filters(&label_filters(&mine(filter))).build();
        self.docker.list_services(Some(opts)).await.map_err(classify("the swarm's services"))
    }

    async fn tasks(&self, service: &str) -> Result<Vec<Task>, EngineError> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let opts = bollard::query_parameters::ListTasksOptionsBuilder::default().filters(&filters).build();
        self.docker.list_tasks(Some(opts)).await.map_err(classify(&what_service(service)))
    }

    async fn all_tasks(&self) -> Result<Vec<Task>, EngineError> {
        self.docker.list_tasks(None::<bollard::query_parameters::ListTasksOptions>).await.map_err(classify("the swarm's tasks"))
    }

    /// The task that stands for the service now: the newest one Swarm wants running (or complete, for a job), else
    /// the newest of all.
    async fn current_task(&self, service: &str) -> Result<Option<Task>, EngineError> {
        Ok(current(self.tasks(service).await?))
    }

    /// Ready, Active nodes, with what placement constraints look at.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let nodes = self.docker.list_nodes(None::<bollard::query_parameters::ListNodesOptions>).await.map_err(classify("the swarm's nodes"))?;
        Ok(nodes
            .into_iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY))
            .filter(|n| n.spec.as_ref().and_then(|s| s.availability).is_none_or(|a| a == bollard::models::NodeSpecAvailabilityEnum::ACTIVE))
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let desc = n.description.unwrap_or_default();
                let platform = desc.platform.clone().unwrap_or_default();
                NodeInfo {
                    id: n.id.unwrap_or_default(),
                    memory: desc.resources.as_ref().and_then(|r| r.memory_bytes).unwrap_or(0).max(0) as u64,
                    addr: n.status.and_then(|s| s.addr).unwrap_or_default(),
                    hostname: desc.hostname.clone().unwrap_or_default(),
                    role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
                    os: platform.os.unwrap_or_default(),
                    arch: platform.architecture.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    engine_labels: desc.engine.and_then(|e| e.labels).unwrap_or_default().into_iter().collect(),
                }
            })
            .collect())
    }

    /// Memory orch's services claim on each node (their limits; 128 MiB for a service without one).
    async fn claimed(&self) -> Result<BTreeMap<String, u64>, EngineError> {
        let mut out = BTreeMap::new();
        for s in self.services(&labels::any_env()).await? {
            let spec = s.spec.unwrap_or_default();
            let Some(node) = spec.labels.as_ref().and_then(|l| l.get(NODE)).cloned() else { continue };
            let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(1);
            if replicas == 0 {
                continue;
            }
            let limit = spec.task_template.and_then(|t| t.resources).and_then(|r| r.limits).and_then(|l| l.memory_bytes);
            *out.entry(node).or_insert(0) += limit.map(|l| l.max(0) as u64).unwrap_or(super::DEFAULT_SERVICE_MEMORY);
        }
        Ok(out)
    }

    /// The node an environment's services go to: the one already chosen (by this process or, through the services'
    /// labels, by another), else the Ready, Active node with the most memory not claimed by orch's services among
    /// those that meet every placement constraint of the environment's services (among all, when none meets them all:
    /// each constrained service then goes where its constraints say).
    async fn node_for(&self, env_key: &str, env_filter: &LabelFilter, pending: &[Vec<String>]) -> Result<String, EngineError> {
        if let Some(n) = self.placed.lock().expect("placement map").get(env_key) {
            return Ok(n.clone());
        }
        let existing = self.services(env_filter).await?;
        let chosen = match existing.iter().find_map(|s| s.spec.as_ref()?.labels.as_ref()?.get(NODE).cloned()) {
            Some(n) => n,
            None => {
                let mut constraints: Vec<String> = existing.iter().flat_map(|s| own_constraints(s.spec.as_ref())).collect();
                constraints.extend(pending.iter().flatten().cloned());
                let claimed = self.claimed().await?;
                let nodes = self.nodes().await?;
                let free = |n: &NodeInfo| n.memory.saturating_sub(claimed.get(&n.id).copied().unwrap_or(0));
                let fitting: Vec<&NodeInfo> = nodes.iter().filter(|n| constraints.iter().all(|c| n.meets(c) == Some(true))).collect();
                let pool: Vec<&NodeInfo> = if fitting.is_empty() { nodes.iter().collect() } else { fitting };
                let best = pool.into_iter().max_by_key(|n| (free(n), std::cmp::Reverse(n.id.clone())));
                best.map(|n| n.id.clone()).ok_or_else(|| EngineError::Unsupported {
                    what: "the swarm".into(),
                    message: "no node is Ready and Active to place the environment on (`docker node ls`)".into(),
                })?
            }
        };
        self.placed.lock().expect("placement map").insert(env_key.to_string(), chosen.clone());
        Ok(chosen)
    }

    /// A service's constraints once its environment's node is known: its own, plus that node when it meets them.
    async fn placement_for(&self, spec: &ServiceSpec) -> Result<(String, Vec<String>), EngineError> {
        let labels: BTreeMap<String, String> = spec.labels.clone().unwrap_or_default().into_iter().collect();
        let (key, filter) = env_key(&labels);
        let own = own_constraints(Some(spec));
        let node = self.node_for(&key, &filter, std::slice::from_ref(&own)).await?;
        let node_info = self.nodes().await?.into_iter().find(|n| n.id == node);
        let mut constraints = own.clone();
        if node_info.is_some_and(|n| own.iter().all(|c| n.meets(c) == Some(true))) {
            constraints.push(format!("node.id=={node}"));
        }
        Ok((node, constraints))
    }

    async fn scale(&self, name: &str, replicas: i64) -> Result<(), EngineError> {
        let what = what_service(name);
        let backoff = crate::retry::Backoff::SEQUENCE;
        for attempt in 0.. {
            let service = self.service(name).await?;
            let version = service.version.and_then(|v| v.index).unwrap_or(0);
            let mut spec = service.spec.unwrap_or_default();
            let saved_check = spec.labels.as_ref().and_then(|l| l.get(HEALTHCHECK)).and_then(|h| serde_json::from_str(h).ok());
            if let Some(c) = spec.task_template.as_mut().and_then(|t| t.container_spec.as_mut())
                && c.health_check.is_none()
            {
                c.health_check = saved_check;
            }
            let job = spec.mode.as_ref().is_some_and(|m| m.replicated_job.is_some());
            if job {
                if replicas == 0 {
                    return Ok(());
                }
                // A job runs again when its task template changes.
                let t = spec.task_template.get_or_insert_with(Default::default);
                t.force_update = Some(t.force_update.unwrap_or(0) + 1);
            } else {
                spec.mode = Some(ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(replicas) }), ..Default::default() });
                if replicas > 0 {
                    // With restart condition `none` Swarm would not refill a slot whose task ended: a new template does.
                    let t = spec.task_template.get_or_insert_with(Default::default);
                    t.force_update = Some(t.force_update.unwrap_or(0) + 1);
                }
            }
            if replicas > 0 && spec.labels.as_ref().is_none_or(|l| !l.contains_key(NODE)) {
                // First start: the environment's node is chosen now, when every service of it exists.
                let (node, constraints) = self.placement_for(&spec).await?;
                place(&mut spec, &node, constraints);
            }
            let opts = bollard::query_parameters::UpdateServiceOptionsBuilder::default().version(version as i32).build();
            match self.docker.update_service(name, spec, opts, None).await.map_err(classify(&what)) {
                Ok(_) => return Ok(()),
                // Swarm moved the service on between our read and write (it does right after creating one). It says
                // so only in the text of a 500: there is no status for it.
                Err(EngineError::Api { status: 500, message, .. }) if message.contains("update out of sequence") && backoff.again(attempt) => {
                    tokio::time::sleep(backoff.delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Waits until the service's task has a started container (or has ended), turning a task Swarm could not start
    /// into the error `up` expects from a container start.
    async fn await_start(&self, name: &str) -> Result<(), EngineError> {
        let what = format!("container {name}");
        let deadline = Instant::now() + START_WAIT;
        let mut unschedulable: Option<Instant> = None;
        loop {
            // Only a task Swarm wants up is this start's: the ones before it are being (or were) shut down.
            let fresh = current(self.tasks(name).await?.into_iter().filter(|t| t.desired_state != Some(TaskState::SHUTDOWN)).collect());
            if let Some(t) = fresh {
                let status = t.status.unwrap_or_default();
                let state = status.state.unwrap_or(TaskState::NEW);
                let err = status.err.unwrap_or_default();
                match state {
                    TaskState::STARTING | TaskState::RUNNING | TaskState::COMPLETE => return Ok(()),
                    TaskState::FAILED | TaskState::REJECTED => {
                        // Swarm reports a taken host port only in the task's error text: there is no status for it.
                        if err.contains("address already in use") || err.contains("port is already allocated") {
                            return Err(EngineError::PortTaken { what, message: err });
                        }
                        // A container that started and then failed has a container id: `up` reads its exit from
                        // the state, as it does for a local container.
                        if status.container_status.and_then(|c| c.container_id).is_some_and(|c| !c.is_empty()) {
                            return Ok(());
                        }
                        return Err(EngineError::Api { what, status: 500, message: format!("Swarm could not start its task: {err}") });
                    }
                    // The scheduler finds no node for it (a host port in use there, too little memory): that holds
                    // until something else ends, so it fails rather than waits out `up`'s timeout.
                    TaskState::PENDING if !err.is_empty() => {
                        let since = *unschedulable.get_or_insert_with(Instant::now);
                        if since.elapsed() >= UNSCHEDULABLE_WAIT {
                            if err.contains("port") {
                                return Err(EngineError::PortTaken { what, message: err });
                            }
                            return Err(EngineError::Api { what, status: 503, message: format!("Swarm cannot place its task: {err}") });
                        }
                    }
                    _ => unschedulable = None,
                }
                if Instant::now() >= deadline {
                    return Err(EngineError::Api { what, status: 504, message: format!("its task is still {state} after {START_WAIT:?}: {err}") });
                }
            } else if Instant::now() >= deadline {
                return Err(EngineError::Api { what, status: 504, message: format!("Swarm made no task for it within {START_WAIT:?}") });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The container of the service's current task when it is on this engine.
    async fn local_container(&self, name: &str) -> Result<Option<String>, EngineError> {
        let Some(t) = self.current_task(name).await? else { return Ok(None) };
        let Some(id) = t.status.and_then(|s| s.container_status).and_then(|c| c.container_id).filter(|c| !c.is_empty()) else {
            return Ok(None);
        };
        match self.local.inspect_container(&id).await {
            Ok(_) => Ok(Some(id)),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn exec_target(&self, name: &str) -> Result<String, EngineError> {
        self.service(name).await?;
        self.local_container(name).await?.ok_or_else(|| EngineError::Unsupported {
            what: format!("container {name}"),
            message: "its task is not running on the node orch talks to (the manager); exec works only for tasks there".into(),
        })
    }

    async fn remove_configs(&self, service: &str) -> Result<(), EngineError> {
        let filters = label_filters(&vec![format!("{OF_SERVICE}={service}")]);
        let opts = bollard::query_parameters::ListConfigsOptionsBuilder::default().filters(&filters).build();
        let configs = self.docker.list_configs(Some(opts)).await.map_err(classify("the swarm's configs"))?;
        for c in configs {
            let id = c.id.unwrap_or_default();
            gone_is_done(self.docker.delete_config(&id).await.map_err(classify(&format!("swarm config {id}"))))?;
        }
        Ok(())
    }
}

struct NodeInfo {
    id: String,
    memory: u64,
    addr: String,
    hostname: String,
    role: String,
    os: String,
    arch: String,
    labels: BTreeMap<String, String>,
    engine_labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// Whether the node meets a Swarm placement constraint (`KEY==VALUE`, `KEY!=VALUE`); `None` for a key orch does
    /// not know (Swarm still applies it).
    fn meets(&self, constraint: &str) -> Option<bool> {
        let (key, equal, value) = orch_compose::split_constraint(constraint)?;
        let actual = match key {
            "node.id" => Some(self.id.as_str()),
            "node.hostname" => Some(self.hostname.as_str()),
            "node.role" => Some(self.role.as_str()),
            "node.platform.os" => Some(self.os.as_str()),
            "node.platform.arch" => Some(self.arch.as_str()),
            k => match (k.strip_prefix("node.labels."), k.strip_prefix("engine.labels.")) {
                (Some(l), _) => self.labels.get(l).map(String::as_str).or(Some("")),
                (_, Some(l)) => self.engine_labels.get(l).map(String::as_str).or(Some("")),
                _ => return None,
            },
        }?;
        Some((actual == value) == equal)
    }
}

/// The placement constraints a service was created with (its own, from the compose file or a plugin).
fn own_constraints(spec: Option<&ServiceSpec>) -> Vec<String> {
    spec.and_then(|s| s.task_template.as_ref()?.placement.as_ref()?.constraints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !c.starts_with("node.id=="))
        .collect()
}

/// Places a service: its constraints, and the environment's node recorded on it.
fn place(spec: &mut ServiceSpec, node: &str, constraints: Vec<String>) {
    let t = spec.task_template.get_or_insert_with(Default::default);
    t.placement.get_or_insert_with(Default::default).constraints = Some(constraints);
    spec.labels.get_or_insert_with(Default::default).insert(NODE.into(), node.into());
}

/// A selection narrowed to the swarm engine's own resources.
fn mine(filter: &LabelFilter) -> LabelFilter {
    let mut f = filter.clone();
    f.push(format!("{}={}", labels::ENGINE, labels::ENGINE_SWARM));
    f
}

/// Labels marked as the swarm engine's.
fn marked(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut l = l.clone();
    l.insert(labels::ENGINE.into(), labels::ENGINE_SWARM.into());
    l
}

fn current(mut tasks: Vec<Task>) -> Option<Task> {
    let index = |t: &Task| t.version.as_ref().and_then(|v| v.index).unwrap_or(0);
    tasks.sort_by_key(|t| std::cmp::Reverse(index(t)));
    let wanted = |t: &Task| matches!(t.desired_state, Some(TaskState::RUNNING | TaskState::READY | TaskState::COMPLETE));
    let pos = tasks.iter().position(wanted).unwrap_or(0);
    (!tasks.is_empty()).then(|| tasks.swap_remove(pos))
}

/// Docker's container states from a task's.
fn task_status(state: TaskState) -> &'static str {
    match state {
        TaskState::STARTING | TaskState::RUNNING => "running",
        TaskState::COMPLETE | TaskState::FAILED | TaskState::SHUTDOWN | TaskState::REJECTED | TaskState::ORPHANED | TaskState::REMOVE => "exited",
        _ => "created",
    }
}

fn published(t: &Task) -> Vec<(u16, String, u16)> {
    let ports = t.status.as_ref().and_then(|s| s.port_status.as_ref()).and_then(|p| p.ports.clone()).unwrap_or_default();
    let mut out: Vec<(u16, String, u16)> = ports
        .into_iter()
        .filter_map(|p| {
            let proto = p.protocol.map(|x| x.to_string()).filter(|x| !x.is_empty()).unwrap_or_else(|| "tcp".into());
            Some((u16::try_from(p.target_port?).ok()?, proto, u16::try_from(p.published_port?).ok()?))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Names what the swarm cannot do for a container spec: every such field is refused, none dropped silently.
fn unsupported(spec: &ContainerSpec) -> Vec<&'static str> {
    let rt = &spec.runtime;
    let mut out = vec![];
    let mut no = |cond: bool, field: &'static str| {
        if cond {
            out.push(field);
        }
    };
    no(spec.network_mode.is_some(), "network_mode");
    no(!spec.volumes_from.is_empty(), "volumes_from");
    no(spec.endpoints.iter().any(|e| e.ipv4_address.is_some()), "a fixed ipv4_address");
    no(spec.endpoints.iter().any(|e| !e.links.is_empty()), "links");
    no(spec.ports.iter().any(|p| p.host_ip.as_deref().is_some_and(|ip| ip != "0.0.0.0")), "a port bound to one host address");
    no(rt.privileged, "privileged");
    no(!rt.devices.is_empty() || !rt.device_requests.is_empty() || !rt.device_cgroup_rules.is_empty(), "devices");
    no(rt.pid.is_some() || rt.ipc.is_some() || rt.uts.is_some() || rt.userns_mode.is_some(), "pid/ipc/uts/userns_mode");
    no(rt.cgroup.is_some() || rt.cgroup_parent.is_some(), "cgroup/cgroup_parent");
    no(rt.shm_size.is_some(), "shm_size");
    no(!rt.security_opt.is_empty(), "security_opt");
    no(rt.oom_score_adj.is_some() || rt.oom_kill_disable.is_some(), "oom_score_adj/oom_kill_disable");
    no(rt.mem_swappiness.is_some() || rt.memswap_limit.is_some(), "mem_swappiness/memswap_limit");
    no(
        rt.cpu_shares.is_some()
            || rt.cpuset.is_some()
            || rt.cpu_period.is_some()
            || rt.cpu_quota.is_some()
            || rt.cpu_rt_period.is_some()
            || rt.cpu_rt_runtime.is_some()
            || rt.cpu_count.is_some()
            || rt.cpu_percent.is_some(),
        "cpu_shares/cpuset/cpu_period/cpu_quota",
    );
    no(rt.blkio.is_some(), "blkio_config");
    no(!rt.storage_opt.is_empty(), "storage_opt");
    no(rt.runtime.is_some() || rt.isolation.is_some(), "runtime/isolation");
    no(rt.domainname.is_some(), "domainname");
    no(
        spec.mounts.iter().any(|m| matches!(m, MountSpec::Bind { create_host_path: true, .. } | MountSpec::Bind { selinux: Some(_), .. })),
        "a bind mount that creates its host path or relabels it",
    );
    no(spec.mounts.iter().any(|m| matches!(m, MountSpec::Volume { subpath: Some(_), .. })), "a volume subpath");
    out
}

/// `size=64m,mode=1777` of a `tmpfs:` entry.
fn tmpfs_options(opts: &str) -> Option<(Option<u64>, Option<u32>)> {
    let (mut size, mut mode) = (None, None);
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => {
                let (num, mult) = match v.char_indices().last()? {
                    (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
                    (i, 'm' | 'M') => (&v[..i], 1 << 20),
                    (i, 'g' | 'G') => (&v[..i], 1 << 30),
                    _ => (v, 1),
                };
                size = Some(num.parse::<u64>().ok()?.checked_mul(mult)?);
            }
            Some(("mode", v)) => mode = Some(u32::from_str_radix(v, 8).ok()?),
            _ => return None,
        }
    }
    Some((size, mode))
}

/// The service for a container spec (0 replicas, or a job), with its own placement constraints; the environment's
/// node is added when it first starts.
fn service_spec(spec: &ContainerSpec, configs: Vec<bollard::models::TaskSpecContainerSpecConfigs>) -> Result<ServiceSpec, EngineError> {
    use bollard::models::{
        HealthConfig, Limit, Mount, MountTmpfsOptions, MountType, ResourceObject, ResourcesUlimits, TaskSpecContainerSpecDnsConfig, TaskSpecLogDriver,
        TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
    };
    let what = format!("container {}", spec.name);
    let refused = unsupported(spec);
    if !refused.is_empty() {
        return Err(EngineError::Unsupported {
            what,
            message: format!("the swarm engine cannot apply {}; drop it for swarm runs or use the local engine", refused.join(", ")),
        });
    }
    let (mut mounts, _binds) = mounts_and_binds(spec);
    for t in &spec.tmpfs {
        let (target, opts) = t.split_once(':').unwrap_or((t, ""));
        let (size, mode) = tmpfs_options(opts).ok_or_else(|| EngineError::Unsupported {
            what: what.clone(),
            message: format!("tmpfs {t:?}: the swarm engine knows only size= and mode= options"),
        })?;
        mounts.push(Mount {
            typ: Some(MountType::TMPFS),
            target: Some(target.to_string()),
            tmpfs_options: Some(MountTmpfsOptions { size_bytes: size.map(|s| s as i64), mode: mode.map(i64::from), ..Default::default() }),
            ..Default::default()
        });
    }
    let rt = &spec.runtime;
    let job = is_job(&spec.labels);
    let condition = match spec.restart.as_deref() {
        Some("always" | "unless-stopped") if !job => TaskSpecRestartPolicyConditionEnum::ANY,
        Some(r) if r.starts_with("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::NONE,
    };
    let container = TaskSpecContainerSpec {
        image: Some(spec.image.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        command: spec.entrypoint.clone(),
        args: spec.command.clone(),
        hostname: spec.hostname.clone(),
        env: Some(spec.env.clone()),
        dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        groups: (!rt.group_add.is_empty()).then(|| rt.group_add.clone()),
        tty: rt.tty.then_some(true),
        open_stdin: rt.stdin_open.then_some(true),
        read_only: rt.read_only.then_some(true),
        mounts: Some(mounts),
        stop_signal: rt.stop_signal.clone(),
        stop_grace_period: spec.stop_timeout_s.map(|s| s.saturating_mul(1_000_000_000)),
        health_check: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: ms_to_ns(h.interval_ms),
            timeout: ms_to_ns(h.timeout_ms),
            retries: h.retries.map(i64::from),
            start_period: ms_to_ns(h.start_period_ms),
            start_interval: None,
        }),
        // compose's `extra_hosts` is HOST:IP; Swarm wants "IP HOST".
        hosts: (!rt.extra_hosts.is_empty())
            .then(|| rt.extra_hosts.iter().map(|h| h.split_once([':', '=']).map(|(host, ip)| format!("{ip} {host}")).unwrap_or_else(|| h.clone())).collect()),
        dns_config: (!rt.dns.is_empty() || !rt.dns_search.is_empty() || !rt.dns_opt.is_empty()).then(|| TaskSpecContainerSpecDnsConfig {
            nameservers: Some(rt.dns.clone()),
            search: Some(rt.dns_search.clone()),
            options: Some(rt.dns_opt.clone()),
        }),
        configs: (!configs.is_empty()).then_some(configs),
        init: rt.init,
        sysctls: (!rt.sysctls.is_empty()).then(|| rt.sysctls.clone().into_iter().collect()),
        capability_add: (!rt.cap_add.is_empty()).then(|| rt.cap_add.clone()),
        capability_drop: (!rt.cap_drop.is_empty()).then(|| rt.cap_drop.clone()),
        ulimits: (!rt.ulimits.is_empty())
            .then(|| rt.ulimits.iter().map(|(name, l)| ResourcesUlimits { name: Some(name.clone()), soft: Some(l.soft), hard: Some(l.hard) }).collect()),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit { nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64), memory_bytes: spec.memory.map(|m| m as i64), pids: rt.pids_limit }),
            reservations: spec.memory_reservation.map(|m| ResourceObject { memory_bytes: Some(m as i64), ..Default::default() }),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(condition),
            max_attempts: spec.restart.as_deref().and_then(|r| r.strip_prefix("on-failure:")).and_then(|n| n.parse().ok()),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement { constraints: Some(rt.placement.clone()), ..Default::default() }),
        networks: Some(
            spec.endpoints
                .iter()
                .map(|e| NetworkAttachmentConfig { target: Some(e.network.clone()), aliases: Some(e.aliases.clone()), ..Default::default() })
                .collect(),
        ),
        log_driver: spec.log_driver.as_ref().map(|(d, o)| TaskSpecLogDriver { name: Some(d.clone()), options: Some(o.clone().into_iter().collect()) }),
        ..Default::default()
    };
    let ports = spec
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(match p.protocol.as_str() {
                "udp" => EndpointPortConfigProtocolEnum::UDP,
                "sctp" => EndpointPortConfigProtocolEnum::SCTP,
                _ => EndpointPortConfigProtocolEnum::TCP,
            }),
            target_port: Some(i64::from(p.container_port)),
            published_port: p.host_port.map(i64::from),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .collect();
    let mut service_labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    if let Some(h) = task.container_spec.as_ref().and_then(|c| c.health_check.as_ref()) {
        service_labels.insert(HEALTHCHECK.into(), serde_json::to_string(h).expect("a healthcheck serialises"));
    }
    let mode = if job {
        ServiceSpecMode { replicated_job: Some(ServiceSpecModeReplicatedJob { max_concurrent: Some(1), total_completions: Some(1) }), ..Default::default() }
    } else {
        ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }), ..Default::default() }
    };
    Ok(ServiceSpec {
        name: Some(spec.name.clone()),
        labels: Some(service_labels),
        task_template: Some(task),
        mode: Some(mode),
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports: Some(ports) }),
        ..Default::default()
    })
}

/// A one-shot: `up` waits for it to exit 0.
fn is_job(l: &BTreeMap<String, String>) -> bool {
    l.get(labels::WAIT)
        .and_then(|w| serde_json::from_str::<Vec<crate::plan::WaitStrategy>>(w).ok())
        .is_some_and(|w| w.contains(&crate::plan::WaitStrategy::ExitZero))
}

/// A service's labels as its container would carry them (without the swarm engine's own).
fn orch_labels(l: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    l.unwrap_or_default().into_iter().filter(|(k, _)| k != NODE && k != HEALTHCHECK).collect()
}

fn env_key(l: &BTreeMap<String, String>) -> (String, LabelFilter) {
    let project = l.get(labels::PROJECT).cloned().unwrap_or_default();
    let env = l.get(labels::ENV).cloned().unwrap_or_default();
    (format!("{project}/{env}"), labels::env_filter(Some(&project), &env))
}

impl Engine for SwarmEngine {
    /// The manager's networks, and the swarm's default address pools as taken: overlays Swarm allocates itself come
    /// from there, so orch carves elsewhere.
    async fn list_networks(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        let mut nets = self.local.list_networks().await?;
        let swarm = self.docker.inspect_swarm().await.map_err(classify("the swarm"))?;
        // Unset means Swarm's built-in default.
        let pools = swarm.default_addr_pool.filter(|p| !p.is_empty()).unwrap_or_else(|| vec![SWARM_DEFAULT_POOL.to_string()]);
        nets.push(NetworkSummary { id: String::new(), name: "the swarm's default address pools".into(), subnets: pools, labels: BTreeMap::new() });
        Ok(nets)
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        let mut out = self.local.list_containers().await?;
        out.extend(self.containers_labelled(&vec![]).await?);
        Ok(out)
    }

    async fn list_images(&self) -> Result<Vec<String>, EngineError> {
        self.local.list_images().await
    }

    async fn networks_labelled(&self, labels: &LabelFilter) -> Result<Vec<NetworkSummary>, EngineError> {
        self.local.networks_labelled(&mine(labels)).await
    }

    /// Services as containers: id and name are the service's name.
    async fn containers_labelled(&self, labels: &LabelFilter) -> Result<Vec<ContainerSummary>, EngineError> {
        let services = self.services(labels).await?;
        if services.is_empty() {
            return Ok(vec![]);
        }
        let mut by_service: BTreeMap<String, Vec<Task>> = BTreeMap::new();
        for t in self.all_tasks().await? {
            by_service.entry(t.service_id.clone().unwrap_or_default()).or_default().push(t);
        }
        Ok(services
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let name = spec.name.unwrap_or_default();
                let task = current(by_service.remove(&s.id.unwrap_or_default()).unwrap_or_default());
                let state = task.as_ref().and_then(|t| t.status.as_ref()?.state).map(task_status).unwrap_or("created");
                let published = task.as_ref().map(published).unwrap_or_default().into_iter().map(|(c, proto, h)| (h, c, proto)).collect();
                let labels = orch_labels(spec.labels);
                ContainerSummary { id: name.clone(), name, state: state.to_string(), labels, published }
            })
            .collect())
    }

    async fn volumes_labelled(&self, labels: &LabelFilter) -> Result<Vec<(String, Labels)>, EngineError> {
        self.local.volumes_labelled(&mine(labels)).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        self.local.image_exists(image).await
    }

    async fn tag_image(&self, image: &str, tag: &str) -> Result<(), EngineError> {
        self.local.tag_image(image, tag).await
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        self.local.remove_image(image).await
    }

    async fn build_image(&self, spec: BuildSpec) -> Result<(), EngineError> {
        self.local.build_image(spec).await
    }

    /// An attachable overlay (so `docker run --network` and tests can join it) with orch's subnet.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        if !matches!(spec.driver.as_str(), "" | "bridge" | "overlay") {
            return Err(EngineError::Unsupported {
                what: format!("network {}", spec.name),
                message: format!("the swarm engine makes overlay networks; driver {:?} is not one", spec.driver),
            });
        }
        let mut overlay = spec.clone();
        overlay.driver = "overlay".into();
        overlay.labels = marked(&spec.labels);
        // Bridge driver options mean nothing to an overlay.
        overlay.options.retain(|k, _| !k.starts_with("com.docker.network.bridge."));
        self.local.create_network_scoped(&overlay, true).await
    }

    /// Removes the overlay once Swarm has taken down the tasks attached to it, and waits until this node has let it go.
    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let deadline = Instant::now() + REMOVE_WAIT;
        loop {
            // While Swarm takes the overlay's tasks down, removal fails in several ways (403 "active endpoints",
            // a 500 when the node's copy went first): what counts is whether the network is still there after.
            let removed = self.local.remove_network(name).await;
            match self.local.inspect_network(name).await {
                Err(EngineError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) if Instant::now() >= deadline => {
                    return Err(removed.err().unwrap_or_else(|| EngineError::Api {
                        what: format!("network {name}"),
                        status: 409,
                        message: format!("still there {REMOVE_WAIT:?} after its removal"),
                    }));
                }
                Ok(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn inspect_network(&self, name: &str) -> Result<NetworkSummary, EngineError> {
        self.local.inspect_network(name).await
    }

    async fn network_info(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        self.local.network_info(name).await
    }

    /// Overlays are attachable: a plain container on the manager joins one as it would a bridge.
    async fn connect_network(&self, network: &str, container: &str, aliases: &[String]) -> Result<(), EngineError> {
        self.local.connect_network(network, container, aliases).await
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        self.local.disconnect_network(network, container).await
    }

    /// A service's task may run on any node; the manager's engine cannot read its statistics.
    async fn container_memory(&self, _id: &str) -> Result<Option<u64>, EngineError> {
        Ok(None)
    }

    async fn image_size(&self, image: &str) -> Result<Option<u64>, EngineError> {
        self.local.image_size(image).await
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Labels, EngineError> {
        self.local.create_volume(&VolumeSpec { labels: marked(&spec.labels), ..spec.clone() }).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.local.remove_volume(name).await
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let what = format!("container {}", spec.name);
        let image = self.distribute(&spec.image).await?;
        let spec = &ContainerSpec { labels: marked(&spec.labels), image, ..spec.clone() };
        let mut configs = vec![];
        let mut made = vec![];
        for (i, f) in spec.files.iter().enumerate() {
            use base64::Engine as _;
            if f.content.len() > CONFIG_MAX {
                return Err(EngineError::Unsupported {
                    what,
                    message: format!("{} is {} bytes; a swarm config holds at most {CONFIG_MAX}", f.target, f.content.len()),
                });
            }
            let mut l: HashMap<String, String> = spec.labels.clone().into_iter().collect();
            l.insert(OF_SERVICE.into(), spec.name.clone());
            let name = format!("{}-file{i}", spec.name);
            let cfg = bollard::models::ConfigSpec {
                name: Some(name.clone()),
                labels: Some(l),
                data: Some(base64::engine::general_purpose::STANDARD.encode(&f.content)),
                ..Default::default()
            };
            let id = self.docker.create_config(cfg).await.map_err(classify(&format!("swarm config {name}")))?.id;
            made.push(id.clone());
            configs.push(bollard::models::TaskSpecContainerSpecConfigs {
                file: Some(bollard::models::TaskSpecContainerSpecFile1 {
                    name: Some(f.target.clone()),
                    uid: Some(f.uid.to_string()),
                    gid: Some(f.gid.to_string()),
                    mode: Some(f.mode),
                }),
                config_id: Some(id),
                config_name: Some(name),
                ..Default::default()
            });
        }
        let result = async {
            let service = service_spec(spec, configs)?;
            if is_job(&spec.labels) {
                // Swarm runs a job the moment it exists; it is created when `up` starts it.
                if self
                    .services(&vec![format!("{}={}", labels::SERVICE, spec.labels.get(labels::SERVICE).cloned().unwrap_or_default())])
                    .await?
                    .iter()
                    .any(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(spec.name.as_str()))
                {
                    return Err(EngineError::Conflict(what.clone()));
                }
                self.jobs.lock().expect("jobs").insert(spec.name.clone(), service);
            } else {
                self.docker.create_service(service, None).await.map_err(classify(&what))?;
            }
            Ok(spec.name.clone())
        }
        .await;
        if result.is_err() {
            for id in made {
                let _ = self.docker.delete_config(&id).await;
            }
        }
        result
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        let pending = self.jobs.lock().expect("jobs").remove(id);
        match pending {
            Some(mut spec) => {
                let (node, constraints) = self.placement_for(&spec).await?;
                place(&mut spec, &node, constraints);
                self.docker.create_service(spec, None).await.map_err(classify(&format!("container {id}")))?;
            }
            None => self.scale(id, 1).await?,
        }
        self.await_start(id).await
    }

    async fn stop_container(&self, id: &str, _timeout_s: Option<i64>) -> Result<(), EngineError> {
        // Swarm stops the task with the service's own grace period.
        self.scale(id, 0).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let running = self.tasks(id).await?.iter().any(|t| {
                matches!(t.status.as_ref().and_then(|s| s.state), Some(TaskState::RUNNING | TaskState::STARTING | TaskState::PREPARING | TaskState::READY))
            });
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Removes the service and its configs, and waits until its containers on this node are gone (Swarm stops them
    /// after the service is deleted); a job never started is forgotten.
    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        self.jobs.lock().expect("jobs").remove(id);
        gone_is_done(self.docker.delete_service(id).await.map_err(classify(&what_service(id))))?;
        let deadline = Instant::now() + REMOVE_WAIT;
        let of_service = HashMap::from([("label".to_string(), vec![format!("com.docker.swarm.service.name={id}")])]);
        loop {
            let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&of_service).build();
            let left = self.docker.list_containers(Some(opts)).await.map_err(classify(&what_service(id)))?;
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            // As the local engine does, without a grace period: `down` stopped dev and prod services gracefully
            // before removing them, and Swarm would give every other one its full stop timeout.
            for c in left {
                self.local.remove_container(c.id.as_deref().unwrap_or_default()).await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.remove_configs(id).await
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerState, EngineError> {
        if let Some(spec) = self.jobs.lock().expect("jobs").get(id) {
            let labels = spec.task_template.as_ref().and_then(|t| t.container_spec.as_ref()).and_then(|c| c.labels.clone()).unwrap_or_default();
            return Ok(ContainerState { id: id.into(), name: id.into(), status: "created".into(), labels: labels.into_iter().collect(), ..Default::default() });
        }
        let service = self.service(id).await?;
        let spec = service.spec.unwrap_or_default();
        let node = spec.labels.as_ref().and_then(|l| l.get(NODE)).cloned();
        let labels = orch_labels(spec.labels.clone());
        let task = self.current_task(id).await?;
        let container_id = task.as_ref().and_then(|t| t.status.as_ref()?.container_status.as_ref()?.container_id.clone()).filter(|c| !c.is_empty());
        if let Some(cid) = &container_id {
            match self.local.inspect_container(cid).await {
                Ok(mut st) => {
                    st.id = id.into();
                    st.name = id.into();
                    st.labels = labels;
                    // Published host-mode ports as Swarm reports them, on every address of the node.
                    // (until Swarm reports them, the container's own bindings say the same)
                    if let Some(ports) = task.as_ref().map(published).filter(|p| !p.is_empty()) {
                        st.ports = ports.into_iter().map(|(c, proto, h)| (c, proto, "0.0.0.0".to_string(), h)).collect();
                    }
                    // A task Swarm is still bringing up or has replaced keeps the state Swarm gives it.
                    return Ok(st);
                }
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // The task runs on another node: what Swarm knows of it.
        let addr = match &node {
            Some(n) => self.nodes().await?.into_iter().find(|x| &x.id == n).map(|x| x.addr).unwrap_or_default(),
            None => String::new(),
        };
        let health_cfg = spec.labels.as_ref().and_then(|l| l.get(HEALTHCHECK)).and_then(|h| serde_json::from_str::<bollard::models::HealthConfig>(h).ok());
        let ns_to_ms = |v: Option<i64>| v.filter(|n| *n > 0).map(|n| (n / 1_000_000) as u64);
        let healthcheck = health_cfg.filter(|h| h.test.as_ref().is_some_and(|t| !t.is_empty() && t[0] != "NONE")).map(|h| orch_compose::Healthcheck {
            test: h.test.unwrap_or_default(),
            interval_ms: ns_to_ms(h.interval),
            timeout_ms: ns_to_ms(h.timeout),
            retries: h.retries.map(|r| r as u32),
            start_period_ms: ns_to_ms(h.start_period),
            start_interval_ms: None,
        });
        let status = task.as_ref().and_then(|t| t.status.clone()).unwrap_or_default();
        let state = status.state.unwrap_or(TaskState::NEW);
        let health = healthcheck.as_ref().and_then(|_| match state {
            TaskState::STARTING => Some("starting".to_string()),
            TaskState::RUNNING => Some("healthy".to_string()),
            _ => None,
        });
        // Without a healthcheck, "starting" is the container being started; with one, it runs and is not yet healthy.
        let docker_status = if state == TaskState::STARTING && healthcheck.is_none() { "created" } else { task_status(state) };
        Ok(ContainerState {
            id: id.into(),
            name: id.into(),
            status: docker_status.into(),
            exit_code: status.container_status.and_then(|c| c.exit_code),
            health,
            ports: task.as_ref().map(published).unwrap_or_default().into_iter().map(|(c, proto, h)| (c, proto, addr.clone(), h)).collect(),
            // bollard's Task has no network attachments: overlay addresses are known only for local tasks.
            addresses: BTreeMap::new(),
            labels,
            started_at: None,
            healthcheck,
        })
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Vec<(bool, String)>, EngineError> {
        let out = Mutex::new(vec![]);
        self.stream_logs(id, false, tail, &|is_err, line| out.lock().expect("log lines").push((is_err, line.to_string()))).await?;
        Ok(out.into_inner().expect("log lines"))
    }

    async fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>, sink: &(dyn Fn(bool, &str) + Sync)) -> Result<(), EngineError> {
        if self.jobs.lock().expect("jobs").contains_key(id) {
            return Ok(());
        }
        forward_lines(self.docker.service_logs(id, Some(logs_options(follow, tail))), &what_service(id), sink).await
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), EngineError> {
        let cid = self.exec_target(id).await?;
        self.local.exec(&cid, cmd).await
    }

    async fn exec_attached(&self, id: &str, cmd: &[String], tty: bool) -> Result<i64, EngineError> {
        let cid = self.exec_target(id).await?;
        self.local.exec_attached(&cid, cmd, tty).await
    }

    fn places_services(&self) -> bool {
        true
    }

    /// What one environment can have: the node with the most memory not claimed by orch's services (an environment
    /// is placed on one node).
    async fn memory(&self) -> Result<Option<(u64, u64)>, EngineError> {
        let claimed = self.claimed().await?;
        let nodes = self.nodes().await?;
        Ok(nodes.iter().map(|n| (n.memory.saturating_sub(claimed.get(&n.id).copied().unwrap_or(0)), n.memory)).max())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_constraints_are_read_as_swarm_reads_them() {
        let node = NodeInfo {
            id: "n1".into(),
            memory: 1 << 30,
            addr: "10.0.0.2".into(),
            hostname: "w1".into(),
            role: "worker".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: BTreeMap::from([("ssd".to_string(), "true".to_string())]),
            engine_labels: BTreeMap::new(),
        };
        assert_eq!(node.meets("node.labels.ssd==true"), Some(true));
        assert_eq!(node.meets("node.labels.ssd == false"), Some(false));
        assert_eq!(node.meets("node.labels.gpu!=yes"), Some(true));
        assert_eq!(node.meets("node.role==manager"), Some(false));
        assert_eq!(node.meets("node.hostname!=w1"), Some(false));
        assert_eq!(node.meets("engine.labels.zone==a"), Some(false));
        assert_eq!(node.meets("node.unknown==x"), None);
        assert_eq!(node.meets("nonsense"), None);
        let mut spec = ContainerSpec { name: "p-e-db".into(), image: "img".into(), ..Default::default() };
        spec.runtime.placement = vec!["node.labels.ssd==true".into()];
        let mut s = service_spec(&spec, vec![]).unwrap();
        assert_eq!(own_constraints(Some(&s)), vec!["node.labels.ssd==true".to_string()]);
        place(&mut s, "n1", vec!["node.labels.ssd==true".into(), "node.id==n1".into()]);
        assert_eq!(own_constraints(Some(&s)), vec!["node.labels.ssd==true".to_string()], "the node pin is not the service's own");
    }

    #[test]
    fn tmpfs_options_parse_or_refuse() {
        assert_eq!(tmpfs_options("size=64m,mode=1777"), Some((Some(64 << 20), Some(0o1777))));
        assert_eq!(tmpfs_options(""), Some((None, None)));
        assert_eq!(tmpfs_options("uid=1000"), None);
        assert_eq!(tmpfs_options("size=99999999999999999999g"), None);
    }

    #[test]
    fn what_swarm_cannot_do_is_refused_by_name() {
        let mut spec = ContainerSpec { name: "p-e-db".into(), image: "img".into(), ..Default::default() };
        assert!(service_spec(&spec, vec![]).is_ok());
        spec.runtime.privileged = true;
        spec.ports.push(PortBinding { container_port: 5432, protocol: "tcp".into(), host_ip: Some("127.0.0.1".into()), host_port: None });
        let err = service_spec(&spec, vec![]).unwrap_err().to_string();
        assert!(err.contains("p-e-db") && err.contains("privileged") && err.contains("one host address"), "{err}");
    }

    #[test]
    fn a_service_is_one_dnsrr_task_on_its_node_with_host_mode_ports() {
        let spec = ContainerSpec {
            name: "p-e-api".into(),
            image: "img".into(),
            entrypoint: Some(vec!["/app".into()]),
            command: Some(vec!["serve".into()]),
            ports: vec![PortBinding { container_port: 80, protocol: "tcp".into(), host_ip: None, host_port: Some(30080) }],
            tmpfs: vec!["/tmp:size=1m".into()],
            labels: BTreeMap::from([(labels::ENV.to_string(), "e".to_string())]),
            ..Default::default()
        };
        assert_eq!(own_constraints(Some(&service_spec(&spec, vec![]).unwrap())), Vec::<String>::new());
        let mut s = service_spec(&spec, vec![]).unwrap();
        assert_eq!(s.mode.clone().unwrap().replicated.unwrap().replicas, Some(0));
        place(&mut s, "n1", vec!["node.id==n1".into()]);
        let ep = s.endpoint_spec.unwrap();
        assert_eq!(ep.mode, Some(EndpointSpecModeEnum::DNSRR));
        assert_eq!(ep.ports.unwrap()[0].publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
        let t = s.task_template.unwrap();
        assert_eq!(t.placement.unwrap().constraints.unwrap(), vec!["node.id==n1".to_string()]);
        let c = t.container_spec.unwrap();
        assert_eq!((c.command.unwrap(), c.args.unwrap()), (vec!["/app".to_string()], vec!["serve".to_string()]));
        assert_eq!(c.mounts.unwrap()[0].tmpfs_options.as_ref().unwrap().size_bytes, Some(1 << 20));
        assert_eq!(s.labels.unwrap().get(NODE).map(String::as_str), Some("n1"));
    }
}
