//! `up` (an environment that stays until `down` or its lease) and `run` (an environment for the length of one
//! command). The library brings it up; this module shows progress and reacts to Ctrl-C and SIGTERM: the first removes
//! what the run created, a second leaves it in place.

use std::sync::Mutex;
use std::time::Duration;

use orch::Error;
use orch::engine::AnyEngine;
use orch::lifecycle::{self, Lifetime, Progress};
use orch::owner::Owner;
use orch::session::{Environment, Project};

use super::args::{Output, PlanInput, UpFlags};
use super::progress::ProgressView;
use super::{Dirs, engine, open, tokio};

/// Ctrl-C or SIGTERM, whichever comes first; says which.
pub async fn interrupted() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

/// [`interrupted`], or the death of the process the environment is for: nobody is left to use what `up` makes.
async fn interrupted_or_owner_gone(owner: Option<&Owner>) -> &'static str {
    let gone = async {
        match owner {
            Some(o) => {
                while o.is_alive() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        s = interrupted() => s,
        _ = gone => "its owner process ended",
    }
}

/// Brings the environment up with live progress; on a signal, removes what was created (or, on a second one, keeps
/// it) and fails with [`Error::Interrupted`].
fn bring_up(
    rt: &tokio::runtime::Runtime,
    engine: &AnyEngine,
    project: &Project,
    flags: &UpFlags,
    input: &PlanInput,
    lifetime: Lifetime,
    owner: Option<Owner>,
) -> Result<Environment<AnyEngine>, Error> {
    let view = ProgressView::new();
    // The environment's id, once planned: what to remove if a signal comes.
    let planned: Mutex<Option<String>> = Mutex::new(None);
    let report = |p: Progress| {
        if let Progress::Planned { env, .. } = &p {
            *planned.lock().unwrap_or_else(|e| e.into_inner()) = Some(env.clone());
        }
        view.report(p)
    };
    let opts = flags.options(input.env.clone(), lifetime, owner.clone());
    rt.block_on(async {
        tokio::select! {
            r = project.up_reporting(engine, &opts, &report) => r,
            signal = interrupted_or_owner_gone(owner.as_ref()) => {
                let env = planned.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let Some(env) = env else {
                    eprintln!("{signal} before anything was created");
                    return Err(Error::Interrupted);
                };
                eprintln!("{signal}: removing environment {env} (press Ctrl-C again to leave it in place)");
                let filter = orch::labels::env_filter(Some(project.name()), &env);
                tokio::select! {
                    r = lifecycle::down(engine, &filter, true) => {
                        if let Ok(r) = r {
                            eprintln!("removed {} containers, {} networks, {} volumes", r.containers, r.networks, r.volumes);
                        }
                    }
                    _ = tokio::signal::ctrl_c() => {
                        eprintln!("left in place; remove it with `orch down --env {env} --volumes`");
                        // The watcher would remove it once this process exits: this is a deliberate keep.
                        let _ = lifecycle::marker::keep(engine, project.name(), &env, None).await;
                    }
                }
                project.release_reservation(&env).await;
                Err(Error::Interrupted)
            }
        }
    })
}

/// With `--from-pool`: a ready member of the project's warm pool, claimed for `owner` with `lifetime`; `None` (and a
/// note saying so) when the pool has none of the current plan within `--pool-wait`.
fn from_pool(
    rt: &tokio::runtime::Runtime,
    engine: &AnyEngine,
    project: &Project,
    flags: &UpFlags,
    input: &PlanInput,
    lifetime: Lifetime,
    owner: Option<Owner>,
) -> Result<Option<Environment<AnyEngine>>, Error> {
    if !flags.from_pool {
        return Ok(None);
    }
    if input.env.is_some() {
        return Err(Error::Usage("--from-pool hands out pool members under their own ids; leave out --env".into()));
    }
    let started = std::time::Instant::now();
    let opts = orch::pool::ClaimOptions { owner, lifetime, watcher: std::env::current_exe().ok(), wait: flags.pool_wait.unwrap_or_default() };
    let claimed = rt.block_on(async {
        let key = orch::pool::key(project, engine).await?;
        orch::pool::claim(project, engine, &key, &opts).await
    })?;
    match &claimed {
        Some(env) => eprintln!("claimed environment {} from the warm pool in {} ms", env.id(), started.elapsed().as_millis()),
        None => eprintln!("the warm pool of {} has no ready environment of this plan: bringing a fresh one up", project.name()),
    }
    Ok(claimed)
}

pub fn up(dirs: &Dirs, input: &PlanInput, flags: &UpFlags, ttl: Option<Duration>, owner_pid: Option<u32>, format: Output) -> Result<(), Error> {
    let owner = match owner_pid {
        Some(pid) => Some(Owner::of_pid(pid).ok_or_else(|| Error::Usage(format!("--owner-pid {pid}: no such process")))?),
        None => None,
    };
    let rt = tokio();
    let project = open(input, dirs)?;
    let engine = engine(&rt, Some(&project))?;
    let lifetime = match owner {
        Some(_) => Lifetime::Process,
        None => Lifetime::Kept { expires: ttl.map(|t| lifecycle::marker::now() + t.as_secs()) },
    };
    let started = std::time::Instant::now();
    let env = match from_pool(&rt, &engine, &project, flags, input, lifetime, owner.clone())? {
        Some(env) => env,
        None => bring_up(&rt, &engine, &project, flags, input, lifetime, owner)?,
    };
    let id = env.id().to_string();
    let until = match owner_pid {
        Some(pid) => format!("it goes when process {pid} ends, or with `orch down --env {id} --volumes`"),
        None => format!("remove it with `orch down --env {id} --volumes`"),
    };
    eprintln!("environment {id} is up in {:.1}s; {until}", started.elapsed().as_secs_f64());
    match format {
        Output::Text => println!("{id}"),
        Output::Json => println!("{}", serde_json::to_string_pretty(&rt.block_on(env.summary())?).expect("serialises")),
    }
    // Kept by the lifetime its marker records: this handle must not remove it.
    env.detach();
    Ok(())
}

pub fn run(dirs: &Dirs, input: &PlanInput, flags: &UpFlags, keep: bool, command: &[String]) -> Result<(), Error> {
    let rt = tokio();
    let project = open(input, dirs)?;
    let engine = engine(&rt, Some(&project))?;
    let env = match from_pool(&rt, &engine, &project, flags, input, Lifetime::Process, None)? {
        Some(env) => env,
        None => bring_up(&rt, &engine, &project, flags, input, Lifetime::Process, None)?,
    };
    let vars = rt.block_on(env.connection_env())?;
    let (id, project_name) = (env.id().to_string(), env.project().to_string());
    let outcome = rt.block_on(async {
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .envs(&vars)
            .env("ORCH_ENV", &id)
            .env("ORCH_PROJECT", &project_name)
            .spawn()
            .map_err(|e| Error::Io { what: format!("running {:?}", command[0]), source: e })?;
        tokio::select! {
            status = child.wait() => Ok(status.map(|s| s.code().unwrap_or(128)).unwrap_or(127)),
            signal = interrupted() => {
                // The terminal's Ctrl-C reaches the command too; SIGTERM is forwarded by killing it.
                let _ = child.start_kill();
                let _ = child.wait().await;
                eprintln!("{signal}: tearing down environment {id}");
                Err(Error::Interrupted)
            }
        }
    });
    if keep {
        rt.block_on(env.keep(None))?;
        eprintln!("environment {id} kept; remove it with `orch down --env {id} --volumes`");
    } else {
        let removed = rt.block_on(env.down())?;
        eprintln!("environment {id} removed: {} containers, {} networks, {} volumes", removed.containers, removed.networks, removed.volumes);
    }
    match outcome? {
        0 => Ok(()),
        code => Err(Error::CommandFailed(code.clamp(1, 255) as u8)),
    }
}
