//! The lifecycle against the machine's real Docker engine. Every test uses its own environment id and subnet pool,
//! and a guard removes its environment when the test ends — also when it fails — and then checks nothing is left.

use std::collections::BTreeMap;
use std::time::Duration;

use orch::engine::{DockerEngine, Engine};
use orch::facts::Facts;
use orch::lifecycle::{self, LifecycleError, UpOptions};
use orch::plan::{Plan, WaitStrategy};

use crate::support::{self, IMAGE, ensure_image};

mod fidelity;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One test's environment: removed on drop, then checked to be gone.
struct Env {
    id: String,
    project: String,
    engine: DockerEngine,
}

impl Drop for Env {
    fn drop(&mut self) {
        let rt = rt();
        let filter = orch::labels::env_filter(Some(&self.project), &self.id);
        let _ = rt.block_on(lifecycle::down(&self.engine, &filter, true));
        let left = leftovers(&rt, &self.engine, &self.id);
        if !std::thread::panicking() {
            assert_eq!(left, 0, "environment {} left resources behind", self.id);
        }
    }
}

fn leftovers(rt: &tokio::runtime::Runtime, engine: &DockerEngine, env: &str) -> usize {
    let f = vec![format!("orch.env={env}")];
    let c = rt.block_on(engine.containers_labelled(&f)).unwrap().len();
    let n = rt.block_on(engine.networks_labelled(&f)).unwrap().len();
    let v = rt.block_on(engine.volumes_labelled(&f)).unwrap().len();
    c + n + v
}

struct Setup {
    rt: tokio::runtime::Runtime,
    engine: DockerEngine,
    dir: tempfile::TempDir,
    _sharing: support::Sharing,
}

fn setup() -> Setup {
    let rt = rt();
    let engine = rt.block_on(DockerEngine::connect()).expect("the Docker engine must be running for these tests");
    ensure_image(&rt, &engine);
    Setup { rt, engine, dir: tempfile::tempdir().unwrap(), _sharing: support::sharing_the_engine() }
}

impl Setup {
    /// Plans `compose` for env `id` with its own /16 pool (tests run in parallel and must not race for subnets).
    fn plan(&self, id: &str, pool: u8, compose: &str) -> (Plan, Env) {
        let file = self.dir.path().join("compose.yaml");
        std::fs::write(&file, compose).unwrap();
        let facts = self.rt.block_on(orch::engine::gather_facts(&self.engine)).unwrap();
        let env_id = format!("{id}-{}", std::process::id());
        let request = orch::PlanRequest {
            compose: orch_compose::LoadOptions { files: vec![file], ..Default::default() },
            env_id: Some(env_id.clone()),
            env_kind: Default::default(),
            pools: vec![format!("10.{pool}.0.0/16").parse().unwrap()],
        };
        let plan = orch::make_plan(&request, &[], &facts).unwrap().plan;
        let env = Env { id: env_id, project: plan.identity.project.clone(), engine: self.engine.clone() };
        (plan, env)
    }

    fn up(&self, plan: &Plan) -> Result<lifecycle::UpReport, LifecycleError> {
        let opts = UpOptions { timeout: Duration::from_secs(60), ..UpOptions::default() };
        self.rt.block_on(lifecycle::up(&self.engine, plan, &opts, &|_| {}))
    }

    fn exec(&self, container: &str, cmd: &[&str]) -> (i64, String) {
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        self.rt.block_on(self.engine.exec(container, &cmd)).unwrap()
    }
}

const STACK: &str = r#"
name: lc
services:
  init:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "echo migrated > /tmp/done; sleep 0.2"]
  web:
    image: orch-test/busybox:latest
    container_name: legacy-web
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/health && httpd -f -p 8080 -h /www"]
    ports: ["8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"]
      interval: 30s
    depends_on:
      init: { condition: service_completed_successfully }
    networks: [front, back]
  worker:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo worker > /www/index.html && httpd -p 8080 -h /www && exec sleep 3600"]
    volumes: ["data:/data"]
    depends_on:
      web: { condition: service_healthy }
    networks: [back]
  outsider:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    networks: [front]
networks:
  front: {}
  back:
    internal: true
volumes:
  data: {}
"#;

#[test]
fn up_and_down_of_a_multi_network_stack() {
    let s = setup();
    let (plan, env) = s.plan("multi", 201, STACK);
    let report = s.up(&plan).unwrap();
    assert_eq!(report.containers.len(), 4);

    // Networks exist with the plan's subnets and orch's labels.
    for (name, n) in &plan.networks {
        let got = s.rt.block_on(s.engine.inspect_network(&n.docker_name)).unwrap();
        assert_eq!(got.subnets, vec![n.subnet.clone().unwrap()], "{name}");
        assert_eq!(got.labels.get("orch.env"), Some(&env.id));
        assert!(got.labels.contains_key("orch.owner") && got.labels.contains_key("orch.plan-hash"));
    }
    // Multi-network service: reachable by service name and by its old fixed name from the shared network.
    let worker = &plan.services["worker"].container_name;
    assert_eq!(s.exec(worker, &["wget", "-q", "-O-", "http://web:8080/health"]), (0, "ok\n".into()));
    assert_eq!(s.exec(worker, &["wget", "-q", "-O-", "http://legacy-web:8080/health"]).0, 0);
    // Isolation: outsider shares no network with worker.
    let outsider = &plan.services["outsider"].container_name;
    // (busybox's `wget -T` crashes, so `timeout` bounds the attempt; web, on back, is the positive control.)
    let web = &plan.services["web"].container_name;
    assert_eq!(s.exec(web, &["timeout", "5", "wget", "-q", "-O-", "http://worker:8080/"]), (0, "worker\n".into()));
    let (code, out) = s.exec(outsider, &["timeout", "3", "wget", "-q", "-O-", "http://worker:8080/"]);
    assert_eq!(code, 1, "outsider reached worker, or wget failed for another reason: {out}");
    // One-shot init ran to completion before web started.
    let init = s.rt.block_on(s.engine.inspect_container(&plan.services["init"].container_name)).unwrap();
    assert_eq!((init.status.as_str(), init.exit_code), ("exited", Some(0)));

    // The named volume is labelled and survives a plain down; --volumes removes it.
    assert_eq!(s.exec(worker, &["sh", "-c", "echo kept > /data/f"]).0, 0);
    let filter = orch::labels::env_filter(Some(&env.project), &env.id);
    let removed = s.rt.block_on(lifecycle::down(&s.engine, &filter, false)).unwrap();
    assert_eq!((removed.containers, removed.networks, removed.volumes), (4, 3, 0));
    let vols = s.rt.block_on(s.engine.volumes_labelled(&filter)).unwrap();
    assert_eq!(vols.len(), 1, "a plain down keeps named volumes");
    let removed = s.rt.block_on(lifecycle::down(&s.engine, &filter, true)).unwrap();
    assert_eq!(removed.volumes, 1);
    assert_eq!(leftovers(&s.rt, &s.engine, &env.id), 0);
    // A second down is a no-op, not an error.
    let again = s.rt.block_on(lifecycle::down(&s.engine, &orch::labels::env_filter(Some(&env.project), &env.id), true)).unwrap();
    assert_eq!(again, lifecycle::Removed::default());
}

#[test]
fn a_failing_one_shot_fails_up_and_rolls_back() {
    let s = setup();
    let compose = r#"
services:
  migrate:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "echo 'relation users does not exist' >&2; exit 3"]
  app:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    depends_on:
      migrate: { condition: service_completed_successfully }
"#;
    let (plan, env) = s.plan("oneshot", 202, compose);
    let err = s.up(&plan).unwrap_err();
    match &err {
        LifecycleError::ServiceFailed { service, reason, logs } => {
            assert_eq!(service, "migrate");
            assert!(reason.contains("status 3"), "{reason}");
            assert!(logs.iter().any(|l| l.contains("relation users does not exist")), "{logs:?}");
        }
        other => panic!("expected the one-shot's failure, got {other}"),
    }
    assert_eq!(leftovers(&s.rt, &s.engine, &env.id), 0, "up must roll back what it created");

    // With --keep-on-failure everything stays for debugging (the guard removes it afterwards).
    let opts = UpOptions { keep_on_failure: true, timeout: Duration::from_secs(60), ..UpOptions::default() };
    assert!(s.rt.block_on(lifecycle::up(&s.engine, &plan, &opts, &|_| {})).is_err());
    let kept = s.rt.block_on(s.engine.containers_labelled(&vec![format!("orch.env={}", env.id)])).unwrap();
    assert_eq!(kept.len(), 2, "both containers are kept for inspection");
}

#[test]
fn a_missing_image_fails_before_anything_is_created() {
    let s = setup();
    let compose = "services:\n  db:\n    image: orch-test/no-such-image:1\n  web:\n    image: orch-test/busybox:latest\n";
    let (plan, env) = s.plan("noimage", 203, compose);
    let err = s.up(&plan).unwrap_err();
    assert!(matches!(&err, LifecycleError::MissingImage { service, image } if service == "db" && image == "orch-test/no-such-image:1"), "{err}");
    assert!(err.to_string().contains("cannot be pulled"));
    assert_eq!(leftovers(&s.rt, &s.engine, &env.id), 0);
}

#[test]
fn every_wait_strategy_against_real_containers() {
    let s = setup();
    let compose = r#"
services:
  tcp:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "sleep 0.5; while true; do nc -l -p 9000 -e true; done"]
    ports: ["9000"]
  http:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "sleep 0.5; mkdir -p /www/api && echo up > /www/api/ping && httpd -f -p 8080 -h /www"]
    ports: ["8080"]
  logline:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "echo booting; sleep 0.5; echo 'database system is ready to accept connections'; sleep 3600"]
  oneshot:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "sleep 0.3"]
"#;
    let (mut plan, _env) = s.plan("waits", 204, compose);
    plan.services.get_mut("tcp").unwrap().wait = vec![WaitStrategy::Tcp { container_port: 9000 }];
    plan.services.get_mut("http").unwrap().wait = vec![WaitStrategy::Http { container_port: 8080, path: "/api/ping".into(), status: 200 }];
    plan.services.get_mut("logline").unwrap().wait =
        vec![WaitStrategy::LogLine { pattern: "ready to accept connections".into(), stream: orch::plan::LogStream::Either, times: 1 }];
    plan.services.get_mut("oneshot").unwrap().wait = vec![WaitStrategy::ExitZero];
    s.up(&plan).unwrap();
    let state = |svc: &str| s.rt.block_on(s.engine.inspect_container(&plan.services[svc].container_name)).unwrap();
    assert_eq!(state("oneshot").exit_code, Some(0));
    assert_eq!(state("tcp").status, "running");
    let logs = s.rt.block_on(s.engine.logs(&plan.services["logline"].container_name, None)).unwrap();
    assert!(logs.iter().any(|(_, l)| l.contains("ready to accept")));
}

#[test]
fn a_wait_that_never_holds_times_out_and_rolls_back() {
    let s = setup();
    let (mut plan, env) = s.plan("timeout", 205, "services:\n  quiet:\n    image: orch-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n");
    plan.services.get_mut("quiet").unwrap().wait =
        vec![WaitStrategy::LogLine { pattern: "never printed".into(), stream: orch::plan::LogStream::Stdout, times: 1 }];
    let opts = UpOptions { timeout: Duration::from_secs(2), ..UpOptions::default() };
    let err = s.rt.block_on(lifecycle::up(&s.engine, &plan, &opts, &|_| {})).unwrap_err();
    assert!(matches!(&err, LifecycleError::Timeout { service, .. } if service == "quiet"), "{err}");
    assert_eq!(leftovers(&s.rt, &s.engine, &env.id), 0);
}

#[test]
fn builds_use_the_cache_unless_the_context_changed_or_no_cache() {
    let s = setup();
    let ctx = s.dir.path().join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM orch-test/busybox:latest\nCOPY app.txt /app.txt\nRUN [\"/bin/sh\", \"-c\", \"date +%s%N > /built-at\"]\n")
        .unwrap();
    std::fs::write(ctx.join("app.txt"), "v1").unwrap();
    let tag = format!("orch-test/app-{}:latest", std::process::id());
    let build = |no_cache: bool| {
        let archive = lifecycle::tar_context(&ctx, "Dockerfile", None).unwrap();
        let spec = orch::engine::BuildSpec {
            tag: tag.clone(),
            context: archive.path().to_path_buf(),
            dockerfile: "Dockerfile".into(),
            no_cache,
            ..Default::default()
        };
        s.rt.block_on(s.engine.build_image(spec)).unwrap();
        s.rt.block_on(s.engine.client().inspect_image(&tag)).unwrap().id.unwrap()
    };
    let first = build(false);
    assert_eq!(build(false), first, "an unchanged context reuses every cached layer");
    std::fs::write(ctx.join("app.txt"), "v2").unwrap();
    let changed = build(false);
    assert_ne!(changed, first, "a changed context rebuilds the app layer");
    assert_ne!(build(true), changed, "--no-cache rebuilds even when nothing changed");
    let _ = s.rt.block_on(s.engine.client().remove_image(&tag, None::<bollard::query_parameters::RemoveImageOptions>, None));
}

#[test]
fn conflicts_remove_dead_runs_leftovers_and_never_touch_foreign_resources() {
    let s = setup();
    let (plan, env) = s.plan("conflict", 206, "services:\n  app:\n    image: orch-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n");
    let name = plan.services["app"].container_name.clone();
    // A container with orch's name, created by a foreign tool: up must fail and leave it alone.
    let foreign =
        orch::engine::ContainerSpec { name: name.clone(), image: IMAGE.into(), command: Some(vec!["sleep".into(), "3600".into()]), ..Default::default() };
    let foreign_id = s.rt.block_on(s.engine.create_container(&foreign)).unwrap();
    let err = s.up(&plan).unwrap_err();
    assert!(matches!(&err, LifecycleError::InTheWay { why, .. } if why.contains("not created by orch")), "{err}");
    assert!(s.rt.block_on(s.engine.inspect_container(&foreign_id)).is_ok(), "the foreign container must survive");
    s.rt.block_on(s.engine.remove_container(&foreign_id)).unwrap();

    // The same name left by a dead orch run (owner pid that does not exist): removed and replaced.
    let mut leftover = foreign.clone();
    leftover.labels = BTreeMap::from([
        ("orch.env".to_string(), env.id.clone()),
        ("orch.project".to_string(), env.project.clone()),
        ("orch.owner".to_string(), format!("4194303:1@{}:{}", hostname(), "dead-boot")),
    ]);
    let stale = s.rt.block_on(s.engine.create_container(&leftover)).unwrap();
    let report = s.up(&plan).unwrap();
    assert_ne!(report.containers["app"], stale);
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn ports_are_discoverable_through_the_cli() {
    let s = setup();
    let file = s.dir.path().join("compose.yaml");
    std::fs::write(&file, "name: cliports\nservices:\n  pg:\n    image: orch-test/busybox:latest\n    command: [\"sh\", \"-c\", \"while true; do nc -l -p 5432 -e true; done\"]\n    ports: [\"5432\", \"127.0.0.1::6543\"]\n").unwrap();
    let env = Env { id: format!("cli-{}", std::process::id()), project: "cliports".into(), engine: s.engine.clone() };
    let orch = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(args)
            .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
            .output()
            .unwrap()
    };
    let up = orch(&["up", "-f", file.to_str().unwrap(), "--env", &env.id, "--pool", "10.207.0.0/16"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    assert_eq!(String::from_utf8_lossy(&up.stdout).trim(), env.id);
    let port = orch(&["port", "--env", &env.id, "pg", "5432"]);
    let addr = String::from_utf8_lossy(&port.stdout).trim().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    std::net::TcpStream::connect(&addr).expect("the published port accepts connections");
    let vars = orch(&["env", "--env", &env.id, "--format", "json"]);
    let vars: BTreeMap<String, String> = serde_json::from_slice(&vars.stdout).unwrap();
    assert_eq!(format!("127.0.0.1:{}", vars["PG_PORT_5432"]), addr);
    assert!(vars.contains_key("PG_PORT_6543"));
    let ps = orch(&["ps", "--env", &env.id, "--format", "json"]);
    let ps: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(ps[0]["state"], "RUNNING");
    let down = orch(&["down", "--env", &env.id]);
    assert!(down.status.success());
    assert_eq!(leftovers(&s.rt, &s.engine, &env.id), 0);
}

#[test]
fn facts_include_existing_networks() {
    let s = setup();
    let facts: Facts = s.rt.block_on(orch::engine::gather_facts(&s.engine)).unwrap();
    assert!(facts.engine_consulted);
    assert!(facts.taken_subnets.iter().any(|n| n.to_string() == "172.17.0.0/16"), "the default bridge is taken: {:?}", facts.taken_subnets);
    assert!(facts.local_images.contains(IMAGE));
}

#[test]
fn restart_waits_for_health_again_and_exec_passes_the_status_through() {
    let s = setup();
    let compose = r#"
name: rs
services:
  web:
    image: orch-test/busybox:latest
    command: ["sh", "-c", "sleep 1; mkdir -p /www && echo ok > /www/health && httpd -f -p 8080 -h /www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"]
      interval: 30s
    stop_grace_period: 1s
"#;
    let (plan, env) = s.plan("restart", 208, compose);
    s.up(&plan).unwrap();
    let name = &plan.services["web"].container_name;
    // Docker's first check is 30 s away; `health` runs the check itself and reports what holds now.
    let filter = orch::labels::env_filter(Some(&env.project), &env.id);
    let engine_view = s.rt.block_on(lifecycle::status(&s.engine, &filter)).unwrap();
    assert_eq!(engine_view[0].state, "STARTING");
    let probed = s.rt.block_on(lifecycle::status_probed(&s.engine, &filter, true)).unwrap();
    assert_eq!(probed[0].state, "HEALTHY");
    let before = s.rt.block_on(s.engine.inspect_container(name)).unwrap().started_at;
    let took = s.rt.block_on(lifecycle::restart(&s.engine, &filter, "web", Duration::from_secs(30))).unwrap();
    assert!(took >= Duration::from_secs(1), "restart returned before the service could be healthy: {took:?}");
    let after = s.rt.block_on(s.engine.inspect_container(name)).unwrap();
    assert_ne!(after.started_at, before);
    assert_eq!(s.exec(name, &["wget", "-q", "-O-", "http://127.0.0.1:8080/health"]), (0, "ok\n".into()));

    let orch = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_orch")).args(args).output().unwrap();
    let out = orch(&["exec", "--env", &env.id, "web", "--", "sh", "-c", "echo hi; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let logs = orch(&["logs", "--env", &env.id, "web"]);
    assert!(logs.status.success());
}

#[test]
fn a_port_taken_outside_orch_after_planning_is_reallocated_from_the_range() {
    let s = setup();
    // Hold the first port of the range the way a non-Docker process would, after the plan was made.
    let compose = "services:\n  web:\n    image: orch-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n    ports:\n      - target: 80\n        published: \"31700-31705\"\n";
    let file = s.dir.path().join("compose.yaml");
    std::fs::write(&file, compose).unwrap();
    let env_id = format!("portretry-{}", std::process::id());
    let request = orch::PlanRequest {
        compose: orch_compose::LoadOptions { files: vec![file], ..Default::default() },
        env_id: Some(env_id.clone()),
        env_kind: Default::default(),
        pools: vec!["10.209.0.0/16".parse().unwrap()],
    };
    let plan = orch::make_plan(&request, &[], &Facts::default()).unwrap().plan;
    let env = Env { id: env_id, project: plan.identity.project.clone(), engine: s.engine.clone() };
    let planned = plan.services["web"].ports[0].host_port.unwrap();
    let _squatter = std::net::TcpListener::bind(("0.0.0.0", planned)).expect("the planned port is free before the squatter");
    s.up(&plan).unwrap();
    let state = s.rt.block_on(s.engine.inspect_container(&plan.services["web"].container_name)).unwrap();
    let got = state.ports.iter().find(|p| p.0 == 80).unwrap().3;
    assert_ne!(got, planned, "the taken port was not used");
    assert!((31700..=31705).contains(&got), "the new port comes from the same range: {got}");
    drop(env);
}

/// A service's build sends its context as Docker's CLI does: what `.dockerignore` excludes never reaches the image
/// (the Dockerfile is still sent, even when excluded, and the daemon leaves it out), and exceptions bring files back.
#[test]
fn builds_honour_dockerignore() {
    let s = setup();
    let ctx = s.dir.path().join("ignored");
    for (f, text) in [
        ("Dockerfile", "FROM orch-test/busybox:latest\nCOPY . /ctx/\n"),
        (".dockerignore", "secret.txt\nlogs\n*.md\n!KEEP.md\nDockerfile\n"),
        ("app.txt", "app"),
        ("secret.txt", "do not ship"),
        ("logs/today.log", "noise"),
        ("NOTES.md", "notes"),
        ("KEEP.md", "kept"),
    ] {
        std::fs::create_dir_all(ctx.join(f).parent().unwrap()).unwrap();
        std::fs::write(ctx.join(f), text).unwrap();
    }
    let tag = format!("orch-test/ignored-{}:latest", std::process::id());
    let archive = lifecycle::tar_context(&ctx, "Dockerfile", None).unwrap();
    let spec = orch::engine::BuildSpec { tag: tag.clone(), context: archive.path().to_path_buf(), dockerfile: "Dockerfile".into(), ..Default::default() };
    s.rt.block_on(s.engine.build_image(spec)).unwrap();
    let out = std::process::Command::new("docker").args(["run", "--rm", &tag, "ls", "-A", "/ctx"]).output().unwrap();
    let _ = std::process::Command::new("docker").args(["rmi", "-f", &tag]).output();
    let listed = String::from_utf8_lossy(&out.stdout);
    let mut files: Vec<&str> = listed.split_whitespace().collect();
    files.sort();
    // The excluded Dockerfile was sent (the daemon needs it) and, as with docker build, is not in the image.
    assert_eq!(files, [".dockerignore", "KEEP.md", "app.txt"], "{}", String::from_utf8_lossy(&out.stderr));
}
