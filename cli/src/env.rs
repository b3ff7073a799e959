//! Commands on running environments: `down`, `ps`, `health`, `port`, `env`, `logs`, `restart`, `exec`, `keep`. Each attaches to
//! the environment through the library and renders what it answers.

use std::time::{Duration, Instant};

use orch::Error;
use orch::engine::AnyEngine;
use orch::session::{Environment, ProjectOptions, Selector, environments_of_this_user, project_name, project_of_env, status_filter};

use super::args::{EnvFormat, Format, Output, Select};
use super::{engine, tokio};

/// Without --env or --project-name, the project the current directory defines (its orch.toml or compose file), so
/// that plain `orch down` or `orch ps` in a project's folder act on that project's environments only.
fn selector(select: &Select) -> Selector {
    let project = select.project.clone().or_else(|| if select.env.is_none() { project_name(&ProjectOptions::default()).ok() } else { None });
    Selector { env: select.env.clone(), project }
}

/// [`selector`], and for `--env` without `-p` the project it belongs to (see [`project_of_env`]).
fn scoped_selector(rt: &tokio::runtime::Runtime, engine: &AnyEngine, select: &Select) -> Result<Selector, Error> {
    let mut s = selector(select);
    if let (Some(env), None) = (&s.env, &s.project) {
        s.project = rt.block_on(project_of_env(engine, env, project_name(&ProjectOptions::default()).ok()))?;
    }
    Ok(s)
}

fn attach(rt: &tokio::runtime::Runtime, select: &Select) -> Result<Environment<AnyEngine>, Error> {
    let engine = engine(rt, None)?;
    rt.block_on(Environment::attach(&engine, &selector(select)))
}

pub fn down(select: &Select, all_mine: bool, volumes: bool) -> Result<(), Error> {
    let rt = tokio();
    let engine = engine(&rt, None)?;
    // Orphans left by killed runs go too, without waiting for `orch gc`.
    if let Ok(reaped) = rt.block_on(orch::reaper::gc(&engine, &orch::reaper::GcOptions { mine_only: true, ..Default::default() })) {
        for r in reaped.reaped {
            eprintln!("reaped orphaned environment {} ({}): {}", r.env, r.project, r.reason);
        }
        for (r, e) in reaped.failed {
            eprintln!("warning: could not reap orphaned environment {} ({}): {e}", r.env, r.project);
        }
    }
    let selectors = if all_mine { rt.block_on(environments_of_this_user(&engine))? } else { vec![scoped_selector(&rt, &engine, select)?] };
    // With --all-mine, one environment the engine will not remove does not keep the others: the first failure is
    // the command's error once every one was tried.
    let mut first_error = None;
    for s in selectors {
        let started = Instant::now();
        let down_one = || -> Result<(String, String, orch::lifecycle::Removed), Error> {
            // A named environment is removed by its labels: removing one that is gone already is success.
            Ok(match &s.env {
                Some(env) => (s.project.clone().unwrap_or_default(), env.clone(), rt.block_on(orch::lifecycle::down(&engine, &status_filter(&s), volumes))?),
                None => {
                    let env = rt.block_on(Environment::attach(&engine, &s))?;
                    let (project, id) = (env.project().to_string(), env.id().to_string());
                    (project, id, if volumes { rt.block_on(env.down())? } else { rt.block_on(env.down_keeping_volumes())? })
                }
            })
        };
        let (project, id, removed) = match down_one() {
            Ok(done) => done,
            Err(e) if all_mine => {
                eprintln!("could not remove {}: {e}", s.env.as_deref().unwrap_or("an environment"));
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let project = if project.is_empty() { String::new() } else { format!(" ({project})") };
        eprintln!(
            "{id}{project}: removed {} containers, {} networks, {} volumes in {:.2}s",
            removed.containers,
            removed.networks,
            removed.volumes,
            started.elapsed().as_secs_f64()
        );
    }
    first_error.map_or(Ok(()), Err)
}

/// `ps` shows the engine's view; `health` also runs a starting container's healthcheck to report what holds now.
pub fn status(select: &Select, format: Format, probe: bool) -> Result<(), Error> {
    let rt = tokio();
    let engine = engine(&rt, None)?;
    let list = rt.block_on(orch::session::services(&engine, &selector(select), probe))?;
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&list).expect("serialises"));
    } else {
        print!("{}", crate::render::status(&list));
    }
    Ok(())
}

pub fn port(select: &Select, service: &str, port: u16, format: Output) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    let addr = rt.block_on(env.port(service, port))?;
    match format {
        Output::Text => println!("{addr}"),
        Output::Json => println!("{}", serde_json::json!({ "host": addr.ip().to_string(), "port": addr.port() })),
    }
    Ok(())
}

/// Replaces a process lifetime with a kept one (or a lease).
pub fn keep(select: &Select, ttl: Option<Duration>) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    let id = env.id().to_string();
    rt.block_on(env.keep(ttl.map(|t| orch::lifecycle::marker::now() + t.as_secs())))?;
    eprintln!("environment {id} kept; remove it with `orch down --env {id} --volumes`");
    Ok(())
}

pub fn connection_env(select: &Select, format: EnvFormat) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    let vars = rt.block_on(env.connection_env())?;
    match format {
        EnvFormat::Json => println!("{}", serde_json::to_string_pretty(&vars).expect("serialises")),
        EnvFormat::Dotenv => vars.iter().for_each(|(k, v)| println!("{k}={v}")),
    }
    Ok(())
}

pub fn logs(select: &Select, service: &str, tail: Option<usize>, follow: bool) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    let sink = |is_err: bool, line: &str| {
        if is_err { eprintln!("{line}") } else { println!("{line}") }
    };
    rt.block_on(env.stream_logs(service, follow, tail, &sink))
}

pub fn restart(select: &Select, service: &str, timeout: Duration) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    let took = rt.block_on(env.restart(service, timeout))?;
    eprintln!("{service}: restarted and ready after {:.1}s", took.as_secs_f64());
    Ok(())
}

pub fn exec(select: &Select, service: &str, command: &[String], format: Output) -> Result<(), Error> {
    let rt = tokio();
    let env = attach(&rt, select)?;
    if format == Output::Json {
        let argv: Vec<&str> = command.iter().map(String::as_str).collect();
        let (code, output) = rt.block_on(env.exec(service, &argv))?;
        println!("{}", serde_json::json!({ "exit_code": code, "output": output }));
        return Ok(());
    }
    use std::io::IsTerminal;
    // A terminal on both ends gets a pseudo-terminal, as `docker exec -it` would; pipes stay pipes.
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = rt.block_on(env.exec_attached(service, command, tty))?;
    match code {
        0 => Ok(()),
        code => Err(Error::CommandFailed(code.clamp(1, 255) as u8)),
    }
}
