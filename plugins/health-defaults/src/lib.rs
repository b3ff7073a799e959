//! `health-defaults`: healthchecks and readiness for services whose compose file has none — postgres
//! (`pg_isready`), redis (`redis-cli ping`), clickhouse (`SELECT 1`), and HTTP services (`/health`) — polled fast in
//! test and ci, gently in dev and prod.

use std::collections::BTreeMap;

use orch_plugin_api::*;

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Services (by name) that serve HTTP health: service → "PORT" or "PORT/path" (default path /health).
    #[schemars(extend("additionalProperties" = {"type": "string", "pattern": "^[0-9]+(/.*)?$"}))]
    pub http: BTreeMap<String, String>,
    /// Also add a healthcheck where the compose file has one (replace it).
    pub replace: bool,
    /// In test and ci, poll the compose file's own healthchecks at the fast interval too (default true).
    pub tune_existing: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { http: BTreeMap::new(), replace: false, tune_existing: true }
    }
}

fn fast(kind: EnvKind) -> bool {
    matches!(kind, EnvKind::Test | EnvKind::Ci)
}

/// (interval, start period) in ms per environment kind.
fn timing(kind: EnvKind) -> (u64, u64) {
    match kind {
        EnvKind::Test | EnvKind::Ci => (1_000, 0),
        EnvKind::Dev | EnvKind::Prod => (10_000, 5_000),
    }
}

/// The compose file's own check polled every `interval` ms, with the same patience: its start period is kept and its
/// retries scaled so that failing checks are tolerated for as long as the file allowed (a database that needs 20 s to
/// start on a loaded CI host must not be declared unhealthy after five 1 s polls). Docker's defaults fill gaps.
fn tuned(own: &Healthcheck, interval: u64) -> Healthcheck {
    let (own_interval, own_retries) = (own.interval_ms.unwrap_or(30_000), own.retries.unwrap_or(3));
    let retries = own_retries.max(u32::try_from(own_interval.saturating_mul(u64::from(own_retries)).div_ceil(interval.max(1))).unwrap_or(u32::MAX));
    Healthcheck { interval_ms: Some(interval), retries: Some(retries), ..own.clone() }
}

fn env_value<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.environment.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
}

/// The healthcheck command for a known image.
pub fn known_check(svc: &Service) -> Option<Vec<String>> {
    let base = svc.image_base()?;
    let shell = |s: String| vec!["CMD-SHELL".to_string(), s];
    Some(match base {
        "postgres" | "postgis" | "timescaledb" => {
            let user = env_value(svc, "POSTGRES_USER").unwrap_or("postgres");
            let db = env_value(svc, "POSTGRES_DB").unwrap_or(user);
            shell(format!("pg_isready -h 127.0.0.1 -U {user} -d {db}"))
        }
        "redis" | "valkey" => vec!["CMD".into(), "redis-cli".into(), "ping".into()],
        "clickhouse-server" | "clickhouse" => shell("clickhouse-client --query 'SELECT 1' || wget -q -O- http://127.0.0.1:8123/ping".into()),
        "mysql" | "mariadb" => shell("mysqladmin ping -h 127.0.0.1".into()),
        _ => return None,
    })
}

fn parse_http(spec: &str) -> Option<(u16, String)> {
    let (port, path) = spec.split_once('/').map(|(p, rest)| (p, format!("/{rest}"))).unwrap_or((spec, "/health".into()));
    Some((port.parse().ok()?, path))
}

pub struct HealthDefaults;

#[plugin]
impl Plugin for HealthDefaults {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "health-defaults",
            env!("CARGO_PKG_VERSION"),
            "Healthchecks for postgres, redis, clickhouse, mysql and HTTP /health services that have none; fast polling in test/ci",
        )
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        s.http
            .iter()
            .filter(|(_, v)| parse_http(v).is_none())
            .map(|(k, v)| diagnostic(Level::Error, "health.http", format!("{v:?} is not PORT or PORT/path"), Some(format!("http.{k}"))))
            .collect()
    }

    fn health(snapshot: &Snapshot, s: &Settings) -> Result<HealthPlan, PluginError> {
        let (interval, start) = timing(snapshot.env_kind);
        let mut plan = HealthPlan { services: vec![], diagnostics: vec![] };
        for svc in &snapshot.services {
            let has_own = svc.healthcheck.as_ref().is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"));
            if let Some((port, path)) = s.http.get(&svc.name).and_then(|v| parse_http(v)) {
                // HTTP services are awaited from the host; no tool inside the image is needed.
                plan.services.push(HealthIntent {
                    service: svc.name.clone(),
                    healthcheck: None,
                    wait: Some(vec![WaitStrategy::Http(HttpWait { container_port: port, path, status: 0 })]),
                });
                continue;
            }
            if has_own && !s.replace {
                // Fast polling in test/ci for the compose file's own checks too: Docker's status follows orch's
                // readiness within a second instead of after a 10-30 s interval.
                let own = svc.healthcheck.as_ref().expect("has_own");
                if s.tune_existing && own.interval_ms.is_none_or(|i| i > interval) && fast(snapshot.env_kind) {
                    plan.services.push(HealthIntent { service: svc.name.clone(), healthcheck: Some(tuned(own, interval)), wait: None });
                }
                continue;
            }
            let Some(test) = known_check(svc) else {
                continue;
            };
            plan.diagnostics.push(diagnostic(
                Level::Info,
                "health.added",
                format!("{}: healthcheck {:?}", svc.name, test[1..].join(" ")),
                Some(format!("services.{}.healthcheck", svc.name)),
            ));
            plan.services.push(HealthIntent {
                service: svc.name.clone(),
                healthcheck: Some(Healthcheck {
                    test,
                    interval_ms: Some(interval),
                    timeout_ms: Some(5_000),
                    retries: Some(30),
                    start_period_ms: Some(start),
                    start_interval_ms: None,
                }),
                wait: Some(vec![WaitStrategy::Healthcheck]),
            });
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(interval: Option<u64>, retries: Option<u32>, start: Option<u64>) -> Healthcheck {
        Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval_ms: interval,
            timeout_ms: Some(5_000),
            retries,
            start_period_ms: start,
            start_interval_ms: None,
        }
    }

    #[test]
    fn tuning_polls_faster_with_the_files_patience() {
        // netra's postgres: every 10 s, 5 retries, 20 s to start → every 1 s, 50 retries, still 20 s to start.
        let t = tuned(&check(Some(10_000), Some(5), Some(20_000)), 1_000);
        assert_eq!((t.interval_ms, t.retries, t.start_period_ms, t.timeout_ms), (Some(1_000), Some(50), Some(20_000), Some(5_000)));
        // Docker's defaults (30 s, 3 retries) when the file says nothing.
        assert_eq!(tuned(&check(None, None, None), 1_000).retries, Some(90));
        // Never fewer retries than the file asked for.
        assert_eq!(tuned(&check(Some(1_500), Some(10), None), 1_000).retries, Some(15));
        assert_eq!(tuned(&check(Some(u64::MAX), Some(u32::MAX), None), 1).retries, Some(u32::MAX));
    }
}
