//! The one planning pipeline: compose model → draft → plugins → resolve → validate, and the facts it plans against.
//!
//! Every front end plans through a [`Planner`]: [`crate::session::Project`] (`orch plan`, `orch up`), the tiers
//! (`orch network`), `orch plugin test`, `orch bench` and the benches. The steps, in the order a plan takes them:
//!
//! 1. [`Planner::identity`]: the project and environment names, checked;
//! 2. [`Planner::policy`]: the compose model drafted for that identity, with every plugin applied once, in order (the
//!    plan before allocation: what admission weighs and what a plugin's test compares);
//! 3. [`Planner::finish`]: subnets and host ports allocated against the facts, then validated;
//! 4. on an engine, [`facts`] gathers what the engine and every live reservation hold (before the plugins run, and
//!    again under the allocation lock in [`Planner::allocate`], which also reserves what it chose).

use std::time::Duration;

use ipnet::Ipv4Net;

use crate::engine::{self, Engine, EngineError};
use crate::error::Error;
use crate::facts::Facts;
use crate::plan::{self, EnvKind, Identity, Plan};
use crate::plugins::{self, ActivePlugin, CallTiming};
use crate::resolve;
use crate::state::StateDir;
use crate::validate;

/// How many times a network's subnet is carved again when the engine refuses the one chosen (another user of the
/// engine took it after planning), before giving up.
pub const SUBNET_ATTEMPTS: usize = 5;

/// The backoff between those carvings: whoever holds the subnet may be mid-way through a create or a removal.
pub const SUBNET_BACKOFF: crate::retry::Backoff = crate::retry::Backoff { attempts: SUBNET_ATTEMPTS, first: Duration::from_millis(100), factor: 2 };

/// Everything [`make_plan`] needs to make a plan from compose files alone.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// The compose files and how to load them.
    pub compose: orch_compose::LoadOptions,
    /// `--env`; a fresh id is generated when absent.
    pub env_id: Option<String>,
    /// What the environment is for, which plugins see.
    pub env_kind: EnvKind,
    /// Subnet pools to carve from; [`resolve::DEFAULT_POOL`] when empty.
    pub pools: Vec<Ipv4Net>,
}

/// A plan and what each plugin call of it cost.
pub struct PlanOutcome {
    /// The resolved, validated plan.
    pub plan: Plan,
    /// Each plugin call, with how long it took.
    pub timings: Vec<CallTiming>,
}

/// A project's planning inputs — its compose model, plugins (with settings), environment kind and subnet pools — and
/// the pipeline over them. Cheap to make: it borrows.
#[derive(Clone, Copy)]
pub struct Planner<'a> {
    loaded: &'a orch_compose::Loaded,
    plugins: &'a [ActivePlugin],
    env_kind: EnvKind,
    pools: &'a [Ipv4Net],
}

impl<'a> Planner<'a> {
    /// A planner over a compose model, plugins (already activated), environment kind and subnet pools.
    pub fn new(loaded: &'a orch_compose::Loaded, plugins: &'a [ActivePlugin], env_kind: EnvKind, pools: &'a [Ipv4Net]) -> Planner<'a> {
        Planner { loaded, plugins, env_kind, pools }
    }

    /// The compose model.
    pub fn compose(&self) -> &'a orch_compose::Loaded {
        self.loaded
    }

    /// The project's name.
    pub fn project(&self) -> &'a str {
        &self.loaded.project.name
    }

    /// The pools subnets are carved from (the default pool when empty).
    pub fn pools(&self) -> &'a [Ipv4Net] {
        self.pools
    }

    /// Step 1: environment `env` (checked), or a fresh one, of this project (checked).
    pub fn identity(&self, env: Option<&str>) -> Result<Identity, Error> {
        identity(self.project(), env, self.env_kind)
    }

    /// Step 2: the plan of `identity` before allocation — drafted, compose's not-applied warnings recorded, every
    /// plugin applied once, in order.
    pub fn policy(&self, identity: Identity, facts: &Facts) -> Result<PlanOutcome, Error> {
        let mut plan = plan::draft(&self.loaded.project, &identity, &self.loaded.variables);
        // What the compose file asks for and orch does not apply is part of the plan, never only a message on stderr.
        for w in &self.loaded.warnings {
            plan.diagnose(plan::Level::Warning, "compose.not-applied", format!("{}: {}", w.file.display(), w.message), Some(w.path.clone()), "compose");
        }
        let timings = plugins::apply_all(&mut plan, self.plugins, facts)?;
        Ok(PlanOutcome { plan, timings })
    }

    /// Step 3: allocates subnets and host ports against `facts` (from the pools, [`resolve::DEFAULT_POOL`] when
    /// there are none) and validates; a plan with error diagnostics is [`Error::InvalidPlan`].
    pub fn finish(&self, plan: &mut Plan, facts: &Facts) -> Result<(), Error> {
        let default_pool: Vec<Ipv4Net> = vec![resolve::DEFAULT_POOL.parse().expect("literal")];
        let pools = if self.pools.is_empty() { &default_pool } else { self.pools };
        resolve::resolve(plan, facts, pools)?;
        validate::validate(plan, facts);
        if plan.has_errors() {
            let diagnostics = plan.diagnostics.iter().filter(|d| d.level == plan::Level::Error).cloned().collect();
            return Err(Error::InvalidPlan { diagnostics });
        }
        Ok(())
    }

    /// Steps 1–3 against `facts`, reserving nothing (`orch plan`, previews, tests).
    pub fn plan(&self, env: Option<&str>, facts: &Facts) -> Result<PlanOutcome, Error> {
        let mut outcome = self.policy(self.identity(env)?, facts)?;
        self.finish(&mut outcome.plan, facts)?;
        Ok(outcome)
    }

    /// Step 3 on an engine: allocates `policy` under the allocation lock, so that concurrent orch processes never
    /// choose the same subnet or host port — the engine's facts, gathered again now, plus every live reservation are
    /// avoided, and this plan's choices are reserved before the lock is released. `refused`: subnets the engine
    /// refused this plan before, avoided too (and the carving starts elsewhere).
    pub async fn allocate<E: Engine>(&self, engine: &E, state: &StateDir, policy: &Plan, lock_timeout: Duration, refused: &[Ipv4Net]) -> Result<Plan, Error> {
        let waiting = state.clone();
        let mut guard = crate::blocking(move || waiting.allocations(lock_timeout)).await??;
        // This environment's own earlier reservation (a carving the engine refused) is no one else's.
        guard.release(&policy.identity.project, &policy.identity.env_id);
        let mut facts = engine::gather_facts(engine).await?;
        with_reservations(&mut facts, &guard.state);
        // Subnets the engine refused this environment: it holds them even if it does not list them (a network another
        // process is removing keeps its pool until the removal ends).
        facts.taken_subnets.extend(refused.iter().map(|n| n.trunc()));
        if !refused.is_empty() {
            facts.carve_offset = plan::fnv1a(format!("{}/{}/{}", policy.identity.project, policy.identity.env_id, refused.len()).as_bytes()) | 1;
        }
        let mut plan = policy.clone();
        self.finish(&mut plan, &facts)?;
        guard.reserve(&plan);
        guard.save()?;
        Ok(plan)
    }

    /// The error once every carving of a network's subnet was taken on the engine before it could be made.
    pub fn subnets_kept_taken(&self, what: &str, subnet: &str) -> Error {
        let pools =
            if self.pools.is_empty() { resolve::DEFAULT_POOL.to_string() } else { self.pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ") };
        Error::Lifecycle(crate::lifecycle::LifecycleError::InTheWay {
            kind: "subnet",
            name: subnet.to_string(),
            why: format!(
                "{what}: the engine refused {SUBNET_ATTEMPTS} carvings from the pools {pools} (other networks took them first, the last {subnet}); give orch a pool of its own with --pool or orch.toml's `pools`"
            ),
        })
    }
}

/// What plugins plan against on an engine: the engine's facts plus every live reservation in `state` (read under the
/// allocation lock, which is released at once: allocation takes it again).
pub async fn facts<E: Engine>(engine: &E, state: &StateDir, lock_timeout: Duration) -> Result<Facts, Error> {
    let mut facts = engine::gather_facts(engine).await?;
    let reserved = {
        let state = state.clone();
        crate::blocking(move || state.allocations(lock_timeout).map(|g| g.state)).await??
    };
    with_reservations(&mut facts, &reserved);
    Ok(facts)
}

fn with_reservations(facts: &mut Facts, reserved: &crate::state::Allocations) {
    facts.taken_subnets.extend(reserved.subnets());
    facts.taken_host_ports.extend(reserved.ports());
}

/// The subnet the engine refused, when `e` is that refusal (another user of the engine took it after planning).
pub fn refused_subnet(e: &Error) -> Option<(&str, &str, &str)> {
    match e {
        Error::Engine(EngineError::SubnetTaken { what, subnet, message })
        | Error::Lifecycle(crate::lifecycle::LifecycleError::Engine(EngineError::SubnetTaken { what, subnet, message })) => {
            Some((what.as_str(), subnet.as_str(), message.as_str()))
        }
        _ => None,
    }
}

/// Loads the compose files, applies the plugins in order, resolves and validates, against `facts`: the whole
/// pipeline in one call, for plans made from files alone.
pub fn make_plan(req: &PlanRequest, plugins: &[ActivePlugin], facts: &Facts) -> Result<PlanOutcome, Error> {
    let loaded = orch_compose::load(&req.compose)?;
    Planner::new(&loaded, plugins, req.env_kind, &req.pools).plan(req.env_id.as_deref(), facts)
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

#[cfg(test)]
mod tests {
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
            assert_eq!(err.exit_code(), crate::error::exit::INVALID_INPUT, "{bad}: {err}");
        }
        assert!(identity("p", Some("a_b"), EnvKind::Test).is_err(), "environment ids have no '_'");
    }

    #[test]
    fn the_steps_make_the_plan_make_plan_makes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "name: p\nservices:\n  web:\n    image: busybox\n    ports: ['8080']\n    networks: [front]\nnetworks:\n  front: {}\n").unwrap();
        let req = PlanRequest {
            compose: orch_compose::LoadOptions { files: vec![file.clone()], ..Default::default() },
            env_id: Some("e1".into()),
            ..Default::default()
        };
        let whole = make_plan(&req, &[], &Facts::default()).unwrap().plan;
        let loaded = orch_compose::load(&req.compose).unwrap();
        let planner = Planner::new(&loaded, &[], EnvKind::Test, &[]);
        let mut stepped = planner.policy(planner.identity(Some("e1")).unwrap(), &Facts::default()).unwrap().plan;
        assert!(stepped.networks["front"].subnet.is_none(), "the policy plan is not allocated yet");
        planner.finish(&mut stepped, &Facts::default()).unwrap();
        assert_eq!(serde_json::to_value(&stepped).unwrap(), serde_json::to_value(&whole).unwrap());
        assert!(whole.networks["front"].subnet.is_some());
    }
}
