//! orch's host: compose model → draft plan → policy plugins → resolved, validated plan → engine.
//!
//! Modules by the step they own: [`plan`] (the plan and its draft), [`plugins`] (sandboxed policy plugins),
//! [`resolve`] (subnets, ports), [`validate`], [`facts`] and [`engine`] (what is on the machine), [`export`]
//! (the plan as a compose file), [`render`] (tables for people). [`session`] is the front door for every front end:
//! open a project, plan, bring environments up and use them.

/// README.md's Rust blocks, compiled (and run) as doctests, so its examples stay examples that compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub mod admission;
pub mod atomic;
pub mod bench;
pub mod clock;
pub mod config;
pub mod context;
pub mod dockerfile;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod export;
pub mod facts;
#[cfg(test)]
mod fuzz_tests;
pub mod labels;
pub mod lifecycle;
pub mod marker;
pub mod owner;
pub mod plan;
pub mod plugins;
pub mod reaper;
pub mod render;
pub mod resolve;
pub mod session;
pub mod state;
pub mod tiers;
pub mod validate;
pub mod verdict;

use std::collections::BTreeMap;

pub use error::Error;
use ipnet::Ipv4Net;
use orch_compose::LoadOptions;
use plan::{EnvKind, Identity, Plan};
use plugins::{ActivePlugin, CallTiming};

/// Everything `orch plan` (and later `up`) needs to make a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub compose: LoadOptions,
    /// `--env`; a fresh id is generated when absent.
    pub env_id: Option<String>,
    pub env_kind: EnvKind,
    /// Subnet pools to carve from; [`resolve::DEFAULT_POOL`] when empty.
    pub pools: Vec<Ipv4Net>,
}

pub struct PlanOutcome {
    pub plan: Plan,
    pub timings: Vec<CallTiming>,
}

/// A fresh environment id: 8 hex digits from the clock and the pid, unique per run on a host.
pub fn new_env_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let h = plan::fnv1a(format!("{nanos}/{}", std::process::id()).as_bytes());
    format!("{:08x}", h as u32)
}

/// Environment ids become part of Docker names: lowercase letters, digits and dashes, at most 32.
pub fn check_env_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') && !id.starts_with('-');
    if ok { Ok(()) } else { Err(Error::Usage(format!("invalid environment name {id:?}: use 1-32 lowercase letters, digits and dashes"))) }
}

/// Project names are compose's (lowercase letters, digits, `-` and `_`); orch also refuses `__` and a trailing `_`,
/// which would make `<project>__<env>__<name>` ambiguous (see [`plan::Identity::resource_name`]).
pub fn check_project_name(name: &str) -> Result<(), Error> {
    let chars_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !chars_ok {
        return Err(Error::InvalidInput {
            what: format!("project name {name:?}"),
            message: "use lowercase letters, digits, '-' and '_' (set it with -p, orch.toml's `project` or the compose file's `name:`)".into(),
        });
    }
    if name.contains(plan::SEP) || name.ends_with('_') {
        return Err(Error::InvalidInput {
            what: format!("project name {name:?}"),
            message: format!(
                "orch names resources <project>{0}<env>{0}<name>, so a project name may not contain {0:?} or end in '_'; choose another with -p or orch.toml's `project`",
                plan::SEP
            ),
        });
    }
    Ok(())
}

/// The environment `env` (checked), or a fresh one, of `project` (checked).
pub fn identity(project: &str, env: Option<&str>, env_kind: EnvKind) -> Result<Identity, Error> {
    check_project_name(project)?;
    let env_id = match env {
        Some(id) => {
            check_env_id(id)?;
            id.to_string()
        }
        None => new_env_id(),
    };
    Ok(Identity { project: project.to_string(), env_id, env_kind })
}

/// Runs blocking work (file locks) off the async runtime, a current-thread one included.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))
}

/// Loads the compose files, applies the plugins in order, resolves and validates. A plan with error diagnostics is
/// returned as [`Error::InvalidPlan`].
pub fn make_plan(req: &PlanRequest, plugins: &[ActivePlugin], facts: &facts::Facts) -> Result<PlanOutcome, Error> {
    let loaded = orch_compose::load(&req.compose)?;
    let identity = identity(&loaded.project.name, req.env_id.as_deref(), req.env_kind)?;
    let mut outcome = policy_plan(&loaded, identity, plugins, facts)?;
    finish_plan(&mut outcome.plan, facts, &req.pools)?;
    Ok(outcome)
}

/// The plan before allocation: the compose model drafted for `identity`, with every plugin applied once, in order.
pub fn policy_plan(loaded: &orch_compose::Loaded, identity: Identity, plugins: &[ActivePlugin], facts: &facts::Facts) -> Result<PlanOutcome, Error> {
    let mut plan = plan::draft(&loaded.project, &identity, &loaded.variables);
    // What the compose file asks for and orch does not apply is part of the plan, never only a message on stderr.
    for w in &loaded.warnings {
        plan.diagnose(plan::Level::Warning, "compose.not-applied", format!("{}: {}", w.file.display(), w.message), Some(w.path.clone()), "compose");
    }
    let timings = plugins::apply_all(&mut plan, plugins, facts)?;
    Ok(PlanOutcome { plan, timings })
}

/// Allocates subnets and host ports against `facts` (from `pools`, [`resolve::DEFAULT_POOL`] when empty) and
/// validates; a plan with error diagnostics is [`Error::InvalidPlan`].
pub fn finish_plan(plan: &mut Plan, facts: &facts::Facts, pools: &[Ipv4Net]) -> Result<(), Error> {
    let default_pool: Vec<Ipv4Net> = vec![resolve::DEFAULT_POOL.parse().expect("literal")];
    let pools = if pools.is_empty() { &default_pool } else { pools };
    resolve::resolve(plan, facts, pools)?;
    validate::validate(plan, facts);
    if plan.has_errors() {
        let diagnostics = plan.diagnostics.iter().filter(|d| d.level == plan::Level::Error).cloned().collect();
        return Err(Error::InvalidPlan { diagnostics });
    }
    Ok(())
}

/// Allocates `policy` (a [`policy_plan`]) under the allocation lock, so that concurrent orch processes never choose
/// the same subnet or host port: the engine's facts plus every live reservation are avoided, and this plan's choices
/// are reserved before the lock is released. `refused`: subnets the engine refused this plan before, avoided too.
pub async fn allocate<E: engine::Engine>(
    engine: &E,
    state: &state::StateDir,
    policy: &Plan,
    pools: &[Ipv4Net],
    lock_timeout: std::time::Duration,
    refused: &[Ipv4Net],
) -> Result<Plan, Error> {
    let waiting = state.clone();
    let mut guard = blocking(move || waiting.allocations(lock_timeout)).await??;
    // This environment's own earlier reservation (a carving the engine refused) is no one else's.
    guard.release(&policy.identity.project, &policy.identity.env_id);
    let mut facts = engine::gather_facts(engine).await?;
    facts.taken_subnets.extend(guard.state.subnets());
    // Subnets the engine refused this environment: it holds them even if it does not list them (a network another
    // process is removing keeps its pool until the removal ends).
    facts.taken_subnets.extend(refused.iter().map(|n| n.trunc()));
    if !refused.is_empty() {
        facts.carve_offset = plan::fnv1a(format!("{}/{}/{}", policy.identity.project, policy.identity.env_id, refused.len()).as_bytes()) | 1;
    }
    facts.taken_host_ports.extend(guard.state.ports());
    let mut plan = policy.clone();
    finish_plan(&mut plan, &facts, pools)?;
    guard.reserve(&plan);
    guard.save()?;
    Ok(plan)
}

/// The error once every carving of a network's subnet was taken on the engine before it could be made.
pub(crate) fn subnets_kept_taken(what: &str, subnet: &str, pools: &[Ipv4Net]) -> Error {
    let pools = if pools.is_empty() { resolve::DEFAULT_POOL.to_string() } else { pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ") };
    Error::Lifecycle(lifecycle::LifecycleError::InTheWay {
        kind: "subnet",
        name: subnet.to_string(),
        why: format!(
            "{what}: the engine refused {} carvings from the pools {pools} (other networks took them first, the last {subnet}); give orch a pool of its own with --pool or orch.toml's `pools`",
            tiers::SUBNET_ATTEMPTS
        ),
    })
}

/// Settings for plugins from `orch.toml`-style maps plus `--plugin-setting` flags.
pub fn plugin_settings(flags: &[String]) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    Ok(plugins::parse_settings(BTreeMap::new(), flags)?)
}

#[cfg(test)]
mod naming_tests {
    use super::*;

    #[test]
    fn two_environments_never_share_a_resource_name() {
        // Dashes in both parts once made these two the same name.
        let a = identity("my", Some("app-a1b2c3d4"), EnvKind::Test).unwrap();
        let b = identity("my-app", Some("a1b2c3d4"), EnvKind::Test).unwrap();
        assert_ne!(a.resource_name("web"), b.resource_name("web"));
        assert_eq!(b.resource_name("web"), "my-app__a1b2c3d4__web");
        // The parts come back from a name: the first `__` ends the project, the next the environment.
        let name = identity("my_app", Some("e-1"), EnvKind::Test).unwrap().resource_name("db__x");
        let (project, rest) = name.split_once(plan::SEP).unwrap();
        let (env, resource) = rest.split_once(plan::SEP).unwrap();
        assert_eq!((project, env, resource), ("my_app", "e-1", "db__x"));
        // Names that would make that ambiguous are refused with the rule.
        for bad in ["a__b", "a_", "A"] {
            let err = identity(bad, Some("e"), EnvKind::Test).unwrap_err();
            assert_eq!(err.exit_code(), error::exit::INVALID_INPUT, "{bad}: {err}");
        }
        assert!(identity("p", Some("a_b"), EnvKind::Test).is_err(), "environment ids have no '_'");
    }
}

/// The module graph has no circle: no module of the library reaches, through `crate::` paths in its code, a module
/// that reaches back to it (tests and comments aside; the CLI is the front end and may use everything). An import
/// circle is the first step to a layer that cannot be moved into a crate of its own.
#[cfg(test)]
mod architecture_tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn uses(code: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        out
    }

    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                    continue;
                }
                let rel = p.strip_prefix(&src).unwrap();
                let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
                if ["main", "lib", "fuzz_tests", "cli"].contains(&top.as_str()) {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                graph.entry(top.clone()).or_default().extend(uses(code).into_iter().filter(|m| *m != top));
            }
        }
        let known: BTreeSet<String> = graph.keys().cloned().collect();
        graph.values_mut().for_each(|deps| deps.retain(|d| known.contains(d)));
        graph
    }

    /// A path of modules from `from` back to itself, if there is one.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
        let mut stack = vec![(from.to_string(), vec![from.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == from {
                    return Some([path.clone(), vec![from.to_string()]].concat());
                }
                if seen.insert(next.clone()) {
                    stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
                }
            }
        }
        None
    }

    #[test]
    fn no_module_imports_in_a_circle() {
        let graph = graph();
        assert!(graph.len() > 20, "the module graph was read: {:?}", graph.keys());
        let circles: Vec<String> = graph.keys().filter_map(|m| circle(&graph, m)).map(|c| c.join(" → ")).collect();
        assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
    }

    #[test]
    fn the_circle_check_finds_a_circle() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        assert_eq!(circle(&g, "a"), Some(vec!["a".to_string(), "b".into(), "a".into()]));
        assert_eq!(uses("use crate::engine::Engine;\n/// [`crate::doc`]\nlet x = crate::plan::fnv1a(b);"), ["engine", "plan"].map(String::from).into());
    }
}
