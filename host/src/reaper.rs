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

use crate::engine::{Engine, EngineError};
use crate::labels::{self, LIFETIME, MARKER};
use crate::lifecycle;
use crate::owner::Owner;

pub use crate::clock::now;
pub use crate::marker::{Lifetime, mark_ready, marker_name};
pub use crate::verdict::{EnvInfo, Verdict};

/// Every orch environment on the engine (from three list calls).
pub async fn environments<E: Engine>(engine: &E) -> Result<Vec<EnvInfo>, EngineError> {
    let any = vec![labels::ENV.to_string()];
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
    for (_, l) in &volumes {
        if let Some(k) = note(l) {
            counts.push((k, 2, l.contains_key(MARKER).then(|| l.clone())));
        }
    }
    for (k, kind, marker) in counts {
        let e = envs.get_mut(&k).expect("noted above");
        match (kind, marker) {
            (0, _) => e.containers += 1,
            (1, _) => e.networks += 1,
            (_, Some(m)) => e.marker = Some(m),
            _ => e.volumes += 1,
        }
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
}

/// Finds orphans (and with `all`, kept environments) and removes them unless `dry_run`.
pub async fn gc<E: Engine>(engine: &E, opts: &GcOptions) -> Result<GcReport, EngineError> {
    let now = now();
    let mut out = GcReport::default();
    for e in environments(engine).await? {
        if opts.project.as_ref().is_some_and(|p| *p != e.project) || (opts.mine_only && e.uid != Some(labels::my_uid())) {
            continue;
        }
        if let Some(age) = opts.older_than
            && now.saturating_sub(e.created) < age.as_secs()
        {
            continue;
        }
        let reason = match e.verdict(now) {
            Verdict::Orphan(why) => why,
            Verdict::Kept if opts.all => "kept environment (--all)".into(),
            _ => continue,
        };
        let mut reaped = Reaped { project: e.project, env: e.env, reason, removed: None };
        if opts.dry_run {
            out.reaped.push(reaped);
            continue;
        }
        match remove(engine, &reaped.project, &reaped.env).await {
            Ok(removed) => {
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

/// Watches `owner` (the process running `up`, or the process an environment was made for); when it dies, removes
/// every environment it owns except those completed with a kept lifetime. Runs in the detached `orch __watch` process,
/// one per owner however many environments it makes (see [`crate::state::StateDir::watcher_lock`]).
pub async fn watch<E: Engine>(engine: &E, owner: &Owner) -> Result<lifecycle::Removed, EngineError> {
    while owner.is_alive() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut total = lifecycle::Removed::default();
    // The owner may have been mid-way through creating things; removal is idempotent, so sweep twice.
    for sweep in 0..2 {
        if sweep > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for e in environments(engine).await? {
            let kept = e.marker.as_ref().is_some_and(|m| m.get(LIFETIME).map(String::as_str) == Some("kept"));
            if e.owner.as_ref() != Some(owner) || kept {
                continue;
            }
            let r = remove(engine, &e.project, &e.env).await?;
            total.containers += r.containers;
            total.networks += r.networks;
            total.volumes += r.volumes;
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
}
