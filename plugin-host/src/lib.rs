//! Policy plugins: references to them (built-in, path, crate, OCI), their settings, and the pipeline that applies
//! them to a plan in order. The sandbox itself is in [`runtime`]; plan ↔ WIT conversion in [`convert`]; fetching,
//! building and pinning in [`source`], [`oci`] and [`lock`].

pub mod convert;
pub mod decided;
pub mod limits;
pub mod lock;
pub mod oci;
mod oci_pull;
pub mod runtime;
pub mod sdk;
pub mod sealed;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use runtime::types::Policy;
pub use runtime::{API_VERSION, LoadedPlugin, Runtime};

// The plan layer, at the paths this crate names it by.
use orch_plan::{atomic, facts, plan};

use crate::facts::Facts;
use crate::plan::{Level, Plan};

use orch_builtin_plugins as builtin;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "unknown plugin {name:?}: built-in plugins are {builtins}; anything else must be a path to a .wasm component or a plugin crate (e.g. ./policies/mine.wasm), or an oci:// reference"
    )]
    Unknown { name: String, builtins: String },
    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the plugin engine failed: {0}")]
    Engine(String),
    #[error("plugin {plugin} is not a valid WebAssembly component: {message}")]
    Compile { plugin: String, message: String },
    #[error("plugin {plugin} cannot be linked: {message}")]
    Link { plugin: String, message: String },
    #[error("plugin {plugin} is not an orch policy plugin: {message}; build it with the orch-plugin-api crate (see plugin-api/README.md)")]
    NotAPlugin { plugin: String, message: String },
    #[error(
        "plugin {plugin} was built against orch:policy@{found}, but this orch runs plugins built against orch:policy@{supported} (and 0.2.x, 0.1.x); rebuild the plugin against orch-plugin-api {supported}, or use an orch that supports {found}"
    )]
    IncompatibleApi { plugin: String, found: String, supported: String },
    #[error("plugin {plugin}: {call} used up its CPU budget ({fuel} fuel) — it probably loops forever")]
    OutOfFuel { plugin: String, call: String, fuel: u64 },
    #[error("plugin {plugin}: {call} ran past its {limit_ms} ms deadline")]
    Timeout { plugin: String, call: String, limit_ms: u64 },
    #[error("plugin {plugin}: {call} tried to wait {waited_ms} ms ({import}); a policy call cannot wait — it must answer from the snapshot at once")]
    Waited { plugin: String, call: String, import: String, waited_ms: u64 },
    #[error("plugin {plugin}: {call} tried to grow its memory to {requested} bytes, over its limit of {limit} bytes")]
    OutOfMemory { plugin: String, call: String, requested: usize, limit: usize },
    #[error(
        "plugin {plugin}: {call} tried to use {capability} ({import}); policy plugins get no files, sockets or environment — they receive everything in the snapshot"
    )]
    Forbidden { plugin: String, call: String, capability: String, import: String },
    /// `message` leads with the plugin's own panic message when it printed one; the wasm backtrace is kept apart
    /// (`ORCH_LOG=debug` shows it).
    #[error("plugin {plugin}: {call} crashed: {message}{}", if output.is_empty() { String::new() } else { format!("\n  plugin output:\n    {}", output.replace('\n', "\n    ")) })]
    Trap { plugin: String, call: String, message: String, output: String, backtrace: String },
    #[error("plugin {plugin}: {call} refused the plan: [{code}] {message}{}", path.as_ref().map(|p| format!(" (at {p})")).unwrap_or_default())]
    Refused { plugin: String, call: String, code: String, message: String, path: Option<String> },
    #[error("plugin {plugin}: {call} returned an invalid plan: {message}")]
    InvalidOutput { plugin: String, call: String, message: String },
    #[error("plugin {plugin}: {call} returned too much: {what}; nothing of it was used")]
    OutputTooLarge { plugin: String, call: String, what: String },
    /// The answer could not be copied out of the plugin: more than `limit` bytes (e.g. one buffer handed back many
    /// times), or malformed (out-of-bounds pointers, invalid UTF-8).
    #[error("plugin {plugin}: {call} returned an answer orch cannot read: {cause}; orch copies at most {limit} bytes of one answer and nothing of it was used")]
    Unreadable { plugin: String, call: String, cause: String, limit: usize },
    #[error("plugin {plugin} rejected its settings{}:\n{}", from.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Settings {
        plugin: String,
        problems: Vec<String>,
        /// Where the settings were written, when orch knows (orch.toml and the entry's key path).
        from: Option<String>,
    },
    #[error("invalid plugin setting {setting:?}: {message}")]
    SettingSyntax { setting: String, message: String },
    #[error("plugin {reference}: {message}")]
    Registry { reference: String, message: String },
    #[error("{}: {message}", path.display())]
    Lock { path: PathBuf, message: String },
    #[error("plugin {source_ref} does not match {}: it pins {locked}, but {why} ({found}). Nothing was run. If the new content is intended, run `orch plugin update {source_ref}` and commit orch.lock", lock.display())]
    LockMismatch { source_ref: String, lock: PathBuf, locked: String, found: String, why: String },
    #[error("cannot build the plugin crate {}: {message}", dir.display())]
    Build { dir: PathBuf, message: String },
}

impl PluginError {
    /// What only a debugging reader wants: the wasm backtrace of a crash.
    pub fn details(&self) -> Option<&str> {
        match self {
            PluginError::Trap { backtrace, .. } if !backtrace.is_empty() => Some(backtrace),
            _ => None,
        }
    }
}

/// Where a plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRef {
    Builtin(String),
    /// A `.wasm` component, or a plugin crate directory (built with cargo).
    Path(PathBuf),
    /// `oci://registry/repository[:tag][@digest]`, as written.
    Oci(String),
}

impl PluginRef {
    /// `oci://…` is a registry reference; a name with a path separator or a `.wasm` ending is a path; anything else a
    /// built-in name.
    pub fn parse(s: &str) -> PluginRef {
        if s.starts_with(oci::SCHEME) {
            PluginRef::Oci(s.to_string())
        } else if s.contains('/') || s.ends_with(".wasm") || s == "." || s == ".." {
            PluginRef::Path(PathBuf::from(s))
        } else {
            PluginRef::Builtin(s.to_string())
        }
    }

    /// The name the user gave, used in messages and for settings until `describe` names it.
    pub fn display_name(&self) -> String {
        match self {
            PluginRef::Builtin(n) => n.clone(),
            PluginRef::Path(p) => {
                let p = if p.is_dir() { std::path::absolute(p).unwrap_or_else(|_| p.clone()) } else { p.clone() };
                p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
            }
            PluginRef::Oci(text) => {
                let repo = text.trim_start_matches(oci::SCHEME).split('@').next().unwrap_or(text);
                let last = repo.rsplit('/').next().unwrap_or(repo);
                last.split(':').next().unwrap_or(last).to_string()
            }
        }
    }

    /// A built-in plugin's bytes.
    pub fn builtin(&self) -> Result<&'static [u8], PluginError> {
        match self {
            PluginRef::Builtin(name) => builtin_bytes(name).ok_or_else(|| PluginError::Unknown { name: name.clone(), builtins: builtin_names().join(", ") }),
            other => Err(PluginError::Unknown { name: other.display_name(), builtins: builtin_names().join(", ") }),
        }
    }
}

pub fn builtin_names() -> Vec<&'static str> {
    builtin::BUILTIN.iter().map(|(n, _)| *n).collect()
}

pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    builtin::BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// A plugin with the settings it runs with.
pub struct ActivePlugin {
    pub plugin: LoadedPlugin,
    /// A JSON object.
    pub settings: String,
}

/// Collects `--plugin-setting NAME.KEY=VALUE` into per-plugin JSON objects (VALUE is JSON if it parses, else a
/// string; KEY may be dotted to reach into objects).
pub fn parse_settings(base: BTreeMap<String, serde_json::Value>, flags: &[String]) -> Result<BTreeMap<String, serde_json::Value>, PluginError> {
    let mut out = base;
    for flag in flags {
        let err = |m: &str| PluginError::SettingSyntax { setting: flag.clone(), message: m.into() };
        let (lhs, value) = flag.split_once('=').ok_or_else(|| err("expected NAME.KEY=VALUE, e.g. bpo-networks.subnets=fixed"))?;
        let (plugin, key) = lhs.split_once('.').ok_or_else(|| err("expected NAME.KEY=VALUE, e.g. bpo-networks.subnets=fixed"))?;
        if plugin.is_empty() || key.is_empty() {
            return Err(err("the plugin name and the key must not be empty"));
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        let mut node = out.entry(plugin.to_string()).or_insert_with(|| serde_json::json!({}));
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let obj = node.as_object_mut().ok_or_else(|| err("cannot set a key inside a value that is not an object"))?;
            if i + 1 == parts.len() {
                obj.insert(part.to_string(), value.clone());
                break;
            }
            node = obj.entry(part.to_string()).or_insert_with(|| serde_json::json!({}));
        }
    }
    Ok(out)
}

/// A `--settings` argument: a JSON object written inline (it starts with `{`) or the path of a file holding one.
/// Returns what to name in errors (the file, or `--settings`) and the value.
pub fn settings_argument(given: &str) -> Result<(String, serde_json::Value), PluginError> {
    let (what, text) = if given.trim_start().starts_with('{') {
        ("--settings".to_string(), given.to_string())
    } else {
        let path = std::path::Path::new(given);
        let text = orch_compose::input::read_text(path, orch_compose::input::MAX_ENV_FILE)
            .map_err(|e| PluginError::Read { path: path.to_path_buf(), source: std::io::Error::other(e) })?;
        (path.display().to_string(), text)
    };
    let value = serde_json::from_str(&text).map_err(|e| PluginError::SettingSyntax { setting: what.clone(), message: format!("not JSON: {e}") })?;
    Ok((what, value))
}

/// The top-level keys of a plugin's settings JSON Schema (`properties`); none when it has no schema.
fn schema_keys(schema: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(schema)
        .ok()
        .and_then(|v| v.get("properties").and_then(|p| p.as_object()).map(|p| p.keys().cloned().collect()))
        .unwrap_or_default()
}

/// Loads plugins (nothing pinned: no project lock) and checks their settings.
pub fn activate(runtime: &Runtime, refs: &[PluginRef], settings: &BTreeMap<String, serde_json::Value>) -> Result<Vec<ActivePlugin>, PluginError> {
    activate_from(runtime, refs, settings, &mut source::Sources::new(runtime, None))
}

/// Fetches plugins through `sources` (verifying and pinning them in its lock), loads them, and checks their settings
/// with the plugins' own `validate-settings` — all before anything runs.
pub fn activate_from(
    runtime: &Runtime,
    refs: &[PluginRef],
    settings: &BTreeMap<String, serde_json::Value>,
    sources: &mut source::Sources,
) -> Result<Vec<ActivePlugin>, PluginError> {
    let mut out = vec![];
    for r in refs {
        let fetched = sources.fetch(r)?;
        let plugin = runtime.load(&r.display_name(), &fetched.bytes)?;
        sources.pin(&fetched, &plugin.description.name, &plugin.description.version)?;
        // Settings are found under the name the user typed or the name the plugin gives itself.
        let value = settings.get(&r.display_name()).or_else(|| settings.get(&plugin.description.name)).cloned().unwrap_or_else(|| serde_json::json!({}));
        let text = value.to_string();
        let problems = plugin.validate_settings(&text)?;
        let known = schema_keys(&plugin.description.settings_schema);
        let errors: Vec<String> = problems
            .iter()
            .filter(|d| matches!(d.level, runtime::types::Level::Error))
            .map(|d| {
                // A top-level key the plugin's own schema does not have: say which one it has that is nearest.
                let near = d
                    .path
                    .as_deref()
                    .filter(|p| !p.contains(['.', '[']) && !known.is_empty() && !known.iter().any(|k| k == p))
                    .and_then(|p| known.iter().map(|k| (strsim::jaro_winkler(p, k), k)).max_by(|a, b| a.0.total_cmp(&b.0)))
                    .map(|(_, k)| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                format!("{}{}{near} [{}]", d.path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default(), d.message, d.code)
            })
            .collect();
        if !errors.is_empty() {
            return Err(PluginError::Settings { plugin: plugin.name.clone(), problems: errors, from: None });
        }
        out.push(ActivePlugin { plugin, settings: text });
    }
    Ok(out)
}

/// The order policies are applied in, within each plugin.
pub const POLICY_ORDER: [Policy; 5] = [Policy::Services, Policy::Images, Policy::Networks, Policy::Ports, Policy::Health];

/// Time spent in one policy call.
#[derive(Debug, Clone)]
pub struct CallTiming {
    pub plugin: String,
    pub call: String,
    pub elapsed: Duration,
}

/// Applies every plugin, in order, to the plan; each call sees the plan as the previous calls left it.
pub fn apply_all(plan: &mut Plan, plugins: &[ActivePlugin], facts: &Facts) -> Result<Vec<CallTiming>, PluginError> {
    let mut timings = vec![];
    for active in plugins {
        let p = &active.plugin;
        plan.plugins.push(p.description.name.clone());
        for policy in POLICY_ORDER.into_iter().filter(|pol| p.implements(*pol)) {
            let snap = convert::snapshot(plan, &active.settings, facts);
            let name = p.name.as_str();
            let (logs, elapsed) = match policy {
                Policy::Networks => {
                    let out = p.plan_networks(&snap)?;
                    convert::apply_networks(plan, name, &out.value)?;
                    (out.logs, out.elapsed)
                }
                Policy::Ports => {
                    let out = p.plan_ports(&snap)?;
                    convert::apply_ports(plan, name, &out.value)?;
                    (out.logs, out.elapsed)
                }
                Policy::Health => {
                    let out = p.plan_health(&snap)?;
                    convert::apply_health(plan, name, &out.value)?;
                    (out.logs, out.elapsed)
                }
                Policy::Images => {
                    let out = p.plan_images(&snap)?;
                    convert::apply_images(plan, name, &out.value)?;
                    (out.logs, out.elapsed)
                }
                Policy::Services => {
                    let out = p.plan_services(&snap)?;
                    convert::apply_services(plan, name, &out.value)?;
                    (out.logs, out.elapsed)
                }
            };
            for (lvl, message) in logs {
                plan.diagnose(convert::level(lvl).min(Level::Info), "plugin.log", message, None, &format!("plugin:{name}"));
            }
            timings.push(CallTiming { plugin: name.to_string(), call: runtime::policy_interface(policy).to_string(), elapsed });
        }
    }
    Ok(timings)
}
