//! The clock orch reads: Unix time for labels (`orch.created`, leases, readiness), in one place so nothing that
//! needs the time has to reach into the lifecycle for it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
