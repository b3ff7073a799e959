//! The `orch` binary as users run it: output formats, `--explain`, plugin commands, and documented exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::orch_in;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn orch(args: &[&str]) -> Output {
    orch_in(&root(), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// From a pool of its own: even without the engine a plan avoids the host's routes, and the networks other tests
/// create and remove meanwhile (in orch's default pool) would change the subnets from one run to the next.
const BPO: &[&str] = &["plan", "-f", "examples/bpo/compose.yaml", "--plugin", "bpo-networks", "--env", "cli", "--no-engine", "--pool", "10.253.0.0/16"];

fn bpo(extra: &[&str]) -> Output {
    let mut args = BPO.to_vec();
    args.extend_from_slice(extra);
    orch(&args)
}

#[test]
fn bpo_plan_has_five_tiers_and_the_seeds_assignments() {
    let out = bpo(&["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["format"], "orch.plan/v1");
    let nets: Vec<&str> = plan["networks"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(nets, ["db", "external", "gpu", "main", "monitoring"]);
    for (tier, internal) in [("db", true), ("gpu", true), ("monitoring", true), ("main", false), ("external", false)] {
        assert_eq!(plan["networks"][tier]["internal"], internal, "{tier}");
        assert_eq!(plan["networks"][tier]["docker_name"], format!("bpo__cli__{tier}"));
    }
    // Seed 003's table.
    let expected: &[(&str, &[&str])] = &[
        ("postgres", &["db", "main"]),
        ("prefect-db", &["db", "main"]),
        ("pgbouncer", &["db", "main"]),
        ("prefect-server", &["external", "main"]),
        ("prefect-agent", &["gpu", "main"]),
        ("api", &["external", "gpu", "main"]),
        ("redis", &["main"]),
        ("ollama", &["gpu", "main"]),
        ("label-studio", &["external", "main"]),
        ("grafana", &["main", "monitoring"]),
        ("prometheus", &["main", "monitoring"]),
    ];
    for (service, tiers) in expected {
        let got: Vec<&str> = plan["services"][service]["networks"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(&got, tiers, "{service}");
    }
    // Only external-tier services publish.
    assert_eq!(plan["services"]["postgres"]["ports"][0]["strategy"]["kind"], "unpublished");
    assert_eq!(plan["services"]["api"]["ports"][0]["host_port"], 8000);
}

#[test]
fn json_output_is_stable_across_runs() {
    let a = bpo(&["--format", "json"]);
    let b = bpo(&["--format", "json"]);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn explain_shows_who_set_each_field() {
    let out = bpo(&["--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().find(|l| l.trim_start().starts_with("networks.main.subnet")).expect("a provenance line for main's subnet");
    assert!(line.ends_with("plugin:bpo-networks → orch"), "{line}");
    let line = text.lines().find(|l| l.trim_start().starts_with("services.api.networks ")).unwrap();
    assert!(line.ends_with("compose → plugin:bpo-networks"), "{line}");
    // JSON carries the same provenance only when asked.
    let json: serde_json::Value = serde_json::from_slice(&bpo(&["--format", "json", "--explain"]).stdout).unwrap();
    assert_eq!(json["provenance"]["networks.db.internal"], serde_json::json!(["plugin:bpo-networks"]));
    let plain: serde_json::Value = serde_json::from_slice(&bpo(&["--format", "json"]).stdout).unwrap();
    assert!(plain.get("provenance").is_none());
}

#[test]
fn composed_plugins_later_wins() {
    let misbehave = orch_test_plugins::MISBEHAVE;
    let out = bpo(&["--plugin", misbehave, "--plugin-setting", "misbehave.mode=override", "--format", "json", "--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["plugins"], serde_json::json!(["bpo-networks", "misbehave"]));
    assert_eq!(plan["networks"]["main"]["subnet_request"], serde_json::json!({ "size": 26 }));
    assert_eq!(plan["networks"]["db"]["internal"], false);
    assert_eq!(plan["provenance"]["networks.main.subnet"], serde_json::json!(["plugin:bpo-networks", "plugin:misbehave", "orch"]));
}

#[test]
fn compose_output_is_a_valid_compose_file() {
    // The export pins the subnets it was given (from BPO's own pool, so no other test's network can take them before
    // the re-import below checks them).
    let out = bpo(&["--format", "compose"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Inside the repository: the export names the examples' build contexts, which orch builds only from inside it.
    let dir = tempfile::tempdir_in(root().join("target")).unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    // The real docker-compose must accept it.
    let check = Command::new("docker-compose").arg("-f").arg(&file).args(["-p", "orchtest", "config", "-q"]).output();
    match check {
        Ok(c) => assert!(c.status.success(), "docker-compose rejected the export: {}", String::from_utf8_lossy(&c.stderr)),
        Err(e) => panic!("docker-compose is needed for this test (.ci/run installs it): {e}"),
    }
    // And orch can import its own export.
    let again = orch(&["plan", "-f", file.to_str().unwrap(), "--env", "cli", "--no-engine", "--format", "json"]);
    assert!(again.status.success(), "{}", stderr(&again));
}

const ROUND_TRIP: &str = r#"
name: roundtrip
services:
  app:
    image: app:1
    environment:
      PRICE: "cost $$5"
    command: ["sh", "-c", "echo $$HOME"]
    cap_add: [NET_ADMIN]
    init: true
    ulimits: { nofile: { soft: 1024, hard: 2048 } }
    shm_size: 64m
    sysctls: { net.core.somaxconn: 1024 }
    extra_hosts: ["somehost:10.1.2.3"]
    dns: [10.9.9.9]
    read_only: true
    stop_signal: SIGUSR1
    stop_grace_period: 7s
    pids_limit: 64
    security_opt: ["no-new-privileges:true"]
    tty: true
    expose: ["4000"]
    volumes:
      - data:/data
      - ./conf:/conf:ro
      - type: tmpfs
        target: /scratch
        tmpfs: { size: 8m }
    secrets: [db-password]
    configs:
      - source: app-config
        target: /etc/app.conf
  side:
    image: side:1
    network_mode: service:app
  friend:
    image: side:1
    volumes_from: ["app:ro"]
    links: ["app:application"]
volumes:
  data: {}
secrets:
  db-password: { file: ./pw.txt }
configs:
  app-config: { file: ./app.conf }
"#;

#[test]
fn compose_export_round_trips_and_docker_compose_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, ROUND_TRIP).unwrap();
    std::fs::write(dir.path().join("pw.txt"), "pw").unwrap();
    std::fs::write(dir.path().join("app.conf"), "conf").unwrap();
    let plan = |f: &std::path::Path, format: &str| {
        // A pool of its own: the export pins the subnet, which no other test's network may take before the re-import.
        let out = orch(&["plan", "-f", f.to_str().unwrap(), "--env", "rt", "--no-engine", "--pool", "10.254.0.0/16", "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    let exported = dir.path().join("exported.yaml");
    std::fs::write(&exported, plan(&file, "compose")).unwrap();
    let check = Command::new("docker-compose")
        .arg("-f")
        .arg(&exported)
        .args(["-p", "orchtest", "config"])
        .output()
        .expect("docker-compose is needed (.ci/run installs it)");
    assert!(check.status.success(), "docker-compose rejected the export: {}", String::from_utf8_lossy(&check.stderr));
    let resolved = String::from_utf8_lossy(&check.stdout);
    assert!(resolved.contains("PRICE: cost $$5") && resolved.contains("echo $$HOME"), "`$` stays escaped:\n{resolved}");
    // Importing the export gives the same services, apart from the names and labels orch derived.
    let first: serde_json::Value = serde_json::from_slice(&plan(&file, "json")).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&plan(&exported, "json")).unwrap();
    for (name, s) in first["services"].as_object().unwrap() {
        for field in
            ["environment", "command", "runtime", "volumes", "files", "network_mode", "links", "volumes_from", "expose", "stop_grace_period_ms", "depends_on"]
        {
            assert_eq!(s.get(field), again["services"][name].get(field), "services.{name}.{field} changed in the round trip");
        }
    }
    assert_eq!(first["services"]["app"]["runtime"]["read_only"], true, "the fixture exercises runtime options");
}

#[test]
fn huge_fields_are_planned_and_shown_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    let huge = "a".repeat(70_000);
    std::fs::write(&file, format!("services:\n  app:\n    image: {huge}\n    environment:\n      X: {huge}\n")).unwrap();
    let out = orch(&["plan", "-f", file.to_str().unwrap(), "--no-engine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains('…'), "long cells are cut in the table");
    let json = orch(&["plan", "-f", file.to_str().unwrap(), "--no-engine", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["services"]["app"]["image"].as_str().map(str::len), Some(70_000), "JSON keeps every character");
}

#[test]
fn exit_codes_are_documented_ones() {
    // 3: invalid input, naming the file and the path at fault.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("compose.yaml");
    std::fs::write(&bad, "services:\n  web:\n    image: web\n    ports: [\"99999:80\"]\n").unwrap();
    let out = orch(&["plan", "-f", bad.to_str().unwrap(), "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("compose.yaml") && err.contains("services.web.ports[0]") && err.contains("99999"), "{err}");

    let out = orch(&["plan", "-f", "does/not/exist.yaml", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("does/not/exist.yaml"));

    let out = orch(&["plan", "-f", "examples/bpo/compose.yaml", "--plugin", "no-such-plugin", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("built-in plugins are bpo-networks"), "{}", stderr(&out));

    let out = bpo(&["--plugin-setting", "bpo-networks.subnets=diagonal"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("`subnets` must be"), "{}", stderr(&out));

    // 4: a plugin failure, naming the plugin, the call and the cause.
    let out = bpo(&["--plugin", orch_test_plugins::MISBEHAVE, "--plugin-setting", "misbehave.mode=loop"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("plugin misbehave: networks.plan used up its CPU budget"), "{}", stderr(&out));

    // 2: usage.
    let out = orch(&["plan", "--env-kind", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    let out = orch(&["plan", "-f", "examples/bpo/compose.yaml", "--env", "Not Valid", "--no-engine"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_input_changes_nothing() {
    // A failed plan leaves no cache junk besides compiled plugins and touches no file of the user's.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, "services: [").unwrap();
    let out = orch(&["plan", "-f", file.to_str().unwrap(), "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "services: [");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn plugin_list_and_inspect() {
    let out = orch(&["plugin", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("bpo-networks") && stdout(&out).contains("networks,ports"));
    let out = orch(&["plugin", "inspect", "bpo-networks", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["api_version"], "0.3.0");
    assert_eq!(v["implements"], serde_json::json!(["networks", "ports"]));
    // The schema is generated from the typed settings: defaults, doc comments, the enum the field accepts.
    let subnets = &v["settings_schema"]["properties"]["subnets"];
    assert_eq!(subnets["default"], "carved");
    assert_eq!(subnets["enum"], serde_json::json!(["carved", "fixed"]));
    assert!(subnets["description"].as_str().unwrap().contains("per environment"), "{subnets}");
    assert_eq!(v["settings_schema"]["additionalProperties"], false);
    let out = orch(&["plugin", "inspect", orch_test_plugins::FUTURE_API]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("orch:policy@0.4.0"), "{}", stderr(&out));
}

#[test]
fn the_snapshot_a_plugin_sees_is_a_fixture_the_sdk_reads() {
    let out = orch(&["plan", "-f", "examples/netra/compose.yaml", "--plugin", "test-isolation", "--env", "snap", "--no-engine", "--format", "snapshot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshot = orch_plugin_api::Snapshot::from_json(&stdout(&out)).unwrap();
    assert_eq!(snapshot.env_id, "snap");
    let postgres = snapshot.services.iter().find(|s| s.image_base() == Some("postgres")).expect("netra has postgres");
    // After test-isolation: the database's data directory is on tmpfs, and the snapshot says so.
    assert!(!postgres.tmpfs.is_empty(), "{postgres:?}");
    assert_eq!(snapshot.settings, "{}");
    // Without an env named, a fixture is still the same on every run and machine (no random id or seed, no host
    // routes): two runs give the same bytes.
    let fixture = || orch(&["plan", "-f", "examples/bpo/compose.yaml", "--plugin", "bpo-networks", "--no-engine", "--format", "snapshot"]);
    let (one, two) = (fixture(), fixture());
    assert!(one.status.success(), "{}", stderr(&one));
    assert_eq!(stdout(&one), stdout(&two), "snapshot fixtures churn");
    let fixed = orch_plugin_api::Snapshot::from_json(&stdout(&one)).unwrap();
    assert_eq!(fixed.env_id, "snapshot");
    assert!(fixed.facts.taken_subnets.is_empty() && fixed.facts.taken_host_ports.is_empty(), "no host facts in a fixture: {:?}", fixed.facts);
    // A snapshot missing a field is refused with the field's name.
    let err = orch_plugin_api::Snapshot::from_json(r#"{"api_version": "0.3.0"}"#).unwrap_err();
    assert!(err.contains("project"), "{err}");
}

#[test]
fn orch_toml_supplies_files_plugins_settings_and_kind_and_flags_win() {
    let bpo = root().join("examples/bpo");
    // No flags: examples/bpo/orch.toml names compose.yaml, bpo-networks then port-ranges, and the dev kind.
    let out = orch_in(&bpo, &["plan", "--no-engine", "--format", "json", "--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["plugins"], serde_json::json!(["bpo-networks", "port-ranges"]));
    assert_eq!(plan["env_kind"], "dev");
    assert_eq!(plan["services"]["api"]["ports"][0]["host_port"], 8000);
    assert_eq!(plan["networks"].as_object().unwrap().len(), 5);
    // A flag beats orch.toml: test kind moves the port into port-ranges' 30000-40000, and --explain says who did it.
    let out = orch_in(&bpo, &["plan", "--no-engine", "--format", "json", "--explain", "--env-kind", "test"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = plan["services"]["api"]["ports"][0]["host_port"].as_u64().unwrap();
    assert!((30000..=40000).contains(&port), "{port}");
    assert_eq!(plan["provenance"]["services.api.ports.8080/tcp"], serde_json::json!(["compose", "plugin:port-ranges"]));
    // --plugin replaces the list; orch.toml's settings still apply to the plugins named in both. (In the repository:
    // the compose file's build contexts must be inside it.)
    let dir = tempfile::tempdir_in(root().join("target")).unwrap();
    std::fs::copy(bpo.join("compose.yaml"), dir.path().join("compose.yaml")).unwrap();
    std::fs::write(dir.path().join("orch.toml"), "[[plugins]]\nuse = \"bpo-networks\"\nsettings = { subnets = \"fixed\" }\n").unwrap();
    let out = orch_in(dir.path(), &["plan", "--no-engine", "--format", "json", "--plugin", "bpo-networks"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["networks"]["db"]["subnet"], "172.32.0.0/16");
    // A mistake in orch.toml is an input error naming the file and the key, before anything runs.
    std::fs::write(dir.path().join("orch.toml"), "env-kind = \"staging\"\n").unwrap();
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("orch.toml") && stderr(&out).contains("staging"), "{}", stderr(&out));
    std::fs::write(dir.path().join("orch.toml"), "[[plugins]]\nuse = \"port-ranges\"\nsettings = { kinds = { test = { strategy = \"range\" } } }\n").unwrap();
    let out = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("port-ranges") && stderr(&out).contains("kinds.test"), "{}", stderr(&out));
}

#[test]
fn a_wasm_file_is_pinned_in_orch_lock_and_a_changed_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "name: pinned\nservices:\n  api:\n    image: team/api:1\n").unwrap();
    std::fs::copy(orch_test_plugins::MISBEHAVE, dir.path().join("mine.wasm")).unwrap();
    std::fs::write(dir.path().join("orch.toml"), "[[plugins]]\nuse = \"./mine.wasm\"\nsettings = { mode = \"ok\" }\n").unwrap();
    // --locked refuses to pin something new (CI should run with a committed lock).
    let locked = orch_in(dir.path(), &["plan", "--no-engine", "--locked"]);
    assert_eq!(locked.status.code(), Some(3), "{}", stderr(&locked));
    assert!(stderr(&locked).contains("--locked") && !dir.path().join("orch.lock").exists(), "{}", stderr(&locked));
    let first = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let lock = std::fs::read_to_string(dir.path().join("orch.lock")).unwrap();
    assert!(lock.contains("source = \"./mine.wasm\"") && lock.contains("digest = \"sha256:"), "{lock}");
    assert!(orch_in(dir.path(), &["plan", "--no-engine", "--locked"]).status.success());
    // Other bytes at the same path: refused before they are loaded, with the way out.
    std::fs::copy(orch_test_plugins::FUTURE_API, dir.path().join("mine.wasm")).unwrap();
    let changed = orch_in(dir.path(), &["plan", "--no-engine"]);
    assert_eq!(changed.status.code(), Some(4));
    assert!(
        stderr(&changed).contains("the file changed since it was pinned") && stderr(&changed).contains("orch plugin update ./mine.wasm"),
        "{}",
        stderr(&changed)
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("orch.lock")).unwrap(), lock, "a refusal changes nothing");
}
