//! A test plugin that misbehaves on purpose in its `networks` call; `{"mode": ...}` picks how.

use orch_plugin_api::*;

#[derive(serde::Deserialize, schemars::JsonSchema, Default)]
#[serde(default)]
pub struct Settings {
    pub mode: String,
}

pub struct Misbehave;

#[plugin]
impl Plugin for Misbehave {
    type Settings = Settings;

    fn describe() -> Description {
        describe("misbehave", "0.0.0", "Misbehaves on purpose (tests only)")
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        if s.mode == "bad-settings" {
            return vec![diagnostic(Level::Error, "misbehave.mode", "mode bad-settings is always rejected", Some("mode".into()))];
        }
        vec![]
    }

    fn ports(_snapshot: &Snapshot, s: &Settings) -> Result<PortPlan, PluginError> {
        Misbehave::port_answer(s)
    }

    fn networks(snapshot: &Snapshot, s: &Settings) -> Result<NetworkPlan, PluginError> {
        match s.mode.as_str() {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = vec![];
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            "open-file" => {
                let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
                Err(error("misbehave.read", format!("read {} bytes", text.len()), None))
            }
            "socket" => {
                let r = std::net::TcpStream::connect("127.0.0.1:9");
                Err(error("misbehave.socket", format!("connect returned {}", r.is_ok()), None))
            }
            "env" => Err(error("misbehave.env", format!("HOME={:?}", std::env::var("HOME").ok()), None)),
            "panic" => panic!("misbehave was asked to panic"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Err(error("misbehave.slept", "woke up after an hour", None))
            }
            // Answers larger than any policy needs: each must be refused before orch processes it.
            "many-networks" => {
                let mut plan = NetworkPlan::empty();
                plan.networks = (0..20_000).map(|i| NetworkIntent { subnet: Some(SubnetRequest::Size(28)), ..NetworkIntent::new(&format!("n{i}")) }).collect();
                Ok(plan)
            }
            "many-diagnostics" => {
                let mut plan = NetworkPlan::empty();
                plan.diagnostics = (0..10_000).map(|i| diagnostic(Level::Warning, "misbehave.flood", format!("diagnostic {i}"), None)).collect();
                Ok(plan)
            }
            "huge-string" => {
                let mut plan = NetworkPlan::empty();
                plan.diagnostics.push(diagnostic(Level::Info, "misbehave.huge", "x".repeat(4 << 20), None));
                Ok(plan)
            }
            "long-name" => {
                let mut plan = NetworkPlan::empty();
                plan.networks.push(NetworkIntent::new(&"n".repeat(100_000)));
                Ok(plan)
            }
            "big-answer" => {
                let mut plan = NetworkPlan::empty();
                plan.diagnostics = (0..4000).map(|i| diagnostic(Level::Info, "misbehave.big", format!("{i}{}", "y".repeat(4000)), None)).collect();
                Ok(plan)
            }
            // One 32 MiB buffer handed back as every diagnostic's message: free for the plugin, a copy each for the host.
            "alias" => {
                let buffer = std::mem::ManuallyDrop::new("a".repeat(32 << 20));
                let mut plan = NetworkPlan::empty();
                plan.diagnostics = (0..1000)
                    .map(|_| {
                        // SAFETY: not sound Rust on purpose (1000 owners of one buffer): the answer is lowered without
                        // being dropped or written, and the host refuses it before post-return could free anything.
                        let alias = unsafe { String::from_raw_parts(buffer.as_ptr() as *mut u8, buffer.len(), buffer.capacity()) };
                        diagnostic(Level::Info, "misbehave.alias", alias, None)
                    })
                    .collect();
                Ok(plan)
            }
            "stdout-flood" => {
                let line = "z".repeat(1 << 16);
                for _ in 0..2000 {
                    println!("{line}");
                }
                Ok(NetworkPlan::empty())
            }
            "stack" => {
                fn deeper(n: u64, pad: [u64; 64]) -> u64 {
                    std::hint::black_box(pad);
                    if n == 0 { 0 } else { 1 + deeper(n - 1, std::hint::black_box([n; 64])) }
                }
                Err(error("misbehave.stack", format!("depth {}", deeper(u64::MAX, [0; 64])), None))
            }
            // A zero-length sleep is a non-blocking poll: it must not count as waiting.
            "yield" => {
                std::thread::sleep(std::time::Duration::ZERO);
                Ok(NetworkPlan::empty())
            }
            "refuse" => Err(error("misbehave.refused", "refusing on purpose", Some("services".into()))),
            "invalid-plan" => {
                let mut plan = NetworkPlan::empty();
                plan.networks.push(NetworkIntent { subnet: Some(SubnetRequest::Fixed("300.1.2.0/24".into())), ..NetworkIntent::new("broken") });
                Ok(plan)
            }
            // Decides fields another plugin (bpo-networks) decided too: main's size and db's isolation.
            "override" => {
                let mut plan = NetworkPlan::empty();
                for (name, internal) in [("main", None), ("db", Some(false))] {
                    plan.networks.push(NetworkIntent { subnet: (name == "main").then_some(SubnetRequest::Size(26)), internal, ..NetworkIntent::new(name) });
                }
                Ok(plan)
            }
            // Reports what the snapshot says of each service's mounts, capabilities, network mode and files.
            "report" => {
                let mut plan = NetworkPlan::empty();
                for svc in &snapshot.services {
                    let volumes: Vec<String> =
                        svc.volumes.iter().map(|m| format!("{}:{}:{}", m.kind, m.source.clone().unwrap_or_default(), m.target)).collect();
                    let files: Vec<String> = svc.secrets.iter().chain(&svc.configs).map(|f| format!("{}>{}", f.name, f.target)).collect();
                    let text = format!(
                        "{} volumes=[{}] cap_add=[{}] network_mode={} files=[{}] read_only={} profiles=[{}]",
                        svc.name,
                        volumes.join(","),
                        svc.cap_add.join(","),
                        svc.network_mode.clone().unwrap_or_default(),
                        files.join(","),
                        svc.read_only,
                        svc.profiles.join(",")
                    );
                    plan.diagnostics.push(diagnostic(Level::Info, "misbehave.report", text, None));
                }
                Ok(plan)
            }
            "clock" => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                let mut plan = NetworkPlan::empty();
                plan.diagnostics.push(diagnostic(Level::Info, "misbehave.clock", format!("{now}"), None));
                Ok(plan)
            }
            _ => {
                log(Level::Info, "misbehave: behaving");
                Ok(NetworkPlan::empty())
            }
        }
    }
}

impl Misbehave {
    /// The ports call: empty unless asked for more port intents than any policy needs.
    fn port_answer(s: &Settings) -> Result<PortPlan, PluginError> {
        let mut plan = PortPlan { ports: vec![], diagnostics: vec![] };
        if s.mode == "many-ports" {
            plan.ports = (0..100_000u32)
                .map(|i| PortIntent {
                    service: format!("s{i}"),
                    container_port: (i % 60_000) as u16 + 1,
                    protocol: "tcp".into(),
                    host_ip: None,
                    strategy: PortStrategy::Ephemeral,
                })
                .collect();
        }
        Ok(plan)
    }
}
