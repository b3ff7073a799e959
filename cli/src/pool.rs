//! `orch pool`: start, look at and stop a project's warm-pool keeper ([`orch::pool`]). `start` runs the keeper as a
//! detached copy of itself (`--foreground`), whose output goes to `<state>/pools/<project>.log`.

use std::time::{Duration, Instant};

use orch::Error;
use orch::owner::Owner;
use orch::pool::{self, KeeperOptions, PoolStatus};
use orch::session::project_name;
use orch::state::StateDir;

use super::args::{Output, PlanInput, PoolCommand};
use super::{Dirs, engine, open, tokio};

pub fn run(dirs: &Dirs, command: PoolCommand) -> Result<(), Error> {
    match command {
        PoolCommand::Start { input, size, timeout, wait, foreground } => {
            if foreground {
                keep(dirs, &input, size, timeout)
            } else {
                start(dirs, &input, timeout, wait)
            }
        }
        PoolCommand::Status { input, format } => {
            let (state, name) = where_(dirs, &input)?;
            let s = pool::status(&state, &name).ok_or_else(|| no_keeper(&name))?;
            match format {
                Output::Json => println!("{}", serde_json::to_string_pretty(&s).expect("serialises")),
                Output::Text => print!("{}", render(&s)),
            }
            Ok(())
        }
        PoolCommand::Stop { input } => {
            let (state, name) = where_(dirs, &input)?;
            let s = pool::status(&state, &name).ok_or_else(|| no_keeper(&name))?;
            if !s.running {
                pool::forget(&state, &name);
                eprintln!("the pool keeper of {name} is not running any more; its members go with it (`orch gc` removes what is left)");
                return Ok(());
            }
            pool::stop(&s, Duration::from_secs(300))?;
            eprintln!("pool of {name} stopped: {} members removed, {} handed out stay with their claimers", s.ready + s.starting, s.claimed);
            Ok(())
        }
    }
}

fn where_(dirs: &Dirs, input: &PlanInput) -> Result<(StateDir, String), Error> {
    let state = StateDir::resolve(dirs.state_dir.clone())?;
    Ok((state, project_name(&input.options(&dirs.cache_dir, &dirs.state_dir))?))
}

fn no_keeper(name: &str) -> Error {
    Error::NotFound(format!("no pool keeper for project {name} in this state directory; start one with `orch pool start`"))
}

fn render(s: &PoolStatus) -> String {
    let pid = Owner::parse(&s.keeper).map(|o| o.pid).unwrap_or(0);
    let mut out = format!(
        "pool of {} (key {}): {} ready, {} starting, {} claimed of size {}; keeper pid {pid} {}; {} made, {} handed out\n",
        s.project,
        s.key,
        s.ready,
        s.starting,
        s.claimed,
        s.size,
        if s.running { "running" } else { "NOT running" },
        s.made,
        s.handed_out
    );
    for m in &s.members {
        out.push_str(&format!("  {:<24} {:?}\n", m.env, m.state));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!("last error: {e}\n"));
    }
    out
}

/// The keeper itself, until SIGTERM or Ctrl-C.
fn keep(dirs: &Dirs, input: &PlanInput, size: Option<usize>, timeout: Duration) -> Result<(), Error> {
    let rt = tokio();
    let project = open(input, dirs)?;
    let engine = engine(&rt, Some(&project))?;
    drop(project);
    let opts = KeeperOptions { size, timeout, watcher: std::env::current_exe().ok(), ..KeeperOptions::default() };
    rt.block_on(pool::keep(&input.options(&dirs.cache_dir, &dirs.state_dir), &engine, &opts, async {
        super::up::interrupted().await;
    }))
}

/// Starts the keeper detached (this command again, in the foreground, in a process group of its own) and waits until
/// it runs (and with `wait`, until the pool is full).
fn start(dirs: &Dirs, input: &PlanInput, timeout: Duration, wait: bool) -> Result<(), Error> {
    use std::os::unix::process::CommandExt;
    let (state, name) = where_(dirs, input)?;
    if let Some(s) = pool::status(&state, &name).filter(|s| s.running) {
        return Err(Error::InUse(format!(
            "a pool keeper for project {name} runs already (pid {}); `orch pool stop` stops it",
            Owner::parse(&s.keeper).map(|o| o.pid).unwrap_or(0)
        )));
    }
    // The project is checked here, so that a bad compose file or plugin fails this command with its own exit code.
    drop(open(input, dirs)?);
    state.ensure()?;
    let log_path = state.root.join("pools").join(format!("{name}.log"));
    std::fs::create_dir_all(log_path.parent().expect("has a parent")).map_err(|e| Error::Io { what: format!("creating {}", log_path.display()), source: e })?;
    let log = std::fs::File::create(&log_path).map_err(|e| Error::Io { what: format!("creating {}", log_path.display()), source: e })?;
    let exe = std::env::current_exe().map_err(|e| Error::Io { what: "finding this orch binary".into(), source: e })?;
    let mut child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Io { what: format!("starting the pool keeper {}", exe.display()), source: e })?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::Io { what: "waiting for the pool keeper".into(), source: e })? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(Error::Internal(format!("the pool keeper exited at once ({status}): {}", tail.join("\n"))));
        }
        let s = pool::status(&state, &name).filter(|s| Owner::parse(&s.keeper).is_some_and(|o| o.pid == child.id()));
        match s {
            Some(s) if !wait || (s.size > 0 && s.ready >= s.size) => {
                eprintln!(
                    "pool keeper of {name} runs (pid {}): {} ready of {}; `orch pool status` shows it, `orch pool stop` stops it",
                    child.id(),
                    s.ready,
                    s.size
                );
                return Ok(());
            }
            _ if started.elapsed() > timeout => {
                return Err(Error::InUse(format!("the pool of {name} was not full within {timeout:?}; `orch pool status` says why")));
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
