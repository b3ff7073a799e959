//! Warm pools on the real engine: claims are unique under twenty concurrent claimers from two state directories, a
//! compose change drains stale members (never handed out), a killed keeper leaves no unclaimed member and a killed
//! claimer's member goes, warm-up commands run before a claim (a failing one is reported, its member removed), and a
//! normal `up` without room takes an idle member's.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use orch::engine::DockerEngine;

use crate::support::{self, IMAGE, ensure_image, orch_in};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A project of one small service with a healthcheck and a published port.
fn project(dir: &Path, name: &str, warm: &[&str]) {
    let rt = rt();
    ensure_image(&rt, &rt.block_on(DockerEngine::connect()).expect("the Docker engine must be running for these tests"));
    std::fs::write(dir.join("compose.yaml"), compose(name, "one")).unwrap();
    let warm: Vec<String> = warm.iter().map(|w| format!("{w:?}")).collect();
    std::fs::write(dir.join("orch.toml"), format!("[pool]\nwarm = [{}]\n", warm.join(", "))).unwrap();
}

fn compose(name: &str, flavour: &str) -> String {
    format!(
        r#"name: {name}
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo $$FLAVOUR > /www/index.html && httpd -f -p 8080 -h /www"]
    environment:
      FLAVOUR: {flavour}
    ports: ["8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
      interval: 1s
      retries: 30
"#
    )
}

/// `orch` in `dir` with state directory `state`.
fn orch(dir: &Path, state: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--state-dir", state.to_str().unwrap()];
    all.extend_from_slice(args);
    orch_in(dir, &all)
}

/// `orch pool start ARGS`, which must succeed.
fn pool_start(dir: &Path, state: &Path, args: &[&str]) {
    let out = orch(dir, state, &[&["pool", "start"], args].concat());
    assert!(out.status.success(), "pool start: {}", String::from_utf8_lossy(&out.stderr));
}

fn pool_status(dir: &Path, state: &Path) -> serde_json::Value {
    let out = orch(dir, state, &["pool", "status", "--format", "json"]);
    assert!(out.status.success(), "pool status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits up to `patience` for `done`.
fn eventually(patience: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < patience {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// Stops the keeper and removes every environment of the project, whatever the test did.
struct Cleanup<'a> {
    dir: &'a Path,
    state: &'a Path,
    project: &'a str,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = orch(self.dir, self.state, &["pool", "stop"]);
        let rt = rt();
        if let Ok(e) = rt.block_on(DockerEngine::connect()) {
            for env in rt.block_on(orch::reaper::environments(&e)).unwrap_or_default().into_iter().filter(|e| e.project == self.project) {
                let _ = rt.block_on(orch::reaper::remove(&e, &env.project, &env.env));
            }
        }
    }
}

fn containers_of(project: &str) -> usize {
    support::count_labelled("container", &format!("orch.project={project}"))
}

/// What `up --from-pool` said: the environment id and whether it came from the pool.
fn claimed(out: &Output) -> (String, bool) {
    assert!(out.status.success(), "up --from-pool: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (id, String::from_utf8_lossy(&out.stderr).contains("from the warm pool in"))
}

#[test]
fn twenty_concurrent_claimers_from_two_state_directories_never_share_a_member() {
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let (state_a, state_b) = (dir.path().join("state-a"), dir.path().join("state-b"));
    project(dir.path(), "poolclaims", &[]);
    let _cleanup = Cleanup { dir: dir.path(), state: &state_a, project: "poolclaims" };
    pool_start(dir.path(), &state_a, &["--size", "8", "--wait", "--pool", "10.237.0.0/16"]);
    assert_eq!(pool_status(dir.path(), &state_a)["ready"], 8);

    let claimers: Vec<_> = (0..20)
        .map(|i| {
            let state = if i % 2 == 0 { &state_a } else { &state_b };
            Command::new(env!("CARGO_BIN_EXE_orch"))
                .args(["--state-dir", state.to_str().unwrap(), "up", "--from-pool", "--pool", "10.237.0.0/16"])
                .current_dir(dir.path())
                .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<(String, bool)> = claimers.into_iter().map(|c| claimed(&c.wait_with_output().unwrap())).collect();
    let ids: std::collections::BTreeSet<&String> = results.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 20, "every claimer got an environment of its own: {results:?}");
    let from_pool = results.iter().filter(|(_, p)| *p).count();
    assert!(from_pool >= 8, "the eight ready members were all handed out (and replacements perhaps): {results:?}");
    // Every environment is whole and its claimer's: one running container each, one deed per claimed one.
    for (id, pooled) in &results {
        assert_eq!(support::count_labelled("container", &format!("orch.env={id}")), 1, "{id}");
        assert_eq!(support::count_labelled("volume", &format!("orch.env={id}")) > 1, *pooled, "{id}: a deed (and marker) exactly when claimed");
    }
}

#[test]
fn a_compose_change_drains_stale_members_and_none_is_handed_out() {
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    project(dir.path(), "poolstale", &[]);
    let _cleanup = Cleanup { dir: dir.path(), state: &state, project: "poolstale" };
    pool_start(dir.path(), &state, &["--size", "2", "--wait", "--pool", "10.238.0.0/16"]);
    let old_key = pool_status(dir.path(), &state)["key"].as_str().unwrap().to_string();

    std::fs::write(dir.path().join("compose.yaml"), compose("poolstale", "two")).unwrap();
    // At once, before the keeper has noticed: the claim must not take an old member.
    let (id, pooled) = claimed(&orch(dir.path(), &state, &["up", "--from-pool", "--pool", "10.238.0.0/16"]));
    let page = orch(dir.path(), &state, &["exec", "--env", &id, "--format", "json", "web", "--", "cat", "/www/index.html"]);
    assert!(String::from_utf8_lossy(&page.stdout).contains("two"), "environment {id} (pooled: {pooled}) runs the new compose file");

    // The keeper drains the old members and makes new ones.
    let drained = eventually(Duration::from_secs(60), || {
        let s = pool_status(dir.path(), &state);
        s["key"] != old_key.as_str()
            && s["ready"] == 2
            && s["members"].as_array().unwrap().iter().filter(|m| m["state"] != "claimed").all(|m| m["key"] == s["key"])
    });
    assert!(drained, "the pool holds only members of the new key: {}", pool_status(dir.path(), &state));
    let (id, pooled) = claimed(&orch(dir.path(), &state, &["up", "--from-pool", "--pool", "10.238.0.0/16"]));
    assert!(pooled, "a member of the new key is handed out");
    let page = orch(dir.path(), &state, &["exec", "--env", &id, "--format", "json", "web", "--", "cat", "/www/index.html"]);
    assert!(String::from_utf8_lossy(&page.stdout).contains("two"), "{}", String::from_utf8_lossy(&page.stdout));
}

#[test]
fn a_killed_keeper_leaves_no_unclaimed_member_and_a_killed_claimers_member_goes() {
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    project(dir.path(), "poolkill", &[]);
    let _cleanup = Cleanup { dir: dir.path(), state: &state, project: "poolkill" };
    pool_start(dir.path(), &state, &["--size", "3", "--wait", "--pool", "10.239.0.0/16"]);
    let keeper: u32 = pool_status(dir.path(), &state)["keeper"].as_str().unwrap().split(':').next().unwrap().parse().unwrap();

    // A claimer that belongs to a test runner (here a sleep), as the Python plugin's are.
    let mut runner = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = runner.id().to_string();
    let (id, pooled) = claimed(&orch(dir.path(), &state, &["up", "--from-pool", "--owner-pid", &pid, "--pool", "10.239.0.0/16"]));
    assert!(pooled);

    Command::new("kill").args(["-9", &keeper.to_string()]).status().unwrap();
    let reaped = eventually(Duration::from_secs(30), || containers_of("poolkill") == 1);
    assert!(reaped, "only the claimed member is left after the keeper's watcher ran: {} containers", containers_of("poolkill"));
    assert_eq!(support::count_labelled("container", &format!("orch.env={id}")), 1, "the claimed member is its claimer's, not the keeper's");

    runner.kill().unwrap();
    runner.wait().unwrap();
    let gone = eventually(Duration::from_secs(30), || containers_of("poolkill") + support::count_labelled("volume", "orch.project=poolkill") == 0);
    assert!(gone, "the claimed member goes with its claimer, its deed and marker too");
}

#[test]
fn warm_up_commands_run_before_a_claim_and_a_failing_one_discards_its_member() {
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    project(dir.path(), "poolwarm", &["echo $ORCH_ENV $WEB_PORT_8080 >> warmed.log"]);
    let _cleanup = Cleanup { dir: dir.path(), state: &state, project: "poolwarm" };
    pool_start(dir.path(), &state, &["--size", "1", "--wait", "--pool", "10.240.0.0/16"]);
    let (id, pooled) = claimed(&orch(dir.path(), &state, &["up", "--from-pool", "--format", "text", "--pool", "10.240.0.0/16"]));
    assert!(pooled);
    let log = std::fs::read_to_string(dir.path().join("warmed.log")).unwrap();
    let port = String::from_utf8_lossy(&orch(dir.path(), &state, &["port", "--env", &id, "web", "8080"]).stdout).trim().rsplit(':').next().unwrap().to_string();
    assert!(log.lines().any(|l| l == format!("{id} {port}")), "the warm-up ran on {id} (port {port}) with its connection variables: {log}");
    let out = orch(dir.path(), &state, &["pool", "stop"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A failing warm-up: reported, and its member removed rather than handed out.
    std::fs::write(dir.path().join("orch.toml"), "[pool]\nwarm = [\"echo seeding failed >&2; exit 3\"]\n").unwrap();
    pool_start(dir.path(), &state, &["--size", "1", "--pool", "10.240.0.0/16"]);
    let reported = eventually(Duration::from_secs(60), || pool_status(dir.path(), &state)["last_error"].as_str().is_some_and(|e| e.contains("seeding failed")));
    assert!(reported, "{}", pool_status(dir.path(), &state));
    let s = pool_status(dir.path(), &state);
    assert!(s["last_error"].as_str().unwrap().contains("status: 3"), "{s}");
    assert_eq!(s["ready"], 0, "{s}");
    let (_, pooled) = claimed(&orch(dir.path(), &state, &["up", "--from-pool", "--pool", "10.240.0.0/16"]));
    assert!(!pooled, "nothing that failed its warm-up is handed out");
}

#[test]
fn a_normal_up_without_room_takes_the_room_of_an_idle_member() {
    // Room is counted on the whole engine: no other test may start or remove environments meanwhile.
    let _alone = support::alone_on_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    project(dir.path(), "poolroom", &[]);
    let _cleanup = Cleanup { dir: dir.path(), state: &state, project: "poolroom" };
    let _ = orch(dir.path(), &state, &["gc"]);
    // The cap (orch.toml's, so the keeper's too) leaves room for exactly the pool's two members.
    let rt = rt();
    let engine = rt.block_on(DockerEngine::connect()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let live = rt.block_on(orch::reaper::environments(&engine)).unwrap();
    let others = live.iter().filter(|e| !matches!(e.verdict(now), orch::reaper::Verdict::Orphan(_))).count();
    std::fs::write(dir.path().join("orch.toml"), format!("max-envs = {}\npools = [\"10.243.0.0/16\"]\n\n[pool]\nsize = 2\n", others + 2)).unwrap();
    pool_start(dir.path(), &state, &["--wait"]);

    for n in 1..=2 {
        let out = orch(dir.path(), &state, &["up", "--env", &format!("room{n}-{}", std::process::id()), "--no-wait-capacity"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "normal up {n} is never starved by the pool: {said}");
        assert!(said.contains("removed idle pool member"), "{said}");
        // The member gave its room and the keeper, bound by the same cap, cannot take it back.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(containers_of("poolroom"), 2, "after up {n}: {n} environment(s) and {} member(s)", 2 - n);
        assert_eq!(support::count_labelled("volume", "orch.pool-ticket"), 2 - n, "after up {n}");
    }
    // With no idle member left, a normal up is refused as before (exit 7: no capacity).
    let out = orch(dir.path(), &state, &["up", "--env", &format!("room3-{}", std::process::id()), "--no-wait-capacity"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    let s = pool_status(dir.path(), &state);
    assert_eq!(s["ready"], 0, "{s}");
    assert!(s["last_error"].as_str().is_some_and(|e| e.contains("no capacity")), "the keeper says why it holds none: {s}");
}
