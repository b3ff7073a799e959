//! `orch`: parse, dispatch, map errors to documented exit codes (see README.md, "Exit codes").

mod cli;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::run())
}
