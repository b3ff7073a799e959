//! What runs now: each service's state and ports, and the connection variables derived from them.

use super::wait::{POLL, healthy};
use crate::engine::{ContainerState, Engine, EngineError};
use crate::labels;
use crate::plan::WaitStrategy;
use futures_util::future::join_all;
use std::collections::BTreeMap;

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
/// passed) is HEALTHY when `up` already saw it healthy since it last started, and otherwise has its healthcheck run
/// now, so the report says what holds now and never goes back on what `up` reported.
pub async fn status_probed<E: Engine>(engine: &E, filter: &[String], probe: bool) -> Result<Vec<ServiceStatus>, EngineError> {
    let list = engine.containers_labelled(&filter.to_vec()).await?;
    let ready_at = if probe { super::marker::ready_times(engine).await? } else { BTreeMap::new() };
    let ready_at = &ready_at;
    let states = join_all(list.iter().map(|c| async move {
        let mut st = engine.inspect_container(&c.id).await?;
        if probe && st.status == "running" && st.health.as_deref() == Some("starting") {
            let ok = if seen_healthy_by_up(&st, ready_at) {
                true
            } else {
                // A few quick tries: one failed exec should not turn a healthy service into "starting".
                let mut ok = false;
                for _ in 0..3 {
                    if matches!(healthy(engine, &c.name, &c.id, &st).await, Ok(true)) {
                        ok = true;
                        break;
                    }
                    tokio::time::sleep(POLL).await;
                }
                ok
            };
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

/// Whether `up` waited for this container to be healthy and became ready after the container last started: then
/// Docker's "starting" only means its own first check has not run yet. (Docker turns a healthy container
/// "unhealthy", never "starting"; a restart after `up` starts it over.)
fn seen_healthy_by_up(st: &ContainerState, ready_at: &BTreeMap<(String, String), u64>) -> bool {
    let awaited_healthy =
        st.labels.get(labels::WAIT).and_then(|w| serde_json::from_str::<Vec<WaitStrategy>>(w).ok()).is_some_and(|w| w.contains(&WaitStrategy::Healthcheck));
    let key = (st.labels.get(labels::PROJECT).cloned().unwrap_or_default(), st.labels.get(labels::ENV).cloned().unwrap_or_default());
    let started = st.started_at.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.timestamp_millis());
    match (awaited_healthy, ready_at.get(&key), started) {
        (true, Some(&ready), Some(started)) => started >= 0 && (started as u64) < ready,
        _ => false,
    }
}

/// The address a published port is reached at from this host: IPv4 loopback for an all-interfaces binding, else the
/// address it is bound to (a swarm node's, for a task on another node).
pub fn reachable_host(ip: &str) -> &str {
    if ip.is_empty() || ip == "0.0.0.0" { "127.0.0.1" } else { ip }
}

/// Connection variables a test process needs: `<SERVICE>_HOST` (where its first published port is reached), and
/// `<SERVICE>_PORT` (that port) plus `<SERVICE>_PORT_<CONTAINER PORT>` for each published port.
pub fn connection_env(services: &[ServiceStatus]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in services {
        let key: String = s.service.to_ascii_uppercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        let mut ports: Vec<&(String, String, u16)> = s.ports.iter().filter(|p| p.1 != "::").collect();
        ports.sort();
        if let Some(first) = ports.first() {
            out.insert(format!("{key}_HOST"), reachable_host(&first.1).to_string());
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

    fn published(service: &str, ip: &str, port: u16) -> ServiceStatus {
        ServiceStatus {
            env: "e".into(),
            project: "p".into(),
            service: service.into(),
            container: format!("p-e-{service}"),
            state: "RUNNING".into(),
            ports: vec![("5432/tcp".into(), ip.into(), port)],
            created: 0,
            owner: String::new(),
        }
    }

    #[test]
    fn connection_variables_name_where_each_port_is_reached() {
        let vars = connection_env(&[published("db", "0.0.0.0", 30001), published("cache", "10.99.0.2", 30002), published("api-gw", "127.0.0.1", 30003)]);
        assert_eq!(vars["DB_HOST"], "127.0.0.1");
        assert_eq!(vars["CACHE_HOST"], "10.99.0.2", "a task on another swarm node is reached at that node");
        assert_eq!(vars["API_GW_HOST"], "127.0.0.1");
        assert_eq!((vars["DB_PORT"].as_str(), vars["DB_PORT_5432"].as_str()), ("30001", "30001"));
    }
}
