//! README's main job on the real engine: the BPO example comes up healthy with the bpo-networks plugin, its tiers
//! behave as the plugin says, and `orch down` leaves nothing with an `orch.env` label.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn orch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orch")).args(args).current_dir(root()).output().unwrap()
}

fn count(kind: &str, env: &str) -> usize {
    let out = Command::new("docker").args([kind, "ls", "-q", "--filter", &format!("label=orch.env={env}")]).args(if kind == "container" { vec!["-a"] } else { vec![] }).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Runs examples/images/build.sh once per test process (the tests run in parallel).
fn prepare_images() {
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
