//! Property tests over hostile input: compose files built from the specification's own field names with random
//! values, shapes and byte-level damage, `.env` files and interpolation strings. Every input must end in a model or
//! a clear error — never a panic. A bounded number of cases runs with the tests; `bench/fuzz.sh` runs them for minutes
//! and proptest keeps every failing input under `proptest-regressions/` as a regression case.

use std::collections::BTreeMap;

use orch_compose::{LoadOptions, fields, interpolate, load};
use proptest::prelude::*;
use serde_yaml_ng::{Mapping, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|n| Value::Number(n.into())),
        // Strings that look like what compose parses: ports, sizes, durations, paths, variables, modes.
        prop::sample::select(vec![
            "8080:80",
            "127.0.0.1::5432",
            "[::1]:6000:6000/udp",
            "9000-9010:80",
            "70000",
            "1:2:3:4",
            "512m",
            "1.5g",
            "-1",
            "10s",
            "1m30s",
            "0440",
            "0o777",
            "./data:/data:ro,z",
            "~/x:/y",
            "/:/",
            "vol:/data:nocopy",
            "service:app",
            "container:x",
            "host",
            "none",
            "docker-image://busybox",
            "https://x.git",
            "${A}",
            "${A:-d}",
            "${A:?err}",
            "$${A}",
            "${",
            "$",
            "a=b",
            "CMD-SHELL",
            "!reset",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        "\\PC{0,40}".prop_map(Value::String),
    ]
}

/// A field name: mostly real ones (so parsing goes deep), sometimes not.
fn key() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = [fields::SERVICE, fields::BUILD, fields::HEALTHCHECK, fields::DEPLOY, fields::NETWORK, fields::MOUNT, fields::PORT]
        .iter()
        .flat_map(|t| t.iter().copied())
        .chain(["services", "networks", "volumes", "secrets", "configs", "include", "extends", "x-ext", "<<", "a", "db", "web", "default"])
        .collect();
    prop_oneof![9 => prop::sample::select(known).prop_map(String::from), 1 => "[a-z_]{1,12}"]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Mapping(kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect::<Mapping>())),
        ]
    })
}

/// A whole document: usually `services:` with a few named services, so the service parser sees most cases.
fn document() -> impl Strategy<Value = String> {
    let service = prop::collection::vec((key(), tree()), 0..8).prop_map(|kv| Value::Mapping(kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect()));
    let services = prop::collection::vec(("[a-c]", service), 1..4).prop_map(|s| Value::Mapping(s.into_iter().map(|(k, v)| (Value::String(k), v)).collect()));
    let top = (services, prop::collection::vec((key(), tree()), 0..4)).prop_map(|(services, rest)| {
        let mut m = Mapping::new();
        m.insert("services".into(), services);
        for (k, v) in rest {
            m.insert(Value::String(k), v);
        }
        serde_yaml_ng::to_string(&Value::Mapping(m)).unwrap_or_default()
    });
    // Byte-level damage on top: truncation and a spliced fragment.
    (top, any::<prop::sample::Index>(), prop::sample::select(vec!["", ":", "\t", "&a", "*a", "<<: *a", "- ", "{", "'", "!reset ", "\n  x"])).prop_map(
        |(text, at, splice)| {
            let mut cut = at.index(text.len() + 1);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{splice}{}", &text[..cut], &text[cut..])
        },
    )
}

/// A small project of hostile shape: files that include each other (repeatedly, in cycles), extend services in
/// each other, name files outside the project, devices, pipes and directories, and nest brackets or `${` deeply.
#[derive(Debug, Clone)]
struct Shape {
    includes: Vec<Vec<usize>>,
    extends: Vec<Option<usize>>,
    hostile: Vec<usize>,
    depth: usize,
    interpolation: bool,
}

const SPECIAL: &[&str] = &["/dev/zero", "pipe.yaml", "dir.yaml", "../outside.yaml", "link/outside.yaml", "/etc/passwd", "missing.yaml"];

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..7).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::collection::vec(0..n + SPECIAL.len(), 0..4), n),
            prop::collection::vec(prop::option::of(0..n + SPECIAL.len()), n),
            prop::collection::vec(0..SPECIAL.len(), 0..3),
            prop_oneof![3 => 0usize..8, 1 => 100usize..400, 1 => 1000usize..40_000],
            any::<bool>(),
        )
            .prop_map(|(includes, extends, hostile, depth, interpolation)| Shape { includes, extends, hostile, depth, interpolation })
    })
}

fn file_name(i: usize, n: usize) -> String {
    if i < n { format!("f{i}.yaml") } else { SPECIAL[i - n].to_string() }
}

fn config() -> ProptestConfig {
    // `PROPTEST_CASES` raises it for the fuzz script.
    ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48), ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn compose_import_never_panics(doc in document(), env in "\\PC{0,60}") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, &doc).unwrap();
        std::fs::write(dir.path().join(".env"), &env).unwrap();
        let _ = load(&LoadOptions { files: vec![file], ..Default::default() });
    }

    #[test]
    fn env_files_never_panic(text in "(\\PC{0,30}\n){0,8}") {
        let _ = interpolate::parse_env_file(&text, &BTreeMap::new());
    }

    #[test]
    fn interpolation_never_panics(text in "[a-zA-Z0-9${}:?+_\\-]{0,40}", value in "\\PC{0,10}") {
        let vars = BTreeMap::from([("A".to_string(), value)]);
        let _ = interpolate::interpolate(&text, &vars);
    }

    #[test]
    fn hostile_project_shapes_end_in_a_model_or_an_error(shape in shape()) {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("outside.yaml"), "services:\n  out:\n    image: x\n").unwrap();
        let root = outer.path().join("repo");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir(root.join("dir.yaml")).unwrap();
        std::os::unix::fs::symlink(outer.path(), root.join("link")).unwrap();
        let _ = std::process::Command::new("mkfifo").arg(root.join("pipe.yaml")).status();
        let n = shape.includes.len();
        for i in 0..n {
            let mut text = String::new();
            if !shape.includes[i].is_empty() {
                let list: Vec<String> = shape.includes[i].iter().map(|&j| file_name(j, n)).collect();
                text += &format!("include: [{}]\n", list.join(", "));
            }
            let nest = if shape.interpolation {
                format!("\"{}x{}\"", "${A:-".repeat(shape.depth), "}".repeat(shape.depth))
            } else {
                format!("{}x{}", "[".repeat(shape.depth), "]".repeat(shape.depth))
            };
            text += &format!("services:\n  s{i}:\n    image: busybox\n    command: {nest}\n");
            if let Some(e) = shape.extends[i] {
                text += &format!("  e{i}:\n    extends: {{ file: {}, service: s0 }}\n", file_name(e, n));
            }
            for &h in &shape.hostile {
                text += &format!("  h{i}{h}:\n    image: busybox\n    env_file: {}\n", SPECIAL[h]);
            }
            std::fs::write(root.join(file_name(i, n)), text).unwrap();
        }
        if let Ok(loaded) = load(&LoadOptions { files: vec![root.join("f0.yaml")], ..Default::default() }) {
            for s in loaded.project.services.values() {
                if let Some(b) = &s.build {
                    prop_assert!(b.context.starts_with(&root), "build context {} escaped", b.context.display());
                }
            }
            prop_assert!(!loaded.project.services.contains_key("out"), "a file outside the project was loaded");
        }
    }
}
