//! Command-line parsing and dispatch. Everything of substance is a library call; this module only gathers inputs,
//! renders outputs and chooses exit codes.

mod plugin;
mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use orch::error::exit;
use orch::facts::Facts;
use orch::lifecycle;
use orch::plan::EnvKind;
use orch::plugins::{self, PluginRef, Runtime};
use orch::{Error, PlanRequest};

#[derive(Parser)]
#[command(name = "orch", version, about = "Isolated, parallel Docker environments whose policy lives in sandboxed WebAssembly plugins")]
struct Cli {
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/orch or ~/.cache/orch]
    #[arg(long, global = true, env = "ORCH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Locks and in-flight allocations shared by every orch process [default: $XDG_STATE_HOME/orch or ~/.local/state/orch]
    #[arg(long, global = true, env = "ORCH_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the fully resolved plan (networks, containers, ports, healthchecks) without starting anything
    Plan {
        #[command(flatten)]
        input: PlanInput,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Show which plugin (or compose, or orch) set each field
        #[arg(long)]
        explain: bool,
    },
    /// Create and start an isolated environment from the plan
    Up {
        #[command(flatten)]
        input: PlanInput,
        #[command(flatten)]
        flags: UpFlags,
        /// Lease: `orch gc` removes the environment after this long (e.g. 2h) [default: until `orch down`]
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Bring an environment up, run a command with its connection variables, always tear it down; exits with the
    /// command's status
    Run {
        #[command(flatten)]
        input: PlanInput,
        #[command(flatten)]
        flags: UpFlags,
        /// Keep the environment afterwards (for debugging) and print how to remove it
        #[arg(long)]
        keep: bool,
        /// The command and its arguments
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Remove orphaned orch environments: owner died before they were complete, or their lease expired
    Gc {
        /// List what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
        /// Only environments created at least this long ago (e.g. 1h)
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<std::time::Duration>,
        /// Also complete environments nobody is using (never ones whose owner process is alive)
        #[arg(long)]
        all: bool,
        /// Only environments of this project
        #[arg(short = 'p', long = "project-name")]
        project: Option<String>,
    },
    /// Check the engine, address-pool and port headroom, memory, leaks, locks and state, with fix hints
    Doctor {
        /// Subnet pools to check [default: 10.192.0.0/12]
        #[arg(long = "pool")]
        pools: Vec<ipnet::Ipv4Net>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// (internal) Removes an environment when the process creating it dies
    #[command(name = "__watch", hide = true)]
    Watch {
        #[arg(long)]
        owner: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        env: String,
    },
    /// Remove an environment's containers and networks (and volumes with --volumes)
    Down {
        #[command(flatten)]
        select: Select,
        /// Every orch environment created from this host
        #[arg(long, conflicts_with = "env")]
        all_mine: bool,
        #[arg(long)]
        volumes: bool,
    },
    /// Environments and services with their state, ports and age
    Ps {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Health report of an environment's services
    Health {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The host address of a service's container port
    Port {
        #[command(flatten)]
        select: Select,
        service: String,
        port: u16,
    },
    /// Connection variables for a test process (e.g. POSTGRES_PORT=49153)
    Env {
        #[command(flatten)]
        select: Select,
        #[arg(long, value_enum, default_value_t = EnvFormat::Dotenv)]
        format: EnvFormat,
    },
    /// A service's output
    Logs {
        #[command(flatten)]
        select: Select,
        service: String,
        /// Only the last N lines
        #[arg(long)]
        tail: Option<usize>,
        /// Keep printing new output
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Restart a service and wait until it is ready again
    Restart {
        #[command(flatten)]
        select: Select,
        service: String,
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        timeout: std::time::Duration,
    },
    /// Run a command in a service's container; exits with the command's status
    Exec {
        #[command(flatten)]
        select: Select,
        service: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Built-in and external policy plugins
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// List the built-in plugins
    List,
    /// Print a plugin's description (name, version, policies, settings schema)
    Inspect {
        /// A built-in name, a .wasm file, a plugin crate directory or an oci:// reference
        plugin: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create a plugin crate from orch's template (builds for wasm32-wasip2, ships with a golden test)
    New {
        /// The plugin's name (letters, digits and -)
        name: String,
        /// Where to create it [default: ./NAME]
        #[arg(long)]
        path: Option<PathBuf>,
        /// The orch-plugin-api crate to depend on [default: the one this orch was built from]
        #[arg(long, env = "ORCH_PLUGIN_SDK")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 and print the component's path
    Build {
        /// The plugin crate [default: the current directory]
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Golden-test a plugin without Docker: plan a compose file with it and compare with an expected plan
    Test {
        /// A plugin crate directory, a .wasm file, a built-in name or an oci:// reference
        plugin: String,
        #[arg(long)]
        compose: PathBuf,
        /// The plugin's settings (a JSON object)
        #[arg(long)]
        settings: Option<PathBuf>,
        #[arg(long = "env-kind", default_value = "test")]
        env_kind: EnvKind,
        /// The expected plan (JSON, as `orch plan --format json --explain` prints it)
        #[arg(long)]
        expect: PathBuf,
        /// Write the plan to --expect instead of comparing
        #[arg(long)]
        update: bool,
    },
    /// Push a plugin to an OCI registry (CNCF wasm artifact layout)
    Push {
        /// A plugin crate directory, a .wasm file or a built-in name
        plugin: String,
        /// oci://registry/repository:tag (plain HTTP for loopback registries; credentials from the Docker config)
        reference: String,
    },
    /// Pull a plugin from an OCI registry into the cache (verified by digest) and print its digest
    Pull {
        reference: String,
        /// Also write the component to this file
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Re-resolve the project's plugins and rewrite their digests in orch.lock
    Update {
        /// Only these sources or plugin names [default: all]
        sources: Vec<String>,
        /// Project config [default: orch.toml in the current directory]
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EnvFormat {
    Dotenv,
    Json,
}

/// Options of `up` and `run`.
#[derive(Args)]
struct UpFlags {
    /// Wait until every service is ready (the default)
    #[arg(long, conflicts_with = "no_wait")]
    wait: bool,
    /// Return once containers are started, without waiting for readiness
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for every service to be ready (e.g. 90s, 2m)
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: std::time::Duration,
    /// Leave what was created in place when `up` fails (for debugging)
    #[arg(long)]
    keep_on_failure: bool,
    /// Rebuild images of services with `build:` without the layer cache
    #[arg(long)]
    no_cache: bool,
    /// How long to wait for a named environment another orch process is using, or for capacity (e.g. 5m)
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    lock_timeout: std::time::Duration,
    /// At most this many orch environments at once on this engine; more queue [default: orch.toml's max-envs, else no cap]
    #[arg(long, env = "ORCH_MAX_ENVS")]
    max_envs: Option<usize>,
    /// Fail instead of queueing when there is no capacity
    #[arg(long)]
    no_wait_capacity: bool,
}

/// Which environment a command acts on.
#[derive(Args)]
struct Select {
    /// Environment id (as printed by `orch up`); optional when exactly one environment exists
    #[arg(long = "env")]
    env: Option<String>,
    /// Only environments of this project
    #[arg(short = 'p', long = "project-name")]
    project: Option<String>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    orch_compose::parse_duration_ms(s).map(std::time::Duration::from_millis).ok_or_else(|| format!("invalid duration {s:?}; use e.g. 90s or 2m"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Compose,
}

/// Inputs shared by every command that makes a plan.
#[derive(Args, Default)]
struct PlanInput {
    /// Compose file(s), later ones overriding earlier ones [default: compose.yaml, docker-compose.yml, … in the current directory]
    #[arg(short = 'f', long = "file")]
    files: Vec<PathBuf>,
    /// Env file(s) for interpolation [default: .env next to the first compose file]
    #[arg(long = "env-file")]
    env_files: Vec<PathBuf>,
    /// Activate a compose profile (repeatable; COMPOSE_PROFILES works too)
    #[arg(long = "profile")]
    profiles: Vec<String>,
    /// Project name [default: the compose file's `name:`, else its directory]
    #[arg(short = 'p', long = "project-name")]
    project_name: Option<String>,
    /// Environment name; a fresh id is generated per run when absent
    #[arg(long = "env")]
    env: Option<String>,
    /// What the environment is for [default: orch.toml's env-kind, else test]
    #[arg(long = "env-kind")]
    env_kind: Option<EnvKind>,
    /// Policy plugin: a built-in name or a path to a .wasm component (repeatable, applied in order)
    #[arg(long = "plugin")]
    plugins: Vec<String>,
    /// Plugin setting NAME.KEY=VALUE (VALUE is JSON if it parses, else a string; repeatable)
    #[arg(long = "plugin-setting")]
    plugin_settings: Vec<String>,
    /// Subnet pool to carve networks from (repeatable) [default: 10.192.0.0/12]
    #[arg(long = "pool")]
    pools: Vec<ipnet::Ipv4Net>,
    /// Plan without asking the Docker engine which subnets and ports are taken
    #[arg(long)]
    no_engine: bool,
    /// Project config [default: orch.toml in the current directory, if there is one]
    #[arg(long = "config")]
    config: Option<PathBuf>,
    /// Refuse to add or change orch.lock entries (for CI)
    #[arg(long, env = "ORCH_LOCKED")]
    locked: bool,
    /// orch.toml, read once per command.
    #[arg(skip)]
    loaded: std::sync::OnceLock<Option<orch::config::ProjectConfig>>,
}

const DEFAULT_FILES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

impl PlanInput {
    /// orch.toml (from --config or the current directory), if any.
    fn project_config(&self) -> Result<Option<&orch::config::ProjectConfig>, Error> {
        if let Some(loaded) = self.loaded.get() {
            return Ok(loaded.as_ref());
        }
        let cwd = std::env::current_dir().map_err(|e| Error::Usage(format!("cannot read the current directory: {e}")))?;
        let found = orch::config::ProjectConfig::find(self.config.as_deref(), &cwd)?;
        Ok(self.loaded.get_or_init(|| found).as_ref())
    }

    /// Flags win over orch.toml, which wins over the defaults.
    fn request(&self) -> Result<PlanRequest, Error> {
        let none = orch::config::ProjectConfig::default();
        let config = self.project_config()?.unwrap_or(&none);
        let from_config = |paths: &[PathBuf]| paths.iter().map(|p| config.resolve(p)).collect::<Vec<_>>();
        let files = if !self.files.is_empty() {
            self.files.clone()
        } else if !config.files.is_empty() {
            from_config(&config.files)
        } else {
            let found = DEFAULT_FILES.iter().map(PathBuf::from).find(|p| p.is_file());
            vec![found.ok_or_else(|| {
                Error::Usage(format!(
                    "no compose file given and none of {} in the current directory; pass -f FILE or list `files` in orch.toml",
                    DEFAULT_FILES.join(", ")
                ))
            })?]
        };
        let env_kind = match (self.env_kind, &config.env_kind) {
            (Some(k), _) => k,
            (None, Some(k)) => k.parse().expect("checked when orch.toml was loaded"),
            (None, None) => EnvKind::Test,
        };
        let pools = if self.pools.is_empty() {
            config.pools.iter().map(|p| p.parse().expect("checked when orch.toml was loaded")).collect()
        } else {
            self.pools.clone()
        };
        Ok(PlanRequest {
            compose: orch_compose::LoadOptions {
                files,
                env_files: if self.env_files.is_empty() { from_config(&config.env_files) } else { self.env_files.clone() },
                profiles: if self.profiles.is_empty() { config.profiles.clone() } else { self.profiles.clone() },
                environment: std::env::vars().collect(),
                project_name: self.project_name.clone().or(config.project.clone()),
            },
            env_id: self.env.clone(),
            env_kind,
            pools,
        })
    }

    /// `--plugin` flags replace orch.toml's list; orch.toml's settings still apply to the plugins named in both, and
    /// `--plugin-setting` flags go on top.
    fn plugins(&self) -> Result<(Vec<PluginRef>, BTreeMap<String, serde_json::Value>), Error> {
        let none = orch::config::ProjectConfig::default();
        let config = self.project_config()?.unwrap_or(&none);
        let refs = if self.plugins.is_empty() { config.plugin_refs() } else { self.plugins.clone() };
        let settings = plugins::parse_settings(config.plugin_settings(), &self.plugin_settings)?;
        Ok((refs.iter().map(|p| PluginRef::parse(p)).collect(), settings))
    }
}

fn cache_dir(flag: &Option<PathBuf>) -> Option<PathBuf> {
    let base = flag
        .clone()
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("orch")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("orch")));
    base.map(|b| b.join("plugins"))
}

fn runtime(cli_cache: &Option<PathBuf>) -> Result<Runtime, Error> {
    Ok(Runtime::new(cache_dir(cli_cache))?)
}

/// Loads the plugins named on the command line or in orch.toml, verified against (and pinned in) the project's
/// orch.lock; no wasm engine is created when there are none.
fn active_plugins(cli_cache: &Option<PathBuf>, input: &PlanInput) -> Result<Vec<plugins::ActivePlugin>, Error> {
    let (refs, settings) = input.plugins()?;
    if refs.is_empty() {
        return Ok(vec![]);
    }
    let runtime = runtime(cli_cache)?;
    let mut sources = project_sources(&runtime, input.project_config()?, input.locked)?;
    let active = plugins::activate_from(&runtime, &refs, &settings, &mut sources)?;
    for note in active.iter().filter_map(|a| a.plugin.stats.cache_note.as_ref()) {
        eprintln!("warning: {note}");
    }
    if let Some(path) = sources.save_lock()? {
        eprintln!("pinned plugin digests in {}", path.display());
    }
    Ok(active)
}

/// Plugin sources for a command: with a project (orch.toml), its orch.lock next to it.
fn project_sources(runtime: &Runtime, config: Option<&orch::config::ProjectConfig>, locked: bool) -> Result<plugins::source::Sources, Error> {
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

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// Facts from the engine when it answers; without it the plan can only avoid the host's own routes.
fn facts(no_engine: bool) -> Facts {
    let mut facts = Facts::default();
    facts.add_host_routes();
    if no_engine {
        return facts;
    }
    let got = tokio().block_on(async {
        let engine = orch::engine::DockerEngine::connect().await?;
        orch::engine::gather_facts(&engine).await
    });
    match got {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: {e}\nwarning: planning without the engine's networks and ports (pass --no-engine to silence this)");
            facts
        }
    }
}

pub fn run() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match dispatch(cli) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            if std::env::var_os("ORCH_LOG").is_some()
                && let Some(details) = e.details()
            {
                eprintln!("{details}");
            }
            e.exit_code()
        }
    }
}

fn engine(rt: &tokio::runtime::Runtime) -> Result<orch::engine::DockerEngine, Error> {
    Ok(rt.block_on(orch::engine::DockerEngine::connect())?)
}

/// The label filter for `select`; without --env, the single environment that exists (or an error listing them).
fn resolve_select(rt: &tokio::runtime::Runtime, engine: &orch::engine::DockerEngine, select: &Select) -> Result<Vec<String>, Error> {
    if let Some(env) = &select.env {
        return Ok(lifecycle::env_filter(select.project.as_deref(), env));
    }
    let mut filter = vec![lifecycle::labels::ENV.to_string()];
    if let Some(p) = select.project.clone().or_else(cwd_project) {
        filter.push(format!("{}={p}", lifecycle::labels::PROJECT));
    }
    let all = rt.block_on(lifecycle::status(engine, &filter))?;
    let envs: std::collections::BTreeSet<(String, String)> = all.iter().map(|s| (s.project.clone(), s.env.clone())).collect();
    match envs.len() {
        0 => Err(Error::Usage("no orch environment is running; start one with `orch up`".into())),
        1 => {
            let (p, e) = envs.into_iter().next().expect("one");
            Ok(lifecycle::env_filter(Some(&p), &e))
        }
        _ => Err(Error::Usage(format!(
            "several environments are running ({}); choose one with --env",
            envs.iter().map(|(p, e)| format!("{e} ({p})")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The project the current directory defines (its orch.toml or compose file), so that plain `orch down` or `orch ps`
/// in a project's folder act on that project's environments only.
fn cwd_project() -> Option<String> {
    let request = PlanInput::default().request().ok()?;
    orch_compose::load(&request.compose).ok().map(|l| l.project.name)
}

/// `ps` shows the engine's view; `health` also runs a starting container's healthcheck to report what holds now.
fn show_status(select: &Select, format: Format, probe: bool) -> Result<(), Error> {
    let rt = tokio();
    let engine = engine(&rt)?;
    let mut filter = match &select.env {
        Some(e) => lifecycle::env_filter(select.project.as_deref(), e),
        None => vec![lifecycle::labels::ENV.to_string()],
    };
    if select.env.is_none()
        && let Some(p) = select.project.clone().or_else(cwd_project)
    {
        filter.push(format!("{}={p}", lifecycle::labels::PROJECT));
    }
    let list = rt.block_on(lifecycle::status_probed(&engine, &filter, probe))?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serialises"));
    } else {
        print!("{}", render::status(&list));
    }
    Ok(())
}

/// Where orch keeps its caches and state (from global flags).
struct Dirs {
    cache_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
}

/// Plans under the allocation lock, then creates, starts and waits for an environment (shared by `up` and `run`).
/// A named environment (`--env`) is locked for the duration, so a second `up --env NAME` waits for the first.
fn bring_up(
    cli: &Dirs,
    rt: &tokio::runtime::Runtime,
    engine: &orch::engine::DockerEngine,
    input: &PlanInput,
    flags: &UpFlags,
    lifetime: orch::reaper::Lifetime,
) -> Result<(orch::plan::Plan, lifecycle::UpReport), Error> {
    let state = orch::state::StateDir::resolve(cli.state_dir.clone());
    let mut request = input.request()?;
    let named = request.env_id.clone();
    if request.env_id.is_none() {
        request.env_id = Some(orch::new_env_id());
    }
    let active = active_plugins(&cli.cache_dir, input)?;
    reap_quietly(rt, engine);
    let project = orch_compose::load(&request.compose)?.project.name;
    let _env_lock = match &named {
        Some(env) => Some(state.lock_env(&project, env, &std::env::args().collect::<Vec<_>>().join(" "), flags.lock_timeout)?),
        None => None,
    };
    if let Some(env) = &named {
        let existing = rt.block_on(lifecycle::status(engine, &lifecycle::env_filter(Some(&project), env)))?;
        if !existing.is_empty() {
            return Err(Error::Usage(format!(
                "environment {env} of project {project} already exists; use it, or remove it first with `orch down --env {env}`"
            )));
        }
    }
    // Admission needs the plan's memory demand; plugins may change limits, so a trial plan (no reservation) gives it.
    let trial = orch::make_plan(&request, &active, &orch::facts::Facts::default())?;
    let max_envs = flags.max_envs.or(input.project_config()?.and_then(|c| c.max_envs)).unwrap_or(0);
    let policy = orch::admission::Policy { max_envs, no_wait: flags.no_wait_capacity, timeout: flags.lock_timeout };
    let _ticket = rt.block_on(orch::admission::admit(engine, &state, &trial.plan, &policy, &|m| eprintln!("{m}")))?;
    let outcome = rt.block_on(orch::plan_and_reserve(engine, &state, &request, &active, flags.lock_timeout))?;
    for d in outcome.plan.diagnostics.iter().filter(|d| d.level >= orch::plan::Level::Warning) {
        eprintln!("warning: {}{} [{}, from {}]", d.path.as_deref().map(|p| format!("{p}: ")).unwrap_or_default(), d.message, d.code, d.source);
    }
    let plan = outcome.plan;
    let opts =
        lifecycle::UpOptions { wait: !flags.no_wait, timeout: flags.timeout, keep_on_failure: flags.keep_on_failure, no_cache: flags.no_cache, lifetime };
    let id = plan.identity.clone();
    // Whatever happens to this process from here on (kill -9 included), the watcher removes what it made.
    spawn_watcher(&id.project, &id.env_id)?;
    eprintln!("environment {} of project {}: bringing up {} services on {} networks", id.env_id, id.project, plan.services.len(), plan.networks.len());
    let view = ProgressView::new();
    let report = |p| view.report(p);
    let result = rt.block_on(async {
        tokio::select! {
            r = lifecycle::up(engine, &plan, &opts, &report) => r.map_err(Error::from),
            signal = interrupted() => {
                eprintln!("{signal}: removing environment {} (press Ctrl-C again to leave it in place)", id.env_id);
                let filter = lifecycle::env_filter(Some(&id.project), &id.env_id);
                tokio::select! {
                    r = lifecycle::down(engine, &filter, true) => {
                        if let Ok(r) = r {
                            eprintln!("removed {} containers, {} networks, {} volumes", r.containers, r.networks, r.volumes);
                        }
                    }
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("left in place; remove it with `orch down --env {}`", id.env_id);
                        // The watcher would remove it once this process exits: this is a deliberate keep.
                        let _ = orch::reaper::mark_ready(engine, &id.labels(), &id.project, &id.env_id, orch::reaper::Lifetime::Kept { expires: None }).await;
                    }
                }
                Err(Error::Interrupted)
            }
        }
    });
    // The engine knows the environment now (or it is gone): the reservation has done its job.
    release(cli, &id.project, &id.env_id);
    Ok((plan, result?))
}

/// Drops an environment's in-flight reservation (best effort: a stale one is dropped with its dead owner anyway).
fn release(cli: &Dirs, project: &str, env: &str) {
    let state = orch::state::StateDir::resolve(cli.state_dir.clone());
    if let Ok(mut guard) = state.allocations(std::time::Duration::from_secs(30)) {
        guard.release(project, env);
        let _ = guard.save();
    }
}

/// Ctrl-C or SIGTERM, whichever comes first; says which.
async fn interrupted() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// Starts `orch __watch` for this process: detached (own process group, so a terminal's Ctrl-C does not reach it),
/// it removes the environment if this process dies before the environment is complete.
fn spawn_watcher(project: &str, env: &str) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| Error::Usage(format!("cannot find the orch binary to start the reaper: {e}")))?;
    std::process::Command::new(exe)
        .args(["__watch", "--owner", &lifecycle::Owner::current().label(), "--project", project, "--env", env])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Usage(format!("cannot start the reaper: {e}")))?;
    Ok(())
}

/// Opportunistic reaping at the start of commands: orphans left by killed runs go away without `orch gc`.
fn reap_quietly(rt: &tokio::runtime::Runtime, engine: &orch::engine::DockerEngine) {
    if let Ok(reaped) = rt.block_on(orch::reaper::gc(engine, &orch::reaper::GcOptions::default())) {
        for r in reaped {
            eprintln!("reaped orphaned environment {} ({}): {}", r.env, r.project, r.reason);
        }
    }
}

fn service_container(rt: &tokio::runtime::Runtime, engine: &orch::engine::DockerEngine, select: &Select, service: &str) -> Result<String, Error> {
    let filter = resolve_select(rt, engine, select)?;
    let list = rt.block_on(lifecycle::status(engine, &filter))?;
    list.iter()
        .find(|s| s.service == service)
        .map(|s| s.container.clone())
        .ok_or_else(|| Error::Usage(format!("no service {service} in {}; `orch ps` lists the services", filter.join(","))))
}

/// `up`'s progress: a live per-service table on a terminal, plain lines otherwise (CI, pipes).
struct ProgressView {
    live: bool,
    started: std::time::Instant,
    state: std::sync::Mutex<(Vec<(String, String)>, usize)>,
}

impl ProgressView {
    fn new() -> ProgressView {
        use std::io::IsTerminal;
        let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false);
        ProgressView { live, started: std::time::Instant::now(), state: std::sync::Mutex::new((vec![], 0)) }
    }

    fn report(&self, p: lifecycle::Progress) {
        use lifecycle::Progress::*;
        let service_state = match &p {
            Creating { service } => Some((service.clone(), "created".to_string())),
            Starting { service } => Some((service.clone(), "starting".to_string())),
            Waiting { service, what } => Some((service.clone(), format!("waiting until {what}"))),
            Ready { service, after } => Some((service.clone(), format!("ready ({:.1}s)", after.as_secs_f64()))),
            Failed { service, .. } => Some((service.clone(), "FAILED".to_string())),
            _ => None,
        };
        if !self.live {
            eprintln!("[{:5.1}s] {}", self.started.elapsed().as_secs_f64(), progress_line(p));
            return;
        }
        let mut guard = self.state.lock().expect("progress lock");
        let (rows, drawn) = &mut *guard;
        // Erase the table, print any message above it, redraw it at the bottom.
        let mut out = String::new();
        for _ in 0..*drawn {
            out.push_str("\x1b[1A\x1b[2K");
        }
        match service_state {
            Some((service, st)) => match rows.iter_mut().find(|r| r.0 == service) {
                Some(r) => r.1 = st,
                None => rows.push((service, st)),
            },
            None => out.push_str(&format!("{}\n", progress_line(p))),
        }
        let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        for (service, st) in rows.iter() {
            // Padded by hand: a formatting width above 65,535 (a huge service name) would panic.
            out.push_str(&format!("  {service}{}  {st}\n", " ".repeat(width - service.chars().count())));
        }
        *drawn = rows.len();
        eprint!("{out}");
    }
}

fn progress_line(p: lifecycle::Progress) -> String {
    use lifecycle::Progress::*;
    match p {
        Building { service, image } => format!("{service}: building {image}"),
        NetworkCreated { name, subnet } => {
            format!("network {name} created ({})", subnet.unwrap_or_default())
        }
        Creating { service } => format!("{service}: creating"),
        Starting { service } => format!("{service}: starting"),
        Waiting { service, what } => format!("{service}: waiting until {what}"),
        Ready { service, after } => format!("{service}: ready after {:.1}s", after.as_secs_f64()),
        Failed { service, reason } => format!("{service}: FAILED: {reason}"),
        RollingBack => "rolling back: removing everything this run created".to_string(),
        Removed { containers, networks, volumes } => format!("removed {containers} containers, {networks} networks, {volumes} volumes"),
    }
}

fn dispatch(cli: Cli) -> Result<(), Error> {
    let dirs = Dirs { cache_dir: cli.cache_dir.clone(), state_dir: cli.state_dir.clone() };
    match cli.command {
        Command::Up { input, flags, ttl } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let lifetime = orch::reaper::Lifetime::Kept { expires: ttl.map(|t| orch::reaper::now() + t.as_secs()) };
            let (plan, report) = bring_up(&dirs, &rt, &engine, &input, &flags, lifetime)?;
            let id = &plan.identity;
            eprintln!("environment {} is up in {:.1}s; remove it with `orch down --env {}`", id.env_id, report.elapsed.as_secs_f64(), id.env_id);
            println!("{}", id.env_id);
            Ok(())
        }
        Command::Run { input, flags, keep, command } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let lifetime = if keep { orch::reaper::Lifetime::Kept { expires: None } } else { orch::reaper::Lifetime::Process };
            let (plan, _) = bring_up(&dirs, &rt, &engine, &input, &flags, lifetime)?;
            let id = plan.identity.clone();
            let filter = lifecycle::env_filter(Some(&id.project), &id.env_id);
            let vars = lifecycle::connection_env(&rt.block_on(lifecycle::status(&engine, &filter))?);
            let outcome = rt.block_on(async {
                let mut child = tokio::process::Command::new(&command[0])
                    .args(&command[1..])
                    .envs(&vars)
                    .env("ORCH_ENV", &id.env_id)
                    .env("ORCH_PROJECT", &id.project)
                    .spawn()
                    .map_err(|e| Error::Usage(format!("cannot run {:?}: {e}", command[0])))?;
                tokio::select! {
                    status = child.wait() => Ok(status.map(|s| s.code().unwrap_or(128)).unwrap_or(127)),
                    signal = interrupted() => {
                        // The terminal's Ctrl-C reaches the command too; SIGTERM is forwarded by killing it.
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        eprintln!("{signal}: tearing down environment {}", id.env_id);
                        Err(Error::Interrupted)
                    }
                }
            });
            if keep {
                eprintln!("environment {} kept; remove it with `orch down --env {}`", id.env_id, id.env_id);
            } else {
                let removed = rt.block_on(lifecycle::down(&engine, &filter, true))?;
                release(&dirs, &id.project, &id.env_id);
                eprintln!("environment {} removed: {} containers, {} networks, {} volumes", id.env_id, removed.containers, removed.networks, removed.volumes);
            }
            match outcome? {
                0 => Ok(()),
                code => Err(Error::CommandFailed(code.clamp(1, 255) as u8)),
            }
        }
        Command::Gc { dry_run, older_than, all, project } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let reaped = rt.block_on(orch::reaper::gc(&engine, &orch::reaper::GcOptions { dry_run, older_than, all, project }))?;
            if !dry_run {
                // Reservations of dead owners are dropped when the allocation state is loaded; save it pruned.
                let state = orch::state::StateDir::resolve(dirs.state_dir.clone());
                let guard = state.allocations(std::time::Duration::from_secs(30))?;
                guard.save()?;
            }
            if reaped.is_empty() {
                eprintln!("no orphaned environments");
            }
            for r in reaped {
                match r.removed {
                    None => println!("would remove {} ({}): {}", r.env, r.project, r.reason),
                    Some(rm) => println!(
                        "removed {} ({}): {} — {} containers, {} networks, {} volumes",
                        r.env, r.project, r.reason, rm.containers, rm.networks, rm.volumes
                    ),
                }
            }
            Ok(())
        }
        Command::Doctor { pools, format } => {
            let rt = tokio();
            let pools = if pools.is_empty() { vec![orch::resolve::DEFAULT_POOL.parse().expect("literal")] } else { pools };
            let state = orch::state::StateDir::resolve(dirs.state_dir.clone());
            let checks = rt.block_on(async { orch::doctor::run(orch::engine::DockerEngine::connect().await, &state, &pools).await });
            if format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&checks).expect("serialises"));
            } else {
                for c in &checks {
                    let status = format!("{:?}", c.status).to_lowercase();
                    println!("{status:<5} {:<13} {}", c.name, c.detail);
                    if let Some(h) = &c.hint {
                        println!("      {:<13} fix: {h}", "");
                    }
                }
            }
            if checks.iter().any(|c| c.status == orch::doctor::Status::Fail) {
                return Err(Error::Usage("doctor found problems (see above)".into()));
            }
            Ok(())
        }
        Command::Watch { owner, project, env } => {
            let owner = lifecycle::Owner::parse(&owner).ok_or_else(|| Error::Usage(format!("invalid owner {owner:?}")))?;
            let rt = tokio();
            let engine = engine(&rt)?;
            rt.block_on(orch::reaper::watch(&engine, &owner, &project, &env))?;
            Ok(())
        }
        Command::Down { select, all_mine, volumes } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            reap_quietly(&rt, &engine);
            let filters: Vec<Vec<String>> = if all_mine {
                let host = lifecycle::Owner::current().host;
                let all = rt.block_on(lifecycle::status(&engine, &[lifecycle::labels::ENV.to_string()]))?;
                let envs: std::collections::BTreeSet<(String, String)> = all
                    .iter()
                    .filter(|s| lifecycle::Owner::parse(&s.owner).is_some_and(|o| o.host == host))
                    .map(|s| (s.project.clone(), s.env.clone()))
                    .collect();
                envs.into_iter().map(|(p, e)| lifecycle::env_filter(Some(&p), &e)).collect()
            } else {
                vec![resolve_select(&rt, &engine, &select)?]
            };
            for f in filters {
                let started = std::time::Instant::now();
                let removed = rt.block_on(lifecycle::down(&engine, &f, volumes))?;
                eprintln!(
                    "{}: removed {} containers, {} networks, {} volumes in {:.2}s",
                    f.join(","),
                    removed.containers,
                    removed.networks,
                    removed.volumes,
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Command::Ps { select, format } => show_status(&select, format, false),
        Command::Health { select, format } => show_status(&select, format, true),
        Command::Port { select, service, port } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let filter = resolve_select(&rt, &engine, &select)?;
            let list = rt.block_on(lifecycle::status(&engine, &filter))?;
            let s = list.iter().find(|s| s.service == service).ok_or_else(|| Error::Usage(format!("no service {service} in {}", filter.join(","))))?;
            let (_, ip, hp) = s
                .ports
                .iter()
                .find(|(p, ip, _)| p.split('/').next() == Some(&port.to_string()) && ip != "::")
                .ok_or_else(|| Error::Usage(format!("service {service} does not publish port {port}")))?;
            println!("{}:{hp}", if ip.is_empty() || ip == "0.0.0.0" { "127.0.0.1" } else { ip });
            Ok(())
        }
        Command::Env { select, format } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let filter = resolve_select(&rt, &engine, &select)?;
            let list = rt.block_on(lifecycle::status(&engine, &filter))?;
            let vars = lifecycle::connection_env(&list);
            match format {
                EnvFormat::Json => println!("{}", serde_json::to_string_pretty(&vars).expect("serialises")),
                EnvFormat::Dotenv => vars.iter().for_each(|(k, v)| println!("{k}={v}")),
            }
            Ok(())
        }
        Command::Logs { select, service, tail, follow } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let container = service_container(&rt, &engine, &select, &service)?;
            let sink = |is_err: bool, line: &str| {
                if is_err { eprintln!("{line}") } else { println!("{line}") }
            };
            rt.block_on(orch::engine::Engine::stream_logs(&engine, &container, follow, tail, &sink))?;
            Ok(())
        }
        Command::Restart { select, service, timeout } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let filter = resolve_select(&rt, &engine, &select)?;
            let took = rt.block_on(lifecycle::restart(&engine, &filter, &service, timeout))?;
            eprintln!("{service}: restarted and ready after {:.1}s", took.as_secs_f64());
            Ok(())
        }
        Command::Exec { select, service, command } => {
            let rt = tokio();
            let engine = engine(&rt)?;
            let container = service_container(&rt, &engine, &select, &service)?;
            let (code, output) = rt.block_on(orch::engine::Engine::exec(&engine, &container, &command))?;
            print!("{output}");
            if code != 0 {
                return Err(Error::CommandFailed(code.clamp(1, 255) as u8));
            }
            Ok(())
        }
        Command::Plan { input, format, explain } => {
            let request = input.request()?;
            let active = active_plugins(&cli.cache_dir, &input)?;
            let facts = facts(input.no_engine);
            let mut outcome = orch::make_plan(&request, &active, &facts)?;
            if !explain {
                outcome.plan.provenance = BTreeMap::new();
            }
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&outcome.plan).expect("plan serialises")),
                Format::Compose => print!("{}", serde_yaml_ng::to_string(&orch::export::to_compose(&outcome.plan)).expect("compose serialises")),
                Format::Table => print!("{}", render::plan(&outcome.plan, explain)),
            }
            Ok(())
        }
        Command::Plugin { command: PluginCommand::List } => {
            let runtime = runtime(&cli.cache_dir)?;
            let mut rows = vec![];
            for name in plugins::builtin_names() {
                let p = runtime.load(name, plugins::builtin_bytes(name).expect("listed"))?;
                rows.push(vec![name.to_string(), p.description.version.clone(), render::policies(&p.description.implements), p.description.summary.clone()]);
            }
            print!("{}", render::table(&["NAME", "VERSION", "POLICIES", "SUMMARY"], &rows));
            Ok(())
        }
        Command::Plugin { command: PluginCommand::Inspect { plugin, format } } => {
            let (_, p) = plugin::fetch_and_load(&cli.cache_dir, &PluginRef::parse(&plugin))?;
            print!("{}", render::inspect(&p, format == Format::Json));
            Ok(())
        }
        Command::Plugin { command } => plugin::run(&cli.cache_dir, command),
    }
}
