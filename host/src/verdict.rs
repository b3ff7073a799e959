//! What an environment is, from its labels alone — owner, uid, completeness, lease, removal claim — and the verdict
//! on it: live, kept, being removed, or an orphan nobody but orch will remove. The reaper acts on the verdict; `up` asks it before it clears a
//! name another resource holds.

use std::collections::BTreeMap;

use crate::labels::{EXPIRES, LIFETIME};
use crate::owner::Owner;

/// One environment as found on the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInfo {
    pub project: String,
    pub env: String,
    pub owner: Option<Owner>,
    /// The uid of the user whose orch made it (`orch.owner-uid`), when recorded.
    pub uid: Option<u32>,
    pub created: u64,
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
    /// The ready marker's labels, when the environment was completed.
    pub marker: Option<BTreeMap<String, String>>,
    /// The process holding its removal claim ([`crate::claim`]), if any.
    pub claim: Option<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its owner is alive: someone is using it.
    Live,
    /// A live process is removing it (holds its claim): nobody else's to remove, whatever else it looks like.
    Removing(Owner),
    /// Complete and kept until `orch down` or its lease.
    Kept,
    /// Nobody will ever remove it but orch: the reason says why.
    Orphan(String),
}

impl EnvInfo {
    pub fn verdict(&self, now: u64) -> Verdict {
        self.verdict_given(now, self.owner.as_ref().is_some_and(Owner::is_alive))
    }

    /// The verdict with the owner's liveness found beforehand. Whoever removes on a verdict finds liveness first and
    /// lists second: an owner proven dead makes no marker later, whereas a listing taken before the liveness check
    /// may predate the marker an owner made just before it exited.
    pub fn verdict_given(&self, now: u64, owner_alive: bool) -> Verdict {
        if let Some(holder) = self.claim.as_ref().filter(|h| h.is_alive()) {
            return Verdict::Removing(holder.clone());
        }
        if let Some(m) = &self.marker
            && let Some(exp) = m.get(EXPIRES).and_then(|e| e.parse::<u64>().ok())
            && exp <= now
        {
            return Verdict::Orphan("its lease expired".into());
        }
        if owner_alive {
            return Verdict::Live;
        }
        match &self.marker {
            None => Verdict::Orphan(match &self.owner {
                Some(o) => format!("its owner (pid {} on {}) died before it was complete", o.pid, o.host),
                None => "it has no owner label".into(),
            }),
            Some(m) if m.get(LIFETIME).map(String::as_str) == Some("process") => Verdict::Orphan("its owner process ended".into()),
            Some(_) => Verdict::Kept,
        }
    }
}
