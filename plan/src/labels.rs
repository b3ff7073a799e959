//! Every `orch.*` label orch puts on Docker resources, and the label filters that select them. orch finds, reaps and
//! removes only what carries these labels, so nothing else on the engine is ever touched.

pub const ENV: &str = "orch.env";
pub const PROJECT: &str = "orch.project";
/// `test`, `ci`, `dev` or `prod`: dev and prod containers get a graceful stop on `down`.
pub const ENV_KIND: &str = "orch.env-kind";
pub const SERVICE: &str = "orch.service";
/// The owning process (orch's `owner::Owner`: pid, start time and host).
pub const OWNER: &str = "orch.owner";
/// The uid of the user whose orch made the resource: `down --all-mine` and opportunistic reaping act only on the
/// caller's own, on an engine several users share.
pub const OWNER_UID: &str = "orch.owner-uid";
pub const CREATED: &str = "orch.created";
pub const PLAN_HASH: &str = "orch.plan-hash";
/// The service's wait strategies (JSON), so `restart` can wait the same way without the plan.
pub const WAIT: &str = "orch.wait";
/// On the ready-marker volume: the environment is complete.
pub const MARKER: &str = "orch.marker";
/// On the marker: `kept` (until `down` or its lease) or `process` (as long as its owner).
pub const LIFETIME: &str = "orch.lifetime";
/// On the marker: the lease's end (Unix seconds).
pub const EXPIRES: &str = "orch.expires";
/// On the marker: when `up` saw every service ready (Unix milliseconds), so a later report never calls a container
/// orch already saw healthy "starting" just because Docker has not run its own first check yet.
pub const READY_AT: &str = "orch.ready-at";

/// On an environment's removal claim (a volume): the process taking the environment apart, and a number telling its
/// claims apart (`owner#n`).
pub const CLAIM: &str = "orch.claim";

/// On a warm-pool member's ticket (a volume the pool keeper creates once the member is healthy and warmed up): the
/// pool key of the project state it was made from. Only a member with a ticket of the current key is handed out.
pub const POOL: &str = "orch.pool";
/// On a claimed pool member's deed (a volume): who claimed it (`owner#n`). The engine hands the deed's name to one
/// process; the deed's owner, lifetime and lease replace the keeper's from then on.
pub const CLAIMED: &str = "orch.claimed";
/// On a pool member's ticket (with [`POOL`]): it is ready to be claimed.
pub const POOL_TICKET: &str = "orch.pool-ticket";

/// On a project's long-lived tier network (`orch network create`): the network's name in the plan. Tier networks
/// carry no [`ENV`] label, so nothing that removes environments touches them.
pub const TIER: &str = "orch.tier";

/// On everything the swarm engine makes: `swarm` (the local engine's selections leave these out).
pub const ENGINE: &str = "orch.engine";
pub const ENGINE_SWARM: &str = "swarm";

/// Every orch environment's resources.
pub fn any_env() -> Vec<String> {
    vec![ENV.to_string()]
}

/// The resources of one environment (of one project, when given).
pub fn env_filter(project: Option<&str>, env_id: &str) -> Vec<String> {
    let mut f = vec![format!("{ENV}={env_id}")];
    if let Some(p) = project {
        f.push(project_filter(p));
    }
    f
}

pub fn project_filter(project: &str) -> String {
    format!("{PROJECT}={project}")
}

pub fn service_filter(service: &str) -> String {
    format!("{SERVICE}={service}")
}

/// The uid of this process's user.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Selects the resources made by this user's orch.
pub fn mine_filter() -> String {
    format!("{OWNER_UID}={}", my_uid())
}
