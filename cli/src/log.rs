//! What the library reports through `tracing`, on stderr: logs as `ORCH_LOG` asks (a filter such as `debug` or
//! `orch=debug,bollard=debug`; warnings by default), and plugin builds (events of target `orch::plugin_build`) as a
//! spinner on a terminal, or one line per build otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The target of the plugin host's build progress events.
const PLUGIN_BUILD: &str = "orch::plugin_build";

/// Installs the logger for this process.
pub fn init() {
    let filter = std::env::var("ORCH_LOG").ok().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("warn"));
    // Plugin builds are shown by their own layer, whatever the filter says.
    let filter = filter.add_directive(format!("{PLUGIN_BUILD}=off").parse().expect("a valid directive"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let builds = PluginBuilds::default().with_filter(Targets::new().with_target(PLUGIN_BUILD, Level::DEBUG));
    let _ = tracing_subscriber::registry().with(logs).with(builds).try_init();
}

/// Whether `ORCH_LOG` asks for debug logs (then error details, a plugin crash's wasm backtrace, are shown).
pub fn debug() -> bool {
    tracing::enabled!(Level::DEBUG)
}

/// Plugin builds: a spinner with the latest crate compiled on a terminal; the first line of each build otherwise
/// (cargo's own lines follow it there).
#[derive(Default)]
struct PluginBuilds {
    spinner: Mutex<Option<indicatif::ProgressBar>>,
}

#[derive(Default)]
struct BuildEvent {
    message: String,
    done: bool,
}

impl Visit for BuildEvent {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "done" {
            self.done = value;
        }
    }
}

impl<S: Subscriber> Layer<S> for PluginBuilds {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut e = BuildEvent::default();
        event.record(&mut e);
        let mut spinner = self.spinner.lock().unwrap_or_else(|p| p.into_inner());
        if e.done {
            if let Some(s) = spinner.take() {
                s.finish_and_clear();
            }
            return;
        }
        if !std::io::stderr().is_terminal() {
            if *event.metadata().level() == Level::INFO {
                eprintln!("{}", e.message);
            }
            return;
        }
        let s = spinner.get_or_insert_with(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("a valid template"));
            s.enable_steady_tick(Duration::from_millis(120));
            s
        });
        s.set_message(e.message);
    }
}
