//! Cleanup on the real engine: `kill -9` of `orch up` at several points leaves nothing (without any further command),
//! `orch gc` removes exactly the orphans and never unlabelled or live-owned resources, signals tear down, and a
//! network with a foreign container attached is still removed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orch::engine::{ContainerSpec, DockerEngine, Engine, NetworkSpec};

use crate::support::{self, IMAGE, ensure_image};

/// These tests reap: one test's `orch up` would opportunistically remove another's orphan fixtures. One at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn serial_sharing() -> (std::sync::MutexGuard<'static, ()>, support::Sharing) {
    (serial(), support::sharing_the_engine())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn engine(rt: &tokio::runtime::Runtime) -> DockerEngine {
    let e = rt.block_on(DockerEngine::connect()).expect("the Docker engine must be running for these tests");
    ensure_image(rt, &e);
    e
}

fn leftovers(rt: &tokio::runtime::Runtime, engine: &DockerEngine, env: &str) -> usize {
    let f = vec![format!("orch.env={env}")];
    rt.block_on(engine.containers_labelled(&f)).unwrap().len()
        + rt.block_on(engine.networks_labelled(&f)).unwrap().len()
        + rt.block_on(engine.volumes_labelled(&f)).unwrap().len()
}

/// Removes an environment on drop, whatever the test did.
struct Guard(String, String);
impl Drop for Guard {
    fn drop(&mut self) {
        let rt = rt();
        if let Ok(e) = rt.block_on(DockerEngine::connect()) {
            let _ = rt.block_on(orch::reaper::remove(&e, &self.0, &self.1));
        }
    }
}

/// A slow stack: three networks, a fast service, and one whose health takes ~20 s, so `up` can be caught while
/// creating networks, while creating containers and while waiting.
fn slow_stack(dir: &Path) -> PathBuf {
    let file = dir.join("compose.yaml");
    std::fs::write(
        &file,
        r#"name: reap
services:
  fast:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    networks: [a, b]
  slow:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "sleep 20; touch /ready; sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/ready"]
    networks: [b, c]
    depends_on: [fast]
networks:
  a: {}
  b: {}
  c: {}
"#,
    )
    .unwrap();
    file
}

fn spawn_up(file: &Path, env: &str, pool: &str, state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["up", "-f", file.to_str().unwrap(), "--env", env, "--pool", pool, "--timeout", "60s"])
        .env("CI", "1")
        .env("ORCH_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `up`'s progress lines until one contains `needle`.
fn wait_for_line(child: &mut Child, needle: &str) -> BufReader<std::process::ChildStderr> {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "orch up ended before printing {needle:?}");
        if line.contains(needle) {
            return reader;
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[test]
fn sigkill_at_any_point_leaves_nothing_within_15_seconds() {
    let _serial = serial_sharing();
    let rt = rt();
    let engine = engine(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = slow_stack(dir.path());
    let mut times = vec![];
    for (i, moment) in ["created (10.", ": creating", "waiting until healthy"].into_iter().enumerate() {
        let env = format!("kill{i}-{}", std::process::id());
        let _guard = Guard("reap".into(), env.clone());
        let mut child = spawn_up(&file, &env, &format!("10.21{i}.0.0/16"), &dir.path().join("state"));
        let _reader = wait_for_line(&mut child, moment);
        assert!(leftovers(&rt, &engine, &env) > 0, "something must exist when killed at {moment:?}");
        signal(&child, "-KILL");
        let _ = child.wait();
        let killed = Instant::now();
        // No further orch command: the detached watcher must do it.
        while leftovers(&rt, &engine, &env) > 0 {
            assert!(killed.elapsed() < Duration::from_secs(15), "resources of {env} still there 15 s after SIGKILL at {moment:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        times.push(killed.elapsed());
        // The killed process's reservation is reclaimed: nobody sees it once its owner is dead.
        let state = orch::state::StateDir { root: dir.path().join("state") };
        let alloc = state.allocations(Duration::from_secs(10)).unwrap();
        assert!(!alloc.state.envs.keys().any(|k| k.ends_with(&env)), "{:?}", alloc.state.envs.keys().collect::<Vec<_>>());
    }
    times.sort();
    println!("SIGKILL → zero leftovers: {times:?} (median {:?})", times[times.len() / 2]);
}

#[test]
fn sigterm_and_sigint_tear_down_up() {
    let _serial = serial_sharing();
    let rt = rt();
    let engine = engine(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = slow_stack(dir.path());
    for (i, sig) in ["-TERM", "-INT"].into_iter().enumerate() {
        let env = format!("sig{i}-{}", std::process::id());
        let _guard = Guard("reap".into(), env.clone());
        let mut child = spawn_up(&file, &env, &format!("10.22{i}.0.0/16"), &dir.path().join("state"));
        let mut reader = wait_for_line(&mut child, "waiting until healthy");
        signal(&child, sig);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{sig}");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        assert!(rest.contains("removed"), "{sig}: {rest}");
        assert_eq!(leftovers(&rt, &engine, &env), 0, "{sig}: teardown happens before orch exits");
    }
}

fn labels(env: &str, owner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("orch.env".to_string(), env.to_string()),
        ("orch.project".to_string(), "gcproj".to_string()),
        ("orch.owner".to_string(), owner.to_string()),
        ("orch.created".to_string(), "1".to_string()),
    ])
}

#[test]
fn gc_removes_exactly_the_orphans() {
    // gc and doctor look at every environment on the engine.
    let _serial = serial();
    let _alone = support::alone_on_the_engine();
    let rt = rt();
    let engine = engine(&rt);
    let pid = std::process::id();
    let me = orch::owner::Owner::current();
    let dead = orch::owner::Owner { start_time: me.start_time + 1, ..me.clone() };
    let (orphan, live, kept) = (format!("gc-orphan-{pid}"), format!("gc-live-{pid}"), format!("gc-kept-{pid}"));
    let _guards = [Guard("gcproj".into(), orphan.clone()), Guard("gcproj".into(), live.clone()), Guard("gcproj".into(), kept.clone())];
    let make = |env: &str, owner: &orch::owner::Owner, n: u8| {
        let l = labels(env, &owner.label());
        rt.block_on(engine.create_network(&NetworkSpec {
            name: format!("{env}-net"),
            driver: "bridge".into(),
            internal: false,
            subnet: Some(format!("10.23{n}.0.0/24")),
            gateway: None,
            ip_range: None,
            options: BTreeMap::new(),
            labels: l.clone(),
        }))
        .unwrap();
        rt.block_on(engine.create_container(&ContainerSpec {
            name: format!("{env}-c"),
            image: IMAGE.into(),
            command: Some(vec!["sleep".into(), "60".into()]),
            labels: l.clone(),
            ..Default::default()
        }))
        .unwrap();
        rt.block_on(engine.create_volume(&orch::engine::VolumeSpec { name: format!("{env}-data"), labels: l.clone(), ..Default::default() })).unwrap();
    };
    make(&orphan, &dead, 0);
    make(&live, &me, 1);
    make(&kept, &dead, 2);
    rt.block_on(orch::reaper::mark_ready(&engine, &labels(&kept, &dead.label()), "gcproj", &kept, orch::reaper::Lifetime::Kept { expires: None })).unwrap();
    // Unlabelled resources with tempting names.
    let foreign_net = format!("gc-orphan-{pid}-foreign");
    rt.block_on(engine.create_network(&NetworkSpec {
        name: foreign_net.clone(),
        driver: "bridge".into(),
        internal: false,
        // A subnet of its own: Docker would give it the next free 172.x/16, which a compose file with a fixed subnet
        // (the netra example's 172.18.0.0/16) may need while this test runs.
        subnet: Some("10.233.0.0/24".into()),
        gateway: None,
        ip_range: None,
        options: BTreeMap::new(),
        labels: BTreeMap::new(),
    }))
    .unwrap();
    // Unlabelled resources are the test's own to remove, whatever happens.
    struct Foreign(String);
    impl Drop for Foreign {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
            let _ = Command::new("docker").args(["network", "rm", &self.0]).output();
            let _ = Command::new("docker").args(["volume", "rm", &self.0]).output();
        }
    }
    let _foreign = Foreign(foreign_net.clone());
    let foreign_c = rt
        .block_on(engine.create_container(&ContainerSpec {
            name: format!("gc-orphan-{pid}-foreign"),
            image: IMAGE.into(),
            command: Some(vec!["true".into()]),
            ..Default::default()
        }))
        .unwrap();
    rt.block_on(engine.create_volume(&orch::engine::VolumeSpec { name: format!("gc-orphan-{pid}-foreign"), ..Default::default() })).unwrap();

    let orch = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orch")).args(args).output().unwrap();
        assert!(support::ok_but_for_others(&out, &format!("-{pid}")), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = |text: &str| -> Vec<String> { text.lines().filter(|l| l.contains(&format!("-{pid} "))).map(String::from).collect() };

    // doctor names the orphan and says what to do.
    let doctor = Command::new(env!("CARGO_BIN_EXE_orch")).args(["doctor", "--format", "json"]).output().unwrap();
    let checks: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let leaks = checks.as_array().unwrap().iter().find(|c| c["name"] == "leaks").unwrap();
    assert_eq!(leaks["status"], "warn");
    assert!(leaks["detail"].as_str().unwrap().contains(&orphan) && leaks["hint"].as_str().unwrap().contains("orch gc"), "{leaks}");

    let dry = ours(&orch(&["gc", "--dry-run"]));
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(dry[0].starts_with(&format!("would remove {orphan} ")), "{dry:?}");
    assert_eq!(leftovers(&rt, &engine, &orphan), 3, "a dry run removes nothing");

    let done = ours(&orch(&["gc"]));
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(leftovers(&rt, &engine, &orphan), 0);
    assert_eq!(leftovers(&rt, &engine, &live), 3, "a live owner's environment is not touched");
    assert_eq!(leftovers(&rt, &engine, &kept), 4, "a complete, kept environment is not an orphan");
    assert!(rt.block_on(engine.inspect_network(&foreign_net)).is_ok(), "unlabelled network survives");
    assert!(rt.block_on(engine.inspect_container(&foreign_c)).is_ok(), "unlabelled container survives");

    let all = ours(&orch(&["gc", "--all", "-p", "gcproj"]));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(leftovers(&rt, &engine, &kept), 0);
    assert_eq!(leftovers(&rt, &engine, &live), 3, "--all still spares a live owner");

    rt.block_on(engine.remove_container(&foreign_c)).unwrap();
    rt.block_on(engine.remove_network(&foreign_net)).unwrap();
    rt.block_on(engine.remove_volume(&format!("gc-orphan-{pid}-foreign"))).unwrap();
}

#[test]
fn down_disconnects_a_foreign_container_from_the_environments_network() {
    let _serial = serial_sharing();
    let rt = rt();
    let engine = engine(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, "name: strag\nservices:\n  app:\n    image: orch-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n").unwrap();
    let env = format!("strag-{}", std::process::id());
    let _guard = Guard("strag".into(), env.clone());
    let up = Command::new(env!("CARGO_BIN_EXE_orch")).args(["up", "-f", file.to_str().unwrap(), "--env", &env, "--pool", "10.234.0.0/16"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // Someone attaches their own container to the environment's network by hand.
    let net = format!("strag__{env}__default");
    let spec = ContainerSpec {
        name: format!("{env}-visitor"),
        image: IMAGE.into(),
        command: Some(vec!["sleep".into(), "3600".into()]),
        endpoints: vec![orch::engine::Endpoint { network: net.clone(), aliases: vec![], ipv4_address: None, links: vec![] }],
        ..Default::default()
    };
    let visitor = rt.block_on(engine.create_container(&spec)).unwrap();
    rt.block_on(engine.start_container(&visitor)).unwrap();
    let down = Command::new(env!("CARGO_BIN_EXE_orch")).args(["down", "--env", &env]).output().unwrap();
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(leftovers(&rt, &engine, &env), 0);
    assert!(rt.block_on(engine.inspect_network(&net)).is_err(), "the network is gone");
    let still = rt.block_on(engine.inspect_container(&visitor)).unwrap();
    assert_eq!(still.status, "running", "the visitor was disconnected, not removed");
    rt.block_on(engine.remove_container(&visitor)).unwrap();
}

#[test]
fn run_passes_the_exit_status_through_and_always_tears_down() {
    let _serial = serial_sharing();
    let rt = rt();
    let engine = engine(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, "name: runner\nservices:\n  db:\n    image: orch-test/busybox:latest\n    command: [\"sh\", \"-c\", \"while true; do nc -l -p 5432 -e true; done\"]\n    ports: [\"5432\"]\n").unwrap();
    let state = dir.path().join("state");
    let env = format!("run-{}", std::process::id());
    let _guard = Guard("runner".into(), env.clone());
    let out = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args([
            "run",
            "-f",
            file.to_str().unwrap(),
            "--env",
            &env,
            "--pool",
            "10.240.0.0/16",
            "--",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/$DB_HOST/$DB_PORT && echo \"reached $DB_HOST:$DB_PORT in $ORCH_ENV\"; exit 42",
        ])
        .env("ORCH_STATE_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(42), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("reached 127.0.0.1:") && stdout.contains(&env), "{stdout}");
    assert_eq!(leftovers(&rt, &engine, &env), 0, "run tears down after the command");

    // SIGTERM while the command runs: the command is stopped and the environment removed before orch exits.
    let env2 = format!("run2-{}", std::process::id());
    let _guard2 = Guard("runner".into(), env2.clone());
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["run", "-f", file.to_str().unwrap(), "--env", &env2, "--pool", "10.241.0.0/16", "--", "sh", "-c", "echo started >&2; sleep 600"])
        .env("ORCH_STATE_DIR", &state)
        .env("CI", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _reader = wait_for_line(&mut child, "started");
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(leftovers(&rt, &engine, &env2), 0, "SIGTERM during run tears down");
    // The allocation state holds no reservation for either environment afterwards.
    let alloc = std::fs::read_to_string(state.join("allocations.json")).unwrap();
    assert!(!alloc.contains(&env) && !alloc.contains(&env2), "{alloc}");
}

/// An environment another process is taking apart (it holds the removal claim) is nobody else's, even one that looks
/// like an orphan (its lease ran out): `orch gc` leaves it and `orch down` waits for the holder rather than race it. A dead
/// holder's claim protects nothing. Then `down` and two `gc`s of the same environments at once, as on a shared CI
/// host: every command succeeds and nothing is left — no network the engine still thinks has endpoints.
#[test]
fn a_removal_in_progress_is_never_raced() {
    let _serial = serial_sharing();
    let rt = rt();
    let engine = engine(&rt);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        "name: claims\nservices:\n  a: {image: orch-test/busybox:latest, command: [sleep, '3600'], networks: [x, y]}\n  b: {image: orch-test/busybox:latest, command: [sleep, '3600'], networks: [y]}\nnetworks: {x: {}, y: {}}\n",
    )
    .unwrap();
    let pid = std::process::id();
    let envs: Vec<String> = (0..5).map(|i| format!("cl{i}-{pid}")).collect();
    let _guards: Vec<Guard> = envs.iter().map(|e| Guard("claims".into(), e.clone())).collect();
    let orch = |args: &[&str]| support::orch_in(dir.path(), args);
    let up_for = |env: &str, ttl: &str| {
        let out = orch(&["up", "--env", env, "--pool", "10.235.0.0/16", "--ttl", ttl]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Orphans once their one-second lease is over (orch's own watcher leaves an environment with a lease alone).
    let up_expiring = |env: &str| up_for(env, "1s");
    let lease_over = || std::thread::sleep(Duration::from_millis(2100));

    // Held by a live process (this test), lease over: gc leaves it, down waits.
    up_expiring(&envs[0]);
    let orch::claim::Taken::Held(claim) = rt.block_on(orch::claim::try_take(&engine, "claims", &envs[0])).unwrap() else { panic!("no claim") };
    lease_over();
    let before = leftovers(&rt, &engine, &envs[0]);
    let dry = orch(&["gc", "-p", "claims", "--dry-run"]);
    assert!(!String::from_utf8_lossy(&dry.stdout).contains(&envs[0]), "not an orphan: {}", String::from_utf8_lossy(&dry.stdout));
    let gc = orch(&["gc", "-p", "claims"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(!String::from_utf8_lossy(&gc.stdout).contains(&envs[0]), "{}", String::from_utf8_lossy(&gc.stdout));
    assert_eq!(leftovers(&rt, &engine, &envs[0]), before, "gc left the environment being removed alone");
    let mut down = Command::new(env!("CARGO_BIN_EXE_orch")).args(["down", "--env", &envs[0], "-p", "claims"]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(down.try_wait().unwrap().is_none(), "down waits while the claim is held");
    assert_eq!(leftovers(&rt, &engine, &envs[0]), before);
    rt.block_on(claim.release(&engine)).unwrap();
    let out = down.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers(&rt, &engine, &envs[0]), 0);

    // Held by a process that died half-way through its down: gc finishes the job, the claim included.
    up_expiring(&envs[1]);
    let me = orch::owner::Owner::current();
    let dead = orch::owner::Owner { start_time: me.start_time + 1, ..me };
    let stale = BTreeMap::from([
        ("orch.env".to_string(), envs[1].clone()),
        ("orch.project".to_string(), "claims".to_string()),
        ("orch.claim".to_string(), format!("{}#0", dead.label())),
    ]);
    let volume = orch::engine::VolumeSpec { name: orch::claim::claim_name("claims", &envs[1]), labels: stale, ..Default::default() };
    rt.block_on(engine.create_volume(&volume)).unwrap();
    lease_over();
    let gc = orch(&["gc", "-p", "claims"]);
    assert!(gc.status.success(), "{}", String::from_utf8_lossy(&gc.stderr));
    assert!(String::from_utf8_lossy(&gc.stdout).contains(&envs[1]), "{}", String::from_utf8_lossy(&gc.stdout));
    assert_eq!(leftovers(&rt, &engine, &envs[1]), 0);

    // A down and two gcs of each environment at once.
    for env in &envs[2..] {
        up_for(env, "1h");
    }
    let children: Vec<Child> = envs[2..]
        .iter()
        .flat_map(|env| {
            let down = Command::new(env!("CARGO_BIN_EXE_orch")).args(["down", "--env", env, "-p", "claims"]).stderr(Stdio::piped()).spawn().unwrap();
            let gcs = (0..2).map(|_| Command::new(env!("CARGO_BIN_EXE_orch")).args(["gc", "-p", "claims"]).stderr(Stdio::piped()).spawn().unwrap());
            std::iter::once(down).chain(gcs).collect::<Vec<_>>()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for env in &envs {
        assert_eq!(leftovers(&rt, &engine, env), 0, "{env} left something");
    }
}
