//! The state directory shared by every orch process of a user on a host: cross-process locks and the in-flight
//! allocations (subnets, host ports) of environments being created.
//!
//! Labels on the engine are the truth; this is only the reservation for the window between choosing a subnet or a
//! port and the engine knowing about it. So the file is small, updated atomically (temp file + rename) under an
//! exclusive lock, and repaired on every load: reservations of dead owners are dropped, a corrupt file is replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::owner::Owner;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no state directory: neither --state-dir, ORCH_STATE_DIR, XDG_STATE_HOME nor HOME is set; set one (orch keeps no state in a shared /tmp)")]
    NoHome,
    /// The directory is not this user's alone: another user could plant or swap the files orch locks and reads.
    #[error("state directory {path} {why}; {fix}")]
    Unsafe { path: PathBuf, why: String, fix: String },
    #[error("state directory {path}: {source}; set --state-dir or ORCH_STATE_DIR to a writable directory")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("environment {env} is in use by {holder}; waited {waited:?} (--lock-timeout), try again or use another --env")]
    EnvLocked { env: String, holder: String, waited: Duration },
    #[error("the allocation lock in {path} was not released within {waited:?}; the holder is {holder}")]
    AllocLocked { path: PathBuf, holder: String, waited: Duration },
}

#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// `--state-dir`, else `ORCH_STATE_DIR`, else `$XDG_STATE_HOME/orch`, else `~/.local/state/orch`; never a
    /// predictable directory in `/tmp`, where another user could be first to make it.
    pub fn resolve(flag: Option<PathBuf>) -> Result<StateDir, StateError> {
        Self::resolve_from(flag, |k| std::env::var_os(k))
    }

    /// [`StateDir::resolve`] with the environment given.
    fn resolve_from(flag: Option<PathBuf>, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<StateDir, StateError> {
        let get = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = flag
            .or_else(|| get("ORCH_STATE_DIR"))
            .or_else(|| get("XDG_STATE_HOME").map(|d| d.join("orch")))
            .or_else(|| get("HOME").map(|h| h.join(".local/state/orch")))
            .ok_or(StateError::NoHome)?;
        Ok(StateDir { root })
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
        let path = path.to_path_buf();
        move |source| StateError::Io { path: path.clone(), source }
    }

    /// Creates the directory (0700) if it is missing and checks that it is this user's alone: owned by this user and
    /// writable by no one else. Every file orch locks or reads lives below it.
    pub fn ensure(&self) -> Result<(), StateError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        if !self.root.is_dir() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(self.io(&self.root))?;
        }
        let meta = std::fs::metadata(&self.root).map_err(self.io(&self.root))?;
        let unsafe_dir = |why: String, fix: String| StateError::Unsafe { path: self.root.clone(), why, fix };
        if !meta.is_dir() {
            return Err(unsafe_dir("is not a directory".into(), "remove it or set --state-dir / ORCH_STATE_DIR to a directory of your own".into()));
        }
        let me = crate::labels::my_uid();
        if meta.uid() != me {
            return Err(unsafe_dir(
                format!("belongs to uid {}, not to you (uid {me})", meta.uid()),
                "use a directory of your own with --state-dir or ORCH_STATE_DIR (each user of an engine has one)".into(),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(unsafe_dir(
                format!("is writable by group or others (mode {mode:03o})"),
                format!("make it yours alone: chmod 700 {}", self.root.display()),
            ));
        }
        Ok(())
    }

    /// Opens (creating) a lock file below the directory: never through a symlink, never a FIFO or device (which
    /// could hang or redirect orch), never truncated on open.
    fn open_lock(&self, rel: &str) -> Result<(File, PathBuf), StateError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        self.ensure()?;
        let path = self.root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(self.io(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(self.io(&path))?;
        let is_file = file.metadata().map_err(self.io(&path))?.is_file();
        if !is_file {
            return Err(StateError::Unsafe { path, why: "is not a regular file".into(), fix: "remove it; orch makes its lock files itself".into() });
        }
        Ok((file, path))
    }

    /// Takes the allocation lock (waiting up to `timeout`) and loads the reservations, dropping dead owners'.
    pub fn allocations(&self, timeout: Duration) -> Result<AllocGuard, StateError> {
        let (file, lock_path) = self.open_lock("alloc.lock")?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StateError::AllocLocked { path: lock_path, holder: "another orch process".into(), waited: started.elapsed() });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StateError::Io { path: lock_path, source: e });
                }
            }
        }
        let path = self.root.join("allocations.json");
        // A missing, corrupt or oversized file is repaired: the engine's labels are the truth.
        let mut state: Allocations = read_small(&path, MAX_STATE_FILE).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        state.envs.retain(|_, a| Owner::parse(&a.owner).is_some_and(|o| o.is_alive()));
        Ok(AllocGuard { _file: file, path, state })
    }

    /// The lock that makes one watcher per owner: `Some` (held while the file lives) for the first watcher of `owner`,
    /// `None` when another watcher holds it already, so that a process making many environments has one watcher.
    pub fn watcher_lock(&self, owner: &Owner) -> Result<Option<std::fs::File>, StateError> {
        let (file, path) = self.open_lock(&format!("watchers/{}-{}.lock", owner.pid, owner.start_time))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StateError::Io { path, source: e }),
        }
    }

    /// Takes the exclusive lock of one environment, waiting up to `timeout`; the holder is named on failure.
    pub fn lock_env(&self, project: &str, env: &str, command: &str, timeout: Duration) -> Result<EnvLock, StateError> {
        let (mut file, path) = self.open_lock(&format!("envs/{project}--{env}.lock"))?;
        let started = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let holder = read_small(&path, 4096).map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
                    let holder = if holder.is_empty() { "another orch process".to_string() } else { holder };
                    if started.elapsed() >= timeout {
                        return Err(StateError::EnvLocked { env: env.into(), holder, waited: started.elapsed() });
                    }
                    if !said {
                        tracing::warn!(env, %holder, "waiting for environment {env}: in use by {holder}");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StateError::Io { path, source: e });
                }
            }
        }
        let me = Owner::current();
        let since = crate::clock::now();
        let _ = file.set_len(0);
        let _ = write!(file, "pid {} ({command}) since {since} (unix time)", me.pid);
        let _ = file.flush();
        Ok(EnvLock { _file: file })
    }
}

/// The most orch reads of one state file: reservations of thousands of environments fit in far less.
pub const MAX_STATE_FILE: u64 = 16 << 20;

/// Reads a small state file: not through a symlink, only a regular file (a FIFO would block), at most `limit`
/// bytes. `None` when it is missing, unreadable, something else or larger: state files are repaired, not trusted.
pub fn read_small(path: &Path, limit: u64) -> Option<Vec<u8>> {
    orch_compose::input::read_bytes_nofollow(path, limit).ok()
}

/// Held while an environment is created or removed; released on drop (and by the kernel if the process dies).
pub struct EnvLock {
    _file: File,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allocations {
    /// "project/env" → what it reserved.
    pub envs: BTreeMap<String, EnvAllocation>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvAllocation {
    pub owner: String,
    pub created: u64,
    pub subnets: Vec<String>,
    pub ports: Vec<u16>,
}

impl Allocations {
    pub fn subnets(&self) -> BTreeSet<Ipv4Net> {
        self.envs.values().flat_map(|a| a.subnets.iter()).filter_map(|s| s.parse::<Ipv4Net>().ok()).collect()
    }
    pub fn ports(&self) -> BTreeSet<u16> {
        self.envs.values().flat_map(|a| a.ports.iter().copied()).collect()
    }
}

/// The allocation lock and the reservations; `save` writes them back atomically. The lock is released on drop.
pub struct AllocGuard {
    _file: File,
    path: PathBuf,
    pub state: Allocations,
}

impl AllocGuard {
    pub fn save(&self) -> Result<(), StateError> {
        crate::atomic::write(&self.path, &serde_json::to_vec_pretty(&self.state).expect("serialises"))
            .map_err(|source| StateError::Io { path: self.path.clone(), source })
    }

    /// Reserves what `plan` chose for its environment.
    pub fn reserve(&mut self, plan: &crate::plan::Plan) {
        let key = format!("{}/{}", plan.identity.project, plan.identity.env_id);
        self.state.envs.insert(
            key,
            EnvAllocation {
                owner: Owner::current().label(),
                created: crate::clock::now(),
                subnets: plan.networks.values().filter(|n| !n.external).filter_map(|n| n.subnet.clone()).collect(),
                ports: plan.services.values().flat_map(|s| s.ports.iter().filter_map(|p| p.host_port)).collect(),
            },
        );
    }

    pub fn release(&mut self, project: &str, env: &str) {
        self.state.envs.remove(&format!("{project}/{env}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_survive_reload_and_dead_owners_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir { root: dir.path().to_path_buf() };
        {
            let mut g = sd.allocations(Duration::from_secs(1)).unwrap();
            g.state.envs.insert(
                "p/live".into(),
                EnvAllocation { owner: Owner::current().label(), created: 1, subnets: vec!["10.192.0.0/24".into()], ports: vec![30001] },
            );
            let dead = Owner { start_time: Owner::current().start_time + 1, ..Owner::current() };
            g.state.envs.insert("p/dead".into(), EnvAllocation { owner: dead.label(), created: 1, subnets: vec!["10.192.1.0/24".into()], ports: vec![30002] });
            g.save().unwrap();
        }
        let g = sd.allocations(Duration::from_secs(1)).unwrap();
        assert_eq!(g.state.envs.keys().collect::<Vec<_>>(), ["p/live"]);
        assert_eq!(g.state.ports(), BTreeSet::from([30001]));
        // A second taker waits for the lock and gives up with a clear error.
        let err = sd.allocations(Duration::from_millis(100)).err().unwrap();
        assert!(matches!(err, StateError::AllocLocked { .. }), "{err}");
        drop(g);
        std::fs::write(dir.path().join("allocations.json"), "{not json").unwrap();
        assert!(sd.allocations(Duration::from_secs(1)).unwrap().state.envs.is_empty(), "a corrupt file is repaired");
    }

    #[test]
    fn env_locks_name_their_holder() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir { root: dir.path().to_path_buf() };
        let held = sd.lock_env("p", "dev", "orch up --env dev", Duration::from_secs(1)).unwrap();
        let err = sd.lock_env("p", "dev", "orch up --env dev", Duration::from_millis(200)).err().unwrap();
        let text = err.to_string();
        assert!(text.contains(&format!("pid {}", std::process::id())) && text.contains("orch up --env dev"), "{text}");
        drop(held);
        assert!(sd.lock_env("p", "dev", "x", Duration::from_millis(200)).is_ok());
        assert!(sd.lock_env("p", "test", "x", Duration::from_millis(200)).is_ok(), "other environments are independent");
    }

    #[test]
    fn without_home_there_is_no_state_directory_rather_than_one_in_tmp() {
        let none = |_: &str| None;
        assert!(matches!(StateDir::resolve_from(None, none), Err(StateError::NoHome)));
        let home = |k: &str| (k == "HOME").then(|| std::ffi::OsString::from("/home/u"));
        assert_eq!(StateDir::resolve_from(None, home).unwrap().root, PathBuf::from("/home/u/.local/state/orch"));
        let empty = |_: &str| Some(std::ffi::OsString::new());
        assert!(matches!(StateDir::resolve_from(None, empty), Err(StateError::NoHome)), "empty variables count as unset");
    }

    #[test]
    fn a_state_directory_others_can_write_or_own_is_refused_with_the_fix() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir { root: dir.path().join("state") };
        sd.ensure().unwrap();
        assert_eq!(std::fs::metadata(&sd.root).unwrap().permissions().mode() & 0o777, 0o700, "made for this user alone");
        std::fs::set_permissions(&sd.root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = sd.lock_env("p", "dev", "x", Duration::from_millis(100)).err().expect("refused").to_string();
        assert!(err.contains("writable by group or others") && err.contains(&format!("chmod 700 {}", sd.root.display())), "{err}");
        std::fs::set_permissions(&sd.root, std::fs::Permissions::from_mode(0o700)).unwrap();
        if crate::labels::my_uid() == 0 {
            // Root can make the directory another user's, as a CI host's other runner would have it.
            std::os::unix::fs::chown(&sd.root, Some(4242), None).unwrap();
            assert_eq!(std::fs::metadata(&sd.root).unwrap().uid(), 4242);
            let err = sd.allocations(Duration::from_millis(100)).err().expect("refused").to_string();
            assert!(err.contains("belongs to uid 4242") && err.contains("--state-dir"), "{err}");
        }
    }

    #[test]
    fn lock_and_state_files_are_never_followed_through_symlinks_nor_read_from_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir { root: dir.path().join("state") };
        sd.ensure().unwrap();
        // Another user's file that a planted link points at is neither truncated nor written.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::create_dir_all(sd.root.join("envs")).unwrap();
        std::os::unix::fs::symlink(&victim, sd.root.join("envs/p--dev.lock")).unwrap();
        let err = sd.lock_env("p", "dev", "x", Duration::from_millis(100)).err().expect("refused").to_string();
        assert!(err.contains("p--dev.lock"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A FIFO where a state file is expected is skipped, not waited on.
        let fifo = sd.root.join("allocations.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        assert!(read_small(&fifo, 1024).is_none());
        assert!(sd.allocations(Duration::from_secs(1)).unwrap().state.envs.is_empty(), "repaired, not hung");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Oversized and garbage files are repaired too.
        std::fs::remove_file(&fifo).unwrap();
        std::fs::write(&fifo, vec![b'{'; 1 << 20]).unwrap();
        assert!(sd.allocations(Duration::from_secs(1)).unwrap().state.envs.is_empty());
    }
}
