//! `placement`: which nodes of a swarm an environment may run on ("the db tier on nodes labelled ssd=true"). Rules
//! match services by name or image and add Swarm placement constraints to them; orch runs an environment on one node
//! that meets the constraints of all its services. One engine is one node and ignores placement (orch says so).

use orch_plugin_api::*;

#[derive(serde::Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    pub rules: Vec<Rule>,
    /// Environment kinds the rules apply to; every kind when empty.
    pub kinds: Vec<String>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Rule {
    /// Service names the rule applies to.
    pub services: Vec<String>,
    /// Image repositories (`postgres`, `clickhouse/clickhouse-server` → `clickhouse-server`) the rule applies to.
    pub images: Vec<String>,
    /// Swarm constraints: `node.labels.ssd==true`, `node.role!=manager`, `node.hostname==ci-3`.
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

impl Plugin for Placement {
    fn describe() -> Description {
        describe(
            "placement",
            env!("CARGO_PKG_VERSION"),
            "Swarm placement constraints by service or image (e.g. databases on nodes labelled ssd=true); the environment runs on one node meeting them all",
            &[Policy::Services],
        ).with_settings_schema(r#"{"type":"object","additionalProperties":false,"properties":{"kinds":{"type":"array","items":{"enum":["test","dev","ci","prod"]}},"rules":{"type":"array","items":{"type":"object","additionalProperties":false,"required":["constraints"],"properties":{"services":{"type":"array","items":{"type":"string"}},"images":{"type":"array","items":{"type":"string"}},"constraints":{"type":"array","minItems":1,"items":{"type":"string","pattern":"^[^=!]+(==|!=).+$"}}}}}}}"#)
    }

    fn validate_settings(settings: &str) -> Result<(), Vec<Diagnostic>> {
        let s: Settings = parse_settings(settings).map_err(settings_problems)?;
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
        if bad.is_empty() { Ok(()) } else { Err(bad) }
    }

    fn services(snapshot: &Snapshot) -> Result<ServicePlan, PluginError> {
        let s: Settings = parse_settings(&snapshot.settings)?;
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

export_plugin!(Placement);

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(settings: &str, kind: EnvKind) -> Snapshot {
        let db = Service { image: Some("docker.io/library/postgres:16".into()), placement: vec!["node.role==worker".into()], ..Service::new("db") };
        let web = Service { image: Some("nginx".into()), ..Service::new("web") };
        Snapshot {
            api_version: API_VERSION.into(),
            project: "p".into(),
            env_id: "e".into(),
            env_kind: kind,
            services: vec![db, web],
            networks: vec![],
            settings: settings.into(),
            facts: Facts { taken_subnets: vec![], taken_host_ports: vec![], local_images: vec![] },
            seed: 1,
        }
    }

    #[test]
    fn rules_match_by_image_and_name_and_keep_the_constraints_the_service_had() {
        let settings =
            r#"{"rules":[{"images":["postgres"],"constraints":["node.labels.ssd==true"]},{"services":["web"],"constraints":["node.labels.zone==a"]}]}"#;
        let plan = Placement::services(&snapshot(settings, EnvKind::Ci)).unwrap();
        let got: Vec<_> = plan.services.iter().map(|i| (i.service.as_str(), i.placement.clone().unwrap())).collect();
        assert_eq!(
            got,
            vec![("db", vec!["node.role==worker".to_string(), "node.labels.ssd==true".to_string()]), ("web", vec!["node.labels.zone==a".to_string()])]
        );
    }

    #[test]
    fn a_rule_without_services_or_images_applies_to_all_and_kinds_limit_the_rules() {
        let settings = r#"{"kinds":["ci"],"rules":[{"constraints":["node.role==worker"]}]}"#;
        let ci = Placement::services(&snapshot(settings, EnvKind::Ci)).unwrap();
        // db already has the constraint, so only web changes.
        assert_eq!(ci.services.iter().map(|i| i.service.as_str()).collect::<Vec<_>>(), vec!["web"]);
        assert!(Placement::services(&snapshot(settings, EnvKind::Dev)).unwrap().services.is_empty());
    }

    #[test]
    fn bad_settings_are_reported_with_their_paths() {
        let problems =
            Placement::validate_settings(r#"{"kinds":["qa"],"rules":[{"constraints":["ssd=true","node.colour==red"]},{"constraints":[]}]}"#).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|d| d.path.clone().unwrap()).collect();
        assert_eq!(paths, vec!["rules[0].constraints[0]", "rules[0].constraints[1]", "rules[1].constraints", "kinds[0]"]);
        assert!(problems[1].message.contains("no key \"node.colour\""), "{}", problems[1].message);
    }

    #[test]
    fn a_rule_naming_a_missing_service_is_a_warning() {
        let plan = Placement::services(&snapshot(r#"{"rules":[{"services":["dbb"],"constraints":["node.role==worker"]}]}"#, EnvKind::Test)).unwrap();
        assert!(plan.services.is_empty());
        assert_eq!(plan.diagnostics[0].code, "placement.unknown-service");
    }
}
