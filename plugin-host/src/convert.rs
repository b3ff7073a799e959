//! Between the plan and the WIT types: the snapshot a plugin sees, and how each kind of intent changes the plan.
//! Intents are checked here (unknown services, malformed CIDRs, backwards ranges…) so a plugin's mistake is reported
//! as the plugin's, with its name, before anything is resolved.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use orch_compose::{Build, Healthcheck, Logging, Resources};

use super::PluginError;
use super::runtime::types as w;
use super::runtime::wit::exports::orch::policy as ex;
use crate::facts::Facts;
use crate::plan::*;

fn kv(map: &BTreeMap<String, String>) -> Vec<w::KeyValue> {
    map.iter().map(|(k, v)| w::KeyValue { key: k.clone(), value: v.clone() }).collect()
}

/// What a plugin sees instead of a value it has no need for.
pub const REDACTED: &str = "<redacted>";

/// Whether an environment variable or build arg holds a secret by its name (`DB_PASSWORD`, `API_KEY`, `GH_TOKEN`…).
pub fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "PRIVATE", "CERT", "SALT", "SESSION", "COOKIE", "DSN"].iter().any(|w| k.contains(w))
}

/// A value as a plugin sees it: a secret by name is [`REDACTED`]; a URL keeps its shape but not its password
/// (`postgres://app:<redacted>@db/app`).
pub fn redact(key: &str, value: &str) -> String {
    if is_secret_name(key) && !value.is_empty() {
        return REDACTED.to_string();
    }
    if let Some((scheme, rest)) = value.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:{REDACTED}@{host}");
    }
    value.to_string()
}

fn redacted_kv(map: &BTreeMap<String, String>) -> Vec<w::KeyValue> {
    map.iter().map(|(k, v)| w::KeyValue { key: k.clone(), value: redact(k, v) }).collect()
}

fn from_kv(list: &[w::KeyValue]) -> BTreeMap<String, String> {
    list.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
}

pub fn env_kind(k: EnvKind) -> w::EnvKind {
    match k {
        EnvKind::Test => w::EnvKind::Test,
        EnvKind::Dev => w::EnvKind::Dev,
        EnvKind::Ci => w::EnvKind::Ci,
        EnvKind::Prod => w::EnvKind::Prod,
    }
}

pub fn level(l: w::Level) -> Level {
    match l {
        w::Level::Debug => Level::Debug,
        w::Level::Info => Level::Info,
        w::Level::Warning => Level::Warning,
        w::Level::Error => Level::Error,
    }
}

fn healthcheck(h: &Healthcheck) -> w::Healthcheck {
    w::Healthcheck {
        test: h.test.clone(),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        retries: h.retries,
        start_period_ms: h.start_period_ms,
        start_interval_ms: h.start_interval_ms,
    }
}

fn from_healthcheck(h: &w::Healthcheck) -> Healthcheck {
    Healthcheck {
        test: h.test.clone(),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        retries: h.retries,
        start_period_ms: h.start_period_ms,
        start_interval_ms: h.start_interval_ms,
    }
}

fn wait(s: &WaitStrategy) -> w::WaitStrategy {
    match s {
        WaitStrategy::Running => w::WaitStrategy::Running,
        WaitStrategy::Healthcheck => w::WaitStrategy::Healthcheck,
        WaitStrategy::Tcp { container_port } => w::WaitStrategy::Tcp(*container_port),
        WaitStrategy::Http { container_port, path, status } => {
            w::WaitStrategy::Http(w::HttpWait { container_port: *container_port, path: path.clone(), status: *status })
        }
        WaitStrategy::LogLine { pattern, stream, times } => w::WaitStrategy::LogLine(w::LogWait {
            pattern: pattern.clone(),
            stream: match stream {
                LogStream::Stdout => w::LogStream::Stdout,
                LogStream::Stderr => w::LogStream::Stderr,
                LogStream::Either => w::LogStream::Either,
            },
            times: *times,
        }),
        WaitStrategy::ExitZero => w::WaitStrategy::ExitZero,
    }
}

fn from_wait(s: &w::WaitStrategy) -> WaitStrategy {
    match s {
        w::WaitStrategy::Running => WaitStrategy::Running,
        w::WaitStrategy::Healthcheck => WaitStrategy::Healthcheck,
        w::WaitStrategy::Tcp(p) => WaitStrategy::Tcp { container_port: *p },
        w::WaitStrategy::Http(h) => WaitStrategy::Http { container_port: h.container_port, path: h.path.clone(), status: h.status },
        w::WaitStrategy::LogLine(l) => WaitStrategy::LogLine {
            pattern: l.pattern.clone(),
            stream: match l.stream {
                w::LogStream::Stdout => LogStream::Stdout,
                w::LogStream::Stderr => LogStream::Stderr,
                w::LogStream::Either => LogStream::Either,
            },
            times: l.times.max(1),
        },
        w::WaitStrategy::ExitZero => WaitStrategy::ExitZero,
    }
}

fn strategy(s: &PortStrategy) -> w::PortStrategy {
    match s {
        PortStrategy::Fixed { port } => w::PortStrategy::Fixed(*port),
        PortStrategy::Range { start, end } => w::PortStrategy::Range(w::PortRange { start: *start, end: *end }),
        PortStrategy::Hashed { start, end } => w::PortStrategy::Hashed(w::PortRange { start: *start, end: *end }),
        PortStrategy::Ephemeral => w::PortStrategy::Ephemeral,
        PortStrategy::Unpublished => w::PortStrategy::Unpublished,
    }
}

fn build(b: &Build) -> w::BuildSpec {
    w::BuildSpec { context: b.context.display().to_string(), dockerfile: b.dockerfile.clone(), target: b.target.clone(), args: redacted_kv(&b.args) }
}

/// The plugin's build, keeping what the WIT record does not carry (labels, build options) from the draft; an inline
/// Dockerfile gives way when the plugin names a Dockerfile.
fn from_build(b: &w::BuildSpec, previous: Option<&Build>) -> Build {
    let mut out = previous.cloned().unwrap_or_default();
    if out.dockerfile != b.dockerfile {
        out.dockerfile_inline = None;
    }
    out.context = b.context.clone().into();
    out.dockerfile = b.dockerfile.clone();
    // An arg the plugin saw redacted and handed back unchanged keeps its real value.
    let before = std::mem::take(&mut out.args);
    out.args = b
        .args
        .iter()
        .map(|p| {
            let real = before.get(&p.key).filter(|v| redact(&p.key, v) == p.value);
            (p.key.clone(), real.cloned().unwrap_or_else(|| p.value.clone()))
        })
        .collect();
    out.target = b.target.clone();
    out
}

fn logging(l: &Logging) -> w::Logging {
    w::Logging { driver: l.driver.clone().unwrap_or_else(|| "json-file".into()), options: kv(&l.options) }
}

fn file_refs(s: &crate::plan::ServicePlan, kind: &str) -> Vec<w::FileRef> {
    s.files.iter().filter(|f| f.kind == kind).map(|f| w::FileRef { name: f.name.clone(), target: f.target.clone() }).collect()
}

/// What a plugin sees: the plan as it stands, its own settings, the host's facts and the environment's seed.
pub fn snapshot(plan: &Plan, settings: &str, facts: &Facts) -> w::Snapshot {
    let services = plan
        .services
        .iter()
        .map(|(name, s)| w::Service {
            name: name.clone(),
            image: s.image.clone(),
            build: s.build.as_ref().map(build),
            container_name: s.requested_container_name.clone(),
            ports: s
                .ports
                .iter()
                .map(|p| w::ServicePort {
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    host_ip: p.host_ip.clone(),
                    strategy: strategy(&p.strategy),
                })
                .collect(),
            networks: s
                .networks
                .iter()
                .map(|(n, a)| w::ServiceNetwork { network: n.clone(), aliases: a.aliases.clone(), ipv4_address: a.ipv4_address.clone() })
                .collect(),
            healthcheck: s.healthcheck.as_ref().map(healthcheck),
            wait: s.wait.iter().map(wait).collect(),
            labels: kv(&s.labels),
            environment: redacted_kv(&s.environment),
            depends_on: s.depends_on.keys().cloned().collect(),
            resources: w::Resources { memory_limit: s.resources.memory_limit, memory_reservation: s.resources.memory_reservation, cpus: s.resources.cpus },
            // Plugins see every tmpfs mount point, whether `tmpfs:` or a `type: tmpfs` volume made it.
            tmpfs: s.tmpfs.iter().cloned().chain(s.volumes.iter().filter(|m| m.kind == "tmpfs").map(|m| m.target.clone())).collect(),
            logging: s.logging.as_ref().map(logging),
            volumes: s
                .volumes
                .iter()
                .map(|m| w::Mount { kind: m.kind.clone(), source: m.source.clone(), target: m.target.clone(), read_only: m.read_only })
                .collect(),
            cap_add: s.runtime.cap_add.clone(),
            cap_drop: s.runtime.cap_drop.clone(),
            privileged: s.runtime.privileged,
            read_only: s.runtime.read_only,
            network_mode: s.network_mode.clone(),
            secrets: file_refs(s, "secret"),
            configs: file_refs(s, "config"),
            profiles: s.profiles.clone(),
            user: s.user.clone(),
            placement: s.runtime.placement.clone(),
        })
        .collect();
    let networks = plan
        .networks
        .iter()
        .map(|(name, n)| w::Network {
            name: name.clone(),
            external: n.external,
            internal: n.internal,
            driver: n.driver.clone(),
            subnet: n.subnet_request.as_ref().map(|r| match r {
                SubnetRequest::Size(s) => w::SubnetRequest::Size(*s),
                SubnetRequest::Fixed(c) => w::SubnetRequest::Fixed(c.clone()),
            }),
            gateway: n.gateway.clone(),
            ip_range: n.ip_range.clone(),
            driver_opts: kv(&n.driver_opts),
        })
        .collect();
    w::Snapshot {
        api_version: super::runtime::API_VERSION.into(),
        project: plan.identity.project.clone(),
        env_id: plan.identity.env_id.clone(),
        env_kind: env_kind(plan.identity.env_kind),
        services,
        networks,
        settings: settings.into(),
        facts: w::Facts {
            taken_subnets: facts.taken_subnets.iter().map(|n| n.to_string()).collect(),
            taken_host_ports: facts.taken_host_ports.iter().copied().collect(),
            local_images: facts.local_images.iter().cloned().collect(),
        },
        seed: plan.identity.seed(),
    }
}

/// Checks and applies what one call returned; `source` is "plugin:NAME".
struct Apply<'a> {
    plan: &'a mut Plan,
    plugin: &'a str,
    call: &'static str,
    source: String,
}

impl Apply<'_> {
    fn invalid(&self, message: impl Into<String>) -> PluginError {
        PluginError::InvalidOutput { plugin: self.plugin.into(), call: self.call.into(), message: message.into() }
    }

    fn service(&self, name: &str) -> Result<(), PluginError> {
        if self.plan.services.contains_key(name) {
            Ok(())
        } else {
            Err(self.invalid(format!(
                "it names service {name:?}, which the plan does not have (services: {})",
                self.plan.services.keys().cloned().collect::<Vec<_>>().join(", ")
            )))
        }
    }

    /// Edits one service; `f` returns the fields it set, which are recorded as set by this plugin.
    fn edit(&mut self, service: &str, f: impl FnOnce(&mut ServicePlan) -> Vec<&'static str>) {
        let touched = f(self.plan.services.get_mut(service).expect("checked by Apply::service"));
        let source = self.source.clone();
        for t in touched {
            self.plan.set_by(format!("services.{service}.{t}"), &source);
        }
    }

    fn diagnostics(&mut self, list: &[w::Diagnostic]) {
        for d in list {
            let (source, path) = (self.source.clone(), d.path.clone());
            self.plan.diagnose(level(d.level), &d.code, d.message.clone(), path, &source);
        }
    }

    fn cidr(&self, what: &str, value: &str) -> Result<Ipv4Net, PluginError> {
        value.parse::<Ipv4Net>().map_err(|_| self.invalid(format!("{what} {value:?} is not an IPv4 CIDR such as 10.1.2.0/24")))
    }
}

pub fn apply_networks(plan: &mut Plan, plugin: &str, out: &ex::networks::NetworkPlan) -> Result<(), PluginError> {
    let mut a = Apply { plan, plugin, call: "networks.plan", source: format!("plugin:{plugin}") };
    for n in &out.networks {
        if n.name.is_empty() || !n.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(a.invalid(format!("network name {:?} must be letters, digits, - or _", n.name)));
        }
        match &n.subnet {
            Some(w::SubnetRequest::Size(s)) if !(8..=29).contains(s) => {
                return Err(a.invalid(format!("network {}: subnet size /{s} is outside /8../29", n.name)));
            }
            Some(w::SubnetRequest::Fixed(c)) => {
                a.cidr(&format!("network {}: subnet", n.name), c)?;
            }
            _ => {}
        }
        if let Some(g) = &n.gateway {
            g.parse::<std::net::Ipv4Addr>().map_err(|_| a.invalid(format!("network {}: gateway {g:?} is not an IPv4 address", n.name)))?;
        }
        if let Some(r) = &n.ip_range {
            a.cidr(&format!("network {}: ip-range", n.name), r)?;
        }
        let identity = a.plan.identity.clone();
        let p = format!("networks.{}", n.name);
        let entry = a.plan.networks.entry(n.name.clone()).or_insert_with(|| NetworkPlan {
            docker_name: identity.resource_name(&n.name),
            external: false,
            internal: false,
            driver: "bridge".into(),
            subnet_request: None,
            subnet: None,
            gateway: None,
            ip_range: None,
            driver_opts: BTreeMap::new(),
            labels: BTreeMap::new(),
        });
        if entry.external {
            return Err(a.invalid(format!("network {} is external (owned outside orch); a plugin cannot change it", n.name)));
        }
        let mut touched = vec![];
        if let Some(s) = &n.subnet {
            let request = match s {
                w::SubnetRequest::Size(s) => SubnetRequest::Size(*s),
                w::SubnetRequest::Fixed(c) => SubnetRequest::Fixed(c.clone()),
            };
            // A gateway and ip-range belong to the subnet they were set for: a new subnet resets them unless this
            // intent sets them too.
            if entry.subnet_request.as_ref() != Some(&request) {
                entry.gateway = None;
                entry.ip_range = None;
            }
            entry.subnet_request = Some(request);
            touched.push("subnet");
        }
        if let Some(g) = &n.gateway {
            entry.gateway = Some(g.clone());
            touched.push("gateway");
        }
        if let Some(r) = &n.ip_range {
            entry.ip_range = Some(r.clone());
            touched.push("ip_range");
        }
        if let Some(i) = n.internal {
            entry.internal = i;
            touched.push("internal");
        }
        if let Some(d) = &n.driver {
            entry.driver = d.clone();
            touched.push("driver");
        }
        if !n.driver_opts.is_empty() {
            entry.driver_opts.extend(from_kv(&n.driver_opts));
            touched.push("driver_opts");
        }
        let source = a.source.clone();
        a.plan.set_by(p.clone(), &source);
        for t in touched {
            a.plan.set_by(format!("{p}.{t}"), &source);
        }
    }
    for att in &out.attachments {
        a.service(&att.service)?;
        for n in &att.networks {
            if !a.plan.networks.contains_key(&n.network) {
                return Err(a.invalid(format!("it attaches {} to network {:?}, which neither the compose file nor the plugin defines", att.service, n.network)));
            }
        }
        let networks =
            att.networks.iter().map(|n| (n.network.clone(), Attachment { aliases: n.aliases.clone(), ipv4_address: n.ipv4_address.clone() })).collect();
        a.plan.services.get_mut(&att.service).expect("checked above").networks = networks;
        let source = a.source.clone();
        a.plan.set_by(format!("services.{}.networks", att.service), &source);
    }
    a.diagnostics(&out.diagnostics);
    Ok(())
}

pub fn apply_ports(plan: &mut Plan, plugin: &str, out: &ex::ports::PortPlan) -> Result<(), PluginError> {
    let mut a = Apply { plan, plugin, call: "ports.plan", source: format!("plugin:{plugin}") };
    for p in &out.ports {
        a.service(&p.service)?;
        if p.container_port == 0 {
            return Err(a.invalid(format!("service {}: container port 0 is not a port", p.service)));
        }
        if !matches!(p.protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(a.invalid(format!("service {}: protocol {:?} is not tcp, udp or sctp", p.service, p.protocol)));
        }
        let strategy = match &p.strategy {
            w::PortStrategy::Fixed(port) => PortStrategy::Fixed { port: *port },
            w::PortStrategy::Range(r) | w::PortStrategy::Hashed(r) if r.start == 0 || r.start > r.end => {
                return Err(a.invalid(format!("service {}: port range {}-{} is empty or starts at 0", p.service, r.start, r.end)));
            }
            w::PortStrategy::Range(r) => PortStrategy::Range { start: r.start, end: r.end },
            w::PortStrategy::Hashed(r) => PortStrategy::Hashed { start: r.start, end: r.end },
            w::PortStrategy::Ephemeral => PortStrategy::Ephemeral,
            w::PortStrategy::Unpublished => PortStrategy::Unpublished,
        };
        let service = a.plan.services.get_mut(&p.service).expect("checked above");
        let port = PortPlan { container_port: p.container_port, protocol: p.protocol.clone(), host_ip: p.host_ip.clone(), strategy, host_port: None };
        let key = port.key();
        match service.ports.iter_mut().find(|x| x.key() == key) {
            Some(existing) => *existing = port,
            None => service.ports.push(port),
        }
        let source = a.source.clone();
        a.plan.set_by(format!("services.{}.ports.{key}", p.service), &source);
    }
    a.diagnostics(&out.diagnostics);
    Ok(())
}

pub fn apply_health(plan: &mut Plan, plugin: &str, out: &ex::health::HealthPlan) -> Result<(), PluginError> {
    let mut a = Apply { plan, plugin, call: "health.plan", source: format!("plugin:{plugin}") };
    for h in &out.services {
        a.service(&h.service)?;
        if let Some(hc) = &h.healthcheck
            && !matches!(hc.test.first().map(String::as_str), Some("CMD" | "CMD-SHELL" | "NONE"))
        {
            return Err(a.invalid(format!("service {}: a healthcheck test must start with CMD, CMD-SHELL or NONE", h.service)));
        }
        a.edit(&h.service, |service| {
            let mut touched = vec![];
            if let Some(hc) = &h.healthcheck {
                service.healthcheck = Some(from_healthcheck(hc));
                touched.push("healthcheck");
            }
            if let Some(ws) = &h.wait {
                service.wait = ws.iter().map(from_wait).collect();
                touched.push("wait");
            }
            touched
        });
    }
    a.diagnostics(&out.diagnostics);
    Ok(())
}

pub fn apply_images(plan: &mut Plan, plugin: &str, out: &ex::images::ImagePlan) -> Result<(), PluginError> {
    let mut a = Apply { plan, plugin, call: "images.plan", source: format!("plugin:{plugin}") };
    for i in &out.services {
        a.service(&i.service)?;
        if i.image.as_deref().is_some_and(|s| s.trim().is_empty() || s.contains(char::is_whitespace)) {
            return Err(a.invalid(format!("service {}: image reference {:?} is not valid", i.service, i.image.as_deref().unwrap_or_default())));
        }
        if let Some(b) = &i.build
            && let Some(why) = build_refusal(a.plan, b)
        {
            return Err(a.invalid(format!("service {}: {why}", i.service)));
        }
        a.edit(&i.service, |service| {
            let mut touched = vec![];
            if let Some(img) = &i.image {
                service.image = Some(img.clone());
                touched.push("image");
            }
            if let Some(b) = &i.build {
                service.build = Some(from_build(b, service.build.as_ref()));
                touched.push("build");
            }
            touched
        });
    }
    a.diagnostics(&out.diagnostics);
    Ok(())
}

/// Why a plugin may not build from here: its context and Dockerfile must lie inside a directory the compose file
/// already builds from (which the compose import confined to the project), so a plugin cannot send the engine, or
/// read, any other part of the host.
fn build_refusal(plan: &Plan, b: &w::BuildSpec) -> Option<String> {
    let normalize = orch_compose::normalize_path;
    let contexts: Vec<&std::path::Path> = plan.services.values().filter_map(|s| s.build.as_ref()).map(|b| b.context.as_path()).collect();
    let context = normalize(std::path::Path::new(&b.context));
    let inside = |p: &std::path::Path| contexts.iter().any(|c| p.starts_with(c) && orch_compose::input::within(c, p));
    if !context.is_absolute() || !inside(&context) {
        return Some(format!(
            "build context {} is not inside a directory the compose file builds from; a plugin may only choose among the project's own build contexts",
            b.context
        ));
    }
    if let Some(df) = &b.dockerfile
        && !inside(&normalize(&context.join(df)))
    {
        return Some(format!("Dockerfile {df} is outside the build context {}; name a Dockerfile inside it", b.context));
    }
    None
}

/// Checks a placement constraint as Swarm reads it: `KEY==VALUE` or `KEY!=VALUE`, with a key Swarm knows.
fn placement_constraint(c: &str) -> Result<(), String> {
    let Some((key, _, value)) = orch_compose::split_constraint(c) else {
        return Err("is neither KEY==VALUE nor KEY!=VALUE".into());
    };
    let known = ["node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"].contains(&key)
        || ["node.labels.", "engine.labels."].iter().any(|p| key.strip_prefix(p).is_some_and(|l| !l.is_empty()));
    if !known {
        return Err(format!(
            "has key {key:?}; Swarm knows node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.NAME and engine.labels.NAME"
        ));
    }
    if value.is_empty() || value.contains("==") || value.contains("!=") {
        return Err(format!("has no single value after its operator ({value:?})"));
    }
    Ok(())
}

/// Why a plugin may not set this label: `orch.` keys are orch's own (the reaper and `gc` trust them), and labels are
/// readable by every user of the engine, so one may not carry the value of an environment variable or build arg
/// (a value of 8 or more characters found in it). Says which variable, never the value.
fn label_refusal(plan: &Plan, key: &str, value: &str) -> Option<String> {
    if key.starts_with("orch.") {
        return Some("keys under `orch.` are orch's own; choose another prefix".into());
    }
    for (name, s) in &plan.services {
        let args = s.build.iter().flat_map(|b| b.args.iter());
        if let Some((var, _)) = s.environment.iter().chain(args).find(|(_, v)| v.len() >= 8 && value.contains(v.as_str())) {
            return Some(format!(
                "its value copies {var} of service {name}; labels are readable by every user of the engine, so a plugin may not put an environment value in one"
            ));
        }
    }
    None
}

pub fn apply_services(plan: &mut Plan, plugin: &str, out: &ex::services::ServicePlan) -> Result<(), PluginError> {
    let mut a = Apply { plan, plugin, call: "services.plan", source: format!("plugin:{plugin}") };
    for i in &out.services {
        // tmpfs requests on paths the compose file mounts from a volume or the host: (path, kind, source).
        let mut kept: Vec<(String, String, Option<String>)> = vec![];
        a.service(&i.service)?;
        if i.add_tmpfs.iter().any(|t| !t.starts_with('/')) {
            return Err(a.invalid(format!("service {}: tmpfs mount points must be absolute paths", i.service)));
        }
        for c in i.placement.iter().flatten() {
            if let Err(why) = placement_constraint(c) {
                return Err(a.invalid(format!("service {}: placement constraint {c:?} {why}", i.service)));
            }
        }
        for l in &i.add_labels {
            if let Some(why) = label_refusal(a.plan, &l.key, &l.value) {
                return Err(a.invalid(format!("service {}: label {}: {why}", i.service, l.key)));
            }
        }
        a.edit(&i.service, |service| {
            let mut touched = vec![];
            if let Some(r) = &i.resources {
                let merged = Resources {
                    memory_limit: r.memory_limit.or(service.resources.memory_limit),
                    memory_reservation: r.memory_reservation.or(service.resources.memory_reservation),
                    cpus: r.cpus.or(service.resources.cpus),
                    cpus_reservation: service.resources.cpus_reservation,
                };
                service.resources = merged;
                touched.push("resources");
            }
            // A path the compose file already mounts (a volume, a bind or a tmpfs) keeps the user's mount.
            for t in &i.add_tmpfs {
                if let Some(m) = service.volumes.iter().find(|m| &m.target == t && m.kind != "tmpfs") {
                    kept.push((t.clone(), m.kind.clone(), m.source.clone()));
                } else if !service.tmpfs.contains(t) && !service.volumes.iter().any(|m| &m.target == t) {
                    service.tmpfs.push(t.clone());
                    touched.push("tmpfs");
                }
            }
            if let Some(l) = &i.logging {
                service.logging = Some(Logging { driver: Some(l.driver.clone()), options: from_kv(&l.options) });
                touched.push("logging");
            }
            if !i.add_labels.is_empty() {
                service.labels.extend(from_kv(&i.add_labels));
                touched.push("labels");
            }
            if !i.add_environment.is_empty() {
                service.environment.extend(from_kv(&i.add_environment));
                touched.push("environment");
            }
            if i.drop_container_name && service.requested_container_name.take().is_some() {
                touched.push("container_name");
            }
            if let Some(p) = &i.placement
                && *p != service.runtime.placement
            {
                service.runtime.placement = p.clone();
                touched.push("placement");
            }
            touched.dedup();
            touched
        });
        for (target, kind, source) in kept {
            let what = match (kind.as_str(), source) {
                ("volume", Some(name)) => format!("the named volume {name}"),
                ("bind", Some(path)) => format!("the host path {path}"),
                (kind, _) => format!("a {kind} mount"),
            };
            // orch's decision, not the plugin's: a warning from orch that names the plugin and the mount.
            let service = i.service.clone();
            a.plan.diagnose(
                Level::Warning,
                "plan.tmpfs-kept-mount",
                format!(
                    "service {service}: {target} stays on {what} as the compose file says; plugin {plugin} asked for tmpfs there, which orch did not apply"
                ),
                Some(format!("services.{service}.volumes")),
                "orch",
            );
        }
    }
    a.diagnostics(&out.diagnostics);
    // orch's note that a fixed name lives on as an alias is no longer true where a plugin dropped the name.
    for i in out.services.iter().filter(|i| i.drop_container_name) {
        let path = format!("services.{}.container_name", i.service);
        let explained = out.diagnostics.iter().any(|d| d.path.as_deref() == Some(path.as_str()));
        let Some(at) = plan.diagnostics.iter().position(|d| d.code == "compose.container-name-alias" && d.path.as_deref() == Some(path.as_str())) else {
            continue;
        };
        plan.diagnostics.remove(at);
        if !explained {
            plan.diagnose(
                Level::Info,
                "compose.container-name-dropped",
                format!("service {}: its fixed container name is dropped (not kept as an alias) by plugin {plugin}", i.service),
                Some(path),
                &format!("plugin:{plugin}"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ex::services::{ServiceIntent, ServicePlan};
    use crate::facts::Facts;
    use crate::plan::{Level, Plan};

    fn plan(compose: &str) -> Plan {
        orch_plan::test_support::resolved(compose, "cv", "t1")
    }

    fn intent(service: &str) -> ServiceIntent {
        ServiceIntent {
            service: service.into(),
            resources: None,
            add_tmpfs: vec![],
            logging: None,
            add_labels: vec![],
            add_environment: vec![],
            drop_container_name: false,
            placement: None,
        }
    }

    fn placing(service: &str, placement: &[&str]) -> ServicePlan {
        let intent = ServiceIntent { placement: Some(placement.iter().map(|c| c.to_string()).collect()), ..intent(service) };
        ServicePlan { services: vec![intent], diagnostics: vec![] }
    }

    #[test]
    fn a_plugins_placement_replaces_the_services_and_is_recorded_as_the_plugins() {
        let mut p = plan("services:\n  db:\n    image: postgres\n    deploy:\n      placement:\n        constraints: [node.role==worker]\n");
        assert_eq!(super::snapshot(&p, "{}", &Facts::default()).services[0].placement, vec!["node.role==worker"]);
        super::apply_services(&mut p, "place", &placing("db", &["node.role==worker", "node.labels.ssd == true"])).unwrap();
        assert_eq!(p.services["db"].runtime.placement, vec!["node.role==worker", "node.labels.ssd == true"]);
        assert_eq!(p.provenance["services.db.placement"], vec!["plugin:place"]);
    }

    #[test]
    fn a_tmpfs_request_on_a_mounted_path_keeps_the_mount_and_says_so() {
        let mut p = plan("services:\n  db:\n    image: postgres\n    volumes: [data:/var/lib/postgresql/data]\nvolumes:\n  data: {}\n");
        let out = ServicePlan {
            services: vec![ServiceIntent { add_tmpfs: vec!["/var/lib/postgresql/data".into(), "/tmp".into()], ..intent("db") }],
            diagnostics: vec![],
        };
        super::apply_services(&mut p, "iso", &out).unwrap();
        assert_eq!(p.services["db"].tmpfs, vec!["/tmp"]);
        let note = p.diagnostics.iter().find(|d| d.code == "plan.tmpfs-kept-mount").expect("a note");
        assert!(note.message.contains("named volume data") && note.message.contains("plugin iso"), "{}", note.message);
        assert_eq!((note.source.as_str(), note.level), ("orch", Level::Warning), "orch decided, so orch warns");
    }

    #[test]
    fn a_placement_swarm_cannot_read_is_the_plugins_error_and_changes_nothing() {
        let mut p = plan("services:\n  db:\n    image: postgres\n");
        for (bad, why) in [
            ("ssd", "neither KEY==VALUE nor KEY!=VALUE"),
            ("node.colour==red", "Swarm knows node.id"),
            ("node.labels.==x", "Swarm knows"),
            ("node.role==", "no single value"),
            ("node.role==a==b", "no single value"),
        ] {
            let err = super::apply_services(&mut p, "place", &placing("db", &[bad])).unwrap_err().to_string();
            assert!(err.contains("plugin place") && err.contains("service db") && err.contains(why), "{bad}: {err}");
            assert!(p.services["db"].runtime.placement.is_empty());
        }
    }

    #[test]
    fn plugins_see_secrets_redacted_and_their_build_args_come_back_real() {
        let p = plan(
            "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_USER: app\n      POSTGRES_PASSWORD: hunter2hunter2\n      DATABASE_URL: postgres://app:hunter2hunter2@db/app\n  web:\n    build:\n      context: .\n      args:\n        NPM_TOKEN: tok-123456789\n        MODE: fast\n",
        );
        let snap = super::snapshot(&p, "{}", &Facts::default());
        let db = snap.services.iter().find(|s| s.name == "db").unwrap();
        let env: std::collections::BTreeMap<_, _> = db.environment.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect();
        assert_eq!(env["POSTGRES_USER"], "app", "what plugins need (user and database names) they see");
        assert_eq!(env["POSTGRES_PASSWORD"], super::REDACTED);
        assert_eq!(env["DATABASE_URL"], "postgres://app:<redacted>@db/app");
        let web = snap.services.iter().find(|s| s.name == "web").unwrap();
        let b = web.build.clone().unwrap();
        assert!(b.args.iter().any(|kv| kv.key == "NPM_TOKEN" && kv.value == super::REDACTED));
        // A plugin that hands the build back unchanged (say, with a new target) does not lose the real token.
        let mut p = p;
        let out = super::ex::images::ImagePlan {
            services: vec![super::ex::images::ImageIntent {
                service: "web".into(),
                image: None,
                build: Some(super::w::BuildSpec { target: Some("slim".into()), ..b }),
            }],
            diagnostics: vec![],
        };
        super::apply_images(&mut p, "t", &out).unwrap();
        let args = &p.services["web"].build.as_ref().unwrap().args;
        assert_eq!(args["NPM_TOKEN"], "tok-123456789");
        assert_eq!(args["MODE"], "fast");
    }

    #[test]
    fn plugin_labels_may_not_be_orchs_nor_copy_environment_values() {
        let mut p = plan("services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: hunter2hunter2\n");
        let label = |k: &str, v: &str| ServicePlan {
            services: vec![ServiceIntent { add_labels: vec![super::w::KeyValue { key: k.into(), value: v.into() }], ..intent("db") }],
            diagnostics: vec![],
        };
        let err = super::apply_services(&mut p, "t", &label("orch.lifetime", "kept")).unwrap_err().to_string();
        assert!(err.contains("orch.lifetime") && err.contains("orch's own"), "{err}");
        let err = super::apply_services(&mut p, "t", &label("team.debug", "pw=hunter2hunter2")).unwrap_err().to_string();
        assert!(err.contains("POSTGRES_PASSWORD") && !err.contains("hunter2"), "{err}");
        super::apply_services(&mut p, "t", &label("team.tier", "db")).unwrap();
        assert_eq!(p.services["db"].labels["team.tier"], "db");
    }

    #[test]
    fn a_plugin_builds_only_from_the_projects_own_contexts() {
        let mut p = plan("services:\n  web:\n    build: .\n");
        let ctx = p.services["web"].build.as_ref().unwrap().context.display().to_string();
        let with = |context: &str, dockerfile: Option<&str>| super::ex::images::ImagePlan {
            services: vec![super::ex::images::ImageIntent {
                service: "web".into(),
                image: None,
                build: Some(super::w::BuildSpec { context: context.into(), dockerfile: dockerfile.map(String::from), target: None, args: vec![] }),
            }],
            diagnostics: vec![],
        };
        for (context, dockerfile) in [("/", None), ("/etc", None), (&format!("{ctx}/.."), None), (ctx.as_str(), Some("../../etc/passwd")), ("rel", None)] {
            let err = super::apply_images(&mut p, "t", &with(context, dockerfile)).unwrap_err().to_string();
            assert!(err.contains("build context") || err.contains("Dockerfile"), "{context} {dockerfile:?}: {err}");
        }
        super::apply_images(&mut p, "t", &with(&format!("{ctx}/sub/.."), Some("alpine.Dockerfile"))).unwrap();
    }
}
