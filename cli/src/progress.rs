//! `up`'s progress for people: a live spinner line per service on a terminal (indicatif), plain timestamped lines
//! otherwise (CI, pipes).

use orch::lifecycle;

/// Longest service name shown in full in the live view (longer ones are cut with `…`).
const NAME_WIDTH: usize = 32;

/// Whether to draw live progress: on a terminal, outside CI.
pub fn live() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false)
}

pub struct ProgressView {
    /// The live view (indicatif), on a terminal outside CI.
    live: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::BTreeMap<String, indicatif::ProgressBar>>,
    started: std::time::Instant,
}

impl ProgressView {
    pub fn new() -> ProgressView {
        ProgressView {
            live: live().then(|| indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr())),
            bars: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    /// The spinner line of `service`, made on first use.
    fn bar(&self, multi: &indicatif::MultiProgress, service: &str) -> indicatif::ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(service.to_string())
            .or_insert_with(|| {
                let style =
                    indicatif::ProgressStyle::with_template("  {prefix} {spinner} {msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
                let name: String = if service.chars().count() > NAME_WIDTH {
                    service.chars().take(NAME_WIDTH - 1).chain(['…']).collect()
                } else {
                    format!("{service}{}", " ".repeat(NAME_WIDTH.min(24).saturating_sub(service.chars().count())))
                };
                let bar = multi.add(indicatif::ProgressBar::new_spinner().with_style(style).with_prefix(name));
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
                bar
            })
            .clone()
    }

    pub fn report(&self, p: lifecycle::Progress) {
        use lifecycle::Progress::*;
        let Some(multi) = &self.live else {
            eprintln!("[{:5.1}s] {}", self.started.elapsed().as_secs_f64(), progress_line(p));
            return;
        };
        match &p {
            Creating { service } => self.bar(multi, service).set_message("created"),
            Starting { service } => self.bar(multi, service).set_message("starting"),
            Waiting { service, what } => self.bar(multi, service).set_message(format!("waiting until {what}")),
            Ready { service, after } => self.bar(multi, service).finish_with_message(format!("ready ({:.1}s)", after.as_secs_f64())),
            Failed { service, .. } => {
                self.bar(multi, service).abandon_with_message("FAILED");
                let _ = multi.println(progress_line(p));
            }
            _ => {
                let _ = multi.println(progress_line(p));
            }
        }
    }
}

pub fn progress_line(p: lifecycle::Progress) -> String {
    use lifecycle::Progress::*;
    match p {
        Building { service, image } => format!("{service}: building {image}"),
        NetworkCreated { name, subnet } => {
            format!("network {name} created ({})", subnet.unwrap_or_default())
        }
        Creating { service } => format!("{service}: creating"),
        Starting { service } => format!("{service}: starting"),
        Waiting { service, what } => format!("{service}: waiting until {what}"),
        Ready { service, after } => format!("{service}: ready after {:.1}s", after.as_secs_f64()),
        Failed { service, reason } => format!("{service}: FAILED: {reason}"),
        RollingBack => "rolling back: removing everything this run created".to_string(),
        Planned { project, env, services, networks } => {
            format!("environment {env} of project {project}: bringing up {services} services on {networks} networks")
        }
        Queued { why } => why,
        Warning { message } => format!("warning: {message}"),
        Removed { containers, networks, volumes } => format!("removed {containers} containers, {networks} networks, {volumes} volumes"),
    }
}
