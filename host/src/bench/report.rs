//! What `orch bench` measures and reports: the figures of each environment it brought up, their statistics, the
//! targets from `orch.toml`'s `[bench]` (or `--target`) and the verdict on each.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// `orch bench --format json`.
pub const FORMAT: &str = "orch.bench/v1";

pub use crate::config::{TARGET_KEYS, Targets};

/// Minimum, median, mean and maximum of a figure over the environments that have it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub mean: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Stats { n, min: v[0], median, mean: v.iter().sum::<f64>() / n as f64, max: v[n - 1] })
    }
}

/// One service in one environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceRun {
    pub image: Option<String>,
    /// Seconds from the start of `up` until the service was ready.
    pub ready_s: Option<f64>,
    /// Memory in use once every environment of the round was up.
    pub memory_bytes: Option<u64>,
}

/// One environment the bench brought up (or tried to).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EnvRun {
    /// `configured` (the project as it is), or an image variant (`regular`).
    pub variant: String,
    /// 1-based round, and place within the round (`--parallel`).
    pub run: usize,
    pub slot: usize,
    pub env: Option<String>,
    /// Seconds until every service was ready (admission queueing included).
    pub up_s: Option<f64>,
    /// Seconds `down` took.
    pub down_s: Option<f64>,
    /// Its services' memory together.
    pub memory_bytes: Option<u64>,
    pub services: BTreeMap<String, ServiceRun>,
    /// Why `up` (or `down`) failed.
    pub error: Option<String>,
    /// The failure was a collision with another environment (a host port, a name, a subnet).
    pub conflict: bool,
    /// Resources of the environment still there after `down`.
    pub leftovers: Vec<String>,
}

/// One service over the `configured` environments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceFigures {
    pub service: String,
    pub image: Option<String>,
    pub image_size_bytes: Option<u64>,
    pub ready_s: Option<Stats>,
    pub memory_bytes: Option<Stats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageFigure {
    pub image: String,
    pub size_bytes: Option<u64>,
    pub services: Vec<String>,
}

/// The configured stack against an image variant of it (when the image-variants plugin is active).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub variant: String,
    pub images: Vec<ImageFigure>,
    /// The distinct images together.
    pub image_size_bytes: u64,
    pub up_s: Option<Stats>,
    pub memory_bytes: Option<Stats>,
    /// Median seconds to ready, per service.
    pub ready_s: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub environments: usize,
    pub failed: usize,
    pub conflicts: usize,
    pub leftovers: usize,
    pub up_s: Option<Stats>,
    pub down_s: Option<Stats>,
    pub memory_bytes: Option<Stats>,
}

/// A target and whether the bench met it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub target: String,
    /// The limit as given (`30s`, `200MB`), or `0` for conflicts, failures and leftovers.
    pub limit: String,
    /// The worst figure measured.
    pub worst: String,
    pub pass: bool,
    /// What missed it.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub project: String,
    pub engine: String,
    pub parallel: usize,
    pub runs: usize,
    /// Seconds the whole bench took.
    pub wall_s: f64,
    pub environments: Vec<EnvRun>,
    pub services: Vec<ServiceFigures>,
    pub images: Vec<ImageFigure>,
    pub totals: Totals,
    pub variants: Vec<Variant>,
    pub checks: Vec<Check>,
    pub pass: bool,
}

/// `1.5 GiB`, `734.2 MiB`, `12.0 KiB`, `734 B` (IEC units, bytesize's rendering).
pub fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

pub fn seconds(s: f64) -> String {
    format!("{s:.1}s")
}

fn limit_duration(d: Duration) -> String {
    seconds(d.as_secs_f64())
}

/// The figures over the environments of each variant, and the verdict on every target.
pub fn summarise(report: &mut Report, targets: &Targets, image_sizes: &BTreeMap<String, Option<u64>>) {
    let configured: Vec<&EnvRun> = report.environments.iter().filter(|e| e.variant == super::CONFIGURED).collect();
    let service_names: std::collections::BTreeSet<&String> = configured.iter().flat_map(|e| e.services.keys()).collect();
    report.services = service_names
        .into_iter()
        .map(|s| {
            let runs: Vec<&ServiceRun> = configured.iter().filter_map(|e| e.services.get(s)).collect();
            let image = runs.iter().find_map(|r| r.image.clone());
            ServiceFigures {
                service: s.clone(),
                image_size_bytes: image.as_ref().and_then(|i| image_sizes.get(i).copied().flatten()),
                image,
                ready_s: Stats::of(runs.iter().filter_map(|r| r.ready_s)),
                memory_bytes: Stats::of(runs.iter().filter_map(|r| r.memory_bytes).map(|m| m as f64)),
            }
        })
        .collect();
    report.images = images_of(&configured, image_sizes);
    report.totals = Totals {
        environments: report.environments.len(),
        failed: report.environments.iter().filter(|e| e.error.is_some()).count(),
        conflicts: report.environments.iter().filter(|e| e.conflict).count(),
        leftovers: report.environments.iter().map(|e| e.leftovers.len()).sum(),
        up_s: Stats::of(configured.iter().filter_map(|e| e.up_s)),
        down_s: Stats::of(configured.iter().filter_map(|e| e.down_s)),
        memory_bytes: Stats::of(configured.iter().filter_map(|e| e.memory_bytes).map(|m| m as f64)),
    };
    let variants: std::collections::BTreeSet<&String> = report.environments.iter().map(|e| &e.variant).collect();
    report.variants = if variants.len() > 1 {
        variants
            .into_iter()
            .map(|v| {
                let envs: Vec<&EnvRun> = report.environments.iter().filter(|e| &e.variant == v).collect();
                let images = images_of(&envs, image_sizes);
                let names: std::collections::BTreeSet<&String> = envs.iter().flat_map(|e| e.services.keys()).collect();
                Variant {
                    variant: v.clone(),
                    image_size_bytes: images.iter().filter_map(|i| i.size_bytes).sum(),
                    images,
                    up_s: Stats::of(envs.iter().filter_map(|e| e.up_s)),
                    memory_bytes: Stats::of(envs.iter().filter_map(|e| e.memory_bytes).map(|m| m as f64)),
                    ready_s: names
                        .into_iter()
                        .filter_map(|s| Stats::of(envs.iter().filter_map(|e| e.services.get(s)?.ready_s)).map(|st| (s.clone(), st.median)))
                        .collect(),
                }
            })
            .collect()
    } else {
        vec![]
    };
    report.checks = checks(report, targets);
    report.pass = report.checks.iter().all(|c| c.pass);
}

fn images_of(envs: &[&EnvRun], image_sizes: &BTreeMap<String, Option<u64>>) -> Vec<ImageFigure> {
    let mut by_image: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in envs {
        for (s, r) in &e.services {
            if let Some(i) = &r.image {
                let list = by_image.entry(i.clone()).or_default();
                if !list.contains(s) {
                    list.push(s.clone());
                }
            }
        }
    }
    by_image.into_iter().map(|(image, services)| ImageFigure { size_bytes: image_sizes.get(&image).copied().flatten(), image, services }).collect()
}

fn checks(report: &Report, targets: &Targets) -> Vec<Check> {
    let mut out = vec![];
    let all = &report.environments;
    let label = |e: &EnvRun| format!("{} run {} slot {}{}", e.variant, e.run, e.slot, e.env.as_ref().map(|id| format!(" ({id})")).unwrap_or_default());
    let count_check = |target: &str, bad: Vec<String>| Check {
        target: target.into(),
        limit: "0".into(),
        worst: bad.len().to_string(),
        pass: bad.is_empty(),
        detail: (!bad.is_empty()).then(|| bad.join("; ")),
    };
    out.push(count_check("conflicts", all.iter().filter(|e| e.conflict).map(|e| format!("{}: {}", label(e), e.error.clone().unwrap_or_default())).collect()));
    out.push(count_check(
        "failures",
        all.iter().filter(|e| e.error.is_some() && !e.conflict).map(|e| format!("{}: {}", label(e), e.error.clone().unwrap_or_default())).collect(),
    ));
    out.push(count_check("leftovers", all.iter().filter(|e| !e.leftovers.is_empty()).map(|e| format!("{}: {}", label(e), e.leftovers.join(", "))).collect()));
    // Targets are the configured stack's: an image variant is a comparison, not what the team ships.
    let configured: Vec<&EnvRun> = all.iter().filter(|e| e.variant == super::CONFIGURED).collect();
    let mut timed = |target: &str, limit: Option<Duration>, figure: &dyn Fn(&EnvRun) -> Option<f64>| {
        let Some(limit) = limit else { return };
        let worst = configured.iter().filter_map(|e| figure(e).map(|f| (f, *e))).max_by(|a, b| a.0.total_cmp(&b.0));
        let over: Vec<String> =
            configured.iter().filter_map(|e| figure(e).filter(|f| *f > limit.as_secs_f64()).map(|f| format!("{}: {}", label(e), seconds(f)))).collect();
        out.push(Check {
            target: target.into(),
            limit: limit_duration(limit),
            worst: worst.map(|w| seconds(w.0)).unwrap_or_else(|| "not measured".into()),
            pass: worst.is_some() && over.is_empty(),
            detail: if worst.is_none() { Some("no environment was measured".into()) } else { (!over.is_empty()).then(|| over.join("; ")) },
        });
    };
    timed("startup", targets.startup, &|e| e.up_s);
    timed("cleanup", targets.cleanup, &|e| e.down_s);
    if let Some(limit) = targets.memory {
        let measured: Vec<(u64, &EnvRun)> = configured.iter().filter_map(|e| e.memory_bytes.map(|m| (m, *e))).collect();
        let worst = measured.iter().map(|m| m.0).max();
        let over: Vec<String> = measured.iter().filter(|m| m.0 > limit).map(|(m, e)| format!("{}: {}", label(e), size(*m))).collect();
        out.push(Check {
            target: "memory".into(),
            limit: size(limit),
            worst: worst.map(size).unwrap_or_else(|| "not measured".into()),
            pass: worst.is_some() && over.is_empty(),
            detail: if worst.is_none() { Some("the engine reported no memory figures".into()) } else { (!over.is_empty()).then(|| over.join("; ")) },
        });
    }
    if let Some(limit) = targets.image_size {
        let worst = report.images.iter().filter_map(|i| i.size_bytes).max();
        let over: Vec<String> = report
            .images
            .iter()
            .filter(|i| i.size_bytes.is_some_and(|s| s > limit))
            .map(|i| format!("{}: {}", i.image, size(i.size_bytes.unwrap_or(0))))
            .collect();
        out.push(Check {
            target: "image-size".into(),
            limit: size(limit),
            worst: worst.map(size).unwrap_or_else(|| "not measured".into()),
            pass: worst.is_some() && over.is_empty(),
            detail: if worst.is_none() { Some("no image size was found".into()) } else { (!over.is_empty()).then(|| over.join("; ")) },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(variant: &str, up: f64, down: f64, mem: u64) -> EnvRun {
        EnvRun {
            variant: variant.into(),
            run: 1,
            slot: 1,
            env: Some("e1".into()),
            up_s: Some(up),
            down_s: Some(down),
            memory_bytes: Some(mem),
            services: BTreeMap::from([("db".into(), ServiceRun { image: Some("pg:15".into()), ready_s: Some(up - 1.0), memory_bytes: Some(mem) })]),
            ..EnvRun::default()
        }
    }

    fn report(envs: Vec<EnvRun>) -> Report {
        Report {
            format: FORMAT,
            project: "p".into(),
            engine: "local".into(),
            parallel: 1,
            runs: 1,
            wall_s: 1.0,
            environments: envs,
            services: vec![],
            images: vec![],
            totals: Totals { environments: 0, failed: 0, conflicts: 0, leftovers: 0, up_s: None, down_s: None, memory_bytes: None },
            variants: vec![],
            checks: vec![],
            pass: false,
        }
    }

    #[test]
    fn targets_parse_durations_and_sizes_and_name_what_is_wrong() {
        let t: Targets = toml::from_str("startup = \"30s\"\nmemory = \"2GiB\"\nimage-size = \"200MB\"\ncleanup = \"5s\"").unwrap();
        assert_eq!(t.startup, Some(Duration::from_secs(30)));
        assert_eq!(t.memory, Some(2 << 30));
        assert_eq!(t.image_size, Some(200_000_000));
        assert_eq!(t.cleanup, Some(Duration::from_secs(5)));
        let e = toml::from_str::<Targets>("memory = \"lots\"").unwrap_err().to_string();
        assert!(e.contains("bench.memory") && e.contains("lots"), "{e}");
        let e = toml::from_str::<Targets>("speed = \"1s\"").unwrap_err().to_string();
        assert!(e.contains("speed"), "{e}");
        let mut t = Targets::default();
        assert!(t.set_pair("startup").unwrap_err().contains("KEY=VALUE"));
        assert!(t.set_pair("latency=1s").unwrap_err().contains("unknown bench target"));
        t.set_pair("startup=1ms").unwrap();
        assert_eq!(t.startup, Some(Duration::from_millis(1)));
    }

    #[test]
    fn stats_are_min_median_mean_max() {
        let s = Stats::of([3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.n, s.min, s.median, s.mean, s.max), (4, 1.0, 2.5, 4.0, 10.0));
        assert!(Stats::of([]).is_none());
    }

    #[test]
    fn a_missed_target_fails_the_bench_and_names_the_environment() {
        let mut r = report(vec![env(super::super::CONFIGURED, 12.0, 1.0, 300 << 20), env(super::super::CONFIGURED, 40.0, 2.0, 200 << 20)]);
        let sizes = BTreeMap::from([("pg:15".to_string(), Some(150_000_000))]);
        let targets = Targets { startup: Some(Duration::from_secs(30)), memory: Some(1 << 30), image_size: Some(200_000_000), cleanup: None };
        summarise(&mut r, &targets, &sizes);
        assert!(!r.pass);
        let startup = r.checks.iter().find(|c| c.target == "startup").unwrap();
        assert!(!startup.pass && startup.worst == "40.0s" && startup.detail.as_deref().unwrap().contains("40.0s"), "{startup:?}");
        assert!(r.checks.iter().filter(|c| c.target != "startup").all(|c| c.pass), "{:?}", r.checks);
        assert_eq!(r.services[0].ready_s.unwrap().max, 39.0);
        assert_eq!(r.images[0].size_bytes, Some(150_000_000));
    }

    #[test]
    fn conflicts_and_leftovers_always_fail_and_variants_are_compared() {
        let mut conflicted = env(super::super::CONFIGURED, 1.0, 1.0, 1);
        conflicted.error = Some("port 5432 taken".into());
        conflicted.conflict = true;
        let mut leaky = env("regular", 2.0, 1.0, 1);
        leaky.leftovers = vec!["network p-e1-default".into()];
        let mut r = report(vec![conflicted, leaky]);
        summarise(&mut r, &Targets::default(), &BTreeMap::new());
        assert!(!r.pass);
        let by = |t: &str| r.checks.iter().find(|c| c.target == t).unwrap().clone();
        assert!(!by("conflicts").pass && by("failures").pass && !by("leftovers").pass);
        assert_eq!(r.variants.iter().map(|v| v.variant.as_str()).collect::<Vec<_>>(), [super::super::CONFIGURED, "regular"]);
    }

    #[test]
    fn sizes_read_like_docker_reports_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536 << 20), "1.5 GiB");
    }
}
