//! Compiles plugin crates to `wasm32-wasip2` components from a build script, the way wasmtime's
//! `test-programs/artifacts` does: a nested `cargo build` with its own target directory (so it never waits on the
//! outer build's lock), installing the target through rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// A plugin crate to build: its package name and manifest.
pub struct Crate {
    pub package: String,
    pub manifest: PathBuf,
}

impl Crate {
    /// The component file cargo produces for this crate.
    fn artifact(&self, target_dir: &Path, profile: &str) -> PathBuf {
        target_dir.join(TARGET).join(profile).join(format!("{}.wasm", self.package.replace('-', "_")))
    }
}

/// Every crate directory (holding a Cargo.toml) directly below `dir`, sorted by name.
pub fn crates_in(dir: &Path) -> Vec<(String, Crate)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let manifest = path.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = ").map(|v| v.trim_matches('"').to_string()))
            .unwrap_or_else(|| panic!("no package name in {}", manifest.display()));
        let dir_name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.push((dir_name, Crate { package, manifest }));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The shared directory for nested wasm builds: `<outer target dir>/wasm-plugins`, found from OUT_DIR.
pub fn target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    // Cargo marks its target directory with CACHEDIR.TAG; fall back to OUT_DIR for unusual layouts.
    let root = out.ancestors().find(|a| a.join("CACHEDIR.TAG").is_file()).map(Path::to_path_buf).unwrap_or(out);
    root.join("wasm-plugins")
}

fn ensure_target() {
    if let Err(e) = install_target() {
        panic!("{e}");
    }
}

/// Installs the wasm32-wasip2 target through rustup when the toolchain lacks it (also used by `orch plugin build`).
pub fn install_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = Command::new(&rustc).args(["--print", "target-libdir", "--target", TARGET]).output();
    let installed = libdir.ok().filter(|o| o.status.success()).map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).is_dir()).unwrap_or(false);
    if installed {
        return Ok(());
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(tc) = std::env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &tc]);
    }
    let status =
        cmd.status().map_err(|e| format!("the {TARGET} target is missing and rustup could not be run ({e}); install it with `rustup target add {TARGET}`"))?;
    if status.success() { Ok(()) } else { Err(format!("`rustup target add {TARGET}` failed; install the target by hand")) }
}

/// Builds `crates` (all members of the workspace at `manifest`, or of their own workspaces) and returns the
/// component paths in the same order. `profile` is a cargo profile name such as "plugin" or "release".
pub fn build(workspace_manifest: Option<&Path>, crates: &[&Crate], profile: &str) -> Vec<PathBuf> {
    ensure_target();
    let target_dir = target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut groups: Vec<(PathBuf, Vec<&Crate>)> = vec![];
    for c in crates {
        let manifest = workspace_manifest.map(Path::to_path_buf).unwrap_or_else(|| c.manifest.clone());
        match groups.iter_mut().find(|g| g.0 == manifest) {
            Some(g) => g.1.push(c),
            None => groups.push((manifest, vec![c])),
        }
    }
    for (manifest, members) in &groups {
        let mut cmd = Command::new(&cargo);
        cmd.arg("build").arg("--manifest-path").arg(manifest).args(["--target", TARGET, "--profile", profile]);
        cmd.arg("--target-dir").arg(&target_dir);
        for m in members {
            cmd.args(["-p", &m.package]);
        }
        // Flags meant for the host build must not leak into the guest build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(status.success(), "building the wasm plugins {:?} failed (see the errors above)", members.iter().map(|m| &m.package).collect::<Vec<_>>());
    }
    crates.iter().map(|c| c.artifact(&target_dir, profile)).collect()
}

/// Tells cargo to rerun the build script when anything below these paths changes.
pub fn rerun_if_changed(paths: &[&Path]) {
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
