//! A container spec as the Docker engine's create body: ports, mounts, resources, health, logging, devices, the
//! secrets' and configs' tar archive; every option of the spec mapped, none dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    DeviceMapping, DeviceRequest, HostConfig, HostConfigCgroupnsModeEnum, HostConfigIsolationEnum, HostConfigLogConfig, ResourcesBlkioWeightDevice,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, ThrottleDevice,
};

use crate::*;

/// Secrets and configs as one tar archive of absolute paths (extracted at `/`), with their owner and mode; missing
/// parent directories are created by the engine.
pub(super) fn files_tar(files: &[FileSpec]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for f in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(f.content.len() as u64);
        header.set_mode(f.mode);
        header.set_uid(f.uid);
        header.set_gid(f.gid);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, f.target.trim_start_matches('/'), f.content.as_slice())?;
    }
    builder.into_inner()
}

pub(super) fn endpoint_settings(ep: &Endpoint) -> bollard::models::EndpointSettings {
    bollard::models::EndpointSettings {
        aliases: Some(ep.aliases.clone()),
        links: (!ep.links.is_empty()).then(|| ep.links.clone()),
        ipam_config: ep.ipv4_address.as_ref().map(|ip| bollard::models::EndpointIpamConfig { ipv4_address: Some(ip.clone()), ..Default::default() }),
        ..Default::default()
    }
}

pub(crate) fn ms_to_ns(ms: Option<u64>) -> Option<i64> {
    ms.map(|m| (m as i64).saturating_mul(1_000_000))
}

fn opt_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn opt_map(m: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.clone().into_iter().collect())
}

pub(crate) fn mounts_and_binds(spec: &ContainerSpec) -> (Vec<bollard::models::Mount>, Vec<String>) {
    use bollard::models::{Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType, MountVolumeOptions};
    let mut mounts = vec![];
    let mut binds = vec![];
    for m in &spec.mounts {
        match m {
            MountSpec::Volume { source, target, read_only, nocopy, subpath } => mounts.push(Mount {
                typ: Some(MountType::VOLUME),
                source: source.clone(),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                volume_options: (*nocopy || subpath.is_some()).then(|| MountVolumeOptions {
                    no_copy: nocopy.then_some(true),
                    subpath: subpath.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountSpec::Bind { source, target, read_only, propagation, selinux, create_host_path } if *create_host_path || selinux.is_some() => {
                let opts: Vec<&str> = [read_only.then_some("ro"), selinux.as_deref(), propagation.as_deref()].into_iter().flatten().collect();
                binds.push(if opts.is_empty() { format!("{source}:{target}") } else { format!("{source}:{target}:{}", opts.join(",")) });
            }
            MountSpec::Bind { source, target, read_only, propagation, .. } => mounts.push(Mount {
                typ: Some(MountType::BIND),
                source: Some(source.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                bind_options: propagation.as_deref().map(|p| MountBindOptions {
                    propagation: Some(match p {
                        "private" => MountBindOptionsPropagationEnum::PRIVATE,
                        "shared" => MountBindOptionsPropagationEnum::SHARED,
                        "rshared" => MountBindOptionsPropagationEnum::RSHARED,
                        "slave" => MountBindOptionsPropagationEnum::SLAVE,
                        "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
                        _ => MountBindOptionsPropagationEnum::RPRIVATE,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountSpec::Tmpfs { target, size, mode } => mounts.push(Mount {
                typ: Some(MountType::TMPFS),
                target: Some(target.clone()),
                tmpfs_options: (size.is_some() || mode.is_some()).then(|| MountTmpfsOptions {
                    size_bytes: size.map(|s| s as i64),
                    mode: mode.map(i64::from),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
    (mounts, binds)
}

/// Host ports by `port/protocol`.
fn port_bindings(spec: &ContainerSpec) -> HashMap<String, Option<Vec<bollard::models::PortBinding>>> {
    let mut port_bindings: HashMap<String, Option<Vec<bollard::models::PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        // An engine-picked port on no particular address is bound on IPv4 only: the engine picks the IPv4 and the
        // IPv6 port independently, so `[::1]:PORT` could be another environment's service.
        let host_ip = match (&p.host_ip, p.host_port) {
            (None, None) => Some("0.0.0.0".to_string()),
            (ip, _) => ip.clone(),
        };
        port_bindings
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| Some(vec![]))
            .as_mut()
            .expect("some")
            .push(bollard::models::PortBinding { host_ip, host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()) });
    }
    port_bindings
}

fn restart_policy(restart: Option<&str>) -> Option<RestartPolicy> {
    restart.map(|r| RestartPolicy {
        name: Some(match r {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            r if r.starts_with("on-failure") => RestartPolicyNameEnum::ON_FAILURE,
            _ => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: r.strip_prefix("on-failure:").and_then(|n| n.parse().ok()),
    })
}

fn devices(rt: &orch_compose::Runtime) -> Option<Vec<DeviceMapping>> {
    opt_vec(
        &rt.devices
            .iter()
            .map(|d| DeviceMapping {
                path_on_host: Some(d.source.clone()),
                path_in_container: Some(d.target.clone()),
                cgroup_permissions: Some(d.permissions.clone()),
            })
            .collect::<Vec<_>>(),
    )
}

fn device_requests(rt: &orch_compose::Runtime) -> Option<Vec<DeviceRequest>> {
    opt_vec(
        &rt.device_requests
            .iter()
            .map(|d| DeviceRequest {
                driver: d.driver.clone(),
                count: d.count.or(d.device_ids.is_empty().then_some(-1)),
                device_ids: opt_vec(&d.device_ids),
                capabilities: Some(vec![d.capabilities.clone()]),
                options: opt_map(&d.options),
            })
            .collect::<Vec<_>>(),
    )
}

fn healthcheck(h: &orch_compose::Healthcheck, start_interval: bool) -> bollard::models::HealthConfig {
    bollard::models::HealthConfig {
        test: Some(h.test.clone()),
        interval: ms_to_ns(h.interval_ms),
        timeout: ms_to_ns(h.timeout_ms),
        retries: h.retries.map(i64::from),
        start_period: ms_to_ns(h.start_period_ms),
        // Engines before API 1.44 do not know start_interval; orch polls readiness itself there.
        start_interval: if start_interval { ms_to_ns(h.start_interval_ms) } else { None },
    }
}

/// Everything of the spec that is the engine's host config: ports, mounts, resources, devices, namespaces.
fn host_config(spec: &ContainerSpec) -> HostConfig {
    let (mounts, binds) = mounts_and_binds(spec);
    let rt = &spec.runtime;
    let throttle = |list: &[(String, u64)]| {
        opt_vec(&list.iter().map(|(path, rate)| ThrottleDevice { path: Some(path.clone()), rate: Some(*rate as i64) }).collect::<Vec<_>>())
    };
    let blkio = rt.blkio.clone().unwrap_or_default();
    HostConfig {
        port_bindings: Some(port_bindings(spec)),
        memory: spec.memory.map(|m| m as i64),
        memory_reservation: spec.memory_reservation.map(|m| m as i64),
        nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
        tmpfs: Some(
            spec.tmpfs
                .iter()
                .map(|t| match t.split_once(':') {
                    Some((path, opts)) => (path.to_string(), opts.to_string()),
                    None => (t.clone(), String::new()),
                })
                .collect(),
        ),
        mounts: Some(mounts),
        binds: opt_vec(&binds),
        restart_policy: restart_policy(spec.restart.as_deref()),
        log_config: spec.log_driver.as_ref().map(|(d, o)| HostConfigLogConfig { typ: Some(d.clone()), config: Some(o.clone().into_iter().collect()) }),
        network_mode: spec.network_mode.clone(),
        volumes_from: opt_vec(&spec.volumes_from),
        cap_add: opt_vec(&rt.cap_add),
        cap_drop: opt_vec(&rt.cap_drop),
        init: rt.init,
        ulimits: opt_vec(
            &rt.ulimits.iter().map(|(name, l)| ResourcesUlimits { name: Some(name.clone()), soft: Some(l.soft), hard: Some(l.hard) }).collect::<Vec<_>>(),
        ),
        shm_size: rt.shm_size.map(|s| s as i64),
        sysctls: opt_map(&rt.sysctls),
        extra_hosts: opt_vec(&rt.extra_hosts),
        dns: opt_vec(&rt.dns),
        dns_search: opt_vec(&rt.dns_search),
        dns_options: opt_vec(&rt.dns_opt),
        readonly_rootfs: rt.read_only.then_some(true),
        pids_limit: rt.pids_limit,
        security_opt: opt_vec(&rt.security_opt),
        privileged: rt.privileged.then_some(true),
        devices: devices(rt),
        device_requests: device_requests(rt),
        device_cgroup_rules: opt_vec(&rt.device_cgroup_rules),
        ipc_mode: rt.ipc.clone(),
        pid_mode: rt.pid.clone(),
        uts_mode: rt.uts.clone(),
        userns_mode: rt.userns_mode.clone(),
        cgroupns_mode: rt.cgroup.as_deref().map(|c| if c == "host" { HostConfigCgroupnsModeEnum::HOST } else { HostConfigCgroupnsModeEnum::PRIVATE }),
        cgroup_parent: rt.cgroup_parent.clone(),
        group_add: opt_vec(&rt.group_add),
        oom_score_adj: rt.oom_score_adj,
        oom_kill_disable: rt.oom_kill_disable,
        memory_swappiness: rt.mem_swappiness,
        memory_swap: rt.memswap_limit,
        cpu_shares: rt.cpu_shares,
        cpuset_cpus: rt.cpuset.clone(),
        cpu_period: rt.cpu_period,
        cpu_quota: rt.cpu_quota,
        cpu_realtime_period: rt.cpu_rt_period,
        cpu_realtime_runtime: rt.cpu_rt_runtime,
        cpu_count: rt.cpu_count,
        cpu_percent: rt.cpu_percent,
        blkio_weight: blkio.weight,
        blkio_weight_device: opt_vec(
            &blkio.weight_device.iter().map(|(path, w)| ResourcesBlkioWeightDevice { path: Some(path.clone()), weight: Some(*w as usize) }).collect::<Vec<_>>(),
        ),
        blkio_device_read_bps: throttle(&blkio.device_read_bps),
        blkio_device_write_bps: throttle(&blkio.device_write_bps),
        blkio_device_read_iops: throttle(&blkio.device_read_iops),
        blkio_device_write_iops: throttle(&blkio.device_write_iops),
        storage_opt: opt_map(&rt.storage_opt),
        runtime: rt.runtime.clone(),
        isolation: rt.isolation.as_deref().map(|i| match i {
            "process" => HostConfigIsolationEnum::PROCESS,
            "hyperv" => HostConfigIsolationEnum::HYPERV,
            _ => HostConfigIsolationEnum::DEFAULT,
        }),
        ..Default::default()
    }
}

pub(super) fn container_body(spec: &ContainerSpec, start_interval: bool) -> bollard::models::ContainerCreateBody {
    let rt = &spec.runtime;
    let networking_config = spec
        .endpoints
        .first()
        .map(|ep| bollard::models::NetworkingConfig { endpoints_config: Some(HashMap::from([(ep.network.clone(), endpoint_settings(ep))])) });
    let exposed: BTreeSet<String> = spec.ports.iter().map(|p| format!("{}/{}", p.container_port, p.protocol)).chain(spec.expose.iter().cloned()).collect();
    bollard::models::ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        exposed_ports: Some(exposed.into_iter().collect()),
        healthcheck: spec.healthcheck.as_ref().map(|h| healthcheck(h, start_interval)),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        domainname: rt.domainname.clone(),
        tty: rt.tty.then_some(true),
        open_stdin: rt.stdin_open.then_some(true),
        stop_signal: rt.stop_signal.clone(),
        stop_timeout: spec.stop_timeout_s,
        host_config: Some(host_config(spec)),
        networking_config,
        ..Default::default()
    }
}
