//! `orch network`: a project's long-lived tier networks ([`orch::tiers`]), as a table or `orch.networks/v1` JSON.

use orch::Error;
use orch::session::project_name;
use orch::tiers::{self, Report};

use super::args::{NetworkCommand, Output, PlanInput};
use super::{Dirs, engine, open, tokio};

fn print(report: &Report, format: Output) {
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(report).expect("a report serialises")),
        Output::Text => print!("{}", crate::render::tiers(report)),
    }
}

/// The project name from the compose files alone (no plugins): enough for commands that do not plan.
fn name_only(input: &PlanInput, dirs: &Dirs) -> Result<String, Error> {
    project_name(&input.options(&dirs.cache_dir, &dirs.state_dir))
}

pub fn run(dirs: &Dirs, command: NetworkCommand) -> Result<(), Error> {
    let rt = tokio();
    match command {
        NetworkCommand::Create { input, format } => {
            let project = open(&input, dirs)?;
            let engine = engine(&rt, Some(&project))?;
            let report = rt.block_on(tiers::create(&engine, &project, std::time::Duration::from_secs(300)))?;
            print(&report, format);
        }
        NetworkCommand::Status { input, format } => {
            let project = open(&input, dirs)?;
            let engine = engine(&rt, Some(&project))?;
            print(&rt.block_on(tiers::status(&engine, &project))?, format);
        }
        NetworkCommand::Rm { input, tiers: names, force, format } => {
            let project = name_only(&input, dirs)?;
            let engine = engine(&rt, None)?;
            print(&rt.block_on(tiers::remove(&engine, &project, &names, force))?, format);
        }
        NetworkCommand::Connect { input, tier, container, aliases, format } => {
            let project = name_only(&input, dirs)?;
            let engine = engine(&rt, None)?;
            print(&rt.block_on(tiers::connect(&engine, &project, &tier, &container, &aliases))?, format);
        }
        NetworkCommand::Disconnect { input, tier, container, format } => {
            let project = name_only(&input, dirs)?;
            let engine = engine(&rt, None)?;
            print(&rt.block_on(tiers::disconnect(&engine, &project, &tier, &container))?, format);
        }
    }
    Ok(())
}
