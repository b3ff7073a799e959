//! Golden tests: every `golden/NAME.yaml` (or `golden/NAME/compose.yaml`, plus `compose.override.yaml` when present)
//! is imported and compared with `NAME.json` (model + warnings) or `NAME.err` (the error text). Variables come only
//! from `NAME.vars` (KEY=VALUE lines), never from the test process. `UPDATE_GOLDEN=1` rewrites the expectations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orch_compose::{LoadOptions, load};

fn cases(dir: &Path) -> Vec<(String, Vec<PathBuf>, PathBuf)> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut files = vec![path.join("compose.yaml")];
            if path.join("compose.override.yaml").is_file() {
                files.push(path.join("compose.override.yaml"));
            }
            out.push((name.clone(), files, dir.join(&name)));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push((name.clone(), vec![path.clone()], dir.join(&name)));
        }
    }
    out.sort();
    out
}

#[test]
fn golden_compose_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let shown_dir = std::path::absolute(&dir).unwrap().display().to_string();
    let mut failures = vec![];
    let all = cases(&dir);
    assert!(all.len() >= 10, "expected the golden folder to hold the fixtures");
    for (name, files, stem) in all {
        let vars_file = stem.with_extension("vars");
        let environment: BTreeMap<String, String> = std::fs::read_to_string(&vars_file)
            .map(|t| t.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default();
        let opts = LoadOptions { files, environment, ..Default::default() };
        let (actual, expected_path, other) = match load(&opts) {
            Ok(loaded) => {
                let v = serde_json::json!({ "project": loaded.project, "warnings": loaded.warnings });
                (serde_json::to_string_pretty(&v).unwrap() + "\n", stem.with_extension("json"), stem.with_extension("err"))
            }
            Err(e) => (e.to_string() + "\n", stem.with_extension("err"), stem.with_extension("json")),
        };
        let actual = actual.replace(&shown_dir, "$GOLDEN");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            let _ = std::fs::remove_file(&other);
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{name}: output differs from {}\n--- expected\n{expected}\n--- actual\n{actual}", expected_path.display())),
            Err(_) => failures.push(format!(
                "{name}: no {} (the import {}); run with UPDATE_GOLDEN=1 to create it\n{actual}",
                expected_path.display(),
                if other.extension().unwrap() == "json" { "failed" } else { "succeeded" }
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
