//! `orch`, the command line: parse ([`args`]), call the library (mostly [`orch::session`]), render, and map errors to the
//! documented exit codes. One module per group of commands: [`up`] (`up`, `run`), [`env`] (commands on a running
//! environment), [`admin`] (`gc`, `doctor`, the watcher), [`plugin`], [`network`] (tier networks), [`bench`];
//! [`progress`] shows `up` as it works.

mod admin;
mod args;
mod bench;
mod env;
#[cfg(test)]
mod fuzz_tests;
mod log;
mod network;
mod plugin;
mod pool;
mod progress;
mod render;
mod up;

use std::collections::BTreeMap;

use args::{Cli, Command, Format, PluginCommand};
use clap::Parser;
use orch::Error;
use orch::engine::{AnyEngine, EngineKind};
use orch::error::exit;
use orch::facts::Facts;
use orch::plugins::{self, PluginRef};
use orch::session::{Project, runtime};

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(run())
}

fn run() -> u8 {
    log::init();
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
            if log::debug()
                && let Some(details) = e.details()
            {
                eprintln!("{details}");
            }
            e.exit_code()
        }
    }
}

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

/// `--engine` (or `ORCH_ENGINE`), when given.
static ENGINE_FLAG: std::sync::OnceLock<Option<EngineKind>> = std::sync::OnceLock::new();

/// The engine to use: `--engine`, else the project's orch.toml (`project`, or the one in the current directory),
/// else the local engine.
fn engine_kind(project: Option<&Project>) -> EngineKind {
    if let Some(k) = ENGINE_FLAG.get().copied().flatten() {
        return k;
    }
    let from_cwd = || {
        let cwd = std::env::current_dir().ok()?;
        orch::config::ProjectConfig::find(None, &cwd).ok().flatten()?.engine
    };
    project.and_then(Project::engine_kind).or_else(from_cwd).unwrap_or_default()
}

fn engine(rt: &tokio::runtime::Runtime, project: Option<&Project>) -> Result<AnyEngine, Error> {
    Ok(rt.block_on(AnyEngine::connect(engine_kind(project)))?.with_registry(project.and_then(Project::registry)))
}

/// Facts from the engine when it answers; without it the plan can only avoid the host's own routes.
fn facts(no_engine: bool, project: &Project) -> Facts {
    let mut facts = Facts { places_services: engine_kind(Some(project)) == EngineKind::Swarm, ..Facts::default() };
    facts.add_host_routes();
    if no_engine {
        return facts;
    }
    let got = tokio().block_on(async { orch::engine::gather_facts(&AnyEngine::connect(engine_kind(Some(project))).await?).await });
    match got {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: {e}\nwarning: planning without the engine's networks and ports (pass --no-engine to silence this)");
            facts
        }
    }
}

/// Opens the project and says what loading it noticed.
fn open(input: &args::PlanInput, cli: &Dirs) -> Result<Project, Error> {
    let project = Project::open(&input.options(&cli.cache_dir, &cli.state_dir))?;
    for note in &project.notes {
        eprintln!("note: {note}");
    }
    Ok(project)
}

/// Where orch keeps its caches and state (from global flags).
pub struct Dirs {
    pub cache_dir: Option<std::path::PathBuf>,
    pub state_dir: Option<std::path::PathBuf>,
}

fn dispatch(cli: Cli) -> Result<(), Error> {
    let dirs = Dirs { cache_dir: cli.cache_dir.clone(), state_dir: cli.state_dir.clone() };
    let _ = ENGINE_FLAG.set(cli.engine);
    match cli.command {
        Command::Up { input, flags, ttl, owner_pid, format } => up::up(&dirs, &input, &flags, ttl, owner_pid, format),
        Command::Run { input, flags, keep, command } => up::run(&dirs, &input, &flags, keep, &command),
        Command::Gc { dry_run, older_than, all, project } => admin::gc(&dirs, dry_run, older_than, all, project),
        Command::Doctor { pools, format } => admin::doctor(&dirs, pools, format),
        Command::Watch { owner } => admin::watch(&dirs, &owner),
        Command::Down { select, all_mine, volumes } => env::down(&select, all_mine, volumes),
        Command::Ps { select, format } => env::status(&select, format, false),
        Command::Health { select, format } => env::status(&select, format, true),
        Command::Port { select, service, port, format } => env::port(&select, &service, port, format),
        Command::Keep { select, ttl } => env::keep(&select, ttl),
        Command::Env { select, format } => env::connection_env(&select, format),
        Command::Logs { select, service, tail, follow } => env::logs(&select, &service, tail, follow),
        Command::Restart { select, service, timeout } => env::restart(&select, &service, timeout),
        Command::Exec { select, format, service, command } => env::exec(&select, &service, &command, format),
        Command::Plan { input, format, explain } => {
            let project = open(&input, &dirs)?;
            if format == Format::Snapshot {
                let snapshot = if input.no_engine {
                    project.fixture_snapshot(input.env.as_deref(), engine_kind(Some(&project)) == EngineKind::Swarm)?
                } else {
                    project.snapshot(input.env.as_deref(), &facts(false, &project))?
                };
                println!("{}", serde_json::to_string_pretty(&snapshot).expect("a snapshot serialises"));
                return Ok(());
            }
            let mut outcome = project.plan(input.env.as_deref(), &facts(input.no_engine, &project))?;
            if !explain {
                outcome.plan.provenance = BTreeMap::new();
            }
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&outcome.plan).expect("plan serialises")),
                Format::Compose => print!("{}", serde_yaml_ng::to_string(&orch::export::to_compose(&outcome.plan)).expect("compose serialises")),
                Format::Table | Format::Snapshot => print!("{}", render::plan(&outcome.plan, explain)),
            }
            Ok(())
        }
        Command::Network { command } => network::run(&dirs, command),
        Command::Pool { command } => pool::run(&dirs, command),
        Command::Bench { input, parallel, runs, targets, timeout, no_variants, format, output } => {
            bench::run(&dirs, &input, bench::BenchArgs { parallel, runs, targets, timeout, no_variants, format, output })
        }
        Command::Plugin { command: PluginCommand::List } => {
            let runtime = runtime(&dirs.cache_dir)?;
            let mut rows = vec![];
            for name in plugins::builtin_names() {
                let p = runtime.load(name, plugins::builtin_bytes(name).expect("listed"))?;
                rows.push(vec![name.to_string(), p.description.version.clone(), render::policies(&p.description.implements), p.description.summary.clone()]);
            }
            print!("{}", render::table(&["NAME", "VERSION", "POLICIES", "SUMMARY"], &rows));
            Ok(())
        }
        Command::Plugin { command: PluginCommand::Inspect { plugin, format } } => {
            let (_, p) = plugin::fetch_and_load(&dirs.cache_dir, &PluginRef::parse(&plugin))?;
            print!("{}", render::inspect(&p, format == Format::Json));
            Ok(())
        }
        Command::Plugin { command } => plugin::run(&dirs.cache_dir, command),
    }
}
