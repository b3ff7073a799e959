//! Pool members on the engine: their tickets (ready to be claimed), their deeds (who claimed them), and draining one
//! by claiming it first. Below both the pool's keeper ([`crate::pool`]) and admission, which evicts an idle member
//! rather than make a normal `up` wait for the room it holds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::engine::{Engine, EngineError, VolumeSpec};
use crate::labels::{self, CLAIMED, POOL, POOL_TICKET};
use crate::lifecycle::{self, Lifetime};
use crate::owner::Owner;

/// The name of a member's ticket volume.
pub fn ticket_name(project: &str, env: &str) -> String {
    crate::plan::resource_name(project, env, "orch-pool-ready")
}

/// The name of a claimed member's deed volume.
pub fn deed_name(project: &str, env: &str) -> String {
    crate::plan::resource_name(project, env, "orch-claimed")
}

/// What one look at a project's pool found on the engine: ticketed members by key, and the claimed ones.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// env → key, for members with a ticket.
    pub tickets: BTreeMap<String, String>,
    /// Members with a deed (claimed), and who holds it.
    pub deeds: BTreeMap<String, String>,
}

pub(crate) async fn look<E: Engine>(engine: &E, project: &str) -> Result<Found, EngineError> {
    let mut found = Found::default();
    for (_, l) in engine.volumes_labelled(&vec![labels::project_filter(project)]).await? {
        let Some(env) = l.get(labels::ENV) else { continue };
        if let Some(h) = l.get(CLAIMED) {
            found.deeds.insert(env.clone(), h.clone());
        } else if l.contains_key(POOL_TICKET)
            && let Some(k) = l.get(POOL)
        {
            found.tickets.insert(env.clone(), k.clone());
        }
    }
    Ok(found)
}

/// Takes the deed of member `env`: `true` when this call won it.
pub(crate) async fn take<E: Engine>(engine: &E, project: &str, env: &str, owner: &Owner, lifetime: Lifetime) -> Result<bool, EngineError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let me = format!("{}#{}", owner.label(), NEXT.fetch_add(1, Ordering::Relaxed));
    let mut l: BTreeMap<String, String> = [
        (labels::ENV.to_string(), env.to_string()),
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::OWNER_UID.to_string(), labels::my_uid().to_string()),
        (CLAIMED.to_string(), me.clone()),
    ]
    .into();
    lifetime.label(&mut l);
    let found = engine.create_volume(&VolumeSpec { name: deed_name(project, env), labels: l, ..Default::default() }).await?;
    Ok(found.get(CLAIMED) == Some(&me))
}

/// Removes member `env` unless another process claimed it first: `true` when this call removed it.
pub(crate) async fn drain<E: Engine>(engine: &E, project: &str, env: &str, me: &Owner) -> bool {
    match take(engine, project, env, me, Lifetime::Process).await {
        Ok(true) => match lifecycle::down(engine, &labels::env_filter(Some(project), env), true).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(project, env, error = %e, "could not remove pool member {env}: {e}; `orch gc` will");
                false
            }
        },
        Ok(false) => {
            tracing::debug!(project, env, "claimed before it could be drained");
            false
        }
        Err(e) => {
            tracing::warn!(project, env, error = %e, "could not drain pool member {env}: {e}");
            false
        }
    }
}

/// Removes one ready, unclaimed pool member of this user (any project), so that a normal `up` gets the room it held:
/// the member's `(project, env)`, `None` when there is no such member. Members of other users are left alone (every
/// removal is scoped to its owner); the member's keeper makes a replacement once there is room again.
pub async fn evict_idle<E: Engine>(engine: &E) -> Result<Option<(String, String)>, EngineError> {
    let uid = labels::my_uid().to_string();
    let me = Owner::current();
    for (_, l) in engine.volumes_labelled(&vec![POOL_TICKET.to_string()]).await? {
        let (Some(project), Some(env)) = (l.get(labels::PROJECT), l.get(labels::ENV)) else { continue };
        if l.get(labels::OWNER_UID) != Some(&uid) {
            continue;
        }
        if drain(engine, project, env, &me).await {
            tracing::info!(project = %project, env = %env, "evicted idle pool member {env} to make room");
            return Ok(Some((project.clone(), env.clone())));
        }
    }
    Ok(None)
}
