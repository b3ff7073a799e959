//! The library front door, for the CLI, Rust tests and every other front end: open a [`Project`] once (compose
//! files, `orch.toml`, plugins and their settings, all loaded and verified up front), plan it, and bring up any number
//! of isolated environments, each an [`Environment`] handle with its ports, connection variables, health, logs, exec,
//! restart and `down`. A handle that is dropped without `down` or `keep` removes its environment; a process that is
//! killed leaves it to the watcher (`orch __watch`, when a watcher binary is given) or to the next reap of dead owners.
//!
//! One load and one plugin pass per environment: the compose model is loaded by `open`, the plugins run once in
//! [`Project::up`] (before admission, which needs the plan's memory), and only allocation (subnets, host ports) is
//! redone under the allocation lock against fresh facts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::config::ProjectConfig;
use crate::engine::{DockerEngine, Engine, EngineError};
use crate::facts::Facts;
use crate::lifecycle::{self, Lifetime, Progress, Removed, ServiceStatus, UpReport};
use crate::plan::{EnvKind, Identity, Plan};
use crate::plugins::{self, ActivePlugin, PluginError, PluginRef, Runtime};
use crate::state::StateDir;
use crate::{Error, PlanOutcome, Planner, blocking, labels};

/// The compose files tried, in order, when none are named.
pub const DEFAULT_FILES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

/// What a project is made of. Empty fields fall back to `orch.toml` (found in `dir`), then to the defaults.
#[derive(Debug, Clone, Default)]
pub struct ProjectOptions {
    /// Where relative paths and `orch.toml` are looked up [default: the current directory].
    pub dir: Option<PathBuf>,
    /// Compose files, later ones overriding earlier ones [default: orch.toml's `files`, else compose.yaml & co.].
    pub files: Vec<PathBuf>,
    /// `.env` files for interpolation [default: orch.toml's `env-files`, else `.env` beside the compose file].
    pub env_files: Vec<PathBuf>,
    /// Compose profiles to activate, as `--profile`.
    pub profiles: Vec<String>,
    /// The project name [default: the compose file's `name`, else its folder's].
    pub project_name: Option<String>,
    /// What the environments are for (test, dev, ci, prod), which plugins see [default: orch.toml's, else test].
    pub env_kind: Option<EnvKind>,
    /// Plugin references (built-in name, path, `oci://…`), applied in order; replaces orch.toml's list.
    pub plugins: Vec<String>,
    /// `NAME.KEY=VALUE` settings on top of orch.toml's.
    pub plugin_settings: Vec<String>,
    /// Address pools subnets are carved from [default: orch.toml's `pools`, else 10.192.0.0/10].
    pub pools: Vec<Ipv4Net>,
    /// An explicit `orch.toml`.
    pub config: Option<PathBuf>,
    /// Refuse to add or change orch.lock entries.
    pub locked: bool,
    /// Compiled-plugin cache [default: $XDG_CACHE_HOME/orch or ~/.cache/orch].
    pub cache_dir: Option<PathBuf>,
    /// Locks and reservations [default: see [`StateDir::resolve`]].
    pub state_dir: Option<PathBuf>,
    /// The variables interpolation sees [default: this process's environment].
    pub environment: Option<BTreeMap<String, String>>,
}

/// How [`Project::up`] brings an environment up.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// A name (`--env`): locked for the duration, and refused if it exists. Without one a fresh id is used.
    pub name: Option<String>,
    /// Wait until every service is ready.
    pub wait: bool,
    /// How long the whole `up` may take before it fails (and rolls back).
    pub timeout: Duration,
    /// Leave what a failed `up` made, to look at it, instead of rolling it back.
    pub keep_on_failure: bool,
    /// Build images without the engine's build cache.
    pub no_cache: bool,
    /// Until when the environment lives: as long as its owner process, or kept (with an optional lease).
    pub lifetime: Lifetime,
    /// 0: orch.toml's `max-envs`, else no cap.
    pub max_envs: usize,
    /// Fail at once (exit 7) instead of queueing when the engine has no room.
    pub no_wait_capacity: bool,
    /// How long to wait for the environment's lock, the allocation lock and room on the engine.
    pub lock_timeout: Duration,
    /// An `orch` binary to run `orch __watch` for the owner, so that even `kill -9` leaves nothing behind.
    pub watcher: Option<PathBuf>,
    /// The process the environment belongs to [default: this one]: with [`Lifetime::Process`] it is removed when that
    /// process ends (a test runner that asked a CLI for an environment, say).
    pub owner: Option<crate::owner::Owner>,
    /// Join the project's tier networks (`orch network create`) instead of creating networks of its own [default:
    /// orch.toml's `join-networks`].
    pub join_networks: bool,
    /// Made as a member of the project's warm pool with this key ([`crate::pool`]).
    pub pool: Option<String>,
}

impl Default for EnvOptions {
    fn default() -> Self {
        EnvOptions {
            name: None,
            wait: true,
            timeout: Duration::from_secs(120),
            keep_on_failure: false,
            no_cache: false,
            lifetime: Lifetime::Process,
            max_envs: 0,
            no_wait_capacity: false,
            lock_timeout: Duration::from_secs(300),
            watcher: None,
            owner: None,
            join_networks: false,
            pool: None,
        }
    }
}

/// An engine a handle can reach again from another thread (to clean up on drop, when the runtime that made it may be
/// blocked or gone).
pub trait Reconnect: Engine + Sized + 'static {
    /// A new connection to the same engine, usable from another runtime.
    fn reconnect(&self) -> impl Future<Output = Result<Self, EngineError>> + Send;
    /// Global flags a watcher process needs to reach the same engine.
    fn watcher_args(&self) -> Vec<String> {
        vec![]
    }
}

impl Reconnect for crate::engine::AnyEngine {
    async fn reconnect(&self) -> Result<Self, EngineError> {
        crate::engine::AnyEngine::connect(self.kind()).await
    }
    fn watcher_args(&self) -> Vec<String> {
        vec!["--engine".into(), self.kind().to_string()]
    }
}

impl Reconnect for DockerEngine {
    async fn reconnect(&self) -> Result<Self, EngineError> {
        DockerEngine::connect().await
    }
}

impl Reconnect for crate::engine::fake::FakeEngine {
    async fn reconnect(&self) -> Result<Self, EngineError> {
        Ok(self.clone())
    }
}

/// A loaded project: compose model, settings and verified plugins, ready to plan and bring up environments.
pub struct Project {
    config: Option<ProjectConfig>,
    loaded: orch_compose::Loaded,
    compose: orch_compose::LoadOptions,
    env_kind: EnvKind,
    pools: Vec<Ipv4Net>,
    plugins: Vec<ActivePlugin>,
    state: StateDir,
    /// Notes for the user from loading (a rebuilt plugin cache, a newly pinned lock entry).
    pub notes: Vec<String>,
    plugin_calls: AtomicUsize,
}

fn cache_dir(flag: &Option<PathBuf>) -> Option<PathBuf> {
    let base = flag
        .clone()
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("orch")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("orch")));
    base.map(|b| b.join("plugins"))
}

/// The plugin runtime with its compiled-component cache.
pub fn runtime(cache: &Option<PathBuf>) -> Result<Runtime, Error> {
    Ok(Runtime::new(cache_dir(cache))?)
}

impl Project {
    /// The registry orch.toml names for a multi-node swarm (`registry = "HOST:PORT"`).
    pub fn registry(&self) -> Option<&str> {
        self.config.as_ref().and_then(|c| c.registry.as_deref())
    }

    /// The targets of `orch bench` from orch.toml's `[bench]`.
    pub fn bench_targets(&self) -> crate::config::Targets {
        self.config.as_ref().map(|c| c.bench.clone()).unwrap_or_default()
    }

    /// orch.toml's `[pool]` (empty without orch.toml).
    pub fn pool_config(&self) -> crate::config::PoolConfig {
        self.config.as_ref().map(|c| c.pool.clone()).unwrap_or_default()
    }

    /// Where the project's relative paths start: orch.toml's directory, else the first compose file's.
    pub fn dir(&self) -> PathBuf {
        match &self.config {
            Some(c) => c.dir.clone(),
            None => self.compose.files.first().and_then(|f| f.parent()).map(Path::to_path_buf).unwrap_or_default(),
        }
    }

    /// Everything an environment of this project is made from, as one text: the loaded compose model (interpolated,
    /// profiles applied), the environment kind, each plugin's digest and settings, and orch.toml. A change to any
    /// input file changes it.
    pub fn inputs_fingerprint(&self) -> String {
        let plugins: Vec<(&str, &str, &str)> = self.plugins.iter().map(|p| (p.plugin.name.as_str(), p.plugin.sha256.as_str(), p.settings.as_str())).collect();
        serde_json::json!({
            "compose": self.loaded.project,
            "env-kind": self.env_kind,
            "plugins": plugins,
            "config": format!("{:?}", self.config.as_ref().map(|c| (&c.files, &c.env_files, &c.project, &c.env_kind, &c.profiles, &c.join_networks, &c.plugins, &c.pool))),
        })
        .to_string()
    }

    /// The engine orch.toml names (`engine = "swarm"`), if it names one.
    pub fn engine_kind(&self) -> Option<crate::engine::EngineKind> {
        self.config.as_ref().and_then(|c| c.engine)
    }

    /// Reads orch.toml, loads the compose files and loads, verifies (against orch.lock) and configures the plugins.
    pub fn open(opts: &ProjectOptions) -> Result<Project, Error> {
        let dir = match &opts.dir {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(|e| Error::Io { what: "reading the current directory".into(), source: e })?,
        };
        let config = ProjectConfig::find(opts.config.as_deref(), &dir)?;
        let compose = compose_options(opts, config.as_ref(), &dir)?;
        let loaded = orch_compose::load(&compose)?;
        let none = ProjectConfig::default();
        let c = config.as_ref().unwrap_or(&none);
        let env_kind = match (opts.env_kind, &c.env_kind) {
            (Some(k), _) => k,
            (None, Some(k)) => k.parse().map_err(|e: String| Error::InvalidInput { what: "orch.toml: env-kind".into(), message: e })?,
            (None, None) => EnvKind::Test,
        };
        let pools = if opts.pools.is_empty() {
            c.pools
                .iter()
                .map(|p| p.parse().map_err(|e: ipnet::AddrParseError| Error::InvalidInput { what: format!("orch.toml: pool {p:?}"), message: e.to_string() }))
                .collect::<Result<_, _>>()?
        } else {
            opts.pools.clone()
        };
        let mut notes = vec![];
        let plugins = activate(opts, config.as_ref(), &mut notes)?;
        Ok(Project {
            config,
            loaded,
            compose,
            env_kind,
            pools,
            plugins,
            state: StateDir::resolve(opts.state_dir.clone())?,
            notes,
            plugin_calls: AtomicUsize::new(0),
        })
    }

    /// The project's name: the prefix of every resource its environments get.
    pub fn name(&self) -> &str {
        &self.loaded.project.name
    }

    /// The compose model the project was opened with.
    pub fn compose(&self) -> &orch_compose::Loaded {
        &self.loaded
    }

    /// How the compose files were loaded (files, env files, profiles), to load them again.
    pub fn compose_options(&self) -> &orch_compose::LoadOptions {
        &self.compose
    }

    /// The project's plugins, loaded, in the order they apply.
    pub fn plugins(&self) -> &[ActivePlugin] {
        &self.plugins
    }

    /// The state directory the project's locks and reservations live in.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Policy calls made so far by this project's plugins (each plugin's policies run once per plan).
    pub fn plugin_calls(&self) -> usize {
        self.plugin_calls.load(Ordering::Relaxed)
    }

    /// The project's planning pipeline (compose model, plugins, environment kind, pools).
    pub fn planner(&self) -> Planner<'_> {
        Planner::new(&self.loaded, &self.plugins, self.env_kind, &self.pools)
    }

    /// The address pools subnets are carved from.
    pub fn pools(&self) -> &[Ipv4Net] {
        &self.pools
    }

    /// The plan of environment `env` before allocation (plugins applied once).
    pub(crate) fn policy_plan_for(&self, env: &str, facts: &Facts) -> Result<PlanOutcome, Error> {
        self.policy_plan(self.planner().identity(Some(env))?, facts)
    }

    fn policy_plan(&self, identity: Identity, facts: &Facts) -> Result<PlanOutcome, Error> {
        let outcome = self.planner().policy(identity, facts)?;
        self.plugin_calls.fetch_add(outcome.timings.len(), Ordering::Relaxed);
        Ok(outcome)
    }

    /// A complete plan against `facts` (nothing is reserved: for `orch plan` and previews).
    pub fn plan(&self, env: Option<&str>, facts: &Facts) -> Result<PlanOutcome, Error> {
        let mut outcome = self.policy_plan(self.planner().identity(env)?, facts)?;
        self.planner().finish(&mut outcome.plan, facts)?;
        Ok(outcome)
    }

    /// What a plugin placed after this project's plugins would see (with no settings): the plan before allocation
    /// as a `Snapshot`, for plugin authors' fixtures.
    pub fn snapshot(&self, env: Option<&str>, facts: &Facts) -> Result<crate::plugins::runtime::types::Snapshot, Error> {
        let outcome = self.policy_plan(self.planner().identity(env)?, facts)?;
        Ok(crate::plugins::convert::snapshot(&outcome.plan, "{}", facts))
    }

    /// [`Project::snapshot`] as a fixture (`orch plan --no-engine --format snapshot`): the same on every run and
    /// machine — environment `snapshot` unless one is named (so the seed is fixed too), and no host facts (this
    /// machine's routes and networks would change the subnets plugins see).
    pub fn fixture_snapshot(&self, env: Option<&str>, places_services: bool) -> Result<crate::plugins::runtime::types::Snapshot, Error> {
        self.snapshot(Some(env.unwrap_or("snapshot")), &Facts { places_services, ..Facts::default() })
    }

    /// Plans (plugins once), waits for admission, allocates under the lock and brings the environment up. On failure
    /// nothing of it is left (unless `keep_on_failure`). The options are owned, so the future holds everything it
    /// needs (`tokio::join!(project.up(&engine, EnvOptions::default()), …)` works); [`Project::up_reporting`] also
    /// reports progress.
    pub async fn up<E: Reconnect + Clone>(&self, engine: &E, opts: EnvOptions) -> Result<Environment<E>, Error> {
        self.up_reporting(engine, &opts, &|_| {}).await
    }

    /// [`Project::up`], calling `progress` as services are built, started and become ready (the CLI's lines).
    pub async fn up_reporting<E: Reconnect + Clone>(
        &self,
        engine: &E,
        opts: &EnvOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Environment<E>, Error> {
        let _ = crate::reaper::gc(engine, &crate::reaper::GcOptions { mine_only: true, ..Default::default() }).await;
        let identity = self.planner().identity(opts.name.as_deref())?;
        let _env_lock = match &opts.name {
            Some(env) => {
                let (state, project, env, timeout) = (self.state.clone(), self.name().to_string(), env.clone(), opts.lock_timeout);
                let command = std::env::args().collect::<Vec<_>>().join(" ");
                Some(blocking(move || state.lock_env(&project, &env, &command, timeout)).await??)
            }
            None => None,
        };
        if opts.name.is_some() {
            let existing = engine.containers_labelled(&labels::env_filter(Some(&identity.project), &identity.env_id)).await?;
            if !existing.is_empty() {
                return Err(Error::EnvironmentExists { project: identity.project.clone(), env: identity.env_id.clone() });
            }
        }

        // Plan: the plugins run once, against the engine's facts and every live reservation.
        let facts = crate::planner::facts(engine, &self.state, opts.lock_timeout).await?;
        let mut policy = self.policy_plan(identity.clone(), &facts)?.plan;
        if opts.join_networks || self.config.as_ref().is_some_and(|c| c.join_networks) {
            crate::tiers::join(engine, self.name(), &mut policy).await?;
        }
        let (project, env) = (identity.project.as_str(), identity.env_id.as_str());
        tracing::info!(project, env, services = policy.services.len(), "planned");

        // Admit: the plan's memory and the environment cap, waiting for room unless told not to.
        let max_envs = if opts.max_envs > 0 { opts.max_envs } else { self.config.as_ref().and_then(|c| c.max_envs).unwrap_or(0) };
        let admission = crate::admission::Policy { max_envs, no_wait: opts.no_wait_capacity, timeout: opts.lock_timeout, evict_idle: opts.pool.is_none() };
        let _ticket = crate::admission::admit(engine, &self.state, &policy, &admission, &|m| progress(Progress::Queued { why: m.to_string() })).await?;
        tracing::info!(project, env, "admitted");
        if let Some(exe) = &opts.watcher {
            let owner = opts.owner.clone().unwrap_or_else(crate::owner::Owner::current);
            spawn_watcher(exe, &owner, &self.state, &engine.watcher_args())?;
        }

        // Allocate (under the lock, against fresh facts) and bring up.
        let result = self.allocate_and_start(engine, &policy, opts, progress).await;
        // The engine knows the environment now (or it is gone): the reservation has done its job.
        self.release_reservation(&identity.env_id).await;
        let (plan, report) = result?;
        tracing::info!(project, env, "up");
        Ok(Environment {
            engine: engine.clone(),
            project: plan.identity.project.clone(),
            env_id: plan.identity.env_id.clone(),
            plan: Some(plan),
            report: Some(report),
            owned: true,
        })
    }

    /// Allocates `policy` and brings the environment up. The engine arbitrates subnets between every user of it: a
    /// carved subnet it refuses was taken after planning (by another user's orch, with another state directory, or
    /// another tool), so the networks are carved again around what it holds now ([`crate::planner::SUBNET_BACKOFF`]).
    async fn allocate_and_start<E: Reconnect + Clone>(
        &self,
        engine: &E,
        policy: &Plan,
        opts: &EnvOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(Plan, UpReport), Error> {
        let up = lifecycle::UpOptions {
            wait: opts.wait,
            timeout: opts.timeout,
            keep_on_failure: opts.keep_on_failure,
            no_cache: opts.no_cache,
            lifetime: opts.lifetime,
            owner: opts.owner.clone(),
            pool: opts.pool.clone(),
        };
        let planner = self.planner();
        let backoff = crate::planner::SUBNET_BACKOFF;
        let mut refused: Vec<Ipv4Net> = vec![];
        for attempt in 0.. {
            let plan = planner.allocate(engine, &self.state, policy, opts.lock_timeout, &refused).await?;
            if attempt == 0 {
                report_planned(&plan, progress);
            }
            let e = match lifecycle::up(engine, &plan, &up, progress).await {
                Ok(report) => return Ok((plan, report)),
                Err(e) => Error::from(e),
            };
            let Some((what, subnet, message)) = crate::planner::refused_subnet(&e) else { return Err(e) };
            let carved =
                plan.networks.values().any(|n| n.subnet.as_deref() == Some(subnet) && !matches!(n.subnet_request, Some(crate::plan::SubnetRequest::Fixed(_))));
            if !carved {
                return Err(e);
            }
            if !backoff.again(attempt) {
                return Err(planner.subnets_kept_taken(what, subnet));
            }
            tracing::debug!(project = %plan.identity.project, env = %plan.identity.env_id, what, subnet, try_ = attempt + 1, "the engine refused a carved subnet: {message}");
            progress(Progress::Warning { message: format!("{what}: the engine refused subnet {subnet} ({message}); carving again") });
            refused.extend(subnet.parse::<Ipv4Net>().ok());
            tokio::time::sleep(backoff.delay(attempt)).await;
        }
        unreachable!("the loop returns")
    }

    /// Drops an environment's in-flight reservation (best effort: a stale one goes with its dead owner anyway). `up`
    /// does this itself; a front end that abandons an `up` (Ctrl-C) calls it.
    pub async fn release_reservation(&self, env: &str) {
        let (state, project, env) = (self.state.clone(), self.name().to_string(), env.to_string());
        let _ = blocking(move || {
            if let Ok(mut guard) = state.allocations(Duration::from_secs(30)) {
                guard.release(&project, &env);
                let _ = guard.save();
            }
        })
        .await;
    }
}

/// The plan's warnings and its size, as `up` reports them once planned.
fn report_planned(plan: &Plan, progress: &(dyn Fn(Progress) + Sync)) {
    for d in plan.diagnostics.iter().filter(|d| d.level >= crate::plan::Level::Warning) {
        progress(Progress::Warning {
            message: format!("{}{} [{}, from {}]", d.path.as_deref().map(|p| format!("{p}: ")).unwrap_or_default(), d.message, d.code, d.source),
        });
    }
    progress(Progress::Planned {
        project: plan.identity.project.clone(),
        env: plan.identity.env_id.clone(),
        services: plan.services.len(),
        networks: plan.networks.len(),
    });
}

/// The project name the options describe (from the compose files alone: no plugins are loaded).
pub fn project_name(opts: &ProjectOptions) -> Result<String, Error> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|e| Error::Io { what: "reading the current directory".into(), source: e })?,
    };
    let config = ProjectConfig::find(opts.config.as_deref(), &dir)?;
    Ok(orch_compose::load(&compose_options(opts, config.as_ref(), &dir)?)?.project.name)
}

/// The label filter for status listings: one environment, or every environment (of one project).
pub fn status_filter(select: &Selector) -> Vec<String> {
    match &select.env {
        Some(env) => labels::env_filter(select.project.as_deref(), env),
        None => {
            let mut f = labels::any_env();
            f.extend(select.project.as_deref().map(labels::project_filter));
            f
        }
    }
}

/// The services `orch ps` and `orch health` list: of one environment when `select` names one (then
/// [`Error::NotFound`] when it does not exist, so a removed environment is never reported as an empty, healthy one),
/// else of every environment (of one project). `probe` runs starting containers' healthchecks.
pub async fn services<E: Engine>(engine: &E, select: &Selector, probe: bool) -> Result<Vec<ServiceStatus>, Error> {
    let list = lifecycle::status_probed(engine, &status_filter(select), probe).await?;
    if let (true, Some(env)) = (list.is_empty(), &select.env) {
        let project = select.project.as_deref().map(|p| format!(" of project {p}")).unwrap_or_default();
        return Err(Error::NotFound(format!("no environment {env}{project} is running; `orch ps` lists what runs")));
    }
    Ok(list)
}

/// Every environment this user's orch made on this host (for `orch down --all-mine`): the owner ran here and the
/// `orch.owner-uid` label is this user's. Another user's environments on a shared engine are never among them.
pub async fn environments_of_this_user<E: Engine>(engine: &E) -> Result<Vec<Selector>, Error> {
    let host = crate::owner::Owner::current().host;
    let envs = crate::reaper::environments(engine).await?;
    Ok(envs
        .into_iter()
        .filter(|e| e.uid == Some(labels::my_uid()) && e.owner.as_ref().is_some_and(|o| o.host == host))
        .map(|e| Selector { env: Some(e.env), project: Some(e.project) })
        .collect())
}

/// The project of environment `env` when no project was named: the folder's project (`orch.toml` or compose file)
/// if there is one, else the one project on the engine that has an environment of that name. Several are a usage
/// error: environment names are per project, and `--env dev` alone must not reach every project's `dev`.
pub async fn project_of_env<E: Engine>(engine: &E, env: &str, folder_project: Option<String>) -> Result<Option<String>, Error> {
    if folder_project.is_some() {
        return Ok(folder_project);
    }
    let projects: std::collections::BTreeSet<String> =
        crate::reaper::environments(engine).await?.into_iter().filter(|e| e.env == env).map(|e| e.project).collect();
    match projects.len() {
        0 | 1 => Ok(projects.into_iter().next()),
        _ => Err(Error::Usage(format!(
            "environment {env} exists in several projects ({}); choose one with -p",
            projects.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Starts `orch __watch` for the owner: detached (own process group, so a terminal's Ctrl-C does not reach it), it
/// removes the owner's environments when the owner dies before they are complete (or at all, for a process lifetime).
/// When the owner has a watcher already (an earlier environment), the new one exits at once.
pub(crate) fn spawn_watcher(exe: &Path, owner: &crate::owner::Owner, state: &StateDir, engine_args: &[String]) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe)
        .arg("--state-dir")
        .arg(&state.root)
        .args(engine_args)
        .args(["__watch", "--owner", &owner.label()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Io { what: format!("starting the watcher {}", exe.display()), source: e })?;
    Ok(())
}

impl crate::tiers::TierProject for Project {
    fn planner(&self) -> Planner<'_> {
        Project::planner(self)
    }
    fn state(&self) -> &StateDir {
        Project::state(self)
    }
    fn policy_plan_for(&self, env: &str, facts: &Facts) -> Result<PlanOutcome, Error> {
        Project::policy_plan_for(self, env, facts)
    }
    fn release_reservation(&self, env: &str) -> impl std::future::Future<Output = ()> + Send {
        Project::release_reservation(self, env)
    }
}

/// The environment variable with which the runner widens the directory a repository's files may name.
pub const PROJECT_ROOT_ENV: &str = "ORCH_PROJECT_ROOT";

/// The compose load options: flags, else orch.toml, else the default file names in `dir`.
fn compose_options(opts: &ProjectOptions, config: Option<&ProjectConfig>, dir: &Path) -> Result<orch_compose::LoadOptions, Error> {
    let none = ProjectConfig::default();
    let c = config.unwrap_or(&none);
    let from_config = |paths: &[PathBuf]| paths.iter().map(|p| c.resolve(p)).collect::<Vec<_>>();
    let in_dir = |paths: &[PathBuf]| paths.iter().map(|p| dir.join(p)).collect::<Vec<_>>();
    let files = if !opts.files.is_empty() {
        in_dir(&opts.files)
    } else if !c.files.is_empty() {
        from_config(&c.files)
    } else {
        let found = DEFAULT_FILES.iter().map(|f| dir.join(f)).find(|p| p.is_file());
        vec![found.ok_or_else(|| {
            Error::Usage(format!(
                "no compose file given and none of {} in {}; pass -f FILE or list `files` in orch.toml",
                DEFAULT_FILES.join(", "),
                dir.display()
            ))
        })?]
    };
    let environment: BTreeMap<String, String> = opts.environment.clone().unwrap_or_else(|| std::env::vars().collect());
    // The runner may widen the project root; the repository (orch.toml, compose files) may not.
    let root = environment.get(PROJECT_ROOT_ENV).filter(|r| !r.is_empty()).map(PathBuf::from);
    let env_files = if opts.env_files.is_empty() { from_config(&c.env_files) } else { in_dir(&opts.env_files) };
    if let Some(cfg) = config {
        let top = root.clone().unwrap_or_else(|| orch_compose::input::repository_root(&cfg.dir));
        // Only what orch.toml named: flags are the runner's.
        let mut named: Vec<&PathBuf> = vec![];
        if opts.files.is_empty() {
            named.extend(&files);
        }
        if opts.env_files.is_empty() {
            named.extend(&env_files);
        }
        if let Some(outside) =
            named.into_iter().find(|f| !orch_compose::input::within(&top, &orch_compose::normalize_path(&std::path::absolute(f).unwrap_or_default())))
        {
            return Err(Error::InvalidInput {
                what: format!("{}", cfg.dir.join(crate::config::FILE_NAME).display()),
                message: format!(
                    "it names {}, which is outside the project {}; orch reads only files inside the repository under test ({PROJECT_ROOT_ENV}=DIR widens that)",
                    outside.display(),
                    top.display()
                ),
            });
        }
    }
    Ok(orch_compose::LoadOptions {
        files,
        env_files,
        profiles: if opts.profiles.is_empty() { c.profiles.clone() } else { opts.profiles.clone() },
        environment,
        project_name: opts.project_name.clone().or(c.project.clone()),
        root,
    })
}

/// Loads the plugins named in the options or orch.toml, verified against (and pinned in) the project's orch.lock; no
/// wasm engine is created when there are none.
fn activate(opts: &ProjectOptions, config: Option<&ProjectConfig>, notes: &mut Vec<String>) -> Result<Vec<ActivePlugin>, Error> {
    let none = ProjectConfig::default();
    let c = config.unwrap_or(&none);
    let refs = if opts.plugins.is_empty() { c.plugin_refs() } else { opts.plugins.clone() };
    if refs.is_empty() {
        return Ok(vec![]);
    }
    let settings = plugins::parse_settings(c.plugin_settings(), &opts.plugin_settings)?;
    let refs: Vec<PluginRef> = refs.iter().map(|p| PluginRef::parse(p)).collect();
    let runtime = runtime(&opts.cache_dir)?;
    let mut sources = project_sources(&runtime, config, opts.locked)?;
    let active = plugins::activate_from(&runtime, &refs, &settings, &mut sources).map_err(|e| match e {
        // Settings a plugin refuses that orch.toml gave it: say where they are written.
        PluginError::Settings { plugin, problems, from: None } => {
            let entry = config.and_then(|cfg| {
                cfg.plugins.iter().enumerate().find(|(_, p)| {
                    p.settings.is_some() && {
                        let name = PluginRef::parse(&p.use_).display_name();
                        name == plugin || p.use_ == plugin
                    }
                })
            });
            let from = entry.map(|(i, p)| {
                format!(
                    "{}, plugins[{i}] (use = {:?}) settings",
                    config.map(|c| c.dir.join(crate::config::FILE_NAME).display().to_string()).unwrap_or_default(),
                    p.use_
                )
            });
            PluginError::Settings { plugin, problems, from }
        }
        e => e,
    })?;
    notes.extend(active.iter().filter_map(|a| a.plugin.stats.cache_note.clone()));
    if let Some(path) = sources.save_lock()? {
        notes.push(format!("pinned plugin digests in {}", path.display()));
    }
    Ok(active)
}

/// Plugin sources for a command: with a project (orch.toml), its orch.lock next to it.
pub fn project_sources(runtime: &Runtime, config: Option<&ProjectConfig>, locked: bool) -> Result<plugins::source::Sources, Error> {
    let lock = match config {
        Some(c) => {
            let mut lock = plugins::lock::Lock::load(&c.dir)?;
            lock.frozen = locked;
            Some(lock)
        }
        None => None,
    };
    Ok(plugins::source::Sources::new(runtime, lock))
}

/// A running environment. One made by [`Project::up`] and dropped without [`Environment::down`] or
/// [`Environment::keep`] removes itself; one found with [`Environment::attach`] is left as it is.
pub struct Environment<E: Reconnect> {
    engine: E,
    project: String,
    env_id: String,
    plan: Option<Plan>,
    report: Option<UpReport>,
    /// Removed on drop.
    owned: bool,
}

/// A running environment as front ends print it (`orch up --format json`: the `orch.env/v1` format in README).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Always `orch.env/v1`.
    pub format: &'static str,
    /// The project's name.
    pub project: String,
    /// The environment's id.
    pub env: String,
    /// The address host ports are reached on.
    pub host: String,
    /// How long `up` took, when the handle made the environment.
    pub elapsed_s: Option<f64>,
    /// Each service's state, health and published ports.
    pub services: Vec<ServiceStatus>,
    /// The connection variables (`orch env`).
    pub connection: BTreeMap<String, String>,
}

/// Which environment [`Environment::attach`] finds.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// Without it, the only environment there is (of `project`, when given).
    pub env: Option<String>,
    /// Only environments of this project.
    pub project: Option<String>,
}

impl<E: Reconnect + Clone> Environment<E> {
    /// A handle on a pool member this process has just claimed: it owns it as if it had made it.
    pub(crate) fn claimed(engine: &E, project: &str, env_id: &str) -> Environment<E> {
        Environment { engine: engine.clone(), project: project.into(), env_id: env_id.into(), plan: None, report: None, owned: true }
    }

    /// An environment that is running already (made by another process or `orch up`); dropping the handle leaves it.
    pub async fn attach(engine: &E, select: &Selector) -> Result<Environment<E>, Error> {
        let all = lifecycle::status(engine, &status_filter(select)).await?;
        let envs: std::collections::BTreeSet<(String, String)> = all.iter().map(|s| (s.project.clone(), s.env.clone())).collect();
        let (project, env_id) = match (envs.len(), &select.env) {
            (1, _) => envs.into_iter().next().expect("one"),
            (0, Some(env)) => return Err(Error::NotFound(format!("no environment {env} is running; `orch ps` lists what runs"))),
            (0, None) => return Err(Error::NotFound("no orch environment is running; start one with `orch up`".into())),
            _ => {
                return Err(Error::Usage(format!(
                    "several environments are running ({}); choose one with --env (and --project-name)",
                    envs.iter().map(|(p, e)| format!("{e} ({p})")).collect::<Vec<_>>().join(", ")
                )));
            }
        };
        Ok(Environment { engine: engine.clone(), project, env_id, plan: None, report: None, owned: false })
    }
}

impl<E: Reconnect> Environment<E> {
    /// The environment's id (`--env`).
    pub fn id(&self) -> &str {
        &self.env_id
    }

    /// The project the environment belongs to.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The plan it was made from (subnets, host ports, images…), when this handle made it.
    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// Each service's container id, when this handle made the environment.
    pub fn containers(&self) -> BTreeMap<String, String> {
        self.report.as_ref().map(|r| r.containers.clone()).unwrap_or_default()
    }

    /// How long `up` took, when this handle made it.
    pub fn elapsed(&self) -> Option<Duration> {
        self.report.as_ref().map(|r| r.elapsed)
    }

    /// Services (with their health now), ports and connection variables.
    pub async fn summary(&self) -> Result<Summary, Error> {
        let services = self.health().await?;
        Ok(Summary {
            format: "orch.env/v1",
            project: self.project.clone(),
            env: self.env_id.clone(),
            host: "127.0.0.1".into(),
            elapsed_s: self.elapsed().map(|d| d.as_secs_f64()),
            connection: lifecycle::connection_env(&services),
            services,
        })
    }

    fn filter(&self) -> Vec<String> {
        labels::env_filter(Some(self.project()), self.id())
    }

    /// Every service's state and published ports, as the engine reports them now.
    pub async fn status(&self) -> Result<Vec<ServiceStatus>, Error> {
        Ok(lifecycle::status(&self.engine, &self.filter()).await?)
    }

    /// Like [`Environment::status`], also running starting containers' healthchecks to report what holds now.
    pub async fn health(&self) -> Result<Vec<ServiceStatus>, Error> {
        Ok(lifecycle::status_probed(&self.engine, &self.filter(), true).await?)
    }

    /// Where `service`'s `container_port` is published on this host (IPv4 loopback for all-interfaces bindings).
    pub async fn port(&self, service: &str, container_port: u16) -> Result<SocketAddr, Error> {
        let list = self.status().await?;
        let s = self.service(&list, service)?;
        let (_, ip, port) = s
            .ports
            .iter()
            .find(|(p, ip, _)| p.split('/').next() == Some(&container_port.to_string()) && ip != "::")
            .ok_or_else(|| Error::NotFound(format!("service {service} of environment {} does not publish port {container_port}", self.id())))?;
        let ip = lifecycle::reachable_host(ip);
        format!("{ip}:{port}").parse().map_err(|e| Error::Internal(format!("the engine reported an unreadable address {ip}:{port}: {e}")))
    }

    /// `SERVICE_HOST`/`SERVICE_PORT`-style variables for a test process (see README, "Connection variables").
    pub async fn connection_env(&self) -> Result<BTreeMap<String, String>, Error> {
        Ok(lifecycle::connection_env(&self.status().await?))
    }

    fn service<'a>(&self, list: &'a [ServiceStatus], service: &str) -> Result<&'a ServiceStatus, Error> {
        list.iter().find(|s| s.service == service).ok_or_else(|| Error::NotFound(format!("no service {service} in environment {}", self.id())))
    }

    async fn container(&self, service: &str) -> Result<String, Error> {
        let list = self.status().await?;
        Ok(self.service(&list, service)?.container.clone())
    }

    /// The service's output so far (the last `tail` lines), stdout and stderr interleaved.
    pub async fn logs(&self, service: &str, tail: Option<usize>) -> Result<Vec<String>, Error> {
        let id = self.container(service).await?;
        Ok(self.engine.logs(&id, tail).await?.into_iter().map(|(_, l)| l).collect())
    }

    /// Streams the service's output to `sink` (is_stderr, line) until it stops, or forever with `follow`.
    pub async fn stream_logs(&self, service: &str, follow: bool, tail: Option<usize>, sink: &(dyn Fn(bool, &str) + Sync)) -> Result<(), Error> {
        let id = self.container(service).await?;
        Ok(self.engine.stream_logs(&id, follow, tail, sink).await?)
    }

    /// Runs a command in the service's container: its exit code and output.
    pub async fn exec(&self, service: &str, cmd: &[&str]) -> Result<(i64, String), Error> {
        let id = self.container(service).await?;
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        Ok(self.engine.exec(&id, &cmd).await?)
    }

    /// Runs a command in the service's container attached to this process (stdin in, output out, a TTY when `tty`).
    pub async fn exec_attached(&self, service: &str, cmd: &[String], tty: bool) -> Result<i64, Error> {
        let id = self.container(service).await?;
        Ok(self.engine.exec_attached(&id, cmd, tty).await?)
    }

    /// Restarts one service and waits for it as `up` did.
    pub async fn restart(&self, service: &str, timeout: Duration) -> Result<Duration, Error> {
        // An unknown service is NotFound (exit 9), as for logs, port and exec, not an engine failure.
        self.container(service).await?;
        Ok(lifecycle::restart(&self.engine, &self.filter(), service, timeout).await?)
    }

    /// Removes the environment (containers, networks, volumes).
    pub async fn down(mut self) -> Result<Removed, Error> {
        self.owned = false;
        Ok(lifecycle::down(&self.engine, &self.filter(), true).await?)
    }

    /// Removes containers and networks, leaving the environment's volumes (and their data) in place.
    pub async fn down_keeping_volumes(mut self) -> Result<Removed, Error> {
        self.owned = false;
        Ok(lifecycle::down(&self.engine, &self.filter(), false).await?)
    }

    /// Lets go of the handle without touching the environment: it lives as long as the lifetime `up` gave it.
    pub fn detach(mut self) {
        self.owned = false;
    }

    /// Leaves the environment running after this handle (and process) ends, until `orch down` or `expires`.
    pub async fn keep(mut self, expires: Option<u64>) -> Result<(), Error> {
        lifecycle::marker::keep(&self.engine, &self.project, &self.env_id, expires).await?;
        self.owned = false;
        Ok(())
    }
}

impl<E: Reconnect> Drop for Environment<E> {
    /// Removes the environment from a thread of its own, with a fresh connection: the runtime that made the handle may
    /// be the one this drop blocks (a current-thread `#[tokio::test]`) or may be shutting down.
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let filter = self.filter();
        let (project, env) = (self.project().to_string(), self.id().to_string());
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                let result = rt.block_on(async {
                    let engine = self.engine.reconnect().await?;
                    lifecycle::down(&engine, &filter, true).await
                });
                if let Err(e) = result {
                    // The reaper removes it later (its owner is this process); say so rather than fail silently.
                    tracing::warn!(env, project, error = %e, "could not remove environment {env} of {project} on drop: {e}; `orch gc` will");
                }
            });
        });
    }
}
