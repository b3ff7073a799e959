//! Command-line parsing and dispatch. Everything of substance is a library call; this module only gathers inputs,
//! renders outputs and chooses exit codes.

mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use orch::error::exit;
use orch::facts::Facts;
use orch::plan::EnvKind;
use orch::plugins::{self, PluginRef, Runtime};
use orch::{Error, PlanRequest};

#[derive(Parser)]
#[command(name = "orch", version, about = "Isolated, parallel Docker environments whose policy lives in sandboxed WebAssembly plugins")]
struct Cli {
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/orch or ~/.cache/orch]
    #[arg(long, global = true, env = "ORCH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
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
        /// A built-in name or a path to a .wasm component
        plugin: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Compose,
}

/// Inputs shared by every command that makes a plan.
#[derive(Args)]
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
    /// What the environment is for
    #[arg(long = "env-kind", default_value = "test")]
    env_kind: EnvKind,
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
}

const DEFAULT_FILES: [&str; 4] = ["compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"];

impl PlanInput {
    fn request(&self) -> Result<PlanRequest, Error> {
        let files = if self.files.is_empty() {
            let found = DEFAULT_FILES.iter().map(PathBuf::from).find(|p| p.is_file());
            vec![found.ok_or_else(|| Error::Usage(format!("no compose file given and none of {} in the current directory; pass -f FILE", DEFAULT_FILES.join(", "))))?]
        } else {
            self.files.clone()
        };
        Ok(PlanRequest {
            compose: orch_compose::LoadOptions {
                files,
                env_files: self.env_files.clone(),
                profiles: self.profiles.clone(),
                environment: std::env::vars().collect(),
                project_name: self.project_name.clone(),
            },
            env_id: self.env.clone(),
            env_kind: self.env_kind,
            pools: self.pools.clone(),
        })
    }
}

fn cache_dir(flag: &Option<PathBuf>) -> Option<PathBuf> {
    let base = flag.clone().or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("orch"))).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("orch"))
    });
    base.map(|b| b.join("plugins"))
}

fn runtime(cli_cache: &Option<PathBuf>) -> Result<Runtime, Error> {
    Ok(Runtime::new(cache_dir(cli_cache))?)
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
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Plan { input, format, explain } => {
            let request = input.request()?;
            let settings = orch::plugin_settings(&input.plugin_settings)?;
            let refs: Vec<PluginRef> = input.plugins.iter().map(|p| PluginRef::parse(p)).collect();
            let runtime = runtime(&cli.cache_dir)?;
            let active = plugins::activate(&runtime, &refs, &settings)?;
            let facts = facts(input.no_engine);
            let mut outcome = orch::make_plan(&request, &active, &facts)?;
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
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
            let runtime = runtime(&cli.cache_dir)?;
            let r = PluginRef::parse(&plugin);
            let p = runtime.load(&r.display_name(), &r.bytes()?)?;
            print!("{}", render::inspect(&p, format == Format::Json));
            Ok(())
        }
    }
}
