//! Compiled plugins on disk, sealed: an entry holds an HMAC-SHA256 over the pinned component's digest and the
//! compiled artifact, keyed by a secret of this user kept outside the cache directory. A cache restored from
//! elsewhere (CI caches come from other jobs), a swapped entry or a tampered one fails the check and is rebuilt;
//! so is an entry that others may write. Only artifacts this orch produced for exactly this component are loaded.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAGIC: &[u8] = b"orch-cwasm-v1\n";
const TAG_HEX: usize = 64;

/// The secret that seals cache entries.
pub struct SealKey {
    key: [u8; 32],
    /// The owner every cache entry must have (the key file's, i.e. this user's).
    uid: u32,
}

/// Where the key lives unless `ORCH_CACHE_KEY` names a file: `$XDG_CONFIG_HOME/orch/cache.key` or
/// `~/.config/orch/cache.key` — not in the cache, so restoring a cache never restores the key.
pub fn default_key_path() -> Option<PathBuf> {
    std::env::var_os("ORCH_CACHE_KEY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("orch").join("cache.key")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("orch").join("cache.key")))
}

impl SealKey {
    /// Reads the key, creating it (32 random bytes, mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<SealKey> {
        if !path.exists() {
            use std::io::Read;
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Two processes may race here: the rename makes one key win, and both read it back below.
            crate::atomic::write(path, hex::encode(key).as_bytes())?;
        }
        let meta = std::fs::metadata(path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(std::io::Error::other(format!("{} is readable or writable by others; `chmod 600` it", path.display())));
        }
        let text = std::fs::read_to_string(path)?;
        let bytes = hex::decode(text.trim()).map_err(|_| std::io::Error::other(format!("{} is not a cache key", path.display())))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| std::io::Error::other(format!("{} is not a cache key", path.display())))?;
        Ok(SealKey { key, uid: meta.uid() })
    }

    fn tag(&self, component_sha: &str, artifact: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(component_sha.as_bytes());
        mac.update(b"\n");
        mac.update(artifact);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The entry for `artifact`, compiled from the component with digest `component_sha`.
    pub fn seal(&self, component_sha: &str, artifact: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + TAG_HEX + 1 + artifact.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(self.tag(component_sha, artifact).as_bytes());
        out.push(b'\n');
        out.extend_from_slice(artifact);
        out
    }

    /// The artifact of the entry at `path`, or why it cannot be trusted.
    pub fn open(&self, path: &Path, component_sha: &str) -> Result<Vec<u8>, String> {
        let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("it is not a regular file".into());
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return Err("it is writable by group or others".into());
        }
        if meta.uid() != self.uid {
            return Err(format!("it belongs to uid {}, not to this user ({})", meta.uid(), self.uid));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let rest = bytes.strip_prefix(MAGIC).ok_or("it was not written by this orch")?;
        if rest.len() < TAG_HEX + 1 || rest[TAG_HEX] != b'\n' {
            return Err("it is truncated".into());
        }
        let (tag, artifact) = (&rest[..TAG_HEX], &rest[TAG_HEX + 1..]);
        // verify_slice compares in constant time.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(component_sha.as_bytes());
        mac.update(b"\n");
        mac.update(artifact);
        let tag = hex::decode(tag).map_err(|_| "its seal is damaged".to_string())?;
        if mac.verify_slice(&tag).is_err() {
            return Err("its seal does not match the pinned component (another component's artifact, or tampered)".into());
        }
        Ok(artifact.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swapped_tampered_or_shared_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealKey::load_or_create(&dir.path().join("keys/cache.key")).unwrap();
        let entry = dir.path().join("a.cwasm");
        crate::atomic::write(&entry, &key.seal("sha-a", b"artifact of a")).unwrap();
        assert_eq!(key.open(&entry, "sha-a").unwrap(), b"artifact of a");
        // Another component's artifact under this component's name.
        assert!(key.open(&entry, "sha-b").unwrap_err().contains("does not match"));
        // One flipped byte.
        let mut bytes = std::fs::read(&entry).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&entry, &bytes).unwrap();
        assert!(key.open(&entry, "sha-a").unwrap_err().contains("does not match"));
        // Writable by others.
        crate::atomic::write(&entry, &key.seal("sha-a", b"artifact of a")).unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(key.open(&entry, "sha-a").unwrap_err().contains("writable by group or others"));
        // A key from another installation does not open it.
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        let other = SealKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&entry, "sha-a").is_err());
    }
}
