//! `orch bench`: runs [`orch::bench`] with a progress bar, removes everything on Ctrl-C or SIGTERM, prints the report
//! (and writes it with `-o`), and fails with exit 8 when a target is missed.

use orch::Error;
use orch::bench::{self, BenchOptions, Event, Tracker};
use orch::lifecycle::Progress;

use super::args::{BenchFormat, PlanInput};
use super::up::interrupted;
use super::{Dirs, engine, open, tokio};

pub struct BenchArgs {
    pub parallel: usize,
    pub runs: usize,
    pub targets: Vec<String>,
    pub timeout: std::time::Duration,
    pub no_variants: bool,
    pub format: BenchFormat,
    pub output: Option<std::path::PathBuf>,
}

/// One bar over every environment's `up` and `down`, with the latest step as its message; plain lines off a terminal.
struct View {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl View {
    fn new(total: u64) -> View {
        let bar = super::progress::live().then(|| {
            let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr()).with_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            bar
        });
        View { bar, started: std::time::Instant::now() }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("[{:6.1}s] {text}", self.started.elapsed().as_secs_f64()),
        }
    }

    fn report(&self, e: Event) {
        let at = |variant: &str, run: usize, slot: usize| format!("{variant} run {run} env {slot}");
        match e {
            Event::Step { variant, run, slot, progress } => {
                let quiet = matches!(progress, Progress::Creating { .. } | Progress::Starting { .. } | Progress::Waiting { .. });
                let text = format!("{}: {}", at(&variant, run, slot), super::progress::progress_line(progress));
                match &self.bar {
                    Some(bar) => bar.set_message(text),
                    None if !quiet => self.line(text),
                    None => {}
                }
            }
            Event::Up { variant, run, slot, env, elapsed } => {
                self.line(format!("{}: environment {env} up in {:.1}s", at(&variant, run, slot), elapsed.as_secs_f64()));
                self.step();
            }
            Event::Failed { variant, run, slot, error } => {
                self.line(format!("{}: FAILED: {}", at(&variant, run, slot), error.lines().next().unwrap_or_default()));
                // Its `down` will not come.
                self.step();
                self.step();
            }
            Event::Measured { variant, run } => self.line(format!("{variant} run {run}: measured memory and image sizes; removing")),
            Event::Down { variant, run, slot, env, elapsed } => {
                self.line(format!("{}: environment {env} removed in {:.1}s", at(&variant, run, slot), elapsed.as_secs_f64()));
                self.step();
            }
        }
    }

    fn step(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn run(dirs: &Dirs, input: &PlanInput, args: BenchArgs) -> Result<(), Error> {
    let rt = tokio();
    let options = input.options(&dirs.cache_dir, &dirs.state_dir);
    let project = open(input, dirs)?;
    let mut targets = project.bench_targets();
    for t in &args.targets {
        targets.set_pair(t).map_err(Error::Usage)?;
    }
    let variants = if args.no_variants { vec![] } else { bench::variants(&options, &project)? };
    let engine = engine(&rt, Some(&project))?;
    let opts = BenchOptions {
        parallel: args.parallel,
        runs: args.runs,
        timeout: args.timeout,
        // This binary watches the environments: even `kill -9` of the bench leaves nothing behind.
        watcher: std::env::current_exe().ok(),
        ..BenchOptions::default()
    };
    let view = View::new(2 * (args.parallel * (args.runs + variants.len())) as u64);
    let tracker = Tracker::default();
    let events = |e| view.report(e);
    let report = rt.block_on(async {
        tokio::select! {
            r = bench::run(&engine, &project, &variants, &targets, &opts, &tracker, &events) => r,
            signal = interrupted() => {
                view.finish();
                eprintln!("{signal}: removing every environment this bench made");
                let n = bench::remove_tracked(&engine, &project, &tracker).await;
                eprintln!("removed {n} environment(s)");
                Err(Error::Interrupted)
            }
        }
    });
    view.finish();
    let report = report?;
    let text = match args.format {
        BenchFormat::Table => crate::render::bench::table(&report),
        BenchFormat::Markdown => crate::render::bench::markdown(&report),
        BenchFormat::Json => format!("{}\n", serde_json::to_string_pretty(&report).expect("a report serialises")),
    };
    print!("{text}");
    if let Some(path) = &args.output {
        orch::atomic::write(path, text.as_bytes()).map_err(|e| Error::Io { what: format!("writing {}", path.display()), source: e })?;
    }
    if report.pass {
        Ok(())
    } else {
        let missed: Vec<&str> = report.checks.iter().filter(|c| !c.pass).map(|c| c.target.as_str()).collect();
        Err(Error::TargetMissed(format!("the bench missed: {} (see the report)", missed.join(", "))))
    }
}
