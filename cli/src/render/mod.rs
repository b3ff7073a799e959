//! Text rendering for people: tables of plans, plugins and service status. Every cell is bounded, so no value (a
//! plugin's diagnostic, a 70k-character image name) can panic or flood a terminal; JSON output stays whole.

use orch::plan::{Level, Plan, PortStrategy, WaitStrategy};
use orch::plugins::LoadedPlugin;
use orch::plugins::runtime::policy_interface;
use orch::plugins::runtime::types::Policy;

pub mod bench;

/// Longest cell a table shows; longer values (a plugin's diagnostic, a 70k-character image name) are cut with `…`
/// and stay whole in `--format json`.
const MAX_CELL: usize = 160;

fn shorten(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.chars().count() <= MAX_CELL {
        return cell.into();
    }
    let cut: String = cell.chars().take(MAX_CELL - 1).collect();
    format!("{cut}…").into()
}

/// A plain table (comfy-table: columns aligned by display width, so wide characters line up), no borders, indented by
/// two spaces; every cell cut to [`MAX_CELL`] characters.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    use comfy_table::{ContentArrangement, Table, presets::NOTHING};
    let mut t = Table::new();
    t.load_preset(NOTHING).set_content_arrangement(ContentArrangement::Disabled).set_header(headers.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(|c| shorten(c).into_owned()));
    }
    // comfy-table pads each cell by one space on either side: one more makes the two-space indent.
    t.lines().map(|l| format!(" {}\n", l.trim_end())).collect()
}

pub fn policies(list: &[Policy]) -> String {
    list.iter().map(|p| policy_interface(*p)).collect::<Vec<_>>().join(",")
}

fn wait(w: &WaitStrategy) -> String {
    match w {
        WaitStrategy::Running => "running".into(),
        WaitStrategy::Healthcheck => "healthy".into(),
        WaitStrategy::Tcp { container_port } => format!("tcp:{container_port}"),
        WaitStrategy::Http { container_port, path, .. } => format!("http:{container_port}{path}"),
        WaitStrategy::LogLine { pattern, .. } => format!("log:{pattern:?}"),
        WaitStrategy::ExitZero => "exit 0".into(),
    }
}

pub fn plan(plan: &Plan, explain: bool) -> String {
    let id = &plan.identity;
    let mut out = format!(
        "Plan for project {} — environment {} ({:?}) — plugins: {}\n\nNETWORKS\n",
        id.project,
        id.env_id,
        id.env_kind,
        if plan.plugins.is_empty() { "none".into() } else { plan.plugins.join(", ") }
    );
    let rows: Vec<Vec<String>> = plan
        .networks
        .iter()
        .map(|(name, n)| {
            let members: Vec<&str> = plan.services.iter().filter(|(_, s)| s.networks.contains_key(name)).map(|(s, _)| s.as_str()).collect();
            vec![
                name.clone(),
                n.docker_name.clone(),
                n.subnet.clone().unwrap_or_else(|| if n.external { "(external)".into() } else { "-".into() }),
                n.gateway.clone().unwrap_or_else(|| "-".into()),
                if n.internal { "yes".into() } else { "no".into() },
                members.join(", "),
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "DOCKER NAME", "SUBNET", "GATEWAY", "INTERNAL", "SERVICES"], &rows));
    out.push_str("\nSERVICES\n");
    let rows: Vec<Vec<String>> = plan
        .services
        .iter()
        .map(|(name, s)| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .map(|p| match (&p.strategy, p.host_port) {
                    (PortStrategy::Unpublished, _) => format!("({})", p.key()),
                    (_, Some(h)) => format!("{h}->{}", p.key()),
                    (_, None) => format!("auto->{}", p.key()),
                })
                .collect();
            let limits = [s.resources.memory_limit.map(orch::bench::report::size), s.resources.cpus.map(|c| format!("{c} cpu"))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                name.clone(),
                s.container_name.clone(),
                s.image.clone().unwrap_or_else(|| "(build)".into()),
                s.networks.keys().cloned().collect::<Vec<_>>().join(","),
                if ports.is_empty() { "-".into() } else { ports.join(" ") },
                s.wait.iter().map(wait).collect::<Vec<_>>().join("+"),
                if limits.is_empty() { "-".into() } else { limits },
            ]
        })
        .collect();
    out.push_str(&table(&["NAME", "CONTAINER", "IMAGE", "NETWORKS", "PORTS (host->container)", "READY WHEN", "LIMITS"], &rows));
    let shown: Vec<_> = plan.diagnostics.iter().filter(|d| d.level >= Level::Info).collect();
    if !shown.is_empty() {
        out.push_str("\nDIAGNOSTICS\n");
        let rows: Vec<Vec<String>> =
            shown.iter().map(|d| vec![format!("{:?}", d.level).to_lowercase(), d.code.clone(), d.source.clone(), d.message.clone()]).collect();
        out.push_str(&table(&["LEVEL", "CODE", "FROM", "MESSAGE"], &rows));
    }
    if explain {
        out.push_str("\nSET BY (later wins)\n");
        let rows: Vec<Vec<String>> = plan.provenance.iter().map(|(path, chain)| vec![path.clone(), chain.join(" → ")]).collect();
        out.push_str(&table(&["FIELD", "SOURCES"], &rows));
    }
    out
}

pub fn inspect(p: &LoadedPlugin, json: bool) -> String {
    let d = &p.description;
    if json {
        let schema: serde_json::Value = serde_json::from_str(&d.settings_schema).unwrap_or(serde_json::Value::Null);
        let v = serde_json::json!({
            "name": d.name,
            "version": d.version,
            "summary": d.summary,
            "api_version": p.api_version,
            "implements": d.implements.iter().map(|p| policy_interface(*p)).collect::<Vec<_>>(),
            "settings_schema": schema,
            "sha256": p.sha256,
        });
        return serde_json::to_string_pretty(&v).expect("serialises") + "\n";
    }
    let mut out = format!(
        "name:        {}\nversion:     {}\napi:         orch:policy@{}\npolicies:    {}\nsha256:      {}\nsummary:     {}\n",
        d.name,
        d.version,
        p.api_version,
        policies(&d.implements),
        p.sha256,
        d.summary
    );
    if !d.settings_schema.is_empty() {
        out.push_str("settings schema:\n");
        let pretty = serde_json::from_str::<serde_json::Value>(&d.settings_schema)
            .map(|v| serde_json::to_string_pretty(&v).expect("serialises"))
            .unwrap_or_else(|_| d.settings_schema.clone());
        for line in pretty.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

pub fn status(list: &[orch::lifecycle::ServiceStatus]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let ports: Vec<String> = s.ports.iter().filter(|p| p.1 != "::").map(|(p, _, hp)| format!("{hp}->{p}")).collect();
            let age = now.saturating_sub(s.created);
            vec![
                s.env.clone(),
                s.project.clone(),
                s.service.clone(),
                s.state.clone(),
                if ports.is_empty() { "-".into() } else { ports.join(" ") },
                if age >= 3600 {
                    format!("{}h", age / 3600)
                } else if age >= 60 {
                    format!("{}m", age / 60)
                } else {
                    format!("{age}s")
                },
            ]
        })
        .collect();
    table(&["ENV", "PROJECT", "SERVICE", "STATE", "PORTS", "AGE"], &rows)
}

/// `orch network` for people: one row per tier network.
pub fn tiers(report: &orch::tiers::Report) -> String {
    if report.networks.is_empty() {
        return format!("project {} has no tier networks and its plan defines none\n", report.project);
    }
    let rows: Vec<Vec<String>> = report
        .networks
        .iter()
        .map(|n| {
            let state = if n.removed {
                "removed".to_string()
            } else if !n.exists {
                "missing".to_string()
            } else if n.created {
                "created".to_string()
            } else if n.matches_plan {
                "matches plan".to_string()
            } else if n.differences.is_empty() {
                "exists".to_string()
            } else {
                format!("DIFFERS: {}", n.differences.join("; "))
            };
            vec![
                n.tier.clone(),
                n.name.clone(),
                n.subnet.clone().unwrap_or_else(|| if n.exists || !n.in_plan { "-".into() } else { "carved on create".into() }),
                n.gateway.clone().unwrap_or_else(|| "-".into()),
                if n.internal { "yes".into() } else { "no".into() },
                if n.containers.is_empty() { "-".into() } else { n.containers.join(",") },
                state,
            ]
        })
        .collect();
    table(&["TIER", "NAME", "SUBNET", "GATEWAY", "INTERNAL", "CONTAINERS", "STATE"], &rows)
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_cells_do_not_panic_and_are_cut() {
        let huge = "x".repeat(70_000);
        let out = super::table(&["a", "b"], &[vec![huge.clone(), "y".into()], vec!["short".into(), huge]]);
        assert!(out.lines().all(|l| l.chars().count() < 400), "{}", out.len());
        assert!(out.contains('…'));
    }
}
