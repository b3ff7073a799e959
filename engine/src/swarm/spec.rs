//! A container spec as a Swarm service spec: one replicated task (or a job for a one-shot), `dnsrr`, host-mode
//! ports, aliases on each overlay; whatever the swarm cannot do is refused by name, never dropped.

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, NetworkAttachmentConfig,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob, TaskSpec, TaskSpecContainerSpec,
};

use super::*;

/// Names what the swarm cannot do for a container spec: every such field is refused, none dropped silently.
pub(super) fn unsupported(spec: &ContainerSpec) -> Vec<&'static str> {
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
pub(super) fn service_spec(spec: &ContainerSpec, configs: Vec<bollard::models::TaskSpecContainerSpecConfigs>) -> Result<ServiceSpec, EngineError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::placement::{own_constraints, place};

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
