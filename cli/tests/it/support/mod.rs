//! Shared by the tests: the tiny test image, built from Debian's static busybox through the engine API exactly as
//! `orch up` builds images, and the `orch` binary run from a folder.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use orch::engine::{DockerEngine, Engine};

pub const IMAGE: &str = "orch-test/busybox:latest";

/// Builds [`IMAGE`] once per test process.
pub fn ensure_image(rt: &tokio::runtime::Runtime, engine: &DockerEngine) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let busybox =
            ["/bin/busybox", "/usr/bin/busybox"].into_iter().find(|p| Path::new(p).is_file()).expect("busybox-static is needed (.ci/run installs it)");
        std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n")
            .unwrap();
        let archive = orch::lifecycle::tar_context(dir.path(), "Dockerfile", None).unwrap();
        let spec = orch::engine::BuildSpec { tag: IMAGE.into(), context: archive.path().to_path_buf(), dockerfile: "Dockerfile".into(), ..Default::default() };
        rt.block_on(engine.build_image(spec)).unwrap();
    });
}

/// [`ensure_image`] for tests that drive the `orch` binary and have no engine of their own.
pub fn ensure_image_blocking() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = rt.block_on(DockerEngine::connect()).expect("the Docker engine must be running for these tests");
    ensure_image(&rt, &engine);
}

/// Whether an engine-wide command (`orch gc`, `orch down --all-mine`) did its job as far as this test can judge: it
/// succeeded, or the only environments it could not remove ("could not remove ENV…" lines) are not this test's (their
/// names lack `mark`). A shared host may hold another run's environment the engine will not remove (a network it says
/// still has endpoints); what the test made is checked by the test.
pub fn ok_but_for_others(out: &Output, mark: &str) -> bool {
    if out.status.success() {
        return true;
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("could not remove ")?.split([' ', ':']).next()).collect();
    !failed.is_empty() && failed.iter().all(|env| !env.contains(mark))
}

/// How many Docker resources of `kind` (container, network, volume) carry `label` (`KEY=VALUE`); stopped containers
/// count.
pub fn count_labelled(kind: &str, label: &str) -> usize {
    let out = Command::new("docker")
        .args([kind, "ls", "-q", "--filter", &format!("label={label}")])
        .args(if kind == "container" { vec!["-a"] } else { vec![] })
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The `orch` binary run in `dir`, with the tests' shared plugin cache.
pub fn orch_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(dir)
        .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
        .output()
        .expect("run orch")
}

/// The tests of this binary run side by side against one engine. Most only look at their own environments, but a
/// test that looks at every orch environment (gc, doctor) would see other tests' work: their `up`s reap every orphan
/// on the engine, and an `orch down` in progress looks orphaned for a moment. Every test that creates environments
/// holds [`sharing_the_engine`]; such a test holds [`alone_on_the_engine`]. Take it once per test, after the
/// module's own serialising lock.
static ENGINE_WIDE: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub type Sharing = std::sync::RwLockReadGuard<'static, ()>;

pub fn sharing_the_engine() -> Sharing {
    ENGINE_WIDE.read().unwrap_or_else(|e| e.into_inner())
}

pub fn alone_on_the_engine() -> std::sync::RwLockWriteGuard<'static, ()> {
    ENGINE_WIDE.write().unwrap_or_else(|e| e.into_inner())
}

/// Starts a dockerd of the tests' own in network namespace `ns` (entered for the network only: `ip netns exec` would
/// remount /sys and hide the cgroup mounts dockerd needs), with `daemon.json`, data root, exec root, pid file, socket
/// and logs under `dir`, and waits up to 60 s for it to answer at `host`.
pub fn spawn_dockerd(ns: &str, dir: &Path, host: &str, extra: &[&str]) -> Result<std::process::Child, String> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{ns}"))
        .args(["dockerd", "--config-file"])
        .arg(dir.join("daemon.json"))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .args(extra)
        .args(["-H", host])
        .stdout(std::fs::File::create(dir.join("dockerd.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("dockerd.err")).unwrap())
        .spawn()
        .map_err(|e| format!("starting dockerd: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let up = Command::new("docker").args(["-H", host, "info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success());
        if up {
            return Ok(child);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("dockerd.err")).unwrap_or_default();
            return Err(format!("the test dockerd did not answer in 60 s: {}", log.lines().last().unwrap_or_default()));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
