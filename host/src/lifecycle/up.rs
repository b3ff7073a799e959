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
use std::time::{Duration, Instant};
use tokio::sync::watch;

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
    if result.is_err() && !opts.keep_on_failure {
        progress(Progress::RollingBack);
        let filter = labels::env_filter(Some(&plan.identity.project), &plan.identity.env_id);
        if let Ok(removed) = down(engine, &filter, true).await {
            progress(Progress::Removed { containers: removed.containers, networks: removed.networks, volumes: removed.volumes });
        }
    }
    result
}

pub(super) async fn up_inner<E: Engine>(engine: &E, plan: &Plan, opts: &UpOptions, progress: &(dyn Fn(Progress) + Sync)) -> Result<UpReport, LifecycleError> {
    let started = Instant::now();
    let owner = opts.owner.clone().unwrap_or_else(Owner::current);
    let labels = resource_labels(plan, &owner);
    let images = ensure_images(engine, plan, opts, progress).await?;

    let creations = plan.networks.values().filter(|n| !n.external).map(|n| {
        let spec = network_spec(n, &n.docker_name, &labels);
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
    for _attempt in 0..5 {
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

/// Creates a resource; on a name conflict, removes the one in the way if a dead orch run left it (by its labels)
/// and retries with backoff. Anything orch did not create, or a live environment's resource, is never touched.
pub(super) async fn with_conflict_resolution<E: Engine, F, Fut>(engine: &E, kind: &'static str, name: &str, create: F) -> Result<String, LifecycleError>
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
