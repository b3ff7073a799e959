//! `down`: under the environment's removal claim, the ready marker first, then containers, networks and
//! (optionally) volumes, found by label.

use crate::claim;
use crate::engine::{Engine, EngineError};
use crate::labels;
use crate::retry::Backoff;
use futures_util::future::join_all;

/// What `down` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// Removes every container, then every network (and with `volumes` every volume) carrying the filter's labels.
/// "Already gone" is success; transient errors are retried with backoff. When the filter names one environment, its
/// removal claim is held meanwhile ([`crate::claim`]): a reaper leaves it alone, and another process removing it is
/// waited for rather than raced.
pub async fn down<E: Engine>(engine: &E, filter: &[String], volumes: bool) -> Result<Removed, EngineError> {
    let claim = match claim::of_filter(filter) {
        Some((project, env)) => claim::take(engine, &project, &env, claim::PATIENCE).await?,
        None => None,
    };
    let result = down_claimed(engine, filter, volumes).await;
    claim::released(engine, claim, result).await
}

/// [`down`] for a caller that holds the environment's claim (or has none to hold).
pub(crate) async fn down_claimed<E: Engine>(engine: &E, filter: &[String], volumes: bool) -> Result<Removed, EngineError> {
    let filter = filter.to_vec();
    // The ready marker goes first: if anything below fails, the environment is left as an orphan (no marker) that
    // the next `orch gc` or opportunistic reap finishes — the labels themselves record the unfinished work.
    // Claims are not the environment's: the holder gives its own up, and another's is not this call's to remove.
    let vols: Vec<_> = engine.volumes_labelled(&filter).await?.into_iter().filter(|(_, l)| !l.contains_key(labels::CLAIM)).collect();
    let (markers, data): (Vec<_>, Vec<_>) = vols.iter().partition(|(_, l)| l.contains_key(labels::MARKER));
    join_all(markers.iter().map(|(v, _)| retry(|| engine.remove_volume(v)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let containers = engine.containers_labelled(&filter).await?;
    // Test and CI environments are disposable: kill at once. Dev and prod ones get their graceful stop first.
    let graceful = |c: &crate::engine::ContainerSummary| matches!(c.labels.get(labels::ENV_KIND).map(String::as_str), Some("dev" | "prod"));
    join_all(containers.iter().filter(|c| graceful(c) && c.state == "running").map(|c| engine.stop_container(&c.id, None))).await;
    join_all(containers.iter().map(|c| retry(|| engine.remove_container(&c.id)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let networks = engine.networks_labelled(&filter).await?;
    join_all(networks.iter().map(|n| retry(|| engine.remove_network(&n.id)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut removed = Removed { containers: containers.len(), networks: networks.len(), volumes: 0 };
    if volumes {
        join_all(data.iter().map(|(v, _)| retry(|| engine.remove_volume(v)))).await.into_iter().collect::<Result<Vec<_>, _>>()?;
        removed.volumes = data.len();
    }
    Ok(removed)
}

/// Runs a removal, retried with [`Backoff::REMOVAL`] while the engine refuses it (a container still stopping); a
/// resource that is gone already counts as removed.
pub(super) async fn retry<F, Fut>(op: F) -> Result<(), EngineError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), EngineError>>,
{
    Backoff::REMOVAL
        .run(
            async |_| match op().await {
                Err(EngineError::NotFound(_)) => Ok(()),
                r => r,
            },
            |_| true,
        )
        .await
}
