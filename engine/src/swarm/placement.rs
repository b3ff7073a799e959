//! Where an environment's services go: every service of one environment on one node, the Ready, Active node with
//! the most memory orch's services do not claim among those meeting the services' placement constraints.

use std::collections::BTreeMap;

use bollard::models::ServiceSpec;

use super::{NODE, SwarmEngine, env_key};
use crate::docker::classify;
use crate::labels;
use crate::{EngineError, LabelFilter};

impl SwarmEngine {
    /// Ready, Active nodes, with what placement constraints look at.
    pub(super) async fn nodes(&self) -> Result<Vec<NodeInfo>, EngineError> {
        let nodes = self.docker.list_nodes(None::<bollard::query_parameters::ListNodesOptions>).await.map_err(classify("the swarm's nodes"))?;
        Ok(nodes
            .into_iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.state) == Some(bollard::models::NodeState::READY))
            .filter(|n| n.spec.as_ref().and_then(|s| s.availability).is_none_or(|a| a == bollard::models::NodeSpecAvailabilityEnum::ACTIVE))
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                let desc = n.description.unwrap_or_default();
                let platform = desc.platform.clone().unwrap_or_default();
                NodeInfo {
                    id: n.id.unwrap_or_default(),
                    memory: desc.resources.as_ref().and_then(|r| r.memory_bytes).unwrap_or(0).max(0) as u64,
                    addr: n.status.and_then(|s| s.addr).unwrap_or_default(),
                    hostname: desc.hostname.clone().unwrap_or_default(),
                    role: spec.role.map(|r| r.to_string()).unwrap_or_default(),
                    os: platform.os.unwrap_or_default(),
                    arch: platform.architecture.unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    engine_labels: desc.engine.and_then(|e| e.labels).unwrap_or_default().into_iter().collect(),
                }
            })
            .collect())
    }

    /// Memory orch's services claim on each node (their limits; 128 MiB for a service without one).
    pub(super) async fn claimed(&self) -> Result<BTreeMap<String, u64>, EngineError> {
        let mut out = BTreeMap::new();
        for s in self.services(&labels::any_env()).await? {
            let spec = s.spec.unwrap_or_default();
            let Some(node) = spec.labels.as_ref().and_then(|l| l.get(NODE)).cloned() else { continue };
            let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(1);
            if replicas == 0 {
                continue;
            }
            let limit = spec.task_template.and_then(|t| t.resources).and_then(|r| r.limits).and_then(|l| l.memory_bytes);
            *out.entry(node).or_insert(0) += limit.map(|l| l.max(0) as u64).unwrap_or(super::DEFAULT_SERVICE_MEMORY);
        }
        Ok(out)
    }

    /// The node an environment's services go to: the one already chosen (by this process or, through the services'
    /// labels, by another), else the Ready, Active node with the most memory not claimed by orch's services among
    /// those that meet every placement constraint of the environment's services (among all, when none meets them all:
    /// each constrained service then goes where its constraints say).
    pub(super) async fn node_for(&self, env_key: &str, env_filter: &LabelFilter, pending: &[Vec<String>]) -> Result<String, EngineError> {
        if let Some(n) = self.placed.lock().expect("placement map").get(env_key) {
            return Ok(n.clone());
        }
        let existing = self.services(env_filter).await?;
        let chosen = match existing.iter().find_map(|s| s.spec.as_ref()?.labels.as_ref()?.get(NODE).cloned()) {
            Some(n) => n,
            None => {
                let mut constraints: Vec<String> = existing.iter().flat_map(|s| own_constraints(s.spec.as_ref())).collect();
                constraints.extend(pending.iter().flatten().cloned());
                let claimed = self.claimed().await?;
                let nodes = self.nodes().await?;
                let free = |n: &NodeInfo| n.memory.saturating_sub(claimed.get(&n.id).copied().unwrap_or(0));
                let fitting: Vec<&NodeInfo> = nodes.iter().filter(|n| constraints.iter().all(|c| n.meets(c) == Some(true))).collect();
                let pool: Vec<&NodeInfo> = if fitting.is_empty() { nodes.iter().collect() } else { fitting };
                let best = pool.into_iter().max_by_key(|n| (free(n), std::cmp::Reverse(n.id.clone())));
                best.map(|n| n.id.clone()).ok_or_else(|| EngineError::Unsupported {
                    what: "the swarm".into(),
                    message: "no node is Ready and Active to place the environment on (`docker node ls`)".into(),
                })?
            }
        };
        self.placed.lock().expect("placement map").insert(env_key.to_string(), chosen.clone());
        Ok(chosen)
    }

    /// A service's constraints once its environment's node is known: its own, plus that node when it meets them.
    pub(super) async fn placement_for(&self, spec: &ServiceSpec) -> Result<(String, Vec<String>), EngineError> {
        let labels: BTreeMap<String, String> = spec.labels.clone().unwrap_or_default().into_iter().collect();
        let (key, filter) = env_key(&labels);
        let own = own_constraints(Some(spec));
        let node = self.node_for(&key, &filter, std::slice::from_ref(&own)).await?;
        let node_info = self.nodes().await?.into_iter().find(|n| n.id == node);
        let mut constraints = own.clone();
        if node_info.is_some_and(|n| own.iter().all(|c| n.meets(c) == Some(true))) {
            constraints.push(format!("node.id=={node}"));
        }
        Ok((node, constraints))
    }
}

pub(super) struct NodeInfo {
    pub(super) id: String,
    pub(super) memory: u64,
    pub(super) addr: String,
    pub(super) hostname: String,
    pub(super) role: String,
    pub(super) os: String,
    pub(super) arch: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) engine_labels: BTreeMap<String, String>,
}

impl NodeInfo {
    /// Whether the node meets a Swarm placement constraint (`KEY==VALUE`, `KEY!=VALUE`); `None` for a key orch does
    /// not know (Swarm still applies it).
    fn meets(&self, constraint: &str) -> Option<bool> {
        let (key, equal, value) = orch_compose::split_constraint(constraint)?;
        let actual = match key {
            "node.id" => Some(self.id.as_str()),
            "node.hostname" => Some(self.hostname.as_str()),
            "node.role" => Some(self.role.as_str()),
            "node.platform.os" => Some(self.os.as_str()),
            "node.platform.arch" => Some(self.arch.as_str()),
            k => match (k.strip_prefix("node.labels."), k.strip_prefix("engine.labels.")) {
                (Some(l), _) => self.labels.get(l).map(String::as_str).or(Some("")),
                (_, Some(l)) => self.engine_labels.get(l).map(String::as_str).or(Some("")),
                _ => return None,
            },
        }?;
        Some((actual == value) == equal)
    }
}

/// The placement constraints a service was created with (its own, from the compose file or a plugin).
pub(super) fn own_constraints(spec: Option<&ServiceSpec>) -> Vec<String> {
    spec.and_then(|s| s.task_template.as_ref()?.placement.as_ref()?.constraints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !c.starts_with("node.id=="))
        .collect()
}

/// Places a service: its constraints, and the environment's node recorded on it.
pub(super) fn place(spec: &mut ServiceSpec, node: &str, constraints: Vec<String>) {
    let t = spec.task_template.get_or_insert_with(Default::default);
    t.placement.get_or_insert_with(Default::default).constraints = Some(constraints);
    spec.labels.get_or_insert_with(Default::default).insert(NODE.into(), node.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContainerSpec;
    use crate::swarm::spec::service_spec;

    #[test]
    fn placement_constraints_are_read_as_swarm_reads_them() {
        let node = NodeInfo {
            id: "n1".into(),
            memory: 1 << 30,
            addr: "10.0.0.2".into(),
            hostname: "w1".into(),
            role: "worker".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            labels: BTreeMap::from([("ssd".to_string(), "true".to_string())]),
            engine_labels: BTreeMap::new(),
        };
        assert_eq!(node.meets("node.labels.ssd==true"), Some(true));
        assert_eq!(node.meets("node.labels.ssd == false"), Some(false));
        assert_eq!(node.meets("node.labels.gpu!=yes"), Some(true));
        assert_eq!(node.meets("node.role==manager"), Some(false));
        assert_eq!(node.meets("node.hostname!=w1"), Some(false));
        assert_eq!(node.meets("engine.labels.zone==a"), Some(false));
        assert_eq!(node.meets("node.unknown==x"), None);
        assert_eq!(node.meets("nonsense"), None);
        let mut spec = ContainerSpec { name: "p-e-db".into(), image: "img".into(), ..Default::default() };
        spec.runtime.placement = vec!["node.labels.ssd==true".into()];
        let mut s = service_spec(&spec, vec![]).unwrap();
        assert_eq!(own_constraints(Some(&s)), vec!["node.labels.ssd==true".to_string()]);
        place(&mut s, "n1", vec!["node.labels.ssd==true".into(), "node.id==n1".into()]);
        assert_eq!(own_constraints(Some(&s)), vec!["node.labels.ssd==true".to_string()], "the node pin is not the service's own");
    }
}
