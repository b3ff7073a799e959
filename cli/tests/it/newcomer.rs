//! What newcomers hit first (#25), through the `orch` binary: one NotFound (exit 9) for every verb that names an
//! environment or a service that is not there, and errors that say where the fault is written.

use std::process::Output;

use crate::support::{IMAGE, ensure_image_blocking, orch_in, sharing_the_engine};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn verbs_naming_a_missing_environment_or_service_exit_9() {
    let _engine = sharing_the_engine();
    ensure_image_blocking();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), format!("name: newcomer\nservices:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"300\"]\n"))
        .unwrap();
    let run = |args: &[&str]| orch_in(dir.path(), args);
    // Nothing of that name: health used to print [] and exit 0, which a report calls healthy.
    for verb in [&["health", "--env", "nc-gone"][..], &["ps", "--env", "nc-gone"], &["health", "--env", "nc-gone", "--format", "json"]] {
        let out = run(verb);
        assert_eq!(out.status.code(), Some(9), "{verb:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nc-gone"), "{}", stderr(&out));
    }
    let up = run(&["up", "--env", "nc1"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let restart = run(&["restart", "--env", "nc1", "nosuch"]);
    let health = run(&["health", "--env", "nc1", "--format", "json"]);
    let down = run(&["down", "--env", "nc1", "--volumes"]);
    let after = run(&["health", "--env", "nc1"]);
    assert_eq!(restart.status.code(), Some(9), "{}", stderr(&restart));
    assert!(stderr(&restart).contains("nosuch"), "{}", stderr(&restart));
    assert!(health.status.success() && String::from_utf8_lossy(&health.stdout).contains("\"web\""), "{}", stderr(&health));
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(after.status.code(), Some(9), "a removed environment is not reported healthy: {}", stderr(&after));
}

#[test]
fn a_plugins_settings_error_names_orch_toml_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  web:\n    image: busybox\n").unwrap();
    std::fs::write(dir.path().join("orch.toml"), "[[plugins]]\nuse = \"port-ranges\"\nsettings = { hostip = \"127.0.0.1\" }\n").unwrap();
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("orch.toml") && err.contains("plugins[0]") && err.contains("hostip") && err.contains("did you mean `host-ip`?"), "{err}");
}

#[test]
fn plugin_test_documents_its_options() {
    let out = orch_in(std::path::Path::new("."), &["plugin", "test", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(help.contains("--compose") && help.contains("The compose file the plugin plans"), "{help}");
    assert!(help.contains("a JSON object inline") && help.contains("or a file"), "{help}");
}

#[test]
fn an_unknown_orch_toml_key_is_named_with_the_nearest_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  web:\n    image: busybox\n").unwrap();
    std::fs::write(dir.path().join("orch.toml"), "[bench]\nstartp = \"30s\"\n").unwrap();
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("orch.toml") && stderr(&out).contains("bench.startp") && stderr(&out).contains("did you mean `startup`?"),
        "{}",
        stderr(&out)
    );
}
