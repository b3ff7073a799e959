//! `orch plugin test`: what one plugin decides for a compose file (or the whole plan it gives), compared with an
//! expected file. No engine and no host facts: the answer depends on the inputs alone, so it is the same on every
//! machine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Error;
use crate::plan::EnvKind;
use crate::plugins::{self, PluginRef, Runtime};

/// One plugin test.
#[derive(Debug, Clone)]
pub struct PluginTest {
    /// The plugin: a crate directory, a `.wasm` file, a built-in name or an `oci://` reference.
    pub plugin: String,
    /// The compose file the plugin plans.
    pub compose: PathBuf,
    /// The plugin's settings: a JSON object inline, or a file holding one.
    pub settings: Option<String>,
    /// The environment kind the plugin sees.
    pub env_kind: EnvKind,
    /// The expected decisions (or, with `full_plan`, the expected whole plan).
    pub expect: PathBuf,
    /// Rewrite `expect` with what the plugin decides now instead of comparing.
    pub update: bool,
    /// Compare the whole plan instead of the plugin's decisions.
    pub full_plan: bool,
}

/// A test that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin (by the name it gives itself) decides as expected.
    Passed {
        /// The plugin's own name.
        plugin: String,
    },
    /// `expect` was rewritten (`update`).
    Updated,
}

/// Runs `test`. A difference is [`Error::TestFailed`], with a unified diff expected → actual.
pub fn run(runtime: &Runtime, test: &PluginTest) -> Result<Outcome, Error> {
    let r = PluginRef::parse(&test.plugin);
    let mut values = BTreeMap::new();
    if let Some(given) = &test.settings {
        let (what, value) = plugins::settings_argument(given)?;
        if !value.is_object() {
            return Err(Error::InvalidInput { what, message: "the settings must be a JSON object".into() });
        }
        values.insert(r.display_name(), value);
    }
    let active = plugins::activate(runtime, std::slice::from_ref(&r), &values)?;
    let name = active[0].plugin.description.name.clone();
    let loaded = orch_compose::load(&orch_compose::LoadOptions { files: vec![test.compose.clone()], ..Default::default() })?;
    let planner = crate::Planner::new(&loaded, &active, test.env_kind, &[]);
    let facts = crate::facts::Facts::default();
    let env = Some("test");
    let actual = if test.full_plan {
        serde_json::to_value(&planner.plan(env, &facts)?.plan).expect("plan serialises")
    } else {
        let mut whole = planner.policy(planner.identity(env)?, &facts)?;
        let decided = plugins::decided::decided(&whole.plan, &name);
        // The whole plan must still be valid: a plugin whose decisions orch refuses fails its test.
        planner.finish(&mut whole.plan, &facts)?;
        decided
    };
    let actual_text = serde_json::to_string_pretty(&actual).expect("JSON serialises") + "\n";
    let expect = &test.expect;
    if test.update {
        std::fs::write(expect, &actual_text).map_err(|e| Error::Io { what: format!("writing {}", expect.display()), source: e })?;
        return Ok(Outcome::Updated);
    }
    let expected_text =
        std::fs::read_to_string(expect).map_err(|e| Error::Io { what: format!("reading {} (create it with --update)", expect.display()), source: e })?;
    let expected: serde_json::Value = serde_json::from_str(&expected_text)
        .map_err(|e| Error::InvalidInput { what: expect.display().to_string(), message: format!("not JSON: {e} (rewrite it with --update)") })?;
    let is_decisions = expected.get("format").and_then(|f| f.as_str()) == Some(plugins::decided::FORMAT);
    if is_decisions == test.full_plan {
        let (has, wants) =
            if test.full_plan { ("a plugin's decisions", "drop --full-plan") } else { ("a whole plan", "pass --full-plan, or rewrite it with --update") };
        return Err(Error::Usage(format!("{} holds {has}: {wants}", expect.display())));
    }
    if expected == actual {
        return Ok(Outcome::Passed { plugin: name });
    }
    // Pretty-printed both ways, so the diff is by field whatever the file's own layout.
    let expected_pretty = serde_json::to_string_pretty(&expected).expect("JSON serialises") + "\n";
    Err(Error::TestFailed(format!(
        "what {name} decides differs from {} (run with --update if the change is intended):\n{}",
        expect.display(),
        line_diff(&expected_pretty, &actual_text)
    )))
}

/// A unified diff, expected → actual (plans are pretty-printed JSON, so lines are fields).
fn line_diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual).unified_diff().context_radius(2).header("expected", "actual").to_string()
}
