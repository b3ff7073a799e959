//! Where plugin bytes come from and how they are pinned: built-in components, `.wasm` files, plugin crate
//! directories (built with cargo for `wasm32-wasip2`), and OCI references. Pulled components are kept in a cache by
//! digest, so a project whose `orch.lock` pins its plugins runs offline once they have been fetched.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::lock::{Lock, LockEntry};
use super::{PluginError, PluginRef, oci};

/// The component for one reference, and what pins it.
pub struct Fetched {
    pub bytes: Cow<'static, [u8]>,
    /// sha256 of the bytes.
    pub digest: String,
    /// The OCI manifest digest, for OCI references.
    pub manifest: Option<String>,
    /// The lock key (None for built-ins and crates, which are not pinned: their source is).
    pub lock_source: Option<String>,
}

/// Fetches plugins for one command: the digest cache and, in a project, its lock.
pub struct Sources {
    /// `<cache>/oci/sha256/<hex>.wasm`.
    pub cache_dir: Option<PathBuf>,
    pub lock: Option<Lock>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Sources {
    /// Sources sharing the runtime's cache directory (pulled components under `oci/`); `lock` in a project.
    /// Sources over a cache directory of their own (no runtime needed): for tests.
    #[cfg(test)]
    pub(crate) fn with_cache(cache_dir: PathBuf, lock: Option<Lock>) -> Sources {
        Sources { cache_dir: Some(cache_dir), lock, runtime: None }
    }

    pub fn new(runtime: &super::Runtime, lock: Option<Lock>) -> Sources {
        Sources { cache_dir: runtime.cache_dir().map(Path::to_path_buf), lock, runtime: None }
    }

    fn block_on<F: std::future::Future>(&mut self, f: F) -> F::Output {
        // A small runtime of its own: fetching happens before the engine work, outside any other runtime.
        let rt = self.runtime.get_or_insert_with(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"));
        rt.block_on(f)
    }

    /// The cache file of a digest; none for anything that is not a well-formed digest, so no digest can name a path
    /// outside the cache.
    pub(crate) fn cached(&self, digest: &str) -> Option<PathBuf> {
        if !oci::is_digest(digest) {
            return None;
        }
        let hex = digest.strip_prefix("sha256:")?;
        Some(self.cache_dir.as_ref()?.join("oci").join("sha256").join(format!("{hex}.wasm")))
    }

    /// The cached component with this digest, if present and intact (a corrupted copy is dropped).
    pub(crate) fn read_cached(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.cached(digest)?;
        let bytes = orch_compose::input::read_bytes(&path, oci::MAX_COMPONENT_BYTES).ok()?;
        if oci::sha256(&bytes) == digest {
            return Some(bytes);
        }
        let _ = std::fs::remove_file(&path);
        None
    }

    pub(crate) fn store(&self, digest: &str, bytes: &[u8]) {
        if let Some(path) = self.cached(digest) {
            // A failed cache write only means fetching again next time.
            let _ = crate::atomic::write(&path, bytes);
        }
    }

    /// How the lock names a path: relative to the lock's folder when inside it, so the lock works in every clone.
    fn path_key(&self, path: &Path) -> String {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        match &self.lock {
            Some(lock) => match abs.strip_prefix(std::path::absolute(lock.dir()).unwrap_or_default()) {
                Ok(rel) => format!("./{}", rel.display()),
                Err(_) => abs.display().to_string(),
            },
            None => abs.display().to_string(),
        }
    }

    /// The component bytes for a reference, verified against the lock when there is one.
    pub fn fetch(&mut self, r: &PluginRef) -> Result<Fetched, PluginError> {
        match r {
            PluginRef::Builtin(_) => {
                let bytes = r.builtin()?;
                Ok(Fetched { digest: oci::sha256(bytes), bytes: Cow::Borrowed(bytes), manifest: None, lock_source: None })
            }
            PluginRef::Path(p) if p.is_dir() => {
                let wasm = build_crate(p, false)?;
                let bytes = std::fs::read(&wasm).map_err(|source| PluginError::Read { path: wasm, source })?;
                Ok(Fetched { digest: oci::sha256(&bytes), bytes: Cow::Owned(bytes), manifest: None, lock_source: None })
            }
            PluginRef::Path(p) => {
                let bytes = orch_compose::input::read_bytes(p, oci::MAX_COMPONENT_BYTES)
                    .map_err(|e| PluginError::Read { path: p.clone(), source: std::io::Error::other(e) })?;
                let digest = oci::sha256(&bytes);
                let key = self.path_key(p);
                if let Some(entry) = self.lock.as_ref().and_then(|l| l.get(&key))
                    && entry.digest != digest
                {
                    return Err(self.mismatch(&key, &entry.digest, &digest, "the file changed since it was pinned"));
                }
                Ok(Fetched { bytes: Cow::Owned(bytes), digest, manifest: None, lock_source: Some(key) })
            }
            PluginRef::Oci(text) => {
                let pinned = self.lock.as_ref().and_then(|l| l.get(text)).cloned();
                if let Some(entry) = &pinned
                    && let Some(bytes) = self.read_cached(&entry.digest)
                {
                    return Ok(Fetched {
                        bytes: Cow::Owned(bytes),
                        digest: entry.digest.clone(),
                        manifest: entry.manifest.clone(),
                        lock_source: Some(text.clone()),
                    });
                }
                let pulled = self.block_on(oci::pull(text, pinned.as_ref().and_then(|e| e.manifest.as_deref())))?;
                if let Some(entry) = &pinned
                    && entry.digest != pulled.digest
                {
                    return Err(self.mismatch(text, &entry.digest, &pulled.digest, "the registry serves different content"));
                }
                self.store(&pulled.digest, &pulled.bytes);
                Ok(Fetched { bytes: Cow::Owned(pulled.bytes), digest: pulled.digest, manifest: Some(pulled.manifest), lock_source: Some(text.clone()) })
            }
        }
    }

    fn mismatch(&self, source: &str, locked: &str, found: &str, why: &str) -> PluginError {
        PluginError::LockMismatch {
            source_ref: source.into(),
            lock: self.lock.as_ref().map(|l| l.path.clone()).unwrap_or_default(),
            locked: locked.into(),
            found: found.into(),
            why: why.into(),
        }
    }

    /// Records what was fetched and loaded in the lock (no-op outside a project).
    pub fn pin(&mut self, fetched: &Fetched, name: &str, version: &str) -> Result<(), PluginError> {
        let (Some(lock), Some(source)) = (self.lock.as_mut(), &fetched.lock_source) else {
            return Ok(());
        };
        lock.insert(LockEntry {
            source: source.clone(),
            name: name.into(),
            version: version.into(),
            digest: fetched.digest.clone(),
            manifest: fetched.manifest.clone(),
        })
    }

    /// Writes the lock if it changed; returns its path when it did.
    pub fn save_lock(&mut self) -> Result<Option<PathBuf>, PluginError> {
        match self.lock.as_mut() {
            Some(lock) => Ok(lock.save()?.then(|| lock.path.clone())),
            None => Ok(None),
        }
    }
}

pub use orch_build_support::TARGET;

/// Builds a plugin crate for `wasm32-wasip2` with cargo (release profile) and returns the component's path.
/// `CARGO_TARGET_DIR` is honoured; the target is installed through rustup when missing.
pub fn build_crate(dir: &Path, verbose: bool) -> Result<PathBuf, PluginError> {
    let manifest = dir.join("Cargo.toml");
    let fail = |message: String| PluginError::Build { dir: dir.to_path_buf(), message };
    if !manifest.is_file() {
        return Err(fail("there is no Cargo.toml here; a plugin crate directory, a .wasm file or an oci:// reference is expected".into()));
    }
    orch_build_support::install_target().map_err(fail)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").arg("--manifest-path").arg(&manifest).args(["--release", "--target", TARGET, "--message-format=json-render-diagnostics"]);
    // On a terminal the front end shows the progress events below (a spinner); without one, cargo's own lines say
    // what is compiled (a CI log would otherwise be silent for the minute or two of a first build).
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !verbose && on_terminal {
        cmd.arg("--quiet");
    }
    // Flags meant for the host's own build must not leak into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(var);
    }
    // The same source gives the same component on every machine: paths rustc would embed (panic locations of the
    // crate, of its dependencies in the cargo registry, of generated code in the target folder) are remapped.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", remap_flags(dir).join("\u{1f}"));
    cmd.stderr(std::process::Stdio::inherit()).stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run {cargo}: {e}")))?;
    // A first build compiles the SDK's dependencies (about a minute on 2 cores): say so, and show what it compiles.
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    // Progress is reported as events (target `orch::plugin_build`): the front end shows them (a spinner, a line).
    tracing::info!(target: "orch::plugin_build", plugin = %name, "building plugin {name} for {TARGET} (a first build compiles the SDK's dependencies: a minute or two)");
    // The artifact path from cargo's own messages: robust to target-dir settings and package names.
    let mut wasm = None;
    let mut compiled = 0;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        compiled += 1;
        let last = msg["target"]["name"].as_str().unwrap_or("?");
        tracing::debug!(target: "orch::plugin_build", plugin = %name, compiled, last, "building plugin {name} for {TARGET}: {compiled} crates, last {last}");
        if msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib")) {
            wasm = msg["filenames"].as_array().and_then(|f| f.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm")).map(PathBuf::from));
        }
    }
    let status = child.wait().map_err(|e| fail(format!("waiting for {cargo}: {e}")))?;
    tracing::debug!(target: "orch::plugin_build", plugin = %name, done = true, success = status.success(), "built plugin {name}");
    if !status.success() {
        return Err(fail("cargo build failed (its errors are above)".into()));
    }
    wasm.ok_or_else(|| fail("cargo built no .wasm component; a plugin crate needs `crate-type = [\"cdylib\"]` under [lib]".into()))
}

/// `--remap-path-prefix` for the machine-specific folders of a plugin build: cargo's home (`/cargo`), the crate
/// (`/plugin`) and its target folder (`/target`); rustc applies the last that matches, so the most specific is last.
fn remap_flags(dir: &Path) -> Vec<String> {
    let crate_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate_dir.join("target"));
    let target = std::fs::canonicalize(&target).unwrap_or(target);
    cargo_home
        .into_iter()
        .map(|h| (h, "/cargo"))
        .chain([(crate_dir, "/plugin"), (target, "/target")])
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_builds_remap_every_machine_specific_folder() {
        let dir = tempfile::tempdir().unwrap();
        let flags = remap_flags(dir.path());
        let crate_dir = std::fs::canonicalize(dir.path()).unwrap();
        assert!(flags.iter().any(|f| f == &format!("--remap-path-prefix={}=/plugin", crate_dir.display())), "{flags:?}");
        assert!(flags.iter().any(|f| f.ends_with("=/cargo")), "{flags:?}");
        assert!(flags.last().unwrap().ends_with("=/target"), "the most specific comes last: {flags:?}");
    }

    /// The finding of #24: `sha256:/some/dir/important` made `orch plan` delete `/some/dir/important.wasm` as "the
    /// corrupted copy". A digest that is not sha256 hex names no file at all.
    #[test]
    fn a_crafted_digest_names_no_file_outside_the_cache() {
        let cache = tempfile::tempdir().unwrap();
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("important.wasm");
        std::fs::write(&victim, "precious").unwrap();
        let sources = Sources { cache_dir: Some(cache.path().to_path_buf()), lock: None, runtime: None };
        let stem = victim.with_extension("");
        for digest in [format!("sha256:{}", stem.display()), format!("sha256:../../../..{}", stem.display())] {
            assert_eq!(sources.cached(&digest), None, "{digest}");
            assert!(sources.read_cached(&digest).is_none());
            sources.store(&digest, b"junk");
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        // A well-formed digest whose cached copy is corrupted is dropped, inside the cache.
        let digest = oci::sha256(b"component");
        sources.store(&digest, b"other bytes");
        let path = sources.cached(&digest).unwrap();
        assert!(path.starts_with(cache.path()) && path.exists());
        assert!(sources.read_cached(&digest).is_none());
        assert!(!path.exists());
    }
}

/// Bounded fuzz cases (more in bench/fuzz.sh, which sets PROPTEST_CASES).
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a lock file says a digest is, it names no file outside the plugin cache: the lock refuses it, or
        /// the cache path stays inside the cache, and a file beside the cache is never written or removed.
        #[test]
        fn lock_digests_name_no_file_outside_the_cache(digest in "(sha256:|sha512:|)([0-9a-f]{64}|[0-9a-fA-F]{0,70}|[./a-z~%]{0,30}|\\PC{0,20})") {
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join("cache");
            let victim = dir.path().join("victim.wasm");
            std::fs::write(&victim, "precious").unwrap();
            let escaped = digest.replace('\\', "\\\\").replace('"', "\\\"");
            let text = format!("version = 1\n[[plugin]]\nsource = \"oci://r/x:1\"\nname = \"x\"\nversion = \"1\"\ndigest = \"{escaped}\"\n");
            std::fs::write(dir.path().join("orch.lock"), text).unwrap();
            let lock = crate::lock::Lock::load(dir.path());
            if let Ok(lock) = &lock {
                prop_assert!(crate::oci::is_digest(&lock.entries()[0].digest));
            }
            let sources = Sources::with_cache(cache.clone(), None);
            if let Some(path) = sources.cached(&digest) {
                prop_assert!(path.starts_with(&cache) && path.parent() == Some(&cache.join("oci").join("sha256")));
            }
            sources.store(&digest, b"junk");
            let _ = sources.read_cached(&digest);
            prop_assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let name = e.unwrap().file_name();
                prop_assert!(["orch.lock", "victim.wasm", "cache"].contains(&name.to_str().unwrap_or_default()), "{:?} was written", name);
            }
        }
    }
}
