//! A repository under test cannot harm the host or its other users (#24): crafted `orch.lock`, `orch.toml` and compose
//! files, through the `orch` binary as CI runs it; and on the real engine, labels under `orch.` from a compose file
//! never reach a resource (the reaper and `gc` decide from them).

use std::process::{Command, Output};

use crate::support::{IMAGE, ensure_image_blocking, orch_in, sharing_the_engine};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

const WEB: &str = "services:\n  web:\n    image: busybox\n";

#[test]
fn a_crafted_lock_digest_deletes_nothing() {
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("important.wasm");
    std::fs::write(&victim, "precious").unwrap();
    let stem = victim.with_extension("");
    let lock =
        format!("version = 1\n[[plugin]]\nsource = \"oci://127.0.0.1:1/t/p:1\"\nname = \"p\"\nversion = \"1\"\ndigest = \"sha256:{}\"\n", stem.display());
    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", "[[plugins]]\nuse = \"oci://127.0.0.1:1/t/p:1\"\n"), ("orch.lock", &lock)]);
    let cache = tempfile::tempdir().unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_orch")).args(["plan", "--no-engine"]).current_dir(dir.path()).env("ORCH_CACHE_DIR", cache.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.lock") && stderr(&out).contains("64 lowercase hex"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious", "the file the digest named is untouched");
}

#[test]
fn orch_toml_is_bounded_and_names_nothing_outside_the_repository() {
    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", "files = [\"/etc/passwd\"]\n")]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.toml") && stderr(&out).contains("/etc/passwd") && stderr(&out).contains("outside the project"), "{}", stderr(&out));

    let dir = repo(&[("compose.yaml", WEB), ("orch.toml", &"#".repeat(2 << 20))]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("orch.toml") && stderr(&out).contains("1 MiB"), "{}", stderr(&out));

    let dir = repo(&[("compose.yaml", WEB)]);
    assert!(Command::new("mkfifo").arg(dir.path().join("orch.toml")).status().unwrap().success());
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("named pipe"), "{}", stderr(&out));
}

#[test]
fn hostile_compose_files_are_exit_3() {
    let cases: &[(&str, &str)] = &[
        ("services:\n  web:\n    extends: { file: /dev/zero, service: x }\n", "outside the project"),
        ("services:\n  web:\n    extends: { file: zero.yaml, service: x }\n", "not a regular file"),
        ("services:\n  '-f':\n    image: busybox\n", "invalid service name"),
        ("services:\n  web:\n    build: /\n", "outside the project"),
    ];
    for (compose, expect) in cases {
        let dir = repo(&[("compose.yaml", compose)]);
        // A named pipe inside the repository is not read (a plain read would wait for a writer forever).
        assert!(Command::new("mkfifo").arg(dir.path().join("zero.yaml")).status().unwrap().success());
        let out = orch_in(dir.path(), &["plan", "--no-engine"]);
        assert_eq!(out.status.code(), Some(3), "{compose}: {}", stderr(&out));
        assert!(stderr(&out).contains(expect), "{compose}: {}", stderr(&out));
    }
    let dir = repo(&[("compose.yaml", WEB), (".env", "DB_PASSWORD=\"hunter2${oops\"\n")]);
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("DB_PASSWORD") && !stderr(&out).contains("hunter2"), "{}", stderr(&out));
}

/// A compose volume, network and service labelled like orch's marker (`orch.marker`, `orch.lifetime: kept`,
/// `orch.expires`) would make the reaper keep (or drop) the environment: the labels are dropped with a warning,
/// and the engine's resources carry only orch's own.
#[test]
fn compose_labels_under_orch_never_reach_the_engine() {
    let _engine = sharing_the_engine();
    ensure_image_blocking();
    let compose = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: [\"sleep\", \"300\"]\n    labels: {{ orch.lifetime: kept, team: a }}\n    volumes: [data:/data]\n    networks: [back]\nvolumes:\n  data:\n    labels: {{ orch.marker: \"1\", orch.lifetime: kept, orch.expires: \"0\" }}\nnetworks:\n  back:\n    labels: {{ orch.tier: back }}\n"
    );
    let dir = repo(&[("compose.yaml", &compose)]);
    let plan = orch_in(dir.path(), &["plan", "--no-engine", "--format", "json", "--env", "hl1"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let warned = plan["diagnostics"].as_array().unwrap().iter().filter(|d| d["code"] == "compose.reserved-label").count();
    assert_eq!(warned, 5, "{:#}", plan["diagnostics"]);

    let up = orch_in(dir.path(), &["up", "--env", "hl1", "-p", "hostile"]);
    let cleanup = || {
        let _ = orch_in(dir.path(), &["down", "--env", "hl1", "-p", "hostile", "--volumes"]);
    };
    if !up.status.success() {
        cleanup();
        panic!("up failed: {}", stderr(&up));
    }
    let labels = |kind: &str, name: &str| -> serde_json::Value {
        let field = if kind == "container" { "{{json .Config.Labels}}" } else { "{{json .Labels}}" };
        let out = Command::new("docker").args([kind, "inspect", name, "--format", field]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let volume = labels("volume", "hostile__hl1__data");
    let network = labels("network", "hostile__hl1__back");
    let container = labels("container", "hostile__hl1__web");
    cleanup();
    for (what, l) in [("volume", &volume), ("network", &network), ("container", &container)] {
        for k in ["orch.marker", "orch.lifetime", "orch.expires", "orch.tier"] {
            assert!(l.get(k).is_none(), "the {what} carries {k} from the compose file: {l}");
        }
        assert_eq!(l["orch.env"], "hl1", "the {what} carries orch's own labels: {l}");
    }
    assert_eq!(container["team"], "a", "other labels are kept");
}
