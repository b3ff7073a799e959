//! The fault and concurrency tier: orch on an engine it does not have to itself. Daemon faults run against a dockerd
//! these tests start themselves (own data root, exec root, socket and network namespace: the machine's engine is
//! never stopped); the rest run on the machine's engine beside everything else on it. Every case prints one row of
//! the table in README ("Shared engines"): fault, exit code, seconds to exit, leaks after recovery.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, IMAGE};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_orch")
}

/// One row of the fault table, printed so `cargo test -- --nocapture` shows the table.
fn row(fault: &str, code: Option<i32>, secs: f64, leaks: usize) {
    println!("| {fault} | {} | {secs:.1} | {leaks} |", code.map(|c| c.to_string()).unwrap_or_else(|| "signal".into()));
}

/// `orch` with its own state directory, against the engine at `host` (`None`: the machine's).
fn orch_cmd(host: Option<&str>, state: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .current_dir(dir)
        .env("ORCH_STATE_DIR", state)
        .env("CI", "1")
        .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
        .stdin(Stdio::null());
    match host {
        Some(h) => c.env("DOCKER_HOST", h),
        None => c.env_remove("DOCKER_HOST"),
    };
    c
}

fn run(host: Option<&str>, state: &Path, dir: &Path, args: &[&str]) -> Output {
    orch_cmd(host, state, dir, args).output().unwrap()
}

fn docker_on(host: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    if let Some(h) = host {
        c.args(["-H", h]);
    }
    c.args(args).output().unwrap()
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Resources labelled `label` on the engine at `host`.
fn labelled(host: Option<&str>, label: &str) -> Vec<String> {
    let mut all = vec![];
    for kind in ["container", "network", "volume"] {
        let mut args = vec![kind, "ls", "-q", "--filter"];
        let f = format!("label={label}");
        args.push(&f);
        if kind == "container" {
            args.push("-a");
        }
        all.extend(lines(&docker_on(host, &args)).into_iter().map(|l| format!("{kind} {l}")));
    }
    all
}

/// Waits for `child` at most `limit`; kills it if it is still running then. (exit code, seconds).
fn wait_exit(child: &mut Child, limit: Duration) -> (Option<i32>, f64) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), started.elapsed().as_secs_f64());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (None, started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// Polls `what` until it holds (at most `limit`).
fn until(limit: Duration, what: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A Docker engine of the tests' own, in a network namespace of its own, that a test may kill and start again (same
/// data root: what it held survives as a restarted daemon keeps it). Gone, with everything it ran, on drop.
struct Daemon {
    dir: tempfile::TempDir,
    ns: String,
    process: Option<Child>,
}

impl Daemon {
    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn start() -> Result<Daemon, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ns = format!("orchf{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &ns]).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("ip netns add: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let _ = Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]).output();
        // Its own pools, far from the machine engine's and orch's defaults.
        std::fs::write(dir.path().join("daemon.json"), r#"{"default-address-pools":[{"base":"10.77.0.0/16","size":24}]}"#).unwrap();
        let mut d = Daemon { dir, ns, process: None };
        d.launch()?;
        // The tiny test image, built in this engine from Debian's static busybox.
        let ctx = d.dir.path().join("image");
        std::fs::create_dir_all(&ctx).unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).is_file()).ok_or("busybox-static is needed")?;
        std::fs::copy(busybox, ctx.join("busybox")).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n").unwrap();
        let out = docker_on(Some(&d.host()), &["build", "-q", "-t", IMAGE, ctx.to_str().unwrap()]);
        if !out.status.success() {
            return Err(format!("building the test image: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(d)
    }

    fn launch(&mut self) -> Result<(), String> {
        self.process = Some(support::spawn_dockerd(&self.ns, self.dir.path(), &self.host(), &["--bridge", "none"])?);
        Ok(())
    }

    /// `kill -9` of the daemon and of the containerd it runs (the containers' shims stay, as after a crash; the
    /// next daemon's containerd finds them again).
    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            // nsenter execs dockerd: the child's pid is dockerd's.
            let children = Command::new("pgrep").args(["-P", &p.id().to_string()]).output().map(|o| lines(&o)).unwrap_or_default();
            let _ = p.kill();
            let _ = p.wait();
            for c in children {
                let _ = Command::new("kill").args(["-9", &c]).status();
            }
        }
        let _ = std::fs::remove_file(self.dir.path().join("docker.pid"));
        // The killed containerd may linger as a zombie nobody reaps; its pid file would make the next daemon wait for it.
        let _ = std::fs::remove_file(self.dir.path().join("exec/containerd/containerd.pid"));
    }

    fn restart(&mut self) {
        self.kill();
        self.launch().expect("the test dockerd starts again");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Its containers go through it, so that no process of theirs outlives the test.
        let host = self.host();
        let ids = lines(&docker_on(Some(&host), &["ps", "-aq"]));
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = docker_on(Some(&host), &args);
        }
        self.kill();
        let _ = Command::new("sh").args(["-c", &format!("ip netns pids {} | xargs -r kill -9", self.ns)]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let d = self.dir.path().display();
        let _ = Command::new("sh").args(["-c", &format!("umount -R {d}/exec {d}/data 2>/dev/null; true")]).output();
    }
}

const SLOW: &str = r#"name: fault
services:
  db:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    healthcheck: {test: ["CMD", "false"], interval: 1s}
  a1: {image: orch-test/busybox:latest, command: ["sleep", "3600"], depends_on: [db]}
"#;

fn many_services(n: usize) -> String {
    let mut s = String::from("name: fault\nservices:\n");
    for i in 0..n {
        s.push_str(&format!("  s{i}: {{image: orch-test/busybox:latest, command: [\"sleep\", \"3600\"], networks: [n{}]}}\n", i % 4));
    }
    s.push_str("networks: {n0: {}, n1: {}, n2: {}, n3: {}}\n");
    s
}

/// Kill (and restart) the engine while `up` creates, while it waits for health, during `down` and during `orch
/// run`: orch exits 5 within seconds instead of hanging, and once the daemon is back the next orch command leaves
/// nothing of the broken environment.
#[test]
fn a_daemon_that_dies_mid_command_ends_it_with_exit_5_and_nothing_is_left_once_it_is_back() {
    let mut daemon = match Daemon::start() {
        Ok(d) => d,
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let host = daemon.host();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let dir = work.path();
    std::fs::write(dir.join("slow.yaml"), SLOW).unwrap();
    std::fs::write(dir.join("many.yaml"), many_services(16)).unwrap();
    let gone = |env: &str| labelled(Some(&host), &format!("orch.env={env}"));
    println!("| fault | exit | seconds to exit | leaks after recovery |\n|---|---|---|---|");
    let mut failures = vec![];

    // 1. While `up` creates: the first resource exists, sixteen containers are still to come.
    let mut up = orch_cmd(Some(&host), &state, dir, &["up", "-f", "many.yaml", "--env", "f1"]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    assert!(until(Duration::from_secs(30), || !gone("f1").is_empty()), "up never created anything");
    daemon.kill();
    let (code, secs) = wait_exit(&mut up, Duration::from_secs(30));
    let said = stderr_of(&mut up);
    daemon.restart();
    let gc = run(Some(&host), &state, dir, &["gc"]);
    let leaks = gone("f1").len();
    row("dockerd killed while `up` creates (then restarted, `orch gc`)", code, secs, leaks);
    if code != Some(5) || secs >= 10.0 || leaks != 0 || !gc.status.success() {
        failures.push(format!("up/create: {code:?} after {secs:.1}s, leaks {leaks}: {said}\ngc: {}", String::from_utf8_lossy(&gc.stderr)));
    }

    // 2. While `up` waits for a healthcheck that never passes.
    let mut up = orch_cmd(Some(&host), &state, dir, &["up", "-f", "slow.yaml", "--env", "f2", "--timeout", "120s"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let running = until(Duration::from_secs(30), || !lines(&docker_on(Some(&host), &["ps", "-q", "--filter", "label=orch.env=f2"])).is_empty());
    assert!(running, "db never started");
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill();
    let (code, secs) = wait_exit(&mut up, Duration::from_secs(30));
    let said = stderr_of(&mut up);
    daemon.restart();
    // The next orch command of this user reaps by the way: here an `up` of another environment.
    let next = run(Some(&host), &state, dir, &["up", "-f", "many.yaml", "--env", "f2b"]);
    let leaks = gone("f2").len();
    row("dockerd killed while `up` waits for health (then restarted, next `orch up`)", code, secs, leaks);
    if code != Some(5) || secs >= 10.0 || leaks != 0 || !next.status.success() {
        failures.push(format!("up/wait: {code:?} after {secs:.1}s, leaks {leaks}: {said}\nnext: {}", String::from_utf8_lossy(&next.stderr)));
    }

    // 3. During `down` of a dev environment (a graceful stop that takes its grace period: sleep as PID 1 ignores
    // SIGTERM).
    let dev = run(Some(&host), &state, dir, &["up", "-f", "many.yaml", "--env", "f3", "--env-kind", "dev"]);
    assert!(dev.status.success(), "{}", String::from_utf8_lossy(&dev.stderr));
    let mut down = orch_cmd(Some(&host), &state, dir, &["down", "--env", "f3", "-p", "fault"]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    daemon.kill();
    let (code, secs) = wait_exit(&mut down, Duration::from_secs(30));
    let said = stderr_of(&mut down);
    daemon.restart();
    let again = run(Some(&host), &state, dir, &["down", "--env", "f3", "-p", "fault"]);
    let leaks = gone("f3").len();
    row("dockerd killed during `down` (then restarted, `orch down` again)", code, secs, leaks);
    if code != Some(5) || secs >= 10.0 || leaks != 0 || !again.status.success() {
        failures.push(format!("down: {code:?} after {secs:.1}s, leaks {leaks}: {said}\nagain: {}", String::from_utf8_lossy(&again.stderr)));
    }

    // 4. During `orch run`: the command ends, the engine is gone for the teardown.
    let mut orch_run = orch_cmd(Some(&host), &state, dir, &["run", "-f", "many.yaml", "--env", "f4", "--", "sleep", "3"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let up_done = until(Duration::from_secs(60), || lines(&docker_on(Some(&host), &["ps", "-q", "--filter", "label=orch.env=f4"])).len() == 16);
    assert!(up_done, "run never brought its environment up");
    daemon.kill();
    let killed_at = Instant::now();
    let (code, _) = wait_exit(&mut orch_run, Duration::from_secs(30));
    let secs = killed_at.elapsed().as_secs_f64();
    let said = stderr_of(&mut orch_run);
    daemon.restart();
    let gc = run(Some(&host), &state, dir, &["gc"]);
    let leaks = gone("f4").len();
    row("dockerd killed during `orch run -- sleep 3` (then restarted, `orch gc`)", code, secs, leaks);
    if code != Some(5) || secs >= 10.0 || leaks != 0 {
        failures.push(format!("run: {code:?} after {secs:.1}s, leaks {leaks}: {said}\ngc: {}", String::from_utf8_lossy(&gc.stderr)));
    }
    let _ = run(Some(&host), &state, dir, &["down", "--env", "f2b", "-p", "fault"]);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A socket that accepts and never answers, and one that answers the version handshake and then stalls: orch gives up
/// within its documented timeouts (5 s for the handshake, ORCH_ENGINE_TIMEOUT per request) with exit 5, saying the
/// engine did not answer.
#[test]
fn a_stalled_engine_makes_orch_give_up_with_exit_5_saying_so() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    for (fault, answers_version, timeout, limit) in
        [("engine accepts and never answers", false, None, 8.0), ("engine answers the handshake, then stalls (ORCH_ENGINE_TIMEOUT=3s)", true, Some("3s"), 8.0)]
    {
        let sock = work.path().join(format!("stalled-{answers_version}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let mut held = vec![];
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                if answers_version && (request.contains("/version") || request.contains("/_ping")) {
                    let body = r#"{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#;
                    let _ =
                        write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                    // The same connection may carry the next request: keep reading it, and never answer.
                }
                held.push(conn);
            }
        });
        let host = format!("unix://{}", sock.display());
        let mut cmd = orch_cmd(Some(&host), &state, work.path(), &["ps", "--format", "json"]);
        if let Some(t) = timeout {
            cmd.env("ORCH_ENGINE_TIMEOUT", t);
        }
        let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let (code, secs) = wait_exit(&mut child, Duration::from_secs(40));
        let said = stderr_of(&mut child);
        row(fault, code, secs, 0);
        assert_eq!(code, Some(5), "{fault}: {said}");
        assert!(secs < limit, "{fault}: took {secs:.1}s");
        assert!(said.contains("did not answer"), "{fault}: {said}");
    }
}

/// Two users (two state directories) bring up ten environments each at the same moment on one engine: all twenty
/// come up with disjoint subnets and distinct host ports (a subnet the other user's orch took first is carved again),
/// and every `down` leaves nothing.
#[test]
fn two_users_with_ten_concurrent_ups_each_share_one_engine() {
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let compose = work.path().join("compose.yaml");
    std::fs::write(
        &compose,
        "name: users\nservices:\n  web:\n    image: orch-test/busybox:latest\n    command: [sleep, '3600']\n    networks: [front, back]\n    ports: ['32400-32499:80']\n  db:\n    image: orch-test/busybox:latest\n    command: [sleep, '3600']\n    networks: [back]\nnetworks: {front: {}, back: {}}\n",
    )
    .unwrap();
    let users: Vec<PathBuf> = (0..2).map(|u| work.path().join(format!("user{u}"))).collect();
    let pid = std::process::id();
    let envs: Vec<(usize, String)> = (0..20).map(|i| (i % 2, format!("u{}-{i}-{pid}", i % 2))).collect();
    struct Down<'a>(&'a [PathBuf], &'a [(usize, String)], &'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            for (u, env) in self.1 {
                let _ = run(None, &self.0[*u], self.2, &["down", "--env", env, "-p", "users"]);
            }
        }
    }
    let _down = Down(&users, &envs, work.path());
    let started = Instant::now();
    let children: Vec<Child> = envs
        .iter()
        .map(|(u, env)| {
            orch_cmd(None, &users[*u], work.path(), &["up", "--env", env, "--timeout", "300s"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let mut failures = vec![];
    for ((_, env), child) in envs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!("{env}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(failures.is_empty(), "{} of 20 ups failed:\n{}", failures.len(), failures.join("\n"));
    let mut subnets: Vec<(String, ipnet::Ipv4Net)> = vec![];
    let mut ports = std::collections::BTreeMap::new();
    for (_, env) in &envs {
        for n in lines(&docker_on(None, &["network", "ls", "--filter", &format!("label=orch.env={env}"), "--format", "{{.ID}}"])) {
            let s = lines(&docker_on(None, &["network", "inspect", &n, "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}"]));
            subnets.push((format!("{env}/{n}"), s[0].parse().unwrap()));
        }
        let p = lines(&docker_on(None, &["ps", "--filter", &format!("label=orch.env={env}"), "--filter", "label=orch.service=web", "--format", "{{.Ports}}"]));
        let port: u16 = p[0].split("->").next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        if let Some(other) = ports.insert(port, env.clone()) {
            panic!("{env} and {other} both publish {port}");
        }
    }
    assert_eq!(subnets.len(), 40);
    for (i, (a, na)) in subnets.iter().enumerate() {
        for (b, nb) in &subnets[i + 1..] {
            assert!(!(na.contains(&nb.network()) || nb.contains(&na.network())), "{a} ({na}) overlaps {b} ({nb})");
        }
    }
    for (u, env) in &envs {
        let out = run(None, &users[*u], work.path(), &["down", "--env", env, "-p", "users"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(labelled(None, &format!("orch.env={env}")).is_empty(), "{env} left something");
    }
    row("two users × 10 concurrent `up`s, then 20 `down`s", Some(0), secs, 0);
}

/// Resources orch would use that are not its own: unlabelled ones with orch's names, a docker compose project with
/// the same service names, a network of orch's name made beside orch's own (engines before API 1.44 allow it). orch
/// proceeds without touching them, or fails with exit 6 naming them and leaves nothing of its own.
#[test]
fn things_in_the_way_are_named_never_touched_and_nothing_of_orch_is_left() {
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, state) = (work.path(), work.path().join("state"));
    let pid = std::process::id();
    std::fs::write(
        dir.join("compose.yaml"),
        "name: way\nservices:\n  app:\n    image: orch-test/busybox:latest\n    command: [sleep, '3600']\n    volumes: [data:/data]\nvolumes: {data: {}}\n",
    )
    .unwrap();
    let mut foreign: Vec<(&str, String)> = vec![];
    struct Cleanup(Vec<(&'static str, String)>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for (kind, name) in &self.0 {
                let args: Vec<&str> = if *kind == "network" { vec![kind, "rm", name] } else { vec![kind, "rm", "-f", name] };
                let _ = docker_on(None, &args);
            }
        }
    }
    for (kind, make) in [("network", vec!["network", "create"]), ("container", vec!["create", "--name"]), ("volume", vec!["volume", "create"])] {
        let env = format!("w{kind}{pid}");
        let name = match kind {
            "network" => format!("way__{env}__default"),
            "container" => format!("way__{env}__app"),
            _ => format!("way__{env}__data"),
        };
        let mut args = make.clone();
        args.push(name.as_str());
        if kind == "container" {
            args.extend([IMAGE, "true"]);
        }
        assert!(docker_on(None, &args).status.success(), "making the foreign {kind}");
        foreign.push((kind, name.clone()));
        let started = Instant::now();
        let out = run(None, &state, dir, &["up", "--env", &env]);
        let secs = started.elapsed().as_secs_f64();
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        let leaks = labelled(None, &format!("orch.env={env}")).len();
        row(&format!("unlabelled {kind} with orch's name"), out.status.code(), secs, leaks);
        assert_eq!(out.status.code(), Some(6), "{kind}: {said}");
        assert!(said.contains(&name) && said.contains("not created by orch"), "{kind}: {said}");
        assert_eq!(leaks, 0, "{kind}: orch left something of its own");
        let still = docker_on(None, &[kind, "inspect", &name]);
        assert!(still.status.success(), "the foreign {kind} {name} was touched");
    }
    // A volume of orch's name labelled for another environment (data of someone's kept environment): never reused.
    let env = format!("wv{pid}");
    let name = format!("way__{env}__data");
    let labelled_for_other =
        docker_on(None, &["volume", "create", "--label", "orch.env=someone-else", "--label", "orch.project=way", "--label", "orch.owner-uid=4242", &name]);
    assert!(labelled_for_other.status.success());
    foreign.push(("volume", name.clone()));
    let out = run(None, &state, dir, &["up", "--env", &env]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let leaks = labelled(None, &format!("orch.env={env}")).len();
    row("a volume of orch's name labelled for another environment", out.status.code(), 0.0, leaks);
    assert_eq!(out.status.code(), Some(6), "{said}");
    assert!(said.contains(&name) && said.contains("belongs to environment someone-else"), "{said}");
    assert_eq!(leaks, 0);
    let _cleanup = Cleanup(foreign);

    // A docker compose project of the same name and services beside orch's environment.
    let compose_project = format!("way{pid}");
    // docker-compose v1 wants a version and no `name:`; the services are the same.
    std::fs::write(
        dir.join("dc.yaml"),
        "version: '3.8'\nservices:\n  app:\n    image: orch-test/busybox:latest\n    command: [sleep, '3600']\n    volumes: [data:/data]\nvolumes: {data: {}}\n",
    )
    .unwrap();
    let dc = Command::new("docker-compose").args(["-f", "dc.yaml", "-p", &compose_project, "up", "-d"]).current_dir(dir).output().unwrap();
    assert!(dc.status.success(), "{}", String::from_utf8_lossy(&dc.stderr));
    struct ComposeDown(PathBuf, String);
    impl Drop for ComposeDown {
        fn drop(&mut self) {
            let _ = Command::new("docker-compose").args(["-f", "dc.yaml", "-p", &self.1, "down", "-v"]).current_dir(&self.0).output();
        }
    }
    let _dc = ComposeDown(dir.to_path_buf(), compose_project.clone());
    let theirs = || lines(&docker_on(None, &["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={compose_project}")]));
    assert_eq!(theirs().len(), 1);
    let env = format!("wc{pid}");
    let up = run(None, &state, dir, &["up", "--env", &env, "-p", &compose_project]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));

    // A network of orch's name made beside orch's own after `up` (bollard sends no CheckDuplicate, as old clients do):
    // containers were joined by id, and `down` removes orch's network by id, leaving the stranger's.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let engine = rt.block_on(orch::engine::DockerEngine::connect()).unwrap();
    let net_name = format!("{compose_project}__{env}__default");
    let spec = orch::engine::NetworkSpec {
        name: net_name.clone(),
        driver: "bridge".into(),
        internal: false,
        subnet: None,
        gateway: None,
        ip_range: None,
        options: Default::default(),
        labels: Default::default(),
    };
    let twin = orch::engine::Engine::create_network(&engine, &spec).await_on(&rt).unwrap();
    let same_name = lines(&docker_on(None, &["network", "ls", "-q", "--filter", &format!("name=^{net_name}$")]));
    let started = Instant::now();
    let down = run(None, &state, dir, &["down", "--env", &env, "-p", &compose_project, "--volumes"]);
    let secs = started.elapsed().as_secs_f64();
    let leaks = labelled(None, &format!("orch.env={env}")).len();
    let twin_left = docker_on(None, &["network", "inspect", &twin]).status.success();
    let _ = docker_on(None, &["network", "rm", &twin]);
    row("a network of orch's name made beside orch's own, then `down`", down.status.code(), secs, leaks);
    assert_eq!(same_name.len(), 2, "the engine kept two networks of one name");
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert_eq!(leaks, 0);
    assert!(twin_left, "the stranger's network of the same name is left alone");
    assert_eq!(theirs().len(), 1, "the compose project's container is untouched");
    row("a docker compose project with the same project and service names", Some(0), 0.0, 0);
}

trait AwaitOn: Future + Sized {
    fn await_on(self, rt: &tokio::runtime::Runtime) -> <Self as Future>::Output {
        rt.block_on(self)
    }
}
impl<F: Future> AwaitOn for F {}

/// Admission counts every environment once, across state directories (from labels): with `--max-envs 2`, one
/// environment starting leaves room for exactly one more, whoever asks.
#[test]
fn admission_counts_a_starting_environment_once_across_users() {
    // Room is counted on the whole engine: no other test may start environments meanwhile.
    let _alone = support::alone_on_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, pid) = (work.path(), std::process::id());
    std::fs::write(
        dir.join("compose.yaml"),
        "name: adm\nservices:\n  db:\n    image: orch-test/busybox:latest\n    command: [sh, -c, 'sleep 4; touch /ok; sleep 3600']\n    healthcheck: {test: [CMD, test, -f, /ok], interval: 1s, retries: 30}\n",
    )
    .unwrap();
    let (mine, theirs) = (dir.join("mine"), dir.join("theirs"));
    let envs = [format!("a1-{pid}"), format!("a2-{pid}"), format!("a3-{pid}")];
    struct Down(PathBuf, Vec<String>);
    impl Drop for Down {
        fn drop(&mut self) {
            for e in &self.1 {
                let _ = run(None, &self.0.join("mine"), &self.0, &["down", "--env", e, "-p", "adm"]);
            }
        }
    }
    let _down = Down(dir.to_path_buf(), envs.to_vec());
    // Every other orch environment on the engine counts too; orphans go first, and one gc cannot remove (a network
    // the engine keeps a stale endpoint of) is not counted, as admission does not count orphans.
    let _ = run(None, &mine, dir, &["gc"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let engine = rt.block_on(orch::engine::DockerEngine::connect()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let envs_now = rt.block_on(orch::reaper::environments(&engine)).unwrap();
    let others = envs_now.iter().filter(|e| !matches!(e.verdict(now), orch::reaper::Verdict::Orphan(_))).count();
    let cap = (others + 2).to_string();
    let mut first = orch_cmd(None, &mine, dir, &["up", "--env", &envs[0], "--max-envs", &cap]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    assert!(until(Duration::from_secs(30), || !labelled(None, &format!("orch.env={}", envs[0])).is_empty()), "the first never started");
    let second = run(None, &mine, dir, &["up", "--env", &envs[1], "--max-envs", &cap, "--no-wait-capacity"]);
    assert!(second.status.success(), "one starting environment must leave room for one more: {}", String::from_utf8_lossy(&second.stderr));
    let third = run(None, &theirs, dir, &["up", "--env", &envs[2], "--max-envs", &cap, "--no-wait-capacity"]);
    assert_eq!(third.status.code(), Some(7), "another user's third is refused: {}", String::from_utf8_lossy(&third.stderr));
    assert!(labelled(None, &format!("orch.env={}", envs[2])).is_empty());
    let (code, _) = wait_exit(&mut first, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", stderr_of(&mut first));
}

/// `down --all-mine` and a bare `--env` reach only the caller's own environments.
#[test]
fn removal_reaches_only_the_callers_own_environments() {
    // `down --all-mine` removes every environment of this user on the engine, other tests' too: no other test may
    // have one meanwhile.
    let _alone = support::alone_on_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, state, pid) = (work.path(), work.path().join("state"), std::process::id());
    std::fs::write(dir.join("compose.yaml"), "services:\n  app: {image: orch-test/busybox:latest, command: [sleep, '3600']}\n").unwrap();
    let env = format!("dup{pid}");
    let (pa, pb) = (format!("pa{pid}"), format!("pb{pid}"));
    struct Down(PathBuf, Vec<(String, String)>);
    impl Drop for Down {
        fn drop(&mut self) {
            for (p, e) in &self.1 {
                let _ = run(None, &self.0.join("state"), &self.0, &["down", "--env", e, "-p", p]);
            }
        }
    }
    let _down = Down(dir.to_path_buf(), vec![(pa.clone(), env.clone()), (pb.clone(), env.clone())]);
    for p in [&pa, &pb] {
        let out = run(None, &state, dir, &["up", "--env", &env, "-p", p]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Another user's environment on this host: the same labels but for their uid.
    let stranger = format!("stranger{pid}");
    let owner = orch::owner::Owner::current().label();
    let made = docker_on(
        None,
        &[
            "create",
            "--name",
            &stranger,
            "--label",
            &format!("orch.env={stranger}"),
            "--label",
            "orch.project=other-user",
            "--label",
            &format!("orch.owner={owner}"),
            "--label",
            "orch.owner-uid=4242",
            IMAGE,
            "true",
        ],
    );
    assert!(made.status.success());
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = docker_on(None, &["rm", "-f", &self.0]);
        }
    }
    let _rm = Rm(stranger.clone());
    // A bare --env in a folder without a project: two projects have it, so orch asks which.
    let empty = tempfile::tempdir().unwrap();
    let bare = run(None, &state, empty.path(), &["down", "--env", &env]);
    assert_eq!(bare.status.code(), Some(2), "{}", String::from_utf8_lossy(&bare.stderr));
    let said = String::from_utf8_lossy(&bare.stderr);
    assert!(said.contains(&pa) && said.contains(&pb) && said.contains("-p"), "{said}");
    assert_eq!(labelled(None, &format!("orch.env={env}")).len(), 6, "nothing was removed");
    let one = run(None, &state, empty.path(), &["down", "--env", &env, "-p", &pa]);
    assert!(one.status.success());
    assert_eq!(labelled(None, &format!("orch.project={pb}")).len(), 3, "the other project's environment stays");
    let all = run(None, &state, empty.path(), &["down", "--all-mine"]);
    assert!(support::ok_but_for_others(&all, &pid.to_string()), "{}", String::from_utf8_lossy(&all.stderr));
    assert!(labelled(None, &format!("orch.project={pb}")).is_empty(), "mine are removed");
    assert!(docker_on(None, &["inspect", &stranger]).status.success(), "another user's environment is never removed by --all-mine");
}

/// State directory faults: one others can write, one that is read-only, one that is full, garbage in its files. A
/// clear error naming the directory or file and the fix (exit 3), or recovery; never a panic, nothing created.
#[test]
fn state_directory_faults_end_in_a_clear_error_or_recovery() {
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, pid) = (work.path(), std::process::id());
    std::fs::write(dir.join("compose.yaml"), "name: st\nservices:\n  app: {image: orch-test/busybox:latest, command: [sleep, '3600']}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;

    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let env = format!("s1{pid}");
    let out = run(None, &open, dir, &["up", "--env", &env]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    row("state directory writable by others", out.status.code(), 0.0, labelled(None, &format!("orch.env={env}")).len());
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains(&open.display().to_string()) && said.contains("chmod 700"), "{said}");
    assert!(labelled(None, &format!("orch.env={env}")).is_empty());

    // Read-only and full: tmpfs mounts (root only).
    let mounted =
        |opts: &str, path: &Path| Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs", path.to_str().unwrap()]).status().is_ok_and(|s| s.success());
    struct Umount(Vec<PathBuf>);
    impl Drop for Umount {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = Command::new("umount").arg(p).status();
            }
        }
    }
    let (ro, full) = (dir.join("ro"), dir.join("full"));
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&full).unwrap();
    if mounted("ro,mode=700,size=64k", &ro) && mounted("mode=700,size=16k", &full) {
        let _umount = Umount(vec![ro.clone(), full.clone()]);
        std::fs::write(full.join("filler"), vec![0u8; 64 << 10]).ok();
        for (what, state) in [("read-only state directory", &ro), ("full state directory", &full)] {
            let env = format!("s2{pid}");
            let out = run(None, state, dir, &["up", "--env", &env]);
            let said = String::from_utf8_lossy(&out.stderr).to_string();
            let leaks = labelled(None, &format!("orch.env={env}")).len();
            row(what, out.status.code(), 0.0, leaks);
            let _ = run(None, &dir.join("cleanup"), dir, &["down", "--env", &env, "-p", "st"]);
            assert_eq!(out.status.code(), Some(3), "{what}: {said}");
            assert!(said.contains(&state.display().to_string()) && said.contains("--state-dir"), "{what}: {said}");
            assert!(!said.contains("panicked"), "{what}: {said}");
            assert_eq!(leaks, 0, "{what}");
        }
    } else if std::env::var_os("CI").is_some() && orch::labels::my_uid() == 0 {
        panic!("tmpfs mounts are needed for the read-only and full cases");
    }

    // Garbage, truncated and planted files: repaired or refused by name, and `up` still works.
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("queue")).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(state.join("allocations.json"), "{\"envs\": {\"x/y\": {\"owner\": 12").unwrap();
    std::fs::write(state.join("queue").join("000-garbage"), [0xffu8, 0xfe, 0x00, 0x01]).unwrap();
    let fifo = std::ffi::CString::new(state.join("queue").join("001-fifo").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let env = format!("s3{pid}");
    let started = Instant::now();
    let out = run(None, &state, dir, &["up", "--env", &env, "--max-envs", "1000"]);
    let secs = started.elapsed().as_secs_f64();
    let down = run(None, &state, dir, &["down", "--env", &env, "-p", "st"]);
    let leaks = labelled(None, &format!("orch.env={env}")).len();
    row("truncated allocations, garbage ticket and a FIFO in the queue", out.status.code(), secs, leaks);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(down.status.success() && leaks == 0);
}

/// SIGINT, SIGTERM and SIGKILL of `up`, `down` and `run` at seeded random points: nothing is left once the watcher's
/// interval has passed (after a killed `down`, once `down` is run again).
#[test]
fn signals_at_random_points_leave_nothing() {
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, state, pid) = (work.path(), work.path().join("state"), std::process::id());
    std::fs::write(dir.join("compose.yaml"), many_services(6).replace("name: fault", "name: sig")).unwrap();
    let seed: u64 = std::env::var("ORCH_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(23);
    println!("signal seed {seed} (ORCH_FAULT_SEED reproduces it)");
    let mut x = seed;
    let mut next_ms = |max: u64| {
        // xorshift: the same delays for the same seed, everywhere.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % max
    };
    let mut failures = vec![];
    for (i, (signal, command)) in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL].into_iter().flat_map(|s| ["up", "down", "run"].map(move |c| (s, c))).enumerate()
    {
        let env = format!("g{i}-{pid}");
        if command == "down" {
            let up = run(None, &state, dir, &["up", "--env", &env]);
            assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
        }
        let args: Vec<&str> = match command {
            "up" => vec!["up", "--env", &env],
            "down" => vec!["down", "--env", &env, "-p", "sig"],
            _ => vec!["run", "--env", &env, "--", "sleep", "2"],
        };
        let mut child = orch_cmd(None, &state, dir, &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let delay = next_ms(if command == "down" { 400 } else { 1500 });
        std::thread::sleep(Duration::from_millis(delay));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let (code, secs) = wait_exit(&mut child, Duration::from_secs(30));
        if command == "down" {
            let _ = run(None, &state, dir, &["down", "--env", &env, "-p", "sig"]);
        }
        // `up` and `run` that were killed, or finished before the signal: the watcher (or `up` itself) has it.
        let clean = until(Duration::from_secs(15), || labelled(None, &format!("orch.env={env}")).is_empty()) || {
            // An `up` that completed before the signal made a kept environment: that is its outcome, not a leak.
            let done = code == Some(0) && command == "up";
            if done {
                let _ = run(None, &state, dir, &["down", "--env", &env, "-p", "sig"]);
            }
            done
        };
        let leaks = labelled(None, &format!("orch.env={env}")).len();
        let name = match signal {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "SIGKILL",
        };
        row(&format!("{name} of `{command}` after {delay} ms"), code, secs, leaks);
        if !clean || leaks != 0 || secs >= 10.0 {
            failures.push(format!("{name} of {command} after {delay} ms: exit {code:?} in {secs:.1}s, leaks {leaks}: {}", stderr_of(&mut child)));
            let _ = run(None, &state, dir, &["down", "--env", &env, "-p", "sig"]);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Services left on the compose file's implicit default network, all moved to tiers by a plugin: `orch network
/// create` makes the tiers (no `default`), and `up --join-networks` joins exactly those.
#[test]
fn an_environment_joins_the_tiers_its_resolved_plan_uses_not_the_implicit_default() {
    let _sharing = support::sharing_the_engine();
    support::ensure_image_blocking();
    let work = tempfile::tempdir().unwrap();
    let (dir, state, pid) = (work.path(), work.path().join("state"), std::process::id());
    let project = format!("joindef{pid}");
    std::fs::write(
        dir.join("compose.yaml"),
        format!("name: {project}\nservices:\n  api: {{image: orch-test/busybox:latest, command: [sleep, '3600']}}\n  postgres: {{image: orch-test/busybox:latest, command: [sleep, '3600']}}\n"),
    )
    .unwrap();
    struct Cleanup(PathBuf, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = run(None, &self.0.join("state"), &self.0, &["down", "--env", "j1", "-p", &self.1]);
            let _ = run(None, &self.0.join("state"), &self.0, &["network", "rm", "--force", "--plugin", "bpo-networks"]);
        }
    }
    let _cleanup = Cleanup(dir.to_path_buf(), project.clone());
    let made = run(None, &state, dir, &["network", "create", "--plugin", "bpo-networks", "--format", "json"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let report: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    let tiers: Vec<&str> = report["networks"].as_array().unwrap().iter().map(|n| n["tier"].as_str().unwrap()).collect();
    assert!(!tiers.contains(&"default") && tiers.contains(&"db"), "{tiers:?}");
    let up = run(None, &state, dir, &["up", "--plugin", "bpo-networks", "--join-networks", "--env", "j1"]);
    assert!(up.status.success(), "the join follows the resolved plan: {}", String::from_utf8_lossy(&up.stderr));
    let nets =
        lines(&docker_on(None, &["inspect", &format!("{project}__j1__postgres"), "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}\n{{end}}"]));
    assert_eq!(nets, [format!("{project}-db"), format!("{project}-main")], "postgres is on its two tiers");
    let down = run(None, &state, dir, &["down", "--env", "j1", "-p", &project]);
    assert!(down.status.success());
    let rm = run(None, &state, dir, &["network", "rm", "--plugin", "bpo-networks"]);
    assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
}
