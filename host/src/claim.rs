//! Removal claims: who is taking an environment apart right now. `down`, the reaper, the watcher and `keep` hold an
//! environment's claim — a volume of a fixed name, `<project>__<env>__orch-removing`, labelled with its holder —
//! while they remove the environment or swap its marker.
//!
//! The engine arbitrates: creating a volume whose name exists hands back the existing volume, so of two processes
//! claiming at once exactly one finds its own label on the answer. While a live process holds the claim, the
//! environment is no orphan (its marker may be gone already) and nobody else's to remove. Two removals of one
//! environment at once race the engine's own bookkeeping — on Docker 20.10 that can leave a network that "has active
//! endpoints" until the daemon restarts — and a reaper that saw the environment before its marker went would remove
//! what `down` is removing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::{Engine, EngineError, VolumeSpec};
use crate::labels::{self, CLAIM};
use crate::owner::Owner;

/// How long `down` and `keep` wait for another live process removing the same environment before they go on: its
/// removal usually ends well before.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The name of an environment's claim volume.
pub fn claim_name(project: &str, env: &str) -> String {
    crate::plan::resource_name(project, env, "orch-removing")
}

/// The holder a claim volume names (`orch.claim`: the owner label and a per-claim number).
pub fn holder(label: &str) -> Option<Owner> {
    Owner::parse(label.rsplit_once('#').map_or(label, |(owner, _)| owner))
}

/// A claim this process holds; [`Claim::release`] gives it up.
#[derive(Debug)]
#[must_use = "a claim is given up with release()"]
pub struct Claim {
    name: String,
}

/// What one try to claim found.
#[derive(Debug)]
pub enum Taken {
    /// This process holds the claim now.
    Held(Claim),
    /// A live process (this one, in another task, included) holds it.
    Busy(Owner),
    /// A volume of the claim's name exists that is no claim of this environment: orch leaves it alone and removes
    /// the environment without a claim.
    Unclaimable,
}

/// One try at the claim of `project`'s environment `env`. A claim left by a dead process (a `down` killed half-way)
/// is taken over.
pub async fn try_take<E: Engine>(engine: &E, project: &str, env: &str) -> Result<Taken, EngineError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let me = format!("{}#{}", Owner::current().label(), NEXT.fetch_add(1, Ordering::Relaxed));
    let name = claim_name(project, env);
    let spec = VolumeSpec {
        name: name.clone(),
        labels: [
            (labels::ENV.to_string(), env.to_string()),
            (labels::PROJECT.to_string(), project.to_string()),
            (labels::OWNER_UID.to_string(), labels::my_uid().to_string()),
            (CLAIM.to_string(), me.clone()),
        ]
        .into(),
        ..Default::default()
    };
    // A stale claim is removed and claimed again; two tries at most, as a stale one another process took over in
    // between is that process's live claim the second time.
    for _ in 0..2 {
        let found = engine.create_volume(&spec).await?;
        let ours = found.get(labels::ENV).map(String::as_str) == Some(env) && found.get(labels::PROJECT).map(String::as_str) == Some(project);
        match found.get(CLAIM) {
            Some(h) if *h == me => return Ok(Taken::Held(Claim { name })),
            Some(h) if ours => match holder(h) {
                Some(o) if o.is_alive() => return Ok(Taken::Busy(o)),
                _ => {
                    tracing::debug!(claim = %name, holder = %h, "taking over the removal claim of a process that is gone");
                    engine.remove_volume(&name).await?;
                }
            },
            _ => return Ok(Taken::Unclaimable),
        }
    }
    Ok(Taken::Unclaimable)
}

/// [`try_take`] again while a live process holds the claim, for up to `patience`: the last answer.
pub async fn wait<E: Engine>(engine: &E, project: &str, env: &str, patience: Duration) -> Result<Taken, EngineError> {
    let deadline = Instant::now() + patience;
    loop {
        match try_take(engine, project, env).await? {
            Taken::Busy(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            taken => return Ok(taken),
        }
    }
}

/// The claim, waiting up to `patience` while a live process holds it. `None`
/// when there is no claim to be had: a foreign volume has its name, or the holder outlasted `patience` (then the
/// caller goes on without one rather than hang on a stuck process).
pub async fn take<E: Engine>(engine: &E, project: &str, env: &str, patience: Duration) -> Result<Option<Claim>, EngineError> {
    match wait(engine, project, env, patience).await? {
        Taken::Held(c) => Ok(Some(c)),
        Taken::Unclaimable => {
            tracing::warn!(project, env, "volume {} is not orch's removal claim; removing environment {env} without one", claim_name(project, env));
            Ok(None)
        }
        Taken::Busy(o) => {
            tracing::warn!(project, env, pid = o.pid, "environment {env} of {project} is still being removed by pid {} after {patience:?}; going on", o.pid);
            Ok(None)
        }
    }
}

/// The project and environment a label filter selects, when it names both.
pub fn of_filter(filter: &[String]) -> Option<(String, String)> {
    let value = |key: &str| filter.iter().find_map(|f| f.strip_prefix(key)?.strip_prefix('=').map(str::to_string));
    Some((value(labels::PROJECT)?, value(labels::ENV)?))
}

/// `result`, after giving up `claim` (if there is one); an error giving it up is the error only when `result` was fine.
pub async fn released<E: Engine, T>(engine: &E, claim: Option<Claim>, result: Result<T, EngineError>) -> Result<T, EngineError> {
    if let Some(c) = claim {
        let released = c.release(engine).await;
        if result.is_ok() {
            released?;
        }
    }
    result
}

impl Claim {
    /// Gives the claim up (removes its volume).
    pub async fn release<E: Engine>(self, engine: &E) -> Result<(), EngineError> {
        match engine.remove_volume(&self.name).await {
            Err(EngineError::NotFound(_)) => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn one_holder_at_a_time_a_dead_ones_claim_is_taken_over_and_a_foreign_volume_is_left_alone() {
        let engine = FakeEngine::new();
        rt().block_on(async {
            let first = match try_take(&engine, "p", "e").await.unwrap() {
                Taken::Held(c) => c,
                other => panic!("{other:?}"),
            };
            // Another task of this process (a live holder) must wait.
            assert!(matches!(try_take(&engine, "p", "e").await.unwrap(), Taken::Busy(o) if o == Owner::current()));
            first.release(&engine).await.unwrap();
            assert!(engine.volume_names().is_empty());

            // A dead process's claim is taken over.
            let me = Owner::current();
            let dead = Owner { start_time: me.start_time + 1, ..me };
            let labels = [
                (labels::ENV.to_string(), "e".to_string()),
                (labels::PROJECT.to_string(), "p".to_string()),
                (CLAIM.to_string(), format!("{}#0", dead.label())),
            ];
            engine.create_volume(&VolumeSpec { name: claim_name("p", "e"), labels: labels.into(), ..Default::default() }).await.unwrap();
            let taken = take(&engine, "p", "e", Duration::ZERO).await.unwrap().expect("the dead holder's claim is taken over");
            taken.release(&engine).await.unwrap();

            // A volume of the claim's name that someone else made is never removed.
            engine.create_volume(&VolumeSpec { name: claim_name("p", "e"), ..Default::default() }).await.unwrap();
            assert!(take(&engine, "p", "e", Duration::ZERO).await.unwrap().is_none());
            assert_eq!(engine.volume_names(), [claim_name("p", "e")]);
        });
    }

    #[test]
    fn filters_name_their_environment() {
        assert_eq!(of_filter(&labels::env_filter(Some("p"), "e")), Some(("p".into(), "e".into())));
        assert_eq!(of_filter(&labels::env_filter(None, "e")), None);
        assert_eq!(holder(&format!("{}#7", Owner::current().label())), Some(Owner::current()));
    }
}
