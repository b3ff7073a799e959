//! Builds the misbehaving test plugins and exposes their component paths as constants.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let test_plugins = manifest_dir.parent().unwrap().to_path_buf();
    let root = test_plugins.parent().unwrap().to_path_buf();
    orch_build_support::rerun_if_changed(&[
        &test_plugins.join("misbehave"),
        &test_plugins.join("future-api"),
        &test_plugins.join("legacy-api"),
        &test_plugins.join("api-0.2"),
        &root.join("plugin-api"),
    ]);

    let all = orch_build_support::crates_in(&test_plugins);
    let pick = |dir: &str| &all.iter().find(|(d, _)| d == dir).unwrap_or_else(|| panic!("test-plugins/{dir} missing")).1;
    let built = orch_build_support::build(Some(&root.join("Cargo.toml")), &[pick("misbehave"), pick("api-0.2")], "plugin");
    let (misbehave, api02) = (&built[0], &built[1]);
    // future-api is its own workspace: it carries a copy of the WIT at an incompatible version.
    let future = orch_build_support::build(None, &[pick("future-api")], "release");
    // legacy-api is its own workspace too: it binds the frozen orch:policy@0.1.0.
    let legacy = orch_build_support::build(None, &[pick("legacy-api")], "release");

    let src = format!(
        "/// A plugin whose behaviour is chosen by its `mode` setting (loop, alloc, open-file, socket, panic, invalid-plan, report, ok).\npub const MISBEHAVE: &str = {:?};\n/// A plugin built against orch:policy@0.4.0.\npub const FUTURE_API: &str = {:?};\n/// A plugin built against orch:policy@0.1.0.\npub const LEGACY_API: &str = {:?};\n/// A `services` plugin built against orch:policy@0.2.0.\npub const API_0_2: &str = {:?};\n",
        misbehave.display().to_string(),
        future[0].display().to_string(),
        legacy[0].display().to_string(),
        api02.display().to_string()
    );
    std::fs::write(PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("paths.rs"), src).unwrap();
}
