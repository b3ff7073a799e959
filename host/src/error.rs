//! The library's error type and the exit code each kind maps to at the CLI edge.

use crate::engine::EngineError;
use crate::plan::Diagnostic;
use crate::plugins::PluginError;
use crate::resolve::ResolveError;

/// Everything that can go wrong in the library; [`Error::exit_code`] maps each to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A compose file, `.env` file or include could not be read or is invalid.
    #[error(transparent)]
    Compose(#[from] orch_compose::ComposeError),
    /// Boxed: a plugin's crash report is the largest error, and every `Result` would carry its size.
    #[error(transparent)]
    Plugin(Box<PluginError>),
    /// Subnets or host ports could not be allocated.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The engine failed, refused or did not answer.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The plan fails validation; every error diagnostic is listed.
    #[error("the plan is invalid:\n{}", diagnostics.iter().map(|d| format!("  - {}{} [{}, from {}]", d.path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default(), d.message, d.code, d.source)).collect::<Vec<_>>().join("\n"))]
    InvalidPlan {
        /// What validation found, errors and warnings.
        diagnostics: Vec<Diagnostic>,
    },
    /// Bringing an environment up (or down) failed: a service, a build, a resource in the way.
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    /// The command line (or the options a front end passed) is wrong: exit 2, and only for that.
    #[error("{0}")]
    Usage(String),
    /// The environment or service named does not exist (or does not publish what was asked).
    #[error("{0}")]
    NotFound(String),
    /// `up --env NAME` names an environment that exists.
    #[error("environment {env} of project {project} already exists; use it, or remove it first with `orch down --env {env} --volumes`")]
    EnvironmentExists {
        /// The project.
        project: String,
        /// The environment's id.
        env: String,
    },
    /// Reading or starting something on this machine failed (a watcher process, the working directory).
    #[error("{what}: {source}")]
    Io {
        /// What orch was doing, naming the file or program.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// `orch doctor` found problems; they were printed.
    #[error("doctor found {0} problem(s) (see above)")]
    Unhealthy(usize),
    /// An input file other than compose, env and orch.toml is malformed (plugin test settings).
    #[error("{what}: {message}")]
    InvalidInput {
        /// The file or value at fault.
        what: String,
        /// What is wrong with it and what to do.
        message: String,
    },
    /// A bug in orch.
    #[error("internal error: {0}; please report it")]
    Internal(String),
    /// `orch.toml` is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The state directory is unusable, or a lock was not released in time.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Admission refused or failed: no room (with `no_wait_capacity`), or a plan that never fits.
    #[error(transparent)]
    Admission(#[from] crate::admission::AdmissionError),
    /// A resource orch would create exists and is not orch's (a network of the same name).
    #[error("{0}")]
    Conflict(String),
    /// A resource is in use (containers attached to a network to remove).
    #[error("{0}")]
    InUse(String),
    /// `orch bench` missed a target it was given; the report was printed.
    #[error("{0}")]
    TargetMissed(String),
    /// Ctrl-C or SIGTERM; what the run created was removed.
    #[error("interrupted; what this run created was removed")]
    Interrupted,
    /// A command run by orch (`exec`, later `run`) failed with this status; orch exits with it.
    #[error("the command exited with status {0}")]
    CommandFailed(u8),
    /// A warm pool's warm-up command failed on a member (which was removed).
    #[error("warm-up command `{command}` failed on pool member {env}: {why}; fix the command or orch.toml's [pool] warm")]
    WarmUp {
        /// The command as orch.toml has it.
        command: String,
        /// The member it ran against.
        env: String,
        /// Its status and the end of its error output, or the timeout.
        why: String,
    },
    /// `orch plugin test`: the plan differs from the expectation.
    #[error("{0}")]
    TestFailed(String),
}

impl From<PluginError> for Error {
    fn from(e: PluginError) -> Self {
        Error::Plugin(Box::new(e))
    }
}

/// Documented exit codes (README.md, "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A file or process could not be read, written or started; or a bug.
    pub const INTERNAL: u8 = 1;
    /// The command line (or a front end's options) is wrong.
    pub const USAGE: u8 = 2;
    /// A compose file, env file, orch.toml, orch.lock, plugin settings or the plan is invalid.
    pub const INVALID_INPUT: u8 = 3;
    /// A plugin failed, or could not be fetched, built or verified.
    pub const PLUGIN: u8 = 4;
    /// The engine could not be reached, failed or did not answer in time.
    pub const ENGINE: u8 = 5;
    /// A service failed to come up, or a resource is in the way.
    pub const SERVICE: u8 = 6;
    /// An environment or allocation lock was not released in time.
    pub const BUSY: u8 = 7;
    /// `orch plugin test`: the plugin's plan differs from the expected one; `orch bench`: a target was missed.
    pub const TEST_FAILED: u8 = 8;
    /// The environment or service named does not exist, or (for `up --env NAME`) already exists.
    pub const NO_SUCH_ENV: u8 = 9;
    /// Ctrl-C or SIGTERM (the shell convention for SIGINT).
    pub const INTERRUPTED: u8 = 130;
}

impl Error {
    /// Details for `ORCH_LOG=debug` only (a plugin crash's wasm backtrace).
    pub fn details(&self) -> Option<&str> {
        match self {
            Error::Plugin(p) => p.details(),
            _ => None,
        }
    }

    /// The documented exit code of this error (README.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Compose(_) | Error::Resolve(_) | Error::InvalidPlan { .. } | Error::Config(_) | Error::InvalidInput { .. } => exit::INVALID_INPUT,
            Error::Plugin(p) => match p.as_ref() {
                PluginError::Settings { .. }
                | PluginError::SettingSyntax { .. }
                | PluginError::Unknown { .. }
                | PluginError::Read { .. }
                | PluginError::Lock { .. } => exit::INVALID_INPUT,
                _ => exit::PLUGIN,
            },
            Error::Engine(_) => exit::ENGINE,
            // A subnet in the way is a resource in the way, not an engine failure.
            Error::Lifecycle(crate::lifecycle::LifecycleError::Engine(crate::engine::EngineError::SubnetTaken { .. })) => exit::SERVICE,
            Error::Lifecycle(crate::lifecycle::LifecycleError::Engine(_)) => exit::ENGINE,
            Error::Lifecycle(_) | Error::WarmUp { .. } => exit::SERVICE,
            Error::Usage(_) => exit::USAGE,
            Error::NotFound(_) | Error::EnvironmentExists { .. } => exit::NO_SUCH_ENV,
            Error::Io { .. } | Error::Internal(_) => exit::INTERNAL,
            Error::Unhealthy(_) => exit::ENGINE,
            Error::CommandFailed(code) => *code,
            Error::TestFailed(_) | Error::TargetMissed(_) => exit::TEST_FAILED,
            Error::Conflict(_) => exit::INVALID_INPUT,
            Error::InUse(_) => exit::BUSY,
            Error::Interrupted => exit::INTERRUPTED,
            Error::State(crate::state::StateError::Io { .. } | crate::state::StateError::Unsafe { .. } | crate::state::StateError::NoHome) => {
                exit::INVALID_INPUT
            }
            Error::Admission(crate::admission::AdmissionError::State(
                crate::state::StateError::Io { .. } | crate::state::StateError::Unsafe { .. } | crate::state::StateError::NoHome,
            )) => exit::INVALID_INPUT,
            Error::State(_) => exit::BUSY,
            Error::Admission(crate::admission::AdmissionError::NeverFits { .. }) => exit::INVALID_INPUT,
            Error::Admission(crate::admission::AdmissionError::Engine(_)) => exit::ENGINE,
            Error::Admission(crate::admission::AdmissionError::Io(..)) => exit::INVALID_INPUT,
            Error::Admission(_) => exit::BUSY,
        }
    }
}
