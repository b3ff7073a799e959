//! Admission control: an environment starts only when the host can take it — a cap on concurrent environments and
//! enough memory for the plan's limits — so a burst of parallel test runs queues instead of pushing the daemon over.
//! Waiters queue fairly through ticket files in the state directory (oldest live ticket first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::deed;
use crate::engine::{Engine, EngineError};
use crate::owner::Owner;
use crate::plan::Plan;
use crate::reaper::{self, Verdict};
use crate::state::StateDir;

pub use crate::engine::DEFAULT_SERVICE_MEMORY;

#[derive(Debug, Clone)]
pub struct Policy {
    /// At most this many environments at once (0: no cap).
    pub max_envs: usize,
    /// Fail instead of waiting.
    pub no_wait: bool,
    pub timeout: Duration,
    /// Remove an idle warm-pool member of this user when there is no room, rather than wait or fail: a pool never
    /// starves a normal `up`. Off for the pool's own members.
    pub evict_idle: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("no capacity: {why}; try later, raise --max-envs, or drop --no-wait-capacity to queue")]
    NoCapacity { why: String },
    #[error("still no capacity after {waited:?}: {why}")]
    Timeout { waited: Duration, why: String },
    #[error("the environment needs {need} MiB (sum of its memory limits) but this host has only {total} MiB in all; lower the limits")]
    NeverFits { need: u64, total: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("admission queue in {0}: {1}; set --state-dir or ORCH_STATE_DIR to a writable directory")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Memory the plan asks for: the sum of its services' limits (unlimited services count as 128 MiB).
pub fn demand(plan: &Plan) -> u64 {
    plan.services.values().map(|s| s.resources.memory_limit.unwrap_or(DEFAULT_SERVICE_MEMORY)).sum()
}

/// A place in the queue; removed on drop.
pub struct Ticket {
    path: PathBuf,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A queue entry: `<owner label>\n<memory demand>\n<waiting|admitted>\n<project>/<env>`, named by arrival time.
struct Entry {
    name: String,
    demand: u64,
    admitted: bool,
    /// (project, env): an admitted environment counts once, whether or not the engine has its resources yet.
    env: Option<(String, String)>,
}

fn write_ticket(path: &std::path::Path, demand: u64, admitted: bool, plan: &Plan) -> std::io::Result<()> {
    let state = if admitted { "admitted" } else { "waiting" };
    let text = format!("{}\n{demand}\n{state}\n{}/{}\n", Owner::current().label(), plan.identity.project, plan.identity.env_id);
    crate::atomic::write(path, text.as_bytes())
}

/// Live entries of the queue; entries of dead processes are removed for everyone.
fn entries(dir: &std::path::Path) -> Vec<Entry> {
    let Ok(list) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in list.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        // A ticket is read only as a small regular file: a FIFO or a symlink planted in the queue is skipped.
        let text = crate::state::read_small(&e.path(), 4096).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let mut lines = text.lines();
        let alive = lines.next().and_then(Owner::parse).is_some_and(|o| o.is_alive());
        if !alive {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let demand = lines.next().and_then(|d| d.parse().ok()).unwrap_or(0);
        let admitted = lines.next() == Some("admitted");
        let env = lines.next().and_then(|l| l.split_once('/')).map(|(p, e)| (p.to_string(), e.to_string()));
        out.push(Entry { name, demand, admitted, env });
    }
    out
}

/// Waits (or fails, with `no_wait`) until this plan may start. Keep the ticket until the environment exists, so
/// the next waiter counts it.
pub async fn admit<E: Engine>(engine: &E, state: &StateDir, plan: &Plan, policy: &Policy, on_wait: &(dyn Fn(&str) + Sync)) -> Result<Ticket, AdmissionError> {
    let need = demand(plan);
    if let Some((_, total)) = engine.memory().await?
        && need > total - total / 10
    {
        return Err(AdmissionError::NeverFits { need: need >> 20, total: total >> 20 });
    }
    state.ensure()?;
    let dir = state.root.join("queue");
    std::fs::create_dir_all(&dir).map_err(|e| AdmissionError::Io(dir.clone(), e))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{nanos:024}-{}", std::process::id());
    let path = dir.join(&name);
    write_ticket(&path, need, false, plan).map_err(|e| AdmissionError::Io(path.clone(), e))?;
    let ticket = Ticket { path };
    let started = Instant::now();
    let mut last_said = String::new();
    // Freed memory shows up in the engine's figures a little later: one eviction at a time, then a look again.
    let mut evicted_at: Option<Instant> = None;
    loop {
        // Capacity must hold for this plan on top of everyone admitted and everyone waiting ahead (first come, first
        // served). Every environment counts once: by its (project, env), whether the engine has its resources (any
        // user's, found by label) or it was admitted here and is still being made, or both.
        let queue = entries(&dir);
        let ahead: Vec<&Entry> = queue.iter().filter(|e| !e.admitted && e.name < name).collect();
        let admitted: Vec<&Entry> = queue.iter().filter(|e| e.admitted && e.name != name).collect();
        let on_engine: std::collections::BTreeSet<(String, String)> = if policy.max_envs > 0 {
            let now = reaper::now();
            reaper::environments(engine)
                .await?
                .into_iter()
                .filter(|e| matches!(e.verdict(now), Verdict::Live | Verdict::Kept | Verdict::Removing(_)))
                .map(|e| (e.project, e.env))
                .collect()
        } else {
            Default::default()
        };
        let starting = admitted.iter().filter(|e| e.env.as_ref().is_none_or(|k| !on_engine.contains(k))).count();
        let running = on_engine.len();
        let reserved: u64 = ahead.iter().chain(admitted.iter()).map(|e| e.demand).sum();
        let usable = engine.memory().await?.map(|(avail, total)| avail.saturating_sub(total / 10));
        let why = if policy.max_envs > 0 && running + starting + ahead.len() + 1 > policy.max_envs {
            Some(format!(
                "{} ahead; {running} environment(s) on the engine and {starting} more starting, at most {} allowed (--max-envs)",
                ahead.len(),
                policy.max_envs
            ))
        } else {
            usable.filter(|u| need + reserved > *u).map(|usable| {
                format!(
                    "{} ahead; needs {} MiB of memory, {} MiB usable beyond the 10% reserve and what others claimed",
                    ahead.len(),
                    need >> 20,
                    usable.saturating_sub(reserved) >> 20
                )
            })
        };
        let Some(why) = why else {
            write_ticket(&ticket.path, need, true, plan).map_err(|e| AdmissionError::Io(ticket.path.clone(), e))?;
            return Ok(ticket);
        };
        let settling = evicted_at.is_some_and(|t| t.elapsed() < Duration::from_secs(2));
        if policy.evict_idle
            && !settling
            && let Some((project, env)) = deed::evict_idle(engine).await?
        {
            on_wait(&format!("removed idle pool member {env} of project {project} to make room ({why})"));
            evicted_at = Some(Instant::now());
            continue;
        }
        if policy.no_wait && !settling {
            return Err(AdmissionError::NoCapacity { why });
        }
        if started.elapsed() >= policy.timeout {
            return Err(AdmissionError::Timeout { waited: started.elapsed(), why });
        }
        if why != last_said {
            on_wait(&format!("waiting for capacity ({why})"));
            last_said = why;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;
    use std::collections::BTreeMap;

    fn plan(env: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services:\n  a: {image: img}\n").unwrap();
        let req = crate::PlanRequest {
            compose: orch_compose::LoadOptions { files: vec![file], project_name: Some("adm".into()), ..Default::default() },
            env_id: Some(env.into()),
            ..Default::default()
        };
        crate::make_plan(&req, &[], &crate::facts::Facts::default()).unwrap().plan
    }

    #[tokio::test]
    async fn an_environment_being_made_counts_once_whether_it_is_on_the_engine_or_admitted_or_both() {
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir { root: state_dir.path().to_path_buf() };
        let engine = FakeEngine::new();
        let policy = Policy { max_envs: 2, no_wait: true, timeout: Duration::from_secs(1), evict_idle: true };
        // Environment `one` is starting: admitted here (its ticket held by a live `up`) and already on the engine.
        let first = admit(&engine, &state, &plan("one"), &policy, &|_| {}).await.unwrap();
        let labels = BTreeMap::from([
            (crate::labels::ENV.to_string(), "one".to_string()),
            (crate::labels::PROJECT.to_string(), "adm".to_string()),
            (crate::labels::OWNER.to_string(), Owner::current().label()),
        ]);
        engine.plant_container("adm__one__a", labels);
        // With at most two, a second one fits: `one` counts once.
        let second = admit(&engine, &state, &plan("two"), &policy, &|_| {}).await.expect("one starting environment leaves room for a second");
        // A third does not: `one` on the engine and `two` admitted are two.
        let err = admit(&engine, &state, &plan("three"), &policy, &|_| {}).await.err().expect("no room for a third");
        assert!(err.to_string().contains("1 environment(s) on the engine and 1 more starting, at most 2"), "{err}");
        // Once `two` gave up its ticket (made nothing), `one` alone counts.
        drop((first, second));
        assert!(admit(&engine, &state, &plan("three"), &policy, &|_| {}).await.is_ok());
    }

    #[tokio::test]
    async fn a_normal_up_evicts_an_idle_pool_member_of_its_user_and_a_member_never_does() {
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDir { root: state_dir.path().to_path_buf() };
        let engine = FakeEngine::new();
        let env_labels = |env: &str| {
            BTreeMap::from([
                (crate::labels::ENV.to_string(), env.to_string()),
                (crate::labels::PROJECT.to_string(), "pooled".to_string()),
                (crate::labels::OWNER.to_string(), Owner::current().label()),
                (crate::labels::OWNER_UID.to_string(), crate::labels::my_uid().to_string()),
                (crate::labels::POOL.to_string(), "k1".to_string()),
            ])
        };
        // An idle member of this user (ticketed), and a claimed one (deed, no ticket): the cap of two is full.
        engine.plant_container("pooled__idle__a", env_labels("idle"));
        let mut ticket = env_labels("idle");
        ticket.insert(crate::labels::POOL_TICKET.to_string(), "ready".to_string());
        engine.plant_volume(&deed::ticket_name("pooled", "idle"), ticket);
        engine.plant_container("pooled__held__a", env_labels("held"));
        let mut held = env_labels("held");
        held.insert(crate::labels::CLAIMED.to_string(), format!("{}#0", Owner::current().label()));
        engine.plant_volume(&deed::deed_name("pooled", "held"), held);

        // A pool member's own admission never evicts: it is refused.
        let member = Policy { max_envs: 2, no_wait: true, timeout: Duration::from_secs(1), evict_idle: false };
        let err = admit(&engine, &state, &plan("m1"), &member, &|_| {}).await.err().expect("a member waits for room like anyone");
        assert!(matches!(err, AdmissionError::NoCapacity { .. }), "{err}");
        assert_eq!(engine.container_names().len(), 2);

        // A normal `up` takes the idle member's room, and only the idle one's.
        let said = std::sync::Mutex::new(vec![]);
        let normal = Policy { evict_idle: true, ..member };
        let ticket = admit(&engine, &state, &plan("n1"), &normal, &|m| said.lock().unwrap().push(m.to_string())).await.expect("room made by eviction");
        assert_eq!(engine.container_names(), vec!["pooled__held__a".to_string()], "the claimed member stays");
        assert!(said.lock().unwrap().iter().any(|m| m.contains("removed idle pool member idle of project pooled")), "{:?}", said.lock().unwrap());
        drop(ticket);

        // With no idle member left, a full engine refuses as before.
        engine.plant_container("adm__other__a", env_labels("other"));
        let err = admit(&engine, &state, &plan("n2"), &normal, &|_| {}).await.err().expect("nothing idle to evict");
        assert!(matches!(err, AdmissionError::NoCapacity { .. }), "{err}");
    }
}
