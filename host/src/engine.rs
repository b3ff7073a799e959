//! The container engine behind a narrow trait, with the Docker (bollard) implementation. Everything orch does to an
//! engine goes through [`Engine`], so tests can substitute a fake and a Swarm backend can come later.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;
use ipnet::Ipv4Net;

use crate::facts::Facts;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine ({0}); is the daemon running and is DOCKER_HOST right?")]
    Unreachable(String),
    #[error("the Docker engine did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Docker engine error: {0}")]
    Api(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub subnets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// (host port, container port, protocol)
    pub published: Vec<(u16, u16, String)>,
}

/// What orch needs from a container engine.
pub trait Engine: Send + Sync {
    fn list_networks(&self) -> impl Future<Output = Result<Vec<NetworkSummary>, EngineError>> + Send;
    fn list_containers(&self) -> impl Future<Output = Result<Vec<ContainerSummary>, EngineError>> + Send;
    fn list_images(&self) -> impl Future<Output = Result<Vec<String>, EngineError>> + Send;
}

/// Docker through bollard, with the API version negotiated (Debian's engine speaks 1.41).
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
}

fn api(e: bollard::errors::Error) -> EngineError {
    EngineError::Api(e.to_string())
}

impl DockerEngine {
    pub async fn connect() -> Result<DockerEngine, EngineError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| EngineError::Unreachable(e.to_string()))?;
        let timeout = Duration::from_secs(5);
        let docker = tokio::time::timeout(timeout, docker.negotiate_version())
            .await
            .map_err(|_| EngineError::Timeout(timeout))?
            .map_err(|e| EngineError::Unreachable(e.to_string()))?;
        Ok(DockerEngine { docker })
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

impl Engine for DockerEngine {
    async fn list_networks(&self) -> Result<Vec<NetworkSummary>, EngineError> {
        let nets = self.docker.list_networks(None).await.map_err(api)?;
        Ok(nets
            .into_iter()
            .map(|n| NetworkSummary {
                id: n.id.unwrap_or_default(),
                name: n.name.unwrap_or_default(),
                subnets: n.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect(),
                labels: n.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default().all(true).build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(api)?;
        Ok(list
            .into_iter()
            .map(|c| ContainerSummary {
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
            })
            .collect())
    }

    async fn list_images(&self) -> Result<Vec<String>, EngineError> {
        let list = self.docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.map_err(api)?;
        Ok(list.into_iter().flat_map(|i| i.repo_tags).filter(|t| t != "<none>:<none>").collect())
    }
}

/// Collects the facts a plan must respect from the engine and the host's routes.
pub async fn gather_facts<E: Engine>(engine: &E) -> Result<Facts, EngineError> {
    let (networks, containers, images) = tokio::try_join!(engine.list_networks(), engine.list_containers(), engine.list_images())?;
    let mut facts = Facts { engine_consulted: true, ..Facts::default() };
    facts.taken_subnets.extend(networks.iter().flat_map(|n| n.subnets.iter()).filter_map(|s| s.parse::<Ipv4Net>().ok()).map(|n| n.trunc()));
    facts.taken_host_ports.extend(containers.iter().flat_map(|c| c.published.iter().map(|p| p.0)));
    facts.local_images.extend(images);
    facts.add_host_routes();
    Ok(facts)
}
