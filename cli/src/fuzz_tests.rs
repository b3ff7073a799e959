//! Property tests over hostile input on the host side, through the front end that renders it: plugin settings, `orch.toml`, `orch.lock`, and the host's
//! handling of what plugins answer (convert → resolve → validate → export and render), fed with real answers whose values are
//! mutated at random. Any outcome but a panic (or a hang, which `bench/fuzz.sh` detects) is fine. proptest keeps
//! failing inputs under `proptest-regressions/` as regression cases.
// The closures hand back the plugin host's own error type, as its callers do; its size is not a test's concern.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use orch::facts::Facts;
use orch::plan::{EnvKind, Identity, Plan};
use orch::plugins::convert;
use orch::plugins::runtime::wit::exports::orch::policy as ex;

fn config() -> ProptestConfig {
    ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48), ..ProptestConfig::default() }
}

/// A plan of a small stack to apply answers to.
fn base_plan() -> Plan {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compose.yaml");
    std::fs::write(
        &file,
        "services:\n  web:\n    image: web\n    ports: ['8080:80', '9000-9010:90']\n    networks: [front, back]\n  db:\n    image: postgres:15\n    networks: [back]\nnetworks:\n  front: {}\n  back:\n    ipam: {config: [{subnet: 10.9.0.0/24}]}\n",
    )
    .unwrap();
    let loaded = orch_compose::load(&orch_compose::LoadOptions { files: vec![file], ..Default::default() }).unwrap();
    let id = Identity { project: loaded.project.name.clone(), env_id: "fuzz".into(), env_kind: EnvKind::Test };
    orch::plan::draft(&loaded.project, &id, &loaded.variables)
}

/// A value of the same kind as `v`, at random: hostile strings (CIDRs, huge numbers, unicode) and edge numbers.
fn mutate(v: &mut Value, choices: &mut impl Iterator<Item = u32>) {
    let mut next = || choices.next().unwrap_or(0);
    match v {
        Value::String(s) => {
            const STRINGS: [&str; 14] = [
                "",
                "10.0.0.0/8",
                "300.1.2.0/24",
                "0.0.0.0/0",
                "10.9.0.0/24",
                "::1",
                "web",
                "db",
                "nope",
                "front",
                "back",
                "a\u{0}b",
                "ü/../x",
                "255.255.255.255/32",
            ];
            *s = match next() % 4 {
                0 => STRINGS[(next() as usize) % STRINGS.len()].to_string(),
                1 => "x".repeat((next() % 300) as usize),
                // Past a formatting width's 65,535 limit, in multi-byte characters.
                2 if next() % 8 == 0 => "é".repeat(70_000),
                _ => s.clone(),
            }
        }
        Value::Number(n) => {
            const NUMBERS: [i64; 8] = [0, 1, 8, 24, 32, 33, 255, 65535];
            if next() % 2 == 0 {
                *n = NUMBERS[(next() as usize) % NUMBERS.len()].into();
            }
        }
        Value::Bool(b) => *b = next() % 2 == 0,
        Value::Array(items) => {
            if next() % 4 == 0 && !items.is_empty() {
                let copy = items[(next() as usize) % items.len()].clone();
                items.push(copy);
            }
            if next() % 5 == 0 {
                items.pop();
            }
            for item in items.iter_mut() {
                mutate(item, choices);
            }
        }
        Value::Object(m) => {
            for (_, item) in m.iter_mut() {
                mutate(item, choices);
            }
        }
        Value::Null => {}
    }
}

/// Applies a mutated copy of `seed` (an answer of type `T`), then resolves, validates and exports the plan.
fn exercise<T: serde::Serialize + serde::de::DeserializeOwned>(
    seed: &T,
    choices: Vec<u32>,
    apply: impl Fn(&mut Plan, &T) -> Result<(), orch::plugins::PluginError>,
) {
    let mut value = serde_json::to_value(seed).unwrap();
    mutate(&mut value, &mut choices.into_iter().cycle());
    let Ok(answer) = serde_json::from_value::<T>(value) else { return };
    let mut plan = base_plan();
    if apply(&mut plan, &answer).is_err() {
        return;
    }
    let facts = Facts { taken_subnets: ["10.192.0.0/24".parse().unwrap()].into(), taken_host_ports: [9000].into(), ..Facts::default() };
    if orch::resolve::resolve(&mut plan, &facts, &["10.192.0.0/16".parse().unwrap()]).is_ok() {
        orch::validate::validate(&mut plan, &facts);
        let _ = orch::export::to_compose(&plan);
        let _ = serde_json::to_string(&plan);
    }
    // Rendered whatever happened: a plan that failed to resolve is still shown (with its diagnostics) to the user.
    for explain in [false, true] {
        let _ = crate::render::plan(&plan, explain);
    }
}

fn network_answer() -> ex::networks::NetworkPlan {
    use orch::plugins::runtime::types::{ServiceNetwork, SubnetRequest};
    ex::networks::NetworkPlan {
        networks: vec![
            ex::networks::NetworkIntent {
                name: "front".into(),
                subnet: Some(SubnetRequest::Size(26)),
                gateway: None,
                ip_range: None,
                internal: Some(false),
                driver: None,
                driver_opts: vec![],
            },
            ex::networks::NetworkIntent {
                name: "extra".into(),
                subnet: Some(SubnetRequest::Fixed("10.9.1.0/24".into())),
                gateway: Some("10.9.1.1".into()),
                ip_range: Some("10.9.1.128/25".into()),
                internal: Some(true),
                driver: Some("bridge".into()),
                driver_opts: vec![],
            },
        ],
        attachments: vec![ex::networks::Attachments {
            service: "web".into(),
            networks: vec![ServiceNetwork { network: "extra".into(), aliases: vec!["w".into()], ipv4_address: Some("10.9.1.5".into()) }],
        }],
        diagnostics: vec![],
    }
}

fn port_answer() -> ex::ports::PortPlan {
    use orch::plugins::runtime::types::{PortRange, PortStrategy};
    ex::ports::PortPlan {
        ports: vec![
            ex::ports::PortIntent {
                service: "web".into(),
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: Some("127.0.0.1".into()),
                strategy: PortStrategy::Hashed(PortRange { start: 9000, end: 9001 }),
            },
            ex::ports::PortIntent {
                service: "db".into(),
                container_port: 5432,
                protocol: "tcp".into(),
                host_ip: None,
                strategy: PortStrategy::Range(PortRange { start: 9000, end: 9002 }),
            },
            ex::ports::PortIntent { service: "web".into(), container_port: 90, protocol: "udp".into(), host_ip: None, strategy: PortStrategy::Fixed(9000) },
        ],
        diagnostics: vec![],
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plugin_network_answers_never_panic_the_host(choices in prop::collection::vec(any::<u32>(), 1..64)) {
        exercise(&network_answer(), choices, |plan, a| convert::apply_networks(plan, "fuzz", a));
    }

    #[test]
    fn plugin_port_answers_never_panic_the_host(choices in prop::collection::vec(any::<u32>(), 1..64)) {
        exercise(&port_answer(), choices, |plan, a| convert::apply_ports(plan, "fuzz", a));
    }

    #[test]
    fn tables_never_panic(rows in prop::collection::vec(prop::collection::vec(("\\PC{0,30}", 0usize..4), 0..6), 0..6)) {
        // Ragged rows; some cells far wider than any terminal or formatting width.
        let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.into_iter().map(|(s, n)| if n == 0 { s.repeat(3000) } else { s }).collect()).collect();
        let out = crate::render::table(&["A", "B"], &rows);
        prop_assert!(out.lines().all(|l| l.chars().count() < 6 * 200));
    }

    #[test]
    fn plugin_settings_never_panic(flags in prop::collection::vec("[a-z.\\-]{0,12}=?\\PC{0,20}", 0..6)) {
        let _ = orch::plugins::parse_settings(BTreeMap::new(), &flags);
    }

    #[test]
    fn orch_toml_never_panics(text in "(\\[\\[?[a-z]{0,8}\\]\\]?\n|[a-z\\-]{1,12} = (\"\\PC{0,12}\"|[0-9]{1,6}|\\[\\]|true|\\{\\})\n|\\PC{0,20}\n){0,10}") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orch.toml"), &text).unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {a: {image: a}}\n").unwrap();
        let _ = orch::config::ProjectConfig::find(None, dir.path());
    }

    #[test]
    fn orch_lock_never_panics(text in "(version = [0-9]{1,3}\n|\\[\\[plugin\\]\\]\n|[a-z]{1,10} = \"\\PC{0,20}\"\n|\\PC{0,20}\n){0,10}") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orch.lock"), &text).unwrap();
        let _ = orch::plugins::lock::Lock::load(dir.path());
    }
}
