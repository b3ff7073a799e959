//! [`Engine`] on a real Docker daemon through bollard: the API version negotiated, errors classified by HTTP status,
//! every option of a container spec mapped to the engine's create body.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;

use super::*;

mod spec;

use spec::{container_body, endpoint_settings, files_tar};
pub(crate) use spec::{mounts_and_binds, ms_to_ns};

/// Docker through bollard, with the API version negotiated (Debian's engine speaks 1.41).
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
}

/// The first Docker API version that knows each newer field orch may send (older engines ignore unknown JSON fields
/// silently, so orch checks instead of sending).
pub mod api {
    pub const START_INTERVAL: (u32, u32) = (1, 44);
    pub const VOLUME_SUBPATH: (u32, u32) = (1, 45);
}

/// An error of a request that concerns the engine as a whole (listing).
fn api(e: bollard::errors::Error) -> EngineError {
    classify("the Docker engine")(e)
}

/// Removal is idempotent: a resource that is already gone counts as removed.
pub(crate) fn gone_is_done(r: Result<(), EngineError>) -> Result<(), EngineError> {
    match r {
        Err(EngineError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Maps bollard's errors, treating 404 and 409 specially so callers can make removal idempotent and resolve
/// name conflicts.
pub(crate) fn classify(what: &str) -> impl Fn(bollard::errors::Error) -> EngineError + '_ {
    move |e| match &e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => EngineError::NotFound(what.to_string()),
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message } => EngineError::Conflict(format!("{what}: {message}")),
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            EngineError::Api { what: what.to_string(), status: *status_code, message: message.clone() }
        }
        bollard::errors::Error::RequestTimeoutError => EngineError::Timeout { what: what.to_string(), after: engine_timeout() },
        _ => EngineError::Transport { what: what.to_string(), source: e },
    }
}

/// How long orch waits for the engine to answer one request (its response's head; streams such as logs and build
/// output are not cut): `ORCH_ENGINE_TIMEOUT` (e.g. `10s`), else 120 s. A healthy engine answers in well under a
/// second; a loaded 2-core CI host can take several seconds to start a container, so the default leaves room.
pub fn engine_timeout() -> Duration {
    std::env::var("ORCH_ENGINE_TIMEOUT")
        .ok()
        .and_then(|v| orch_compose::parse_duration_ms(&v))
        .map(Duration::from_millis)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(120))
}

impl DockerEngine {
    /// Whether `container` (name or id) is attached to `network` (by the container's own view of its networks).
    async fn attached(&self, network: &str, container: &str) -> Result<bool, EngineError> {
        let net = self.network_info(network).await?;
        let c = self
            .docker
            .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(classify(&format!("container {container}")))?;
        let networks = c.network_settings.and_then(|n| n.networks).unwrap_or_default();
        Ok(networks.iter().any(|(name, ep)| *name == net.name || ep.network_id.as_deref() == Some(net.id.as_str())))
    }

    pub async fn connect() -> Result<DockerEngine, EngineError> {
        let timeout = engine_timeout();
        let docker = Docker::connect_with_local_defaults().map_err(|e| EngineError::Unreachable(e.to_string()))?.with_timeout(timeout);
        // The first answer says whether anyone is there at all: it gets at most 5 s.
        let hello = timeout.min(Duration::from_secs(5));
        let docker = tokio::time::timeout(hello, docker.negotiate_version())
            .await
            .map_err(|_| EngineError::Timeout { what: "negotiating the API version".into(), after: hello })?
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(DockerEngine { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Creates a network; `swarm`: an attachable overlay of swarm scope.
    pub(crate) async fn create_network_scoped(&self, spec: &NetworkSpec, swarm: bool) -> Result<String, EngineError> {
        use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
        let ipam = spec.subnet.as_ref().map(|subnet| Ipam {
            driver: Some("default".into()),
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.clone()),
                gateway: spec.gateway.clone(),
                ip_range: spec.ip_range.clone(),
                ..Default::default()
            }]),
            options: None,
        });
        let req = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some(spec.driver.clone()),
            internal: Some(spec.internal),
            ipam,
            options: Some(spec.options.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            attachable: swarm.then_some(true),
            scope: swarm.then(|| "swarm".to_string()),
            ..Default::default()
        };
        let what = format!("network {}", spec.name);
        match self.docker.create_network(req).await {
            Ok(created) => Ok(created.id),
            // Docker refuses an overlapping pool with 403 Forbidden (libnetwork's ErrPoolOverlap); with an explicit
            // subnet that is the one thing a create can be forbidden for.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 403, message }) if spec.subnet.is_some() => {
                Err(EngineError::SubnetTaken { what, subnet: spec.subnet.clone().unwrap_or_default(), message })
            }
            Err(e) => Err(classify(&what)(e)),
        }
    }

    /// The negotiated API version, e.g. (1, 41).
    pub fn api_version(&self) -> (u32, u32) {
        let v = self.docker.client_version();
        (v.major_version as u32, v.minor_version as u32)
    }
}

impl Engine for DockerEngine {
    async fn list_networks(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        let nets = self.docker.list_networks(None).await.map_err(api)?;
        Ok(nets.into_iter().map(network_summary).collect())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(api)?;
        Ok(list.into_iter().map(container_summary).collect())
    }

    async fn list_images(&self) -> Result<Vec<String>, EngineError> {
        let list = self.docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.map_err(api)?;
        Ok(list.into_iter().flat_map(|i| i.repo_tags).filter(|t| t != "<none>:<none>").collect())
    }

    async fn networks_labelled(&self, labels: &LabelFilter) -> Result<Vec<NetworkSummary>, EngineError> {
        let opts = bollard::query_parameters::ListNetworksOptionsBuilder::default().filters(&label_filters(labels)).build();
        let nets = self.docker.list_networks(Some(opts)).await.map_err(api)?;
        Ok(nets.into_iter().map(network_summary).filter(|n| visible(labels, &n.labels)).collect())
    }

    async fn containers_labelled(&self, labels: &LabelFilter) -> Result<Vec<ContainerSummary>, EngineError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).filters(&label_filters(labels)).build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(api)?;
        Ok(list.into_iter().map(container_summary).filter(|c| visible(labels, &c.labels)).collect())
    }

    async fn volumes_labelled(&self, labels: &LabelFilter) -> Result<Vec<(String, BTreeMap<String, String>)>, EngineError> {
        let opts = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&label_filters(labels)).build();
        let list = self.docker.list_volumes(Some(opts)).await.map_err(api)?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.labels.into_iter().collect()))
            .filter(|(_, l): &(String, BTreeMap<String, String>)| visible(labels, l))
            .collect())
    }

    async fn tag_image(&self, image: &str, tag: &str) -> Result<(), EngineError> {
        let (repo, t) = match tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((repo, t)) => (repo, t),
            None => (tag, "latest"),
        };
        let opts = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(t).build();
        self.docker.tag_image(image, Some(opts)).await.map_err(classify(&format!("image {image}")))
    }

    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RemoveImageOptionsBuilder::default().force(true).build();
        gone_is_done(self.docker.remove_image(image, Some(opts), None).await.map(|_| ()).map_err(classify(&format!("image {image}"))))
    }

    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        match self.docker.inspect_image(image).await.map_err(classify(image)) {
            Ok(_) => Ok(true),
            Err(EngineError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn build_image(&self, spec: BuildSpec) -> Result<(), EngineError> {
        use futures_util::StreamExt;
        let mut opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .dockerfile(&spec.dockerfile)
            .t(&spec.tag)
            .nocache(spec.no_cache)
            .rm(true)
            .forcerm(true)
            .buildargs(&spec.args.clone().into_iter().collect())
            .labels(&spec.labels.clone().into_iter().collect());
        if let Some(t) = &spec.target {
            opts = opts.target(t);
        }
        if let Some(n) = &spec.network {
            opts = opts.networkmode(n);
        }
        if let Some(size) = spec.shm_size {
            opts = opts.shmsize(i32::try_from(size).unwrap_or(i32::MAX));
        }
        if !spec.extra_hosts.is_empty() {
            opts = opts.extrahosts(&spec.extra_hosts.join(" "));
        }
        if !spec.cache_from.is_empty() {
            opts = opts.cachefrom(&spec.cache_from);
        }
        if let Some(p) = &spec.platform {
            opts = opts.platform(p);
        }
        if spec.pull {
            opts = opts.pull("1");
        }
        let archive = tokio::fs::File::open(&spec.context)
            .await
            .map_err(|source| EngineError::Local { what: format!("image {}: its build context {}", spec.tag, spec.context.display()), source })?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(archive));
        let mut stream = self.docker.build_image(opts.build(), None, Some(body));
        let mut tail: Vec<String> = vec![];
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::Build { image: spec.tag.clone(), message: e.to_string() })?;
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                return Err(EngineError::Build { image: spec.tag.clone(), message: format!("{message}\n{}", tail.join("")) });
            }
            if let Some(line) = info.stream {
                tail.push(line);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        }
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        self.create_network_scoped(spec, false).await
    }

    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        let what = format!("network {name}");
        let net = match self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await.map_err(classify(&what)) {
            Ok(n) => n,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // Stragglers (containers someone attached by hand) would make the removal fail: disconnect them first.
        for id in net.containers.unwrap_or_default().keys() {
            let req = bollard::models::NetworkDisconnectRequest { container: id.clone(), force: Some(true) };
            gone_is_done(self.docker.disconnect_network(name, req).await.map_err(classify(&what)))?;
        }
        gone_is_done(self.docker.remove_network(name).await.map_err(classify(&what)))
    }

    async fn inspect_network(&self, name: &str) -> Result<NetworkSummary, EngineError> {
        let n =
            self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await.map_err(classify(&format!("network {name}")))?;
        Ok(NetworkSummary {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            subnets: n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect(),
            labels: n.labels.unwrap_or_default().into_iter().collect(),
        })
    }

    async fn network_info(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        let n =
            self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await.map_err(classify(&format!("network {name}")))?;
        let config = n.ipam.and_then(|i| i.config).unwrap_or_default();
        let mut containers: Vec<String> = n.containers.unwrap_or_default().into_values().filter_map(|c| c.name).collect();
        containers.sort();
        Ok(NetworkInfo {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            driver: n.driver.unwrap_or_default(),
            internal: n.internal.unwrap_or(false),
            subnets: config.iter().filter_map(|c| c.subnet.clone()).collect(),
            gateways: config.iter().filter_map(|c| c.gateway.clone()).collect(),
            labels: n.labels.unwrap_or_default().into_iter().collect(),
            containers,
        })
    }

    async fn connect_network(&self, network: &str, container: &str, aliases: &[String]) -> Result<(), EngineError> {
        if self.attached(network, container).await? {
            return Ok(());
        }
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(bollard::models::EndpointSettings { aliases: Some(aliases.to_vec()), ..Default::default() }),
        };
        self.docker.connect_network(network, req).await.map_err(classify(&format!("connecting container {container} to network {network}")))
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        if !self.attached(network, container).await? {
            return Ok(());
        }
        let req = bollard::models::NetworkDisconnectRequest { container: container.to_string(), force: Some(false) };
        self.docker.disconnect_network(network, req).await.map_err(classify(&format!("disconnecting container {container} from network {network}")))
    }

    async fn container_memory(&self, id: &str) -> Result<Option<u64>, EngineError> {
        use futures_util::StreamExt;
        let opts = bollard::query_parameters::StatsOptionsBuilder::new().stream(false).one_shot(true).build();
        let Some(stats) = self.docker.stats(id, Some(opts)).next().await else {
            return Ok(None);
        };
        let mem = stats.map_err(classify(&format!("container {id}")))?.memory_stats.unwrap_or_default();
        // `docker stats` leaves out the inactive page cache: cgroup v1 names it total_inactive_file, v2 inactive_file.
        let cache = mem.stats.as_ref().and_then(|s| s.get("total_inactive_file").or_else(|| s.get("inactive_file")).copied()).unwrap_or(0);
        Ok(mem.usage.filter(|u| *u > 0).map(|u| u.saturating_sub(cache)))
    }

    async fn image_size(&self, image: &str) -> Result<Option<u64>, EngineError> {
        match self.docker.inspect_image(image).await.map_err(classify(image)) {
            Ok(i) => Ok(i.size.map(|s| s.max(0) as u64)),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        match self.docker.inspect_image(image).await.map_err(classify(image)) {
            Ok(i) => Ok(i.id),
            Err(EngineError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Labels, EngineError> {
        let req = bollard::models::VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: Some(spec.driver_opts.clone().into_iter().collect()),
            labels: Some(spec.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let what = format!("volume {}", spec.name);
        let volume = self.docker.create_volume(req).await.map_err(classify(&what))?;
        if volume.labels.is_empty() && !spec.labels.is_empty() {
            // Docker (20.10) answers without labels for an existing volume it restored after a restart; its inspect
            // has them, and the caller tells its own volume from another's by them.
            let found = self.docker.inspect_volume(&spec.name).await.map_err(classify(&what))?;
            return Ok(found.labels.into_iter().collect());
        }
        Ok(volume.labels.into_iter().collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RemoveVolumeOptionsBuilder::default().force(true).build();
        gone_is_done(self.docker.remove_volume(name, Some(opts)).await.map_err(classify(&format!("volume {name}"))))
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let what = format!("container {}", spec.name);
        let version = self.api_version();
        if spec.mounts.iter().any(|m| matches!(m, MountSpec::Volume { subpath: Some(_), .. })) && version < api::VOLUME_SUBPATH {
            return Err(EngineError::Unsupported {
                what,
                message: format!(
                    "a volume `subpath` needs Docker API {}.{}; this engine speaks {}.{} (mount the whole volume, or upgrade the engine)",
                    api::VOLUME_SUBPATH.0,
                    api::VOLUME_SUBPATH.1,
                    version.0,
                    version.1
                ),
            });
        }
        let body = container_body(spec, version >= api::START_INTERVAL);
        let mut opts = bollard::query_parameters::CreateContainerOptionsBuilder::default().name(&spec.name);
        if let Some(p) = &spec.runtime.platform {
            opts = opts.platform(p);
        }
        let created = self.docker.create_container(Some(opts.build()), body).await.map_err(classify(&what))?;
        // API 1.41 attaches one network at creation; the others are connected before start.
        for ep in spec.endpoints.iter().skip(1) {
            let req = bollard::models::NetworkConnectRequest { container: created.id.clone(), endpoint_config: Some(endpoint_settings(ep)) };
            self.docker.connect_network(&ep.network, req).await.map_err(classify(&format!("network {}", ep.network)))?;
        }
        if !spec.files.is_empty() {
            let tar = files_tar(&spec.files).map_err(|source| EngineError::Local { what: format!("{what}: its secrets and configs"), source })?;
            let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default().path("/").build();
            self.docker.upload_to_container(&created.id, Some(opts), bollard::body_full(tar.into())).await.map_err(classify(&what))?;
        }
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        let what = format!("container {id}");
        match self.docker.start_container(id, None::<bollard::query_parameters::StartContainerOptions>).await.map_err(classify(&what)) {
            // Docker reports a taken host port only as a 500 whose message says so: there is no status or type for it.
            Err(EngineError::Api { status: 500, message, .. })
                if message.contains("port is already allocated") || message.contains("address already in use") =>
            {
                Err(EngineError::PortTaken { what, message })
            }
            other => other,
        }
    }

    async fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> Result<(), EngineError> {
        let mut opts = bollard::query_parameters::StopContainerOptionsBuilder::default();
        if let Some(t) = timeout_s {
            opts = opts.t(t as i32);
        }
        let opts = opts.build();
        // The engine answers a stop only once the container has stopped: allow its grace period on top.
        let grace = Duration::from_secs(timeout_s.unwrap_or(10).max(0) as u64);
        let docker = self.docker.clone().with_timeout(engine_timeout() + grace);
        match docker.stop_container(id, Some(opts)).await.map_err(classify(&format!("container {id}"))) {
            Ok(()) => Ok(()),
            // 304 Not Modified: already stopped.
            Err(EngineError::Api { status: 304, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        let opts = bollard::query_parameters::RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        match gone_is_done(self.docker.remove_container(id, Some(opts)).await.map_err(classify(&format!("container {id}")))) {
            // "removal already in progress" is success too. Docker answers it with the same 409 as any other conflict,
            // so only its message tells them apart.
            Err(EngineError::Conflict(m)) if m.contains("already in progress") => Ok(()),
            other => other,
        }
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerState, EngineError> {
        let c = self
            .docker
            .inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(classify(&format!("container {id}")))?;
        let state = c.state.unwrap_or_default();
        let mut ports = vec![];
        let mut addresses = BTreeMap::new();
        if let Some(ns) = c.network_settings {
            for (key, bindings) in ns.ports.unwrap_or_default() {
                let (port, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                for b in bindings.unwrap_or_default() {
                    if let Some(hp) = b.host_port.and_then(|h| h.parse::<u16>().ok()) {
                        ports.push((port, proto.to_string(), b.host_ip.unwrap_or_default(), hp));
                    }
                }
            }
            for (net, ep) in ns.networks.unwrap_or_default() {
                if let Some(ip) = ep.ip_address.filter(|i| !i.is_empty()) {
                    addresses.insert(net, ip);
                }
            }
        }
        ports.sort();
        let config = c.config.unwrap_or_default();
        let ns_to_ms = |v: Option<i64>| v.filter(|n| *n > 0).map(|n| (n / 1_000_000) as u64);
        let healthcheck = config.healthcheck.filter(|h| h.test.as_ref().is_some_and(|t| !t.is_empty())).map(|h| orch_compose::Healthcheck {
            test: h.test.unwrap_or_default(),
            interval_ms: ns_to_ms(h.interval),
            timeout_ms: ns_to_ms(h.timeout),
            retries: h.retries.map(|r| r as u32),
            start_period_ms: ns_to_ms(h.start_period),
            start_interval_ms: ns_to_ms(h.start_interval),
        });
        Ok(ContainerState {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: state.exit_code,
            health: state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none"),
            ports,
            addresses,
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            started_at: state.started_at,
            healthcheck,
        })
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Vec<(bool, String)>, EngineError> {
        let out = std::sync::Mutex::new(vec![]);
        self.stream_logs(id, false, tail, &|is_err, line| out.lock().expect("log lines").push((is_err, line.to_string()))).await?;
        Ok(out.into_inner().expect("log lines"))
    }

    async fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>, sink: &(dyn Fn(bool, &str) + Sync)) -> Result<(), EngineError> {
        forward_lines(self.docker.logs(id, Some(logs_options(follow, tail))), &format!("container {id}"), sink).await
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), EngineError> {
        use futures_util::StreamExt;
        let what = format!("container {id}");
        let cfg = bollard::models::ExecConfig { attach_stdout: Some(true), attach_stderr: Some(true), cmd: Some(cmd.to_vec()), ..Default::default() };
        let exec = self.docker.create_exec(id, cfg).await.map_err(classify(&what))?;
        let mut output = Vec::new();
        let mut total = 0usize;
        if let bollard::exec::StartExecResults::Attached { output: mut stream, .. } = self.docker.start_exec(&exec.id, None).await.map_err(classify(&what))? {
            while let Some(chunk) = stream.next().await {
                let bytes = chunk.map_err(classify(&what))?.into_bytes();
                total += bytes.len();
                let room = EXEC_CAPTURE.saturating_sub(output.len());
                output.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
        }
        let mut text = String::from_utf8_lossy(&output).into_owned();
        if total > output.len() {
            text.push_str(&format!("\n[orch kept the first {} of {total} bytes of output]\n", output.len()));
        }
        let info = self.docker.inspect_exec(&exec.id).await.map_err(classify(&what))?;
        Ok((info.exit_code.unwrap_or(-1), text))
    }

    async fn exec_attached(&self, id: &str, cmd: &[String], tty: bool) -> Result<i64, EngineError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let what = format!("container {id}");
        let cfg = bollard::models::ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(id, cfg).await.map_err(classify(&what))?;
        let opts = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: None };
        if let bollard::exec::StartExecResults::Attached { output: mut stream, mut input } =
            self.docker.start_exec(&exec.id, Some(opts)).await.map_err(classify(&what))?
        {
            // stdin is copied until it ends; then the command's stdin is closed, as `docker exec -i` does.
            let feed = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut input).await;
                let _ = input.shutdown().await;
            });
            let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
            while let Some(chunk) = stream.next().await {
                let written = match chunk.map_err(classify(&what))? {
                    bollard::container::LogOutput::StdErr { message } => err.write_all(&message).await.and(err.flush().await),
                    other => out.write_all(&other.into_bytes()).await.and(out.flush().await),
                };
                // Our own stdout closed (e.g. `| head`): stop reading, as a pipe's writer would.
                if written.is_err() {
                    break;
                }
            }
            feed.abort();
        }
        let info = self.docker.inspect_exec(&exec.id).await.map_err(classify(&what))?;
        Ok(info.exit_code.unwrap_or(-1))
    }
}

/// Both output streams, from the last `tail` lines (all without), following with `follow`.
pub(crate) fn logs_options(follow: bool, tail: Option<usize>) -> bollard::query_parameters::LogsOptions {
    bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .follow(follow)
        .tail(&tail.map(|t| t.to_string()).unwrap_or_else(|| "all".into()))
        .build()
}

/// Feeds a container's or service's log stream to `sink` line by line, as (is_stderr, line).
pub(crate) async fn forward_lines(
    stream: impl futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>,
    what: &str,
    sink: &(dyn Fn(bool, &str) + Sync),
) -> Result<(), EngineError> {
    use futures_util::StreamExt;
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let item = item.map_err(classify(what))?;
        let is_err = matches!(item, bollard::container::LogOutput::StdErr { .. });
        for line in String::from_utf8_lossy(&item.into_bytes()).lines() {
            sink(is_err, line);
        }
    }
    Ok(())
}

/// The swarm engine's resources (and its tasks' containers) are its own: a local-engine selection sees them only
/// when it asks for them, so neither engine reaps or removes the other's environments.
fn visible(filter: &LabelFilter, labels: &BTreeMap<String, String>) -> bool {
    let swarm = format!("{}={}", crate::labels::ENGINE, crate::labels::ENGINE_SWARM);
    labels.get(crate::labels::ENGINE).map(String::as_str) != Some(crate::labels::ENGINE_SWARM) || filter.contains(&swarm)
}

pub(crate) fn label_filters(labels: &LabelFilter) -> std::collections::HashMap<String, Vec<String>> {
    std::collections::HashMap::from([("label".to_string(), labels.clone())])
}

fn network_summary(n: bollard::models::Network) -> NetworkSummary {
    NetworkSummary {
        id: n.id.unwrap_or_default(),
        name: n.name.unwrap_or_default(),
        subnets: n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect(),
        labels: n.labels.unwrap_or_default().into_iter().collect(),
    }
}

fn container_summary(c: bollard::models::ContainerSummary) -> ContainerSummary {
    ContainerSummary {
        id: c.id.unwrap_or_default(),
        name: c.names.unwrap_or_default().first().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        labels: c.labels.unwrap_or_default().into_iter().collect(),
        published: c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.public_port?, p.private_port, p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into()))))
            .collect(),
    }
}
