//! `orch.lock`: the exact bytes of every plugin a project runs that is not built into orch — OCI references and
//! `.wasm` files — pinned by sha256 digest, next to `orch.toml`. orch writes new entries itself (like Cargo.lock) and
//! refuses a plugin whose content differs from its entry; `orch plugin update` re-resolves.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PluginError;

pub const FILE_NAME: &str = "orch.lock";
/// The largest `orch.lock` orch reads (a few hundred bytes per plugin).
pub const MAX_LOCK_FILE: u64 = 1 << 20;
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
        let entries = match orch_compose::input::read_text(&path, MAX_LOCK_FILE) {
            Ok(text) => {
                let file: LockFileToml = toml::from_str(&text).map_err(|e| PluginError::Lock { path: path.clone(), message: e.to_string() })?;
                if file.version != 1 {
                    return Err(PluginError::Lock {
                        path,
                        message: format!("version {} is not supported by this orch (it writes version 1); upgrade orch", file.version),
                    });
                }
                for e in &file.plugins {
                    for (field, value) in [("digest", Some(&e.digest)), ("manifest", e.manifest.as_ref())] {
                        if let Some(v) = value.filter(|v| !super::oci::is_digest(v)) {
                            return Err(PluginError::Lock {
                                path,
                                message: format!(
                                    "the entry for {} has {field} = {:?}, which is not sha256: and 64 lowercase hex digits; \
                                     run `orch plugin update` to pin it again",
                                    e.source,
                                    v.chars().take(80).collect::<String>()
                                ),
                            });
                        }
                    }
                }
                file.plugins
            }
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => vec![],
            Err(e) => return Err(PluginError::Read { path, source: std::io::Error::other(e) }),
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
            digest: format!("sha256:{}", "ab".repeat(32)),
            manifest: Some(format!("sha256:{}", "cd".repeat(32))),
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

    /// A digest names the cache file: one that is not `sha256:` + 64 lowercase hex digits is refused when the lock is
    /// read, before anything is looked up or removed by it.
    #[test]
    fn digests_that_are_not_sha256_hex_are_refused_at_parse_time() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!("sha256:{}", "0".repeat(64));
        for bad in ["sha256:/some/dir/important", "sha256:../../x", &format!("sha256:{}", "A".repeat(64)), &format!("sha256:{}", "0".repeat(63)), "md5:00", ""]
        {
            for (digest, manifest) in [(bad, good.as_str()), (good.as_str(), bad)] {
                let text = format!(
                    "version = 1\n[[plugin]]\nsource = \"oci://r/x:1\"\nname = \"x\"\nversion = \"1\"\ndigest = \"{digest}\"\nmanifest = \"{manifest}\"\n"
                );
                std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
                let err = Lock::load(dir.path()).unwrap_err().to_string();
                assert!(err.contains("orch.lock") && err.contains("oci://r/x:1") && err.contains("64 lowercase hex"), "{bad}: {err}");
            }
        }
    }

    #[test]
    fn the_lock_is_read_as_a_bounded_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "#".repeat((MAX_LOCK_FILE + 1) as usize)).unwrap();
        assert!(Lock::load(dir.path()).unwrap_err().to_string().contains("1 MiB"));
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(FILE_NAME)).unwrap();
        assert!(Lock::load(dir.path()).unwrap_err().to_string().contains("not a regular file"));
    }
}
