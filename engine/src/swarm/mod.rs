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
use bollard::models::{Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskState};

mod placement;
mod spec;

use super::docker::{classify, forward_lines, gone_is_done, label_filters, logs_options, mounts_and_binds, ms_to_ns};
use super::*;
use crate::labels;
use placement::place;
use spec::service_spec;

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

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        self.local.image_id(image).await
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
