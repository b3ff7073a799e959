//! Housekeeping: `gc` (orphaned environments), `doctor` (what this machine needs), and the hidden watcher process.

use std::time::Duration;

use orch::Error;
use orch::owner::Owner;

use super::args::Format;
use super::{Dirs, engine, tokio};

pub fn gc(dirs: &Dirs, dry_run: bool, older_than: Option<Duration>, all: bool, project: Option<String>) -> Result<(), Error> {
    let rt = tokio();
    let engine = engine(&rt, None)?;
    let reaped = rt.block_on(orch::reaper::gc(
        &engine,
        &orch::reaper::GcOptions { dry_run, older_than, all, project, mine_only: false, patience: Duration::from_secs(30) },
    ))?;
    if !dry_run {
        // Reservations of dead owners are dropped when the allocation state is loaded; save it pruned.
        let state = orch::state::StateDir::resolve(dirs.state_dir.clone())?;
        state.allocations(Duration::from_secs(30))?.save()?;
    }
    if reaped.reaped.is_empty() && reaped.failed.is_empty() {
        eprintln!("no orphaned environments");
    }
    for r in reaped.reaped {
        match r.removed {
            None => println!("would remove {} ({}): {}", r.env, r.project, r.reason),
            Some(rm) => {
                println!("removed {} ({}): {} — {} containers, {} networks, {} volumes", r.env, r.project, r.reason, rm.containers, rm.networks, rm.volumes)
            }
        }
    }
    // Everything else was reaped; the first failure is the command's error (its exit code and message).
    let mut first = None;
    for (r, e) in reaped.failed {
        eprintln!("could not remove {} ({}): {e}", r.env, r.project);
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), |e| Err(Error::from(e)))
}

pub fn doctor(dirs: &Dirs, pools: Vec<ipnet::Ipv4Net>, format: Format) -> Result<(), Error> {
    let rt = tokio();
    let pools = if pools.is_empty() { vec![orch::resolve::DEFAULT_POOL.parse().expect("literal")] } else { pools };
    let state = orch::state::StateDir::resolve(dirs.state_dir.clone())?;
    let checks = rt.block_on(async { orch::doctor::run(orch::engine::DockerEngine::connect().await, &state, &pools).await });
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&checks).expect("serialises"));
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .flat_map(|c| {
                let mut rows = vec![vec![format!("{:?}", c.status).to_lowercase(), c.name.to_string(), c.detail.clone()]];
                rows.extend(c.hint.iter().map(|h| vec![String::new(), String::new(), format!("fix: {h}")]));
                rows
            })
            .collect();
        print!("{}", crate::render::table(&["STATUS", "CHECK", "DETAIL"], &rows));
    }
    match checks.iter().filter(|c| c.status == orch::doctor::Status::Fail).count() {
        0 => Ok(()),
        n => Err(Error::Unhealthy(n)),
    }
}

/// `orch __watch`: when the owner dies, removes its environments that were not kept. One watcher per owner: a second
/// one exits at once.
pub fn watch(dirs: &Dirs, owner: &str) -> Result<(), Error> {
    let owner = Owner::parse(owner).ok_or_else(|| Error::Usage(format!("invalid owner {owner:?}")))?;
    let state = orch::state::StateDir::resolve(dirs.state_dir.clone())?;
    let Some(_lock) = state.watcher_lock(&owner)? else {
        return Ok(());
    };
    let rt = tokio();
    let engine = engine(&rt, None)?;
    rt.block_on(orch::reaper::watch(&engine, &owner))?;
    Ok(())
}
