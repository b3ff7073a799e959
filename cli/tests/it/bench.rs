//! `orch bench` on the real engine with the tiny image: a report that passes its targets exits 0 (markdown, written to
//! a file too); one interrupted while environments are coming up removes every one of them.

use std::io::BufRead;
use std::process::{Command, Stdio};

use crate::support::{self, IMAGE, orch_in};

fn labelled(kind: &str, project: &str) -> usize {
    support::count_labelled(kind, &format!("orch.project={project}"))
}

fn compose(dir: &std::path::Path, project: &str, healthy: bool) {
    let test = if healthy { "true" } else { "false" };
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "name: {project}\nservices:\n  api:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    healthcheck:\n      test: [\"CMD\", \"{test}\"]\n      interval: 1s\n      retries: 100\n  cache:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_bench_within_its_targets_passes_with_a_markdown_report() {
    support::ensure_image_blocking();
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let project = format!("benchok{}", std::process::id());
    compose(dir.path(), &project, true);
    std::fs::write(dir.path().join("orch.toml"), "[bench]\nstartup = \"120s\"\nmemory = \"1GiB\"\nimage-size = \"200MB\"\ncleanup = \"60s\"\n").unwrap();
    let out = orch_in(dir.path(), &["bench", "--parallel", "2", "--runs", "2", "--format", "markdown", "-o", "report.md"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("### ✅ `orch bench`"), "{stdout}");
    for row in ["| startup | 120.0s |", "| memory | 1.0 GiB |", "| image-size | 190.7 MiB |", "| cleanup | 60.0s |", "| conflicts | 0 | 0 | pass |"] {
        assert!(stdout.contains(row), "{row} in {stdout}");
    }
    assert_eq!(stdout.matches("| configured |").count(), 4, "two runs of two: {stdout}");
    assert_eq!(std::fs::read_to_string(dir.path().join("report.md")).unwrap(), stdout);
    for kind in ["container", "network", "volume"] {
        assert_eq!(labelled(kind, &project), 0, "{kind}s left");
    }
    // A bad target is a usage error that names it, before anything runs.
    let bad = orch_in(dir.path(), &["bench", "--target", "speed=fast"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("speed"));
}

#[test]
fn an_interrupted_bench_leaves_nothing_behind() {
    support::ensure_image_blocking();
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let project = format!("benchint{}", std::process::id());
    // api never becomes healthy: both environments are mid-`up` when the interrupt comes.
    compose(dir.path(), &project, false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["bench", "--parallel", "2", "--timeout", "300s"])
        .current_dir(dir.path())
        .env("ORCH_CACHE_DIR", std::env::temp_dir().join("orch-test-plugin-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut planned = 0;
    let mut seen = vec![];
    while planned < 2 {
        let line = rx.recv_timeout(std::time::Duration::from_secs(120)).unwrap_or_else(|_| panic!("no progress: {seen:?}"));
        planned += usize::from(line.contains("bringing up"));
        seen.push(line);
    }
    // Let them get as far as creating containers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while labelled("container", &project) < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(labelled("container", &project) >= 2, "the bench got as far as containers: {seen:?}");
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(status.code(), Some(130), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|l| l.contains("removed 2 environment")), "{rest:?}");
    for kind in ["container", "network", "volume"] {
        assert_eq!(labelled(kind, &project), 0, "{kind}s left after the interrupt");
    }
}
