//! `placement`: which nodes of a swarm an environment may run on ("the db tier on nodes labelled ssd=true"). Rules
//! match services by name or image and add Swarm placement constraints to them; orch runs an environment on one node
//! that meets the constraints of all its services. One engine is one node and ignores placement (orch says so).

use orch_plugin_api::*;

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Each rule adds its constraints to the services it matches.
    pub rules: Vec<Rule>,
    /// Environment kinds the rules apply to; every kind when empty.
    #[schemars(extend("items" = {"enum": ["test", "dev", "ci", "prod"]}))]
    pub kinds: Vec<String>,
}

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rule {
    /// Service names the rule applies to.
    pub services: Vec<String>,
    /// Image repositories (`postgres`, `clickhouse/clickhouse-server` → `clickhouse-server`) the rule applies to.
    pub images: Vec<String>,
    /// Swarm constraints: `node.labels.ssd==true`, `node.role!=manager`, `node.hostname==ci-3`.
    #[schemars(length(min = 1), extend("items" = {"type": "string", "pattern": "^[^=!]+(==|!=).+$"}))]
    pub constraints: Vec<String>,
}

impl Rule {
    /// A rule that names neither services nor images applies to every service.
    fn matches(&self, svc: &Service) -> bool {
        (self.services.is_empty() && self.images.is_empty())
            || self.services.contains(&svc.name)
            || svc.image_base().is_some_and(|b| self.images.iter().any(|i| i.rsplit('/').next() == Some(b)))
    }
}

/// Why a constraint is not one Swarm can read (`KEY==VALUE` or `KEY!=VALUE`), if it is not.
pub fn constraint_problem(c: &str) -> Option<String> {
    let Some((key, value)) = c.split_once("==").or_else(|| c.split_once("!=")) else {
        return Some(format!("{c:?} is neither KEY==VALUE nor KEY!=VALUE (e.g. node.labels.ssd==true)"));
    };
    let key = key.trim();
    let known = ["node.id", "node.hostname", "node.role", "node.platform.os", "node.platform.arch"].contains(&key)
        || ["node.labels.", "engine.labels."].iter().any(|p| key.strip_prefix(p).is_some_and(|l| !l.is_empty()));
    if !known {
        return Some(format!(
            "{c:?}: Swarm has no key {key:?} (node.labels.NAME, engine.labels.NAME, node.role, node.hostname, node.id, node.platform.os, node.platform.arch)"
        ));
    }
    if value.trim().is_empty() {
        return Some(format!("{c:?} has no value"));
    }
    None
}

const KINDS: [&str; 4] = ["test", "dev", "ci", "prod"];

pub struct Placement;

#[plugin]
impl Plugin for Placement {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "placement",
            env!("CARGO_PKG_VERSION"),
            "Swarm placement constraints by service or image (e.g. databases on nodes labelled ssd=true); the environment runs on one node meeting them all",
        )
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        let mut bad = vec![];
        for (i, rule) in s.rules.iter().enumerate() {
            if rule.constraints.is_empty() {
                bad.push(diagnostic(Level::Error, "placement.no-constraints", "a rule needs at least one constraint", Some(format!("rules[{i}].constraints"))));
            }
            for (j, c) in rule.constraints.iter().enumerate() {
                if let Some(why) = constraint_problem(c) {
                    bad.push(diagnostic(Level::Error, "placement.constraint", why, Some(format!("rules[{i}].constraints[{j}]"))));
                }
            }
        }
        for (i, k) in s.kinds.iter().enumerate() {
            if !KINDS.contains(&k.as_str()) {
                bad.push(diagnostic(Level::Error, "placement.kind", format!("{k:?} is not one of test, dev, ci, prod"), Some(format!("kinds[{i}]"))));
            }
        }
        bad
    }

    fn services(snapshot: &Snapshot, s: &Settings) -> Result<ServicePlan, PluginError> {
        let mut plan = ServicePlan { services: vec![], diagnostics: vec![] };
        if !s.kinds.is_empty() && !s.kinds.iter().any(|k| k == snapshot.env_kind.as_str()) {
            return Ok(plan);
        }
        for (i, rule) in s.rules.iter().enumerate() {
            for name in rule.services.iter().filter(|n| snapshot.service(n).is_none()) {
                plan.diagnostics.push(diagnostic(
                    Level::Warning,
                    "placement.unknown-service",
                    format!("rule {i} names service {name:?}, which this project does not have"),
                    Some(format!("rules[{i}].services")),
                ));
            }
        }
        for svc in &snapshot.services {
            let mut placement = svc.placement.clone();
            for c in s.rules.iter().filter(|r| r.matches(svc)).flat_map(|r| &r.constraints) {
                if !placement.contains(c) {
                    placement.push(c.clone());
                }
            }
            if placement != svc.placement {
                plan.services.push(ServiceIntent { placement: Some(placement), ..ServiceIntent::new(&svc.name) });
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(kind: EnvKind) -> Snapshot {
        let db = Service { image: Some("docker.io/library/postgres:16".into()), placement: vec!["node.role==worker".into()], ..Service::new("db") };
        let web = Service { image: Some("nginx".into()), ..Service::new("web") };
        Snapshot { env_kind: kind, services: vec![db, web], ..Snapshot::default() }
    }

    fn run(settings: &str, kind: EnvKind) -> ServicePlan {
        Placement::services(&snapshot(kind), &parse_settings(settings).unwrap()).unwrap()
    }

    #[test]
    fn rules_match_by_image_and_name_and_keep_the_constraints_the_service_had() {
        let settings =
            r#"{"rules":[{"images":["postgres"],"constraints":["node.labels.ssd==true"]},{"services":["web"],"constraints":["node.labels.zone==a"]}]}"#;
        let plan = run(settings, EnvKind::Ci);
        let got: Vec<_> = plan.services.iter().map(|i| (i.service.as_str(), i.placement.clone().unwrap())).collect();
        assert_eq!(
            got,
            vec![("db", vec!["node.role==worker".to_string(), "node.labels.ssd==true".to_string()]), ("web", vec!["node.labels.zone==a".to_string()])]
        );
    }

    #[test]
    fn a_rule_without_services_or_images_applies_to_all_and_kinds_limit_the_rules() {
        let settings = r#"{"kinds":["ci"],"rules":[{"constraints":["node.role==worker"]}]}"#;
        let ci = run(settings, EnvKind::Ci);
        // db already has the constraint, so only web changes.
        assert_eq!(ci.services.iter().map(|i| i.service.as_str()).collect::<Vec<_>>(), vec!["web"]);
        assert!(run(settings, EnvKind::Dev).services.is_empty());
    }

    #[test]
    fn bad_settings_are_reported_with_their_paths() {
        let problems =
            validate_settings::<Placement>(r#"{"kinds":["qa"],"rules":[{"constraints":["ssd=true","node.colour==red"]},{"constraints":[]}]}"#).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|d| d.path.clone().unwrap()).collect();
        assert_eq!(paths, vec!["rules[0].constraints[0]", "rules[0].constraints[1]", "rules[1].constraints", "kinds[0]"]);
        assert!(problems[1].message.contains("no key \"node.colour\""), "{}", problems[1].message);
    }

    #[test]
    fn the_plugin_says_it_decides_services_and_publishes_a_schema() {
        assert_eq!(Placement::implements(), vec![Policy::Services]);
        let schema: serde_json::Value = serde_json::from_str(&description::<Placement>().settings_schema).unwrap();
        assert_eq!(schema["properties"]["kinds"]["items"]["enum"][0], "test");
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn a_rule_naming_a_missing_service_is_a_warning() {
        let plan = run(r#"{"rules":[{"services":["dbb"],"constraints":["node.role==worker"]}]}"#, EnvKind::Test);
        assert!(plan.services.is_empty());
        assert_eq!(plan.diagnostics[0].code, "placement.unknown-service");
    }
}
