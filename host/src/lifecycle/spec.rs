//! A service of the plan as the engine's container spec: mounts, files, ports, namespaces and every runtime option.

use super::LifecycleError;
use crate::engine::ContainerSpec;
use crate::engine::Endpoint;
use crate::engine::FileSpec;
use crate::engine::MountSpec;
use crate::engine::NetworkSpec;
use crate::engine::PortBinding;
use crate::labels;
use crate::plan::FileSource;
use crate::plan::PortStrategy;
use crate::plan::{NetworkPlan, Plan, ServicePlan};
use orch_compose::Mount;
use std::collections::BTreeMap;

/// The largest secret or config file orch copies into a container.
const MAX_FILE_SOURCE: u64 = 4 << 20;

/// A network of the plan as the engine's spec, named `name` and carrying `labels` on top of its own.
pub fn network_spec(n: &NetworkPlan, name: &str, labels: &BTreeMap<String, String>) -> NetworkSpec {
    NetworkSpec {
        name: name.to_string(),
        driver: n.driver.clone(),
        internal: n.internal,
        subnet: n.subnet.clone(),
        gateway: n.gateway.clone(),
        ip_range: n.ip_range.clone(),
        options: n.driver_opts.clone(),
        labels: n.labels.clone().into_iter().chain(labels.clone()).collect(),
    }
}

/// The services whose containers this one refers to by name (network, IPC and PID namespaces, volumes): they must
/// exist before it is created.
pub(super) fn container_refs(s: &ServicePlan) -> Vec<String> {
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
pub(super) fn engine_mode(plan: &Plan, mode: &Option<String>) -> Option<String> {
    let m = mode.as_deref()?;
    Some(match m.strip_prefix("service:") {
        Some(svc) => format!("container:{}", plan.services.get(svc).map(|t| t.container_name.as_str()).unwrap_or(svc)),
        None => m.to_string(),
    })
}

/// `3000`, `3000/udp` or a range `3000-3002[/udp]` as the engine's `PORT/PROTOCOL` keys.
pub(super) fn expose_keys(e: &str) -> Vec<String> {
    let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
    match ports.split_once('-').and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))) {
        Some((a, b)) if a <= b => (a..=b).map(|p| format!("{p}/{proto}")).collect(),
        _ => vec![format!("{ports}/{proto}")],
    }
}

/// A secret or config as the engine takes it: a read-only bind of its file, or a file copied in with owner and mode.
pub(super) fn file_spec(service: &str, f: &crate::plan::FilePlan) -> Result<Option<FileSpec>, LifecycleError> {
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
        // A secret or config goes into the container's create request: capped like any input file.
        FileSource::File { path } => orch_compose::input::read_bytes(path, MAX_FILE_SOURCE).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?,
        FileSource::Environment { value, .. } => value.clone().into_bytes(),
        FileSource::Content { content } => content.clone().into_bytes(),
    };
    Ok(Some(FileSpec { target: f.target.clone(), content, uid: id(&f.uid, "uid")?, gid: id(&f.gid, "gid")?, mode: f.mode.unwrap_or(0o444) }))
}

pub(super) fn container_spec(
    plan: &Plan,
    name: &str,
    s: &ServicePlan,
    image: &str,
    labels: &BTreeMap<String, String>,
) -> Result<ContainerSpec, LifecycleError> {
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
