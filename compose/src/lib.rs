//! Compose import: reads real compose files unchanged — `.env` / `--env-file`, `${VAR}` interpolation, YAML anchors and
//! merge keys, `x-*` extensions, several `-f` files, profiles — into the typed [`model::Project`].
//!
//! This crate knows nothing of Docker or plugins. Unknown fields become [`Warning`]s; invalid input becomes a
//! [`ComposeError`] naming the file, the YAML path (and line for syntax errors) and what to do.

pub mod interpolate;
pub mod model;
mod parse;
pub use parse::{normalize_name, parse_bytes, parse_duration_ms};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use model::*;
use serde_yaml_ng::Value;

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Compose files in order; later files override earlier ones.
    pub files: Vec<PathBuf>,
    /// `--env-file`s; when empty, `.env` in the project directory is read if present.
    pub env_files: Vec<PathBuf>,
    /// Active profiles (`--profile`, plus `COMPOSE_PROFILES` from the environment).
    pub profiles: Vec<String>,
    /// The caller's environment; it takes precedence over env files, as in compose.
    pub environment: BTreeMap<String, String>,
    /// Overrides the top-level `name:` and the directory name.
    pub project_name: Option<String>,
}

/// Something the user should know that does not stop the import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub file: PathBuf,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: invalid YAML: {message}", file.display())]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("{}: at `{path}`: {message}", file.display())]
    Invalid { file: PathBuf, path: String, message: String },
    #[error("{}:{line}: {message}", file.display())]
    EnvFile { file: PathBuf, line: usize, message: String },
    #[error("no compose file given; pass -f FILE (e.g. -f compose.yaml)")]
    NoFiles,
}

/// The imported project and the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub warnings: Vec<Warning>,
    /// The variables interpolation saw (env files overlaid by the caller's environment).
    pub variables: BTreeMap<String, String>,
}

/// Loads and merges the compose files in `opts`.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
    let first = opts.files.first().ok_or(ComposeError::NoFiles)?;
    let working_dir = absolute(first.parent().unwrap_or(Path::new(".")));
    let variables = variables(opts, &working_dir)?;

    let mut merged: Option<(PathBuf, Value)> = None;
    for file in &opts.files {
        let text = std::fs::read_to_string(file).map_err(|source| ComposeError::Read { path: file.clone(), source })?;
        let mut value = parse_yaml(file, &text)?;
        value.apply_merge().map_err(|e| invalid(file, "", format!("invalid YAML merge key (<<): {e}")))?;
        interpolate_tree(file, &mut value, "", &variables)?;
        merged = Some(match merged {
            None => (file.clone(), value),
            Some((f, mut base)) => {
                merge(&mut base, value, "");
                (f, base)
            }
        });
    }
    let (file, value) = merged.expect("at least one file");
    let mut warnings = vec![];
    let mut profiles = opts.profiles.clone();
    if let Some(p) = variables.get("COMPOSE_PROFILES") {
        profiles.extend(p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
    }
    let project = parse::project(&file, &value, &working_dir, opts.project_name.as_deref(), &profiles, &mut warnings)?;
    Ok(Loaded { project, warnings, variables })
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn variables(opts: &LoadOptions, working_dir: &Path) -> Result<BTreeMap<String, String>, ComposeError> {
    let files: Vec<PathBuf> = if opts.env_files.is_empty() {
        let dot_env = working_dir.join(".env");
        if dot_env.is_file() { vec![dot_env] } else { vec![] }
    } else {
        opts.env_files.clone()
    };
    let mut vars = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| ComposeError::Read { path: f.clone(), source })?;
        let mut scope = vars.clone();
        scope.extend(opts.environment.clone());
        let parsed = interpolate::parse_env_file(&text, &scope)
            .map_err(|(line, message)| ComposeError::EnvFile { file: f.clone(), line, message })?;
        vars.extend(parsed);
    }
    vars.extend(opts.environment.clone());
    Ok(vars)
}

fn parse_yaml(file: &Path, text: &str) -> Result<Value, ComposeError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        ComposeError::Syntax { file: file.to_path_buf(), line, column, message: e.to_string() }
    })?;
    match value {
        Value::Mapping(_) => Ok(value),
        Value::Null => Err(invalid(file, "", "the file is empty; a compose file needs at least `services:`")),
        _ => Err(invalid(file, "", "a compose file must be a mapping with a `services:` key")),
    }
}

pub(crate) fn invalid(file: &Path, path: &str, message: impl Into<String>) -> ComposeError {
    ComposeError::Invalid { file: file.to_path_buf(), path: if path.is_empty() { "(top level)".into() } else { path.into() }, message: message.into() }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Interpolates every string value (not keys) in place; `x-*` extension blocks are left as written.
fn interpolate_tree(file: &Path, v: &mut Value, path: &str, vars: &BTreeMap<String, String>) -> Result<(), ComposeError> {
    match v {
        Value::String(s) => {
            *s = interpolate::interpolate(s, vars).map_err(|e| invalid(file, path, e.to_string()))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(file, item, &format!("{path}[{i}]"), vars)?;
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let key = k.as_str().map(String::from).unwrap_or_else(|| format!("{k:?}"));
                if path.is_empty() && key.starts_with("x-") {
                    continue;
                }
                interpolate_tree(file, item, &join(path, &key), vars)?;
            }
        }
        Value::Tagged(t) => interpolate_tree(file, &mut t.value, path, vars)?,
        _ => {}
    }
    Ok(())
}

/// Keys whose sequences are concatenated (without duplicates) when files are merged; other sequences are replaced.
const APPENDED: [&str; 10] =
    ["ports", "expose", "dns", "dns_search", "tmpfs", "env_file", "extra_hosts", "cap_add", "cap_drop", "secrets"];

/// Overlays `over` on `base` as `docker compose -f a -f b` does for the common cases: mappings merge, some lists
/// append, everything else is replaced.
fn merge(base: &mut Value, over: Value, key: &str) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let name = k.as_str().unwrap_or_default().to_string();
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v, &name),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) if APPENDED.contains(&key) => {
            for v in o {
                if !b.contains(&v) {
                    b.push(v);
                }
            }
        }
        (b, o) => *b = o,
    }
}
