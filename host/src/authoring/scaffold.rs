//! A new plugin crate from the template (examples/plugin-template, embedded so it works from any directory), with the
//! SDK vendored into it or referenced by a relative path.

use std::path::{Path, PathBuf};

use crate::Error;

/// The template crate's files.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../examples/plugin-template/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../examples/plugin-template/src/lib.rs")),
    ("tests/compose.yaml", include_str!("../../../examples/plugin-template/tests/compose.yaml")),
    ("tests/settings.json", include_str!("../../../examples/plugin-template/tests/settings.json")),
    ("tests/expected.json", include_str!("../../../examples/plugin-template/tests/expected.json")),
    ("README.md", include_str!("../../../examples/plugin-template/README.md")),
    ("rustfmt.toml", include_str!("../../../examples/plugin-template/rustfmt.toml")),
    (".gitignore", "target/\n"),
];
const TEMPLATE_NAME: &str = "policy-template";
/// The template's dependency on the SDK in orch's repository; a new crate's points at its own copy.
const TEMPLATE_SDK: &str = "path = \"../../plugin-api\"";

/// Whether `name` can name a plugin crate: lowercase letters, digits and `-`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

fn camel(name: &str) -> String {
    name.split('-').map(|part| part[..1].to_ascii_uppercase() + &part[1..]).collect()
}

/// Writes plugin crate `name` into `dest` (default: a folder named `name`), which must be absent or empty. With
/// `sdk` (the plugin-api folder of an orch checkout) the crate depends on it by a relative path; without, the SDK is
/// vendored into the crate. Returns the crate's folder.
pub fn new(name: &str, dest: Option<PathBuf>, sdk: Option<&Path>) -> Result<PathBuf, Error> {
    if !valid_name(name) {
        return Err(Error::Usage(format!("invalid plugin name {name:?}: use lowercase letters, digits and -, starting with a letter (e.g. team-ports)")));
    }
    let dest = dest.unwrap_or_else(|| PathBuf::from(name));
    if dest.exists() && std::fs::read_dir(&dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::Usage(format!("{} already exists and is not empty; choose another --path (nothing was written)", dest.display())));
    }
    let io = |what: String| move |e| Error::Io { what, source: e };
    // The SDK by a path relative to the crate, so the crate can be committed and moved with it.
    let sdk_path = match sdk {
        Some(sdk) => {
            let sdk = std::fs::canonicalize(sdk).ok().filter(|p| p.join("Cargo.toml").is_file()).ok_or_else(|| {
                Error::Usage(format!("the orch-plugin-api crate is not at {}; pass --sdk PATH (the plugin-api folder of an orch checkout)", sdk.display()))
            })?;
            std::fs::create_dir_all(&dest).map_err(io(format!("creating {}", dest.display())))?;
            let base = std::fs::canonicalize(&dest).map_err(io(format!("reading {}", dest.display())))?;
            pathdiff::diff_paths(&sdk, &base).unwrap_or(sdk)
        }
        None => {
            let vendor = dest.join("vendor");
            crate::plugins::sdk::write(&vendor).map_err(io(format!("writing the plugin SDK into {}", vendor.display())))?;
            PathBuf::from("vendor/orch-plugin-api")
        }
    };
    let snake = name.replace('-', "_");
    for (file, text) in TEMPLATE {
        let text = text
            .replace(TEMPLATE_SDK, &format!("path = {:?}", sdk_path.display().to_string()))
            .replace(TEMPLATE_NAME, name)
            .replace(&TEMPLATE_NAME.replace('-', "_"), &snake)
            .replace(&camel(TEMPLATE_NAME), &camel(name))
            .replace("made by `orch plugin new` from orch's examples/plugin-template", "made by `orch plugin new`");
        let target = dest.join(file);
        std::fs::create_dir_all(target.parent().expect("has parent")).map_err(io(format!("creating {}", dest.display())))?;
        std::fs::write(&target, text).map_err(io(format!("writing {}", target.display())))?;
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_a_crate_is_written_only_into_an_empty_folder() {
        assert!(valid_name("team-ports") && !valid_name("Team") && !valid_name("a-") && !valid_name("") && !valid_name("1a"));
        assert_eq!(camel("team-ports"), "TeamPorts");
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("team-ports");
        assert_eq!(new("team-ports", Some(dest.clone()), None).unwrap(), dest);
        let manifest = std::fs::read_to_string(dest.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("team-ports") && manifest.contains("vendor/orch-plugin-api"), "{manifest}");
        assert!(dest.join("vendor/orch-plugin-api/Cargo.toml").is_file());
        assert!(matches!(new("team-ports", Some(dest.clone()), None), Err(Error::Usage(_))), "a folder with files is refused");
        assert!(matches!(new("Bad", Some(dir.path().join("x")), None), Err(Error::Usage(_))));
        assert!(!dir.path().join("x").exists(), "a refused name writes nothing");
    }
}
