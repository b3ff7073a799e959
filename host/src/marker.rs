//! The ready marker: a labelled volume `up` creates last. Its presence says the environment is complete; its labels
//! say how long it lives (until `down` or a lease, or as long as its owner process).

use crate::engine::{Engine, EngineError, VolumeSpec};
use crate::labels::{self, EXPIRES, LIFETIME, MARKER, READY_AT};
use std::collections::BTreeMap;

/// How long an environment outlives the command that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until `orch down` or its lease expires (`orch up`).
    Kept { expires: Option<u64> },
    /// As long as the owner process (`orch run`, a library session).
    Process,
}

impl Lifetime {
    /// Records this lifetime in `labels` (`orch.lifetime`, and `orch.expires` for a lease): on a marker or a deed.
    pub fn label(&self, labels: &mut BTreeMap<String, String>) {
        match self {
            Lifetime::Kept { expires } => {
                labels.insert(LIFETIME.into(), "kept".into());
                if let Some(e) = expires {
                    labels.insert(EXPIRES.into(), e.to_string());
                }
            }
            Lifetime::Process => {
                labels.insert(LIFETIME.into(), "process".into());
            }
        }
    }
}

pub use crate::clock::{now, now_ms};

/// The name of an environment's ready marker volume.
pub fn marker_name(project: &str, env: &str) -> String {
    crate::plan::resource_name(project, env, "orch-ready")
}

/// Marks the environment complete: the last thing `up` creates (and again with a new lifetime, to keep one). A
/// [`READY_AT`] already among `env_labels` is kept (keeping an environment does not make it ready again).
pub async fn mark_ready<E: Engine>(engine: &E, env_labels: &BTreeMap<String, String>, project: &str, env: &str, lifetime: Lifetime) -> Result<(), EngineError> {
    let mut l = env_labels.clone();
    l.insert(MARKER.into(), "ready".into());
    l.entry(READY_AT.into()).or_insert_with(|| now_ms().to_string());
    lifetime.label(&mut l);
    let name = marker_name(project, env);
    let found = engine.create_volume(&VolumeSpec { name: name.clone(), labels: l, ..Default::default() }).await?;
    // The engine hands back a volume of that name that exists already: it must be this environment's marker.
    let ours = found.contains_key(MARKER)
        && found.get(labels::ENV).map(String::as_str) == Some(env)
        && found.get(labels::PROJECT).map(String::as_str) == Some(project);
    if ours {
        Ok(())
    } else {
        Err(EngineError::Conflict(format!("volume {name} exists and is not this environment's ready marker; remove it or use another --env")))
    }
}

/// Keeps an environment past its owner: replaces its marker (whose labels cannot change) with a kept one. For a moment
/// the environment has no marker, which would make it an orphan if its owner is dead: the removal claim, held
/// meanwhile, keeps reapers away.
pub async fn keep<E: Engine>(engine: &E, project: &str, env: &str, expires: Option<u64>) -> Result<(), EngineError> {
    let claim = crate::claim::take(engine, project, env, crate::claim::PATIENCE).await?;
    let result = swap_marker(engine, project, env, expires).await;
    crate::claim::released(engine, claim, result).await
}

async fn swap_marker<E: Engine>(engine: &E, project: &str, env: &str, expires: Option<u64>) -> Result<(), EngineError> {
    let ready_at = ready_times(engine).await?.remove(&(project.to_string(), env.to_string()));
    engine.remove_volume(&marker_name(project, env)).await?;
    let mut env_labels = BTreeMap::from([(labels::ENV.to_string(), env.to_string()), (labels::PROJECT.to_string(), project.to_string())]);
    if let Some(t) = ready_at {
        env_labels.insert(READY_AT.into(), t.to_string());
    }
    mark_ready(engine, &env_labels, project, env, Lifetime::Kept { expires }).await
}

/// When each complete environment on the engine became ready: (project, env) → Unix milliseconds.
pub async fn ready_times<E: Engine>(engine: &E) -> Result<BTreeMap<(String, String), u64>, EngineError> {
    let markers = engine.volumes_labelled(&vec![MARKER.to_string()]).await?;
    Ok(markers
        .into_iter()
        .filter_map(|(_, l)| {
            let at = l.get(READY_AT)?.parse().ok()?;
            Some(((l.get(labels::PROJECT)?.clone(), l.get(labels::ENV)?.clone()), at))
        })
        .collect())
}
