//! An in-memory [`Engine`] for tests without a daemon: networks, volumes, containers and images in maps, with the
//! engine behaviour orch relies on — name conflicts (409), missing resources (404, removal idempotent), label
//! filters, host-port conflicts, one-shot exit codes, healthchecks — and a journal of every mutating call, so tests can
//! check ordering, concurrency and rollback in milliseconds. What a container does when started is scripted per
//! service ([`Behaviour`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::labels;

/// What a service's container does once started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Keeps running; its healthcheck (if any) passes.
    #[default]
    Run,
    /// Keeps running; its healthcheck fails.
    Unhealthy,
    /// Exits at once with this status (a one-shot job).
    Exit(i64),
    /// The engine refuses to start it (e.g. a bad entrypoint), with this message.
    FailStart(String),
}

#[derive(Debug, Clone)]
struct Container {
    id: String,
    spec: ContainerSpec,
    status: String,
    exit_code: Option<i64>,
    /// (container port, protocol, host ip, host port) once started.
    ports: Vec<(u16, String, String, u16)>,
    /// RFC 3339, as Docker reports it, since the last start.
    started_at: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    /// By id. Names may repeat, as engines before API 1.44 allow; a lookup by a repeated name is ambiguous.
    networks: BTreeMap<String, NetworkSpec>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    containers: BTreeMap<String, Container>,
    behaviours: BTreeMap<String, Behaviour>,
    /// Host ports held by processes outside orch.
    taken_ports: BTreeSet<u16>,
    next_id: u64,
    next_ephemeral: u16,
    journal: Vec<String>,
    starting: usize,
    max_starting: usize,
    /// Networks the engine will not remove, as Docker 20.10 refuses a network it keeps a stale endpoint of.
    stuck_networks: BTreeSet<String>,
}

/// The fake engine. Cheap to create; every test gets its own. Clones share the same engine state.
#[derive(Debug, Default, Clone)]
pub struct FakeEngine {
    state: Arc<Mutex<State>>,
    /// How long a start takes, so that concurrent starts overlap and can be counted.
    pub start_delay: Duration,
}

fn matches(labels: &BTreeMap<String, String>, filter: &LabelFilter) -> bool {
    filter.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
        None => labels.contains_key(f.as_str()),
    })
}

impl FakeEngine {
    pub fn new() -> FakeEngine {
        FakeEngine { start_delay: Duration::from_millis(20), ..FakeEngine::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; its state is still worth reading.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Images present "locally".
    pub fn with_images(self, images: &[&str]) -> FakeEngine {
        self.state().images.extend(images.iter().map(|i| i.to_string()));
        self
    }

    /// What `service`'s container does once started (default: [`Behaviour::Run`]).
    pub fn behave(&self, service: &str, behaviour: Behaviour) {
        self.state().behaviours.insert(service.into(), behaviour);
    }

    /// Makes network `name` one the engine refuses to remove (403, "has active endpoints", with no container on it):
    /// what a daemon that lost track of an endpoint answers until it restarts.
    pub fn stick_network(&self, name: &str) {
        self.state().stuck_networks.insert(name.to_string());
    }

    /// Marks a host port as bound by a process outside orch: a container publishing it fails to start.
    pub fn take_port(&self, port: u16) {
        self.state().taken_ports.insert(port);
    }

    /// Puts a container in place directly, as another tool (or an earlier, killed run) would have left it.
    pub fn plant_container(&self, name: &str, labels: BTreeMap<String, String>) -> String {
        let mut st = self.state();
        st.next_id += 1;
        let id = format!("planted{:04}", st.next_id);
        let spec = ContainerSpec { name: name.into(), image: "planted".into(), labels, ..ContainerSpec::default() };
        st.containers.insert(id.clone(), Container { id: id.clone(), spec, status: "running".into(), exit_code: None, ports: vec![], started_at: None });
        id
    }

    /// Every mutating call so far, e.g. `start p-e-db`, in the order the engine saw them.
    pub fn journal(&self) -> Vec<String> {
        self.state().journal.clone()
    }

    /// The most container starts that were in flight at once.
    pub fn max_concurrent_starts(&self) -> usize {
        self.state().max_starting
    }

    /// Names of the containers that exist now.
    pub fn container_names(&self) -> Vec<String> {
        self.state().containers.values().map(|c| c.spec.name.clone()).collect()
    }

    pub fn network_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state().networks.values().map(|s| s.name.clone()).collect();
        names.sort();
        names
    }

    /// Puts a network in place directly, as another tool would: beside one of the same name if there is one (engines
    /// before API 1.44 allow that). Returns its id.
    pub fn plant_network(&self, name: &str, labels: BTreeMap<String, String>) -> String {
        let mut st = self.state();
        st.next_id += 1;
        let id = format!("planted-net{:04}", st.next_id);
        st.networks.insert(
            id.clone(),
            NetworkSpec {
                name: name.into(),
                driver: "bridge".into(),
                internal: false,
                subnet: None,
                gateway: None,
                ip_range: None,
                options: BTreeMap::new(),
                labels,
            },
        );
        id
    }

    /// Puts a volume in place directly, as another tool would.
    pub fn plant_volume(&self, name: &str, labels: BTreeMap<String, String>) {
        self.state().volumes.insert(name.into(), labels);
    }

    pub fn volume_names(&self) -> Vec<String> {
        self.state().volumes.keys().cloned().collect()
    }

    /// The host ports a running container of `service` published.
    pub fn published(&self, service: &str) -> Vec<u16> {
        let st = self.state();
        st.containers
            .values()
            .filter(|c| c.spec.labels.get(labels::SERVICE).map(String::as_str) == Some(service))
            .flat_map(|c| c.ports.iter().map(|p| p.3))
            .collect()
    }

    /// A network by id, or by its name when exactly one network has it: as Docker resolves them.
    fn network(st: &State, id_or_name: &str) -> Result<String, EngineError> {
        if st.networks.contains_key(id_or_name) {
            return Ok(id_or_name.to_string());
        }
        let named: Vec<&String> = st.networks.iter().filter(|(_, s)| s.name == id_or_name).map(|(id, _)| id).collect();
        match named.as_slice() {
            [] => Err(EngineError::NotFound(format!("network {id_or_name}"))),
            [one] => Ok((*one).clone()),
            many => Err(EngineError::Api {
                what: format!("network {id_or_name}"),
                status: 400,
                message: format!("network {id_or_name} is ambiguous ({} matches found on name)", many.len()),
            }),
        }
    }

    fn find(st: &State, id_or_name: &str) -> Option<String> {
        st.containers.values().find(|c| c.id == id_or_name || c.spec.name == id_or_name).map(|c| c.id.clone())
    }

    fn behaviour(st: &State, c: &Container) -> Behaviour {
        c.spec.labels.get(labels::SERVICE).and_then(|s| st.behaviours.get(s)).cloned().unwrap_or_default()
    }

    fn summary(c: &Container) -> ContainerSummary {
        ContainerSummary {
            id: c.id.clone(),
            name: c.spec.name.clone(),
            state: c.status.clone(),
            labels: c.spec.labels.clone(),
            published: c.ports.iter().map(|p| (p.3, p.0, p.1.clone())).collect(),
        }
    }

    fn network_summary(id: &str, spec: &NetworkSpec) -> NetworkSummary {
        NetworkSummary { id: id.into(), name: spec.name.clone(), subnets: spec.subnet.iter().cloned().collect(), labels: spec.labels.clone() }
    }

    /// Whether endpoint `e` (by network id or name) is on network `id`.
    fn on(st: &State, e: &Endpoint, id: &str) -> bool {
        e.network == id || st.networks.get(id).is_some_and(|s| s.name == e.network)
    }
}

impl Engine for FakeEngine {
    async fn list_networks(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        Ok(self.state().networks.iter().map(|(id, s)| Self::network_summary(id, s)).collect())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        Ok(self.state().containers.values().map(Self::summary).collect())
    }

    async fn list_images(&self) -> Result<Vec<String>, EngineError> {
        Ok(self.state().images.iter().cloned().collect())
    }

    async fn networks_labelled(&self, filter: &LabelFilter) -> Result<Vec<NetworkSummary>, EngineError> {
        Ok(self.state().networks.iter().filter(|(_, s)| matches(&s.labels, filter)).map(|(id, s)| Self::network_summary(id, s)).collect())
    }

    async fn containers_labelled(&self, filter: &LabelFilter) -> Result<Vec<ContainerSummary>, EngineError> {
        Ok(self.state().containers.values().filter(|c| matches(&c.spec.labels, filter)).map(Self::summary).collect())
    }

    async fn volumes_labelled(&self, filter: &LabelFilter) -> Result<Vec<(String, BTreeMap<String, String>)>, EngineError> {
        Ok(self.state().volumes.iter().filter(|(_, l)| matches(l, filter)).map(|(n, l)| (n.clone(), l.clone())).collect())
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        Ok(self.state().images.contains(image))
    }

    async fn tag_image(&self, image: &str, tag: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        if !st.images.contains(image) {
            return Err(EngineError::NotFound(format!("image {image}")));
        }
        st.images.insert(tag.into());
        st.journal.push(format!("tag {image} {tag}"));
        Ok(())
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        st.images.remove(image);
        st.journal.push(format!("remove-image {image}"));
        Ok(())
    }

    async fn build_image(&self, spec: BuildSpec) -> Result<(), EngineError> {
        let mut st = self.state();
        st.journal.push(format!("build {}", spec.tag));
        st.images.insert(spec.tag);
        Ok(())
    }

    /// As engines before API 1.44 do: a second network of a name is made beside the first. A subnet that overlaps
    /// another network's is refused, as Docker refuses it.
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        let mut st = self.state();
        if let Some(subnet) = spec.subnet.as_ref().and_then(|s| s.parse::<Ipv4Net>().ok()) {
            let overlapping = st
                .networks
                .values()
                .filter_map(|n| n.subnet.as_ref()?.parse::<Ipv4Net>().ok())
                .any(|o| o.contains(&subnet.network()) || subnet.contains(&o.network()));
            if overlapping {
                return Err(EngineError::SubnetTaken {
                    what: format!("network {}", spec.name),
                    subnet: subnet.to_string(),
                    message: "Pool overlaps with other one on this address space".into(),
                });
            }
        }
        st.next_id += 1;
        let id = format!("net{:04}", st.next_id);
        st.networks.insert(id.clone(), spec.clone());
        st.journal.push(format!("create-network {}", spec.name));
        Ok(id)
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        let id = match Self::network(&st, name) {
            Ok(id) => id,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if st.stuck_networks.contains(&st.networks[&id].name) {
            let message = format!("error while removing network: network {} id {id} has active endpoints", st.networks[&id].name);
            return Err(EngineError::Api { what: format!("network {id}"), status: 403, message });
        }
        let spec = st.networks.remove(&id).expect("found");
        // As Docker's removal does here: stragglers are disconnected first.
        for c in st.containers.values_mut() {
            c.spec.endpoints.retain(|e| e.network != id && e.network != spec.name);
        }
        st.journal.push(format!("remove-network {}", spec.name));
        Ok(())
    }

    async fn inspect_network(&self, name: &str) -> Result<NetworkSummary, EngineError> {
        let st = self.state();
        let id = Self::network(&st, name)?;
        Ok(Self::network_summary(&id, &st.networks[&id]))
    }

    /// As Docker does: creating a volume that exists is no error; the answer is the volume as it is.
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Labels, EngineError> {
        let mut st = self.state();
        if let Some(existing) = st.volumes.get(&spec.name) {
            return Ok(existing.clone());
        }
        st.volumes.insert(spec.name.clone(), spec.labels.clone());
        st.journal.push(format!("create-volume {}", spec.name));
        Ok(spec.labels.clone())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        st.volumes.remove(name);
        st.journal.push(format!("remove-volume {name}"));
        Ok(())
    }

    async fn network_info(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        let st = self.state();
        let id = Self::network(&st, name)?;
        let spec = &st.networks[&id];
        let mut containers: Vec<String> =
            st.containers.values().filter(|c| c.spec.endpoints.iter().any(|e| Self::on(&st, e, &id))).map(|c| c.spec.name.clone()).collect();
        containers.sort();
        Ok(NetworkInfo {
            id: id.clone(),
            name: spec.name.clone(),
            driver: spec.driver.clone(),
            internal: spec.internal,
            subnets: spec.subnet.iter().cloned().collect(),
            gateways: spec.gateway.iter().cloned().collect(),
            labels: spec.labels.clone(),
            containers,
        })
    }

    async fn connect_network(&self, network: &str, container: &str, aliases: &[String]) -> Result<(), EngineError> {
        let mut st = self.state();
        let id = Self::network(&st, network)?;
        let cid = Self::find(&st, container).ok_or_else(|| EngineError::NotFound(format!("container {container}")))?;
        let attached = st.containers[&cid].spec.endpoints.iter().any(|e| Self::on(&st, e, &id));
        let c = st.containers.get_mut(&cid).expect("found");
        if !attached {
            c.spec.endpoints.push(Endpoint { network: id, aliases: aliases.to_vec(), ipv4_address: None, links: vec![] });
            st.journal.push(format!("connect {network} {container}"));
        }
        Ok(())
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        let id = Self::network(&st, network)?;
        let name = st.networks[&id].name.clone();
        let cid = Self::find(&st, container).ok_or_else(|| EngineError::NotFound(format!("container {container}")))?;
        let c = st.containers.get_mut(&cid).expect("found");
        let before = c.spec.endpoints.len();
        c.spec.endpoints.retain(|e| e.network != id && e.network != name);
        if c.spec.endpoints.len() != before {
            st.journal.push(format!("disconnect {network} {container}"));
        }
        Ok(())
    }

    /// A running container uses a quarter of its limit, else 16 MiB: deterministic figures for reports.
    async fn container_memory(&self, id: &str) -> Result<Option<u64>, EngineError> {
        let st = self.state();
        let cid = Self::find(&st, id).ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
        let c = &st.containers[&cid];
        Ok((c.status == "running").then(|| c.spec.memory.map(|m| m / 4).unwrap_or(16 << 20)))
    }

    /// Every local image weighs 10 MiB per character of its name (so variants differ).
    async fn image_size(&self, image: &str) -> Result<Option<u64>, EngineError> {
        Ok(self.state().images.contains(image).then(|| image.len() as u64 * (10 << 20)))
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        // The fake's images have no content: the name stands for it.
        Ok(self.state().images.contains(image).then(|| format!("sha256:{:016x}", orch_plan::plan::fnv1a(image.as_bytes()))))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let mut st = self.state();
        if st.containers.values().any(|c| c.spec.name == spec.name) {
            return Err(EngineError::Conflict(format!("container {}", spec.name)));
        }
        if !st.images.contains(&spec.image) {
            return Err(EngineError::NotFound(format!("image {}", spec.image)));
        }
        for e in &spec.endpoints {
            Self::network(&st, &e.network)?;
        }
        st.next_id += 1;
        let id = format!("c{:04}", st.next_id);
        st.containers
            .insert(id.clone(), Container { id: id.clone(), spec: spec.clone(), status: "created".into(), exit_code: None, ports: vec![], started_at: None });
        st.journal.push(format!("create {}", spec.name));
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        {
            let mut st = self.state();
            st.starting += 1;
            st.max_starting = st.max_starting.max(st.starting);
        }
        tokio::time::sleep(self.start_delay).await;
        let mut st = self.state();
        st.starting -= 1;
        let Some(cid) = Self::find(&st, id) else {
            return Err(EngineError::NotFound(format!("container {id}")));
        };
        let c = st.containers[&cid].clone();
        let name = c.spec.name.clone();
        st.journal.push(format!("start {name}"));
        // Ports held outside orch, or by another running container, refuse the start as Docker does.
        let in_use: BTreeSet<u16> = st
            .containers
            .values()
            .filter(|o| o.id != cid && o.status == "running")
            .flat_map(|o| o.ports.iter().map(|p| p.3))
            .chain(st.taken_ports.iter().copied())
            .collect();
        if let Some(p) = c.spec.ports.iter().filter_map(|b| b.host_port).find(|p| in_use.contains(p)) {
            return Err(EngineError::PortTaken {
                what: format!("container {name}"),
                message: format!("Bind for 0.0.0.0:{p} failed: port is already allocated"),
            });
        }
        match Self::behaviour(&st, &c) {
            Behaviour::FailStart(message) => return Err(EngineError::Api { what: format!("container {name}"), status: 500, message }),
            Behaviour::Exit(code) => {
                let entry = st.containers.get_mut(&cid).expect("found above");
                entry.status = "exited".into();
                entry.exit_code = Some(code);
                return Ok(());
            }
            Behaviour::Run | Behaviour::Unhealthy => {}
        }
        let mut ports = vec![];
        for b in &c.spec.ports {
            let host_port = match b.host_port {
                Some(p) => p,
                None => {
                    st.next_ephemeral = st.next_ephemeral.max(32768) + 1;
                    st.next_ephemeral
                }
            };
            ports.push((b.container_port, b.protocol.clone(), b.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), host_port));
        }
        let entry = st.containers.get_mut(&cid).expect("found above");
        entry.status = "running".into();
        entry.ports = ports;
        entry.started_at = Some(chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).to_rfc3339());
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout_s: Option<i64>) -> Result<(), EngineError> {
        let mut st = self.state();
        let cid = Self::find(&st, id).ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
        let c = st.containers.get_mut(&cid).expect("found");
        if c.status == "running" {
            c.status = "exited".into();
            c.exit_code = Some(0);
        }
        let name = c.spec.name.clone();
        st.journal.push(format!("stop {name}"));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let mut st = self.state();
        if let Some(cid) = Self::find(&st, id) {
            let c = st.containers.remove(&cid).expect("found");
            st.journal.push(format!("remove {}", c.spec.name));
        }
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerState, EngineError> {
        let st = self.state();
        let cid = Self::find(&st, id).ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
        let c = &st.containers[&cid];
        let health = match (&c.spec.healthcheck, c.status.as_str()) {
            (Some(h), "running") if h.test.first().map(String::as_str) != Some("NONE") => Some("starting".to_string()),
            _ => None,
        };
        Ok(ContainerState {
            id: c.id.clone(),
            name: c.spec.name.clone(),
            status: c.status.clone(),
            exit_code: c.exit_code,
            health,
            ports: c.ports.clone(),
            addresses: c.spec.endpoints.iter().map(|e| (e.network.clone(), e.ipv4_address.clone().unwrap_or_default())).collect(),
            labels: c.spec.labels.clone(),
            started_at: c.started_at.clone(),
            healthcheck: c.spec.healthcheck.clone(),
        })
    }

    async fn logs(&self, id: &str, _tail: Option<usize>) -> Result<Vec<(bool, String)>, EngineError> {
        let st = self.state();
        let cid = Self::find(&st, id).ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
        let c = &st.containers[&cid];
        Ok(vec![(false, format!("{} says hello", c.spec.name))])
    }

    async fn stream_logs(&self, id: &str, _follow: bool, tail: Option<usize>, sink: &(dyn Fn(bool, &str) + Sync)) -> Result<(), EngineError> {
        for (is_err, line) in self.logs(id, tail).await? {
            sink(is_err, &line);
        }
        Ok(())
    }

    async fn exec_attached(&self, id: &str, cmd: &[String], _tty: bool) -> Result<i64, EngineError> {
        Ok(self.exec(id, cmd).await?.0)
    }

    /// A healthcheck (or any command) succeeds in a running container unless its service is [`Behaviour::Unhealthy`].
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), EngineError> {
        let mut st = self.state();
        let cid = Self::find(&st, id).ok_or_else(|| EngineError::NotFound(format!("container {id}")))?;
        let c = st.containers[&cid].clone();
        if c.status != "running" {
            return Err(EngineError::Conflict(format!("container {} is not running", c.spec.name)));
        }
        st.journal.push(format!("exec {} {}", c.spec.name, cmd.join(" ")));
        match Self::behaviour(&st, &c) {
            Behaviour::Unhealthy => Ok((1, "unhealthy".into())),
            _ => Ok((0, String::new())),
        }
    }
}
