//! `orch doctor`: what could stop environments from coming up, each finding with a fix hint.

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::engine::DockerEngine;
use crate::reaper::{self, Verdict};
use crate::resolve::overlaps;
use crate::state::StateDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check { name, status, detail: detail.into(), hint: hint.map(String::from) }
}

/// Free subnets of `prefix` in `pools`, given what is taken.
pub fn headroom(pools: &[Ipv4Net], taken: &[Ipv4Net], prefix: u8) -> (usize, usize) {
    let mut total = 0;
    let mut free = 0;
    for pool in pools.iter().filter(|p| p.prefix_len() <= prefix) {
        for candidate in pool.subnets(prefix).into_iter().flatten() {
            total += 1;
            if !taken.iter().any(|t| overlaps(t, &candidate)) {
                free += 1;
            }
        }
    }
    (free, total)
}

pub async fn run(engine: Result<DockerEngine, crate::engine::EngineError>, state: &StateDir, pools: &[Ipv4Net]) -> Vec<Check> {
    let mut out = vec![];
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            out.push(check("engine", Status::Fail, e.to_string(), Some("start the Docker daemon (systemctl start docker) or set DOCKER_HOST")));
            return out;
        }
    };
    match engine.client().version().await {
        Ok(v) => out.push(check(
            "engine",
            Status::Ok,
            format!("Docker {} (API {}, negotiated)", v.version.unwrap_or_default(), v.api_version.unwrap_or_default()),
            None,
        )),
        Err(e) => out.push(check("engine", Status::Fail, e.to_string(), Some("check the daemon's logs"))),
    }
    match crate::engine::gather_facts(&engine).await {
        Ok(facts) => {
            let taken: Vec<Ipv4Net> = facts.taken_subnets.iter().copied().collect();
            let (free, total) = headroom(pools, &taken, crate::resolve::DEFAULT_PREFIX);
            let status = if free == 0 {
                Status::Fail
            } else if free * 10 < total {
                Status::Warn
            } else {
                Status::Ok
            };
            out.push(check(
                "address pool",
                status,
                format!(
                    "{free} of {total} /24 subnets free in {} ({} networks and routes in use on the host)",
                    pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
                    taken.len()
                ),
                (status != Status::Ok).then_some("remove stale environments with `orch gc`, or add a pool with --pool CIDR"),
            ));
            out.push(check("host ports", Status::Ok, format!("{} host ports in use by containers and listeners", facts.taken_host_ports.len()), None));
        }
        Err(e) => out.push(check("address pool", Status::Fail, e.to_string(), None)),
    }
    if let Some((avail, total)) = crate::procfs::memory() {
        let status = if avail < total / 10 { Status::Warn } else { Status::Ok };
        out.push(check(
            "memory",
            status,
            format!("{} MiB available of {} MiB", avail >> 20, total >> 20),
            (status != Status::Ok).then_some("stop environments (`orch ps`, `orch down`) or cap them with --max-envs"),
        ));
    }
    match reaper::environments(&engine).await {
        Ok(envs) => {
            let now = reaper::now();
            let orphans: Vec<String> = envs
                .iter()
                .filter_map(|e| match e.verdict(now) {
                    Verdict::Orphan(why) => Some(format!("{} ({}): {why}", e.env, e.project)),
                    _ => None,
                })
                .collect();
            let live = envs.len() - orphans.len();
            if orphans.is_empty() {
                out.push(check("leaks", Status::Ok, format!("{live} environments, no orphaned resources"), None));
            } else {
                out.push(check(
                    "leaks",
                    Status::Warn,
                    format!("{} orphaned: {}", orphans.len(), orphans.join("; ")),
                    Some("run `orch gc` (or `orch gc --dry-run` to see what it removes)"),
                ));
            }
        }
        Err(e) => out.push(check("leaks", Status::Fail, e.to_string(), None)),
    }
    out.extend(state_checks(state));
    out
}

/// Lock holders and the allocation file.
fn state_checks(state: &StateDir) -> Vec<Check> {
    let mut out = vec![];
    let envs_dir = state.root.join("envs");
    let mut held = vec![];
    if let Ok(entries) = std::fs::read_dir(&envs_dir) {
        for e in entries.filter_map(Result::ok) {
            let Ok(f) = std::fs::File::open(e.path()) else {
                continue;
            };
            if matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)) {
                let holder = std::fs::read_to_string(e.path()).unwrap_or_default();
                held.push(format!("{}: {}", e.file_name().to_string_lossy().trim_end_matches(".lock"), holder.trim()));
            }
        }
    }
    out.push(check("locks", Status::Ok, if held.is_empty() { "no environment is locked".to_string() } else { format!("held: {}", held.join("; ")) }, None));
    let path = state.root.join("allocations.json");
    match std::fs::read(&path) {
        Err(_) => out.push(check("state", Status::Ok, format!("{} (no in-flight allocations)", state.root.display()), None)),
        Ok(bytes) => match serde_json::from_slice::<crate::state::Allocations>(&bytes) {
            Ok(a) => {
                let stale = a.envs.values().filter(|e| !crate::owner::Owner::parse(&e.owner).is_some_and(|o| o.is_alive())).count();
                out.push(check(
                    "state",
                    Status::Ok,
                    format!("{}: {} reservations ({stale} of dead owners, dropped on next use)", state.root.display(), a.envs.len()),
                    None,
                ));
            }
            Err(e) => out.push(check(
                "state",
                Status::Warn,
                format!("{} is unreadable ({e})", path.display()),
                Some("nothing to do: it is rebuilt on the next `orch up`"),
            )),
        },
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn headroom_counts_free_subnets() {
        let pools = vec!["10.192.0.0/22".parse().unwrap()];
        let taken = vec!["10.192.1.0/24".parse().unwrap(), "172.17.0.0/16".parse().unwrap()];
        assert_eq!(super::headroom(&pools, &taken, 24), (3, 4));
    }
}
