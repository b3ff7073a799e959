//! Folds the interpolated, merged YAML tree into the model, one compose field at a time, with the path of every
//! error. Fields the specification does not know are errors naming the nearest valid one; fields it knows that orch
//! does not apply on a single engine become [`Warning`]s that the plan shows.

mod resources;
mod service;
mod syntax;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};
use syntax::kind;
pub use syntax::normalize_path;
pub use syntax::{normalize_name, parse_bytes, parse_duration_ms, parse_short_port};

use crate::fields;
use crate::model::*;
use crate::{ComposeError, Warning, invalid, join};

type R<T> = Result<T, ComposeError>;

/// The parser's context: the file errors are reported against, the directory relative paths resolve against, and
/// the variables that fill build args without a value.
pub(crate) struct P<'a> {
    pub file: &'a Path,
    pub dir: &'a Path,
    pub vars: &'a BTreeMap<String, String>,
    pub warnings: &'a mut Vec<Warning>,
    pub budget: &'a crate::input::Budget,
    pub root: &'a Path,
}

pub(crate) struct ParseInput<'a> {
    pub file: &'a Path,
    pub root: &'a Value,
    pub dir: &'a Path,
    pub vars: &'a BTreeMap<String, String>,
    pub name_override: Option<&'a str>,
    pub budget: &'a crate::input::Budget,
    pub project_root: &'a Path,
}

/// The project as written, before profiles select services (so that `include` can merge projects first).
pub(crate) fn project(input: &ParseInput, warnings: &mut Vec<Warning>) -> R<(Project, BTreeMap<String, Service>)> {
    let mut p = P { file: input.file, dir: input.dir, vars: input.vars, warnings, budget: input.budget, root: input.project_root };
    let root = p.mapping(input.root, "")?;
    let mut project = Project { working_dir: input.dir.to_path_buf(), ..Default::default() };
    let mut name = None;
    let mut all_services = BTreeMap::new();
    for (k, v) in root {
        let key = p.key(k, "")?;
        match key.as_str() {
            "version" | "include" => {}
            "name" => name = Some(p.string(v, "name")?),
            "services" => {
                for (sk, sv) in p.mapping_or_empty(v, "services")?.iter() {
                    let sname = p.key(sk, "services")?;
                    let path = join("services", &sname);
                    check_resource_name(input.file, &path, "service", &sname)?;
                    let service = p.service(sv, &path)?;
                    all_services.insert(sname, service);
                }
            }
            "networks" => {
                for (nk, nv) in p.mapping_or_empty(v, "networks")?.iter() {
                    let nname = p.key(nk, "networks")?;
                    let path = join("networks", &nname);
                    check_resource_name(input.file, &path, "network", &nname)?;
                    project.networks.insert(nname, p.network(nv, &path)?);
                }
            }
            "volumes" => {
                for (vk, vv) in p.mapping_or_empty(v, "volumes")?.iter() {
                    let vname = p.key(vk, "volumes")?;
                    let path = join("volumes", &vname);
                    check_resource_name(input.file, &path, "volume", &vname)?;
                    project.volumes.insert(vname, p.volume(vv, &path)?);
                }
            }
            "secrets" | "configs" => {
                let is_config = key == "configs";
                for (sk, sv) in p.mapping_or_empty(v, &key)?.iter() {
                    let sname = p.key(sk, &key)?;
                    let path = join(&key, &sname);
                    let s = p.secret(sv, &path, is_config)?;
                    if is_config {
                        project.configs.insert(sname, s)
                    } else {
                        project.secrets.insert(sname, s)
                    };
                }
            }
            "models" => p.not_applied("models", "AI models need Docker Model Runner, which orch does not drive"),
            k if k.starts_with("x-") => {}
            other => return Err(p.unknown("", other, fields::TOP)),
        }
    }
    project.name = normalize_name(
        input
            .name_override
            .map(String::from)
            .or(name)
            .unwrap_or_else(|| input.dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into())),
    );
    if project.name.is_empty() {
        return Err(invalid(input.file, "name", "the project name is empty after normalisation; use lowercase letters, digits, - or _"));
    }
    Ok((project, all_services))
}

/// Service, network and volume names as the compose specification allows them (`[a-zA-Z0-9._-]+`), and starting
/// with a letter or digit as Docker's object names must: a name such as `-f` would read as an option wherever it
/// reaches a command line.
pub(crate) fn check_resource_name(file: &Path, path: &str, what: &str, name: &str) -> R<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.starts_with(|c: char| c.is_ascii_alphanumeric()) && name.chars().all(ok_char) {
        return Ok(());
    }
    Err(invalid(file, path, format!("invalid {what} name {name:?}: use letters, digits, `.`, `_` and `-`, starting with a letter or digit")))
}

/// Applies profiles (a service with profiles runs only when one of them is active) and checks every reference.
pub(crate) fn finish(file: &Path, mut project: Project, all_services: BTreeMap<String, Service>, profiles: &[String]) -> R<Project> {
    if all_services.is_empty() {
        return Err(invalid(file, "services", "no services defined; a compose file needs at least one service"));
    }
    for (sname, service) in all_services {
        let enabled = service.profiles.is_empty() || service.profiles.iter().any(|p| profiles.contains(p));
        if enabled {
            project.services.insert(sname, service);
        } else {
            project.disabled_services.push(sname);
        }
    }
    if project.services.is_empty() {
        return Err(invalid(
            file,
            "services",
            format!("every service is behind an inactive profile; activate one with --profile (disabled: {})", project.disabled_services.join(", ")),
        ));
    }
    check_references(file, &mut project)?;
    Ok(project)
}

/// A service named by `service:NAME` (network_mode, ipc, pid) or by `volumes_from`/`links`, which must exist.
fn service_ref(value: &str) -> Option<&str> {
    value.strip_prefix("service:")
}

fn check_references(file: &Path, project: &mut Project) -> R<()> {
    let uses_default = project.services.values().any(|s| s.networks.contains_key("default"));
    if uses_default && !project.networks.contains_key("default") {
        project.networks.insert("default".into(), Network::default());
    }
    let names: Vec<String> = project.services.keys().cloned().collect();
    let disabled = project.disabled_services.clone();
    for (sname, service) in &mut project.services {
        let sp = format!("services.{sname}");
        for net in service.networks.keys() {
            if !project.networks.contains_key(net) {
                return Err(invalid(
                    file,
                    &format!("{sp}.networks.{net}"),
                    format!("service {sname} uses network {net:?}, which is not defined under top-level `networks:`"),
                ));
            }
        }
        // Implicit dependencies, as compose adds them: a service that shares another's namespaces, volumes or name
        // starts after it.
        let mut implied: Vec<(String, String)> = vec![];
        for (field, value) in [("network_mode", &service.network_mode), ("ipc", &service.runtime.ipc), ("pid", &service.runtime.pid)] {
            if let Some(target) = value.as_deref().and_then(service_ref) {
                implied.push((format!("{sp}.{field}"), target.to_string()));
            }
        }
        for v in &service.volumes_from {
            if !v.starts_with("container:") {
                implied.push((format!("{sp}.volumes_from"), v.split(':').next().unwrap_or_default().to_string()));
            }
        }
        for (target, _) in &service.links {
            implied.push((format!("{sp}.links"), target.clone()));
        }
        // A build context naming another service's image needs that service, but not at run time.
        if let Some(b) = &service.build {
            for (name, source) in &b.additional_contexts {
                if let Some(target) = source.strip_prefix("service:")
                    && !names.iter().any(|n| n == target)
                {
                    return Err(invalid(
                        file,
                        &format!("{sp}.build.additional_contexts.{name}"),
                        format!("build context {name} names service {target:?}, which is not defined"),
                    ));
                }
            }
        }
        for (path, target) in implied {
            if target == *sname {
                return Err(invalid(file, &path, format!("service {sname} refers to itself")));
            }
            if !names.contains(&target) {
                let why = if disabled.contains(&target) { "which is disabled by its profiles; activate it with --profile" } else { "which is not defined" };
                return Err(invalid(file, &path, format!("service {sname} refers to service {target:?}, {why}")));
            }
            service.depends_on.entry(target).or_insert(Dependency { condition: Condition::ServiceStarted, required: true, restart: false });
        }
        let mut missing_optional = vec![];
        for (dep, d) in &service.depends_on {
            if disabled.contains(dep) {
                if d.required {
                    return Err(invalid(
                        file,
                        &format!("{sp}.depends_on.{dep}"),
                        format!(
                            "service {sname} depends on {dep}, which is disabled by its profiles; activate it with --profile or mark the dependency `required: false`"
                        ),
                    ));
                }
                missing_optional.push(dep.clone());
            } else if !names.contains(dep) {
                if d.required {
                    return Err(invalid(
                        file,
                        &format!("{sp}.depends_on.{dep}"),
                        format!("service {sname} depends on undefined service {dep:?}; define it or remove the dependency"),
                    ));
                }
                missing_optional.push(dep.clone());
            }
        }
        for dep in missing_optional {
            service.depends_on.remove(&dep);
        }
        for m in &service.volumes {
            if m.kind == "volume"
                && let Some(src) = &m.source
                && !project.volumes.contains_key(src)
            {
                return Err(invalid(
                    file,
                    &format!("{sp}.volumes"),
                    format!("service {sname} mounts volume {src:?}, which is not defined under top-level `volumes:`"),
                ));
            }
        }
        for (what, list, defined) in [("secret", &service.secrets, &project.secrets), ("config", &service.configs, &project.configs)] {
            for s in list {
                if !defined.contains_key(&s.source) {
                    return Err(invalid(
                        file,
                        &format!("{sp}.{what}s"),
                        format!("service {sname} uses {what} {:?}, which is not defined under top-level `{what}s:`", s.source),
                    ));
                }
            }
        }
    }
    Ok(())
}

impl P<'_> {
    pub(crate) fn warn(&mut self, path: &str, message: &str) {
        self.warnings.push(Warning { file: self.file.to_path_buf(), path: path.to_string(), message: message.to_string() });
    }

    /// A field the specification knows that orch does not apply: the plan shows it as a warning.
    pub(crate) fn not_applied(&mut self, path: &str, why: &str) {
        let field = path.rsplit('.').next().unwrap_or(path);
        self.warn(path, &format!("`{field}` is not applied: {why}"));
    }

    pub(crate) fn err(&self, path: &str, message: impl Into<String>) -> ComposeError {
        invalid(self.file, path, message)
    }

    pub(crate) fn unknown(&self, path: &str, key: &str, valid: &[&'static str]) -> ComposeError {
        self.err(&join(path, key), fields::unknown_message(key, valid))
    }

    pub(crate) fn key(&self, k: &Value, path: &str) -> R<String> {
        match k {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(path, format!("keys must be strings, found {}", kind(other)))),
        }
    }

    pub(crate) fn mapping<'v>(&self, v: &'v Value, path: &str) -> R<&'v Mapping> {
        match v {
            Value::Mapping(m) => Ok(m),
            other => Err(self.err(path, format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// A mapping, with an empty value (`services:` with nothing below) read as an empty mapping.
    pub(crate) fn mapping_or_empty(&self, v: &Value, path: &str) -> R<Mapping> {
        match v {
            Value::Null => Ok(Mapping::new()),
            v => self.mapping(v, path).cloned(),
        }
    }

    /// The entries of a mapping as (key, path, value), refusing keys outside `valid` (except `x-*`).
    pub(crate) fn fields<'v>(&self, m: &'v Mapping, path: &str, valid: &[&'static str]) -> R<Vec<(String, String, &'v Value)>> {
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            let key = self.key(k, path)?;
            if key.starts_with("x-") {
                continue;
            }
            if !valid.contains(&key.as_str()) {
                return Err(self.unknown(path, &key, valid));
            }
            out.push((key.clone(), join(path, &key), v));
        }
        Ok(out)
    }

    /// A scalar as a string (compose accepts numbers and booleans where strings are expected).
    pub(crate) fn string(&self, v: &Value, path: &str) -> R<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(path, format!("expected a string, found {}", kind(other)))),
        }
    }

    pub(crate) fn opt_string(&self, v: &Value, path: &str) -> R<Option<String>> {
        match v {
            Value::Null => Ok(None),
            v => self.string(v, path).map(Some),
        }
    }

    pub(crate) fn boolean(&self, v: &Value, path: &str) -> R<bool> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if matches!(s.as_str(), "true" | "yes" | "True" | "TRUE" | "y" | "on") => Ok(true),
            Value::String(s) if matches!(s.as_str(), "false" | "no" | "False" | "FALSE" | "n" | "off") => Ok(false),
            other => Err(self.err(path, format!("expected true or false, found {}", kind(other)))),
        }
    }

    pub(crate) fn integer(&self, v: &Value, path: &str) -> R<i64> {
        let s = self.string(v, path)?;
        s.trim().parse::<i64>().map_err(|_| self.err(path, format!("expected a whole number, found {s:?}")))
    }

    /// A string or a list of strings.
    pub(crate) fn string_list(&self, v: &Value, path: &str) -> R<Vec<String>> {
        match v {
            Value::Null => Ok(vec![]),
            Value::Sequence(items) => items.iter().enumerate().map(|(i, item)| self.string(item, &format!("{path}[{i}]"))).collect(),
            v => Ok(vec![self.string(v, path)?]),
        }
    }

    /// A list (only) of strings.
    pub(crate) fn strict_list(&self, v: &Value, path: &str) -> R<Vec<String>> {
        match v {
            Value::Null | Value::Sequence(_) => self.string_list(v, path),
            other => Err(self.err(path, format!("expected a list, found {}", kind(other)))),
        }
    }

    /// A command: a list as is, or a string split like a shell would.
    pub(crate) fn command(&self, v: &Value, path: &str) -> R<Option<Vec<String>>> {
        match v {
            Value::Null => Ok(None),
            Value::Sequence(_) => self.string_list(v, path).map(Some),
            v => {
                let s = self.string(v, path)?;
                shell_words::split(&s).map(Some).map_err(|e| self.err(path, format!("cannot split command {s:?} into words: {e}; use the list form")))
            }
        }
    }

    /// `KEY: value` mapping or `- KEY=value` list; a list entry without `=` (or a null value) has no value.
    pub(crate) fn kv(&self, v: &Value, path: &str) -> R<BTreeMap<String, Option<String>>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, val) in m {
                    let key = self.key(k, path)?;
                    out.insert(key.clone(), self.opt_string(val, &join(path, &key))?);
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let s = self.string(item, &format!("{path}[{i}]"))?;
                    match s.split_once('=') {
                        Some((k, val)) => out.insert(k.to_string(), Some(val.to_string())),
                        None => out.insert(s, None),
                    };
                }
            }
            other => {
                return Err(self.err(path, format!("expected a mapping or a list of KEY=VALUE, found {}", kind(other))));
            }
        }
        Ok(out)
    }

    pub(crate) fn labels(&self, v: &Value, path: &str) -> R<BTreeMap<String, String>> {
        Ok(self.kv(v, path)?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
    }

    pub(crate) fn duration(&self, v: &Value, path: &str) -> R<u64> {
        let s = self.string(v, path)?;
        parse_duration_ms(&s).ok_or_else(|| self.err(path, format!("invalid duration {s:?}; use forms like 500ms, 10s, 1m30s or 1h")))
    }

    pub(crate) fn bytes(&self, v: &Value, path: &str) -> R<u64> {
        let s = self.string(v, path)?;
        parse_bytes(&s).ok_or_else(|| self.err(path, format!("invalid size {s:?}; use forms like 512m, 1g, 256MB or a number of bytes")))
    }

    pub(crate) fn float(&self, v: &Value, path: &str) -> R<f64> {
        let s = self.string(v, path)?;
        s.parse::<f64>().ok().filter(|f| *f >= 0.0).ok_or_else(|| self.err(path, format!("expected a number such as 0.5, found {s:?}")))
    }

    /// [`Self::relative_path`] for a file or directory orch reads or sends to the engine: it must stay inside the
    /// project root.
    pub(crate) fn project_path(&self, s: &str, path: &str, what: &str) -> R<PathBuf> {
        let p = self.relative_path(s);
        if crate::input::within(self.root, &p) { Ok(p) } else { Err(crate::input::outside(self.file, path, what, &p, self.root)) }
    }

    /// A host path: `~` is the home directory, a relative path is resolved against the project directory.
    pub(crate) fn relative_path(&self, s: &str) -> PathBuf {
        let expanded = match s.strip_prefix('~') {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                std::env::var_os("HOME").map(|h| format!("{}{rest}", h.to_string_lossy())).unwrap_or_else(|| s.to_string())
            }
            _ => s.to_string(),
        };
        let p = Path::new(&expanded);
        if p.is_absolute() { normalize_path(p) } else { normalize_path(&self.dir.join(p)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_is_the_home_directory_and_relative_paths_the_project() {
        let Some(home) = std::env::var_os("HOME") else { return };
        let mut warnings = vec![];
        let vars = BTreeMap::new();
        let budget = crate::input::Budget::default();
        let p = P { file: Path::new("/p/compose.yaml"), dir: Path::new("/p"), vars: &vars, warnings: &mut warnings, budget: &budget, root: Path::new("/") };
        assert_eq!(p.relative_path("~/data"), Path::new(&home).join("data"));
        assert_eq!(p.relative_path("~"), normalize_path(Path::new(&home)));
        assert_eq!(p.relative_path("./a/../b"), Path::new("/p/b"));
        assert_eq!(p.relative_path("~user/x"), Path::new("/p/~user/x"), "only the current user's ~ is expanded");
    }
}
