//! Folds the interpolated YAML tree into the model, one compose field at a time, with the path of every error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use crate::model::*;
use crate::{ComposeError, Warning, invalid, join};

type R<T> = Result<T, ComposeError>;

struct P<'a> {
    file: &'a Path,
    dir: &'a Path,
    warnings: &'a mut Vec<Warning>,
}

pub(crate) fn project(
    file: &Path,
    root: &Value,
    dir: &Path,
    name_override: Option<&str>,
    profiles: &[String],
    warnings: &mut Vec<Warning>,
) -> R<Project> {
    let mut p = P { file, dir, warnings };
    let root = p.mapping(root, "")?;
    let mut project = Project { working_dir: dir.to_path_buf(), ..Default::default() };
    let mut name = None;
    let mut all_services = BTreeMap::new();
    for (k, v) in root {
        let key = p.key(k, "")?;
        match key.as_str() {
            "version" => {}
            "name" => name = Some(p.string(v, "name")?),
            "services" => {
                for (sk, sv) in p.mapping_or_empty(v, "services")?.iter() {
                    let sname = p.key(sk, "services")?;
                    let path = join("services", &sname);
                    let service = p.service(sv, &path)?;
                    all_services.insert(sname, service);
                }
            }
            "networks" => {
                for (nk, nv) in p.mapping_or_empty(v, "networks")?.iter() {
                    let nname = p.key(nk, "networks")?;
                    let path = join("networks", &nname);
                    project.networks.insert(nname, p.network(nv, &path)?);
                }
            }
            "volumes" => {
                for (vk, vv) in p.mapping_or_empty(v, "volumes")?.iter() {
                    let vname = p.key(vk, "volumes")?;
                    let path = join("volumes", &vname);
                    project.volumes.insert(vname, p.volume(vv, &path)?);
                }
            }
            "secrets" => {
                for (sk, sv) in p.mapping_or_empty(v, "secrets")?.iter() {
                    let sname = p.key(sk, "secrets")?;
                    let path = join("secrets", &sname);
                    project.secrets.insert(sname, p.secret(sv, &path)?);
                }
            }
            k if k.starts_with("x-") => {}
            other => p.warn(other, "unsupported top-level field, ignored"),
        }
    }
    if all_services.is_empty() {
        return Err(invalid(file, "services", "no services defined; a compose file needs at least one service"));
    }
    project.name = normalize_name(name_override.map(String::from).or(name).unwrap_or_else(|| {
        dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "default".into())
    }));
    if project.name.is_empty() {
        return Err(invalid(file, "name", "the project name is empty after normalisation; use lowercase letters, digits, - or _"));
    }

    // Profiles: a service with profiles runs only when one of them is active.
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
    check_references(&mut p, &mut project)?;
    Ok(project)
}

/// Compose's project name rule: lowercase letters, digits, dashes and underscores, starting with a letter or digit.
pub fn normalize_name(name: String) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    lowered.trim_start_matches(['-', '_']).to_string()
}

fn check_references(p: &mut P, project: &mut Project) -> R<()> {
    let uses_default = project.services.values().any(|s| s.networks.contains_key("default"));
    if uses_default && !project.networks.contains_key("default") {
        project.networks.insert("default".into(), Network::default());
    }
    for (sname, service) in &mut project.services {
        for net in service.networks.keys() {
            if !project.networks.contains_key(net) {
                return Err(invalid(
                    p.file,
                    &format!("services.{sname}.networks.{net}"),
                    format!("service {sname} uses network {net:?}, which is not defined under top-level `networks:`"),
                ));
            }
        }
        let mut missing_optional = vec![];
        for (dep, d) in &service.depends_on {
            if project.disabled_services.contains(dep) {
                if d.required {
                    return Err(invalid(
                        p.file,
                        &format!("services.{sname}.depends_on.{dep}"),
                        format!("service {sname} depends on {dep}, which is disabled by its profiles; activate it with --profile or mark the dependency `required: false`"),
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
                    p.file,
                    &format!("services.{sname}.volumes"),
                    format!("service {sname} mounts volume {src:?}, which is not defined under top-level `volumes:`"),
                ));
            }
        }
        for s in &service.secrets {
            if !project.secrets.contains_key(&s.source) {
                return Err(invalid(
                    p.file,
                    &format!("services.{sname}.secrets"),
                    format!("service {sname} uses secret {:?}, which is not defined under top-level `secrets:`", s.source),
                ));
            }
        }
    }
    // Dependencies on services that do not exist at all are reported by the planner, which also checks cycles.
    Ok(())
}

impl P<'_> {
    fn warn(&mut self, path: &str, message: &str) {
        self.warnings.push(Warning { file: self.file.to_path_buf(), path: path.to_string(), message: message.to_string() });
    }

    fn err(&self, path: &str, message: impl Into<String>) -> ComposeError {
        invalid(self.file, path, message)
    }

    fn key(&self, k: &Value, path: &str) -> R<String> {
        match k {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(path, format!("keys must be strings, found {}", kind(other)))),
        }
    }

    fn mapping<'v>(&self, v: &'v Value, path: &str) -> R<&'v Mapping> {
        match v {
            Value::Mapping(m) => Ok(m),
            other => Err(self.err(path, format!("expected a mapping, found {}", kind(other)))),
        }
    }

    /// A mapping, with an empty value (`services:` with nothing below) read as an empty mapping.
    fn mapping_or_empty(&self, v: &Value, path: &str) -> R<Mapping> {
        match v {
            Value::Null => Ok(Mapping::new()),
            v => self.mapping(v, path).cloned(),
        }
    }

    /// A scalar as a string (compose accepts numbers and booleans where strings are expected).
    fn string(&self, v: &Value, path: &str) -> R<String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(self.err(path, format!("expected a string, found {}", kind(other)))),
        }
    }

    fn opt_string(&self, v: &Value, path: &str) -> R<Option<String>> {
        match v {
            Value::Null => Ok(None),
            v => self.string(v, path).map(Some),
        }
    }

    fn boolean(&self, v: &Value, path: &str) -> R<bool> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if matches!(s.as_str(), "true" | "yes" | "True") => Ok(true),
            Value::String(s) if matches!(s.as_str(), "false" | "no" | "False") => Ok(false),
            other => Err(self.err(path, format!("expected true or false, found {}", kind(other)))),
        }
    }

    /// A string or a list of strings.
    fn string_list(&self, v: &Value, path: &str) -> R<Vec<String>> {
        match v {
            Value::Null => Ok(vec![]),
            Value::Sequence(items) => {
                items.iter().enumerate().map(|(i, item)| self.string(item, &format!("{path}[{i}]"))).collect()
            }
            v => Ok(vec![self.string(v, path)?]),
        }
    }

    /// A command: a list as is, or a string split like a shell would.
    fn command(&self, v: &Value, path: &str) -> R<Option<Vec<String>>> {
        match v {
            Value::Null => Ok(None),
            Value::Sequence(_) => self.string_list(v, path).map(Some),
            v => {
                let s = self.string(v, path)?;
                shell_words::split(&s)
                    .map(Some)
                    .map_err(|e| self.err(path, format!("cannot split command {s:?} into words: {e}; use the list form")))
            }
        }
    }

    /// `KEY: value` mapping or `- KEY=value` list; a list entry without `=` (or a null value) has no value.
    fn kv(&self, v: &Value, path: &str) -> R<BTreeMap<String, Option<String>>> {
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
            other => return Err(self.err(path, format!("expected a mapping or a list of KEY=VALUE, found {}", kind(other)))),
        }
        Ok(out)
    }

    fn labels(&self, v: &Value, path: &str) -> R<BTreeMap<String, String>> {
        Ok(self.kv(v, path)?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect())
    }

    fn duration(&self, v: &Value, path: &str) -> R<u64> {
        let s = self.string(v, path)?;
        parse_duration_ms(&s).ok_or_else(|| {
            self.err(path, format!("invalid duration {s:?}; use forms like 500ms, 10s, 1m30s or 1h"))
        })
    }

    fn bytes(&self, v: &Value, path: &str) -> R<u64> {
        let s = self.string(v, path)?;
        parse_bytes(&s).ok_or_else(|| self.err(path, format!("invalid size {s:?}; use forms like 512m, 1g, 256MB or a number of bytes")))
    }

    fn float(&self, v: &Value, path: &str) -> R<f64> {
        let s = self.string(v, path)?;
        s.parse::<f64>().ok().filter(|f| *f >= 0.0).ok_or_else(|| self.err(path, format!("expected a number such as 0.5, found {s:?}")))
    }

    fn relative_path(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        if p.is_absolute() { p.to_path_buf() } else { normalize_path(&self.dir.join(p)) }
    }

    fn service(&mut self, v: &Value, path: &str) -> R<Service> {
        let m = self.mapping_or_empty(v, path)?;
        let mut s = Service::default();
        let mut default_network = true;
        let mut env_from_files: BTreeMap<String, Option<String>> = BTreeMap::new();
        for (k, v) in m.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "image" => s.image = self.opt_string(v, &fp)?,
                "build" => s.build = Some(self.build(v, &fp)?),
                "command" => s.command = self.command(v, &fp)?,
                "entrypoint" => s.entrypoint = self.command(v, &fp)?,
                "environment" => s.environment = self.kv(v, &fp)?,
                "env_file" => env_from_files = self.env_files(v, &fp)?,
                "ports" => s.ports = self.ports(v, &fp)?,
                "expose" => s.expose = self.string_list(v, &fp)?,
                "volumes" => s.volumes = self.mounts(v, &fp)?,
                "tmpfs" => s.tmpfs = self.string_list(v, &fp)?,
                "healthcheck" => s.healthcheck = self.healthcheck(v, &fp)?,
                "depends_on" => s.depends_on = self.depends_on(v, &fp)?,
                "networks" => {
                    default_network = false;
                    s.networks = self.service_networks(v, &fp)?;
                }
                "network_mode" => {
                    return Err(self.err(&fp, "network_mode is not supported: orch gives every environment its own networks; remove it or attach the service to networks"));
                }
                "profiles" => s.profiles = self.string_list(v, &fp)?,
                "deploy" => self.deploy(v, &fp, &mut s.resources)?,
                "mem_limit" => s.resources.memory_limit = Some(self.bytes(v, &fp)?),
                "mem_reservation" => s.resources.memory_reservation = Some(self.bytes(v, &fp)?),
                "cpus" => s.resources.cpus = Some(self.float(v, &fp)?),
                "labels" => s.labels = self.labels(v, &fp)?,
                "secrets" => s.secrets = self.service_secrets(v, &fp)?,
                "restart" => s.restart = self.opt_string(v, &fp)?,
                "container_name" => s.container_name = self.opt_string(v, &fp)?,
                "hostname" => s.hostname = self.opt_string(v, &fp)?,
                "user" => s.user = self.opt_string(v, &fp)?,
                "working_dir" => s.working_dir = self.opt_string(v, &fp)?,
                "logging" => s.logging = Some(self.logging(v, &fp)?),
                "stop_grace_period" => s.stop_grace_period_ms = Some(self.duration(v, &fp)?),
                k if k.starts_with("x-") => {}
                _ => self.warn(&fp, "unsupported service field, ignored"),
            }
        }
        // env_file values are overridden by `environment:` entries.
        for (k, v) in env_from_files {
            s.environment.entry(k).or_insert(v);
        }
        if default_network {
            s.networks.insert("default".into(), ServiceNetwork::default());
        }
        if s.image.is_none() && s.build.is_none() {
            return Err(self.err(path, "a service needs `image:` or `build:`"));
        }
        Ok(s)
    }

    fn build(&mut self, v: &Value, path: &str) -> R<Build> {
        if !matches!(v, Value::Mapping(_)) {
            let ctx = self.string(v, path)?;
            return Ok(Build { context: self.relative_path(&ctx), ..Default::default() });
        }
        let m = self.mapping(v, path)?;
        let mut b = Build { context: self.dir.to_path_buf(), ..Default::default() };
        for (k, v) in m {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "context" => b.context = self.relative_path(&self.string(v, &fp)?),
                "dockerfile" => b.dockerfile = self.opt_string(v, &fp)?,
                "args" => b.args = self.labels(v, &fp)?,
                "target" => b.target = self.opt_string(v, &fp)?,
                "labels" => b.labels = self.labels(v, &fp)?,
                k if k.starts_with("x-") => {}
                _ => self.warn(&fp, "unsupported build field, ignored"),
            }
        }
        Ok(b)
    }

    fn env_files(&mut self, v: &Value, path: &str) -> R<BTreeMap<String, Option<String>>> {
        let mut entries: Vec<(String, bool)> = vec![];
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ip = format!("{path}[{i}]");
                    match item {
                        Value::Mapping(m) => {
                            let p = m.get("path").ok_or_else(|| self.err(&ip, "env_file entry needs `path:`"))?;
                            let required = match m.get("required") {
                                Some(r) => self.boolean(r, &join(&ip, "required"))?,
                                None => true,
                            };
                            entries.push((self.string(p, &join(&ip, "path"))?, required));
                        }
                        other => entries.push((self.string(other, &ip)?, true)),
                    }
                }
            }
            other => entries.push((self.string(other, path)?, true)),
        }
        let mut out = BTreeMap::new();
        for (file, required) in entries {
            let full = self.relative_path(&file);
            let text = match std::fs::read_to_string(&full) {
                Ok(t) => t,
                Err(_) if !required => continue,
                Err(e) => {
                    return Err(self.err(path, format!("cannot read env_file {}: {e}; create it or mark it `required: false`", full.display())));
                }
            };
            let parsed = crate::interpolate::parse_env_file(&text, &BTreeMap::new())
                .map_err(|(line, message)| ComposeError::EnvFile { file: full.clone(), line, message })?;
            out.extend(parsed.into_iter().map(|(k, v)| (k, Some(v))));
        }
        Ok(out)
    }

    fn ports(&self, v: &Value, path: &str) -> R<Vec<Port>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of ports, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            match item {
                Value::Mapping(m) => out.push(self.long_port(m, &ip)?),
                other => {
                    let s = self.string(other, &ip)?;
                    out.extend(parse_short_port(&s).map_err(|e| self.err(&ip, e))?);
                }
            }
        }
        Ok(out)
    }

    fn long_port(&self, m: &Mapping, path: &str) -> R<Port> {
        let mut port = Port { target: 0, published: None, host_ip: None, protocol: "tcp".into(), name: None };
        for (k, v) in m {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "target" => {
                    let s = self.string(v, &fp)?;
                    port.target = s.parse().ok().filter(|p| *p > 0).ok_or_else(|| self.err(&fp, format!("invalid container port {s:?}")))?;
                }
                "published" => {
                    port.published = match self.opt_string(v, &fp)? {
                        None => None,
                        Some(s) if s.is_empty() => None,
                        Some(s) => Some(parse_published(&s).map_err(|e| self.err(&fp, e))?),
                    }
                }
                "host_ip" => port.host_ip = self.opt_string(v, &fp)?,
                "protocol" => port.protocol = self.string(v, &fp)?.to_lowercase(),
                "name" => port.name = self.opt_string(v, &fp)?,
                "mode" | "app_protocol" => {}
                _ => return Err(self.err(&fp, "unknown port field; expected target, published, host_ip, protocol, mode, name or app_protocol")),
            }
        }
        if port.target == 0 {
            return Err(self.err(path, "a long-form port needs `target:`"));
        }
        check_protocol(&port.protocol).map_err(|e| self.err(&join(path, "protocol"), e))?;
        Ok(port)
    }

    fn mounts(&mut self, v: &Value, path: &str) -> R<Vec<Mount>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of volumes, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let mount = match item {
                Value::Mapping(m) => {
                    let get = |k: &str| m.get(k);
                    let kind_ = match get("type") {
                        Some(t) => self.string(t, &join(&ip, "type"))?,
                        None => "volume".into(),
                    };
                    let target = get("target").ok_or_else(|| self.err(&ip, "a long-form volume needs `target:`"))?;
                    let target = self.string(target, &join(&ip, "target"))?;
                    let source = match get("source") {
                        Some(s) => self.opt_string(s, &join(&ip, "source"))?,
                        None => None,
                    };
                    let read_only = match get("read_only") {
                        Some(r) => self.boolean(r, &join(&ip, "read_only"))?,
                        None => false,
                    };
                    let tmpfs_size = match get("tmpfs").and_then(|t| t.get("size")) {
                        Some(size) => Some(self.bytes(size, &join(&ip, "tmpfs.size"))?),
                        None => None,
                    };
                    if !matches!(kind_.as_str(), "volume" | "bind" | "tmpfs") {
                        return Err(self.err(&join(&ip, "type"), format!("unsupported volume type {kind_:?}; use volume, bind or tmpfs")));
                    }
                    let source = if kind_ == "bind" { source.map(|s| self.relative_path(&s).to_string_lossy().into_owned()) } else { source };
                    Mount { kind: kind_, source, target, read_only, tmpfs_size }
                }
                other => {
                    let s = self.string(other, &ip)?;
                    self.short_mount(&s, &ip)?
                }
            };
            out.push(mount);
        }
        Ok(out)
    }

    fn short_mount(&self, s: &str, path: &str) -> R<Mount> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, None),
            [src, t] => (Some(*src), *t, None),
            [src, t, mode] => (Some(*src), *t, Some(*mode)),
            _ => return Err(self.err(path, format!("invalid volume {s:?}; expected [SOURCE:]TARGET[:MODE]"))),
        };
        if !target.starts_with('/') {
            return Err(self.err(path, format!("volume target {target:?} must be an absolute path in the container")));
        }
        let read_only = mode.is_some_and(|m| m.split(',').any(|o| o == "ro"));
        Ok(match source {
            None => Mount { kind: "volume".into(), source: None, target: target.into(), read_only, tmpfs_size: None },
            Some(src) if src.starts_with('.') || src.starts_with('/') || src.starts_with('~') => Mount {
                kind: "bind".into(),
                source: Some(self.relative_path(src).to_string_lossy().into_owned()),
                target: target.into(),
                read_only,
                tmpfs_size: None,
            },
            Some(src) => Mount { kind: "volume".into(), source: Some(src.into()), target: target.into(), read_only, tmpfs_size: None },
        })
    }

    fn healthcheck(&mut self, v: &Value, path: &str) -> R<Option<Healthcheck>> {
        let m = self.mapping(v, path)?;
        let mut h = Healthcheck::default();
        for (k, v) in m {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "test" => {
                    h.test = match v {
                        Value::Sequence(_) => self.string_list(v, &fp)?,
                        other => vec!["CMD-SHELL".into(), self.string(other, &fp)?],
                    };
                    if let Some(first) = h.test.first()
                        && !matches!(first.as_str(), "CMD" | "CMD-SHELL" | "NONE")
                    {
                        return Err(self.err(&fp, format!("a list-form test must start with CMD, CMD-SHELL or NONE, not {first:?}")));
                    }
                }
                "disable" => {
                    if self.boolean(v, &fp)? {
                        h.test = vec!["NONE".into()];
                    }
                }
                "interval" => h.interval_ms = Some(self.duration(v, &fp)?),
                "timeout" => h.timeout_ms = Some(self.duration(v, &fp)?),
                "start_period" => h.start_period_ms = Some(self.duration(v, &fp)?),
                "start_interval" => h.start_interval_ms = Some(self.duration(v, &fp)?),
                "retries" => {
                    let s = self.string(v, &fp)?;
                    h.retries = Some(s.parse().map_err(|_| self.err(&fp, format!("retries must be a whole number, not {s:?}")))?);
                }
                _ => self.warn(&fp, "unsupported healthcheck field, ignored"),
            }
        }
        Ok(Some(h))
    }

    fn depends_on(&self, v: &Value, path: &str) -> R<BTreeMap<String, Dependency>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for name in self.string_list(v, path)? {
                    out.insert(name, Dependency { condition: Condition::ServiceStarted, required: true, restart: false });
                }
            }
            Value::Mapping(m) => {
                for (k, dv) in m {
                    let name = self.key(k, path)?;
                    let dp = join(path, &name);
                    let mut dep = Dependency { condition: Condition::ServiceStarted, required: true, restart: false };
                    for (ck, cv) in self.mapping_or_empty(dv, &dp)?.iter() {
                        let ckey = self.key(ck, &dp)?;
                        let cp = join(&dp, &ckey);
                        match ckey.as_str() {
                            "condition" => {
                                dep.condition = match self.string(cv, &cp)?.as_str() {
                                    "service_started" => Condition::ServiceStarted,
                                    "service_healthy" => Condition::ServiceHealthy,
                                    "service_completed_successfully" => Condition::ServiceCompletedSuccessfully,
                                    other => return Err(self.err(&cp, format!("unknown condition {other:?}; use service_started, service_healthy or service_completed_successfully"))),
                                }
                            }
                            "required" => dep.required = self.boolean(cv, &cp)?,
                            "restart" => dep.restart = self.boolean(cv, &cp)?,
                            _ => return Err(self.err(&cp, "unknown depends_on field; expected condition, required or restart")),
                        }
                    }
                    out.insert(name, dep);
                }
            }
            other => return Err(self.err(path, format!("expected a list of services or a mapping, found {}", kind(other)))),
        }
        Ok(out)
    }

    fn service_networks(&self, v: &Value, path: &str) -> R<BTreeMap<String, ServiceNetwork>> {
        let mut out = BTreeMap::new();
        match v {
            Value::Sequence(_) => {
                for n in self.string_list(v, path)? {
                    out.insert(n, ServiceNetwork::default());
                }
            }
            Value::Mapping(m) => {
                for (k, nv) in m {
                    let name = self.key(k, path)?;
                    let np = join(path, &name);
                    let mut sn = ServiceNetwork::default();
                    for (ak, av) in self.mapping_or_empty(nv, &np)?.iter() {
                        let akey = self.key(ak, &np)?;
                        let ap = join(&np, &akey);
                        match akey.as_str() {
                            "aliases" => sn.aliases = self.string_list(av, &ap)?,
                            "ipv4_address" => sn.ipv4_address = self.opt_string(av, &ap)?,
                            "priority" => {
                                let s = self.string(av, &ap)?;
                                sn.priority = Some(s.parse().map_err(|_| self.err(&ap, format!("priority must be a number, not {s:?}")))?);
                            }
                            "ipv6_address" | "link_local_ips" | "mac_address" | "driver_opts" => {}
                            _ => return Err(self.err(&ap, "unknown network attachment field; expected aliases, ipv4_address or priority")),
                        }
                    }
                    out.insert(name, sn);
                }
            }
            other => return Err(self.err(path, format!("expected a list or mapping of networks, found {}", kind(other)))),
        }
        Ok(out)
    }

    fn deploy(&mut self, v: &Value, path: &str, r: &mut Resources) -> R<()> {
        for (k, v) in self.mapping_or_empty(v, path)?.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            if key != "resources" {
                self.warn(&fp, "unsupported deploy field, ignored (orch runs single containers)");
                continue;
            }
            for (rk, rv) in self.mapping_or_empty(v, &fp)?.iter() {
                let rkey = self.key(rk, &fp)?;
                let rp = join(&fp, &rkey);
                let limits = match rkey.as_str() {
                    "limits" => true,
                    "reservations" => false,
                    _ => {
                        self.warn(&rp, "unsupported resources field, ignored");
                        continue;
                    }
                };
                for (lk, lv) in self.mapping_or_empty(rv, &rp)?.iter() {
                    let lkey = self.key(lk, &rp)?;
                    let lp = join(&rp, &lkey);
                    match (lkey.as_str(), limits) {
                        ("memory", true) => r.memory_limit = Some(self.bytes(lv, &lp)?),
                        ("memory", false) => r.memory_reservation = Some(self.bytes(lv, &lp)?),
                        ("cpus", true) => r.cpus = Some(self.float(lv, &lp)?),
                        ("cpus", false) => r.cpus_reservation = Some(self.float(lv, &lp)?),
                        _ => self.warn(&lp, "unsupported resource, ignored"),
                    }
                }
            }
        }
        Ok(())
    }

    fn service_secrets(&self, v: &Value, path: &str) -> R<Vec<ServiceSecret>> {
        let Value::Sequence(items) = v else {
            return Err(self.err(path, format!("expected a list of secrets, found {}", kind(v))));
        };
        let mut out = vec![];
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            match item {
                Value::Mapping(m) => {
                    let source = m.get("source").ok_or_else(|| self.err(&ip, "a long-form secret needs `source:`"))?;
                    let source = self.string(source, &join(&ip, "source"))?;
                    let target = match m.get("target") {
                        Some(t) => self.string(t, &join(&ip, "target"))?,
                        None => source.clone(),
                    };
                    out.push(ServiceSecret { source, target });
                }
                other => {
                    let s = self.string(other, &ip)?;
                    out.push(ServiceSecret { source: s.clone(), target: s });
                }
            }
        }
        Ok(out)
    }

    fn logging(&mut self, v: &Value, path: &str) -> R<Logging> {
        let mut l = Logging::default();
        for (k, v) in self.mapping_or_empty(v, path)?.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "driver" => l.driver = self.opt_string(v, &fp)?,
                "options" => l.options = self.labels(v, &fp)?,
                _ => self.warn(&fp, "unsupported logging field, ignored"),
            }
        }
        Ok(l)
    }

    fn external(&self, v: &Value, path: &str, name: &mut Option<String>) -> R<bool> {
        match v {
            Value::Mapping(m) => {
                if let Some(n) = m.get("name") {
                    *name = Some(self.string(n, &join(path, "name"))?);
                }
                Ok(true)
            }
            other => self.boolean(other, path),
        }
    }

    fn network(&mut self, v: &Value, path: &str) -> R<Network> {
        let mut n = Network::default();
        for (k, v) in self.mapping_or_empty(v, path)?.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "name" => n.name = self.opt_string(v, &fp)?,
                "driver" => n.driver = self.opt_string(v, &fp)?,
                "driver_opts" => n.driver_opts = self.labels(v, &fp)?,
                "external" => n.external = self.external(v, &fp, &mut n.name)?,
                "internal" => n.internal = self.boolean(v, &fp)?,
                "attachable" => n.attachable = self.boolean(v, &fp)?,
                "enable_ipv6" => n.enable_ipv6 = self.boolean(v, &fp)?,
                "labels" => n.labels = self.labels(v, &fp)?,
                "ipam" => {
                    for (ik, iv) in self.mapping_or_empty(v, &fp)?.iter() {
                        let ikey = self.key(ik, &fp)?;
                        let ip = join(&fp, &ikey);
                        match ikey.as_str() {
                            "config" => {
                                let Value::Sequence(items) = iv else {
                                    return Err(self.err(&ip, format!("expected a list of subnets, found {}", kind(iv))));
                                };
                                for (i, item) in items.iter().enumerate() {
                                    let cp = format!("{ip}[{i}]");
                                    let mut c = IpamConfig::default();
                                    for (ck, cv) in self.mapping(item, &cp)? {
                                        let ckey = self.key(ck, &cp)?;
                                        let ccp = join(&cp, &ckey);
                                        match ckey.as_str() {
                                            "subnet" => c.subnet = self.opt_string(cv, &ccp)?,
                                            "gateway" => c.gateway = self.opt_string(cv, &ccp)?,
                                            "ip_range" => c.ip_range = self.opt_string(cv, &ccp)?,
                                            "aux_addresses" => self.warn(&ccp, "aux_addresses are not supported, ignored"),
                                            _ => return Err(self.err(&ccp, "unknown ipam config field; expected subnet, gateway or ip_range")),
                                        }
                                    }
                                    n.ipam.push(c);
                                }
                            }
                            "driver" | "options" => self.warn(&ip, "custom IPAM drivers are not supported, ignored"),
                            _ => self.warn(&ip, "unsupported ipam field, ignored"),
                        }
                    }
                }
                k if k.starts_with("x-") => {}
                _ => self.warn(&fp, "unsupported network field, ignored"),
            }
        }
        Ok(n)
    }

    fn volume(&mut self, v: &Value, path: &str) -> R<Volume> {
        let mut vol = Volume::default();
        for (k, v) in self.mapping_or_empty(v, path)?.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "name" => vol.name = self.opt_string(v, &fp)?,
                "driver" => vol.driver = self.opt_string(v, &fp)?,
                "driver_opts" => vol.driver_opts = self.labels(v, &fp)?,
                "external" => vol.external = self.external(v, &fp, &mut vol.name)?,
                "labels" => vol.labels = self.labels(v, &fp)?,
                k if k.starts_with("x-") => {}
                _ => self.warn(&fp, "unsupported volume field, ignored"),
            }
        }
        Ok(vol)
    }

    fn secret(&mut self, v: &Value, path: &str) -> R<Secret> {
        let mut s = Secret::default();
        for (k, v) in self.mapping_or_empty(v, path)?.iter() {
            let key = self.key(k, path)?;
            let fp = join(path, &key);
            match key.as_str() {
                "file" => s.file = Some(self.relative_path(&self.string(v, &fp)?)),
                "environment" => s.environment = self.opt_string(v, &fp)?,
                "external" => s.external = self.boolean(v, &fp)?,
                "name" => {}
                _ => self.warn(&fp, "unsupported secret field, ignored"),
            }
        }
        Ok(s)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn normalize_path(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `1h2m3s`, `1m30s`, `500ms`, `10s`, `2.5s`, or a bare number of seconds.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs >= 0.0).then_some((secs * 1000.0).round() as u64);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += num * factor;
        rest = &rest[unit_end..];
    }
    Some(total.round() as u64)
}

/// `512m`, `1g`, `256MB`, `1.5g`, `1024` (bytes).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let num: f64 = s[..split].parse().ok()?;
    let factor: u64 = match s[split..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    (num >= 0.0).then(|| (num * factor as f64).round() as u64)
}

fn check_protocol(p: &str) -> Result<(), String> {
    match p {
        "tcp" | "udp" | "sctp" => Ok(()),
        other => Err(format!("unknown protocol {other:?}; use tcp, udp or sctp")),
    }
}

fn parse_port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number {s:?}"))
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port_number(a)?, parse_port_number(b)?);
            if a > b {
                return Err(format!("port range {s:?} runs backwards"));
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port_number(s)?;
            Ok((p, p))
        }
    }
}

fn parse_published(s: &str) -> Result<Published, String> {
    let (a, b) = parse_range(s)?;
    Ok(if a == b { Published::Port(a) } else { Published::Range(a, b) })
}

/// The short port syntax: `[[HOST_IP:][HOST_PORT[-END]]:]CONTAINER_PORT[-END][/PROTOCOL]`, IPv6 host IPs in brackets.
pub fn parse_short_port(spec: &str) -> Result<Vec<Port>, String> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    check_protocol(&protocol)?;
    // Split off a bracketed IPv6 host IP first; otherwise split on ':' from the right.
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r.split_once(']').ok_or_else(|| format!("unclosed [ in port {spec:?}"))?;
        let after = after.strip_prefix(':').ok_or_else(|| format!("expected ':' after ]{ip}] in port {spec:?}"))?;
        (Some(ip.to_string()), after)
    } else {
        (None, rest)
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, host, container) = match (host_ip, parts.as_slice()) {
        (None, [c]) => (None, None, *c),
        (ip, [h, c]) if ip.is_some() => (ip, (!h.is_empty()).then_some(*h), *c),
        (None, [h, c]) => (None, (!h.is_empty()).then_some(*h), *c),
        (None, [ip, h, c]) => (Some(ip.to_string()), (!h.is_empty()).then_some(*h), *c),
        _ => return Err(format!("invalid port {spec:?}; expected [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]")),
    };
    let (c_start, c_end) = parse_range(container)?;
    let count = (c_end - c_start) as u32 + 1;
    let published: Vec<Option<Published>> = match host {
        None => vec![None; count as usize],
        Some(h) => {
            let (h_start, h_end) = parse_range(h)?;
            let h_count = (h_end - h_start) as u32 + 1;
            if count == 1 {
                vec![Some(if h_count == 1 { Published::Port(h_start) } else { Published::Range(h_start, h_end) })]
            } else if h_count == count {
                (0..count).map(|i| Some(Published::Port(h_start + i as u16))).collect()
            } else {
                return Err(format!("port {spec:?} maps {count} container ports onto {h_count} host ports; the ranges must be the same size"));
            }
        }
    };
    Ok((0..count)
        .zip(published)
        .map(|(i, published)| Port { target: c_start + i as u16, published, host_ip: host_ip.clone(), protocol: protocol.clone(), name: None })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Port {
        let mut v = parse_short_port(spec).unwrap();
        assert_eq!(v.len(), 1, "{spec}");
        v.remove(0)
    }

    #[test]
    fn short_ports() {
        assert_eq!(one("3000").published, None);
        assert_eq!(one("8000:8000").published, Some(Published::Port(8000)));
        let p = one("127.0.0.1::5000");
        assert_eq!((p.host_ip.as_deref(), p.published, p.target), (Some("127.0.0.1"), None, 5000));
        let p = one("127.0.0.1:8001:8001");
        assert_eq!((p.host_ip.as_deref(), p.published), (Some("127.0.0.1"), Some(Published::Port(8001))));
        assert_eq!(one("6060:6060/udp").protocol, "udp");
        assert_eq!(one("9000-9010:80").published, Some(Published::Range(9000, 9010)));
        let p = one("[::1]:6000:6000");
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        let many = parse_short_port("9090-9091:8080-8081").unwrap();
        assert_eq!(many.iter().map(|p| (p.target, p.published.clone())).collect::<Vec<_>>(), vec![
            (8080, Some(Published::Port(9090))),
            (8081, Some(Published::Port(9091)))
        ]);
        assert_eq!(parse_short_port("3000-3002").unwrap().len(), 3);
        assert!(parse_short_port("1:2:3:4").is_err());
        assert!(parse_short_port("70000").is_err());
        assert!(parse_short_port("80/xtp").is_err());
        assert!(parse_short_port("9000-9001:80-82").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("10"), Some(10_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("10x"), None);
        assert_eq!(parse_bytes("512M"), Some(512 << 20));
        assert_eq!(parse_bytes("1g"), Some(1 << 30));
        assert_eq!(parse_bytes("256mb"), Some(256 << 20));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("lots"), None);
    }

    #[test]
    fn names() {
        assert_eq!(normalize_name("My Project!".into()), "myproject");
        assert_eq!(normalize_name("_netra-Test_1".into()), "netra-test_1");
    }
}
