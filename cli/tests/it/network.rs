//! `orch network` on the real engine (seed 003): a project's tier networks made once from its plan, idempotently; a
//! container orch did not make joins a tier by name and reaches an environment that joined the tiers; `rm` refuses
//! while containers are attached and removes with `--force`; a network of the same name that orch did not make is
//! never adopted or touched.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{self, IMAGE, orch_in};

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker")
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "orch failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn tier<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["networks"].as_array().unwrap().iter().find(|n| n["tier"] == name).unwrap_or_else(|| panic!("no tier {name} in {report}"))
}

/// Removes what the test made, whatever happened: its environment, the foreign container, the tiers (by the names
/// only this test uses).
struct Cleanup {
    dir: std::path::PathBuf,
    project: String,
    env: String,
    foreign: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = orch_in(&self.dir, &["down", "--env", &self.env, "-p", &self.project]);
        for c in &self.foreign {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = orch_in(&self.dir, &["network", "rm", "--force"]);
        for t in ["front", "back", "taken"] {
            let _ = docker(&["network", "rm", &format!("{}-{t}", self.project)]);
        }
    }
}

fn write_project(dir: &Path, project: &str, back_subnet: &str) {
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            r#"name: {project}
services:
  web:
    image: {IMAGE}
    command: ["httpd", "-f", "-p", "8080", "-h", "/"]
    networks: [front, back]
  db:
    image: {IMAGE}
    command: ["sleep", "3600"]
    networks: [back]
networks:
  front: {{}}
  back:
    internal: true
    ipam:
      config:
        - subnet: {back_subnet}
"#
        ),
    )
    .unwrap();
}

#[test]
fn tier_networks_are_made_once_joined_by_name_and_removed_only_when_free() {
    support::ensure_image_blocking();
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let project = format!("tiers{}", std::process::id());
    let env = format!("t{}", std::process::id());
    let foreign = format!("orch-test-notebook-{}", std::process::id());
    let _cleanup = Cleanup { dir: dir.path().to_path_buf(), project: project.clone(), env: env.clone(), foreign: vec![foreign.clone()] };
    write_project(dir.path(), &project, "10.235.7.0/24");
    let orch = |args: &[&str]| orch_in(dir.path(), args);

    // Before: the plan's two networks, neither there.
    let status = json(&orch(&["network", "status", "--format", "json"]));
    assert_eq!(status["format"], "orch.networks/v1");
    assert_eq!(status["networks"].as_array().unwrap().len(), 2, "{status}");
    assert!(status["networks"].as_array().unwrap().iter().all(|n| n["exists"] == false && n["matches_plan"] == false), "{status}");

    // create: the fixed subnet as written, the other carved from orch's pool; labelled as the project's tiers.
    let created = json(&orch(&["network", "create", "--format", "json"]));
    let (front, back) = (tier(&created, "front"), tier(&created, "back"));
    assert_eq!((front["created"].clone(), back["created"].clone()), (Value::Bool(true), Value::Bool(true)), "{created}");
    assert_eq!(back["name"], format!("{project}-back"));
    assert_eq!(back["subnet"], "10.235.7.0/24");
    assert_eq!(back["internal"], true);
    let carved: ipnet::Ipv4Net = front["subnet"].as_str().unwrap().parse().unwrap();
    assert!("10.192.0.0/12".parse::<ipnet::Ipv4Net>().unwrap().contains(&carved), "{front}");
    assert!(front["gateway"].as_str().is_some_and(|g| carved.contains(&g.parse::<std::net::Ipv4Addr>().unwrap())), "{front}");
    let labels = docker(&["network", "inspect", "-f", "{{json .Labels}}", &format!("{project}-front")]);
    let labels: Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!((labels["orch.project"].as_str(), labels["orch.tier"].as_str()), (Some(project.as_str()), Some("front")));
    assert!(labels.get("orch.env").is_none(), "a tier belongs to no environment: {labels}");

    // Idempotent: nothing new, both match the plan.
    let again = json(&orch(&["network", "create", "--format", "json"]));
    assert!(again["networks"].as_array().unwrap().iter().all(|n| n["created"] == false && n["matches_plan"] == true), "{again}");
    assert_eq!(tier(&again, "front")["subnet"], front["subnet"]);
    let text = orch(&["network", "status"]);
    assert!(String::from_utf8_lossy(&text.stdout).matches("matches plan").count() == 2, "{}", String::from_utf8_lossy(&text.stdout));

    // A container orch did not make (a notebook) joins the front tier by its name, with an alias; twice is fine.
    let run = docker(&["run", "-d", "--name", &foreign, IMAGE, "sleep", "600"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for _ in 0..2 {
        let joined = json(&orch(&["network", "connect", "front", &foreign, "--alias", "notebook", "--format", "json"]));
        assert_eq!(tier(&joined, "front")["containers"], serde_json::json!([foreign]), "{joined}");
    }

    // An environment joins the tiers instead of making networks; the notebook reaches its web service by name.
    let up = orch(&["up", "--env", &env, "--join-networks", "--timeout", "60s"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let nets = docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", &format!("{project}__{env}__web")]);
    let nets: Value = serde_json::from_slice(&nets.stdout).unwrap();
    let mut names: Vec<&String> = nets.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, [&format!("{project}-back"), &format!("{project}-front")]);
    let fetched = docker(&["exec", &foreign, "wget", "-q", "-O", "/dev/null", "http://web:8080/bin/busybox"]);
    assert!(fetched.status.success(), "the notebook reaches web on the front tier: {}", String::from_utf8_lossy(&fetched.stderr));
    let status = json(&orch(&["network", "status", "--format", "json"]));
    assert_eq!(tier(&status, "back")["containers"].as_array().unwrap().len(), 2, "web and db on back: {status}");

    // rm refuses while anything is attached, names what is, and removes nothing.
    let refused = orch(&["network", "rm"]);
    assert_eq!(refused.status.code(), Some(7), "{}", String::from_utf8_lossy(&refused.stderr));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains(&foreign) && why.contains("--force"), "{why}");
    assert_eq!(docker(&["network", "inspect", &format!("{project}-back")]).status.code(), Some(0));

    // The environment goes; its tiers stay.
    let down = orch(&["down", "--env", &env]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let status = json(&orch(&["network", "status", "--format", "json"]));
    assert!(status["networks"].as_array().unwrap().iter().all(|n| n["exists"] == true), "{status}");
    assert_eq!(tier(&status, "back")["containers"], serde_json::json!([]));

    // disconnect (twice is fine), and the back tier alone can go while front still has the notebook.
    for _ in 0..2 {
        let left = json(&orch(&["network", "disconnect", "back", &foreign, "--format", "json"]));
        assert_eq!(tier(&left, "back")["containers"], serde_json::json!([]));
    }
    let removed = json(&orch(&["network", "rm", "back", "--format", "json"]));
    assert_eq!(tier(&removed, "back")["removed"], true);
    assert!(!docker(&["network", "inspect", &format!("{project}-back")]).status.success());
    // --force disconnects the notebook and removes front; the notebook itself is left running.
    let forced = json(&orch(&["network", "rm", "--force", "--format", "json"]));
    assert_eq!(tier(&forced, "front")["removed"], true);
    assert!(!docker(&["network", "inspect", &format!("{project}-front")]).status.success());
    let alive = docker(&["inspect", "-f", "{{.State.Running}}", &foreign]);
    assert_eq!(String::from_utf8_lossy(&alive.stdout).trim(), "true");
    // Nothing left: rm again is success with nothing to report.
    let empty = json(&orch(&["network", "rm", "--format", "json"]));
    assert_eq!(empty["networks"], serde_json::json!([]));
    // An environment that should join tiers that are gone is refused, naming them.
    let refused = orch(&["up", "--env", &env, "--join-networks"]);
    assert_eq!(refused.status.code(), Some(9), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("orch network create"));
}

#[test]
fn a_network_of_the_tiers_name_that_orch_did_not_make_is_never_adopted() {
    support::ensure_image_blocking();
    let _sharing = support::sharing_the_engine();
    let dir = tempfile::tempdir().unwrap();
    let project = format!("tierstaken{}", std::process::id());
    let _cleanup = Cleanup { dir: dir.path().to_path_buf(), project: project.clone(), env: "none".into(), foreign: vec![] };
    write_project(dir.path(), &project, "10.235.8.0/24");
    // Someone else's network holds the name of the front tier.
    let theirs = format!("{project}-front");
    let made = docker(&["network", "create", "--subnet", "10.235.9.0/24", &theirs]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let out = orch_in(dir.path(), &["network", "create"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&theirs), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing was made, and theirs is as it was.
    assert!(!docker(&["network", "inspect", &format!("{project}-back")]).status.success(), "create changed nothing");
    let status = json(&orch_in(dir.path(), &["network", "status", "--format", "json"]));
    let front = tier(&status, "front");
    assert_eq!(front["matches_plan"], false);
    assert!(front["differences"].to_string().contains("not made by orch"), "{front}");
    // rm only knows labelled tiers: theirs stays.
    let _ = json(&orch_in(dir.path(), &["network", "rm", "--force", "--format", "json"]));
    assert!(docker(&["network", "inspect", &theirs]).status.success());
    let _ = docker(&["network", "rm", &theirs]);
}
