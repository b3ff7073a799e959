//! Tier networks: a project's networks as long-lived resources of the project, not of one environment
//! (`orch network`). Seed 003's team keeps a dev stack on fixed tier networks that notebooks and one-off jobs join by
//! name. orch makes each network of the project's plan (plugins included: tiers, fixed or carved subnets) once,
//! labelled with the project and the tier but with no environment label, so that `down` and `gc` of environments
//! never remove one. Environments join them when asked (`join-networks`); any container can be connected by name.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::engine::{Engine, EngineError, NetworkInfo};
use crate::facts::Facts;
use crate::plan::{Level, NetworkPlan, Plan, SubnetRequest};
use crate::{Error, labels};

/// The environment id the tier plan is made for (plugins see it; no environment of that name is created).
pub const TIER_ENV: &str = "tiers";

/// `orch network … --format json`.
pub const FORMAT: &str = "orch.networks/v1";

/// One tier network as `orch network` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TierStatus {
    /// The network's name in the plan (`main`, `db`…).
    pub tier: String,
    /// Its engine-side name (`bpo-main`, or the compose file's `name:`).
    pub name: String,
    pub exists: bool,
    /// Created by this call (`create` only).
    pub created: bool,
    /// Removed by this call (`rm` only).
    pub removed: bool,
    pub in_plan: bool,
    pub driver: String,
    pub internal: bool,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// Names of the containers attached.
    pub containers: Vec<String>,
    /// It exists and is what the plan asks for.
    pub matches_plan: bool,
    /// How it differs from the plan (or why it is missing).
    pub differences: Vec<String>,
}

/// The report of an `orch network` command.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub project: String,
    pub networks: Vec<TierStatus>,
}

impl Report {
    fn new(project: &str, networks: Vec<TierStatus>) -> Report {
        Report { format: FORMAT, project: project.to_string(), networks }
    }
}

/// What tier planning needs of a project, so that tiers know nothing else of the session (whose `Project`
/// implements it): its planner, state directory, the policy plan of an environment (counted as the project's
/// plugin calls) and the release of a reservation.
pub trait TierProject: Sync {
    fn planner(&self) -> crate::planner::Planner<'_>;
    fn name(&self) -> &str {
        self.planner().project()
    }
    fn state(&self) -> &crate::state::StateDir;
    fn policy_plan_for(&self, env: &str, facts: &Facts) -> Result<crate::PlanOutcome, Error>;
    fn release_reservation(&self, env: &str) -> impl std::future::Future<Output = ()> + Send;
}

/// The engine-side name of tier `tier`: the compose file's `name:` for it, else `<project>-<tier>`.
pub fn tier_name(project: &impl TierProject, tier: &str) -> String {
    project.planner().compose().project.networks.get(tier).and_then(|n| n.name.clone()).unwrap_or_else(|| format!("{}-{tier}", project.name()))
}

/// Labels of tier `tier` of `project`.
fn tier_labels(project: &str, tier: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::TIER.to_string(), tier.to_string()),
        (labels::CREATED.to_string(), crate::clock::now().to_string()),
    ])
}

/// The project's tier networks that exist, by tier.
async fn existing<E: Engine>(engine: &E, project: &str) -> Result<BTreeMap<String, NetworkInfo>, Error> {
    let found = engine.networks_labelled(&vec![labels::project_filter(project), labels::TIER.to_string()]).await?;
    let mut by_tier = BTreeMap::new();
    for n in found {
        let Some(tier) = n.labels.get(labels::TIER).cloned() else { continue };
        match engine.network_info(&n.id).await {
            Ok(info) => {
                by_tier.insert(tier, info);
            }
            // Removed meanwhile.
            Err(EngineError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(by_tier)
}

/// The networks the project's plan defines (plugins applied) and its services use, by tier; external networks are
/// not the project's.
fn planned(plan: &Plan) -> BTreeMap<String, NetworkPlan> {
    let used: std::collections::BTreeSet<&String> = plan.services.values().flat_map(|s| s.networks.keys()).collect();
    plan.networks.iter().filter(|(t, n)| !n.external && used.contains(t)).map(|(t, n)| (t.clone(), n.clone())).collect()
}

/// The project's plan for its tiers (plugins applied once).
fn tier_plan(project: &impl TierProject, facts: &Facts) -> Result<Plan, Error> {
    Ok(project.policy_plan_for(TIER_ENV, facts)?.plan)
}

/// Whether a network with these labels is tier `tier` of `project`.
fn is_tier(info: &NetworkInfo, project: &str, tier: &str) -> bool {
    info.labels.get(labels::PROJECT).map(String::as_str) == Some(project) && info.labels.get(labels::TIER).map(String::as_str) == Some(tier)
}

/// How `info` differs from what the plan asks for.
fn differences(want: &NetworkPlan, info: &NetworkInfo, project: &str, tier: &str) -> Vec<String> {
    let mut d = vec![];
    if !is_tier(info, project, tier) {
        d.push(format!("not made by orch as tier {tier} of project {project}"));
    }
    if want.internal != info.internal {
        d.push(format!("internal is {}, the plan says {}", info.internal, want.internal));
    }
    // A swarm makes every network an overlay.
    if want.driver != info.driver && info.driver != "overlay" {
        d.push(format!("driver is {}, the plan says {}", info.driver, want.driver));
    }
    if let Some(SubnetRequest::Fixed(subnet)) = &want.subnet_request
        && !info.subnets.iter().any(|s| s == subnet)
    {
        d.push(format!("subnet is {}, the plan says {subnet}", info.subnets.first().map(String::as_str).unwrap_or("none")));
    }
    d
}

fn status_of(tier: &str, name: &str, want: Option<&NetworkPlan>, info: Option<&NetworkInfo>, project: &str) -> TierStatus {
    let mut s = TierStatus { tier: tier.into(), name: name.into(), in_plan: want.is_some(), ..TierStatus::default() };
    match info {
        Some(i) => {
            s.exists = true;
            s.driver = i.driver.clone();
            s.internal = i.internal;
            s.subnet = i.subnets.first().cloned();
            s.gateway = i.gateways.first().cloned();
            s.containers = i.containers.clone();
            s.differences = match want {
                Some(w) => differences(w, i, project, tier),
                None => vec!["not in the plan".into()],
            };
        }
        None => {
            if let Some(w) = want {
                s.driver = w.driver.clone();
                s.internal = w.internal;
                s.subnet = match &w.subnet_request {
                    Some(SubnetRequest::Fixed(subnet)) => Some(subnet.clone()),
                    _ => None,
                };
                s.gateway = w.gateway.clone();
            }
            s.differences = vec!["missing: `orch network create` makes it".into()];
        }
    }
    s.matches_plan = s.exists && s.in_plan && s.differences.is_empty();
    s
}

/// Each network of the plan, whether it exists and matches, and the project's tier networks the plan no longer has.
pub async fn status<E: Engine>(engine: &E, project: &impl TierProject) -> Result<Report, Error> {
    let facts = crate::engine::gather_facts(engine).await?;
    compare(engine, project, &planned(&tier_plan(project, &facts)?)).await
}

/// The networks `want` (the plan's) against the tiers the engine has now.
async fn compare<E: Engine>(engine: &E, project: &impl TierProject, want: &BTreeMap<String, NetworkPlan>) -> Result<Report, Error> {
    let have = existing(engine, project.name()).await?;
    let mut out = vec![];
    for (tier, w) in want {
        let name = tier_name(project, tier);
        // By name: a network of that name that orch did not make is reported as such, never adopted.
        let info = match have.get(tier) {
            Some(i) => Some(i.clone()),
            None => match engine.network_info(&name).await {
                Ok(i) => Some(i),
                Err(EngineError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
        };
        out.push(status_of(tier, &name, Some(w), info.as_ref(), project.name()));
    }
    for (tier, info) in have.iter().filter(|(t, _)| !want.contains_key(*t)) {
        out.push(status_of(tier, &info.name, None, Some(info), project.name()));
    }
    Ok(Report::new(project.name(), out))
}

/// Makes the plan's networks that do not exist yet, with subnets as the plan says (fixed, or carved from the pools
/// under the allocation lock, like an environment's). Idempotent: existing tier networks are left as they are. A
/// network of the same name that orch did not make is an error, and then nothing is created.
pub async fn create<E: Engine>(engine: &E, project: &impl TierProject, lock_timeout: Duration) -> Result<Report, Error> {
    // One `create` per project at a time: a second one waits, then finds the tiers made.
    let _turn = {
        let (state, name) = (project.state().clone(), project.name().to_string());
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        crate::blocking(move || state.lock_env(&name, TIER_ENV, &command, lock_timeout)).await??
    };
    let facts = crate::engine::gather_facts(engine).await?;
    let mut policy = tier_plan(project, &facts)?;
    let want = planned(&policy);
    let have = existing(engine, project.name()).await?;
    let mut foreign = vec![];
    for tier in want.keys().filter(|t| !have.contains_key(*t)) {
        let name = tier_name(project, tier);
        if engine.list_networks().await?.iter().any(|n| n.name == name && !is_tier_summary(n, project.name(), tier)) {
            foreign.push(format!("{name} (tier {tier})"));
        }
    }
    if !foreign.is_empty() {
        return Err(Error::Conflict(format!(
            "network(s) {} exist but orch did not make them as tiers of project {}; remove or rename them (orch never touches them)",
            foreign.join(", "),
            project.name()
        )));
    }
    let mut created = BTreeMap::new();
    if want.keys().any(|t| !have.contains_key(t)) {
        // Only networks are made: the services' host ports must not stop (or be checked for) a tier.
        for s in policy.services.values_mut() {
            s.ports.clear();
        }
        let mut result = Ok(());
        let mut refused: Vec<ipnet::Ipv4Net> = vec![];
        // A subnet the engine refuses was taken after planning (another user's orch, another tool): carve again
        // around what the engine holds now, a bounded number of times.
        let backoff = crate::planner::SUBNET_BACKOFF;
        for attempt in 0..backoff.attempts {
            // The tiers that exist stay as they are: to this plan they are external, as to an environment that joins.
            let have = existing(engine, project.name()).await?;
            let mut attempt_policy = policy.clone();
            join_existing(&mut attempt_policy, &have);
            result = match project.planner().allocate(engine, project.state(), &attempt_policy, lock_timeout, &refused).await {
                Ok(plan) => make(engine, project, &plan, &mut created).await,
                Err(e) => Err(e),
            };
            if let Some((what, subnet, _)) = result.as_ref().err().and_then(crate::planner::refused_subnet) {
                if backoff.again(attempt) {
                    refused.extend(subnet.parse::<ipnet::Ipv4Net>().ok());
                    tokio::time::sleep(backoff.delay(attempt)).await;
                    continue;
                }
                result = Err(project.planner().subnets_kept_taken(what, subnet));
            }
            break;
        }
        project.release_reservation(TIER_ENV).await;
        if let Err(e) = result {
            // Half a set of tiers is worse than none: what this call made goes again.
            for id in created.values() {
                let _ = engine.remove_network(id).await;
            }
            return Err(e);
        }
    }
    let mut report = compare(engine, project, &want).await?;
    for s in &mut report.networks {
        s.created = created.contains_key(&s.tier);
    }
    Ok(report)
}

/// Makes each network of `plan` that `have` has into that tier network, external to the plan; returns which.
fn join_existing(plan: &mut Plan, have: &BTreeMap<String, NetworkInfo>) -> Vec<(String, String)> {
    let mut joined = vec![];
    for (tier, n) in plan.networks.iter_mut().filter(|(_, n)| !n.external) {
        let Some(info) = have.get(tier) else { continue };
        n.external = true;
        n.docker_name = info.name.clone();
        n.subnet = info.subnets.first().cloned();
        joined.push((tier.clone(), info.name.clone()));
    }
    joined
}

fn is_tier_summary(n: &crate::engine::NetworkSummary, project: &str, tier: &str) -> bool {
    n.labels.get(labels::PROJECT).map(String::as_str) == Some(project) && n.labels.get(labels::TIER).map(String::as_str) == Some(tier)
}

/// Makes the plan's networks; `created` gets each new tier's network id.
async fn make<E: Engine>(engine: &E, project: &impl TierProject, plan: &Plan, created: &mut BTreeMap<String, String>) -> Result<(), Error> {
    for (tier, n) in plan.networks.iter().filter(|(_, n)| !n.external) {
        let name = tier_name(project, tier);
        let spec = crate::lifecycle::network_spec(n, &name, &tier_labels(project.name(), tier));
        match engine.create_network(&spec).await {
            Ok(id) => {
                // Another `orch network create` (another user's, without this state directory's lock) may have made
                // the same tier at the same moment, and engines before API 1.44 keep both. The one with the smallest
                // id stays, whoever looks: that one is the tier, for both.
                let twins: Vec<String> =
                    engine.list_networks().await?.into_iter().filter(|o| o.name == name && is_tier_summary(o, project.name(), tier)).map(|o| o.id).collect();
                if twins.iter().any(|t| *t < id) {
                    engine.remove_network(&id).await?;
                } else {
                    created.insert(tier.clone(), id);
                }
            }
            // API 1.44 and later refuse the second one: another `orch network create` made it meanwhile, and that is
            // this call's outcome too.
            Err(EngineError::Conflict(_)) if engine.list_networks().await?.iter().any(|o| o.name == name && is_tier_summary(o, project.name(), tier)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Removes the project's tier networks (only `tiers`, when given). While containers are attached this refuses,
/// naming them, unless `force` (they are disconnected first). Nothing is removed when one is refused. Idempotent: no
/// tier networks is success.
pub async fn remove<E: Engine>(engine: &E, project: &str, tiers: &[String], force: bool) -> Result<Report, Error> {
    let have = existing(engine, project).await?;
    // A tier that is gone already is not an error: removal is idempotent, as everywhere in orch.
    let chosen: Vec<(&String, &NetworkInfo)> = have.iter().filter(|(t, i)| tiers.is_empty() || tiers.contains(t) || tiers.contains(&i.name)).collect();
    if !force {
        let busy: Vec<String> =
            chosen.iter().filter(|(_, i)| !i.containers.is_empty()).map(|(_, i)| format!("{} ({})", i.name, i.containers.join(", "))).collect();
        if !busy.is_empty() {
            return Err(Error::InUse(format!(
                "containers are attached to {}; disconnect them (`orch network disconnect TIER CONTAINER`) or pass --force",
                busy.join("; ")
            )));
        }
    }
    let mut out = vec![];
    for (tier, info) in chosen {
        engine.remove_network(&info.id).await?;
        let mut s = status_of(tier, &info.name, None, Some(info), project);
        s.removed = true;
        s.exists = false;
        s.differences.clear();
        out.push(s);
    }
    Ok(Report::new(project, out))
}

/// The tier network `tier` (its name in the plan, or its engine-side name) of `project`.
async fn find<E: Engine>(engine: &E, project: &str, tier: &str) -> Result<NetworkInfo, Error> {
    let have = existing(engine, project).await?;
    have.get(tier).or_else(|| have.values().find(|i| i.name == tier)).cloned().ok_or_else(|| {
        Error::NotFound(format!(
            "project {project} has no tier network {tier:?}{}; `orch network create` makes the plan's networks",
            if have.is_empty() { String::new() } else { format!(" (it has {})", have.keys().cloned().collect::<Vec<_>>().join(", ")) }
        ))
    })
}

/// Attaches any container (one of orch's or not) to a tier network, reachable there as `aliases` too. Idempotent.
pub async fn connect<E: Engine>(engine: &E, project: &str, tier: &str, container: &str, aliases: &[String]) -> Result<Report, Error> {
    let info = find(engine, project, tier).await?;
    engine.connect_network(&info.id, container, aliases).await?;
    let tier_key = info.labels.get(labels::TIER).cloned().unwrap_or_default();
    let now = engine.network_info(&info.id).await?;
    Ok(Report::new(project, vec![status_of(&tier_key, &info.name, None, Some(&now), project)]).without_plan())
}

/// Detaches a container from a tier network. Idempotent.
pub async fn disconnect<E: Engine>(engine: &E, project: &str, tier: &str, container: &str) -> Result<Report, Error> {
    let info = find(engine, project, tier).await?;
    engine.disconnect_network(&info.id, container).await?;
    let tier_key = info.labels.get(labels::TIER).cloned().unwrap_or_default();
    let now = engine.network_info(&info.id).await?;
    Ok(Report::new(project, vec![status_of(&tier_key, &info.name, None, Some(&now), project)]).without_plan())
}

impl Report {
    /// For `connect` and `disconnect`, which do not make a plan: no verdict about it.
    fn without_plan(mut self) -> Report {
        for s in &mut self.networks {
            s.in_plan = false;
            s.matches_plan = false;
            s.differences.clear();
        }
        self
    }
}

/// Makes an environment's plan join the project's tier networks instead of creating its own: each of its networks
/// becomes the tier of the same name (external to the environment, so `down` leaves it). A missing tier is an error
/// naming it.
pub async fn join<E: Engine>(engine: &E, project: &str, plan: &mut Plan) -> Result<(), Error> {
    // The networks the plugins left unused (the compose file's implicit `default`, once every service is on a tier)
    // are no tiers: `orch network create` does not make them, so the join does not look for them.
    crate::resolve::prune_unused_networks(plan);
    let have = existing(engine, project).await?;
    let missing: Vec<&String> = plan.networks.iter().filter(|(t, n)| !n.external && !have.contains_key(*t)).map(|(t, _)| t).collect();
    if !missing.is_empty() {
        return Err(Error::NotFound(format!(
            "the environment joins project {project}'s tier networks, but {} do(es) not exist; `orch network create` makes them",
            missing.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    for (tier, name) in join_existing(plan, &have) {
        plan.diagnose(Level::Info, "plan.joins-tier", format!("network {tier} is the tier network {name}"), Some(format!("networks.{tier}")), "orch");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;
    use crate::session::{Project, ProjectOptions};

    fn project(dir: &std::path::Path) -> Project {
        std::fs::write(
            dir.join("compose.yaml"),
            "name: shop\nservices:\n  web:\n    image: img\n    networks: [front, back]\nnetworks:\n  front: {}\n  back:\n    name: shop-backend\n    internal: true\n    ipam:\n      config:\n        - subnet: 10.240.1.0/24\n",
        )
        .unwrap();
        let state = dir.join("state");
        Project::open(&ProjectOptions { dir: Some(dir.to_path_buf()), state_dir: Some(state), environment: Some(Default::default()), ..Default::default() })
            .unwrap()
    }

    #[tokio::test]
    async fn create_is_idempotent_and_an_environment_joins_what_it_made() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let engine = FakeEngine::new().with_images(&["img"]);
        let first = create(&engine, &p, Duration::from_secs(5)).await.unwrap();
        assert!(first.networks.iter().all(|n| n.created && n.matches_plan), "{first:?}");
        // The compose file's `name:` names a tier; the others are <project>-<network>.
        let names: Vec<&str> = first.networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["shop-backend", "shop-front"]);
        let second = create(&engine, &p, Duration::from_secs(5)).await.unwrap();
        assert!(second.networks.iter().all(|n| !n.created && n.matches_plan), "{second:?}");
        assert_eq!(engine.journal().iter().filter(|j| j.starts_with("create-network")).count(), 2, "made once");
        assert_eq!(engine.network_names(), ["shop-backend", "shop-front"]);

        let facts = crate::engine::gather_facts(&engine).await.unwrap();
        let mut plan = p.policy_plan_for("e1", &facts).unwrap().plan;
        join(&engine, "shop", &mut plan).await.unwrap();
        assert!(plan.networks.values().all(|n| n.external), "{:?}", plan.networks);
        assert_eq!(plan.networks["back"].docker_name, "shop-backend");
        assert_eq!(plan.networks["back"].subnet.as_deref(), Some("10.240.1.0/24"));
        // The joined plan is valid although its fixed subnet is taken: by the tier itself.
        p.planner().finish(&mut plan, &facts).unwrap();
        assert_eq!(plan.networks.len(), 2);
    }

    #[tokio::test]
    async fn two_creates_at_once_both_succeed_and_make_each_tier_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let engine = FakeEngine::new().with_images(&["img"]);
        let (a, b) = tokio::join!(create(&engine, &p, Duration::from_secs(5)), create(&engine, &p, Duration::from_secs(5)));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.networks.iter().chain(&b.networks).all(|n| n.exists && n.matches_plan), "{a:?} {b:?}");
        assert_eq!(engine.network_names(), ["shop-backend", "shop-front"]);
        let made: usize = [&a, &b].iter().map(|r| r.networks.iter().filter(|n| n.created).count()).sum();
        assert_eq!(made, engine.journal().iter().filter(|j| j.starts_with("create-network")).count(), "created means this call made it");
    }

    #[tokio::test]
    async fn rm_refuses_while_attached_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let engine = FakeEngine::new().with_images(&["img"]);
        create(&engine, &p, Duration::from_secs(5)).await.unwrap();
        engine.plant_container("notebook", BTreeMap::new());
        connect(&engine, "shop", "front", "notebook", &[]).await.unwrap();
        let err = remove(&engine, "shop", &[], false).await.unwrap_err();
        assert!(matches!(err, Error::InUse(_)) && err.to_string().contains("shop-front (notebook)"), "{err}");
        assert_eq!(engine.network_names().len(), 2, "nothing removed");
        // The free tier can go alone; --force takes the rest.
        assert!(remove(&engine, "shop", &["back".into()], false).await.unwrap().networks[0].removed);
        assert!(remove(&engine, "shop", &[], true).await.unwrap().networks[0].removed);
        assert!(engine.network_names().is_empty());
        let err = connect(&engine, "shop", "front", "notebook", &[]).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)) && err.to_string().contains("orch network create"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_tier_stops_an_environment_that_joins() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path());
        let engine = FakeEngine::new().with_images(&["img"]);
        let facts = crate::engine::gather_facts(&engine).await.unwrap();
        let mut plan = p.plan(Some("e1"), &facts).unwrap().plan;
        let err = join(&engine, "shop", &mut plan).await.unwrap_err();
        assert!(err.to_string().contains("back, front"), "{err}");
    }

    #[tokio::test]
    async fn a_join_follows_the_resolved_plan_not_the_compose_files_network_list() {
        // `default` is declared but no service is left on it (as when plugins move every service to tiers): the
        // tiers are `front` alone, and an environment joins them.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "name: shop\nservices:\n  web:\n    image: img\n    networks: [front]\nnetworks:\n  default: {}\n  front: {}\n",
        )
        .unwrap();
        let state = dir.path().join("state");
        let p = Project::open(&ProjectOptions {
            dir: Some(dir.path().to_path_buf()),
            state_dir: Some(state),
            environment: Some(Default::default()),
            ..Default::default()
        })
        .unwrap();
        let engine = FakeEngine::new().with_images(&["img"]);
        let made = create(&engine, &p, Duration::from_secs(5)).await.unwrap();
        assert_eq!(made.networks.iter().map(|n| n.tier.as_str()).collect::<Vec<_>>(), ["front"]);
        let facts = crate::engine::gather_facts(&engine).await.unwrap();
        let mut plan = p.policy_plan_for("e1", &facts).unwrap().plan;
        join(&engine, "shop", &mut plan).await.expect("default is no tier: the join does not look for it");
        assert!(plan.networks["front"].external && !plan.networks.contains_key("default"), "{:?}", plan.networks.keys());
    }
}
