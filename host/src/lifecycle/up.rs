//! `up`: networks, volumes and containers created concurrently where they can be, services started in dependency
//! order, and everything rolled back when one fails.

use super::LifecycleError;
use super::Progress;
use super::UpOptions;
use super::UpReport;
use super::build::*;
use super::down::*;
use super::spec::*;
use super::wait::*;
use crate::engine::VolumeSpec;
use crate::engine::{ContainerSpec, Engine, EngineError};
use crate::labels;
use crate::owner::Owner;
use crate::plan::PortStrategy;
use crate::plan::fnv1a;
use crate::plan::{Plan, ServicePlan};
use futures_util::future::join_all;
use orch_compose::Condition;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use tokio::sync::watch;

/// Labels of every resource of this plan's environment.
pub fn resource_labels(plan: &Plan, owner: &Owner) -> BTreeMap<String, String> {
    let mut l = plan.identity.labels();
    l.insert(labels::OWNER.into(), owner.label());
    l.insert(labels::OWNER_UID.into(), labels::my_uid().to_string());
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

/// Service status as the start-up futures see each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    Pending,
    Started,
    Ready,
    Failed,
}

/// Brings the plan's environment up. On failure everything created for the environment is removed, unless
/// `keep_on_failure`.
pub async fn up<E: Engine>(engine: &E, plan: &Plan, opts: &UpOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<UpReport, LifecycleError> {
    let result = up_inner(engine, plan, opts, progress).await;
    // A refused subnet is carved again and retried by the caller: nothing of this attempt is worth keeping.
    let subnet_taken = matches!(result, Err(LifecycleError::Engine(EngineError::SubnetTaken { .. })));
    if result.is_err() && (!opts.keep_on_failure || subnet_taken) {
        progress(Progress::RollingBack);
        // Only what this run made: another process may hold resources of the same name and labels (a live run of
        // the same `--env` by another user), and those are not this run's to remove. No claim: while this run's
        // owner lives nobody reaps what it made.
        let owner = opts.owner.clone().unwrap_or_else(Owner::current);
        let mut filter = labels::env_filter(Some(&plan.identity.project), &plan.identity.env_id);
        filter.push(format!("{}={}", labels::OWNER, owner.label()));
        if let Ok(removed) = down_claimed(engine, &filter, true).await {
            progress(Progress::Removed { containers: removed.containers, networks: removed.networks, volumes: removed.volumes });
        }
    }
    result
}

pub(super) async fn up_inner<E: Engine>(engine: &E, plan: &Plan, opts: &UpOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<UpReport, LifecycleError> {
    let started = Instant::now();
    let owner = opts.owner.clone().unwrap_or_else(Owner::current);
    let mut labels = resource_labels(plan, &owner);
    if let Some(key) = &opts.pool {
        labels.insert(labels::POOL.into(), key.clone());
    }
    let images = ensure_images(engine, plan, opts, progress).await?;

    // One listing for every network of the plan: names already taken are checked against it.
    let listed = engine.list_networks().await?;
    let creations = plan.networks.values().filter(|n| !n.external).map(|n| {
        let spec = network_spec(n, &n.docker_name, &labels);
        let same: Vec<_> = listed.iter().filter(|l| l.name == spec.name).cloned().collect();
        async move {
            let id = create_network_owned(engine, &spec, &plan.identity, same).await?;
            progress(Progress::NetworkCreated { name: spec.name.clone(), subnet: spec.subnet.clone() });
            Ok::<_, LifecycleError>((spec.name, id))
        }
    });
    // Containers join their networks by id: before API 1.44 another network may carry the same name.
    let network_ids: BTreeMap<String, String> = join_all(creations).await.into_iter().collect::<Result<_, _>>()?;
    for v in plan.volumes.values().filter(|v| !v.external) {
        let spec = VolumeSpec {
            name: v.docker_name.clone(),
            driver: v.driver.clone(),
            driver_opts: v.driver_opts.clone(),
            labels: v.labels.clone().into_iter().chain(labels.clone()).collect(),
        };
        // The engine hands back an existing volume of the name instead of refusing: it must be this environment's
        // (kept data from an earlier `up --env NAME`), never another environment's or a stranger's.
        let found = engine.create_volume(&spec).await?;
        if let Some(why) = not_ours(&found, &plan.identity) {
            return Err(LifecycleError::InTheWay { kind: "volume", name: spec.name, why });
        }
    }

    let specs: Vec<(String, ContainerSpec)> = plan
        .services
        .iter()
        .map(|(name, s)| {
            let mut spec = container_spec(plan, name, s, &images[name], &labels)?;
            for ep in spec.endpoints.iter_mut() {
                if let Some(id) = network_ids.get(&ep.network) {
                    ep.network = id.clone();
                }
            }
            Ok((name.clone(), spec))
        })
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
            let id = create_container_owned(engine, spec, &plan.identity).await?;
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
    super::marker::mark_ready(engine, &labels, &plan.identity.project, &plan.identity.env_id, opts.lifetime).await?;
    Ok(UpReport { containers, elapsed: started.elapsed() })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn start_service<E: Engine>(
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
    // `up`'s timeout covers the start too: a swarm may take long to schedule and prepare a task.
    let replaced = tokio::time::timeout_at(deadline.into(), start_with_port_retry(engine, name, s, id, spec, used_ports))
        .await
        .map_err(|_| LifecycleError::Timeout { service: name.into(), waited: began.elapsed(), waiting_for: "its start".into() })??;
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

/// How many times a service's host ports are chosen again when the engine refuses one.
const PORT_ATTEMPTS: usize = 8;

/// Starts the container; when the engine refuses a host port (a process outside orch holds it — invisible to the
/// facts), picks another port from the same range strategy, recreates the container and tries again. Returns the
/// new container id when it had to recreate.
pub(super) async fn start_with_port_retry<E: Engine>(
    engine: &E,
    name: &str,
    s: &ServicePlan,
    id: &str,
    spec: &ContainerSpec,
    used_ports: &std::sync::Mutex<BTreeSet<u16>>,
) -> Result<Option<String>, LifecycleError> {
    let mut spec = spec.clone();
    let mut current: Option<String> = None;
    for attempt in 0..PORT_ATTEMPTS {
        let cid = current.clone().unwrap_or_else(|| id.to_string());
        let err = match engine.start_container(&cid).await {
            Ok(()) => return Ok(current),
            Err(e) => e,
        };
        let EngineError::PortTaken { message: text, .. } = &err else {
            return Err(err.into());
        };
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
            // From a spot of this container's own in the range, so that processes racing for the same free port
            // (other users' orch, which share no state directory) spread out instead of colliding again.
            let len = u32::from(end - start) + 1;
            let from = (fnv1a(format!("{}/{attempt}/{}", spec.name, std::process::id()).as_bytes()) % u64::from(len)) as u32;
            let next = (0..len)
                .map(|i| (u32::from(start) + (from + i) % len) as u16)
                .find(|p| !used.contains(p) && std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok());
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
    Err(LifecycleError::ServiceFailed {
        service: name.into(),
        reason: format!("its host ports kept being taken; gave up after {PORT_ATTEMPTS} attempts (widen its port range)"),
        logs: vec![],
    })
}

/// Why a resource with these labels is not this environment's to use (`None`: it is).
fn not_ours(labels: &BTreeMap<String, String>, identity: &crate::plan::Identity) -> Option<String> {
    match (labels.get(labels::PROJECT), labels.get(labels::ENV)) {
        (Some(p), Some(e)) if *p == identity.project && *e == identity.env_id => None,
        (Some(p), Some(e)) => Some(format!("it belongs to environment {e} of project {p}; orch leaves it alone")),
        _ => Some("it was not created by orch, so orch leaves it alone; rename or remove it yourself".into()),
    }
}

/// A resource of `kind` named `name`, with these labels, stands where this environment wants to create one. It may
/// go (`Ok`) only when it is a leftover of this same environment (a dead run of the same `--env`) that the reaper
/// would call an orphan: its owner is dead and the environment was never completed, or completed for its owner's
/// lifetime only, or its lease ran out. Anything else is in the way, and nothing is removed.
async fn leftover<E: Engine>(
    engine: &E,
    kind: &'static str,
    name: &str,
    found: &BTreeMap<String, String>,
    identity: &crate::plan::Identity,
) -> Result<(), LifecycleError> {
    let in_the_way = |why: String| LifecycleError::InTheWay { kind, name: name.into(), why };
    if let Some(why) = not_ours(found, identity) {
        return Err(in_the_way(why));
    }
    let (project, env) = (&identity.project, &identity.env_id);
    let owner = found.get(labels::OWNER).and_then(|o| Owner::parse(o));
    let marker =
        engine.volumes_labelled(&labels::env_filter(Some(project), env)).await?.into_iter().find(|(_, l)| l.contains_key(labels::MARKER)).map(|(_, l)| l);
    let info = crate::verdict::EnvInfo {
        project: project.clone(),
        env: env.clone(),
        owner: owner.clone(),
        uid: None,
        created: 0,
        containers: 0,
        networks: 0,
        volumes: 0,
        marker,
        claim: None,
    };
    match info.verdict(crate::clock::now()) {
        crate::verdict::Verdict::Orphan(_) => Ok(()),
        crate::verdict::Verdict::Live => {
            let who = owner.map(|o| format!(" (pid {} on {})", o.pid, o.host)).unwrap_or_default();
            Err(in_the_way(format!("environment {env} is being made or used by a live orch process{who}; use another --env or wait for it")))
        }
        crate::verdict::Verdict::Removing(o) => {
            Err(in_the_way(format!("environment {env} is being removed by a live orch process (pid {} on {}); wait for it", o.pid, o.host)))
        }
        crate::verdict::Verdict::Kept => {
            Err(in_the_way(format!("environment {env} exists and is kept; `orch down --env {env} -p {project} --volumes` removes it")))
        }
    }
}

/// Creates the network. Another network of the same name (engines before API 1.44 make a second one beside it) is
/// removed when it is a [`leftover`] and named as in the way otherwise, so that the name this environment uses stands for one network.
/// Returns the new network's id.
/// `same`: the networks of its name the engine listed before; listed again only after a conflict.
async fn create_network_owned<E: Engine>(
    engine: &E,
    spec: &crate::engine::NetworkSpec,
    identity: &crate::plan::Identity,
    mut same: Vec<crate::engine::NetworkSummary>,
) -> Result<String, LifecycleError> {
    for attempt in 0..crate::retry::Backoff::CONFLICT.attempts {
        if attempt > 0 {
            same = engine.list_networks().await?.into_iter().filter(|n| n.name == spec.name).collect();
        }
        if same.is_empty() {
            match engine.create_network(spec).await {
                Ok(id) => return Ok(id),
                // API 1.44 and later refuse a second network of a name themselves: look again.
                Err(EngineError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        for n in &same {
            leftover(engine, "network", &n.name, &n.labels, identity).await?;
            engine.remove_network(&n.id).await?;
        }
    }
    Err(LifecycleError::InTheWay { kind: "network", name: spec.name.clone(), why: "it kept reappearing while orch removed it".into() })
}

/// Creates the container; on a name conflict, removes a [`leftover`] in the way and tries again.
async fn create_container_owned<E: Engine>(engine: &E, spec: &ContainerSpec, identity: &crate::plan::Identity) -> Result<String, LifecycleError> {
    let backoff = crate::retry::Backoff::CONFLICT;
    for attempt in 0..backoff.attempts {
        match engine.create_container(spec).await {
            Ok(id) => return Ok(id),
            Err(EngineError::Conflict(_)) => {
                let found = match engine.inspect_container(&spec.name).await {
                    Ok(c) => c,
                    Err(EngineError::NotFound(_)) => continue,
                    Err(e) => return Err(e.into()),
                };
                leftover(engine, "container", &spec.name, &found.labels, identity).await?;
                engine.remove_container(&found.id).await?;
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(LifecycleError::InTheWay { kind: "container", name: spec.name.clone(), why: "it kept reappearing while orch removed it".into() })
}
