//! The command line: every command, flag and default, and how flags become the library's options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use orch::plan::EnvKind;
use orch::session::{EnvOptions, ProjectOptions};

#[derive(Parser)]
#[command(name = "orch", version, about = "Isolated, parallel Docker environments whose policy lives in sandboxed WebAssembly plugins")]
pub struct Cli {
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/orch or ~/.cache/orch]
    #[arg(long, global = true, env = "ORCH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Locks and in-flight allocations shared by every orch process [default: $XDG_STATE_HOME/orch or ~/.local/state/orch]
    #[arg(long, global = true, env = "ORCH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where environments run: `local` (the Docker engine) or `swarm` (the Swarm cluster whose manager DOCKER_HOST
    /// reaches) [default: `engine` in orch.toml, else local]
    #[arg(long, global = true, env = "ORCH_ENGINE")]
    pub engine: Option<orch::engine::EngineKind>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, value_parser = parse_duration, conflicts_with = "owner_pid")]
        ttl: Option<std::time::Duration>,
        /// The environment belongs to process PID (e.g. the test runner that asked for it): it is removed when that
        /// process ends, even by `kill -9`, instead of staying until `orch down`
        #[arg(long, value_name = "PID")]
        owner_pid: Option<u32>,
        /// text: the environment id on stdout; json: services, ports and connection variables (orch.env/v1)
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
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
    /// (internal) Removes an owner's environments when the owner process dies (one watcher per owner)
    #[command(name = "__watch", hide = true)]
    Watch {
        #[arg(long)]
        owner: String,
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
        /// text: HOST:PORT; json: {"host": …, "port": …}
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Keep an environment after the process it belongs to ends (`orch run`, a test runner): until `orch down`, or
    /// for --ttl
    Keep {
        #[command(flatten)]
        select: Select,
        /// Lease: `orch gc` removes the environment after this long (e.g. 2h) [default: until `orch down`]
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<std::time::Duration>,
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
        /// text: attached to this terminal, exits with the command's status; json: output captured and printed as
        /// {"exit_code": …, "output": …}, orch exits 0 when the command ran
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
        service: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// A project's long-lived tier networks, which environments (`join-networks`) and other containers join by name
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// Bring the stack up repeatedly (--runs), several at once (--parallel), and measure startup, memory, image sizes,
    /// up and down time, conflicts and leftovers against orch.toml's [bench] targets; exits 8 on a missed target
    Bench {
        #[command(flatten)]
        input: PlanInput,
        /// Environments brought up at once
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        /// Rounds of --parallel environments
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// A target on top of orch.toml's [bench]: startup=30s, memory=2GiB, image-size=200MB, cleanup=5s (repeatable)
        #[arg(long = "target", value_name = "KEY=VALUE")]
        targets: Vec<String>,
        /// How long each environment may take to be ready
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Skip the image-variant comparison (regular images) that runs when the image-variants plugin is active
        #[arg(long)]
        no_variants: bool,
        /// table for people, json to plot (orch.bench/v1), markdown to paste into a pull request
        #[arg(long, value_enum, default_value_t = BenchFormat::Table)]
        format: BenchFormat,
        /// Also write the report to this file (in --format)
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// A warm pool: ready environments of the project, made before anyone asks, for `up --from-pool`
    Pool {
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Built-in and external policy plugins
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
pub enum PoolCommand {
    /// Start the project's pool keeper (a detached process) holding --size ready environments
    Start {
        #[command(flatten)]
        input: PlanInput,
        /// Ready environments to hold [default: orch.toml's [pool] size, else 2]
        #[arg(long)]
        size: Option<usize>,
        /// How long one member may take to come up
        #[arg(long, default_value = "180s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Return only once the pool is full (up to --timeout)
        #[arg(long)]
        wait: bool,
        /// Run the keeper in this process instead of detaching it
        #[arg(long)]
        foreground: bool,
    },
    /// The pool's members (ready, starting, claimed) and its keeper
    Status {
        #[command(flatten)]
        input: PlanInput,
        /// table, or json (orch.pool/v1)
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Stop the keeper; it removes every member not handed out
    Stop {
        #[command(flatten)]
        input: PlanInput,
    },
}

#[derive(Subcommand)]
pub enum PluginCommand {
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
        /// An orch-plugin-api crate to depend on (by relative path), for working on orch itself [default: the SDK
        /// this orch carries, written to NAME/vendor]
        #[arg(long, env = "ORCH_PLUGIN_SDK")]
        sdk: Option<PathBuf>,
    },
    /// Write the plugin SDK this orch carries into a plugin crate's vendor/ folder (again, or for a crate copied
    /// without it), replacing what is there
    Vendor {
        /// The plugin crate [default: the current directory]
        #[arg(default_value = ".")]
        dir: PathBuf,
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
        /// The compose file the plugin plans (e.g. tests/compose.yaml)
        #[arg(long)]
        compose: PathBuf,
        /// The plugin's settings: a JSON object inline (`{"host-ip": "127.0.0.1"}`) or a file holding one
        #[arg(long)]
        settings: Option<String>,
        #[arg(long = "env-kind", default_value = "test")]
        env_kind: EnvKind,
        /// The expected decisions: what the plugin decided (fields by plan path, and its diagnostics), or with
        /// --full-plan the whole plan (as `orch plan --format json --explain` prints it)
        #[arg(long)]
        expect: PathBuf,
        /// Write what the plugin decides (the plan with --full-plan) to --expect instead of comparing
        #[arg(long)]
        update: bool,
        /// Compare the whole plan, fields orch chose included (subnets, waits…), not only the plugin's decisions
        #[arg(long)]
        full_plan: bool,
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

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create the networks the project's plan defines (plugins included) as long-lived tier networks: labelled,
    /// named <project>-<network> (or the compose file's name:), subnets fixed or carved as the plan says; idempotent
    Create {
        #[command(flatten)]
        input: PlanInput,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Each tier network: subnet, gateway, internal, attached containers, and whether it matches the plan
    Status {
        #[command(flatten)]
        input: PlanInput,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Remove the project's tier networks (or only TIER…); refuses while containers are attached, unless --force
    Rm {
        #[command(flatten)]
        input: PlanInput,
        /// Tiers by their name in the plan (main) or on the engine (bpo-main) [default: all of the project's]
        tiers: Vec<String>,
        /// Disconnect attached containers first
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Attach a container (any: a notebook, a one-off job) to a tier network
    Connect {
        #[command(flatten)]
        input: PlanInput,
        tier: String,
        container: String,
        /// Another name the container is reachable by on the tier (repeatable)
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
    /// Detach a container from a tier network
    Disconnect {
        #[command(flatten)]
        input: PlanInput,
        tier: String,
        container: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        format: Output,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    Table,
    Json,
    Markdown,
}

/// Human text, or JSON for programs (the Python package reads only this).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    Dotenv,
    Json,
}

/// Options of `up` and `run`.
#[derive(Args)]
pub struct UpFlags {
    /// Wait until every service is ready (the default)
    #[arg(long, conflicts_with = "no_wait")]
    pub wait: bool,
    /// Return once containers are started, without waiting for readiness
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for every service to be ready (e.g. 90s, 2m)
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Leave what was created in place when `up` fails (for debugging)
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Rebuild images of services with `build:` without the layer cache
    #[arg(long)]
    pub no_cache: bool,
    /// How long to wait for a named environment another orch process is using, or for capacity (e.g. 5m)
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// At most this many orch environments at once on this engine; more queue [default: orch.toml's max-envs, else no cap]
    #[arg(long, env = "ORCH_MAX_ENVS")]
    pub max_envs: Option<usize>,
    /// Fail instead of queueing when there is no capacity
    #[arg(long)]
    pub no_wait_capacity: bool,
    /// Join the project's tier networks (`orch network create`) instead of making networks of its own [default:
    /// orch.toml's join-networks]
    #[arg(long)]
    pub join_networks: bool,
    /// Take a ready environment from the project's warm pool (`orch pool start`) when it has one of the current
    /// plan; else bring a fresh one up (and say which)
    #[arg(long)]
    pub from_pool: bool,
    /// With --from-pool: wait this long for a ready member before bringing a fresh one up (e.g. 30s)
    #[arg(long, value_parser = parse_duration, requires = "from_pool")]
    pub pool_wait: Option<std::time::Duration>,
}

/// Which environment a command acts on.
#[derive(Args)]
pub struct Select {
    /// Environment id (as printed by `orch up`); optional when exactly one environment exists
    #[arg(long = "env")]
    pub env: Option<String>,
    /// Only environments of this project
    #[arg(short = 'p', long = "project-name")]
    pub project: Option<String>,
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    orch_compose::parse_duration_ms(s).map(std::time::Duration::from_millis).ok_or_else(|| format!("invalid duration {s:?}; use e.g. 90s or 2m"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Compose,
    /// `orch plan` only: the snapshot a plugin placed after the project's plugins would see (a fixture for a
    /// plugin's native tests: `Snapshot::from_json`)
    Snapshot,
}

/// Inputs shared by every command that makes a plan.
#[derive(Args, Default)]
pub struct PlanInput {
    /// Compose file(s), later ones overriding earlier ones [default: compose.yaml, docker-compose.yml, … in the current directory]
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Env file(s) for interpolation [default: .env next to the first compose file]
    #[arg(long = "env-file")]
    pub env_files: Vec<PathBuf>,
    /// Activate a compose profile (repeatable; COMPOSE_PROFILES works too)
    #[arg(long = "profile")]
    pub profiles: Vec<String>,
    /// Project name [default: the compose file's `name:`, else its directory]
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// Environment name; a fresh id is generated per run when absent
    #[arg(long = "env")]
    pub env: Option<String>,
    /// What the environment is for [default: orch.toml's env-kind, else test]
    #[arg(long = "env-kind")]
    pub env_kind: Option<EnvKind>,
    /// Policy plugin: a built-in name or a path to a .wasm component (repeatable, applied in order)
    #[arg(long = "plugin")]
    pub plugins: Vec<String>,
    /// Plugin setting NAME.KEY=VALUE (VALUE is JSON if it parses, else a string; repeatable)
    #[arg(long = "plugin-setting")]
    pub plugin_settings: Vec<String>,
    /// Subnet pool to carve networks from (repeatable) [default: 10.192.0.0/12]
    #[arg(long = "pool")]
    pub pools: Vec<ipnet::Ipv4Net>,
    /// Plan without asking the Docker engine which subnets and ports are taken
    #[arg(long)]
    pub no_engine: bool,
    /// Project config [default: orch.toml in the current directory, if there is one]
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// Refuse to add or change orch.lock entries (for CI)
    #[arg(long, env = "ORCH_LOCKED")]
    pub locked: bool,
}

impl PlanInput {
    /// The project as these flags describe it (orch.toml and defaults fill in the rest).
    pub fn options(&self, cache_dir: &Option<PathBuf>, state_dir: &Option<PathBuf>) -> ProjectOptions {
        ProjectOptions {
            dir: None,
            files: self.files.clone(),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
            project_name: self.project_name.clone(),
            env_kind: self.env_kind,
            plugins: self.plugins.clone(),
            plugin_settings: self.plugin_settings.clone(),
            pools: self.pools.clone(),
            config: self.config.clone(),
            locked: self.locked,
            cache_dir: cache_dir.clone(),
            state_dir: state_dir.clone(),
            environment: None,
        }
    }
}

impl UpFlags {
    pub fn options(&self, name: Option<String>, lifetime: orch::lifecycle::Lifetime, owner: Option<orch::owner::Owner>) -> EnvOptions {
        EnvOptions {
            name,
            wait: !self.no_wait,
            timeout: self.timeout,
            keep_on_failure: self.keep_on_failure,
            no_cache: self.no_cache,
            lifetime,
            max_envs: self.max_envs.unwrap_or(0),
            no_wait_capacity: self.no_wait_capacity,
            lock_timeout: self.lock_timeout,
            // This binary watches its own environments: even `kill -9` of `orch up` leaves nothing behind.
            watcher: std::env::current_exe().ok(),
            owner,
            join_networks: self.join_networks,
            pool: None,
        }
    }
}
