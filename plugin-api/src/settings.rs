//! Typed settings: parsing with the path of every error, the JSON Schema orch shows, validation.

use std::any::TypeId;

use crate::{Diagnostic, Level, Plugin, diagnostic};

/// The settings of a plugin that takes none: only `{}` is accepted.
#[derive(serde::Deserialize, schemars::JsonSchema, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Parses a settings object ("" counts as `{}`). An error names the setting at fault by its path
/// (`rules[0].constraints`), or none when the whole object is wrong.
pub fn parse_settings<S: serde::de::DeserializeOwned>(json: &str) -> Result<S, Vec<Diagnostic>> {
    let text = if json.trim().is_empty() { "{}" } else { json };
    let mut de = serde_json::Deserializer::from_str(text);
    let problem = |message: String, path: Option<String>| vec![diagnostic(Level::Error, "settings.invalid", format!("invalid settings: {message}"), path)];
    let parsed: S = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        problem(e.inner().to_string(), (path != ".").then_some(path))
    })?;
    de.end().map_err(|e| problem(e.to_string(), None))?;
    Ok(parsed)
}

/// The JSON Schema of settings type `S`, as a string; "" for [`NoSettings`].
pub fn settings_schema<S: schemars::JsonSchema + 'static>() -> String {
    if TypeId::of::<S>() == TypeId::of::<NoSettings>() {
        return String::new();
    }
    serde_json::to_string(&schemars::schema_for!(S)).expect("a schema serialises")
}

/// What orch's `validate-settings` call answers for plugin `T`: the settings parse as `T::Settings` and pass
/// `T::check_settings`, or every problem found.
pub fn validate_settings<T: Plugin>(json: &str) -> Result<(), Vec<Diagnostic>> {
    let settings = parse_settings::<T::Settings>(json)?;
    let problems = T::check_settings(&settings);
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}
