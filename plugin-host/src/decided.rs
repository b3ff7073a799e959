//! What one plugin decided in a plan: the fields the plan's provenance names it for, read from the plan before orch
//! allocates (so subnets and host ports orch picks later are not part of it), and its diagnostics. A plugin's golden
//! test compares these alone, so it keeps passing when orch changes what it decides itself.

use serde_json::{Map, Value, json};

use crate::plan::Plan;

/// The format tag of a decisions file (`orch plugin test` writes and reads it).
pub const FORMAT: &str = "orch.plugin-decisions/v1";

/// Plugin `plugin`'s decisions in `policy_plan` (a plan before allocation: `orch::Planner::policy`).
pub fn decided(policy_plan: &Plan, plugin: &str) -> Value {
    let source = format!("plugin:{plugin}");
    let whole = serde_json::to_value(policy_plan).expect("a plan serialises");
    let fields: Map<String, Value> = policy_plan
        .provenance
        .iter()
        .filter(|(_, chain)| chain.contains(&source))
        .map(|(path, _)| (path.clone(), value_at(&whole, policy_plan, path)))
        .collect();
    let diagnostics: Vec<Value> = policy_plan
        .diagnostics
        .iter()
        .filter(|d| d.source == source)
        .map(|d| json!({ "level": d.level, "code": d.code, "message": d.message, "path": d.path }))
        .collect();
    json!({ "format": FORMAT, "plugin": plugin, "decided": fields, "diagnostics": diagnostics })
}

/// The longest of `names` that `rest` starts with as a whole path segment (names may contain dots), and what follows.
fn split_name<'a>(rest: &'a str, names: impl Iterator<Item = &'a String>) -> Option<(&'a str, &'a str)> {
    let name = names.filter(|n| rest == n.as_str() || rest.strip_prefix(n.as_str()).is_some_and(|r| r.starts_with('.'))).max_by_key(|n| n.len())?;
    Some((name.as_str(), rest[name.len()..].trim_start_matches('.')))
}

/// The plan's value for a provenance path, in the form the plugin decided it.
fn value_at(whole: &Value, plan: &Plan, path: &str) -> Value {
    if let Some((name, field)) = path.strip_prefix("services.").and_then(|rest| split_name(rest, plan.services.keys())) {
        let service = &whole["services"][name];
        return match field {
            "" => service.clone(),
            // What the plugin decides is whether the compose file's name lives on.
            "container_name" => service["requested_container_name"].clone(),
            "placement" => service["runtime"]["placement"].clone(),
            f if f.starts_with("ports.") => {
                let key = &f["ports.".len()..];
                let port = plan.services[name].ports.iter().position(|p| p.key() == key);
                let mut value = port.map(|i| service["ports"][i].clone()).unwrap_or(Value::Null);
                if let Some(o) = value.as_object_mut() {
                    o.remove("host_port");
                }
                value
            }
            f => service[f].clone(),
        };
    }
    if let Some((name, field)) = path.strip_prefix("networks.").and_then(|rest| split_name(rest, plan.networks.keys())) {
        let network = &whole["networks"][name];
        return match field {
            "" => {
                let mut value = network.clone();
                if let Some(o) = value.as_object_mut() {
                    for orchs in ["docker_name", "labels", "subnet"] {
                        o.remove(orchs);
                    }
                }
                value
            }
            // A plugin asks for a subnet (a size or a fixed one); orch carves the concrete one later.
            "subnet" => network["subnet_request"].clone(),
            f => network[f].clone(),
        };
    }
    Value::Null
}

#[cfg(test)]
mod tests {
    use crate::plan::Level;

    #[test]
    fn only_the_plugins_fields_and_diagnostics_in_the_form_it_decided_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services:\n  db.primary:\n    image: postgres\n    ports: ['5432']\n  web:\n    image: nginx\n").unwrap();
        let mut plan = orch_plan::test_support::resolved(&std::fs::read_to_string(&file).unwrap(), "dc", "t1");
        plan.services.get_mut("db.primary").unwrap().labels.insert("team".into(), "data".into());
        plan.set_by("services.db.primary.labels", "plugin:mine");
        plan.set_by("services.db.primary.ports.5432/tcp", "plugin:mine");
        plan.set_by("services.web.labels", "plugin:other");
        plan.set_by("networks.default.subnet", "plugin:mine");
        plan.diagnose(Level::Info, "mine.note", "noted", None, "plugin:mine");
        plan.diagnose(Level::Info, "other.note", "noted", None, "plugin:other");
        let got = super::decided(&plan, "mine");
        let decided = got["decided"].as_object().unwrap();
        assert_eq!(decided.keys().collect::<Vec<_>>(), ["networks.default.subnet", "services.db.primary.labels", "services.db.primary.ports.5432/tcp"]);
        assert_eq!(decided["services.db.primary.labels"], serde_json::json!({ "team": "data" }));
        assert_eq!(decided["services.db.primary.ports.5432/tcp"]["container_port"], 5432);
        assert!(decided["services.db.primary.ports.5432/tcp"].get("host_port").is_none());
        assert_eq!(got["diagnostics"].as_array().unwrap().len(), 1);
        assert_eq!(got["format"], super::FORMAT);
    }
}
