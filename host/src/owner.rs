//! The process that owns an environment, as recorded in its `orch.owner` label, and whether it still lives. The
//! reaper removes an incomplete environment only when its owner is proven dead.

use crate::procfs;

/// The process that owns an environment: `pid:start-time@host:boot-id`. An owner whose pid is gone, whose pid was
/// reused (different start time) or whose machine rebooted (different boot id) is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start_time: u64,
    pub host: String,
    pub boot_id: String,
}

impl Owner {
    pub fn current() -> Owner {
        let pid = std::process::id();
        Owner { pid, start_time: procfs::start_time(pid).unwrap_or(0), host: procfs::hostname(), boot_id: procfs::boot_id() }
    }

    /// Another process of this machine (e.g. the test runner an environment is made for), if it exists.
    pub fn of_pid(pid: u32) -> Option<Owner> {
        let start_time = procfs::start_time(pid)?;
        Some(Owner { pid, start_time, ..Owner::current() })
    }

    /// Start times and boot ids come from `/proc`; without them a pid alone could be a stranger reusing it.
    fn can_prove_liveness(&self) -> bool {
        self.start_time != 0 && !self.boot_id.is_empty() && !self.host.is_empty()
    }

    pub fn label(&self) -> String {
        format!("{}:{}@{}:{}", self.pid, self.start_time, self.host, self.boot_id)
    }

    pub fn parse(label: &str) -> Option<Owner> {
        let (proc_part, machine) = label.split_once('@')?;
        let (pid, start) = proc_part.split_once(':')?;
        let (host, boot) = machine.rsplit_once(':')?;
        Some(Owner { pid: pid.parse().ok()?, start_time: start.parse().ok()?, host: host.into(), boot_id: boot.into() })
    }

    /// Whether this owner is a live process. Owners on other hosts are assumed alive (we cannot tell), and so is
    /// every owner where this platform cannot prove a process dead (no `/proc`, no boot id): orch never reaps on a
    /// guess.
    pub fn is_alive(&self) -> bool {
        let here = Owner::current();
        if self.host != here.host || !here.can_prove_liveness() {
            return true;
        }
        if self.boot_id != here.boot_id {
            return false;
        }
        procfs::start_time(self.pid) == Some(self.start_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_labels_round_trip_and_this_process_is_alive() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.label()), Some(me.clone()));
        assert!(me.is_alive());
        let reused = Owner { start_time: me.start_time + 1, ..me.clone() };
        assert!(!reused.is_alive(), "a reused pid is not the owner");
        let rebooted = Owner { boot_id: "other".into(), ..me.clone() };
        assert!(!rebooted.is_alive());
        let elsewhere = Owner { host: "another-host".into(), pid: 1, start_time: 1, ..me };
        assert!(elsewhere.is_alive(), "an owner on another host cannot be proven dead");
    }

    #[test]
    fn an_owner_is_never_proven_dead_without_proc() {
        let blind = Owner { pid: 4_000_000, start_time: 0, host: String::new(), boot_id: String::new() };
        assert!(!blind.can_prove_liveness());
    }
}
