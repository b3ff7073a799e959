//! Turns a resolved plan into a running environment (`up`) and takes it away again (`down`).
//!
//! Every resource is labelled before it exists (see [`crate::labels`]), so an environment can always be found and
//! removed from labels alone. Images are checked (and built) before anything is created; services start in
//! dependency order, independent ones concurrently; readiness is polled every ~100 ms, running a service's
//! healthcheck command directly instead of waiting for Docker's healthcheck interval.
//!
//! By step: [`up`](mod@up) orchestrates, `build` makes images, `spec` turns a service into a container spec, `wait`
//! decides readiness, [`marker`] records completion and lifetime, `down` removes, `status` reads back.

mod build;
mod down;
/// The ready marker lives in [`crate::marker`]; this path is kept for callers.
pub use crate::marker;
mod spec;
pub use spec::network_spec;
mod status;
pub mod up;
mod wait;

pub use build::tar_context;
pub(crate) use down::down_claimed;
pub use down::{Removed, down};
pub use marker::Lifetime;
pub use status::{ServiceStatus, connection_env, reachable_host, status, status_probed};
pub use up::{plan_hash, resource_labels, up};
pub use wait::{describe_wait, restart};

use crate::engine::EngineError;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "service {service} uses image {image}, which is not present locally and cannot be pulled (there is no registry); build it first or give the service a `build:` section"
    )]
    MissingImage { service: String, image: String },
    #[error("service {service}: {source}")]
    Build { service: String, source: EngineError },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{kind} {name} is in the way: {why}")]
    InTheWay { kind: &'static str, name: String, why: String },
    #[error("service {service} failed: {reason}{}", if logs.is_empty() { String::new() } else { format!("\n  last output:\n    {}", logs.join("\n    ")) })]
    ServiceFailed { service: String, reason: String, logs: Vec<String> },
    #[error("service {service} was not ready after {waited:?} (waiting for {waiting_for}); raise --timeout or check `orch logs {service}`")]
    Timeout { service: String, waited: Duration, waiting_for: String },
    #[error("service {service} did not start because {dependency} failed")]
    DependencyFailed { service: String, dependency: String },
    #[error("service {service}: {kind} {name}: {why}")]
    File { service: String, kind: String, name: String, why: String },
}

/// What `up` reports while it works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The plan is made: this environment, this size.
    Planned {
        project: String,
        env: String,
        services: usize,
        networks: usize,
    },
    Building {
        service: String,
        image: String,
    },
    NetworkCreated {
        name: String,
        subnet: Option<String>,
    },
    Creating {
        service: String,
    },
    Starting {
        service: String,
    },
    Waiting {
        service: String,
        what: String,
    },
    Ready {
        service: String,
        after: Duration,
    },
    Failed {
        service: String,
        reason: String,
    },
    RollingBack,
    /// Admission is holding the environment back (no capacity yet).
    Queued {
        why: String,
    },
    /// A warning diagnostic of the plan.
    Warning {
        message: String,
    },
    Removed {
        containers: usize,
        networks: usize,
        volumes: usize,
    },
}

#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Wait until every service is ready (otherwise only what dependencies require).
    pub wait: bool,
    pub timeout: Duration,
    pub keep_on_failure: bool,
    pub no_cache: bool,
    /// How long the environment outlives its owner once complete.
    pub lifetime: marker::Lifetime,
    /// The process the environment belongs to [default: this one].
    pub owner: Option<crate::owner::Owner>,
    /// A warm-pool member's pool key ([`crate::pool`]): every resource, its marker included, is labelled with it.
    pub pool: Option<String>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            wait: true,
            timeout: Duration::from_secs(120),
            keep_on_failure: false,
            no_cache: false,
            lifetime: marker::Lifetime::Kept { expires: None },
            owner: None,
            pool: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpReport {
    pub containers: BTreeMap<String, String>,
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests;
