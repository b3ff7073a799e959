//! Parallel isolation on the real engine: 20 `orch up` processes at once, each with the five BPO tier networks and
//! three containers, all carving from the same default pool and picking host ports from the same range. All must
//! succeed with disjoint subnets and distinct host ports, and nothing may be left after the downs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use ipnet::Ipv4Net;

use crate::support;

const N: usize = 20;

/// The admission test counts every environment on the engine: the tests here must not overlap.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn serial_sharing() -> (std::sync::MutexGuard<'static, ()>, support::Sharing) {
    (serial(), support::sharing_the_engine())
}

fn orch(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orch")).args(args).env("ORCH_STATE_DIR", state).env("CI", "1").output().unwrap()
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

struct DownAll(std::path::PathBuf, Vec<String>);
impl Drop for DownAll {
    fn drop(&mut self) {
        for env in &self.1 {
            let _ = orch(&self.0, &["down", "--env", env]);
        }
    }
}

#[test]
fn twenty_concurrent_ups_get_disjoint_subnets_and_distinct_ports() {
    let _serial = serial_sharing();
    support::ensure_image_blocking();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("compose.yaml");
    // api → main+gpu+external, postgres → main+db, grafana → main+monitoring: all five tiers are used.
    std::fs::write(
        &file,
        r#"name: par
services:
  api:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
    ports:
      - target: 8080
        published: "31000-31199"
      - target: 8081
        published: "31000-31199"
  postgres:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
  grafana:
    image: orch-test/busybox:latest
    command: ["sleep", "3600"]
"#,
    )
    .unwrap();
    let envs: Vec<String> = (0..N).map(|i| format!("par{i}-{}", std::process::id())).collect();
    let _cleanup = DownAll(state.clone(), envs.clone());

    let children: Vec<_> = envs
        .iter()
        .map(|env| {
            Command::new(env!("CARGO_BIN_EXE_orch"))
                .args(["up", "-f", file.to_str().unwrap(), "--plugin", "bpo-networks", "--env", env, "--timeout", "300s"])
                .env("ORCH_STATE_DIR", &state)
                .env("CI", "1")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failures = vec![];
    for (env, child) in envs.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!("{env}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    assert!(failures.is_empty(), "{} of {N} ups failed:\n{}", failures.len(), failures.join("\n"));

    // Subnets: five per environment, all pairwise disjoint.
    let mut subnets: Vec<(String, Ipv4Net)> = vec![];
    for env in &envs {
        let names = docker_lines(&["network", "ls", "--filter", &format!("label=orch.env={env}"), "--format", "{{.Name}}"]);
        assert_eq!(names.len(), 5, "{env}: {names:?}");
        for n in names {
            let subnet = docker_lines(&["network", "inspect", &n, "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}"]);
            subnets.push((n, subnet[0].parse().unwrap()));
        }
    }
    for (i, (a, na)) in subnets.iter().enumerate() {
        for (b, nb) in &subnets[i + 1..] {
            assert!(!(na.contains(&nb.network()) || nb.contains(&na.network())), "{a} ({na}) overlaps {b} ({nb})");
        }
    }
    // Host ports: two per environment from one shared range, all distinct.
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for env in &envs {
        let ps = orch(&state, &["ps", "--env", env, "--format", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&ps.stdout).unwrap();
        let api = list.as_array().unwrap().iter().find(|s| s["service"] == "api").expect("api listed");
        let published: BTreeSet<u16> = api["ports"].as_array().unwrap().iter().map(|p| p[2].as_u64().unwrap() as u16).collect();
        assert_eq!(published.len(), 2, "{env}: {api}");
        for p in published {
            assert!((31000..=31199).contains(&p), "{env}: port {p} outside the range");
            if let Some(other) = ports.insert(p, env.clone()) {
                panic!("host port {p} given to both {other} and {env}");
            }
        }
    }

    for env in &envs {
        assert!(orch(&state, &["down", "--env", env]).status.success());
    }
    for kind in [["ps", "-aq"], ["network", "ls"], ["volume", "ls"]] {
        for env in &envs {
            let mut args: Vec<&str> = kind.to_vec();
            let filter = format!("label=orch.env={env}");
            if kind[0] != "ps" {
                args.push("-q");
            }
            args.extend(["--filter", &filter]);
            assert!(docker_lines(&args).is_empty(), "{env}: {kind:?} left behind");
        }
    }
}

#[test]
fn admission_queues_beyond_max_envs_and_no_wait_capacity_fails() {
    // Admission counts every orch environment on the engine: other tests' must not come and go meanwhile.
    let _serial = serial();
    let _alone = support::alone_on_the_engine();
    support::ensure_image_blocking();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, "name: adm\nservices:\n  app:\n    image: orch-test/busybox:latest\n    command: [\"sleep\", \"3600\"]\n").unwrap();
    let (a, b) = (format!("adm-a-{}", std::process::id()), format!("adm-b-{}", std::process::id()));
    let _cleanup = DownAll(state.clone(), vec![a.clone(), b.clone()]);
    // Whatever else runs on this engine counts too: the cap is "what exists now + 1".
    let existing: BTreeSet<String> = docker_lines(&["ps", "-a", "--filter", "label=orch.env", "--format", "{{.Label \"orch.env\"}}"]).into_iter().collect();
    let cap = (existing.len() + 1).to_string();
    let up = |env: &str, extra: &[&str]| {
        let mut args = vec!["up", "-f", file.to_str().unwrap(), "--env", env, "--max-envs", &cap, "--pool", "10.250.0.0/16"];
        args.extend_from_slice(extra);
        orch(&state, &args)
    };
    assert!(up(&a, &[]).status.success());
    let refused = up(&b, &["--no-wait-capacity"]);
    assert_eq!(refused.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at most"), "{}", String::from_utf8_lossy(&refused.stderr));

    let mut waiting = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["up", "-f", file.to_str().unwrap(), "--env", &b, "--max-envs", &cap, "--pool", "10.250.0.0/16"])
        .env("ORCH_STATE_DIR", &state)
        .env("CI", "1")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(line.contains("waiting for capacity"), "{line}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &format!("label=orch.env={b}")]).is_empty(), "nothing is created while queued");
    assert!(orch(&state, &["down", "--env", &a]).status.success());
    assert!(waiting.wait().unwrap().success(), "the queued up proceeds once capacity frees");
    assert_eq!(docker_lines(&["ps", "-q", "--filter", &format!("label=orch.env={b}")]).len(), 1);
}
