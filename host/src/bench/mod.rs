//! `orch bench`: seed 004's validation benchmark as a library call. It brings a project up `runs` times, `parallel`
//! environments at once, and measures each service's time to ready, its memory (the engine's statistics) and its
//! image's size, each environment's memory, `up` and `down` wall time, collisions between environments and anything
//! left behind; then it checks the figures against the project's targets ([`report::Targets`]). With the
//! image-variants plugin active it also brings up a round of the regular variant of the stack, to compare sizes and
//! startup under the same load.
//!
//! Every environment belongs to this process ([`Lifetime::Process`]) and is removed by it; the [`Tracker`] knows every
//! environment planned so far, so a front end that is interrupted removes them all ([`remove_tracked`]).

pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use report::{EnvRun, ServiceRun};
pub use report::{Report, Targets};

use crate::engine::{Engine, EngineError};
use crate::lifecycle::{LifecycleError, Lifetime, Progress};
use crate::session::{EnvOptions, Environment, Project, ProjectOptions, Reconnect};
use crate::{Error, labels};

/// The variant name of the project as it is configured.
pub const CONFIGURED: &str = "configured";

/// The plugin whose variants a bench compares.
const IMAGE_VARIANTS: &str = "image-variants";

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Environments brought up at once.
    pub parallel: usize,
    /// Rounds of `parallel` environments.
    pub runs: usize,
    /// How long each environment may take to be ready.
    pub timeout: Duration,
    pub lock_timeout: Duration,
    /// An `orch` binary to watch the environments (see [`EnvOptions::watcher`]).
    pub watcher: Option<std::path::PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions { parallel: 1, runs: 1, timeout: Duration::from_secs(300), lock_timeout: Duration::from_secs(600), watcher: None }
    }
}

/// What a bench is doing, for a progress display.
#[derive(Debug, Clone)]
pub enum Event {
    /// `up` of one environment made progress.
    Step {
        variant: String,
        run: usize,
        slot: usize,
        progress: Progress,
    },
    Up {
        variant: String,
        run: usize,
        slot: usize,
        env: String,
        elapsed: Duration,
    },
    Failed {
        variant: String,
        run: usize,
        slot: usize,
        error: String,
    },
    Measured {
        variant: String,
        run: usize,
    },
    Down {
        variant: String,
        run: usize,
        slot: usize,
        env: String,
        elapsed: Duration,
    },
}

/// Every environment a bench has planned: what to remove when it is interrupted.
#[derive(Debug, Default)]
pub struct Tracker {
    envs: Mutex<BTreeSet<(String, String)>>,
}

impl Tracker {
    fn add(&self, project: &str, env: &str) {
        self.envs.lock().unwrap_or_else(|e| e.into_inner()).insert((project.to_string(), env.to_string()));
    }

    fn forget(&self, project: &str, env: &str) {
        self.envs.lock().unwrap_or_else(|e| e.into_inner()).remove(&(project.to_string(), env.to_string()));
    }

    pub fn envs(&self) -> Vec<(String, String)> {
        self.envs.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// Removes every environment the tracker knows (an interrupted bench's) and their reservations; returns how many.
pub async fn remove_tracked<E: Engine>(engine: &E, project: &Project, tracker: &Tracker) -> usize {
    let envs = tracker.envs();
    for (p, env) in &envs {
        let _ = crate::lifecycle::down(engine, &labels::env_filter(Some(p), env), true).await;
        project.release_reservation(env).await;
        tracker.forget(p, env);
    }
    envs.len()
}

/// The projects to compare with the configured one: with the image-variants plugin active, the same project on
/// regular images everywhere.
pub fn variants(opts: &ProjectOptions, project: &Project) -> Result<Vec<(String, Project)>, Error> {
    if !project.plugins().iter().any(|p| p.plugin.description.name == IMAGE_VARIANTS) {
        return Ok(vec![]);
    }
    let mut regular = opts.clone();
    regular.plugin_settings.extend([format!("{IMAGE_VARIANTS}.alpine-kinds=[]"), format!("{IMAGE_VARIANTS}.services={{}}")]);
    Ok(vec![("regular".into(), Project::open(&regular)?)])
}

/// Runs the bench: `runs` rounds of `parallel` environments of `project`, then one round of each variant.
/// Environments that fail count against the bench, they do not stop it; only an engine that cannot be reached does.
pub async fn run<E: Reconnect + Clone>(
    engine: &E,
    project: &Project,
    variants: &[(String, Project)],
    targets: &Targets,
    opts: &BenchOptions,
    tracker: &Tracker,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Report, Error> {
    if opts.parallel == 0 || opts.runs == 0 {
        return Err(Error::Usage("--parallel and --runs must be at least 1".into()));
    }
    let started = Instant::now();
    let mut environments = vec![];
    let mut sizes: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut rounds: Vec<(&str, &Project, usize, usize)> = (1..=opts.runs).map(|r| (CONFIGURED, project, r, opts.parallel)).collect();
    // A variant runs as many at once as the configured rounds: startup under the same load is what compares.
    rounds.extend(variants.iter().map(|(name, p)| (name.as_str(), p, 1, opts.parallel)));
    for (variant, p, run, parallel) in rounds {
        environments.extend(round(engine, p, variant, run, parallel, opts, tracker, events, &mut sizes).await?);
    }
    let kind = if engine.places_services() { "swarm" } else { "local" };
    let mut report = Report {
        format: report::FORMAT,
        project: project.name().to_string(),
        engine: kind.into(),
        parallel: opts.parallel,
        runs: opts.runs,
        wall_s: started.elapsed().as_secs_f64(),
        environments,
        services: vec![],
        images: vec![],
        totals: report::Totals { environments: 0, failed: 0, conflicts: 0, leftovers: 0, up_s: None, down_s: None, memory_bytes: None },
        variants: vec![],
        checks: vec![],
        pass: false,
    };
    report::summarise(&mut report, targets, &sizes);
    Ok(report)
}

/// One round: `parallel` environments up at once, measured once all are up, then all removed at once.
#[allow(clippy::too_many_arguments)]
async fn round<E: Reconnect + Clone>(
    engine: &E,
    project: &Project,
    variant: &str,
    run: usize,
    parallel: usize,
    opts: &BenchOptions,
    tracker: &Tracker,
    events: &(dyn Fn(Event) + Sync),
    sizes: &mut BTreeMap<String, Option<u64>>,
) -> Result<Vec<EnvRun>, Error> {
    let ups = (1..=parallel).map(|slot| up_one(engine, project, variant, run, slot, opts, tracker, events));
    let results = futures_util::future::join_all(ups).await;
    let mut runs = vec![];
    let mut live: Vec<(usize, Environment<E>)> = vec![];
    for (i, (record, env)) in results.into_iter().enumerate() {
        runs.push(record);
        if let Some(env) = env {
            live.push((i, env));
        }
    }
    // Memory once every environment of the round is up: what the host carries when they run side by side.
    for (i, env) in &live {
        measure(engine, env, &mut runs[*i], sizes).await?;
    }
    events(Event::Measured { variant: variant.into(), run });
    let downs = live.into_iter().map(|(i, env)| async move {
        let id = env.id().to_string();
        let began = Instant::now();
        let result = env.down().await;
        (i, id, began.elapsed(), result)
    });
    for (i, id, elapsed, result) in futures_util::future::join_all(downs).await {
        let record = &mut runs[i];
        match result {
            Ok(_) => {
                record.down_s = Some(elapsed.as_secs_f64());
                events(Event::Down { variant: variant.into(), run, slot: record.slot, env: id.clone(), elapsed });
            }
            Err(e) => record.error = Some(format!("down: {e}")),
        }
        record.leftovers = leftovers(engine, project.name(), &id).await?;
        if record.leftovers.is_empty() {
            tracker.forget(project.name(), &id);
        }
    }
    Ok(runs)
}

/// Brings one environment up, noting when each service became ready.
#[allow(clippy::too_many_arguments)]
async fn up_one<E: Reconnect + Clone>(
    engine: &E,
    project: &Project,
    variant: &str,
    run: usize,
    slot: usize,
    opts: &BenchOptions,
    tracker: &Tracker,
    events: &(dyn Fn(Event) + Sync),
) -> (EnvRun, Option<Environment<E>>) {
    let began = Instant::now();
    let ready: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());
    let env_id: Mutex<Option<String>> = Mutex::new(None);
    let progress = |p: Progress| {
        match &p {
            Progress::Planned { env, .. } => {
                tracker.add(project.name(), env);
                *env_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(env.clone());
            }
            Progress::Ready { service, .. } => {
                ready.lock().unwrap_or_else(|e| e.into_inner()).insert(service.clone(), began.elapsed().as_secs_f64());
            }
            _ => {}
        }
        events(Event::Step { variant: variant.into(), run, slot, progress: p });
    };
    let env_opts = EnvOptions {
        timeout: opts.timeout,
        lock_timeout: opts.lock_timeout,
        lifetime: Lifetime::Process,
        watcher: opts.watcher.clone(),
        ..EnvOptions::default()
    };
    let result = project.up_reporting(engine, &env_opts, &progress).await;
    let elapsed = began.elapsed();
    let mut record = EnvRun { variant: variant.into(), run, slot, env: env_id.lock().unwrap_or_else(|e| e.into_inner()).clone(), ..EnvRun::default() };
    let ready = ready.into_inner().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(env) => {
            record.up_s = Some(elapsed.as_secs_f64());
            if let Some(plan) = env.plan() {
                for (name, s) in &plan.services {
                    record.services.insert(name.clone(), ServiceRun { image: s.image.clone(), ready_s: ready.get(name).copied(), memory_bytes: None });
                }
            }
            events(Event::Up { variant: variant.into(), run, slot, env: env.id().to_string(), elapsed });
            (record, Some(env))
        }
        Err(e) => {
            record.conflict = is_conflict(&e);
            record.error = Some(e.to_string());
            events(Event::Failed { variant: variant.into(), run, slot, error: e.to_string() });
            (record, None)
        }
    }
}

/// Memory of each service (and the environment's total) and the size of each image not sized yet.
async fn measure<E: Reconnect + Clone>(engine: &E, env: &Environment<E>, record: &mut EnvRun, sizes: &mut BTreeMap<String, Option<u64>>) -> Result<(), Error> {
    let containers = env.containers();
    let mut total: Option<u64> = None;
    for (service, figures) in record.services.iter_mut() {
        if let Some(id) = containers.get(service) {
            figures.memory_bytes = match engine.container_memory(id).await {
                Ok(m) => m,
                // It stopped meanwhile (a one-shot service): nothing to count.
                Err(EngineError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            if let Some(m) = figures.memory_bytes {
                total = Some(total.unwrap_or(0) + m);
            }
        }
        if let Some(image) = &figures.image
            && !sizes.contains_key(image)
        {
            sizes.insert(image.clone(), engine.image_size(image).await?);
        }
    }
    record.memory_bytes = total;
    Ok(())
}

/// Whatever of environment `env` is still on the engine.
async fn leftovers<E: Engine>(engine: &E, project: &str, env: &str) -> Result<Vec<String>, Error> {
    let filter = labels::env_filter(Some(project), env);
    let (containers, networks, volumes) =
        tokio::try_join!(engine.containers_labelled(&filter), engine.networks_labelled(&filter), engine.volumes_labelled(&filter))?;
    let mut out: Vec<String> = containers.into_iter().map(|c| format!("container {}", c.name)).collect();
    out.extend(networks.into_iter().map(|n| format!("network {}", n.name)));
    out.extend(volumes.into_iter().map(|(v, _)| format!("volume {v}")));
    Ok(out)
}

/// Whether `up` failed because another environment (or something else on the host) held what it needed: a host port,
/// a name, a subnet.
fn is_conflict(e: &Error) -> bool {
    let engine_conflict = |e: &EngineError| matches!(e, EngineError::PortTaken { .. } | EngineError::Conflict(_));
    match e {
        Error::Engine(e) | Error::Lifecycle(LifecycleError::Engine(e)) => engine_conflict(e),
        Error::Lifecycle(LifecycleError::InTheWay { .. }) | Error::EnvironmentExists { .. } => true,
        Error::InvalidPlan { diagnostics } => diagnostics.iter().any(|d| d.code.ends_with("-taken") || d.code.ends_with("-overlap")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fake::FakeEngine;

    fn project(dir: &std::path::Path, web_ports: &str) -> Project {
        std::fs::write(
            dir.join("compose.yaml"),
            format!("name: shop\nservices:\n  web:\n    image: img\n    ports: [{web_ports}]\n  db:\n    image: db:15\n    deploy:\n      resources:\n        limits:\n          memory: 256M\n"),
        )
        .unwrap();
        let opts =
            ProjectOptions { dir: Some(dir.to_path_buf()), state_dir: Some(dir.join("state")), environment: Some(Default::default()), ..Default::default() };
        Project::open(&opts).unwrap()
    }

    /// Keeps the bench's milestones (not its steps) as `up 1.2`, `measured 1`…
    fn record(log: &Mutex<Vec<String>>, e: Event) {
        let line = match e {
            Event::Up { run, slot, .. } => format!("up {run}.{slot}"),
            Event::Down { run, slot, .. } => format!("down {run}.{slot}"),
            Event::Failed { run, slot, .. } => format!("failed {run}.{slot}"),
            Event::Measured { run, .. } => format!("measured {run}"),
            Event::Step { .. } => return,
        };
        log.lock().unwrap().push(line);
    }

    #[tokio::test]
    async fn rounds_of_parallel_environments_are_measured_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path(), "\"80\"");
        let engine = FakeEngine::new().with_images(&["img", "db:15"]);
        let tracker = Tracker::default();
        let log = Mutex::new(vec![]);
        let targets = Targets { memory: Some(1 << 30), image_size: Some(100 << 20), ..Targets::default() };
        let opts = BenchOptions { parallel: 2, runs: 2, ..BenchOptions::default() };
        let r = run(&engine, &p, &[], &targets, &opts, &tracker, &|e| record(&log, e)).await.unwrap();
        assert!(r.pass, "{:?}", r.checks);
        assert_eq!(r.environments.len(), 4);
        for e in &r.environments {
            assert!(e.error.is_none() && e.up_s.is_some() && e.down_s.is_some() && e.leftovers.is_empty(), "{e:?}");
            // The fake: a quarter of db's 256M limit, 16 MiB for web.
            assert_eq!(e.memory_bytes, Some((64 << 20) + (16 << 20)), "{e:?}");
            assert!(e.services.values().all(|s| s.ready_s.is_some_and(|t| t <= e.up_s.unwrap())), "{e:?}");
        }
        let ids: BTreeSet<&Option<String>> = r.environments.iter().map(|e| &e.env).collect();
        assert_eq!(ids.len(), 4, "each environment its own");
        assert_eq!(r.images.iter().map(|i| (i.image.as_str(), i.size_bytes)).collect::<Vec<_>>(), [("db:15", Some(50 << 20)), ("img", Some(30 << 20))]);
        assert_eq!(r.services.iter().find(|s| s.service == "db").unwrap().ready_s.unwrap().n, 4);
        let log = log.into_inner().unwrap();
        // Round 2 starts after round 1 is measured and removed.
        let pos = |s: &str| log.iter().position(|l| l == s).unwrap_or_else(|| panic!("{s} in {log:?}"));
        assert!(pos("measured 1") < pos("down 1.1") && pos("down 1.2") < pos("up 2.1"), "{log:?}");
        assert!(engine.container_names().is_empty() && engine.network_names().is_empty(), "nothing left");
        assert!(tracker.envs().is_empty());
    }

    #[tokio::test]
    async fn a_fixed_host_port_collides_counts_as_a_conflict_and_fails_the_bench() {
        let dir = tempfile::tempdir().unwrap();
        let p = project(dir.path(), "\"18080:80\"");
        let engine = FakeEngine::new().with_images(&["img", "db:15"]);
        let tracker = Tracker::default();
        let opts = BenchOptions { parallel: 2, ..BenchOptions::default() };
        let r = run(&engine, &p, &[], &Targets::default(), &opts, &tracker, &|_| {}).await.unwrap();
        assert!(!r.pass);
        assert_eq!((r.totals.conflicts, r.totals.failed, r.totals.leftovers), (1, 1, 0), "{:?}", r.environments);
        let conflict = r.environments.iter().find(|e| e.conflict).unwrap();
        assert!(conflict.error.as_deref().unwrap().contains("18080"), "{conflict:?}");
        assert!(engine.container_names().is_empty());
        let err = run(&engine, &p, &[], &Targets::default(), &BenchOptions { parallel: 0, ..opts }, &tracker, &|_| {}).await.unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
    }
}
