//! Compiles the built-in policy plugins (`plugins/*`) to wasm32-wasip2 components and embeds them in `orch`.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins_dir = root.join("plugins");
    orch_build_support::rerun_if_changed(&[&plugins_dir, &root.join("plugin-api"), &root.join("Cargo.lock"), &root.join("Cargo.toml")]);

    let crates = orch_build_support::crates_in(&plugins_dir);
    let refs: Vec<_> = crates.iter().map(|(_, c)| c).collect();
    let artifacts = orch_build_support::build(Some(&root.join("Cargo.toml")), &refs, "plugin");

    let mut src = String::from("/// Built-in plugins: (name, component bytes).\npub static BUILTIN: &[(&str, &[u8])] = &[\n");
    for ((name, _), path) in crates.iter().zip(&artifacts) {
        src.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("builtin.rs");
    std::fs::write(out, src).unwrap();
}
