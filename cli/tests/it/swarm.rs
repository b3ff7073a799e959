//! The swarm engine on a real single-node swarm: the test makes the swarm when the engine is not in one (and leaves
//! it after), then brings netra's stack up twice with `--engine swarm` and checks each copy is healthy on overlays,
//! isolated from the other, reachable on its host ports, cleanly removed by `down`, and reaped after `kill -9` of `up`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn netra() -> PathBuf {
    root().join("examples/netra")
}

fn orch(args: &[&str]) -> Output {
    let mut all = vec!["--engine", "swarm"];
    all.extend_from_slice(args);
    support::orch_in(&netra(), &all)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "orch failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Everything of one environment the engine still has: services, networks, volumes, configs, secrets, containers.
fn leftovers(env: &str) -> Vec<String> {
    let label = format!("label=orch.env={env}");
    let mut out = vec![];
    for kind in ["service", "network", "volume", "config", "secret"] {
        out.extend(docker(&[kind, "ls", "-q", "--filter", &label]).lines().map(|l| format!("{kind} {l}")));
    }
    out.extend(docker(&["ps", "-aq", "--filter", &label]).lines().map(|l| format!("container {l}")));
    out
}

/// A single-node swarm for the test's length: made (and left after) when the engine is in none, used as it is
/// otherwise. Its address pool is kept clear of orch's default pool.
struct SingleNodeSwarm {
    made: bool,
    /// docker_gwbridge was made here too.
    bridge: bool,
}

impl SingleNodeSwarm {
    /// Call it before [`support::sharing_the_engine`]: it takes the engine alone while it changes its mode.
    fn ensure() -> SingleNodeSwarm {
        if docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active" {
            return SingleNodeSwarm { made: false, bridge: false };
        }
        // Joining (and leaving) a swarm restarts the engine's network agent: another test's environment being torn
        // down meanwhile can lose an endpoint and leave a network the daemon refuses to remove until it restarts.
        let _alone = support::alone_on_the_engine();
        // Swarm's docker_gwbridge would otherwise take the next free 172.x/16 — a subnet other tests' compose files
        // fix (netra's is 172.18.0.0/16). Made first, it takes a subnet outside orch's and the swarm's pools.
        let bridge = make_gwbridge();
        let out = Command::new("docker").args(["swarm", "init", "--advertise-addr", "127.0.0.1", "--default-addr-pool", "10.128.0.0/12"]).output().unwrap();
        assert!(out.status.success(), "docker swarm init: {}", String::from_utf8_lossy(&out.stderr));
        SingleNodeSwarm { made: true, bridge }
    }
}

/// Makes docker_gwbridge on [`GWBRIDGE_SUBNET`] unless the engine has one; whether it did.
fn make_gwbridge() -> bool {
    if !docker(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"]).is_empty() {
        return false;
    }
    let out = Command::new("docker")
        .args(["network", "create", "--subnet", GWBRIDGE_SUBNET, "--opt", "com.docker.network.bridge.name=docker_gwbridge"])
        .args(["--opt", "com.docker.network.bridge.enable_icc=false", "--opt", "com.docker.network.bridge.enable_ip_masquerade=true"])
        .arg("docker_gwbridge")
        .output()
        .unwrap();
    assert!(out.status.success(), "creating docker_gwbridge: {}", String::from_utf8_lossy(&out.stderr));
    true
}

/// docker_gwbridge's subnet for a swarm a test makes: outside orch's default pool and the test swarm's pool.
const GWBRIDGE_SUBNET: &str = "10.144.0.0/16";

impl Drop for SingleNodeSwarm {
    fn drop(&mut self) {
        // After the test's own sharing guard is gone (it is declared after this one), alone, as for `swarm init`.
        let _alone = (self.made || self.bridge).then(support::alone_on_the_engine);
        if self.made {
            let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        }
        if self.bridge {
            let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
        }
    }
}

/// Removes an environment however the test ends.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = orch(&["down", "--env", &self.0, "--volumes"]);
    }
}

fn health(env: &str) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(&ok(&orch(&["health", "--env", env, "--format", "json"]))).unwrap();
    json.as_array().unwrap().iter().map(|s| (s["service"].as_str().unwrap().to_string(), s["state"].as_str().unwrap().to_string())).collect()
}

/// What `name` resolves to inside `service` of `env`.
fn resolve(env: &str, service: &str, name: &str) -> String {
    let out = ok(&orch(&["exec", "--env", env, service, "--", "getent", "hosts", name]));
    out.split_whitespace().next().unwrap_or_default().to_string()
}

fn http_get(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /health HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn netra_runs_twice_on_a_swarm_isolated_and_leaves_nothing() {
    let _turn = SWARM_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _swarm = SingleNodeSwarm::ensure();
    let _sharing = support::sharing_the_engine();
    crate::examples::prepare_images();
    let pid = std::process::id();
    let (a, b) = (format!("swarm-a-{pid}"), format!("swarm-b-{pid}"));
    let _down_a = Down(a.clone());
    let _down_b = Down(b.clone());
    ok(&orch(&["up", "--env", &a, "--timeout", "180s"]));
    ok(&orch(&["up", "--env", &b, "--timeout", "180s"]));

    // Healthy, as services of the swarm on an overlay.
    for env in [&a, &b] {
        let states = health(env);
        assert_eq!(states.len(), 5, "{states:?}");
        assert!(states.iter().all(|(_, s)| s == "HEALTHY"), "{env}: {states:?}");
        // Swarm counts a task as running once Docker's own first healthcheck passed, which may come after orch saw
        // the service healthy.
        let deadline = Instant::now() + Duration::from_secs(60);
        let services = loop {
            let services = docker(&["service", "ls", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Name}} {{.Mode}} {{.Replicas}}"]);
            if services.lines().count() == 5 && services.lines().all(|l| l.ends_with("replicated 1/1")) || Instant::now() >= deadline {
                break services;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(services.lines().count(), 5, "{services}");
        assert!(services.lines().all(|l| l.ends_with("replicated 1/1")), "{services}");
        let net = format!("netra__{env}__netra-network");
        assert_eq!(docker(&["network", "inspect", &net, "--format", "{{.Driver}} {{.Scope}} {{.Attachable}}"]), "overlay swarm true");
        let endpoint = docker(&["service", "inspect", &format!("netra__{env}__backend"), "--format", "{{.Spec.EndpointSpec.Mode}}"]);
        assert_eq!(endpoint, "dnsrr");
    }

    // Isolated: each copy's `redis` (and the old fixed name of its postgres) is its own, on its own subnet.
    let subnet = |env: &str| docker(&["network", "inspect", &format!("netra__{env}__netra-network"), "--format", "{{(index .IPAM.Config 0).Subnet}}"]);
    let (net_a, net_b) = (subnet(&a), subnet(&b));
    assert_ne!(net_a, net_b);
    for (env, net) in [(&a, &net_a), (&b, &net_b)] {
        let prefix = net.rsplit_once('.').unwrap().0.to_string();
        for name in ["redis", "netra-test-postgres"] {
            let ip = resolve(env, "postgres", name);
            assert!(ip.starts_with(&format!("{prefix}.")), "{env}: {name} is {ip}, outside its overlay {net}");
        }
    }

    // Host ports in host mode: the backend answers on its own port, healthy because it reaches its postgres and redis.
    for env in [&a, &b] {
        let addr = ok(&orch(&["port", "--env", env, "backend", "8000"]));
        let resp = http_get(&addr);
        assert!(resp.starts_with("HTTP/1.0 200") && resp.contains("ok backend"), "{env} {addr}: {resp}");
    }
    let vars = ok(&orch(&["env", "--env", &a]));
    assert!(vars.lines().any(|l| l.starts_with("POSTGRES_PORT=")), "{vars}");
    let logs = ok(&orch(&["logs", "--env", &a, "backend"]));
    assert!(logs.contains("backend listening"), "{logs}");

    // `down` leaves nothing of A, and B runs on.
    ok(&orch(&["down", "--env", &a]));
    assert_eq!(leftovers(&a), Vec::<String>::new());
    assert!(health(&b).iter().all(|(_, s)| s == "HEALTHY"));
    ok(&orch(&["down", "--env", &b]));
    assert_eq!(leftovers(&b), Vec::<String>::new());
}

#[test]
fn kill_9_of_up_on_a_swarm_is_reaped() {
    let _turn = SWARM_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _swarm = SingleNodeSwarm::ensure();
    let _sharing = support::sharing_the_engine();
    crate::examples::prepare_images();
    let env = format!("swarm-k-{}", std::process::id());
    let _down = Down(env.clone());
    let mut up = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["--engine", "swarm", "up", "--env", &env, "--timeout", "180s"])
        .current_dir(netra())
        .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the swarm has some of its services, before the environment is complete.
    let deadline = Instant::now() + Duration::from_secs(120);
    while docker(&["service", "ls", "-q", "--filter", &format!("label=orch.env={env}")]).is_empty() {
        assert!(Instant::now() < deadline, "up made no service in 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    up.kill().unwrap();
    up.wait().unwrap();
    // The watcher `up` started removes it; any orch command on the manager would too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !leftovers(&env).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(leftovers(&env), Vec::<String>::new(), "the environment of a killed `up` outlived it");
}

/// The two tests share the swarm one of them may make: they take turns.
static SWARM_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_swarm_engine_on_an_engine_in_no_swarm_says_what_to_do() {
    let _turn = SWARM_TURN.lock().unwrap_or_else(|e| e.into_inner());
    if docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active" {
        eprintln!("the engine is in a swarm already: nothing to check");
        return;
    }
    let out = orch(&["ps"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not a Swarm manager") && err.contains("docker swarm init"), "{err}");
}

/// A compose file's `deploy.placement.constraints` reach the swarm: a service whose constraint the node meets runs
/// there (pinned to the environment's node as well), and one no node meets fails `up` with Swarm's reason, quickly and
/// leaving nothing.
#[test]
fn placement_constraints_from_the_compose_file_are_applied() {
    let _turn = SWARM_TURN.lock().unwrap_or_else(|e| e.into_inner());
    let _swarm = SingleNodeSwarm::ensure();
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let dir = tempfile::tempdir().unwrap();
    let compose = |constraint: &str| {
        format!(
            "services:\n  db:\n    image: {}\n    command: [sleep, '3600']\n    deploy:\n      placement:\n        constraints: ['{constraint}']\n  app:\n    image: {}\n    command: [sleep, '3600']\n",
            support::IMAGE,
            support::IMAGE
        )
    };
    let run = |args: &[&str]| {
        let mut all = vec!["--engine", "swarm"];
        all.extend_from_slice(args);
        support::orch_in(dir.path(), &all)
    };
    let pid = std::process::id();

    std::fs::write(dir.path().join("compose.yaml"), compose("node.role==manager")).unwrap();
    let env = format!("swarm-p-{pid}");
    let _down = Down(env.clone());
    let up = run(&["up", "--env", &env]);
    let said = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{said}");
    assert!(!said.contains("is not applied"), "the swarm engine applies placement: {said}");
    let constraints = |service: &str| {
        let filters = ["--filter", &format!("label=orch.env={env}"), "--filter", &format!("label=orch.service={service}")];
        let name = docker(&[&["service", "ls", "--format", "{{.Name}}"][..], &filters[..]].concat());
        docker(&["service", "inspect", &name, "--format", "{{json .Spec.TaskTemplate.Placement.Constraints}}"])
    };
    let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
    assert_eq!(constraints("db"), format!("[\"node.role==manager\",\"node.id=={node}\"]"));
    assert_eq!(constraints("app"), format!("[\"node.id=={node}\"]"));
    assert!(run(&["down", "--env", &env]).status.success());
    assert_eq!(leftovers(&env), Vec::<String>::new());

    std::fs::write(dir.path().join("compose.yaml"), compose("node.labels.orch-test-nowhere==yes")).unwrap();
    let env = format!("swarm-q-{pid}");
    let _down = Down(env.clone());
    let began = Instant::now();
    let up = run(&["up", "--env", &env, "--timeout", "120s"]);
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(!up.status.success() && err.contains("Swarm cannot place its task") && err.contains("db"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(60), "an unplaceable service took {:?} to fail", began.elapsed());
    assert_eq!(leftovers(&env), Vec::<String>::new());
}

/// A second Docker engine in its own network namespace (its own data root, exec root and socket), joined to a swarm
/// the test makes as a worker, cleaned up however the test ends.
struct Worker {
    dir: tempfile::TempDir,
    ns: String,
    host_if: String,
    daemon: Option<std::process::Child>,
}

const MANAGER_ADDR: &str = "10.99.0.1";
const WORKER_ADDR: &str = "10.99.0.2";

impl Worker {
    fn socket(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> String {
        let mut all = vec!["-H".to_string(), self.socket()];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = Command::new("docker").args(&all).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `None` (with the reason) when this machine cannot run a second engine.
    fn start() -> Result<Worker, String> {
        let pid = std::process::id();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let w = Worker { dir, ns: format!("orchw{pid}"), host_if: format!("orchh{}", pid % 100000), daemon: None };
        let sh = |cmd: &str| {
            let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
            if out.status.success() { Ok(()) } else { Err(format!("{cmd}: {}", String::from_utf8_lossy(&out.stderr).trim())) }
        };
        sh(&format!("ip netns add {}", w.ns))?;
        let mut w = w;
        sh(&format!("ip link add {} type veth peer name orchwif0 netns {}", w.host_if, w.ns))?;
        sh(&format!("ip addr add {MANAGER_ADDR}/30 dev {} && ip link set {} up", w.host_if, w.host_if))?;
        sh(&format!("ip -n {} addr add {WORKER_ADDR}/30 dev orchwif0 && ip -n {} link set orchwif0 up && ip -n {} link set lo up", w.ns, w.ns, w.ns))?;
        std::fs::write(w.dir.path().join("daemon.json"), "{}").unwrap();
        w.daemon = Some(crate::support::spawn_dockerd(&w.ns, w.dir.path(), &w.socket(), &[])?);
        Ok(w)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.docker(&["swarm", "leave", "--force"]);
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // dockerd's own containerd and shims go with the namespace's processes.
        let _ = Command::new("sh").args(["-c", &format!("ip netns pids {} | xargs -r kill -9", self.ns)]).output();
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("sh")
            .args(["-c", &format!("umount -R {}/exec {}/data 2>/dev/null; true", self.dir.path().display(), self.dir.path().display())])
            .output();
    }
}

/// Two nodes: an environment whose service the placement plugin sends to the worker (`node.labels.orch-role==worker`,
/// a plugin's placement intent) runs entirely there, reachable on the worker's address, and `down` removes it from the
/// worker too.
#[test]
fn an_environment_is_placed_on_a_worker_node_by_a_plugins_placement_intent() {
    let _turn = SWARM_TURN.lock().unwrap_or_else(|e| e.into_inner());
    if docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active" {
        eprintln!("the engine is in a swarm already; this test makes its own two-node swarm: skipped");
        return;
    }
    let worker = match Worker::start() {
        Ok(w) => w,
        Err(why) => panic!("this machine refused a second Docker engine in a network namespace: {why}"),
    };
    // The manager advertises the address the worker reaches it on. Alone on the engine while it changes mode, as in
    // [`SingleNodeSwarm::ensure`].
    let alone = support::alone_on_the_engine();
    let bridge = make_gwbridge();
    let out = Command::new("docker").args(["swarm", "init", "--advertise-addr", MANAGER_ADDR, "--default-addr-pool", "10.128.0.0/12"]).output().unwrap();
    assert!(out.status.success(), "docker swarm init: {}", String::from_utf8_lossy(&out.stderr));
    let _swarm = SingleNodeSwarm { made: true, bridge };
    drop(alone);
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let token = docker(&["swarm", "join-token", "-q", "worker"]);
    let joined = Command::new("docker")
        .args(["-H", &worker.socket(), "swarm", "join", "--token", &token, "--advertise-addr", WORKER_ADDR, &format!("{MANAGER_ADDR}:2377")])
        .output()
        .unwrap();
    assert!(joined.status.success(), "the worker did not join: {}", String::from_utf8_lossy(&joined.stderr));
    let worker_id = worker.docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
    assert!(!docker(&["node", "update", "--label-add", "orch-role=worker", &worker_id]).is_empty());
    // The worker has no images: orch pushes the test image to a registry both nodes reach as 127.0.0.1:PORT (the
    // worker through a forwarder in its namespace).
    let registry = LoopbackRegistry::start(&worker);
    let dir = tempfile::tempdir().unwrap();
    let compose = format!(
        "services:\n  web:\n    image: {img}\n    command: [sh, -c, 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www']\n    ports: ['8080']\n  sidecar:\n    image: {img}\n    command: [sleep, '3600']\n",
        img = support::IMAGE
    );
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    let toml = format!(
        "registry = \"127.0.0.1:{}\"\n[[plugins]]\nuse = \"placement\"\nsettings = {{ rules = [{{ services = [\"web\"], constraints = [\"node.labels.orch-role==worker\"] }}] }}\n",
        registry.port
    );
    std::fs::write(dir.path().join("orch.toml"), toml).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--engine", "swarm"];
        all.extend_from_slice(args);
        support::orch_in(dir.path(), &all)
    };
    let env = format!("swarm-w-{}", std::process::id());
    let _down = Down(env.clone());
    let up = run(&["up", "--env", &env, "--timeout", "180s"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    // The plan says who placed web.
    let explain = String::from_utf8_lossy(&run(&["plan", "--env", &env, "--explain", "--format", "json"]).stdout).to_string();
    let plan: serde_json::Value = serde_json::from_str(&explain).unwrap();
    assert_eq!(plan["services"]["web"]["runtime"]["placement"], serde_json::json!(["node.labels.orch-role==worker"]), "{explain}");
    assert_eq!(plan["provenance"]["services.web.placement"], serde_json::json!(["plugin:placement"]));
    // Both services run on the worker: one by the plugin's constraint, the other with its environment.
    let on_worker = worker.docker(&["ps", "-a", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Label \"orch.service\"}}"]);
    let mut services: Vec<&str> = on_worker.lines().collect();
    services.sort();
    let tasks = docker(&["service", "ls", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Name}}"]);
    let placed: Vec<String> =
        tasks.lines().map(|s| docker(&["service", "ps", s, "--no-trunc", "--format", "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}"])).collect();
    let nodes = docker(&["node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Status}}"]);
    assert_eq!(services, ["sidecar", "web"], "on the worker: {on_worker}; tasks: {placed:?}; nodes: {nodes}");
    assert!(docker(&["ps", "-aq", "--filter", &format!("label=orch.env={env}")]).is_empty(), "nothing of it on the manager");
    // Its host port is on the worker's address, and answers there.
    let port = run(&["port", "--env", &env, "web", "8080"]);
    let addr = String::from_utf8_lossy(&port.stdout).trim().to_string();
    let ps = String::from_utf8_lossy(&run(&["ps", "--env", &env, "--format", "json"]).stdout).to_string();
    assert!(addr.starts_with(&format!("{WORKER_ADDR}:")), "{addr} {} {ps}", String::from_utf8_lossy(&port.stderr));
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.contains("200") && resp.trim_end().ends_with("ok"), "{resp}");
    let vars = String::from_utf8_lossy(&run(&["env", "--env", &env]).stdout).to_string();
    assert!(vars.lines().any(|l| l == format!("WEB_HOST={WORKER_ADDR}")), "{vars}");
    let ps = String::from_utf8_lossy(&run(&["ps", "--env", &env]).stdout).to_string();
    assert_eq!(ps.matches("RUNNING").count(), 2, "{ps}");
    let pulled = worker.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(pulled.lines().any(|i| i == format!("127.0.0.1:{}/{}", registry.port, support::IMAGE)), "the worker's images: {pulled}");

    assert!(run(&["down", "--env", &env]).status.success());
    assert_eq!(leftovers(&env), Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !worker.docker(&["ps", "-aq", "--filter", &format!("label=orch.env={env}")]).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(worker.docker(&["ps", "-aq", "--filter", &format!("label=orch.env={env}")]), "", "containers left on the worker");
}

/// Debian's docker-registry on every address of this host (no auth), and a forwarder from the worker's loopback to it,
/// so `127.0.0.1:PORT/…` names the same registry on both nodes.
struct LoopbackRegistry {
    port: u16,
    registry: std::process::Child,
    forwarder: std::process::Child,
    _dir: tempfile::TempDir,
}

impl LoopbackRegistry {
    fn start(worker: &Worker) -> LoopbackRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 0.0.0.0:{port}\n", storage.display()),
        )
        .unwrap();
        let registry = Command::new("/usr/bin/docker-registry").arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let forward = format!(
            "import socket, threading\n\
             def pipe(a, b):\n    try:\n        while (d := a.recv(65536)):\n            b.sendall(d)\n    except OSError:\n        pass\n    finally:\n        a.close(); b.close()\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', {port})); s.listen(64)\n\
             while True:\n    c, _ = s.accept(); u = socket.create_connection(('{MANAGER_ADDR}', {port}))\n\
             \x20   threading.Thread(target=pipe, args=(c, u), daemon=True).start(); threading.Thread(target=pipe, args=(u, c), daemon=True).start()\n"
        );
        let forwarder =
            Command::new("nsenter").arg(format!("--net=/var/run/netns/{}", worker.ns)).args(["python3", "-c", &forward]).stdout(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        LoopbackRegistry { port, registry, forwarder, _dir: dir }
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        for child in [&mut self.registry, &mut self.forwarder] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
