//! The plugin SDK this orch carries (`orch-plugin-api` and its `#[plugin]` macro crate, sources and WIT). `orch plugin
//! new` writes it next to a new plugin crate, which depends on it by a relative path and its version: the crate
//! builds from an installed orch without orch's repository, and can be committed as it is.

use std::path::Path;

/// The SDK's version: its major.minor is the `orch:policy` WIT version it binds.
pub const VERSION: &str = super::runtime::API_VERSION;

const WORKSPACE: &str = include_str!("../../Cargo.toml");

/// (path in the crate, content).
type Files = &'static [(&'static str, &'static str)];

/// (crate directory, its Cargo.toml in orch's workspace, its other files).
const CRATES: [(&str, &str, Files); 2] = [
    (
        "orch-plugin-api",
        include_str!("../../plugin-api/Cargo.toml"),
        &[
            ("src/lib.rs", include_str!("../../plugin-api/src/lib.rs")),
            ("src/builders.rs", include_str!("../../plugin-api/src/builders.rs")),
            ("src/settings.rs", include_str!("../../plugin-api/src/settings.rs")),
            ("wit/policy.wit", include_str!("../../plugin-api/wit/policy.wit")),
            ("README.md", include_str!("../../plugin-api/README.md")),
            ("REFERENCE.md", include_str!("../../plugin-api/REFERENCE.md")),
        ],
    ),
    (
        "orch-plugin-api-macros",
        include_str!("../../plugin-api-macros/Cargo.toml"),
        &[("src/lib.rs", include_str!("../../plugin-api-macros/src/lib.rs")), ("README.md", include_str!("../../plugin-api-macros/README.md"))],
    ),
];

/// Writes the SDK's crates into `dir` (`dir/orch-plugin-api`, `dir/orch-plugin-api-macros`).
pub fn write(dir: &Path) -> std::io::Result<()> {
    for (name, manifest, files) in CRATES {
        let root = dir.join(name);
        for (file, text) in files.iter().copied().chain([("Cargo.toml", standalone(manifest).as_str())]) {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().expect("a file has a folder"))?;
            std::fs::write(path, text)?;
        }
    }
    Ok(())
}

/// `orch plugin vendor`: writes the SDK into `crate_dir/vendor`, replacing an older copy. The folder must be a plugin
/// crate (a Cargo.toml that depends on orch-plugin-api), so nothing else is ever written over. Returns the folder.
pub fn vendor(crate_dir: &Path) -> Result<std::path::PathBuf, String> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = orch_compose::input::read_text(&manifest, 1 << 20).map_err(|e| format!("{}: {e}; run it in a plugin crate", manifest.display()))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{}: {e}", manifest.display()))?;
    if table.get("dependencies").and_then(|d| d.get("orch-plugin-api")).is_none() {
        return Err(format!("{} does not depend on orch-plugin-api; this is not a plugin crate, so nothing was written", manifest.display()));
    }
    let vendor = crate_dir.join("vendor");
    for (name, _, _) in CRATES {
        let old = vendor.join(name);
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| format!("removing the old {}: {e}", old.display()))?;
        }
    }
    write(&vendor).map_err(|e| format!("writing {}: {e}", vendor.display()))?;
    Ok(vendor)
}

/// A workspace member's manifest with everything it inherits from orch's workspace written out, and its path
/// dependencies on the other SDK crate pointing at the sibling folder `write` makes.
fn standalone(manifest: &str) -> String {
    let workspace: toml::Table = WORKSPACE.parse().expect("orch's Cargo.toml parses");
    let ws = |key: &str| workspace["workspace"][key].as_table().cloned().unwrap_or_default();
    let (package_defaults, dependency_defaults) = (ws("package"), ws("dependencies"));
    let mut table: toml::Table = manifest.parse().expect("the SDK's Cargo.toml parses");
    let inherits = |v: &toml::Value| v.get("workspace").and_then(toml::Value::as_bool) == Some(true);
    if let Some(package) = table.get_mut("package").and_then(toml::Value::as_table_mut) {
        for (key, value) in package.iter_mut() {
            if inherits(value) {
                *value = package_defaults[key.as_str()].clone();
            }
        }
    }
    if let Some(deps) = table.get_mut("dependencies").and_then(toml::Value::as_table_mut) {
        for (name, dep) in deps.iter_mut() {
            if !inherits(dep) {
                continue;
            }
            let mut resolved = match dependency_defaults[name.as_str()].clone() {
                toml::Value::String(version) => toml::Table::from_iter([("version".to_string(), toml::Value::String(version))]),
                toml::Value::Table(t) => t,
                other => panic!("workspace dependency {name} is {other}"),
            };
            if resolved.contains_key("path") {
                resolved.insert("path".into(), toml::Value::String(format!("../{name}")));
            }
            // What the member adds to the inherited entry (features, optional).
            for (k, v) in dep.as_table().into_iter().flatten().filter(|(k, _)| *k != "workspace") {
                resolved.insert(k.clone(), v.clone());
            }
            *dep = toml::Value::Table(resolved);
        }
    }
    let header = "# The orch plugin SDK, written here by `orch plugin new` from the orch that made this crate. Once it is on\n# crates.io, depend on it by version alone and delete this folder.\n";
    format!("{header}{}", toml::to_string(&table).expect("a manifest serialises"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_written_sdk_stands_alone_and_is_versioned_with_the_wit() {
        let dir = tempfile::tempdir().unwrap();
        super::write(dir.path()).unwrap();
        let manifest: toml::Table = std::fs::read_to_string(dir.path().join("orch-plugin-api/Cargo.toml")).unwrap().parse().unwrap();
        let text = toml::to_string(&manifest).unwrap();
        assert!(!text.contains("workspace"), "{text}");
        assert_eq!(manifest["package"]["version"].as_str(), Some(super::VERSION));
        assert_eq!(manifest["package"]["edition"].as_str(), Some("2024"));
        assert_eq!(manifest["dependencies"]["orch-plugin-api-macros"]["path"].as_str(), Some("../orch-plugin-api-macros"));
        assert_eq!(manifest["dependencies"]["orch-plugin-api-macros"]["version"].as_str(), Some(super::VERSION));
        assert!(manifest["dependencies"]["wit-bindgen"]["features"].as_array().unwrap().iter().any(|f| f.as_str() == Some("macros")));
        let wit = std::fs::read_to_string(dir.path().join("orch-plugin-api/wit/policy.wit")).unwrap();
        assert!(wit.contains(&format!("package orch:policy@{};", super::VERSION)));
        let macros: toml::Table = std::fs::read_to_string(dir.path().join("orch-plugin-api-macros/Cargo.toml")).unwrap().parse().unwrap();
        assert_eq!(macros["package"]["version"].as_str(), Some(super::VERSION));
        assert_eq!(macros["lib"]["proc-macro"].as_bool(), Some(true));
    }
}
