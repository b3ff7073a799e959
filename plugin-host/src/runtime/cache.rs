//! The compile cache: compiled components on disk, sealed with this user's key, keyed by the component's hash and
//! the engine's compatibility hash; an entry that fails its check is rebuilt, never trusted.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::{PluginError, Runtime};

impl Runtime {
    fn cache_path(&self, sha: &str) -> Option<PathBuf> {
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{}-{:016x}.cwasm", &sha[..32], h.finish())))
    }

    /// The compiled component: from the sealed disk cache when an entry for exactly this component passes its
    /// check, else compiled afresh (and cached). The note says why a cache entry was not used.
    pub(super) fn compile(&self, name: &str, bytes: &[u8], sha: &str) -> Result<(Component, bool, Option<String>), PluginError> {
        let cache = self.cache_path(sha).zip(self.seal.as_ref());
        let mut note = None;
        if let Some((path, seal)) = &cache
            && path.exists()
        {
            match seal.open(path, sha) {
                // SAFETY: the artifact was sealed by this user's key for exactly this component, so this orch's
                // engine (same compatibility hash, in the file name) produced it; wasmtime checks its header too.
                Ok(artifact) => match unsafe { Component::deserialize(&self.engine, &artifact) } {
                    Ok(c) => return Ok((c, true, None)),
                    Err(e) => note = Some(format!("compiled cache entry {} of plugin {name} could not be loaded ({e}); rebuilt it", path.display())),
                },
                Err(why) => note = Some(format!("compiled cache entry {} of plugin {name} was not used: {why}; rebuilt it", path.display())),
            }
        }
        let compiled = self.engine.precompile_component(bytes).map_err(|e| PluginError::Compile { plugin: name.into(), message: format!("{e:#}") })?;
        if let Some((path, seal)) = &cache {
            write_atomically(path, &seal.seal(sha, &compiled));
        }
        // SAFETY: `compiled` was produced by this very engine a moment ago.
        let c =
            unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| PluginError::Compile { plugin: name.into(), message: format!("{e:#}") })?;
        Ok((c, false, note))
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    // A cache write that fails only costs a recompile next time, so errors are ignored.
    let _ = crate::atomic::write(path, bytes);
}
