//! The built-in field plugins on the real engine: each test brings up a small stack through the `orch` binary with
//! one plugin and checks the policy where it is observable — in the containers, their networks, ports and images.
//! Every environment is removed by a guard, also when an assertion fails.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{IMAGE, orch_in};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker CLI")
}

/// A temporary project folder holding `compose.yaml` (and whatever else a test writes there).
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(compose: &str) -> Project {
        support::ensure_image_blocking();
        let dir = tempfile::tempdir().unwrap();
        // A fixed project name: a temporary folder's name is not one.
        std::fs::write(dir.path().join("compose.yaml"), format!("name: orch-field\n{}", compose.replace("$IMAGE", IMAGE))).unwrap();
        Project { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn orch(&self, args: &[&str]) -> Output {
        orch_in(self.dir.path(), args)
    }

    /// `orch up` with these arguments; the returned guard takes the environment down.
    fn up(&self, env: &str, args: &[&str]) -> Down {
        let mut all = vec!["up", "--env", env, "--timeout", "90s"];
        all.extend_from_slice(args);
        let guard = Down { dir: self.path(), env: env.to_string() };
        let out = self.orch(&all);
        assert!(out.status.success(), "orch {all:?} failed:\n{}", text(&out.stderr));
        guard
    }
}

struct Down {
    dir: PathBuf,
    env: String,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = orch_in(&self.dir, &["down", "--env", &self.env, "--volumes"]);
    }
}

fn env_name(what: &str) -> String {
    format!("{what}-{}", std::process::id())
}

/// The container of a service, by orch's labels.
fn container(env: &str, service: &str) -> String {
    let out = docker(&["ps", "-aq", "--filter", &format!("label=orch.env={env}"), "--filter", &format!("label=orch.service={service}")]);
    let id = text(&out.stdout).trim().to_string();
    assert!(!id.is_empty(), "no container for {service} in {env}");
    id
}

fn inspect(id: &str, format: &str) -> String {
    text(&docker(&["inspect", "--format", format, id]).stdout).trim().to_string()
}

fn exec(id: &str, cmd: &[&str]) -> (bool, String) {
    let mut args = vec!["exec", id];
    args.extend_from_slice(cmd);
    let out = docker(&args);
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

/// GETs a URL from inside a container: (2xx, output). busybox's `wget -T` crashes, so `timeout` bounds it; a crash
/// would count as "unreachable", so it is ruled out.
fn fetch(id: &str, url: &str) -> (bool, String) {
    let out = docker(&["exec", id, "timeout", "4", "wget", "-q", "-O-", url]);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 1 || code == 143, "wget in {id} ended with {code}: {}", text(&out.stderr));
    (code == 0, text(&out.stdout) + &text(&out.stderr))
}

/// The container's IPv4 address on each of its networks, by orch's network name (the part after the env id).
fn addresses(id: &str) -> Vec<(String, String)> {
    inspect(id, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.rsplit("__").next().unwrap().to_string(), v.to_string())))
        .collect()
}

/// Distinct host ports of an environment (IPv4 and IPv6 bindings of one port count once).
fn host_ports(env: &str) -> Vec<u16> {
    let out = docker(&["ps", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Ports}}"]);
    let set: std::collections::BTreeSet<u16> =
        text(&out.stdout).split([',', '\n']).filter_map(|p| p.trim().split_once("->").and_then(|(h, _)| h.rsplit(':').next()?.parse().ok())).collect();
    set.into_iter().collect()
}

/// httpd on 8080 serving "ok from NAME" at /, so reachability is a wget away.
fn web(name: &str) -> String {
    format!(
        "    image: $IMAGE\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo ok from {name} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    ports: [\"8080\"]\n"
    )
}

#[test]
fn bpo_networks_isolate_tiers_on_the_real_engine() {
    let _sharing = support::sharing_the_engine();
    // vault is only on the db tier, web only on external; grafana and prometheus share monitoring (and main).
    let compose = format!(
        "services:\n  vault:\n{}  web:\n{}  grafana:\n{}  prometheus:\n{}  api:\n{}",
        web("vault"),
        web("web"),
        web("grafana"),
        web("prometheus"),
        web("api")
    );
    let p = Project::new(&compose);
    let env = env_name("bpo-tiers");
    let _down = p.up(&env, &["--plugin", "bpo-networks", "--plugin-setting", r#"bpo-networks.assignments={"vault": ["db"], "web": ["external"]}"#]);
    let (vault, web, grafana, prometheus, api) =
        (container(&env, "vault"), container(&env, "web"), container(&env, "grafana"), container(&env, "prometheus"), container(&env, "api"));

    // The db tier is internal: a db-only container cannot reach the host (the "outside" a test may talk to) through
    // api's published port, while grafana, on the non-internal main tier, can (the positive control).
    assert_eq!(addresses(&vault).iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["db"]);
    let api_port = text(&p.orch(&["port", "--env", &env, "api", "8080"]).stdout).trim().rsplit(':').next().unwrap().to_string();
    let main_gateway = inspect(
        &grafana,
        "{{range $k, $v := .NetworkSettings.Networks}}{{if eq $k \"orch-field__ENV__main\"}}{{$v.Gateway}}{{end}}{{end}}".replace("ENV", &env).as_str(),
    );
    let via_host = format!("http://{main_gateway}:{api_port}/");
    let (ok, body) = fetch(&grafana, &via_host);
    assert!(ok && body.contains("ok from api"), "main-tier grafana should reach the host at {via_host}: {body}");
    let (ok, body) = fetch(&vault, &via_host);
    assert!(!ok && !body.contains("ok from"), "db-only vault reached the host at {via_host}: {body}");
    // Nor can it reach a container on another tier, by address or by name, nor be reached.
    let web_ip = &addresses(&web)[0].1;
    assert!(!fetch(&vault, &format!("http://{web_ip}:8080/")).0, "db-only vault reached external-only web");
    assert!(!fetch(&vault, "http://web:8080/").0);
    assert!(!fetch(&web, "http://vault:8080/").0, "external-only web reached db-only vault");
    // Services sharing a tier do reach each other.
    let (ok, body) = fetch(&grafana, "http://prometheus:8080/");
    assert!(ok && body.contains("ok from prometheus"), "{body}");
    // api is main+gpu+external: it publishes its port; grafana (not on external) publishes nothing.
    assert!(inspect(&api, "{{json .NetworkSettings.Ports}}").contains("HostPort"));
    assert!(!inspect(&grafana, "{{json .NetworkSettings.Ports}}").contains("HostPort"));
    assert!(!inspect(&prometheus, "{{json .NetworkSettings.Ports}}").contains("HostPort"));
    // The internal flag is the engine's, not just orch's plan.
    let nets = text(&docker(&["network", "ls", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Name}} {{.Internal}}"]).stdout);
    let mut tiers: Vec<(String, String)> =
        nets.lines().filter_map(|l| l.split_once(' ')).map(|(n, i)| (n.rsplit("__").next().unwrap().to_string(), i.to_string())).collect();
    tiers.sort();
    let expected = [("db", "true"), ("external", "false"), ("gpu", "true"), ("main", "false"), ("monitoring", "true")];
    assert_eq!(tiers, expected.map(|(a, b)| (a.to_string(), b.to_string())), "{nets}");
}

#[test]
fn port_ranges_publish_inside_the_kinds_range() {
    let _sharing = support::sharing_the_engine();
    let p = Project::new(&format!("services:\n  a:\n{}  b:\n{}", web("a"), web("b").replace("[\"8080\"]", "[\"8080:8080\", \"9090\"]")));
    // ci: hashed in the dynamic pool 9500-9999 by default.
    let ci = env_name("ports-ci");
    let _d1 = p.up(&ci, &["--env-kind", "ci", "--plugin", "port-ranges"]);
    let got = host_ports(&ci);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|p| (9500..=9999).contains(p)), "ci ports outside 9500-9999: {got:?}");
    // test with a range from the settings; the second environment gets different ports from the same range.
    let t1 = env_name("ports-t1");
    let t2 = env_name("ports-t2");
    let range =
        ["--env-kind", "test", "--plugin", "port-ranges", "--plugin-setting", r#"port-ranges.kinds.test={"strategy": "range", "range": "31500-31599"}"#];
    let _d2 = p.up(&t1, &range);
    let _d3 = p.up(&t2, &range);
    let (a, b) = (host_ports(&t1), host_ports(&t2));
    assert!(a.iter().chain(&b).all(|p| (31500..=31599).contains(p)), "{a:?} {b:?}");
    assert!(a.iter().all(|p| !b.contains(p)), "two environments share a host port: {a:?} {b:?}");
    // And the ports really serve.
    let port = a[0];
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.contains("ok from"), "{resp}");
}

#[test]
fn image_variants_run_the_alpine_build_in_test_and_the_regular_one_in_prod() {
    let _sharing = support::sharing_the_engine();
    let p = Project::new("services:\n  tool:\n    image: orch-test/variant:1\n    build: ./tool\n    command: [\"sleep\", \"300\"]\n");
    let tool = p.path().join("tool");
    std::fs::create_dir(&tool).unwrap();
    std::fs::write(tool.join("Dockerfile"), format!("FROM {IMAGE}\nRUN echo regular > /variant\n")).unwrap();
    std::fs::write(tool.join("alpine.Dockerfile"), format!("FROM {IMAGE}\nRUN echo alpine > /variant\n")).unwrap();
    let test = env_name("variants-test");
    let _d1 = p.up(&test, &["--env-kind", "test", "--plugin", "image-variants"]);
    let c = container(&test, "tool");
    assert_eq!(inspect(&c, "{{.Config.Image}}"), "orch-test/variant:1-alpine");
    assert_eq!(exec(&c, &["cat", "/variant"]).1.trim(), "alpine");
    let prod = env_name("variants-prod");
    let _d2 = p.up(&prod, &["--env-kind", "prod", "--plugin", "image-variants"]);
    let c = container(&prod, "tool");
    assert_eq!(inspect(&c, "{{.Config.Image}}"), "orch-test/variant:1");
    assert_eq!(exec(&c, &["cat", "/variant"]).1.trim(), "regular");

    // A tag variant that is not present locally: the plan warns, and `up` refuses before creating anything.
    let q = Project::new("services:\n  x:\n    image: orch-test/nowhere:1\n");
    let missing = env_name("variants-missing");
    let _d3 = Down { dir: q.path(), env: missing.clone() };
    let plan = q.orch(&["plan", "--env-kind", "ci", "--plugin", "image-variants"]);
    assert!(text(&plan.stdout).contains("orch-test/nowhere:1-alpine is not present locally"), "{}", text(&plan.stdout));
    let up = q.orch(&["up", "--env", &missing, "--env-kind", "ci", "--plugin", "image-variants"]);
    assert!(!up.status.success());
    assert!(text(&up.stderr).contains("orch-test/nowhere:1-alpine"), "{}", text(&up.stderr));
    assert!(text(&docker(&["ps", "-aq", "--filter", &format!("label=orch.env={missing}")]).stdout).trim().is_empty());
}

#[test]
fn test_isolation_runs_two_copies_of_a_fixed_stack_side_by_side() {
    let _sharing = support::sharing_the_engine();
    // One copy's worth of fixed names, host port and subnet: without the plugin the second copy cannot start.
    let compose = "services:\n  db:\n    image: $IMAGE\n    container_name: shared-db\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo db > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    ports: [\"18432:8080\"]\n  client:\n    image: $IMAGE\n    command: [\"sleep\", \"300\"]\nnetworks:\n  default:\n    ipam:\n      config:\n        - subnet: 172.29.240.0/24\n";
    let p = Project::new(compose);
    let settings = ["--plugin", "test-isolation", "--plugin-setting", r#"test-isolation.data-dirs={"busybox": "/data"}"#];
    let (e1, e2) = (env_name("iso-1"), env_name("iso-2"));
    let mut args = vec!["--env-kind", "test"];
    args.extend_from_slice(&settings);
    // Both come up at the same time.
    let (g1, g2) = std::thread::scope(|s| {
        let a = s.spawn(|| p.up(&e1, &args));
        let b = s.spawn(|| p.up(&e2, &args));
        (a.join(), b.join())
    });
    let (_g1, _g2) = (g1.unwrap(), g2.unwrap());
    let (db1, db2) = (container(&e1, "db"), container(&e2, "db"));
    // Fixed host port replaced by ephemeral ones; the fixed subnet by carved ones.
    let (p1, p2) = (host_ports(&e1), host_ports(&e2));
    assert!(p1.len() == 1 && p2.len() == 1 && p1 != p2 && !p1.contains(&18432), "{p1:?} {p2:?}");
    let (n1, n2) = (addresses(&db1), addresses(&db2));
    assert!(!n1[0].1.starts_with("172.29.240.") && !n2[0].1.starts_with("172.29.240."), "{n1:?} {n2:?}");
    // The old name still works inside each environment, and reaches that environment's own db.
    let (ok, body) = fetch(&container(&e1, "client"), "http://shared-db:8080/");
    assert!(ok && body.trim() == "db", "{body}");
    let own = exec(&container(&e1, "client"), &["nslookup", "shared-db"]).1;
    assert!(own.contains(&n1[0].1), "shared-db resolved to {own}, not {:?}", n1);
    // Limits, tmpfs and capped logs in the engine's own configuration.
    assert_eq!(inspect(&db1, "{{.HostConfig.Memory}}"), (512u64 << 20).to_string());
    assert_eq!(inspect(&db1, "{{.HostConfig.NanoCpus}}"), "1000000000");
    assert!(inspect(&db1, "{{json .HostConfig.Tmpfs}}").contains("\"/data\""));
    assert!(exec(&db1, &["sh", "-c", "grep ' /data ' /proc/mounts"]).1.contains("tmpfs"));
    assert_eq!(inspect(&db1, "{{index .HostConfig.LogConfig.Config \"max-size\"}}"), "10m");
}

#[test]
fn health_defaults_add_checks_and_http_waits() {
    let _sharing = support::sharing_the_engine();
    // redis without a healthcheck gets `redis-cli ping` (Debian's real redis from the example images); web, named
    // in the settings, is awaited over HTTP, so `up` returns only once it serves.
    let status = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/images/build-base.sh")).status().unwrap();
    assert!(status.success(), "examples/images/build-base.sh failed");
    // The example's build context, copied into the project: orch builds only from inside the repository under test.
    let redis_ctx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/images/redis");
    let compose = "services:\n  redis:\n    image: orch-examples/redis:7\n    build: ./redis\n  web:\n    image: $IMAGE\n    command: [\"sh\", \"-c\", \"sleep 2; mkdir -p /www && echo ok > /www/health && exec httpd -f -p 8080 -h /www\"]\n    ports: [\"8080\"]\n";
    let p = Project::new(compose);
    std::fs::create_dir(p.path().join("redis")).unwrap();
    std::fs::copy(redis_ctx.join("Dockerfile"), p.path().join("redis/Dockerfile")).unwrap();
    let env = env_name("health");
    let _d = p.up(&env, &["--env-kind", "test", "--plugin", "health-defaults", "--plugin-setting", "health-defaults.http.web=8080/health"]);
    let redis = container(&env, "redis");
    assert_eq!(inspect(&redis, "{{json .Config.Healthcheck.Test}}"), r#"["CMD","redis-cli","ping"]"#);
    assert_eq!(inspect(&redis, "{{.Config.Healthcheck.Interval}}"), "1s", "test kind polls every second");
    // orch waited for the HTTP answer: it is there the moment `up` returns.
    let port = p.orch(&["port", "--env", &env, "web", "8080"]);
    let addr = text(&port.stdout).trim().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.") && resp.contains(" 200 "), "{resp}");
    // Docker itself agrees within a couple of fast intervals.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while inspect(&redis, "{{.State.Health.Status}}") != "healthy" {
        assert!(std::time::Instant::now() < deadline, "redis never became healthy in Docker's eyes");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
