//! Turns a resolved plan into a running environment (`up`) and takes it away again (`down`).
//!
//! Every resource is labelled before it exists (`orch.env`, `orch.project`, `orch.service`, `orch.owner`,
//! `orch.created`, `orch.plan-hash`), so an environment can always be found and removed from labels alone. Images are
//! checked (and built) before anything is created; services start in dependency order, independent ones
//! concurrently; readiness is polled every ~100 ms, running a service's healthcheck command directly instead of
//! waiting for Docker's healthcheck interval.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use orch_compose::{Condition, Mount};
use tokio::sync::watch;

use crate::engine::{BuildSpec, ContainerSpec, ContainerState, Endpoint, Engine, EngineError, FileSpec, MountSpec, NetworkSpec, PortBinding, VolumeSpec};
use crate::plan::{FileSource, LogStream, Plan, PortStrategy, ServicePlan, WaitStrategy, fnv1a};

pub mod labels {
    pub const ENV: &str = "orch.env";
    pub const PROJECT: &str = "orch.project";
    pub const SERVICE: &str = "orch.service";
    pub const OWNER: &str = "orch.owner";
    pub const CREATED: &str = "orch.created";
    pub const PLAN_HASH: &str = "orch.plan-hash";
    /// The service's wait strategies (JSON), so `restart` can wait the same way without the plan.
    pub const WAIT: &str = "orch.wait";
}

const POLL: Duration = Duration::from_millis(100);

/// The process that owns an environment: `pid:start-time@host:boot-id`. An owner whose pid is gone, whose pid was
/// reused (different start time) or whose machine rebooted (different boot id) is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start_time: u64,
    pub host: String,
    pub boot_id: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
            host: read_trim("/proc/sys/kernel/hostname"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        }
    }

    pub fn label(&self) -> String {
        format!("{}:{}@{}:{}", self.pid, self.start_time, self.host, self.boot_id)
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let (proc_part, machine) = label.split_once('@')?;
        let (pid, start) = proc_part.split_once(':')?;
        let (host, boot) = machine.rsplit_once(':')?;
        Some(Owner { pid: pid.parse().ok()?, start_time: start.parse().ok()?, host: host.into(), boot_id: boot.into() })
    }

    /// Whether this owner is a live process. Owners on other hosts are assumed alive (we cannot tell).
    pub fn is_alive(&self) -> bool {
        let here = Owner::current();
        if self.host != here.host {
            return true;
        }
        if self.boot_id != here.boot_id {
            return false;
        }
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// Labels of every resource of this plan's environment.
pub fn resource_labels(plan: &Plan, owner: &Owner) -> BTreeMap<String, String> {
    let mut l = plan.identity.labels();
    l.insert(labels::OWNER.into(), owner.label());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    l.insert(labels::CREATED.into(), now.to_string());
    l.insert(labels::PLAN_HASH.into(), format!("{:016x}", plan_hash(plan)));
    l
}

pub fn plan_hash(plan: &Plan) -> u64 {
    let mut p = plan.clone();
    p.provenance.clear();
    p.diagnostics.clear();
    fnv1a(serde_json::to_string(&p).unwrap_or_default().as_bytes())
}

/// The label filter selecting one environment.
pub fn env_filter(project: Option<&str>, env_id: &str) -> Vec<String> {
    let mut f = vec![format!("{}={env_id}", labels::ENV)];
    if let Some(p) = project {
        f.push(format!("{}={p}", labels::PROJECT));
    }
    f
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "service {service} uses image {image}, which is not present locally and cannot be pulled (there is no registry); build it first or give the service a `build:` section"
    )]
    MissingImage { service: String, image: String },
    #[error("service {service}: {source}")]
    Build { service: String, source: EngineError },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{kind} {name} is in the way: {why}")]
    InTheWay { kind: &'static str, name: String, why: String },
    #[error("service {service} failed: {reason}{}", if logs.is_empty() { String::new() } else { format!("\n  last output:\n    {}", logs.join("\n    ")) })]
    ServiceFailed { service: String, reason: String, logs: Vec<String> },
    #[error("service {service} was not ready after {waited:?} (waiting for {waiting_for}); raise --timeout or check `orch logs {service}`")]
    Timeout { service: String, waited: Duration, waiting_for: String },
    #[error("service {service} did not start because {dependency} failed")]
    DependencyFailed { service: String, dependency: String },
    #[error("service {service}: {kind} {name}: {why}")]
    File { service: String, kind: String, name: String, why: String },
}

/// What `up` reports while it works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Building { service: String, image: String },
    NetworkCreated { name: String, subnet: Option<String> },
    Creating { service: String },
    Starting { service: String },
    Waiting { service: String, what: String },
    Ready { service: String, after: Duration },
    Failed { service: String, reason: String },
    RollingBack,
    Removed { containers: usize, networks: usize, volumes: usize },
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Wait until every service is ready (otherwise only what dependencies require).
    pub wait: bool,
    pub timeout: Duration,
    pub keep_on_failure: bool,
    pub no_cache: bool,
    /// How long the environment outlives this process once complete.
    pub lifetime: crate::reaper::Lifetime,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            wait: true,
            timeout: Duration::from_secs(120),
            keep_on_failure: false,
            no_cache: false,
            lifetime: crate::reaper::Lifetime::Kept { expires: None },
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpReport {
    pub containers: BTreeMap<String, String>,
    pub elapsed: Duration,
}

/// Service status as the start-up futures see each other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Pending,
    Started,
    Ready,
    Failed,
}

/// Brings the plan's environment up. On failure everything created for the environment is removed, unless
/// `keep_on_failure`.
pub async fn up<E: Engine>(engine: &E, plan: &Plan, opts: &UpOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<UpReport, LifecycleError> {
    let result = up_inner(engine, plan, opts, progress).await;
    if result.is_err() && !opts.keep_on_failure {
        progress(Progress::RollingBack);
        let filter = env_filter(Some(&plan.identity.project), &plan.identity.env_id);
        if let Ok(removed) = down(engine, &filter, true).await {
            progress(Progress::Removed { containers: removed.containers, networks: removed.networks, volumes: removed.volumes });
        }
    }
    result
}

async fn up_inner<E: Engine>(engine: &E, plan: &Plan, opts: &UpOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<UpReport, LifecycleError> {
    let started = Instant::now();
    let owner = Owner::current();
    let labels = resource_labels(plan, &owner);
    let images = ensure_images(engine, plan, opts, progress).await?;

    let creations = plan.networks.values().filter(|n| !n.external).map(|n| {
        let spec = NetworkSpec {
            name: n.docker_name.clone(),
            driver: n.driver.clone(),
            internal: n.internal,
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            ip_range: n.ip_range.clone(),
            options: n.driver_opts.clone(),
            labels: n.labels.clone().into_iter().chain(labels.clone()).collect(),
        };
        async move {
            with_conflict_resolution(engine, "network", &spec.name, || engine.create_network(&spec)).await?;
            progress(Progress::NetworkCreated { name: spec.name.clone(), subnet: spec.subnet.clone() });
            Ok::<_, LifecycleError>(())
        }
    });
    join_all(creations).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    for v in plan.volumes.values().filter(|v| !v.external) {
        let spec = VolumeSpec {
            name: v.docker_name.clone(),
            driver: v.driver.clone(),
            driver_opts: v.driver_opts.clone(),
            labels: v.labels.clone().into_iter().chain(labels.clone()).collect(),
        };
        match engine.create_volume(&spec).await {
            Ok(()) | Err(EngineError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let specs: Vec<(String, ContainerSpec)> = plan
        .services
        .iter()
        .map(|(name, s)| Ok((name.clone(), container_spec(plan, name, s, &images[name], &labels)?)))
        .collect::<Result<_, LifecycleError>>()?;
    // A container that joins another's namespaces or volumes can only be created once that one exists: create in
    // rounds, each round concurrently.
    let mut containers: BTreeMap<String, String> = BTreeMap::new();
    while containers.len() < specs.len() {
        let round: Vec<&(String, ContainerSpec)> = specs
            .iter()
            .filter(|(name, _)| !containers.contains_key(name))
            .filter(|(name, _)| container_refs(&plan.services[name]).iter().all(|r| containers.contains_key(r) || !plan.services.contains_key(r)))
            .collect();
        if round.is_empty() {
            let stuck: Vec<&str> = specs.iter().map(|(n, _)| n.as_str()).filter(|n| !containers.contains_key(*n)).collect();
            return Err(LifecycleError::InTheWay {
                kind: "services",
                name: stuck.join(", "),
                why: "they share namespaces or volumes with each other in a cycle".into(),
            });
        }
        let created = join_all(round.into_iter().map(|(name, spec)| async move {
            progress(Progress::Creating { service: name.clone() });
            let id = with_conflict_resolution(engine, "container", &spec.name, || engine.create_container(spec)).await?;
            Ok::<_, LifecycleError>((name.clone(), id))
        }))
        .await;
        for r in created {
            let (name, id) = r?;
            containers.insert(name, id);
        }
    }

    // Who needs whose readiness: services others wait on (healthy / completed) are awaited even without --wait.
    let mut awaited: BTreeSet<&str> = BTreeSet::new();
    for s in plan.services.values() {
        for (dep, cond) in &s.depends_on {
            if *cond != Condition::ServiceStarted {
                awaited.insert(dep);
            }
        }
    }
    let channels: BTreeMap<&str, (watch::Sender<Status>, watch::Receiver<Status>)> =
        plan.services.keys().map(|k| (k.as_str(), watch::channel(Status::Pending))).collect();
    let deadline = started + opts.timeout;
    let specs: BTreeMap<String, ContainerSpec> = specs.into_iter().collect();
    let used_ports = std::sync::Mutex::new(BTreeSet::new());
    let runs = plan.services.iter().map(|(name, s)| {
        let id = containers[name].clone();
        let channels = &channels;
        let spec = &specs[name];
        let used_ports = &used_ports;
        let must_wait = opts.wait || awaited.contains(name.as_str());
        async move {
            let tx = &channels[name.as_str()].0;
            let result = start_service(engine, name, s, &id, spec, used_ports, channels, must_wait, deadline, progress).await;
            match &result {
                Ok(()) => {}
                Err(e) => {
                    tx.send_replace(Status::Failed);
                    progress(Progress::Failed { service: name.clone(), reason: e.to_string() });
                }
            }
            result
        }
    });
    let results = join_all(runs).await;
    // Report the root cause, not the dependents that failed because of it.
    let mut first_dependency_error = None;
    for r in results {
        match r {
            Err(e @ LifecycleError::DependencyFailed { .. }) => {
                first_dependency_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    if let Some(e) = first_dependency_error {
        return Err(e);
    }
    // Last: the marker that tells the reaper this environment is complete and not an orphan.
    crate::reaper::mark_ready(engine, &labels, &plan.identity.project, &plan.identity.env_id, opts.lifetime).await?;
    Ok(UpReport { containers, elapsed: started.elapsed() })
}

#[allow(clippy::too_many_arguments)]
async fn start_service<E: Engine>(
    engine: &E,
    name: &str,
    s: &ServicePlan,
    id: &str,
    spec: &ContainerSpec,
    used_ports: &std::sync::Mutex<BTreeSet<u16>>,
    channels: &BTreeMap<&str, (watch::Sender<Status>, watch::Receiver<Status>)>,
    must_wait: bool,
    deadline: Instant,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(), LifecycleError> {
    let began = Instant::now();
    for (dep, cond) in &s.depends_on {
        let Some((_, rx)) = channels.get(dep.as_str()) else {
            continue;
        };
        let mut rx = rx.clone();
        let needed = |st: &Status| match cond {
            Condition::ServiceStarted => {
                matches!(st, Status::Started | Status::Ready | Status::Failed)
            }
            _ => matches!(st, Status::Ready | Status::Failed),
        };
        let waited = tokio::time::timeout_at(deadline.into(), rx.wait_for(needed)).await;
        match waited {
            Err(_) => {
                return Err(LifecycleError::Timeout { service: name.into(), waited: began.elapsed(), waiting_for: format!("dependency {dep}") });
            }
            Ok(Err(_)) => {
                return Err(LifecycleError::DependencyFailed { service: name.into(), dependency: dep.clone() });
            }
            Ok(Ok(st)) if *st == Status::Failed => {
                return Err(LifecycleError::DependencyFailed { service: name.into(), dependency: dep.clone() });
            }
            Ok(Ok(_)) => {}
        }
    }
    let tx = &channels[name].0;
    progress(Progress::Starting { service: name.into() });
    let replaced = start_with_port_retry(engine, name, s, id, spec, used_ports).await?;
    let id = replaced.as_deref().unwrap_or(id);
    tx.send_replace(Status::Started);
    if must_wait {
        for strategy in &s.wait {
            progress(Progress::Waiting { service: name.into(), what: describe_wait(strategy) });
            wait_for(engine, name, id, strategy, deadline).await?;
        }
        progress(Progress::Ready { service: name.into(), after: began.elapsed() });
        tx.send_replace(Status::Ready);
    }
    Ok(())
}

pub fn describe_wait(w: &WaitStrategy) -> String {
    match w {
        WaitStrategy::Running => "running".into(),
        WaitStrategy::Healthcheck => "healthy".into(),
        WaitStrategy::Tcp { container_port } => format!("tcp port {container_port}"),
        WaitStrategy::Http { container_port, path, .. } => format!("http {container_port}{path}"),
        WaitStrategy::LogLine { pattern, .. } => format!("log line {pattern:?}"),
        WaitStrategy::ExitZero => "exit 0".into(),
    }
}

async fn last_logs<E: Engine>(engine: &E, id: &str) -> Vec<String> {
    engine.logs(id, Some(15)).await.map(|l| l.into_iter().map(|(_, line)| line).collect()).unwrap_or_default()
}

/// Starts the container; when the engine refuses a host port (a process outside orch holds it — invisible to the
/// facts), picks another port from the same range strategy, recreates the container and tries again. Returns the
/// new container id when it had to recreate.
async fn start_with_port_retry<E: Engine>(
    engine: &E,
    name: &str,
    s: &ServicePlan,
    id: &str,
    spec: &ContainerSpec,
    used_ports: &std::sync::Mutex<BTreeSet<u16>>,
) -> Result<Option<String>, LifecycleError> {
    let mut spec = spec.clone();
    let mut current: Option<String> = None;
    for _attempt in 0..5 {
        let cid = current.clone().unwrap_or_else(|| id.to_string());
        let err = match engine.start_container(&cid).await {
            Ok(()) => return Ok(current),
            Err(e) => e,
        };
        let text = err.to_string();
        if !(text.contains("port is already allocated") || text.contains("address already in use")) {
            return Err(err.into());
        }
        // Move every re-allocatable port of this service to a fresh one in its range.
        let mut moved = false;
        for binding in spec.ports.iter_mut() {
            let Some(plan_port) = s.ports.iter().find(|p| p.container_port == binding.container_port && p.protocol == binding.protocol) else {
                continue;
            };
            let (start, end) = match plan_port.strategy {
                PortStrategy::Range { start, end } | PortStrategy::Hashed { start, end } => (start, end),
                _ => continue,
            };
            let mut used = used_ports.lock().expect("port set");
            if let Some(old) = binding.host_port {
                used.insert(old);
            }
            let next = (start..=end).find(|p| !used.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok());
            if let Some(p) = next {
                used.insert(p);
                binding.host_port = Some(p);
                moved = true;
            }
        }
        if !moved {
            return Err(LifecycleError::ServiceFailed {
                service: name.into(),
                reason: format!("a host port it publishes is taken by a process outside orch ({text}); free the port or use a port range"),
                logs: vec![],
            });
        }
        engine.remove_container(&cid).await?;
        current = Some(engine.create_container(&spec).await?);
    }
    Err(LifecycleError::ServiceFailed { service: name.into(), reason: "its host ports kept being taken; gave up after 5 attempts".into(), logs: vec![] })
}

/// Polls one wait strategy until it holds, the container dies, or the deadline passes.
async fn wait_for<E: Engine>(engine: &E, name: &str, id: &str, strategy: &WaitStrategy, deadline: Instant) -> Result<(), LifecycleError> {
    let began = Instant::now();
    loop {
        let state = engine.inspect_container(id).await?;
        let exited = state.status == "exited" || state.status == "dead";
        let done = match strategy {
            WaitStrategy::ExitZero => match (exited, state.exit_code) {
                (true, Some(0)) => true,
                (true, code) => {
                    return Err(LifecycleError::ServiceFailed {
                        service: name.into(),
                        reason: format!("it exited with status {}", code.unwrap_or(-1)),
                        logs: last_logs(engine, id).await,
                    });
                }
                _ => false,
            },
            _ if exited => {
                return Err(LifecycleError::ServiceFailed {
                    service: name.into(),
                    reason: format!("it exited with status {} while orch waited for it to be {}", state.exit_code.unwrap_or(-1), describe_wait(strategy)),
                    logs: last_logs(engine, id).await,
                });
            }
            WaitStrategy::Running => state.status == "running",
            WaitStrategy::Healthcheck => healthy(engine, name, id, &state).await?,
            WaitStrategy::Tcp { container_port } => match address(&state, *container_port) {
                Some(addr) => tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(addr)).await.is_ok_and(|r| r.is_ok()),
                None => return Err(no_address(name, *container_port)),
            },
            WaitStrategy::Http { container_port, path, status } => match address(&state, *container_port) {
                Some(addr) => http_status(addr, path).await.is_some_and(|got| if *status == 0 { (200..300).contains(&got) } else { got == *status }),
                None => return Err(no_address(name, *container_port)),
            },
            WaitStrategy::LogLine { pattern, stream, times } => {
                let lines = engine.logs(id, None).await?;
                let count = lines
                    .iter()
                    .filter(|(is_err, line)| match stream {
                        LogStream::Stdout => !is_err,
                        LogStream::Stderr => *is_err,
                        LogStream::Either => true,
                    } && line.contains(pattern.as_str()))
                    .count();
                count >= *times as usize
            }
        };
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LifecycleError::Timeout { service: name.into(), waited: began.elapsed(), waiting_for: describe_wait(strategy) });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn no_address(service: &str, port: u16) -> LifecycleError {
    LifecycleError::ServiceFailed {
        service: service.into(),
        reason: format!("its wait strategy probes port {port}, but that port is neither published nor reachable on a non-internal network"),
        logs: vec![],
    }
}

/// Where the host reaches a container port: its published host port, else the container's address on a network.
fn address(state: &ContainerState, port: u16) -> Option<SocketAddr> {
    if let Some((_, _, ip, hp)) = state.ports.iter().find(|p| p.0 == port && p.1 == "tcp") {
        let ip = if ip.is_empty() || ip == "0.0.0.0" || ip == "::" { "127.0.0.1" } else { ip };
        return format!("{ip}:{hp}").parse().ok();
    }
    state.addresses.values().next().and_then(|ip| format!("{ip}:{port}").parse().ok())
}

/// A minimal HTTP/1.0 GET; returns the status code.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut).await.ok().flatten()
}

/// Healthy when Docker says so, or when the healthcheck command succeeds now (orch runs it itself so readiness is
/// seen within ~100 ms instead of after Docker's interval).
async fn healthy<E: Engine>(engine: &E, name: &str, id: &str, state: &ContainerState) -> Result<bool, LifecycleError> {
    match state.health.as_deref() {
        Some("healthy") => return Ok(true),
        Some("unhealthy") => {
            return Err(LifecycleError::ServiceFailed {
                service: name.into(),
                reason: "Docker reports it unhealthy".into(),
                logs: last_logs(engine, id).await,
            });
        }
        _ => {}
    }
    if state.status != "running" {
        return Ok(false);
    }
    let Some(h) = &state.healthcheck else {
        return Err(LifecycleError::ServiceFailed { service: name.into(), reason: "it is awaited as healthy but has no healthcheck".into(), logs: vec![] });
    };
    let cmd: Vec<String> = match h.test.first().map(String::as_str) {
        Some("CMD") => h.test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
        _ => return Ok(false),
    };
    let timeout = Duration::from_millis(h.timeout_ms.unwrap_or(30_000));
    match tokio::time::timeout(timeout, engine.exec(id, &cmd)).await {
        Ok(Ok((0, _))) => Ok(true),
        // A failing check, an exec racing the start, or a hung check: not healthy yet.
        _ => Ok(false),
    }
}

/// Creates a resource; on a name conflict, removes the one in the way if a dead orch run left it (by its labels)
/// and retries with backoff. Anything orch did not create, or a live environment's resource, is never touched.
async fn with_conflict_resolution<E: Engine, F, Fut>(engine: &E, kind: &'static str, name: &str, create: F) -> Result<String, LifecycleError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<String, EngineError>>,
{
    let mut delay = Duration::from_millis(200);
    for attempt in 0..4 {
        match create().await {
            Ok(id) => return Ok(id),
            Err(EngineError::Conflict(_)) if attempt < 3 => {
                let labels = match kind {
                    "network" => engine.inspect_network(name).await.map(|n| n.labels),
                    _ => engine.inspect_container(name).await.map(|c| c.labels),
                };
                let labels = match labels {
                    Ok(l) => l,
                    Err(EngineError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                let Some(env) = labels.get(labels::ENV) else {
                    return Err(LifecycleError::InTheWay {
                        kind,
                        name: name.into(),
                        why: "it was not created by orch, so orch leaves it alone; rename or remove it yourself".into(),
                    });
                };
                let owner = labels.get(labels::OWNER).and_then(|o| Owner::parse(o));
                if let Some(o) = owner.as_ref().filter(|o| o.is_alive()) {
                    return Err(LifecycleError::InTheWay {
                        kind,
                        name: name.into(),
                        why: format!(
                            "it belongs to environment {env} of a live orch process (pid {} on {}); use another --env or `orch down --env {env}`",
                            o.pid, o.host
                        ),
                    });
                }
                // Left by a dead run: remove it and try again.
                match kind {
                    "network" => engine.remove_network(name).await?,
                    _ => engine.remove_container(name).await?,
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(LifecycleError::InTheWay { kind, name: name.into(), why: "it kept reappearing while orch removed it".into() })
}

/// The image each service runs; builds what has `build:` and fails early on what is missing.
async fn ensure_images<E: Engine>(
    engine: &E,
    plan: &Plan,
    opts: &UpOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<BTreeMap<String, String>, LifecycleError> {
    let mut out = BTreeMap::new();
    let mut built: BTreeMap<String, String> = BTreeMap::new();
    // Builds first: a service may run the image another service builds; a build that uses another service's image
    // as a named context comes after it.
    let (mut builds, others): (Vec<_>, Vec<_>) = plan.services.iter().partition(|(_, s)| s.build.is_some());
    let used_as_context = |name: &str| {
        plan.services.values().filter_map(|s| s.build.as_ref()).any(|b| b.additional_contexts.values().any(|c| c.strip_prefix("service:") == Some(name)))
    };
    builds.sort_by_key(|(name, _)| !used_as_context(name));
    for (name, s) in builds.into_iter().chain(others) {
        let image = match (&s.build, &s.image) {
            (Some(b), image) => {
                let tag = image.clone().unwrap_or_else(|| format!("orch-build/{}-{}:latest", plan.identity.project, name));
                // `pull_policy: never` or `missing` use an image that is already there instead of building it.
                let use_local = matches!(s.pull_policy.as_deref(), Some("never" | "missing")) && image.is_some() && engine.image_exists(&tag).await?;
                // Services sharing one build (same tag) build once.
                if !use_local && !built.contains_key(&tag) {
                    progress(Progress::Building { service: name.clone(), image: tag.clone() });
                    build_service(engine, plan, name, b, &tag, &out, opts).await.map_err(|e| LifecycleError::Build { service: name.clone(), source: e })?;
                    for extra in &b.tags {
                        engine.tag_image(&tag, extra).await.map_err(|e| LifecycleError::Build { service: name.clone(), source: e })?;
                    }
                    built.insert(tag.clone(), name.clone());
                }
                tag
            }
            (None, Some(image)) => {
                if !engine.image_exists(image).await? {
                    return Err(LifecycleError::MissingImage { service: name.clone(), image: image.clone() });
                }
                image.clone()
            }
            (None, None) => {
                return Err(LifecycleError::MissingImage { service: name.clone(), image: "(none)".into() });
            }
        };
        out.insert(name.clone(), image);
    }
    Ok(out)
}

/// Builds one service's image. Named contexts (`additional_contexts`) become images first — a directory as a helper
/// image removed after the build, `docker-image://` as that image, `service:` as that service's image — and the
/// Dockerfile's references to them are rewritten, since the engine's classic builder knows one context only.
async fn build_service<E: Engine>(
    engine: &E,
    plan: &Plan,
    name: &str,
    b: &orch_compose::Build,
    tag: &str,
    images: &BTreeMap<String, String>,
    opts: &UpOptions,
) -> Result<(), EngineError> {
    let failed = |message: String| EngineError::Build { image: tag.to_string(), message };
    let dockerfile = b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
    let mut inline = b.dockerfile_inline.clone();
    if inline.is_none() && !b.context.join(&dockerfile).is_file() {
        let chosen_by = plan
            .provenance
            .get(&format!("services.{name}.build"))
            .filter(|p| p.iter().any(|s| s.starts_with("plugin:")))
            .map(|p| format!(" (the build was set by {})", p.join(" → ")))
            .unwrap_or_default();
        return Err(failed(format!("there is no {dockerfile} in the build context {}{chosen_by}", b.context.display())));
    }
    let project_label = BTreeMap::from([(labels::PROJECT.to_string(), plan.identity.project.clone())]);
    let mut helpers = vec![];
    let mut named = BTreeMap::new();
    for (ctx, source) in &b.additional_contexts {
        let image = if let Some(reference) = source.strip_prefix("docker-image://") {
            reference.to_string()
        } else if let Some(service) = source.strip_prefix("service:") {
            images.get(service).cloned().ok_or_else(|| failed(format!("build context {ctx} names service {service}, whose image is not ready")))?
        } else {
            let dir = Path::new(source);
            let helper =
                format!("orch-ctx/{}-{:016x}:latest", plan.identity.project, fnv1a(format!("{}/{name}/{ctx}/{source}", plan.identity.env_id).as_bytes()));
            let context = tar_tree(dir, "context/", &[(INLINE_DOCKERFILE, crate::dockerfile::CONTEXT_IMAGE_DOCKERFILE)])
                .map_err(|e| failed(format!("cannot read build context {ctx} ({}): {e}", dir.display())))?;
            let spec = BuildSpec { tag: helper.clone(), context, dockerfile: INLINE_DOCKERFILE.into(), labels: project_label.clone(), ..Default::default() };
            helpers.push(helper.clone());
            if let Err(e) = engine.build_image(spec).await {
                remove_helpers(engine, &helpers).await;
                return Err(e);
            }
            helper
        };
        named.insert(ctx.clone(), image);
    }
    if !named.is_empty() {
        let text = match &inline {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(b.context.join(&dockerfile)).map_err(|e| failed(format!("cannot read {dockerfile}: {e}")))?,
        };
        inline = Some(crate::dockerfile::rewrite_named_contexts(&text, &named));
    }
    let built = async {
        let context = tar_context(&b.context, inline.as_deref()).map_err(|e| failed(format!("cannot read build context {}: {e}", b.context.display())))?;
        let spec = BuildSpec {
            tag: tag.to_string(),
            context,
            dockerfile: if inline.is_some() { INLINE_DOCKERFILE.into() } else { dockerfile.clone() },
            args: b.args.clone(),
            target: b.target.clone(),
            labels: b.labels.clone().into_iter().chain(project_label.clone()).collect(),
            no_cache: opts.no_cache || b.no_cache == Some(true),
            network: b.network.clone(),
            shm_size: b.shm_size,
            extra_hosts: b.extra_hosts.clone(),
            cache_from: b.cache_from.clone(),
            platform: b.platform.clone(),
            pull: b.pull == Some(true),
        };
        engine.build_image(spec).await
    }
    .await;
    remove_helpers(engine, &helpers).await;
    built
}

/// Helper images are orch's own: removed whether the build worked or not (a failure to remove is only a leftover
/// image, which the next build of the same context replaces).
async fn remove_helpers<E: Engine>(engine: &E, helpers: &[String]) {
    for h in helpers {
        let _ = engine.remove_image(h).await;
    }
}

/// Where an inline Dockerfile (`dockerfile_inline`) is placed in the build context.
const INLINE_DOCKERFILE: &str = ".orch.inline.Dockerfile";

/// The build context as a tar archive (paths relative to the context; `.git` and `target` are skipped), with the
/// inline Dockerfile added when there is one.
pub fn tar_context(dir: &Path, inline_dockerfile: Option<&str>) -> std::io::Result<Vec<u8>> {
    let extra: Vec<(&str, &str)> = inline_dockerfile.map(|t| (INLINE_DOCKERFILE, t)).into_iter().collect();
    tar_tree(dir, "", &extra)
}

/// `dir` as a tar archive under `prefix`, plus `extra` (path, text) files at the archive's root.
fn tar_tree(dir: &Path, prefix: &str, extra: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, text) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        builder.append_data(&mut header, path, text.as_bytes())?;
    }
    builder.follow_symlinks(false);
    if !prefix.is_empty() {
        builder.append_dir(prefix, dir)?;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(dir).expect("inside the context");
            if rel.starts_with(".git") || rel.starts_with("target") {
                continue;
            }
            let rel = Path::new(prefix).join(rel);
            if e.file_type()?.is_dir() {
                builder.append_dir(&rel, &path)?;
                stack.push(path);
            } else {
                builder.append_path_with_name(&path, &rel)?;
            }
        }
    }
    builder.into_inner()
}

/// The services whose containers this one refers to by name (network, IPC and PID namespaces, volumes): they must
/// exist before it is created.
fn container_refs(s: &ServicePlan) -> Vec<String> {
    let mut out: Vec<String> = [s.network_mode.as_deref(), s.runtime.ipc.as_deref(), s.runtime.pid.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(|m| m.strip_prefix("service:"))
        .map(String::from)
        .collect();
    out.extend(s.volumes_from.iter().filter(|v| !v.starts_with("container:")).map(|v| v.split(':').next().unwrap_or_default().to_string()));
    out
}

/// `service:NAME` as the engine's `container:<NAME's container>`.
fn engine_mode(plan: &Plan, mode: &Option<String>) -> Option<String> {
    let m = mode.as_deref()?;
    Some(match m.strip_prefix("service:") {
        Some(svc) => format!("container:{}", plan.services.get(svc).map(|t| t.container_name.as_str()).unwrap_or(svc)),
        None => m.to_string(),
    })
}

/// `3000`, `3000/udp` or a range `3000-3002[/udp]` as the engine's `PORT/PROTOCOL` keys.
fn expose_keys(e: &str) -> Vec<String> {
    let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
    match ports.split_once('-').and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))) {
        Some((a, b)) if a <= b => (a..=b).map(|p| format!("{p}/{proto}")).collect(),
        _ => vec![format!("{ports}/{proto}")],
    }
}

/// A secret or config as the engine takes it: a read-only bind of its file, or a file copied in with owner and mode.
fn file_spec(service: &str, f: &crate::plan::FilePlan) -> Result<Option<FileSpec>, LifecycleError> {
    if f.is_bind() {
        return Ok(None);
    }
    let err = |why: String| LifecycleError::File { service: service.into(), kind: f.kind.clone(), name: f.name.clone(), why };
    let id = |v: &Option<String>, what: &str| -> Result<u64, LifecycleError> {
        match v {
            None => Ok(0),
            Some(s) => s.parse().map_err(|_| err(format!("{what} {s:?} must be a number (names cannot be resolved before the container runs)"))),
        }
    };
    let content = match &f.source {
        FileSource::File { path } => std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?,
        FileSource::Environment { value, .. } => value.clone().into_bytes(),
        FileSource::Content { content } => content.clone().into_bytes(),
    };
    Ok(Some(FileSpec { target: f.target.clone(), content, uid: id(&f.uid, "uid")?, gid: id(&f.gid, "gid")?, mode: f.mode.unwrap_or(0o444) }))
}

fn container_spec(plan: &Plan, name: &str, s: &ServicePlan, image: &str, labels: &BTreeMap<String, String>) -> Result<ContainerSpec, LifecycleError> {
    let mut all_labels = s.labels.clone();
    all_labels.extend(labels.clone());
    all_labels.insert(labels::SERVICE.into(), name.into());
    all_labels.insert(labels::WAIT.into(), serde_json::to_string(&s.wait).expect("wait strategies serialise"));
    let endpoints = s
        .networks
        .iter()
        .map(|(net, a)| {
            // The service name resolves like in docker compose; the old fixed container name keeps working too.
            let mut aliases = vec![name.to_string()];
            aliases.extend(a.aliases.iter().cloned());
            aliases.extend(s.requested_container_name.iter().cloned());
            aliases.dedup();
            // `links:` resolve for this container only, on the networks it shares with the linked service.
            let links = s
                .links
                .iter()
                .filter_map(|(svc, alias)| plan.services.get(svc).filter(|t| t.networks.contains_key(net)).map(|t| format!("{}:{alias}", t.container_name)))
                .collect();
            Endpoint {
                network: plan.networks.get(net).map(|n| n.docker_name.clone()).unwrap_or_else(|| net.clone()),
                aliases,
                ipv4_address: a.ipv4_address.clone(),
                links,
            }
        })
        .collect();
    let mut mounts: Vec<MountSpec> = s
        .volumes
        .iter()
        .map(|m: &Mount| match m.kind.as_str() {
            "bind" => MountSpec::Bind {
                source: m.source.clone().unwrap_or_default(),
                target: m.target.clone(),
                read_only: m.read_only,
                propagation: m.propagation.clone(),
                selinux: m.selinux.clone(),
                create_host_path: m.create_host_path,
            },
            "tmpfs" => MountSpec::Tmpfs { target: m.target.clone(), size: m.tmpfs_size, mode: m.tmpfs_mode },
            _ => MountSpec::Volume {
                source: m.source.as_ref().map(|src| plan.volumes.get(src).map(|v| v.docker_name.clone()).unwrap_or_else(|| src.clone())),
                target: m.target.clone(),
                read_only: m.read_only,
                nocopy: m.nocopy,
                subpath: m.subpath.clone(),
            },
        })
        .collect();
    let mut files = vec![];
    for f in &s.files {
        match (file_spec(name, f)?, &f.source) {
            (Some(spec), _) => files.push(spec),
            (None, FileSource::File { path }) => mounts.push(MountSpec::Bind {
                source: path.to_string_lossy().into_owned(),
                target: f.target.clone(),
                read_only: true,
                propagation: None,
                selinux: None,
                create_host_path: false,
            }),
            (None, _) => {}
        }
    }
    let volumes_from = s
        .volumes_from
        .iter()
        .map(|v| match v.strip_prefix("container:") {
            Some(c) => c.to_string(),
            None => {
                let (svc, mode) = v.split_once(':').map(|(a, b)| (a, Some(b))).unwrap_or((v.as_str(), None));
                let container = plan.services.get(svc).map(|t| t.container_name.clone()).unwrap_or_else(|| svc.to_string());
                mode.map(|m| format!("{container}:{m}")).unwrap_or(container)
            }
        })
        .collect();
    let mut runtime = s.runtime.clone();
    // The engine's IPC namespaces are private by default: one that another service joins must be shareable.
    let shared_ipc = plan.services.values().any(|o| o.runtime.ipc.as_deref() == Some(&format!("service:{name}")));
    if shared_ipc && runtime.ipc.is_none() {
        runtime.ipc = Some("shareable".into());
    }
    runtime.ipc = engine_mode(plan, &runtime.ipc);
    runtime.pid = engine_mode(plan, &runtime.pid);
    Ok(ContainerSpec {
        name: s.container_name.clone(),
        image: image.into(),
        command: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        env: s.environment.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        labels: all_labels,
        ports: s
            .ports
            .iter()
            .filter(|p| p.strategy != PortStrategy::Unpublished)
            .map(|p| PortBinding { container_port: p.container_port, protocol: p.protocol.clone(), host_ip: p.host_ip.clone(), host_port: p.host_port })
            .collect(),
        endpoints,
        healthcheck: s.healthcheck.clone(),
        memory: s.resources.memory_limit,
        memory_reservation: s.resources.memory_reservation,
        cpus: s.resources.cpus,
        tmpfs: s.tmpfs.clone(),
        mounts,
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        // A container in another's network namespace has that one's hostname.
        hostname: if s.network_mode.is_some() { None } else { s.hostname.clone() },
        restart: s.restart.clone(),
        log_driver: s.logging.as_ref().map(|l| (l.driver.clone().unwrap_or_else(|| "json-file".into()), l.options.clone())),
        stop_timeout_s: s.stop_grace_period_ms.map(|ms| (ms / 1000) as i64),
        network_mode: engine_mode(plan, &s.network_mode),
        volumes_from,
        expose: s.expose.iter().flat_map(|e| expose_keys(e)).collect(),
        files,
        runtime,
    })
}

/// Restarts one service of a running environment and waits for it as `up` did (strategies from its labels).
pub async fn restart<E: Engine>(engine: &E, filter: &[String], service: &str, timeout: Duration) -> Result<Duration, LifecycleError> {
    let began = Instant::now();
    let mut f = filter.to_vec();
    f.push(format!("{}={service}", labels::SERVICE));
    let found = engine.containers_labelled(&f).await?;
    let c = found.first().ok_or_else(|| EngineError::NotFound(format!("service {service} in {}", filter.join(","))))?;
    let waits: Vec<WaitStrategy> = c.labels.get(labels::WAIT).and_then(|w| serde_json::from_str(w).ok()).unwrap_or_else(|| vec![WaitStrategy::Running]);
    engine.stop_container(&c.id, None).await?;
    engine.start_container(&c.id).await?;
    let deadline = began + timeout;
    for w in &waits {
        wait_for(engine, service, &c.id, w, deadline).await?;
    }
    Ok(began.elapsed())
}

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// Removes every container, then every network (and with `volumes` every volume) carrying the filter's labels.
/// "Already gone" is success; transient errors are retried with backoff.
pub async fn down<E: Engine>(engine: &E, filter: &[String], volumes: bool) -> Result<Removed, EngineError> {
    let filter = filter.to_vec();
    // The ready marker goes first: if anything below fails, the environment is left as an orphan (no marker) that
    // the next `orch gc` or opportunistic reap finishes — the labels themselves record the unfinished work.
    let vols = engine.volumes_labelled(&filter).await?;
    let (markers, data): (Vec<_>, Vec<_>) = vols.iter().partition(|(_, l)| l.contains_key(crate::reaper::MARKER));
    join_all(markers.iter().map(|(v, _)| retry(|| engine.remove_volume(v)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let containers = engine.containers_labelled(&filter).await?;
    // Test and CI environments are disposable: kill at once. Dev and prod ones get their graceful stop first.
    let graceful = |c: &crate::engine::ContainerSummary| matches!(c.labels.get("orch.env-kind").map(String::as_str), Some("dev" | "prod"));
    join_all(containers.iter().filter(|c| graceful(c) && c.state == "running").map(|c| engine.stop_container(&c.id, None))).await;
    join_all(containers.iter().map(|c| retry(|| engine.remove_container(&c.id)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let networks = engine.networks_labelled(&filter).await?;
    join_all(networks.iter().map(|n| retry(|| engine.remove_network(&n.name)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut removed = Removed { containers: containers.len(), networks: networks.len(), volumes: 0 };
    if volumes {
        join_all(data.iter().map(|(v, _)| retry(|| engine.remove_volume(v)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
        removed.volumes = data.len();
    }
    Ok(removed)
}

async fn retry<F, Fut>(op: F) -> Result<(), EngineError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), EngineError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut last = None;
    for _ in 0..4 {
        match op().await {
            Ok(()) | Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last.expect("an error was recorded"))
}

/// The state of one service of a running environment (for `ps`, `health`, `port`, `env`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStatus {
    pub env: String,
    pub project: String,
    pub service: String,
    pub container: String,
    /// HEALTHY, UNHEALTHY, STARTING, RUNNING, EXITED(code), STOPPED
    pub state: String,
    /// (container port/protocol, host ip, host port)
    pub ports: Vec<(String, String, u16)>,
    pub created: u64,
    /// The `orch.owner` label: `pid:start-time@host:boot-id`.
    pub owner: String,
}

/// Every orch-labelled container matching the filter, with its state as the engine reports it.
pub async fn status<E: Engine>(engine: &E, filter: &[String]) -> Result<Vec<ServiceStatus>, EngineError> {
    status_probed(engine, filter, false).await
}

/// Like [`status`]; with `probe`, a container Docker still calls "starting" (its first healthcheck interval has not
/// passed) has its healthcheck run now, so the report says what holds now.
pub async fn status_probed<E: Engine>(engine: &E, filter: &[String], probe: bool) -> Result<Vec<ServiceStatus>, EngineError> {
    let list = engine.containers_labelled(&filter.to_vec()).await?;
    let states = join_all(list.iter().map(|c| async move {
        let mut st = engine.inspect_container(&c.id).await?;
        if probe && st.status == "running" && st.health.as_deref() == Some("starting") {
            // A few quick tries: one failed exec should not turn a healthy service into "starting".
            let mut ok = false;
            for _ in 0..3 {
                if matches!(healthy(engine, &c.name, &c.id, &st).await, Ok(true)) {
                    ok = true;
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
            st.health = Some(if ok { "healthy" } else { "starting" }.to_string());
        }
        Ok::<_, EngineError>(st)
    }))
    .await;
    let mut out = vec![];
    for (c, st) in list.iter().zip(states) {
        let Ok(st) = st else { continue };
        let state = match (st.status.as_str(), st.health.as_deref()) {
            ("running", Some("healthy")) => "HEALTHY".to_string(),
            ("running", Some("unhealthy")) => "UNHEALTHY".to_string(),
            ("running", Some(_)) => "STARTING".to_string(),
            ("running", None) => "RUNNING".to_string(),
            ("exited", _) => format!("EXITED({})", st.exit_code.unwrap_or(-1)),
            _ => "STOPPED".to_string(),
        };
        out.push(ServiceStatus {
            env: c.labels.get(labels::ENV).cloned().unwrap_or_default(),
            project: c.labels.get(labels::PROJECT).cloned().unwrap_or_default(),
            service: c.labels.get(labels::SERVICE).cloned().unwrap_or_default(),
            container: c.name.clone(),
            state,
            ports: st.ports.iter().map(|(p, proto, ip, hp)| (format!("{p}/{proto}"), ip.clone(), *hp)).collect(),
            created: c.labels.get(labels::CREATED).and_then(|v| v.parse().ok()).unwrap_or(0),
            owner: c.labels.get(labels::OWNER).cloned().unwrap_or_default(),
        });
    }
    out.sort_by(|a, b| (&a.project, &a.env, &a.service).cmp(&(&b.project, &b.env, &b.service)));
    Ok(out)
}

/// Connection variables a test process needs: `<SERVICE>_HOST`, and `<SERVICE>_PORT` (first published port) plus
/// `<SERVICE>_PORT_<CONTAINER PORT>` for each published port.
pub fn connection_env(services: &[ServiceStatus]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in services {
        let key: String = s.service.to_ascii_uppercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let mut ports: Vec<&(String, String, u16)> = s.ports.iter().filter(|p| p.1 != "::").collect();
        ports.sort();
        if let Some(first) = ports.first() {
            out.insert(format!("{key}_HOST"), "127.0.0.1".to_string());
            out.insert(format!("{key}_PORT"), first.2.to_string());
        }
        for (cport, _, hp) in ports {
            let n = cport.split('/').next().unwrap_or(cport);
            out.insert(format!("{key}_PORT_{n}"), hp.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_labels_round_trip_and_this_process_is_alive() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.label()), Some(me.clone()));
        assert!(me.is_alive());
        let reused = Owner { start_time: me.start_time + 1, ..me.clone() };
        assert!(!reused.is_alive(), "a reused pid is not the owner");
        let rebooted = Owner { boot_id: "other".into(), ..me };
        assert!(!rebooted.is_alive());
    }
}
