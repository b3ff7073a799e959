//! `orch.toml`: a project's defaults — compose files, plugins in order with their settings, environment kind,
//! subnet pools, admission cap — so that `orch up` in the project's folder needs no flags. Flags still win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const FILE_NAME: &str = "orch.toml";
/// The largest `orch.toml` orch reads.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectConfig {
    /// Compose files, relative to orch.toml.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    pub project: Option<String>,
    pub env_kind: Option<String>,
    #[serde(default)]
    pub profiles: Vec<String>,
    #[serde(default)]
    pub pools: Vec<String>,
    pub max_envs: Option<usize>,
    /// `local` (default) or `swarm`: where environments run (`--engine` and `ORCH_ENGINE` win).
    pub engine: Option<crate::engine::EngineKind>,
    /// `HOST:PORT` of a registry every node of a swarm can pull from: images orch has locally are pushed there when
    /// the swarm has more than one node.
    pub registry: Option<String>,
    /// Environments join the project's tier networks (`orch network create`) instead of making their own.
    #[serde(default)]
    pub join_networks: bool,
    /// Targets `orch bench` checks.
    #[serde(default)]
    pub bench: Targets,
    /// `[pool]`: the warm pool `orch pool start` keeps.
    #[serde(default)]
    pub pool: PoolConfig,
    #[serde(default)]
    pub plugins: Vec<PluginEntry>,
    /// The directory orch.toml is in (set on load).
    #[serde(skip)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// A built-in name, a path to a .wasm component or a plugin crate (relative to orch.toml), or `oci://…`.
    #[serde(rename = "use")]
    pub use_: String,
    #[serde(default)]
    pub settings: Option<toml::Table>,
}

/// The field names of a struct as serde sees them (its `deserialize_struct` call names them): the keys orch.toml
/// takes come from the types that read it, never from a list kept by hand.
fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Fields(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("fields read")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(self, _: &'static str, fields: &'static [&'static str], _: V) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
            newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut f = Fields(None);
    let _ = T::deserialize(&mut f);
    f.0.unwrap_or(&[])
}

/// A key orch.toml does not take, as an error naming it, its line, the nearest valid key and the valid ones; the
/// TOML parser's own message shows the line but not always which key or what would be right.
fn unknown_key(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    let line_of = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches('[').trim_start();
                l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(['=', ']', '.']))
            })
            .map(|n| format!(" (line {})", n + 1))
            .unwrap_or_default()
    };
    let check = |at: &str, keys: Vec<&String>, valid: &'static [&'static str]| -> Option<String> {
        let bad = keys.into_iter().find(|k| !valid.contains(&k.as_str()))?;
        let near = orch_compose::fields::nearest(bad, valid).map(|v| format!("did you mean `{v}`? ")).unwrap_or_default();
        Some(format!(
            "unknown key `{at}{bad}`{}; {near}{} takes: {}",
            line_of(bad),
            if at.is_empty() { "orch.toml" } else { at.trim_end_matches('.') },
            valid.join(", ")
        ))
    };
    if let Some(e) = check("", table.keys().collect(), struct_fields::<ProjectConfig>()) {
        return Some(e);
    }
    if let Some(toml::Value::Table(b)) = table.get("bench")
        && let Some(e) = check("bench.", b.keys().collect(), struct_fields::<Targets>())
    {
        return Some(e);
    }
    if let Some(toml::Value::Array(list)) = table.get("plugins") {
        for (i, p) in list.iter().enumerate() {
            if let toml::Value::Table(p) = p
                && let Some(e) = check(&format!("plugins[{i}]."), p.keys().collect(), struct_fields::<PluginEntry>())
            {
                return Some(e);
            }
        }
    }
    None
}

impl ProjectConfig {
    /// `explicit` (--config) or `orch.toml` in `cwd`, if there is one.
    pub fn find(explicit: Option<&Path>, cwd: &Path) -> Result<Option<ProjectConfig>, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = cwd.join(FILE_NAME);
                if !p.exists() {
                    return Ok(None);
                }
                p
            }
        };
        let text =
            orch_compose::input::read_text(&path, MAX_CONFIG_FILE).map_err(|e| ConfigError::Read { path: path.clone(), source: std::io::Error::other(e) })?;
        if let Some(message) = unknown_key(&text) {
            return Err(ConfigError::Invalid { path, message });
        }
        let mut cfg: ProjectConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid { path: path.clone(), message: e.to_string() })?;
        cfg.dir = std::path::absolute(path.parent().unwrap_or(Path::new("."))).unwrap_or_default();
        if let Some(k) = &cfg.env_kind {
            k.parse::<crate::plan::EnvKind>().map_err(|m| ConfigError::Invalid { path: path.clone(), message: format!("env-kind: {m}") })?;
        }
        for p in &cfg.pools {
            p.parse::<ipnet::Ipv4Net>().map_err(|_| ConfigError::Invalid { path: path.clone(), message: format!("pools: {p:?} is not an IPv4 CIDR") })?;
        }
        Ok(Some(cfg))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) }
    }

    /// Plugin references in order; relative paths are taken from orch.toml's folder.
    pub fn plugin_refs(&self) -> Vec<String> {
        self.plugins
            .iter()
            .map(|p| {
                let r = crate::plugins::PluginRef::parse(&p.use_);
                match r {
                    crate::plugins::PluginRef::Path(path) => self.resolve(&path).display().to_string(),
                    crate::plugins::PluginRef::Builtin(name) | crate::plugins::PluginRef::Oci(name) => name,
                }
            })
            .collect()
    }

    /// Settings by plugin name (the `use` value, or a path's file stem), as JSON.
    pub fn plugin_settings(&self) -> BTreeMap<String, serde_json::Value> {
        self.plugins
            .iter()
            .filter_map(|p| {
                let settings = p.settings.as_ref()?;
                let name = crate::plugins::PluginRef::parse(&p.use_).display_name();
                Some((name, serde_json::to_value(settings).expect("TOML tables convert to JSON")))
            })
            .collect()
    }
}

// `[bench]`: orch.toml's types live here; `orch bench` reads them.

/// Targets a bench checks (`[bench]` in orch.toml, `--target KEY=VALUE`). Unset targets are not checked; conflicts
/// and leftovers always are (there must be none).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "RawTargets")]
pub struct Targets {
    /// Each environment is up, every service ready, within this (seed 004: 30s).
    pub startup: Option<Duration>,
    /// Each environment uses at most this much memory, its services together (seed 004: 2GB).
    pub memory: Option<u64>,
    /// Each image of the stack is at most this big (seed 004: 200MB).
    pub image_size: Option<u64>,
    /// Each environment is removed within this (seed 004: 5s).
    pub cleanup: Option<Duration>,
}

/// `[pool]` in orch.toml: how many ready environments the keeper holds, and the warm-up commands each runs (with the
/// member's connection variables, in orch.toml's directory) before it counts as ready.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PoolConfig {
    pub size: Option<usize>,
    #[serde(default)]
    pub warm: Vec<String>,
}

/// `[bench]` as written: values as text, checked when orch.toml is read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTargets {
    startup: Option<String>,
    memory: Option<String>,
    image_size: Option<String>,
    cleanup: Option<String>,
}

impl TryFrom<RawTargets> for Targets {
    type Error = String;
    fn try_from(raw: RawTargets) -> Result<Targets, String> {
        let mut t = Targets::default();
        for (key, value) in [("startup", raw.startup), ("memory", raw.memory), ("image-size", raw.image_size), ("cleanup", raw.cleanup)] {
            if let Some(v) = value {
                t.set(key, &v).map_err(|m| format!("bench.{key}: {m}"))?;
            }
        }
        Ok(t)
    }
}

pub const TARGET_KEYS: &str = "startup, memory, image-size, cleanup";

impl Targets {
    /// Sets one target from text: durations like `30s`, sizes like `200MB` or `2GiB`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let duration =
            || orch_compose::parse_duration_ms(value).map(Duration::from_millis).ok_or_else(|| format!("{value:?} is not a duration (e.g. 30s, 2m)"));
        let size = || value.trim().parse::<bytesize::ByteSize>().map(|b| b.as_u64()).map_err(|e| format!("{value:?} is not a size (e.g. 200MB, 2GiB): {e}"));
        match key {
            "startup" => self.startup = Some(duration()?),
            "cleanup" => self.cleanup = Some(duration()?),
            "memory" => self.memory = Some(size()?),
            "image-size" => self.image_size = Some(size()?),
            other => return Err(format!("unknown bench target {other:?}; the targets are {TARGET_KEYS}")),
        }
        Ok(())
    }

    /// `KEY=VALUE` (`--target`).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), String> {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("--target {pair:?}: use KEY=VALUE, e.g. startup=30s ({TARGET_KEYS})"))?;
        self.set(k.trim(), v).map_err(|m| format!("--target {pair:?}: {m}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "files = [\"compose.yaml\"]\nenv-kind = \"test\"\nmax-envs = 4\n[[plugins]]\nuse = \"port-ranges\"\n[plugins.settings.kinds.test]\nstrategy = \"range\"\nrange = \"30000-30100\"\n[[plugins]]\nuse = \"./p/mine.wasm\"\n",
        )
        .unwrap();
        let cfg = ProjectConfig::find(None, dir.path()).unwrap().unwrap();
        assert_eq!(cfg.max_envs, Some(4));
        assert_eq!(cfg.plugin_refs()[0], "port-ranges");
        assert!(cfg.plugin_refs()[1].ends_with("p/mine.wasm") && cfg.plugin_refs()[1].starts_with('/'));
        assert_eq!(cfg.plugin_settings()["port-ranges"]["kinds"]["test"]["range"], "30000-30100");
        std::fs::write(dir.path().join(FILE_NAME), "fils = [\"x\"]\n").unwrap();
        let err = ProjectConfig::find(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("orch.toml") && err.contains("unknown key `fils` (line 1)") && err.contains("did you mean `files`?"), "{err}");
        // Nested keys are named by their path, with the nearest valid key of their table.
        for (text, key, near) in [
            ("[bench]\nstartp = \"3s\"\n", "bench.startp", "startup"),
            ("project = \"x\"\n[[plugins]]\nuse = \"port-ranges\"\nsetings = {}\n", "plugins[0].setings", "settings"),
            ("max-env = 3\n", "max-env", "max-envs"),
        ] {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
            let err = ProjectConfig::find(None, dir.path()).unwrap_err().to_string();
            assert!(err.contains(&format!("unknown key `{key}`")) && err.contains(&format!("did you mean `{near}`?")), "{err}");
        }
        assert!(ProjectConfig::find(None, &dir.path().join("nowhere")).unwrap().is_none());
        std::fs::write(dir.path().join(FILE_NAME), "engine = \"swarm\"\n").unwrap();
        assert_eq!(ProjectConfig::find(None, dir.path()).unwrap().unwrap().engine, Some(crate::engine::EngineKind::Swarm));
        std::fs::write(dir.path().join(FILE_NAME), "engine = \"k8s\"\n").unwrap();
        let err = ProjectConfig::find(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("orch.toml") && err.contains("k8s"), "{err}");
    }
}
