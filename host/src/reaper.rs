//! Cleanup that never leaks: which environments are orphans, the detached watcher that removes an environment when
//! the process creating it dies (even by `kill -9`), opportunistic reaping, and `orch gc`.
//!
//! Everything is decided from engine labels alone. An environment is **complete** once `up` created its ready
//! marker (a volume labelled `orch.marker`, created last). An environment is an **orphan** when
//! - its owner process is dead and it was never completed (the owner died while creating or waiting), or
//! - it is complete with `orch.lifetime=process` (an `orch run` environment) and its owner is dead, or
//! - its lease (`orch.expires`, unix seconds) has passed.
//!
//! Complete `orch up` environments live until `orch down` (or their `--ttl`), whoever's process made them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::claim::{self, Taken};
use crate::engine::{Engine, EngineError};
use crate::labels::{self, CLAIM, CLAIMED, EXPIRES, LIFETIME, MARKER, POOL};
use crate::lifecycle;
use crate::owner::Owner;

pub use crate::clock::now;
pub use crate::marker::{Lifetime, mark_ready, marker_name};
pub use crate::verdict::{EnvInfo, Verdict};

/// Every orch environment on the engine (from three list calls).
pub async fn environments<E: Engine>(engine: &E) -> Result<Vec<EnvInfo>, EngineError> {
    environments_matching(engine, &labels::any_env()).await
}

/// `project`'s environment `env` as the engine has it now, if it has anything of it.
pub async fn environment<E: Engine>(engine: &E, project: &str, env: &str) -> Result<Option<EnvInfo>, EngineError> {
    Ok(environments_matching(engine, &labels::env_filter(Some(project), env)).await?.into_iter().find(|e| e.project == project && e.env == env))
}

async fn environments_matching<E: Engine>(engine: &E, filter: &[String]) -> Result<Vec<EnvInfo>, EngineError> {
    let any = filter.to_vec();
    let (containers, networks, volumes) = tokio::try_join!(engine.containers_labelled(&any), engine.networks_labelled(&any), engine.volumes_labelled(&any))?;
    let mut envs: BTreeMap<(String, String), EnvInfo> = BTreeMap::new();
    let mut note = |l: &BTreeMap<String, String>| -> Option<(String, String)> {
        let key = (l.get(labels::PROJECT).cloned().unwrap_or_default(), l.get(labels::ENV).cloned()?);
        let e = envs.entry(key.clone()).or_insert_with(|| EnvInfo {
            project: key.0.clone(),
            env: key.1.clone(),
            owner: None,
            uid: None,
            created: u64::MAX,
            containers: 0,
            networks: 0,
            volumes: 0,
            marker: None,
            claim: None,
        });
        if e.owner.is_none() {
            e.owner = l.get(labels::OWNER).and_then(|o| Owner::parse(o));
        }
        if e.uid.is_none() {
            e.uid = l.get(labels::OWNER_UID).and_then(|u| u.parse().ok());
        }
        if let Some(c) = l.get(labels::CREATED).and_then(|c| c.parse().ok()) {
            e.created = e.created.min(c);
        }
        Some(key)
    };
    // ((project, env), resource kind, a marker's labels)
    let mut counts: Vec<((String, String), u8, Option<crate::engine::Labels>)> = vec![];
    for c in &containers {
        if let Some(k) = note(&c.labels) {
            counts.push((k, 0, None));
        }
    }
    for n in &networks {
        if let Some(k) = note(&n.labels) {
            counts.push((k, 1, None));
        }
    }
    let mut claims = vec![];
    let mut deeds = vec![];
    for (_, l) in &volumes {
        if l.contains_key(CLAIMED) {
            // A claimed pool member's deed: applied last, as it replaces the keeper's ownership.
            deeds.push(l);
        } else if l.contains_key(CLAIM) {
            // A removal claim says who is removing the environment and counts as none of its resources; it is noted
            // after everything else, so that the environment's owner and uid come from its own resources.
            claims.push(l);
        } else if let Some(k) = note(l) {
            counts.push((k, 2, l.contains_key(MARKER).then(|| l.clone())));
        }
    }
    let claims: Vec<_> = claims.into_iter().filter_map(|l| Some((note(l)?, l.get(CLAIM).and_then(|h| claim::holder(h))))).collect();
    let deeds: Vec<_> = deeds.into_iter().filter_map(|l| Some((note(l)?, l))).collect();
    for (k, kind, marker) in counts {
        let e = envs.get_mut(&k).expect("noted above");
        match (kind, marker) {
            (0, _) => e.containers += 1,
            (1, _) => e.networks += 1,
            (_, Some(m)) => e.marker = Some(m),
            _ => e.volumes += 1,
        }
    }
    for (k, holder) in claims {
        envs.get_mut(&k).expect("noted above").claim = holder;
    }
    for (k, deed) in deeds {
        apply_deed(envs.get_mut(&k).expect("noted above"), deed);
    }
    Ok(envs
        .into_values()
        .map(|mut e| {
            if e.created == u64::MAX {
                e.created = 0;
            }
            e
        })
        .collect())
}

/// A claimed pool member belongs to its claimer: the deed's owner and uid replace the keeper's, and while the marker
/// is still the keeper's (labelled with the pool key) the deed's lifetime and lease replace the marker's. A marker
/// written since (`keep`) is the claimer's own and rules.
fn apply_deed(e: &mut EnvInfo, deed: &BTreeMap<String, String>) {
    e.owner = deed.get(CLAIMED).and_then(|h| claim::holder(h));
    e.uid = deed.get(labels::OWNER_UID).and_then(|u| u.parse().ok());
    if let Some(m) = e.marker.as_mut().filter(|m| m.contains_key(POOL)) {
        for key in [LIFETIME, EXPIRES] {
            match deed.get(key) {
                Some(v) => m.insert(key.to_string(), v.clone()),
                None => m.remove(key),
            };
        }
    }
}

/// Removes one environment completely, its volumes and marker included.
pub async fn remove<E: Engine>(engine: &E, project: &str, env: &str) -> Result<lifecycle::Removed, EngineError> {
    lifecycle::down(engine, &labels::env_filter(Some(project), env), true).await
}

/// What `gc` did: the environments it removed (or, dry, would remove), and those it could not remove with why. One
/// environment the engine will not remove (a network it says still has endpoints, a daemon bug a restart clears)
/// does not keep the others from being reaped.
#[derive(Debug, Default)]
pub struct GcReport {
    pub reaped: Vec<Reaped>,
    pub failed: Vec<(Reaped, EngineError)>,
}

/// What `gc` (or opportunistic reaping) found and did with one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    pub project: String,
    pub env: String,
    pub reason: String,
    pub removed: Option<lifecycle::Removed>,
}

/// Options of `orch gc`.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    pub dry_run: bool,
    /// Only environments created at least this long ago.
    pub older_than: Option<Duration>,
    /// Also kept environments (not live ones: a live owner is using them).
    pub all: bool,
    /// Only environments of this project.
    pub project: Option<String>,
    /// Only environments this user's orch made (`orch.owner-uid`): what an `up` or `down` reaps by the way.
    pub mine_only: bool,
    /// How long to wait for another live process already removing an environment (a watcher, a `down`) before
    /// leaving it to that process: `orch gc` waits, reaping by the way does not.
    pub patience: Duration,
}

/// Finds orphans (and with `all`, kept environments) and removes them unless `dry_run`.
pub async fn gc<E: Engine>(engine: &E, opts: &GcOptions) -> Result<GcReport, EngineError> {
    let now = now();
    let mut out = GcReport::default();
    let chosen = |v: Verdict| match v {
        Verdict::Orphan(why) => Some(why),
        Verdict::Kept if opts.all => Some("kept environment (--all)".into()),
        _ => None,
    };
    for e in environments(engine).await? {
        if opts.project.as_ref().is_some_and(|p| *p != e.project) || (opts.mine_only && e.uid != Some(labels::my_uid())) {
            continue;
        }
        if let Some(age) = opts.older_than
            && now.saturating_sub(e.created) < age.as_secs()
        {
            continue;
        }
        let verdict = e.verdict(now);
        // Another process is removing it: an explicit gc waits for that to end and looks again (what it left, if
        // it died half-way, is an orphan then); reaping by the way leaves it.
        let awaited = matches!(verdict, Verdict::Removing(_)) && !opts.patience.is_zero() && !opts.dry_run;
        let Some(reason) = chosen(verdict).or_else(|| awaited.then(String::new)) else { continue };
        let mut reaped = Reaped { project: e.project.clone(), env: e.env.clone(), reason, removed: None };
        if opts.dry_run {
            out.reaped.push(reaped);
            continue;
        }
        match reap(engine, &e, opts.patience, |fresh, alive| chosen(fresh.verdict_given(now, alive))).await {
            Ok(None) => {}
            Ok(Some((reason, removed))) => {
                reaped.reason = reason;
                reaped.removed = Some(removed);
                out.reaped.push(reaped);
            }
            Err(e) => {
                tracing::debug!(project = %reaped.project, env = %reaped.env, error = %e, "could not reap an orphaned environment");
                out.failed.push((reaped, e));
            }
        }
    }
    Ok(out)
}

/// Removes environment `e` under its claim if `still` says so of a fresh look at it (given its owner's liveness, found
/// before that look: see [`EnvInfo::verdict_given`]). `None` when another live process is removing it, it is gone,
/// or the fresh look changed the verdict (its owner completed it just before it exited).
async fn reap<E: Engine>(
    engine: &E,
    e: &EnvInfo,
    patience: Duration,
    still: impl Fn(&EnvInfo, bool) -> Option<String>,
) -> Result<Option<(String, lifecycle::Removed)>, EngineError> {
    let claim = match claim::wait(engine, &e.project, &e.env, patience).await? {
        Taken::Held(c) => Some(c),
        Taken::Busy(holder) => {
            tracing::debug!(project = %e.project, env = %e.env, pid = holder.pid, "left to the process removing it");
            return Ok(None);
        }
        Taken::Unclaimable => None,
    };
    let owner_alive = e.owner.as_ref().is_some_and(Owner::is_alive);
    let result = async {
        let Some(mut fresh) = environment(engine, &e.project, &e.env).await? else { return Ok(None) };
        // The claim on it is this call's own.
        fresh.claim = None;
        match still(&fresh, owner_alive) {
            Some(reason) => Ok(Some((reason, lifecycle::down_claimed(engine, &labels::env_filter(Some(&e.project), &e.env), true).await?))),
            None => {
                tracing::debug!(project = %e.project, env = %e.env, "no longer to be removed on a second look");
                Ok(None)
            }
        }
    }
    .await;
    claim::released(engine, claim, result).await
}

/// Watches `owner` (the process running `up`, or the process an environment was made for); when it dies, removes
/// every environment it owns except those completed with a kept lifetime. Runs in the detached `orch __watch` process,
/// one per owner however many environments it makes (see [`crate::state::StateDir::watcher_lock`]).
pub async fn watch<E: Engine>(engine: &E, owner: &Owner) -> Result<lifecycle::Removed, EngineError> {
    while owner.is_alive() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut total = lifecycle::Removed::default();
    let kept = |e: &EnvInfo| e.marker.as_ref().is_some_and(|m| m.get(LIFETIME).map(String::as_str) == Some("kept"));
    // The owner may have been mid-way through creating things; removal is idempotent, so sweep twice.
    for sweep in 0..2 {
        if sweep > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for e in environments(engine).await? {
            if e.owner.as_ref() != Some(owner) || kept(&e) {
                continue;
            }
            // The owner is dead (so the listing is final), but `down` or a reaper may be removing it already.
            if let Some((_, r)) = reap(engine, &e, Duration::ZERO, |fresh, _| (!kept(fresh)).then(String::new)).await? {
                total.containers += r.containers;
                total.networks += r.networks;
                total.volumes += r.volumes;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::EXPIRES;

    fn info(owner: Option<Owner>, marker: Option<&[(&str, &str)]>) -> EnvInfo {
        EnvInfo {
            project: "p".into(),
            env: "e".into(),
            owner,
            uid: None,
            created: 0,
            containers: 1,
            networks: 1,
            volumes: 0,
            claim: None,
            marker: marker.map(|m| m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        }
    }

    #[tokio::test]
    async fn the_watcher_removes_every_environment_of_its_dead_owner_but_kept_ones_and_no_others() {
        use crate::engine::fake::FakeEngine;
        let me = Owner::current();
        let dead = Owner { start_time: me.start_time + 1, ..me.clone() };
        let engine = FakeEngine::new();
        let plant = |env: &str, owner: &Owner| {
            let l = BTreeMap::from([
                (labels::ENV.to_string(), env.to_string()),
                (labels::PROJECT.to_string(), "w".to_string()),
                (labels::OWNER.to_string(), owner.label()),
            ]);
            engine.plant_container(&format!("w-{env}-app"), l);
        };
        plant("a", &dead);
        plant("b", &dead);
        plant("kept", &dead);
        plant("other", &me);
        let env_labels = BTreeMap::from([(labels::ENV.to_string(), "kept".to_string()), (labels::PROJECT.to_string(), "w".to_string())]);
        mark_ready(&engine, &env_labels, "w", "kept", Lifetime::Kept { expires: None }).await.unwrap();
        let removed = watch(&engine, &dead).await.unwrap();
        assert_eq!(removed.containers, 2);
        assert_eq!(engine.container_names(), vec!["w-kept-app".to_string(), "w-other-app".to_string()]);
    }

    /// An environment the engine will not remove does not keep gc from the others, and it is reported with why.
    #[tokio::test]
    async fn gc_reaps_every_orphan_it_can_and_reports_the_one_it_cannot() {
        use crate::engine::fake::FakeEngine;
        let me = Owner::current();
        let dead = Owner { start_time: me.start_time + 1, ..me.clone() };
        let engine = FakeEngine::new();
        for env in ["a", "b", "c"] {
            let l = BTreeMap::from([
                (labels::ENV.to_string(), env.to_string()),
                (labels::PROJECT.to_string(), "g".to_string()),
                (labels::OWNER.to_string(), dead.label()),
            ]);
            engine.plant_container(&format!("g-{env}-app"), l.clone());
            engine.plant_network(&format!("g__{env}__default"), l);
        }
        // The first in order is stuck.
        engine.stick_network("g__a__default");
        let report = gc(&engine, &GcOptions::default()).await.unwrap();
        assert_eq!(report.reaped.iter().map(|r| r.env.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(report.failed.len(), 1);
        let (stuck, error) = &report.failed[0];
        assert_eq!(stuck.env, "a");
        assert!(matches!(error, EngineError::Api { status: 403, .. }), "{error}");
        assert_eq!(engine.network_names(), ["g__a__default"]);
        assert!(engine.container_names().is_empty(), "the stuck environment's container went, its network stays");
    }

    /// A fake engine, a dead owner, and the labels of environment `e` of project `p` made by it.
    fn dead_owners_environment() -> (crate::engine::fake::FakeEngine, Owner, BTreeMap<String, String>) {
        let me = Owner::current();
        let dead = Owner { start_time: me.start_time + 1, ..me.clone() };
        let l = BTreeMap::from([
            (labels::ENV.to_string(), "e".to_string()),
            (labels::PROJECT.to_string(), "p".to_string()),
            (labels::OWNER.to_string(), dead.label()),
        ]);
        (crate::engine::fake::FakeEngine::new(), dead, l)
    }

    /// A gc that listed an environment before its owner completed it (the marker came just before the owner
    /// exited) looks again, owner's death first, and leaves it: kept environments are never reaped on a stale look.
    #[tokio::test]
    async fn a_stale_look_at_an_environment_completed_since_reaps_nothing() {
        let (engine, _, l) = dead_owners_environment();
        engine.plant_container("p-e-app", l.clone());
        let stale = environment(&engine, "p", "e").await.unwrap().unwrap();
        assert!(matches!(stale.verdict(now()), Verdict::Orphan(_)));
        mark_ready(&engine, &l, "p", "e", Lifetime::Kept { expires: None }).await.unwrap();
        let chosen = |fresh: &EnvInfo, alive| match fresh.verdict_given(now(), alive) {
            Verdict::Orphan(why) => Some(why),
            _ => None,
        };
        assert_eq!(reap(&engine, &stale, Duration::ZERO, chosen).await.unwrap(), None);
        assert_eq!(engine.container_names(), ["p-e-app"]);
        assert_eq!(engine.volume_names(), [marker_name("p", "e")], "the marker stays and the claim was given up");
    }

    /// An environment a live process is removing (it holds the claim, its marker gone) is nobody else's: gc leaves
    /// it, and `down` waits for the holder rather than race it. A dead holder's claim does not protect anything.
    #[tokio::test]
    async fn a_held_claim_keeps_gc_away_and_makes_down_wait() {
        let (engine, dead, l) = dead_owners_environment();
        let me = Owner::current();
        engine.plant_container("p-e-app", l.clone());
        engine.plant_network("p__e__default", l);
        let Taken::Held(held) = claim::try_take(&engine, "p", "e").await.unwrap() else { panic!("no claim") };
        let envs = environments(&engine).await.unwrap();
        assert_eq!(envs.len(), 1);
        assert_eq!(envs[0].volumes, 0, "a claim is none of the environment's volumes");
        assert_eq!(envs[0].verdict(now()), Verdict::Removing(me));
        let report = gc(&engine, &GcOptions::default()).await.unwrap();
        assert!(report.reaped.is_empty() && report.failed.is_empty());
        assert_eq!(engine.container_names(), ["p-e-app"]);

        let filter = labels::env_filter(Some("p"), "e");
        let (removed, ()) = tokio::join!(lifecycle::down(&engine, &filter, true), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(engine.container_names(), ["p-e-app"], "down waits for the holder");
            held.release(&engine).await.unwrap();
        });
        assert_eq!(removed.unwrap().containers, 1);
        assert!(engine.container_names().is_empty() && engine.network_names().is_empty() && engine.volume_names().is_empty());

        // A claim whose holder died (a `down` killed half-way) is the orphan's last remains: gc takes it over.
        engine.plant_container("p-e-app", BTreeMap::from([(labels::ENV.to_string(), "e".to_string()), (labels::PROJECT.to_string(), "p".to_string())]));
        let stale = [
            (labels::ENV.to_string(), "e".to_string()),
            (labels::PROJECT.to_string(), "p".to_string()),
            (labels::CLAIM.to_string(), format!("{}#3", dead.label())),
        ];
        engine.create_volume(&crate::engine::VolumeSpec { name: claim::claim_name("p", "e"), labels: stale.into(), ..Default::default() }).await.unwrap();
        let report = gc(&engine, &GcOptions::default()).await.unwrap();
        assert_eq!(report.reaped.len(), 1, "{report:?}");
        assert!(engine.container_names().is_empty() && engine.volume_names().is_empty());
    }

    #[test]
    fn verdicts() {
        let me = Owner::current();
        let dead = Owner { start_time: me.start_time + 1, ..me.clone() };
        assert_eq!(info(Some(me.clone()), None).verdict(10), Verdict::Live);
        assert!(matches!(info(Some(dead.clone()), None).verdict(10), Verdict::Orphan(_)));
        assert_eq!(info(Some(dead.clone()), Some(&[(LIFETIME, "kept")])).verdict(10), Verdict::Kept);
        assert!(matches!(info(Some(dead.clone()), Some(&[(LIFETIME, "process")])).verdict(10), Verdict::Orphan(_)));
        assert!(matches!(info(Some(me), Some(&[(LIFETIME, "kept"), (EXPIRES, "5")])).verdict(10), Verdict::Orphan(r) if r.contains("lease")));
        assert_eq!(info(Some(dead), Some(&[(LIFETIME, "kept"), (EXPIRES, "50")])).verdict(10), Verdict::Kept);
        assert!(matches!(info(None, None).verdict(10), Verdict::Orphan(_)));
    }

    /// A claimed pool member is its claimer's: the deed's owner and lifetime decide, the keeper's no longer do; a
    /// marker the claimer wrote since (`keep`) rules over the deed's lifetime.
    #[tokio::test]
    async fn a_deed_hands_a_pool_member_to_its_claimer() {
        let (engine, dead_keeper, mut l) = dead_owners_environment();
        l.insert(POOL.into(), "k".into());
        engine.plant_container("p-e-app", l.clone());
        mark_ready(&engine, &l, "p", "e", Lifetime::Process).await.unwrap();
        assert!(matches!(environment(&engine, "p", "e").await.unwrap().unwrap().verdict(now()), Verdict::Orphan(_)), "an unclaimed member of a dead keeper");

        let deed = |owner: &Owner, lifetime: &str| {
            let labels = BTreeMap::from([
                (labels::ENV.to_string(), "e".to_string()),
                (labels::PROJECT.to_string(), "p".to_string()),
                (CLAIMED.to_string(), format!("{}#0", owner.label())),
                (LIFETIME.to_string(), lifetime.to_string()),
            ]);
            crate::engine::VolumeSpec { name: crate::pool::deed_name("p", "e"), labels, ..Default::default() }
        };
        engine.create_volume(&deed(&Owner::current(), "process")).await.unwrap();
        let e = environment(&engine, "p", "e").await.unwrap().unwrap();
        assert_eq!(e.owner, Some(Owner::current()));
        assert_eq!(e.verdict(now()), Verdict::Live, "its live claimer uses it, whatever became of the keeper");
        assert_eq!(watch(&engine, &dead_keeper).await.unwrap(), lifecycle::Removed::default(), "the keeper's watcher leaves it");

        engine.remove_volume(&crate::pool::deed_name("p", "e")).await.unwrap();
        engine.create_volume(&deed(&dead_keeper, "kept")).await.unwrap();
        assert_eq!(environment(&engine, "p", "e").await.unwrap().unwrap().verdict(now()), Verdict::Kept, "the deed's lifetime replaces the keeper's marker's");
        crate::marker::keep(&engine, "p", "e", Some(1)).await.unwrap();
        assert!(
            matches!(environment(&engine, "p", "e").await.unwrap().unwrap().verdict(now()), Verdict::Orphan(r) if r.contains("lease")),
            "a marker written since rules"
        );
    }
}
