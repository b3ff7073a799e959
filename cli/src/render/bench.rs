//! A bench report for people: a terminal table, or markdown a team pastes into a pull request.

use orch::bench::report::{Report, Stats, seconds, size};

fn secs(s: &Option<Stats>) -> String {
    s.map(|s| if s.n > 1 { format!("{} ({}–{})", seconds(s.median), seconds(s.min), seconds(s.max)) } else { seconds(s.median) }).unwrap_or_else(|| "-".into())
}

fn bytes(s: &Option<Stats>) -> String {
    s.map(|s| if s.n > 1 { format!("{} (max {})", size(s.median as u64), size(s.max as u64)) } else { size(s.median as u64) }).unwrap_or_else(|| "-".into())
}

/// A multi-line error (an invalid plan lists its findings) as one line.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

fn opt_size(b: Option<u64>) -> String {
    b.map(size).unwrap_or_else(|| "-".into())
}

struct Section {
    title: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

fn sections(r: &Report) -> Vec<Section> {
    let mut out = vec![Section {
        title: "Services (median, min–max over the configured environments)".into(),
        headers: vec!["SERVICE", "IMAGE", "IMAGE SIZE", "READY AFTER", "MEMORY"],
        rows: r
            .services
            .iter()
            .map(|s| {
                vec![s.service.clone(), s.image.clone().unwrap_or_else(|| "-".into()), opt_size(s.image_size_bytes), secs(&s.ready_s), bytes(&s.memory_bytes)]
            })
            .collect(),
    }];
    out.push(Section {
        title: "Environments".into(),
        headers: vec!["VARIANT", "RUN", "SLOT", "ENV", "UP", "DOWN", "MEMORY", "RESULT"],
        rows: r
            .environments
            .iter()
            .map(|e| {
                let result = match (&e.error, e.leftovers.is_empty()) {
                    (Some(err), _) => format!("{}: {}", if e.conflict { "CONFLICT" } else { "FAILED" }, one_line(err)),
                    (None, false) => format!("LEFT {}", e.leftovers.join(", ")),
                    (None, true) => "ok".into(),
                };
                vec![
                    e.variant.clone(),
                    e.run.to_string(),
                    e.slot.to_string(),
                    e.env.clone().unwrap_or_else(|| "-".into()),
                    e.up_s.map(seconds).unwrap_or_else(|| "-".into()),
                    e.down_s.map(seconds).unwrap_or_else(|| "-".into()),
                    opt_size(e.memory_bytes),
                    result,
                ]
            })
            .collect(),
    });
    if !r.variants.is_empty() {
        out.push(Section {
            title: "Image variants".into(),
            headers: vec!["VARIANT", "IMAGES", "TOTAL SIZE", "UP", "MEMORY"],
            rows: r
                .variants
                .iter()
                .map(|v| {
                    let images = v.images.iter().map(|i| format!("{} {}", i.image, opt_size(i.size_bytes))).collect::<Vec<_>>().join(", ");
                    vec![v.variant.clone(), images, size(v.image_size_bytes), secs(&v.up_s), bytes(&v.memory_bytes)]
                })
                .collect(),
        });
    }
    out.push(Section {
        title: "Targets".into(),
        headers: vec!["TARGET", "LIMIT", "WORST", "RESULT"],
        rows: r
            .checks
            .iter()
            .map(|c| {
                let verdict =
                    if c.pass { "pass".to_string() } else { format!("MISS{}", c.detail.as_ref().map(|d| format!(": {}", one_line(d))).unwrap_or_default()) };
                vec![c.target.clone(), c.limit.clone(), c.worst.clone(), verdict]
            })
            .collect(),
    });
    out
}

fn headline(r: &Report) -> String {
    let t = &r.totals;
    format!(
        "orch bench of {} on the {} engine: {} run(s) × {} in parallel, {} environment(s) in {}; up {}, down {}, memory per environment {}; {} failed, {} conflicts, {} leftovers: {}",
        r.project,
        r.engine,
        r.runs,
        r.parallel,
        t.environments,
        seconds(r.wall_s),
        secs(&t.up_s),
        secs(&t.down_s),
        bytes(&t.memory_bytes),
        t.failed,
        t.conflicts,
        t.leftovers,
        if r.pass { "PASS" } else { "FAIL" }
    )
}

pub fn table(r: &Report) -> String {
    let mut out = format!("{}\n", headline(r));
    for s in sections(r) {
        out.push_str(&format!("\n{}\n", s.title));
        out.push_str(&super::table(&s.headers, &s.rows));
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!("### {} `orch bench`: {}\n\n{}\n", if r.pass { "✅" } else { "❌" }, r.project, cell(&headline(r)));
    for s in sections(r) {
        out.push_str(&format!("\n**{}**\n\n| {} |\n|{}\n", s.title, s.headers.join(" | "), " --- |".repeat(s.headers.len())));
        for row in &s.rows {
            out.push_str(&format!("| {} |\n", row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")));
        }
    }
    out
}
