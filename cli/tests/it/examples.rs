//! README's main job on the real engine: the BPO example comes up healthy with the bpo-networks plugin, its tiers
//! behave as the plugin says, and `orch down` leaves nothing with an `orch.env` label. Both examples also come up
//! and go down from their own folders with plain `orch up` / `orch down`, their orch.toml naming plugins and settings.
//!
//! The tests take turns: BPO's dev ports (8000, 4200, 8081) are fixed, and plain `orch down` needs one environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn orch(args: &[&str]) -> Output {
    orch_in(&root(), args)
}

fn orch_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch")).args(args).current_dir(dir).output().unwrap()
}

static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> (std::sync::MutexGuard<'static, ()>, support::Sharing) {
    (TURN.lock().unwrap_or_else(|e| e.into_inner()), support::sharing_the_engine())
}

fn count(kind: &str, env: &str) -> usize {
    support::count_labelled(kind, &format!("orch.env={env}"))
}

/// Runs examples/images/build.sh once per test process (the tests run in parallel).
pub(crate) fn prepare_images() {
    static DONE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !*done {
        let status = Command::new(root().join("examples/images/build.sh")).status().unwrap();
        assert!(status.success(), "examples/images/build.sh failed");
        *done = true;
    }
}

struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = orch(&["down", "--env", &self.0, "--volumes"]);
    }
}

#[test]
fn bpo_example_comes_up_healthy_and_goes_down_clean() {
    let _turn = turn();
    prepare_images();
    let env = format!("example-{}", std::process::id());
    let _guard = Down(env.clone());
    let up = orch(&["up", "-f", "examples/bpo/compose.yaml", "--plugin", "bpo-networks", "--env", &env, "--timeout", "180s"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));

    // Real PostgreSQL answers SQL inside the environment.
    let sql = orch(&["exec", "--env", &env, "postgres", "--", "psql", "-U", "bpo", "-d", "bpo", "-tAc", "select 6*7"]);
    assert_eq!(String::from_utf8_lossy(&sql.stdout).trim(), "42", "{}", String::from_utf8_lossy(&sql.stderr));
    let pong = orch(&["exec", "--env", &env, "redis", "--", "redis-cli", "ping"]);
    assert_eq!(String::from_utf8_lossy(&pong.stdout).trim(), "PONG");
    // api (main+gpu+external) reaches postgres and redis: its health endpoint requires both.
    let port = orch(&["port", "--env", &env, "api", "8080"]);
    let addr = String::from_utf8_lossy(&port.stdout).trim().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.0 200") && resp.contains("ok api"), "{resp}");
    // Service names resolve across the shared tiers, as in docker compose.
    let shared = orch(&["exec", "--env", &env, "grafana", "--", "getent", "hosts", "prometheus"]);
    assert!(shared.status.success(), "{}", String::from_utf8_lossy(&shared.stderr));

    let down = orch(&["down", "--env", &env]);
    assert!(down.status.success());
    for kind in ["container", "network", "volume"] {
        assert_eq!(count(kind, &env), 0, "{kind}s left behind");
    }
}

#[test]
fn netra_example_runs_with_its_fixed_names_as_aliases() {
    let _turn = turn();
    prepare_images();
    let env = format!("netra-{}", std::process::id());
    let _guard = Down(env.clone());
    let up = orch(&["up", "-f", "examples/netra/compose.yaml", "--env", &env]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // backend requires `netra-test-postgres:5432` — the old container_name, now an alias — and frontend requires
    // backend and auth: frontend healthy means the whole chain resolved and connected.
    let health = orch(&["health", "--env", &env, "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    for s in list.as_array().unwrap() {
        assert_eq!(s["state"], "HEALTHY", "{s}");
    }
    let dotenv = String::from_utf8_lossy(&orch(&["env", "--env", &env]).stdout).into_owned();
    assert!(dotenv.lines().any(|l| l.starts_with("POSTGRES_PORT=")), "{dotenv}");
    assert!(orch(&["down", "--env", &env]).status.success());
    for kind in ["container", "network", "volume"] {
        assert_eq!(count(kind, &env), 0, "{kind}s left behind");
    }
}

/// Takes the environment down (plain `orch down` in the folder) if a test ends early.
struct FolderDown(PathBuf);
impl Drop for FolderDown {
    fn drop(&mut self) {
        let _ = orch_in(&self.0, &["down", "--volumes"]);
    }
}

/// `orch up` and `orch down` with no flags in an example's folder, with `check` on `orch health` in between.
fn up_and_down_in(folder: &str, check: impl Fn(&[serde_json::Value])) {
    let dir = root().join(folder);
    let _guard = FolderDown(dir.clone());
    let up = orch_in(&dir, &["up"]);
    assert!(up.status.success(), "plain `orch up` in {folder}: {}", String::from_utf8_lossy(&up.stderr));
    let env = String::from_utf8_lossy(&up.stdout).trim().to_string();
    // `up` returned once every service was ready; `health` agrees (a probe exec can lose a race on a loaded
    // daemon, so it is asked again for a few seconds before failing).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let list = loop {
        let health = orch_in(&dir, &["health", "--format", "json"]);
        assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));
        let list: Vec<serde_json::Value> = serde_json::from_slice(&health.stdout).unwrap();
        let unhealthy: Vec<_> = list.iter().filter(|s| s["state"] != "HEALTHY").collect();
        if unhealthy.is_empty() {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "{folder}: not healthy: {unhealthy:?}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(list.iter().all(|s| s["env"] == env.as_str()), "{list:?}");
    check(&list);
    let down = orch_in(&dir, &["down"]);
    assert!(down.status.success(), "plain `orch down` in {folder}: {}", String::from_utf8_lossy(&down.stderr));
    for kind in ["container", "network", "volume"] {
        assert_eq!(count(kind, &env), 0, "{folder}: {kind}s left behind");
    }
}

fn published(list: &[serde_json::Value], svc: &str) -> Vec<u64> {
    let s = list.iter().find(|s| s["service"] == svc).unwrap_or_else(|| panic!("no {svc} in {list:?}"));
    s["ports"].as_array().unwrap().iter().map(|p| p[2].as_u64().unwrap()).collect()
}

fn image_of(list: &[serde_json::Value], svc: &str) -> String {
    let s = list.iter().find(|s| s["service"] == svc).unwrap();
    let out = Command::new("docker").args(["inspect", "--format", "{{.Config.Image}}", s["container"].as_str().unwrap()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn both_examples_come_up_and_go_down_from_their_folders_without_flags() {
    let _turn = turn();
    prepare_images();
    // examples/bpo/orch.toml: bpo-networks and port-ranges, dev kind — the BPO document's ports on the external tier.
    up_and_down_in("examples/bpo", |list| {
        assert!(published(list, "api").contains(&8000), "{list:?}");
        assert!(published(list, "postgres").is_empty(), "postgres is not on the external tier: {list:?}");
    });
    // examples/netra/orch.toml: test-isolation, image-variants, health-defaults, port-ranges in test kind.
    up_and_down_in("examples/netra", |list| {
        for s in list {
            let ports = published(list, s["service"].as_str().unwrap());
            assert!(!ports.is_empty() && ports.iter().all(|p| (30000..=40000).contains(p)), "netra ports are hashed into 30000-40000: {s}");
        }
        assert_eq!(image_of(list, "frontend"), "orch-examples/app:latest-alpine");
        assert_eq!(image_of(list, "postgres"), "orch-examples/postgres:15");
    });
}

/// The library session API as a Rust test suite would use it: one project, two environments of netra's stack at
/// once from a `#[tokio::test]`, each with its own PostgreSQL on its own port, one plugin pass per environment, and
/// nothing left after `down` and drop.
#[tokio::test]
// The turn is a std mutex on purpose: it orders this test against the blocking ones in other threads.
#[allow(clippy::await_holding_lock)]
async fn the_session_api_gives_each_test_its_own_netra_stack() {
    use orch::session::{EnvOptions, Project, ProjectOptions};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let _turn = turn();
    prepare_images();
    let project = Project::open(&ProjectOptions { dir: Some(root().join("examples/netra")), ..Default::default() }).unwrap();
    let engine = orch::engine::DockerEngine::connect().await.unwrap();
    let opts = EnvOptions { timeout: std::time::Duration::from_secs(180), ..Default::default() };
    let (a, b) = tokio::join!(project.up(&engine, opts.clone()), project.up(&engine, opts));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.id(), b.id());
    let policies: usize = project.plugins().iter().map(|p| p.plugin.description.implements.len()).sum();
    assert!(policies > 0);
    assert_eq!(project.plugin_calls(), 2 * policies, "each environment runs each plugin policy once");

    let (pa, pb) = (a.port("postgres", 5432).await.unwrap(), b.port("postgres", 5432).await.unwrap());
    assert_ne!(pa.port(), pb.port());
    assert_eq!(a.connection_env().await.unwrap()["POSTGRES_PORT_5432"], pa.port().to_string());
    // Each port is a PostgreSQL server: it answers the protocol's SSLRequest with one byte, N (no TLS) or S.
    for addr in [pa, pb] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await.unwrap();
        let mut answer = [0u8; 1];
        conn.read_exact(&mut answer).await.unwrap();
        assert!(matches!(&answer, b"N" | b"S"), "{addr} answered {answer:?}");
    }
    // And they are separate databases: a table made in one is not in the other.
    let psql = |sql: &'static str| ["psql", "-U", "netra", "-d", "netra_test", "-tAc", sql];
    let (code, out) = a.exec("postgres", &psql("create table only_in_a(x int); select 'made'")).await.unwrap();
    assert_eq!((code, out.lines().last()), (0, Some("made")), "{out}");
    let (_, out) = b.exec("postgres", &psql("select count(*) from pg_tables where tablename = 'only_in_a'")).await.unwrap();
    assert_eq!(out.trim(), "0");

    let (a_id, b_id) = (a.id().to_string(), b.id().to_string());
    let removed = a.down().await.unwrap();
    assert!(removed.containers >= 5, "{removed:?}");
    drop(b);
    for env in [a_id, b_id] {
        for kind in ["container", "network", "volume"] {
            assert_eq!(count(kind, &env), 0, "{kind}s of {env} left behind");
        }
    }
}

/// Seed 004's validation benchmark on netra: three environments at once, each measured (time to ready per service,
/// memory from the engine's statistics, image sizes, up and down time), the regular image variant compared with the
/// configured (Alpine app) one, nothing left behind, and exit 8 with the report when a target cannot be met.
#[test]
fn bench_measures_netra_three_at_once_and_fails_an_impossible_target() {
    let _turn = turn();
    prepare_images();
    let out = orch_in(&root().join("examples/netra"), &["bench", "--parallel", "3", "--format", "json", "--target", "startup=1ms", "--timeout", "240s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "a 1ms startup target is missed: {stderr}");
    assert!(stderr.contains("startup"), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        (r["format"].as_str(), r["project"].as_str(), r["parallel"].as_u64(), r["runs"].as_u64()),
        (Some("orch.bench/v1"), Some("netra"), Some(3), Some(1))
    );
    let envs = r["environments"].as_array().unwrap();
    let configured: Vec<&serde_json::Value> = envs.iter().filter(|e| e["variant"] == "configured").collect();
    assert_eq!(configured.len(), 3, "{r}");
    assert_eq!(envs.iter().filter(|e| e["variant"] == "regular").count(), 3, "image-variants is active: the regular stack is compared, as many at once");
    let mut ids = std::collections::BTreeSet::new();
    for e in envs {
        assert!(e["error"].is_null() && e["conflict"] == false, "{e}");
        assert!(e["up_s"].as_f64().unwrap() > 0.0 && e["down_s"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["memory_bytes"].as_u64().unwrap() > 1 << 20, "{e}");
        assert_eq!(e["leftovers"], serde_json::json!([]), "{e}");
        for (name, s) in e["services"].as_object().unwrap() {
            let ready = s["ready_s"].as_f64().unwrap_or_else(|| panic!("{name} has a time to ready: {e}"));
            assert!(ready > 0.0 && ready <= e["up_s"].as_f64().unwrap() + 0.01, "{name}: {e}");
            assert!(s["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{name} uses memory: {e}");
        }
        ids.insert(e["env"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 6, "every environment its own");
    let service = |n: &str| r["services"].as_array().unwrap().iter().find(|s| s["service"] == n).unwrap().clone();
    let pg = service("postgres");
    assert_eq!(pg["image"], "orch-examples/postgres:15");
    assert!(pg["image_size_bytes"].as_u64().unwrap() > 10 << 20, "{pg}");
    assert_eq!(pg["ready_s"]["n"], 3);
    assert_eq!(service("frontend")["image"], "orch-examples/app:latest-alpine");
    let variants = r["variants"].as_array().unwrap();
    let size = |v: &str| variants.iter().find(|x| x["variant"] == v).unwrap()["image_size_bytes"].as_u64().unwrap();
    assert!(size("regular") > size("configured"), "the regular app image is larger than the static one: {variants:?}");
    let check = |t: &str| r["checks"].as_array().unwrap().iter().find(|c| c["target"] == t).unwrap_or_else(|| panic!("no check {t}: {r}")).clone();
    assert_eq!(check("startup")["pass"], false);
    assert_eq!(check("startup")["limit"], "0.0s");
    for t in ["conflicts", "failures", "leftovers"] {
        assert_eq!(check(t)["pass"], true, "{}", check(t));
    }
    assert_eq!(r["pass"], false);
    assert_eq!(r["totals"]["conflicts"], 0);
    for env in &ids {
        for kind in ["container", "network", "volume"] {
            assert_eq!(count(kind, env), 0, "{kind}s of {env} left behind");
        }
    }
}
