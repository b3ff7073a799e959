//! Warm pools: complete environments of a project made before anyone asks, each handed out whole to one claimer.
//!
//! A **member** is an ordinary environment (own names, subnets and host ports) that the pool's **keeper** brings up
//! with itself as owner and a process lifetime, every resource labelled with the pool **key** ([`key`]: a digest of
//! everything the environment is made from). Once it is healthy and its warm-up commands succeeded, the keeper gives
//! it a **ticket**, a volume labelled [`labels::POOL_TICKET`]: only ticketed members of the current key are handed
//! out, so a member made before a compose, `.env`, `orch.toml`, plugin or image change never is.
//!
//! **Claiming** is one engine request that exactly one process wins: creating the member's **deed**, a volume of a
//! fixed name labelled with the claimer ([`labels::CLAIMED`]). The engine hands an existing name back instead of
//! refusing it, so of any number of claimers — other processes, other users, other state directories — one finds its
//! own label. From then on the deed's owner, lifetime and lease are the member's ([`crate::reaper`] reads them): the
//! claimer's watcher removes it when the claimer dies, the keeper's death no longer matters, and the keeper makes a
//! replacement. The keeper drains a member (stale key, unhealthy, `pool stop`) by claiming it first, so it never
//! removes what another process holds.
//!
//! If the keeper dies, its unclaimed members are orphans (owner dead, process lifetime): its watcher and every reap
//! remove them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::deed::{self, drain, look};
pub use crate::deed::{deed_name, ticket_name};
use crate::engine::{Engine, EngineError, VolumeSpec};
use crate::labels::{self, POOL, POOL_TICKET};
use crate::lifecycle::{self, Lifetime};
use crate::owner::Owner;
use crate::session::{EnvOptions, Environment, Project, ProjectOptions, Reconnect};
use crate::state::StateDir;
use crate::{Error, blocking};

/// Bounds the build contexts the key reads: a context with more files than this is keyed by its first ones.
const MAX_CONTEXT_FILES: usize = 20_000;

/// The pool key of `project` as it is now: its inputs ([`Project::inputs_fingerprint`]), the id of every image its
/// services name (a rebuilt or retagged image changes it), and each build context's files (path, size, modification
/// time). Members of another key are stale.
pub async fn key<E: Engine>(project: &Project, engine: &E) -> Result<String, Error> {
    let mut images = BTreeMap::new();
    let mut contexts = BTreeMap::new();
    for (name, s) in &project.compose().project.services {
        if let Some(image) = &s.image {
            images.insert(image.clone(), engine.image_id(image).await?);
        }
        if let Some(b) = &s.build {
            let dir = b.context.clone();
            contexts.insert(name.clone(), blocking(move || context_fingerprint(&dir)).await?);
        }
    }
    let text = serde_json::json!({ "inputs": project.inputs_fingerprint(), "images": images, "contexts": contexts }).to_string();
    Ok(format!("{:016x}", crate::plan::fnv1a(text.as_bytes())))
}

fn context_fingerprint(dir: &Path) -> u64 {
    use std::fmt::Write;
    let mut text = String::new();
    let walk = walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().into_iter().filter_map(Result::ok).take(MAX_CONTEXT_FILES);
    for entry in walk {
        if let Ok(m) = entry.metadata() {
            let mtime = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
            let _ = writeln!(text, "{} {} {mtime}", entry.path().strip_prefix(dir).unwrap_or(entry.path()).display(), m.len());
        }
    }
    crate::plan::fnv1a(text.as_bytes())
}

/// How a claimed member is to live: as an `up` of the same options would.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// The claimer [default: this process].
    pub owner: Option<Owner>,
    /// As long as the owner, or kept (with an optional lease).
    pub lifetime: Lifetime,
    /// An `orch` binary to run the owner's watcher, so that a claimer killed with `kill -9` leaves nothing behind.
    pub watcher: Option<PathBuf>,
    /// How long to wait for a ready member when there is none yet [default: not at all].
    pub wait: Duration,
}

impl Default for ClaimOptions {
    fn default() -> Self {
        ClaimOptions { owner: None, lifetime: Lifetime::Process, watcher: None, wait: Duration::ZERO }
    }
}

/// Claims a ready member of `project`'s pool whose key is `key`, waiting up to `opts.wait` for one: `None` when there
/// is none (the caller brings a fresh environment up instead). The member is this process's as a fresh environment
/// from [`Project::up`] would be; a claimed member that turns out not to be running any more is removed and the next
/// one tried.
pub async fn claim<E: Reconnect + Clone>(project: &Project, engine: &E, key: &str, opts: &ClaimOptions) -> Result<Option<Environment<E>>, Error> {
    let owner = opts.owner.clone().unwrap_or_else(Owner::current);
    let deadline = Instant::now() + opts.wait;
    let name = project.name();
    loop {
        let found = look(engine, name).await?;
        let mut candidates: Vec<&String> = found.tickets.iter().filter(|(env, k)| *k == key && !found.deeds.contains_key(*env)).map(|(env, _)| env).collect();
        // Claimers start at different members, so twenty at once do not all race for the first.
        if !candidates.is_empty() {
            let start = (std::process::id() as usize ^ crate::clock::now_ms() as usize) % candidates.len();
            candidates.rotate_left(start);
        }
        for env in candidates {
            if !deed::take(engine, name, env, &owner, opts.lifetime).await? {
                continue;
            }
            match engine.remove_volume(&ticket_name(name, env)).await {
                Ok(()) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            let handle = Environment::claimed(engine, name, env);
            if !serving(&handle.status().await?) {
                tracing::warn!(project = name, env, "pool member {env} is no longer running; removing it and trying another");
                handle.down().await?;
                continue;
            }
            if let (Some(exe), Lifetime::Process) = (&opts.watcher, opts.lifetime) {
                crate::session::spawn_watcher(exe, &owner, project.state(), &engine.watcher_args())?;
            }
            tracing::info!(project = name, env, "claimed from the warm pool");
            return Ok(Some(handle));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member's state in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Coming up or warming up.
    Starting,
    /// Healthy, warmed up, ticketed: the next claim may take it.
    Ready,
    /// Handed out: its claimer's now.
    Claimed,
}

/// One member as `orch pool status` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub env: String,
    pub state: MemberState,
    /// The key it was made for.
    pub key: String,
}

/// The pool as its keeper last wrote it (`orch pool status --format json`: `orch.pool/v1`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PoolStatus {
    pub format: String,
    pub project: String,
    /// The key members are made for now.
    pub key: String,
    pub size: usize,
    /// The keeper process (`pid:start-time@host:boot-id`).
    pub keeper: String,
    /// Whether the keeper process lives (filled in when read).
    #[serde(default)]
    pub running: bool,
    pub ready: usize,
    pub starting: usize,
    pub claimed: usize,
    /// Members made since the keeper started, and claims it saw.
    pub made: usize,
    pub handed_out: usize,
    pub members: Vec<Member>,
    /// What went wrong last (a failed `up` or warm-up command), if anything.
    pub last_error: Option<String>,
}

fn status_path(state: &StateDir, project: &str) -> PathBuf {
    state.root.join("pools").join(format!("{project}.json"))
}

/// The pool of `project` as its keeper in this state directory last described it, `None` without one.
pub fn status(state: &StateDir, project: &str) -> Option<PoolStatus> {
    let bytes = crate::state::read_small(&status_path(state, project), crate::state::MAX_STATE_FILE)?;
    let mut s: PoolStatus = serde_json::from_slice(&bytes).ok()?;
    s.running = Owner::parse(&s.keeper).is_some_and(|o| o.is_alive());
    Some(s)
}

/// Stops the keeper `s` names (SIGTERM) and waits up to `patience` for it to remove its members and exit.
pub fn stop(s: &PoolStatus, patience: Duration) -> Result<(), Error> {
    let Some(keeper) = Owner::parse(&s.keeper).filter(Owner::is_alive) else { return Ok(()) };
    // SAFETY: kill takes a pid and a signal number and touches no memory; the pid is the keeper's, proven alive by
    // its start time just now.
    unsafe { libc::kill(keeper.pid as i32, libc::SIGTERM) };
    let started = Instant::now();
    while keeper.is_alive() {
        if started.elapsed() > patience {
            return Err(Error::InUse(format!("the pool keeper of {} (pid {}) did not stop within {patience:?}", s.project, keeper.pid)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Forgets a dead keeper's status file (its members go with it: see the module docs).
pub fn forget(state: &StateDir, project: &str) {
    let _ = std::fs::remove_file(status_path(state, project));
}

/// How the keeper keeps its pool.
#[derive(Debug, Clone)]
pub struct KeeperOptions {
    /// Ready members to hold [default: orch.toml's `[pool] size`, else 2].
    pub size: Option<usize>,
    /// How long one member may take to come up.
    pub timeout: Duration,
    /// How long each warm-up command may take.
    pub warm_timeout: Duration,
    /// An `orch` binary for the keeper's watcher (its unclaimed members go when it dies).
    pub watcher: Option<PathBuf>,
    /// How often the keeper looks at its members.
    pub interval: Duration,
}

impl Default for KeeperOptions {
    fn default() -> Self {
        KeeperOptions {
            size: None,
            timeout: Duration::from_secs(180),
            warm_timeout: Duration::from_secs(300),
            watcher: None,
            interval: Duration::from_millis(500),
        }
    }
}

/// Keeps `project`'s pool full until `stop` resolves, then removes its unclaimed members. The project is opened
/// again on every round, so an edited compose file, `.env` or orch.toml changes the key: stale members are drained
/// and replaced. Only one keeper per project and state directory runs (a second one fails with [`Error::Busy`]).
pub async fn keep<E: Reconnect + Clone>(popts: &ProjectOptions, engine: &E, opts: &KeeperOptions, stop: impl Future<Output = ()>) -> Result<(), Error> {
    let state = StateDir::resolve(popts.state_dir.clone())?;
    let project_name = crate::session::project_name(popts)?;
    let lock_path = state.root.join("pools").join(format!("{project_name}.lock"));
    std::fs::create_dir_all(lock_path.parent().expect("has a parent"))
        .map_err(|e| Error::Io { what: format!("creating {}", lock_path.display()), source: e })?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Io { what: format!("opening {}", lock_path.display()), source: e })?;
    if lock.try_lock().is_err() {
        return Err(Error::InUse(format!("a pool keeper for project {project_name} runs already (lock {}); `orch pool stop` stops it", lock_path.display())));
    }
    let me = Owner::current();
    let mut pool = PoolStatus {
        format: "orch.pool/v1".into(),
        project: project_name.clone(),
        key: String::new(),
        size: 0,
        keeper: me.label(),
        running: true,
        ready: 0,
        starting: 0,
        claimed: 0,
        made: 0,
        handed_out: 0,
        members: vec![],
        last_error: None,
    };
    tokio::pin!(stop);
    // Rounds that fail (a broken compose file mid-edit, a failing warm-up) are retried less and less often.
    let mut failures = 0u32;
    let result = loop {
        let before = pool.last_error.clone();
        let round = round(popts, engine, opts, &mut pool, &state);
        tokio::select! {
            r = round => if let Err(e) = r {
                tracing::warn!(project = %project_name, error = %e, "pool round failed: {e}");
                pool.last_error = Some(e.to_string());
            },
            () = &mut stop => break Ok(()),
        }
        write_status(&state, &mut pool);
        failures = if pool.last_error != before { failures + 1 } else { 0 };
        let pause = opts.interval.saturating_mul(1 << failures.min(6)).min(Duration::from_secs(30));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut stop => break Ok(()),
        }
    };
    // Stopping: every member not handed out goes (claimed first, so a claim racing the stop wins or loses whole).
    for m in pool.members.iter().filter(|m| m.state != MemberState::Claimed) {
        drain(engine, &project_name, &m.env, &me).await;
    }
    forget(&state, &project_name);
    result
}

fn write_status(state: &StateDir, pool: &mut PoolStatus) {
    pool.ready = pool.members.iter().filter(|m| m.state == MemberState::Ready).count();
    pool.starting = pool.members.iter().filter(|m| m.state == MemberState::Starting).count();
    pool.claimed = pool.members.iter().filter(|m| m.state == MemberState::Claimed).count();
    let path = status_path(state, &pool.project);
    if let Err(e) = crate::atomic::write(&path, &serde_json::to_vec_pretty(pool).expect("serialises")) {
        tracing::warn!(path = %path.display(), error = %e, "could not write the pool's status");
    }
}

/// One round: the key as the project's files say now, claimed and stale members noted or drained, unhealthy ready
/// ones replaced, and new members made up to the size.
async fn round<E: Reconnect + Clone>(popts: &ProjectOptions, engine: &E, opts: &KeeperOptions, pool: &mut PoolStatus, state: &StateDir) -> Result<(), Error> {
    let project = Project::open(popts)?;
    let key = key(&project, engine).await?;
    let size = opts.size.or(project.pool_config().size).unwrap_or(2);
    let (name, me) = (project.name().to_string(), Owner::current());
    pool.key = key.clone();
    pool.size = size;
    let found = look(engine, &name).await?;
    let mut kept = vec![];
    for mut m in std::mem::take(&mut pool.members) {
        let deed = found.deeds.get(&m.env);
        let mine = deed.is_some_and(|h| crate::claim::holder(h).as_ref() == Some(&me));
        if deed.is_some() && !mine {
            if m.state != MemberState::Claimed {
                pool.handed_out += 1;
                m.state = MemberState::Claimed;
            }
            // A claimed member is listed while it exists.
            if crate::reaper::environment(engine, &name, &m.env).await?.is_some() {
                kept.push(m);
            }
            continue;
        }
        if m.state == MemberState::Ready && !found.tickets.contains_key(&m.env) {
            // Its ticket went without a deed left: claimed and removed again between two rounds.
            pool.handed_out += 1;
            continue;
        }
        if m.state == MemberState::Ready && (m.key != key || !healthy(engine, &name, &m.env).await) {
            tracing::info!(project = %name, env = %m.env, stale = m.key != key, "draining pool member");
            drain(engine, &name, &m.env, &me).await;
            continue;
        }
        kept.push(m);
    }
    pool.members = kept;
    write_status(state, pool);

    let open = pool.members.iter().filter(|m| m.state != MemberState::Claimed).count();
    if open >= size {
        return Ok(());
    }
    let wanted = size - open;
    let new: Vec<_> = (0..wanted).map(|_| make_member(&project, engine, opts, &key)).collect();
    // Listed as starting while they come up.
    let starting = Member { env: "(starting)".into(), state: MemberState::Starting, key: key.clone() };
    pool.members.extend(std::iter::repeat_n(starting, wanted));
    write_status(state, pool);
    let results = futures_util::future::join_all(new).await;
    pool.members.retain(|m| m.env != "(starting)");
    for r in results {
        match r {
            Ok(env) => {
                pool.made += 1;
                pool.members.push(Member { env, state: MemberState::Ready, key: key.clone() });
            }
            Err(e) => {
                tracing::warn!(project = %name, error = %e, "could not make a pool member: {e}");
                pool.last_error = Some(e.to_string());
            }
        }
    }
    Ok(())
}

async fn healthy<E: Engine>(engine: &E, project: &str, env: &str) -> bool {
    lifecycle::status(engine, &labels::env_filter(Some(project), env)).await.is_ok_and(|list| serving(&list))
}

/// Whether every service of a member still runs and none is unhealthy. STARTING counts: `up` saw it ready before the
/// member got its ticket, and Docker calls a container "starting" until its own first check.
fn serving(services: &[lifecycle::ServiceStatus]) -> bool {
    !services.is_empty() && services.iter().all(|s| matches!(s.state.as_str(), "HEALTHY" | "RUNNING" | "STARTING"))
}

/// Brings one member up, runs the warm-up commands and gives it its ticket: its id.
async fn make_member<E: Reconnect + Clone>(project: &Project, engine: &E, opts: &KeeperOptions, key: &str) -> Result<String, Error> {
    let env = project
        .up(
            engine,
            EnvOptions {
                timeout: opts.timeout,
                lifetime: Lifetime::Process,
                watcher: opts.watcher.clone(),
                // A member never queues ahead of a normal `up`: with no room, this round makes none.
                no_wait_capacity: true,
                pool: Some(key.to_string()),
                ..EnvOptions::default()
            },
        )
        .await?;
    let (name, id) = (env.project().to_string(), env.id().to_string());
    let vars = env.connection_env().await?;
    for command in project.pool_config().warm {
        if let Err(e) = warm_up(&command, &vars, &project.dir(), &name, &id, opts.warm_timeout).await {
            // The handle removes the member on drop.
            drop(env);
            return Err(e);
        }
    }
    let l: BTreeMap<String, String> = [
        (labels::ENV.to_string(), id.clone()),
        (labels::PROJECT.to_string(), name.clone()),
        (labels::OWNER_UID.to_string(), labels::my_uid().to_string()),
        (POOL.to_string(), key.to_string()),
        (POOL_TICKET.to_string(), "ready".to_string()),
    ]
    .into();
    engine.create_volume(&VolumeSpec { name: ticket_name(&name, &id), labels: l, ..Default::default() }).await?;
    env.detach();
    Ok(id)
}

/// Runs one `[pool] warm` command (`sh -c`) with the member's connection variables in the project's directory.
async fn warm_up(command: &str, vars: &BTreeMap<String, String>, dir: &Path, project: &str, env: &str, timeout: Duration) -> Result<(), Error> {
    let child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .envs(vars)
        .env("ORCH_ENV", env)
        .env("ORCH_PROJECT", project)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Io { what: format!("running warm-up command `{command}`"), source: e })?;
    let failed = |why: String| Error::WarmUp { command: command.to_string(), env: env.to_string(), why };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(failed(format!("did not finish within {timeout:?}"))),
        Ok(Err(e)) => Err(Error::Io { what: format!("running warm-up command `{command}`"), source: e }),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            Err(failed(format!("exited with {}: {}", out.status, tail.join(" | "))))
        }
    }
}
