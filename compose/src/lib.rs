//! Compose import: reads real compose files unchanged — `.env` / `--env-file`, `${VAR}` interpolation, YAML anchors and
//! merge keys, `x-*` extensions, several `-f` files, profiles — into the typed [`model::Project`].
//!
//! This crate knows nothing of Docker or plugins. Unknown fields become [`Warning`]s; invalid input becomes a
//! [`ComposeError`] naming the file, the YAML path (and line for syntax errors) and what to do.

mod extends;
pub mod fields;
pub mod input;
pub mod interpolate;
mod merge;
pub mod model;
mod parse;
pub use parse::{normalize_name, normalize_path, parse_bytes, parse_duration_ms, parse_short_port};

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
    /// The directory every file the compose files name (includes, extends, env and label files, secrets, configs,
    /// build contexts and Dockerfiles) must stay inside; `None` is [`input::repository_root`] of the first file's
    /// directory. The `-f` files themselves are the caller's choice and are not checked.
    pub root: Option<PathBuf>,
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
    Input { path: PathBuf, source: input::InputError },
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

/// Loads and merges the compose files in `opts`: includes, extends, overrides, interpolation and profiles.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
    let first = opts.files.first().ok_or(ComposeError::NoFiles)?;
    let working_dir = absolute(first.parent().unwrap_or(Path::new(".")));
    let mut warnings = vec![];
    let files: Vec<PathBuf> = opts.files.iter().map(|f| absolute(f)).collect();
    let unit = Unit { files: &files, working_dir: &working_dir, env_files: &opts.env_files, name_override: opts.project_name.as_deref() };
    let root = opts.root.as_deref().map(absolute).unwrap_or_else(|| input::repository_root(&working_dir));
    let ctx = Ctx { environment: &opts.environment, root: &root, budget: input::Budget::default(), includes: Default::default(), files: Default::default() };
    let (project, services, variables, _) = load_unit(&unit, &ctx, &mut vec![], &mut warnings)?;
    let mut profiles = opts.profiles.clone();
    if let Some(p) = variables.get("COMPOSE_PROFILES") {
        profiles.extend(p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from));
    }
    let project = parse::finish(first, project, services, &profiles)?;
    Ok(Loaded { project, warnings, variables })
}

/// A set of files loaded together: the `-f` files, or one `include:` entry.
struct Unit<'a> {
    files: &'a [PathBuf],
    working_dir: &'a Path,
    env_files: &'a [PathBuf],
    name_override: Option<&'a str>,
}

type Services = BTreeMap<String, Service>;
type UnitResult = (Project, Services, BTreeMap<String, String>, RawServices);
/// A unit's services as YAML after extends, with relative host paths made absolute: what an including file's
/// service of the same name is laid over.
type RawServices = BTreeMap<String, Value>;
/// What an include contributes: its model, and its services as YAML.
type Included = (Project, Services, RawServices);
/// An include entry as loaded: its files, project directory and env files.
type IncludeKey = (Vec<PathBuf>, PathBuf, Vec<PathBuf>);
/// A file as read: its path and the variables it was interpolated with.
type FileKey = (PathBuf, Vec<(String, String)>);

/// What one load shares across its units: the caller's environment, the read budget, and every unit and file
/// already loaded (an `include` graph that reaches one file many ways reads it once, so work stays linear).
struct Ctx<'a> {
    environment: &'a BTreeMap<String, String>,
    root: &'a Path,
    budget: input::Budget,
    includes: std::cell::RefCell<BTreeMap<IncludeKey, Included>>,
    files: std::cell::RefCell<BTreeMap<FileKey, Value>>,
}

fn load_unit(unit: &Unit, ctx: &Ctx, include_stack: &mut Vec<PathBuf>, warnings: &mut Vec<Warning>) -> Result<UnitResult, ComposeError> {
    let variables = variables(unit.env_files, ctx.environment, unit.working_dir, ctx.root, &ctx.budget)?;
    let var_key: Vec<(String, String)> = variables.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let read = |file: &Path| -> Result<Value, ComposeError> {
        let key = (file.to_path_buf(), var_key.clone());
        if let Some(v) = ctx.files.borrow().get(&key) {
            return Ok(v.clone());
        }
        let v = read_file(file, &variables, &ctx.budget)?;
        ctx.files.borrow_mut().insert(key, v.clone());
        Ok(v)
    };
    let mut merged: Option<Value> = None;
    let mut included: Vec<Included> = vec![];
    for file in unit.files {
        let mut value = read(file)?;
        for entry in include_entries(file, &value, ctx.root)? {
            if include_stack.contains(&entry.files[0]) || unit.files.contains(&entry.files[0]) {
                let chain: Vec<String> =
                    include_stack.iter().chain(std::iter::once(file)).chain(std::iter::once(&entry.files[0])).map(|p| p.display().to_string()).collect();
                return Err(invalid(file, "include", format!("include cycle: {}", chain.join(" → "))));
            }
            if include_stack.len() >= input::MAX_INCLUDE_DEPTH {
                return Err(invalid(file, "include", format!("includes nest more than {} deep; flatten them", input::MAX_INCLUDE_DEPTH)));
            }
            let key = (entry.files.clone(), entry.project_dir.clone(), entry.env_files.clone());
            if let Some(done) = ctx.includes.borrow().get(&key) {
                included.push(done.clone());
                continue;
            }
            include_stack.push(file.clone());
            let sub = Unit { files: &entry.files, working_dir: &entry.project_dir, env_files: &entry.env_files, name_override: None };
            let (p, s, _, raw) = load_unit(&sub, ctx, include_stack, warnings)?;
            include_stack.pop();
            ctx.includes.borrow_mut().insert(key, (p.clone(), s.clone(), raw.clone()));
            included.push((p, s, raw));
        }
        extends::resolve(file, &mut value, &read, ctx.root)?;
        merged = Some(match merged {
            None => value,
            Some(mut base) => {
                merge::merge_documents(&mut base, value);
                base
            }
        });
    }
    let mut value = merged.expect("at least one file");
    let file = &unit.files[0];
    // A service the including file declares again is laid over the included one with the ordinary merge rules, the
    // including file winning (compose-go since Nov 2025, "Allow importing compose file to override resource
    // definition"); the included model of it then gives way.
    let mut overridden: Vec<String> = vec![];
    if let Some(Value::Mapping(own)) = value.get_mut("services") {
        for (k, v) in own.iter_mut() {
            let Some(name) = k.as_str() else { continue };
            if let Some(base) = included.iter().rev().find_map(|(_, _, raw)| raw.get(name)) {
                let mut laid = base.clone();
                let over = std::mem::take(v);
                merge::merge_service(&mut laid, if over.is_null() { Value::Mapping(Default::default()) } else { over });
                *v = laid;
                overridden.push(name.to_string());
            }
        }
    }
    let raw: RawServices = match value.get("services") {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| {
                let mut v = v.clone();
                extends::rebase(&mut v, unit.working_dir, Path::new("/"));
                k.as_str().map(|k| (k.to_string(), v))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    merge::strip_tags(&mut value, "").map_err(|(path, message)| invalid(file, &path, message))?;
    let input = parse::ParseInput {
        file,
        root: &value,
        dir: unit.working_dir,
        vars: &variables,
        name_override: unit.name_override,
        budget: &ctx.budget,
        project_root: ctx.root,
    };
    let (mut project, mut services) = parse::project(&input, warnings)?;
    for (p, mut s, _) in included {
        s.retain(|name, _| !overridden.contains(name));
        absorb(file, &mut project, &mut services, p, s)?;
    }
    Ok((project, services, variables, raw))
}

/// One `include:` entry: its files, project directory and env files (its own `.env` by default).
struct Include {
    files: Vec<PathBuf>,
    project_dir: PathBuf,
    env_files: Vec<PathBuf>,
}

fn include_entries(file: &Path, doc: &Value, root: &Path) -> Result<Vec<Include>, ComposeError> {
    let Some(list) = doc.get("include") else {
        return Ok(vec![]);
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| parse::normalize_path(&dir.join(p));
    let remote = |p: &str, path: &str| -> Result<(), ComposeError> {
        if p.contains("://") || p.starts_with("git@") {
            return Err(invalid(
                file,
                path,
                format!("remote include {p:?} is not supported: orch reads local files only; fetch it and include the local copy"),
            ));
        }
        Ok(())
    };
    let Value::Sequence(items) = list else {
        return Err(invalid(file, "include", "expected a list of files or of {path, project_directory, env_file}"));
    };
    let mut out = vec![];
    for (i, item) in items.iter().enumerate() {
        let ip = format!("include[{i}]");
        let (paths, project_dir, env_files) = match item {
            Value::String(p) => (vec![p.clone()], None, None),
            Value::Mapping(m) => {
                for k in m.keys() {
                    let k = k.as_str().unwrap_or_default();
                    if !fields::INCLUDE.contains(&k) {
                        return Err(invalid(file, &join(&ip, k), fields::unknown_message(k, fields::INCLUDE)));
                    }
                }
                let list = |key: &str| -> Result<Option<Vec<String>>, ComposeError> {
                    match m.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
                        Some(Value::Sequence(v)) => v
                            .iter()
                            .map(|x| x.as_str().map(String::from).ok_or_else(|| invalid(file, &join(&ip, key), "expected a list of paths")))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Some),
                        Some(_) => Err(invalid(file, &join(&ip, key), "expected a path or a list of paths")),
                    }
                };
                let paths = list("path")?.ok_or_else(|| invalid(file, &ip, "an include entry needs `path:`"))?;
                let project_dir = match m.get("project_directory") {
                    Some(Value::String(d)) => Some(d.clone()),
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        return Err(invalid(file, &join(&ip, "project_directory"), "expected a directory path"));
                    }
                };
                (paths, project_dir, list("env_file")?)
            }
            _ => {
                return Err(invalid(file, &ip, "expected a file path or a mapping with `path:`"));
            }
        };
        if paths.is_empty() {
            return Err(invalid(file, &ip, "an include entry needs at least one path"));
        }
        for p in &paths {
            remote(p, &ip)?;
        }
        let files: Vec<PathBuf> = paths.iter().map(|p| resolve(p)).collect();
        for f in &files {
            if !input::within(root, f) {
                return Err(input::outside(file, &ip, "included file", f, root));
            }
            if !f.exists() {
                return Err(invalid(file, &ip, format!("included file {} does not exist", f.display())));
            }
        }
        let project_dir = project_dir.map(|d| resolve(&d)).unwrap_or_else(|| files[0].parent().unwrap_or(dir).to_path_buf());
        let env_files: Vec<PathBuf> = match env_files {
            Some(list) => list.iter().map(|p| resolve(p)).collect(),
            None => vec![],
        };
        if !input::within(root, &project_dir) {
            return Err(input::outside(file, &join(&ip, "project_directory"), "project directory", &project_dir, root));
        }
        if let Some(f) = env_files.iter().find(|f| !input::within(root, f)) {
            return Err(input::outside(file, &join(&ip, "env_file"), "env file", f, root));
        }
        out.push(Include { files, project_dir, env_files });
    }
    Ok(out)
}

/// Adds an included project's resources; a name defined differently on both sides is a conflict, as in compose.
fn absorb(file: &Path, project: &mut Project, services: &mut Services, inc: Project, inc_services: Services) -> Result<(), ComposeError> {
    fn add<T: PartialEq>(file: &Path, what: &str, into: &mut BTreeMap<String, T>, from: BTreeMap<String, T>) -> Result<(), ComposeError> {
        for (name, v) in from {
            match into.get(&name) {
                Some(existing) if *existing != v => {
                    return Err(invalid(
                        file,
                        &format!("{what}.{name}"),
                        format!("{what} {name} is defined both here and in an included file; rename one of them"),
                    ));
                }
                Some(_) => {}
                None => {
                    into.insert(name, v);
                }
            }
        }
        Ok(())
    }
    add(file, "services", services, inc_services)?;
    add(file, "networks", &mut project.networks, inc.networks)?;
    add(file, "volumes", &mut project.volumes, inc.volumes)?;
    add(file, "secrets", &mut project.secrets, inc.secrets)?;
    add(file, "configs", &mut project.configs, inc.configs)?;
    Ok(())
}

/// A compose file as a YAML tree: merge keys resolved, then every string interpolated.
fn read_file(file: &Path, variables: &BTreeMap<String, String>, budget: &input::Budget) -> Result<Value, ComposeError> {
    let text = budget.read(file, input::MAX_COMPOSE_FILE)?;
    input::check_yaml_depth(file, &text)?;
    let mut value = parse_yaml(file, &text)?;
    merge::resolve_merge_keys(&mut value).map_err(|e| invalid(file, "", format!("invalid YAML merge key (<<): {e}")))?;
    interpolate_tree(file, &mut value, "", variables)?;
    Ok(value)
}

fn absolute(p: &Path) -> PathBuf {
    let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
    std::path::absolute(p).map(|a| parse::normalize_path(&a)).unwrap_or_else(|_| p.to_path_buf())
}

fn variables(
    env_files: &[PathBuf],
    environment: &BTreeMap<String, String>,
    working_dir: &Path,
    root: &Path,
    budget: &input::Budget,
) -> Result<BTreeMap<String, String>, ComposeError> {
    let files: Vec<PathBuf> = if env_files.is_empty() {
        let dot_env = working_dir.join(".env");
        // A `.env` that links out of the repository would bring a host file's contents into interpolation.
        if dot_env.exists() && !input::within(root, &dot_env) {
            return Err(input::outside(&dot_env, "", "the .env file (a link)", &dot_env, root));
        }
        // Present in any form (a pipe or a directory is then refused by the read, not skipped).
        if dot_env.exists() { vec![dot_env] } else { vec![] }
    } else {
        env_files.to_vec()
    };
    let mut vars = BTreeMap::new();
    for f in files {
        let text = budget.read(&f, input::MAX_ENV_FILE)?;
        let mut scope = vars.clone();
        scope.extend(environment.clone());
        let parsed = interpolate::parse_env_file(&text, &scope).map_err(|(line, message)| ComposeError::EnvFile { file: f.clone(), line, message })?;
        vars.extend(parsed);
    }
    vars.extend(environment.clone());
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
