//! `orch.lock`: the exact bytes of every plugin a project runs that is not built into orch — OCI references and
//! `.wasm` files — pinned by sha256 digest, next to `orch.toml`. orch writes new entries itself (like Cargo.lock) and
//! refuses a plugin whose content differs from its entry; `orch plugin update` re-resolves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PluginError;

pub const FILE_NAME: &str = "orch.lock";
const HEADER: &str = "# orch.lock — the exact plugins this project runs, pinned by digest. Written by orch: commit it, do not edit it.\n# `orch plugin update` re-resolves every entry (or the ones named).\n\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// The reference as the project names it: `oci://…` or a path relative to the lock's folder.
    pub source: String,
    /// The plugin's own name and version (from `describe`), for people reading the file.
    pub name: String,
    pub version: String,
    /// sha256 of the component bytes.
    pub digest: String,
    /// For OCI references: the manifest digest the tag resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFileToml {
    version: u32,
    #[serde(default, rename = "plugin")]
    plugins: Vec<LockEntry>,
}

#[derive(Debug, Clone)]
pub struct Lock {
    pub path: PathBuf,
    entries: Vec<LockEntry>,
    changed: bool,
    /// `--locked`: refuse to add or change entries.
    pub frozen: bool,
}

impl Lock {
    /// The lock in `dir` (empty when the file does not exist yet).
    pub fn load(dir: &Path) -> Result<Lock, PluginError> {
        let path = dir.join(FILE_NAME);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file: LockFileToml = toml::from_str(&text).map_err(|e| PluginError::Lock { path: path.clone(), message: e.to_string() })?;
                if file.version != 1 {
                    return Err(PluginError::Lock {
                        path,
                        message: format!("version {} is not supported by this orch (it writes version 1); upgrade orch", file.version),
                    });
                }
                file.plugins
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(PluginError::Read { path, source: e }),
        };
        Ok(Lock { path, entries, changed: false, frozen: false })
    }

    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn get(&self, source: &str) -> Option<&LockEntry> {
        self.entries.iter().find(|e| e.source == source)
    }

    pub fn entries(&self) -> &[LockEntry] {
        &self.entries
    }

    /// Records a newly resolved plugin (refused when frozen).
    pub fn insert(&mut self, entry: LockEntry) -> Result<(), PluginError> {
        if self.get(&entry.source) == Some(&entry) {
            return Ok(());
        }
        if self.frozen {
            return Err(PluginError::Lock {
                path: self.path.clone(),
                message: format!(
                    "{} is not pinned and --locked forbids adding it; run orch without --locked (or `orch plugin update`) and commit orch.lock",
                    entry.source
                ),
            });
        }
        self.entries.retain(|e| e.source != entry.source);
        self.entries.push(entry);
        self.entries.sort_by(|a, b| a.source.cmp(&b.source));
        self.changed = true;
        Ok(())
    }

    /// Forgets entries (all when `sources` is empty), so they are resolved afresh. Returns what was removed.
    pub fn forget(&mut self, sources: &[String]) -> Vec<LockEntry> {
        let (gone, kept): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|e| sources.is_empty() || sources.iter().any(|s| *s == e.source || *s == e.name));
        self.entries = kept;
        self.changed |= !gone.is_empty();
        gone
    }

    /// Writes the file if anything changed (atomically: a half-written lock would pin nothing).
    pub fn save(&mut self) -> Result<bool, PluginError> {
        if !self.changed {
            return Ok(false);
        }
        let body = toml::to_string(&LockFileToml { version: 1, plugins: self.entries.clone() }).expect("lock serialises");
        crate::atomic::write(&self.path, format!("{HEADER}{body}").as_bytes()).map_err(|source| PluginError::Read { path: self.path.clone(), source })?;
        self.changed = false;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_freezes() {
        let dir = tempfile::tempdir().unwrap();
        let mut lock = Lock::load(dir.path()).unwrap();
        let e = LockEntry {
            source: "oci://127.0.0.1:5000/t/x:1".into(),
            name: "x".into(),
            version: "1.0.0".into(),
            digest: "sha256:ab".into(),
            manifest: Some("sha256:cd".into()),
        };
        lock.insert(e.clone()).unwrap();
        assert!(lock.save().unwrap());
        let mut again = Lock::load(dir.path()).unwrap();
        assert_eq!(again.get(&e.source), Some(&e));
        again.frozen = true;
        assert!(again.insert(e.clone()).is_ok(), "an identical entry is no change");
        let other = LockEntry { source: "./p.wasm".into(), manifest: None, ..e };
        assert!(again.insert(other).unwrap_err().to_string().contains("--locked"));
        std::fs::write(dir.path().join(FILE_NAME), "version = 2\n").unwrap();
        assert!(Lock::load(dir.path()).unwrap_err().to_string().contains("version 2"));
    }
}
