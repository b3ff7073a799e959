//! Golden plan tests: `golden/plans/NAME/compose.yaml` + `case.json` (plugins in order, `--plugin-setting`s,
//! env kind, facts) → `plan.json` (with provenance) or `error.txt`. Plugins run for real in the wasm sandbox.
//! `UPDATE_GOLDEN=1` rewrites the expectations.

use std::path::Path;

use orch::facts::Facts;
use orch::plan::EnvKind;
use orch::plugins::{self, PluginRef, Runtime};

#[derive(serde::Deserialize)]
struct Case {
    plugins: Vec<String>,
    #[serde(default)]
    settings: Vec<String>,
    #[serde(default)]
    env_kind: Option<String>,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    facts: CaseFacts,
}

#[derive(serde::Deserialize, Default)]
struct CaseFacts {
    #[serde(default)]
    taken_subnets: Vec<String>,
    #[serde(default)]
    taken_host_ports: Vec<u16>,
    #[serde(default)]
    local_images: Vec<String>,
    #[serde(default)]
    places_services: bool,
}

fn plugin_ref(name: &str) -> PluginRef {
    match name {
        "misbehave" => PluginRef::Path(orch_test_plugins::MISBEHAVE.into()),
        "legacy-api" => PluginRef::Path(orch_test_plugins::LEGACY_API.into()),
        "api-0-2" => PluginRef::Path(orch_test_plugins::API_0_2.into()),
        other => PluginRef::parse(other),
    }
}

fn run_case(dir: &Path, runtime: &Runtime) -> String {
    let case: Case = serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let settings = match orch::plugin_settings(&case.settings) {
        Ok(s) => s,
        Err(e) => return format!("error (exit {}): {e}\n", e.exit_code()),
    };
    // Settings are keyed by the names used in case.json; path plugins take their file stem as name.
    let refs: Vec<PluginRef> = case.plugins.iter().map(|p| plugin_ref(p)).collect();
    let active = match plugins::activate(runtime, &refs, &settings) {
        Ok(a) => a,
        Err(e) => {
            let e = orch::Error::from(e);
            return format!("error (exit {}): {e}\n", e.exit_code());
        }
    };
    let facts = Facts {
        taken_subnets: case.facts.taken_subnets.iter().map(|s| s.parse().unwrap()).collect(),
        taken_host_ports: case.facts.taken_host_ports.iter().copied().collect(),
        local_images: case.facts.local_images.iter().cloned().collect(),
        places_services: case.facts.places_services,
        ..Facts::default()
    };
    let request = orch::PlanRequest {
        compose: orch_compose::LoadOptions { files: vec![dir.join("compose.yaml")], profiles: case.profiles.clone(), ..Default::default() },
        env_id: Some("golden".into()),
        env_kind: case.env_kind.as_deref().map(|k| k.parse::<EnvKind>().unwrap()).unwrap_or_default(),
        pools: vec![],
    };
    match orch::make_plan(&request, &active, &facts) {
        Ok(outcome) => serde_json::to_string_pretty(&outcome.plan).unwrap() + "\n",
        Err(e) => format!("error (exit {}): {e}\n", e.exit_code()),
    }
}

#[test]
fn golden_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/plans");
    let runtime = Runtime::new(Some(std::env::temp_dir().join("orch-test-plugin-cache"))).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let shown_root = std::path::absolute(&root).unwrap().display().to_string();
    let mut dirs: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 10);
    let mut failures = vec![];
    for dir in dirs {
        let actual = run_case(&dir, &runtime).replace(&shown_root, "$GOLDEN");
        let is_err = actual.starts_with("error");
        let (expected_path, other) = if is_err { (dir.join("error.txt"), dir.join("plan.json")) } else { (dir.join("plan.json"), dir.join("error.txt")) };
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            let _ = std::fs::remove_file(other);
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => {
                failures.push(format!("{}: differs from {}\n--- expected\n{expected}\n--- actual\n{actual}", dir.display(), expected_path.display()))
            }
            Err(_) => failures.push(format!("{}: no {}; run with UPDATE_GOLDEN=1\n{actual}", dir.display(), expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
