//! Admission control: an environment starts only when the host can take it — a cap on concurrent environments and
//! enough memory for the plan's limits — so a burst of parallel test runs queues instead of pushing the daemon over.
//! Waiters queue fairly through ticket files in the state directory (oldest live ticket first).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineError};
use crate::lifecycle::Owner;
use crate::plan::Plan;
use crate::reaper::{self, Verdict};
use crate::state::StateDir;

/// Memory assumed for a service without a limit.
pub const DEFAULT_SERVICE_MEMORY: u64 = 128 << 20;

#[derive(Debug, Clone)]
pub struct Policy {
    /// At most this many environments at once (0: no cap).
    pub max_envs: usize,
    /// Fail instead of waiting.
    pub no_wait: bool,
    pub timeout: Duration,
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
    #[error("admission queue in {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Memory the plan asks for: the sum of its services' limits (unlimited services count as 128 MiB).
pub fn demand(plan: &Plan) -> u64 {
    plan.services.values().map(|s| s.resources.memory_limit.unwrap_or(DEFAULT_SERVICE_MEMORY)).sum()
}

/// (MemAvailable, MemTotal) in bytes from /proc/meminfo.
pub fn host_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    };
    Some((field("MemAvailable:")?, field("MemTotal:")?))
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

fn ahead_of(dir: &std::path::Path, mine: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.as_str() >= mine {
                return false;
            }
            let owner = std::fs::read_to_string(e.path()).ok().and_then(|o| Owner::parse(o.trim()));
            let alive = owner.as_ref().is_some_and(Owner::is_alive);
            if !alive {
                // A waiter that died leaves its ticket: clear it for everyone.
                let _ = std::fs::remove_file(e.path());
            }
            alive
        })
        .count()
}

/// Waits (or fails, with `no_wait`) until this plan may start. Keep the ticket until the environment exists, so
/// the next waiter counts it.
pub async fn admit<E: Engine>(engine: &E, state: &StateDir, plan: &Plan, policy: &Policy, on_wait: &(dyn Fn(&str) + Sync)) -> Result<Ticket, AdmissionError> {
    let need = demand(plan);
    if let Some((_, total)) = host_memory()
        && need > total - total / 10
    {
        return Err(AdmissionError::NeverFits { need: need >> 20, total: total >> 20 });
    }
    let dir = state.root.join("queue");
    std::fs::create_dir_all(&dir).map_err(|e| AdmissionError::Io(dir.clone(), e))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{nanos:024}-{}", std::process::id());
    let path = dir.join(&name);
    std::fs::write(&path, Owner::current().label()).map_err(|e| AdmissionError::Io(path.clone(), e))?;
    let ticket = Ticket { path };
    let started = Instant::now();
    let mut last_said = String::new();
    loop {
        let ahead = ahead_of(&dir, &name);
        let why = if ahead > 0 {
            Some(format!("{ahead} ahead"))
        } else {
            let running = if policy.max_envs > 0 {
                let now = reaper::now();
                reaper::environments(engine).await?.iter().filter(|e| matches!(e.verdict(now), Verdict::Live | Verdict::Kept)).count()
            } else {
                0
            };
            let memory = host_memory().map(|(avail, total)| (avail.saturating_sub(total / 10), total));
            if policy.max_envs > 0 && running >= policy.max_envs {
                Some(format!("{running} environments running, at most {} allowed (--max-envs)", policy.max_envs))
            } else if let Some((usable, _)) = memory.filter(|(usable, _)| need > *usable) {
                Some(format!("needs {} MiB of memory, {} MiB available beyond the 10% reserve", need >> 20, usable >> 20))
            } else {
                None
            }
        };
        let Some(why) = why else { return Ok(ticket) };
        if policy.no_wait {
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
