//! orch's library: compose model → draft plan → policy plugins → resolved, validated plan → engine.
//!
//! The layers are crates, each depending only on those below it:
//!
//! - `orch-compose` ([`orch_compose`]): the compose files, read with bounds, as a model;
//! - `orch-plan` (re-exported as [`plan`], [`labels`], [`facts`], [`resolve`], [`validate`], [`export`], [`atomic`]):
//!   the plan, its labels, the host facts it is made against, allocation, validation, export;
//! - `orch-engine` ([`engine`], [`retry`]): the engine trait, Docker, Swarm, the in-memory fake, the retry policy;
//! - `orch-plugin-host` ([`plugins`]): the sandboxed wasm runtime, compile cache, OCI sharing, orch.lock;
//! - this crate: [`session`] (the front door for every front end: open a project, plan, bring environments up and
//!   use them; start there), [`planner`] (the one planning pipeline), [`lifecycle`], [`admission`], [`reaper`],
//!   [`tiers`], [`bench`], [`authoring`] (plugin authors' `new` and `test`) and the state they share. Build contexts,
//!   Dockerfile rewriting, the clock and the reaper's verdicts are private to it;
//! - `orch-cli` (the `orch` binary): parses, calls this library, renders, maps errors to exit codes. It is the only
//!   crate that prints: this one reports through return values, progress callbacks and `tracing` events.
//!
//! Errors are [`Error`] (each maps to a documented exit code, [`error::exit`]); a Rust test drives environments with
//! [`session::Project`] and [`session::Environment`], on the Docker engine ([`engine::DockerEngine`]) or the
//! in-memory fake ([`engine::fake::FakeEngine`]).

// The library's face (what a Rust user starts from) is documented throughout; a missing doc fails the build.

/// README.md's Rust blocks, compiled (and run) as doctests, so its examples stay examples that compile.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

// The plan layer (crate orch-plan), at the paths the rest of orch names it by.
pub use orch_plan::{atomic, export, facts, labels, plan, procfs, resolve, validate};
// The engine layer (crate orch-engine) and its retry policy.
pub use orch_engine::{self as engine, retry};
// The plugin host (crate orch-plugin-host).
pub use orch_plugin_host as plugins;

pub mod admission;
#[deny(missing_docs)]
pub mod authoring;
pub mod bench;
pub mod claim;
mod clock;
pub mod config;
mod context;
mod deed;
mod dockerfile;
pub mod doctor;
#[deny(missing_docs)]
pub mod error;
pub mod lifecycle;
pub mod marker;
pub mod owner;
#[deny(missing_docs)]
pub mod planner;
pub mod pool;
pub mod reaper;
#[deny(missing_docs)]
pub mod session;
pub mod state;
pub mod tiers;
mod verdict;

use std::collections::BTreeMap;

pub use error::Error;
pub use planner::{PlanOutcome, PlanRequest, Planner, make_plan};

/// Runs blocking work (file locks) off the async runtime, a current-thread one included.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("a blocking task failed: {e}")))
}

/// Settings for plugins from `orch.toml`-style maps plus `--plugin-setting` flags.
pub fn plugin_settings(flags: &[String]) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    Ok(plugins::parse_settings(BTreeMap::new(), flags)?)
}

/// The module graph has no circle: no module of the library reaches, through `crate::` paths in its code, a module
/// that reaches back to it (tests and comments aside; the CLI is the front end and may use everything). An import
/// circle is the first step to a layer that cannot be moved into a crate of its own.
#[cfg(test)]
mod architecture_tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level modules `code` names through `crate::` paths, group imports (`use crate::{a, b::c}`, over
    /// several lines too) included.
    fn uses(code: &str) -> BTreeSet<String> {
        let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let ident = |s: &str| -> String { s.trim_start().chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect() };
        let mut out = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // The group's top-level items: split on commas outside nested braces.
                let (mut depth, mut item_start) = (0usize, 0usize);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            out.insert(ident(&group[item_start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.insert(ident(&group[item_start..i]));
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(rest));
            }
        }
        out.remove("");
        out
    }

    /// The workspace crates of orch's layers, bottom up: a crate may depend on those before it only.
    const LAYERS: [(&str, &str); 6] = [
        ("compose", "orch-compose"),
        ("plan", "orch-plan"),
        ("engine", "orch-engine"),
        ("plugin-host", "orch-plugin-host"),
        ("host", "orch"),
        ("cli", "orch-cli"),
    ];

    /// The Rust files under `krate/src`, with their text up to the first `#[cfg(test)]` (their tests aside).
    fn sources(krate: &str) -> Vec<(std::path::PathBuf, String)> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
        let mut out = vec![];
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().and_then(|x| x.to_str()) == Some("rs") && !p.ends_with("fuzz_tests.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
                    out.push((p, code));
                }
            }
        }
        out
    }

    /// The module graph of the crate in folder `krate` of the workspace.
    fn graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (p, code) in sources(krate) {
            let rel = p.strip_prefix(&src).unwrap();
            let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if ["main", "lib"].contains(&top.as_str()) {
                continue;
            }
            graph.entry(top.clone()).or_default().extend(uses(&code).into_iter().filter(|m| *m != top));
        }
        let known: BTreeSet<String> = graph.keys().cloned().collect();
        graph.values_mut().for_each(|deps| deps.retain(|d| known.contains(d)));
        graph
    }

    /// Only the command line prints: the library and the layers below it report through return values, progress
    /// callbacks and `tracing` events, so any front end (the CLI, a Rust test, Python) decides what is shown.
    #[test]
    fn only_the_command_line_prints() {
        let mut files = 0;
        for (krate, _) in LAYERS.iter().filter(|(k, _)| *k != "cli") {
            for (path, code) in sources(krate) {
                files += 1;
                let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
                for word in ["print!(", "println!(", "eprint!(", "eprintln!(", "dbg!(", "indicatif::"] {
                    assert!(!code.contains(word), "{} uses {word}: report a progress event or a tracing event instead", path.display());
                }
            }
        }
        assert!(files > 40, "the sources were read: {files} files");
    }

    /// A path of modules from `from` back to itself, if there is one.
    fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
        let mut stack = vec![(from.to_string(), vec![from.to_string()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == from {
                    return Some([path.clone(), vec![from.to_string()]].concat());
                }
                if seen.insert(next.clone()) {
                    stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
                }
            }
        }
        None
    }

    #[test]
    fn no_module_imports_in_a_circle() {
        let mut modules = 0;
        for (krate, _) in LAYERS {
            let graph = graph(krate);
            modules += graph.len();
            let circles: Vec<String> = graph.keys().filter_map(|m| circle(&graph, m)).map(|c| c.join(" → ")).collect();
            assert!(circles.is_empty(), "import circles in {krate}:\n{}", circles.join("\n"));
        }
        assert!(modules > 30, "the module graphs were read: {modules} modules");
    }

    /// Each layer crate depends only on layers below it (cargo refuses a circle between crates; this also refuses a
    /// dependency that points up or sideways, the engine on the plugin host, say).
    #[test]
    fn crates_depend_only_on_layers_below() {
        for (i, (krate, name)) in LAYERS.iter().enumerate() {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("Cargo.toml");
            let manifest: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
            assert_eq!(manifest["package"]["name"].as_str(), Some(*name));
            let below: Vec<&str> = LAYERS[..i].iter().map(|(_, n)| *n).collect();
            let deps = manifest.get("dependencies").and_then(|d| d.as_table()).cloned().unwrap_or_default();
            for dep in deps.keys().filter(|d| LAYERS.iter().any(|(_, n)| n == d)) {
                assert!(below.contains(&dep.as_str()), "{name} depends on {dep}, which is not a layer below it ({below:?})");
            }
        }
    }

    #[test]
    fn the_circle_check_finds_a_circle() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("a".into());
        assert_eq!(circle(&g, "a"), Some(vec!["a".to_string(), "b".into(), "a".into()]));
        assert_eq!(uses("use crate::engine::Engine;\n/// [`crate::doc`]\nlet x = crate::plan::fnv1a(b);"), ["engine", "plan"].map(String::from).into());
        assert_eq!(
            uses("use crate::{\n    labels,\n    plan::{Plan, Level},\n    Error,\n};"),
            ["labels", "plan"].map(String::from).into(),
            "group imports over several lines"
        );
    }
}
