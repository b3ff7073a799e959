//! Which real engine a project runs on: the local Docker engine or a Swarm cluster through a manager. The choice is
//! made once (flag, `ORCH_ENGINE`, or `engine` in orch.toml); everything after goes through [`Engine`].

use super::*;

/// The kinds of real engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// The Docker engine at DOCKER_HOST (or the local socket): containers.
    #[default]
    Local,
    /// The Swarm cluster whose manager is at DOCKER_HOST: services.
    Swarm,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(EngineKind::Local),
            "swarm" => Ok(EngineKind::Swarm),
            other => Err(format!("engine {other:?}: expected `local` or `swarm`")),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Local => "local",
            EngineKind::Swarm => "swarm",
        })
    }
}

/// The local engine or a swarm, chosen at run time.
#[derive(Clone)]
pub enum AnyEngine {
    Local(DockerEngine),
    Swarm(SwarmEngine),
}

impl AnyEngine {
    pub async fn connect(kind: EngineKind) -> Result<AnyEngine, EngineError> {
        Ok(match kind {
            EngineKind::Local => AnyEngine::Local(DockerEngine::connect().await?),
            EngineKind::Swarm => AnyEngine::Swarm(SwarmEngine::connect().await?),
        })
    }

    /// Where a multi-node swarm gets images from (see [`SwarmEngine::with_registry`]); nothing for the local engine.
    pub fn with_registry(self, registry: Option<&str>) -> AnyEngine {
        match self {
            AnyEngine::Swarm(s) => AnyEngine::Swarm(s.with_registry(registry.map(str::to_string))),
            local => local,
        }
    }

    pub fn kind(&self) -> EngineKind {
        match self {
            AnyEngine::Local(_) => EngineKind::Local,
            AnyEngine::Swarm(_) => EngineKind::Swarm,
        }
    }

    /// The Docker engine orch talks to (a swarm's manager).
    pub fn docker(&self) -> &DockerEngine {
        match self {
            AnyEngine::Local(e) => e,
            AnyEngine::Swarm(s) => s.local(),
        }
    }
}

/// Forwards a trait method to whichever engine this is.
macro_rules! forward {
    ($self:ident, $e:ident => $call:expr) => {
        match $self {
            AnyEngine::Local($e) => $call.await,
            AnyEngine::Swarm($e) => $call.await,
        }
    };
}

impl Engine for AnyEngine {
    async fn list_networks(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        forward!(self, e => e.list_networks())
    }
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        forward!(self, e => e.list_containers())
    }
    async fn list_images(&self) -> Result<Vec<String>, EngineError> {
        forward!(self, e => e.list_images())
    }
    async fn networks_labelled(&self, labels: &LabelFilter) -> Result<Vec<NetworkSummary>, EngineError> {
        forward!(self, e => e.networks_labelled(labels))
    }
    async fn containers_labelled(&self, labels: &LabelFilter) -> Result<Vec<ContainerSummary>, EngineError> {
        forward!(self, e => e.containers_labelled(labels))
    }
    async fn volumes_labelled(&self, labels: &LabelFilter) -> Result<Vec<(String, Labels)>, EngineError> {
        forward!(self, e => e.volumes_labelled(labels))
    }
    async fn image_exists(&self, image: &str) -> Result<bool, EngineError> {
        forward!(self, e => e.image_exists(image))
    }
    async fn tag_image(&self, image: &str, tag: &str) -> Result<(), EngineError> {
        forward!(self, e => e.tag_image(image, tag))
    }
    async fn remove_image(&self, image: &str) -> Result<(), EngineError> {
        forward!(self, e => e.remove_image(image))
    }
    async fn build_image(&self, spec: BuildSpec) -> Result<(), EngineError> {
        forward!(self, e => e.build_image(spec))
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<String, EngineError> {
        forward!(self, e => e.create_network(spec))
    }
    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        forward!(self, e => e.remove_network(name))
    }
    async fn inspect_network(&self, name: &str) -> Result<NetworkSummary, EngineError> {
        forward!(self, e => e.inspect_network(name))
    }
    async fn network_info(&self, name: &str) -> Result<NetworkInfo, EngineError> {
        forward!(self, e => e.network_info(name))
    }
    async fn connect_network(&self, network: &str, container: &str, aliases: &[String]) -> Result<(), EngineError> {
        forward!(self, e => e.connect_network(network, container, aliases))
    }
    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), EngineError> {
        forward!(self, e => e.disconnect_network(network, container))
    }
    async fn container_memory(&self, id: &str) -> Result<Option<u64>, EngineError> {
        forward!(self, e => e.container_memory(id))
    }
    async fn image_size(&self, image: &str) -> Result<Option<u64>, EngineError> {
        forward!(self, e => e.image_size(image))
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>, EngineError> {
        forward!(self, e => e.image_id(image))
    }
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<Labels, EngineError> {
        forward!(self, e => e.create_volume(spec))
    }
    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        forward!(self, e => e.remove_volume(name))
    }
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        forward!(self, e => e.create_container(spec))
    }
    async fn start_container(&self, id: &str) -> Result<(), EngineError> {
        forward!(self, e => e.start_container(id))
    }
    async fn stop_container(&self, id: &str, timeout_s: Option<i64>) -> Result<(), EngineError> {
        forward!(self, e => e.stop_container(id, timeout_s))
    }
    async fn remove_container(&self, id: &str) -> Result<(), EngineError> {
        forward!(self, e => e.remove_container(id))
    }
    async fn inspect_container(&self, id: &str) -> Result<ContainerState, EngineError> {
        forward!(self, e => e.inspect_container(id))
    }
    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Vec<(bool, String)>, EngineError> {
        forward!(self, e => e.logs(id, tail))
    }
    async fn stream_logs(&self, id: &str, follow: bool, tail: Option<usize>, sink: &(dyn Fn(bool, &str) + Sync)) -> Result<(), EngineError> {
        forward!(self, e => e.stream_logs(id, follow, tail, sink))
    }
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<(i64, String), EngineError> {
        forward!(self, e => e.exec(id, cmd))
    }
    async fn exec_attached(&self, id: &str, cmd: &[String], tty: bool) -> Result<i64, EngineError> {
        forward!(self, e => e.exec_attached(id, cmd, tty))
    }
    fn places_services(&self) -> bool {
        matches!(self, AnyEngine::Swarm(_))
    }
    async fn memory(&self) -> Result<Option<(u64, u64)>, EngineError> {
        forward!(self, e => e.memory())
    }
}
