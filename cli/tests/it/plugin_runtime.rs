//! The plugin sandbox against real wasm components: every way a plugin can misbehave fails fast with its own error,
//! and orch never panics because of a plugin.

use std::time::{Duration, Instant};

use orch::plugins::runtime::types::{self, Level};
use orch::plugins::runtime::{CallOutput, wit::exports::orch::policy::networks::NetworkPlan};
use orch::plugins::{LoadedPlugin, PluginError, Runtime, builtin_bytes};
use orch_test_plugins::{FUTURE_API, MISBEHAVE};

fn misbehave(rt: &Runtime) -> LoadedPlugin {
    rt.load("misbehave", &std::fs::read(MISBEHAVE).unwrap()).unwrap()
}

fn snapshot(mode: &str) -> types::Snapshot {
    types::Snapshot {
        api_version: "0.1.0".into(),
        project: "p".into(),
        env_id: "e".into(),
        env_kind: types::EnvKind::Test,
        services: vec![],
        networks: vec![],
        settings: serde_json::json!({ "mode": mode }).to_string(),
        facts: types::Facts { taken_subnets: vec![], taken_host_ports: vec![], local_images: vec![] },
        seed: 1,
    }
}

// The library's own error type, returned as the library returns it.
#[allow(clippy::result_large_err)]
fn run(rt: &Runtime, mode: &str) -> Result<CallOutput<NetworkPlan>, PluginError> {
    misbehave(rt).plan_networks(&snapshot(mode))
}

#[test]
fn a_plugin_cannot_wait_and_fails_at_once() {
    let rt = Runtime::new(None).unwrap();
    let started = Instant::now();
    let err = run(&rt, "sleep").err().expect("an hour's sleep must not succeed");
    // Refused at the first wait, not after the hour: the 2 s figure is measured by bench/attacks.sh, on an idle machine.
    assert!(started.elapsed() < Duration::from_secs(60), "refused after {:?}", started.elapsed());
    match &err {
        PluginError::Waited { plugin, call, import, waited_ms } => {
            assert_eq!((plugin.as_str(), call.as_str(), *waited_ms), ("misbehave", "networks.plan", 3_600_000));
            assert!(import.starts_with("wasi:clocks/monotonic-clock#subscribe"), "{import}");
        }
        other => panic!("expected Waited, got {other}"),
    }
    assert!(err.to_string().contains("cannot wait"), "{err}");
    // Waiting for no time at all (a non-blocking poll) is fine.
    assert!(run(&rt, "yield").is_ok());
}

#[test]
fn hostile_answers_and_behaviour_fail_fast_with_their_own_message() {
    let rt = Runtime::new(None).unwrap();
    let plugin = misbehave(&rt);
    // mode → a piece of the message that says what went wrong.
    let cases = [
        ("many-networks", "`networks` has 20000 entries, over the limit of 4096"),
        ("many-diagnostics", "`diagnostics` has 10000 entries, over the limit of 4096"),
        ("huge-string", "has 4194304 characters, over the limit of 65536"),
        ("long-name", "`networks[0].name` has 100000 characters"),
        ("big-answer", "its answer is over 8388608 bytes"),
        ("stdout-flood", "it printed more than 64 KiB"),
        ("alias", "returned an answer orch cannot read: too much data is being copied"),
        ("stack", "stack overflowed"),
        ("sleep", "cannot wait"),
        ("loop", "CPU budget"),
        ("alloc", "memory"),
    ];
    for (mode, expected) in cases {
        let started = Instant::now();
        let err = plugin.plan_networks(&snapshot(mode)).err().unwrap_or_else(|| panic!("mode {mode} must fail"));
        let elapsed = started.elapsed();
        let text = err.to_string();
        assert!(text.starts_with("plugin misbehave: networks.plan "), "{mode}: {text}");
        assert!(text.contains(expected), "{mode}: {text}");
        // Stopped, not run to completion (an hour's sleep, an endless loop); bench/attacks.sh measures the seconds.
        assert!(elapsed < Duration::from_secs(60), "{mode} took {elapsed:?}");
        assert_eq!(orch::Error::from(err).exit_code(), 4, "{mode}");
    }
    // A plugin after a failed one is unaffected (fresh instance per call).
    assert!(plugin.plan_networks(&snapshot("ok")).is_ok());
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let rt = Runtime::new(None).unwrap();
    let started = Instant::now();
    let err = run(&rt, "loop").err().expect("a loop must not succeed");
    assert!(matches!(err, PluginError::OutOfFuel { ref plugin, ref call, .. } if plugin == "misbehave" && call == "networks.plan"), "{err}");
    assert!(err.to_string().contains("loops forever"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "a looping plugin must be stopped, took {:?}", started.elapsed());
}

#[test]
fn wall_clock_deadline_stops_a_loop_when_fuel_is_plentiful() {
    let mut rt = Runtime::new(None).unwrap();
    rt.limits.fuel = u64::MAX / 2;
    rt.limits.deadline = Duration::from_millis(200);
    let err = run(&rt, "loop").err().expect("a loop must not succeed");
    assert!(matches!(err, PluginError::Timeout { limit_ms: 200, .. }), "{err}");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let mut rt = Runtime::new(None).unwrap();
    rt.limits.memory_bytes = 16 << 20;
    let err = run(&rt, "alloc").err().expect("unbounded allocation must not succeed");
    match err {
        PluginError::OutOfMemory { requested, limit, .. } => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit);
        }
        other => panic!("expected OutOfMemory, got {other}"),
    }
}

#[test]
fn opening_a_file_is_forbidden() {
    let rt = Runtime::new(None).unwrap();
    let err = run(&rt, "open-file").err().expect("file access must fail");
    match &err {
        PluginError::Forbidden { capability, import, .. } => {
            assert_eq!(capability, "the filesystem");
            assert!(import.starts_with("wasi:filesystem/"), "{import}");
        }
        other => panic!("expected Forbidden, got {other}"),
    }
}

#[test]
fn opening_a_socket_is_forbidden() {
    let rt = Runtime::new(None).unwrap();
    let err = run(&rt, "socket").err().expect("socket access must fail");
    match &err {
        PluginError::Forbidden { capability, import, .. } => {
            assert_eq!(capability, "the network");
            assert!(import.starts_with("wasi:sockets/"), "{import}");
        }
        other => panic!("expected Forbidden, got {other}"),
    }
}

#[test]
fn the_environment_is_empty_and_the_clock_is_fixed() {
    let rt = Runtime::new(None).unwrap();
    let err = run(&rt, "env").err().unwrap();
    assert!(matches!(&err, PluginError::Refused { message, .. } if message == "HOME=None"), "{err}");
    let out = run(&rt, "clock").unwrap();
    assert_eq!(out.value.diagnostics[0].message, "946684800", "plugins see 2000-01-01, not the real time");
}

#[test]
fn a_panic_is_reported_with_the_plugins_message_and_the_next_call_works() {
    let rt = Runtime::new(None).unwrap();
    let plugin = misbehave(&rt);
    let err = plugin.plan_networks(&snapshot("panic")).err().unwrap();
    match &err {
        PluginError::Trap { plugin, output, .. } => {
            assert_eq!(plugin, "misbehave");
            assert!(output.contains("misbehave was asked to panic"), "{err}");
        }
        other => panic!("expected Trap, got {other}"),
    }
    // One first line: plugin, call and the plugin's own panic message; no wasm backtrace in the message.
    let first = err.to_string().lines().next().unwrap().to_string();
    assert!(first.starts_with("plugin misbehave: networks.plan crashed: it panicked: misbehave was asked to panic"), "{first}");
    assert!(!err.to_string().contains("wasm function"), "{err}");
    assert!(err.details().is_some_and(|d| d.contains("wasm")), "the backtrace is kept for ORCH_LOG");
    // A fresh instance per call: the trap did not poison the plugin.
    let ok = plugin.plan_networks(&snapshot("ok")).unwrap();
    assert_eq!(ok.logs, vec![(Level::Info, "misbehave: behaving".to_string())]);
}

#[test]
fn a_refusal_carries_code_message_and_path() {
    let rt = Runtime::new(None).unwrap();
    let err = run(&rt, "refuse").err().unwrap();
    assert_eq!(err.to_string(), "plugin misbehave: networks.plan refused the plan: [misbehave.refused] refusing on purpose (at services)");
}

#[test]
fn an_incompatible_api_version_is_refused_with_both_versions() {
    let rt = Runtime::new(None).unwrap();
    let err = rt.load("future-api", &std::fs::read(FUTURE_API).unwrap()).err().expect("0.4.0 must be refused");
    match &err {
        PluginError::IncompatibleApi { found, supported, .. } => {
            assert_eq!(found, "0.4.0");
            assert_eq!(supported, "0.3.0");
        }
        other => panic!("expected IncompatibleApi, got {other}"),
    }
    assert!(err.to_string().contains("rebuild the plugin against orch-plugin-api 0.3.0"), "{err}");
}

#[test]
fn garbage_and_core_modules_are_not_components() {
    let rt = Runtime::new(None).unwrap();
    let err = rt.load("garbage", b"\0asm not really").err().unwrap();
    assert!(matches!(err, PluginError::Compile { .. }), "{err}");
    // The smallest valid core module (magic + version) is still not a component.
    let err = rt.load("core", &[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]).err().unwrap();
    assert!(matches!(err, PluginError::Compile { .. }), "{err}");
}

#[test]
fn settings_are_validated_by_the_plugin() {
    let rt = Runtime::new(None).unwrap();
    let problems = misbehave(&rt).validate_settings(r#"{"mode":"bad-settings"}"#).unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path.as_deref(), Some("mode"));
    let bpo = rt.load("bpo-networks", builtin_bytes("bpo-networks").unwrap()).unwrap();
    let problems = bpo.validate_settings(r#"{"subnets":"sideways","default-tiers":["attic"]}"#).unwrap();
    let codes: Vec<&str> = problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, vec!["bpo.settings", "bpo.unknown-tier"]);
    let problems = bpo.validate_settings(r#"{"subnetz":"fixed"}"#).unwrap();
    assert!(problems[0].message.contains("unknown field `subnetz`"), "{problems:?}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = builtin_bytes("bpo-networks").unwrap();
    let first = Runtime::new(Some(dir.path().to_path_buf())).unwrap().load("bpo-networks", bytes).unwrap();
    assert!(!first.stats.from_cache);
    let second = Runtime::new(Some(dir.path().to_path_buf())).unwrap().load("bpo-networks", bytes).unwrap();
    assert!(second.stats.from_cache);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A corrupt cache entry is replaced, not fatal. (Loaded components map the file: drop them before
    // overwriting it in place, which orch itself never does — it replaces cache files by rename.)
    drop((first, second));
    let entry = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&entry, b"garbage").unwrap();
    let third = Runtime::new(Some(dir.path().to_path_buf())).unwrap().load("bpo-networks", bytes).unwrap();
    assert!(!third.stats.from_cache);
    assert_eq!(third.description.name, "bpo-networks");
}

#[test]
fn a_poisoned_compiled_cache_is_refused_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cache = || Runtime::new(Some(dir.path().to_path_buf())).unwrap();
    let entries = || std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect::<Vec<_>>();
    let bpo = builtin_bytes("bpo-networks").unwrap();
    let ports = builtin_bytes("port-ranges").unwrap();
    cache().load("port-ranges", ports).unwrap();
    let ports_entry = entries()[0].clone();
    cache().load("bpo-networks", bpo).unwrap();
    let bpo_entry = entries().into_iter().find(|p| *p != ports_entry).unwrap();
    // Poison: port-ranges' compiled code under bpo-networks' name, as a cache restored from elsewhere could hold.
    std::fs::copy(&ports_entry, &bpo_entry).unwrap();
    let loaded = cache().load("bpo-networks", bpo).unwrap();
    assert!(!loaded.stats.from_cache, "the poisoned entry must not be loaded");
    assert_eq!(loaded.description.name, "bpo-networks", "the pinned component runs, not the poisoned one");
    let note = loaded.stats.cache_note.clone().expect("the refusal is reported");
    assert!(note.contains("does not match the pinned component") && note.contains("rebuilt"), "{note}");
    // The rebuilt entry is trusted again.
    assert!(cache().load("bpo-networks", bpo).unwrap().stats.from_cache);
    // An entry others may write is not trusted.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bpo_entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let shared = cache().load("bpo-networks", bpo).unwrap();
    assert!(!shared.stats.from_cache);
    assert!(shared.stats.cache_note.unwrap().contains("writable by group or others"));
}

#[test]
fn describe_reports_the_policies_and_api_version() {
    let rt = Runtime::new(None).unwrap();
    let bpo = rt.load("bpo-networks", builtin_bytes("bpo-networks").unwrap()).unwrap();
    assert_eq!(bpo.api_version, "0.3.0");
    assert_eq!(bpo.description.name, "bpo-networks");
    assert!(serde_json::from_str::<serde_json::Value>(&bpo.description.settings_schema).is_ok());
}

#[test]
fn too_many_port_intents_are_refused_before_use() {
    let rt = Runtime::new(None).unwrap();
    let err = misbehave(&rt).plan_ports(&snapshot("many-ports")).err().expect("100,000 port intents must be refused");
    let text = err.to_string();
    // 100,000 intents are over the 8 MiB answer limit before their count is looked at.
    assert!(text.starts_with("plugin misbehave: ports.plan returned too much: its answer is over 8388608 bytes"), "{text}");
    assert_eq!(orch::Error::from(err).exit_code(), 4);
}

/// Plugins run in order and the first failure stops the plan: a plugin after a failed one is never called.
#[test]
fn a_plugin_after_a_failed_one_never_runs() {
    let rt = Runtime::new(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "services:\n  web: {image: web}\n").unwrap();
    let loaded = orch_compose::load(&orch_compose::LoadOptions { files: vec![dir.path().join("compose.yaml")], ..Default::default() }).unwrap();
    let id = orch::plan::Identity { project: loaded.project.name.clone(), env_id: "t".into(), env_kind: orch::plan::EnvKind::Test };
    let mut plan = orch::plan::draft(&loaded.project, &id, &loaded.variables);
    let failing = orch::plugins::ActivePlugin { plugin: misbehave(&rt), settings: r#"{"mode": "sleep"}"#.into() };
    let next = orch::plugins::ActivePlugin { plugin: rt.load("bpo-networks", builtin_bytes("bpo-networks").unwrap()).unwrap(), settings: "{}".into() };
    let err = orch::plugins::apply_all(&mut plan, &[failing, next], &orch::facts::Facts::default()).unwrap_err();
    assert!(matches!(err, PluginError::Waited { .. }), "{err}");
    assert_eq!(plan.plugins, ["misbehave"], "bpo-networks must not have been applied");
    assert!(plan.provenance.values().flatten().all(|source| !source.contains("bpo-networks")));
}
