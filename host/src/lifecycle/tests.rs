//! `up` and `down` against the in-memory engine: ordering, concurrency, one-shots, rollback, conflicts and port
//! re-allocation, each in milliseconds and without Docker. (Every one of these also has a real-engine test.)

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::fake::{Behaviour, FakeEngine};
use crate::facts::Facts;
use crate::labels;
use crate::plan::Plan;

use super::{LifecycleError, UpOptions, down, up};

fn plan(compose: &str) -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, compose).unwrap();
    let req = crate::PlanRequest {
        compose: orch_compose::LoadOptions { files: vec![file], project_name: Some("fk".into()), ..Default::default() },
        env_id: Some("t1".into()),
        ..Default::default()
    };
    crate::make_plan(&req, &[], &Facts::default()).unwrap().plan
}

fn opts() -> UpOptions {
    UpOptions { timeout: Duration::from_secs(5), ..UpOptions::default() }
}

/// Where `what` (e.g. `start`) of `service`'s container comes in the journal.
fn at(journal: &[String], what: &str, service: &str) -> usize {
    let suffix = format!("__{service}");
    journal
        .iter()
        .position(|e| {
            let mut words = e.split(' ');
            words.next() == Some(what) && words.next().is_some_and(|name| name.ends_with(&suffix))
        })
        .unwrap_or_else(|| panic!("no `{what}` of {service} in {journal:#?}"))
}

fn env_resources(engine: &FakeEngine) -> (usize, usize, usize) {
    let (c, n, v) = (engine.container_names(), engine.network_names(), engine.volume_names());
    let mine = |names: Vec<String>| names.iter().filter(|n| n.starts_with("fk__t1__")).count();
    (mine(c), mine(n), mine(v))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

const STACK: &str = "
services:
  db:
    image: img
    healthcheck: {test: [CMD, check], interval: 1s}
  cache: {image: img}
  search: {image: img}
  migrate:
    image: img
    depends_on: {db: {condition: service_healthy}}
  api:
    image: img
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
      cache: {condition: service_started}
";

#[test]
fn dependencies_start_in_order_and_independent_services_together() {
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("migrate", Behaviour::Exit(0));
    let plan = plan(STACK);
    let report = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    assert_eq!(report.containers.len(), 5);
    let j = engine.journal();
    assert!(at(&j, "start", "db") < at(&j, "start", "migrate"), "{j:#?}");
    assert!(at(&j, "start", "migrate") < at(&j, "start", "api"), "{j:#?}");
    assert!(at(&j, "start", "cache") < at(&j, "start", "api"), "{j:#?}");
    // db's readiness is decided by running its healthcheck directly, before migrate starts.
    assert!(at(&j, "exec", "db") < at(&j, "start", "migrate"), "{j:#?}");
    // db, cache and search depend on nothing: their starts overlap.
    assert!(engine.max_concurrent_starts() >= 3, "{}", engine.max_concurrent_starts());
    // Everything is created before anything starts, and the ready marker comes last.
    let last_create = j.iter().rposition(|e| e.starts_with("create ")).unwrap();
    assert!(last_create < j.iter().position(|e| e.starts_with("start ")).unwrap());
    assert_eq!(j.last().unwrap(), "create-volume fk__t1__orch-ready");
}

#[test]
fn a_failing_one_shot_stops_its_dependents_and_everything_is_rolled_back() {
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("migrate", Behaviour::Exit(3));
    let err = rt().block_on(up(&engine, &plan(STACK), &opts(), &|_| {})).unwrap_err();
    match &err {
        LifecycleError::ServiceFailed { service, reason, .. } => {
            assert_eq!(service, "migrate");
            assert!(reason.contains("status 3"), "{reason}");
        }
        other => panic!("expected migrate's failure, got {other}"),
    }
    let j = engine.journal();
    assert!(!j.iter().any(|e| e.starts_with("start ") && e.ends_with("-api")), "api must not start: {j:#?}");
    assert_eq!(env_resources(&engine), (0, 0, 0), "{j:#?}");
}

#[test]
fn a_failed_start_rolls_back_unless_asked_to_keep() {
    let compose = "services:\n  a: {image: img}\n  b: {image: img}\nvolumes:\n  data: {}\n";
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("b", Behaviour::FailStart("exec: \"nope\": executable file not found".into()));
    let err = rt().block_on(up(&engine, &plan(compose), &opts(), &|_| {})).unwrap_err();
    assert!(err.to_string().contains("executable file not found"), "{err}");
    assert_eq!(env_resources(&engine), (0, 0, 0));

    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("b", Behaviour::FailStart("boom".into()));
    let keep = UpOptions { keep_on_failure: true, ..opts() };
    rt().block_on(up(&engine, &plan(compose), &keep, &|_| {})).unwrap_err();
    let (containers, networks, volumes) = env_resources(&engine);
    assert_eq!((containers, volumes), (2, 1), "kept for inspection");
    assert!(networks >= 1);
}

#[test]
fn an_unhealthy_service_times_out_naming_what_it_waited_for() {
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("db", Behaviour::Unhealthy);
    let short = UpOptions { timeout: Duration::from_millis(400), ..opts() };
    let err = rt().block_on(up(&engine, &plan("services:\n  db:\n    image: img\n    healthcheck: {test: [CMD, check]}\n"), &short, &|_| {})).unwrap_err();
    assert!(matches!(&err, LifecycleError::Timeout { service, .. } if service == "db"), "{err}");
}

#[test]
fn a_missing_image_fails_before_anything_is_created() {
    let engine = FakeEngine::new();
    let err = rt().block_on(up(&engine, &plan("services:\n  a: {image: nowhere:1}\n"), &opts(), &|_| {})).unwrap_err();
    assert!(matches!(&err, LifecycleError::MissingImage { image, .. } if image == "nowhere:1"), "{err}");
    assert!(engine.journal().iter().all(|e| !e.starts_with("create")), "{:#?}", engine.journal());
}

#[test]
fn conflicts_are_resolved_only_for_leftovers_of_the_same_environment() {
    let compose = "services:\n  a: {image: img}\n";
    let plan = plan(compose);
    let name = plan.services["a"].container_name.clone();
    let me = crate::owner::Owner::current();
    let dead = crate::owner::Owner { start_time: me.start_time + 1, ..me.clone() };
    let env_labels = |env: &str, owner: &crate::owner::Owner| {
        BTreeMap::from([(labels::ENV.into(), env.into()), (labels::PROJECT.into(), "fk".into()), (labels::OWNER.into(), owner.label())])
    };

    // Left by a killed run of this same environment (its owner is dead, never completed): removed and replaced.
    let engine = FakeEngine::new().with_images(&["img"]);
    let planted = engine.plant_container(&name, env_labels("t1", &dead));
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    assert!(engine.journal().contains(&format!("remove {name}")), "{:#?}", engine.journal());
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &planted)).is_err());

    // Not orch's: left alone, and up says so.
    let engine = FakeEngine::new().with_images(&["img"]);
    let planted = engine.plant_container(&name, BTreeMap::new());
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(matches!(&err, LifecycleError::InTheWay { .. }), "{err}");
    assert!(err.to_string().contains("not created by orch"), "{err}");
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &planted)).is_ok(), "a foreign container is never removed");

    // Another environment's, even one whose owner is dead: never this environment's to remove.
    let engine = FakeEngine::new().with_images(&["img"]);
    let planted = engine.plant_container(&name, env_labels("old", &dead));
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(err.to_string().contains("belongs to environment old of project fk"), "{err}");
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &planted)).is_ok());

    // This environment, in use by a live process (another user's `up --env t1`): left alone, and nothing of it is
    // rolled back by this failed `up` either.
    let engine = FakeEngine::new().with_images(&["img"]);
    let other = crate::owner::Owner { pid: 1, ..me.clone() };
    let live = crate::owner::Owner::of_pid(1).unwrap_or(other);
    let planted = engine.plant_container(&name, env_labels("t1", &live));
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(err.to_string().contains("live orch process"), "{err}");
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &planted)).is_ok(), "the rollback removes only this run's");

    // This environment, complete and kept, with a dead owner (`orch up` exited): kept, not a leftover.
    let engine = FakeEngine::new().with_images(&["img"]);
    let planted = engine.plant_container(&name, env_labels("t1", &dead));
    rt().block_on(super::marker::mark_ready(&engine, &env_labels("t1", &dead), "fk", "t1", super::Lifetime::Kept { expires: None })).unwrap();
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(err.to_string().contains("is kept"), "{err}");
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &planted)).is_ok());
}

#[test]
fn a_volume_of_another_environment_or_tool_is_never_reused() {
    let compose = "services:\n  a:\n    image: img\n    volumes: [data:/data]\nvolumes:\n  data: {}\n";
    let plan = plan(compose);
    let name = plan.volumes["data"].docker_name.clone();
    for (labels, why) in [
        (BTreeMap::new(), "not created by orch"),
        (BTreeMap::from([(labels::ENV.to_string(), "t2".to_string()), (labels::PROJECT.to_string(), "fk".to_string())]), "environment t2 of project fk"),
    ] {
        let engine = FakeEngine::new().with_images(&["img"]);
        engine.plant_volume(&name, labels.clone());
        let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
        assert!(matches!(&err, LifecycleError::InTheWay { kind: "volume", .. }) && err.to_string().contains(why), "{err}");
        assert_eq!(engine.volume_names(), vec![name.clone()], "the volume in the way stays, nothing else is left");
        assert_eq!(engine.container_names(), Vec::<String>::new());
    }
    // This environment's own volume (kept data of an earlier `up` of the same --env) is used again.
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.plant_volume(&name, BTreeMap::from([(labels::ENV.to_string(), "t1".to_string()), (labels::PROJECT.to_string(), "fk".to_string())]));
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
}

#[test]
fn a_network_of_the_same_name_is_never_used_and_containers_join_by_id() {
    let compose = "services:\n  a: {image: img}\n";
    let plan = plan(compose);
    let name = plan.networks["default"].docker_name.clone();
    // A stranger's network of orch's name (engines before API 1.44 allow two): in the way, untouched, nothing left.
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.plant_network(&name, BTreeMap::new());
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(matches!(&err, LifecycleError::InTheWay { kind: "network", .. }), "{err}");
    assert_eq!(engine.network_names(), vec![name.clone()]);
    // One made beside orch's after `up` (a race the check cannot close): down still removes orch's alone, by id.
    let engine = FakeEngine::new().with_images(&["img"]);
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    engine.plant_network(&name, BTreeMap::new());
    let filter = labels::env_filter(Some("fk"), "t1");
    rt().block_on(down(&engine, &filter, true)).unwrap();
    assert_eq!(engine.network_names(), vec![name], "the stranger's network stays");
    assert_eq!(engine.container_names(), Vec::<String>::new());
}

#[test]
fn a_host_port_taken_outside_orch_is_moved_within_its_range() {
    let plan = plan("services:\n  web:\n    image: img\n    ports: ['47100-47120:80']\n");
    let chosen = plan.services["web"].ports[0].host_port.expect("resolved");
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.take_port(chosen);
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    let published = engine.published("web");
    assert_eq!(published.len(), 1);
    assert_ne!(published[0], chosen);
    assert!((47100..=47120).contains(&published[0]), "{published:?}");

    // A fixed port cannot move: the error says who holds it.
    let plan = self::plan("services:\n  web:\n    image: img\n    ports: ['47130:80']\n");
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.take_port(47130);
    let err = rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap_err();
    assert!(err.to_string().contains("taken by a process outside orch"), "{err}");
}

#[test]
fn down_removes_only_the_environments_labelled_resources_and_is_idempotent() {
    let engine = FakeEngine::new().with_images(&["img"]);
    let foreign = engine.plant_container("someone-elses", BTreeMap::new());
    let plan = plan("services:\n  a: {image: img}\n  b: {image: img}\nvolumes:\n  data: {}\n");
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    let filter = labels::env_filter(Some("fk"), "t1");
    let removed = rt().block_on(down(&engine, &filter, true)).unwrap();
    assert_eq!((removed.containers, removed.volumes), (2, 1));
    assert_eq!(env_resources(&engine), (0, 0, 0));
    assert!(rt().block_on(crate::engine::Engine::inspect_container(&engine, &foreign)).is_ok());
    let again = rt().block_on(down(&engine, &filter, true)).unwrap();
    assert_eq!(again, Default::default());
}

#[test]
fn a_service_up_saw_healthy_is_reported_healthy_until_it_restarts() {
    use crate::engine::Engine;
    let engine = FakeEngine::new().with_images(&["img"]);
    engine.behave("migrate", Behaviour::Exit(0));
    let plan = plan(STACK);
    rt().block_on(up(&engine, &plan, &opts(), &|_| {})).unwrap();
    let filter = labels::env_filter(Some("fk"), "t1");
    let db = |engine: &FakeEngine| {
        let all = rt().block_on(super::status_probed(engine, &filter, true)).unwrap();
        all.into_iter().find(|s| s.service == "db").unwrap().state
    };
    // The fake engine never runs its own healthchecks: Docker's state stays "starting", as it does for a while after
    // `up` returns. A check that fails now (a loaded host) must not take back what `up` saw.
    engine.behave("db", Behaviour::Unhealthy);
    assert_eq!(db(&engine), "HEALTHY");
    // Started again after `up`: what `up` saw no longer counts, the check does.
    let c = rt().block_on(engine.containers_labelled(&[filter.clone(), vec![labels::service_filter("db")]].concat())).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    rt().block_on(engine.stop_container(&c[0].id, None)).unwrap();
    rt().block_on(engine.start_container(&c[0].id)).unwrap();
    assert_eq!(db(&engine), "STARTING");
    engine.behave("db", Behaviour::Run);
    assert_eq!(db(&engine), "HEALTHY");
}
