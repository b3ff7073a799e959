//! Plugin overhead benchmark (not a test): cold compile vs cached load, per-call latency, and what plugins add to
//! one `orch plan` process on the BPO example. Run: `cargo bench -p orch-cli --bench plugins`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use orch::facts::Facts;
use orch::plugins::{self, PluginRef, Runtime, builtin_bytes};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let compose = root.join("examples/bpo/compose.yaml");
    let bytes = builtin_bytes("bpo-networks").unwrap();
    let cache = tempfile::tempdir().unwrap();

    // Cold: compile from the component bytes, no cache.
    let cold: Vec<Duration> = (0..5)
        .map(|_| {
            let rt = Runtime::new(None).unwrap();
            let t = Instant::now();
            rt.load("bpo-networks", bytes).unwrap();
            t.elapsed()
        })
        .collect();
    // Warm: load the precompiled component from the disk cache.
    Runtime::new(Some(cache.path().into())).unwrap().load("bpo-networks", bytes).unwrap();
    let warm: Vec<Duration> = (0..50)
        .map(|_| {
            let rt = Runtime::new(Some(cache.path().into())).unwrap();
            let t = Instant::now();
            let p = rt.load("bpo-networks", bytes).unwrap();
            assert!(p.stats.from_cache);
            t.elapsed()
        })
        .collect();

    // Per call: a fresh instance + networks.plan on the BPO snapshot (11 services in, 5 networks out).
    let rt = Runtime::new(Some(cache.path().into())).unwrap();
    let settings = orch::plugin_settings(&[]).unwrap();
    let active = plugins::activate(&rt, &[PluginRef::parse("bpo-networks")], &settings).unwrap();
    let request = orch::PlanRequest {
        compose: orch_compose::LoadOptions { files: vec![compose.clone()], ..Default::default() },
        env_id: Some("bench".into()),
        ..Default::default()
    };
    let loaded = orch_compose::load(&request.compose).unwrap();
    let identity = orch::plan::Identity { project: loaded.project.name.clone(), env_id: "bench".into(), env_kind: Default::default() };
    let draft = orch::plan::draft(&loaded.project, &identity, &loaded.variables);
    let snap = plugins::convert::snapshot(&draft, &active[0].settings, &Facts::default());
    let calls: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            active[0].plugin.plan_networks(&snap).unwrap();
            t.elapsed()
        })
        .collect();

    let describes: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            active[0].plugin.describe().unwrap();
            t.elapsed()
        })
        .collect();

    // In-process: a whole plan with and without the plugin (load from warm cache + settings check + both calls).
    let facts = Facts::default();
    let with: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            let rt = Runtime::new(Some(cache.path().into())).unwrap();
            let active = plugins::activate(&rt, &[PluginRef::parse("bpo-networks")], &settings).unwrap();
            orch::make_plan(&request, &active, &facts).unwrap();
            t.elapsed()
        })
        .collect();
    let without: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            orch::make_plan(&request, &[], &facts).unwrap();
            t.elapsed()
        })
        .collect();

    // Whole processes: `orch plan` with and without the plugin, warm cache, no engine.
    let run = |plugin: bool| -> Vec<Duration> {
        (0..30)
            .map(|_| {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_orch"));
                cmd.args(["plan", "-f"]).arg(&compose).args(["--env", "bench", "--no-engine", "--format", "json"]);
                cmd.env("ORCH_CACHE_DIR", cache.path());
                if plugin {
                    cmd.args(["--plugin", "bpo-networks"]);
                }
                let t = Instant::now();
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                t.elapsed()
            })
            .collect()
    };
    let _ = run(true);
    let proc_with = run(true);
    let proc_without = run(false);

    let (cold_m, warm_m) = (median(cold), median(warm));
    println!("orch plugin benchmark — bpo-networks ({} KB component), BPO example (11 services, 5 tier networks)", bytes.len() / 1024);
    println!("{:<44} {:>12}", "cold compile (no cache), median of 5", ms(cold_m));
    println!("{:<44} {:>12}", "cached load (disk cache), median of 50", ms(warm_m));
    println!("{:<44} {:>11.0}×", "  ratio cold / cached", cold_m.as_secs_f64() / warm_m.as_secs_f64());
    println!("{:<44} {:>12}", "describe call (smallest), fresh instance, p50", us(pct(describes, 0.5)));
    println!("{:<44} {:>12}", "networks.plan call, fresh instance, p50", us(pct(calls.clone(), 0.5)));
    println!("{:<44} {:>12}", "networks.plan call, fresh instance, p99", us(pct(calls, 0.99)));
    let (w, wo) = (median(with), median(without));
    println!("{:<44} {:>12}", "make_plan in-process, no plugin, median", ms(wo));
    println!("{:<44} {:>12}", "make_plan in-process, bpo-networks, median", ms(w));
    println!("{:<44} {:>12}", "  plugin overhead in-process (warm cache)", ms(w.saturating_sub(wo)));
    let (pw, pwo) = (median(proc_with), median(proc_without));
    println!("{:<44} {:>12}", "`orch plan` process, no plugin, median", ms(pwo));
    println!("{:<44} {:>12}", "`orch plan` process, bpo-networks, median", ms(pw));
    println!("{:<44} {:>12}", "  plugin overhead per process (warm cache)", ms(pw.saturating_sub(pwo)));
    println!("{:<44} {:>12.2}", "  ratio process with / without plugin", pw.as_secs_f64() / pwo.as_secs_f64());
}
