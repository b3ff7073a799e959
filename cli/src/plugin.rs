//! `orch plugin new/build/test/push/pull/update`: the plugin author's path from a template to a pinned reference.

use std::collections::BTreeMap;
use std::path::PathBuf;

use orch::Error;
use orch::authoring::test::{Outcome, PluginTest};
use orch::plugins::source::{Fetched, Sources};
use orch::plugins::{self, LoadedPlugin, PluginRef};

use super::args::PluginCommand;
use orch::session::{project_sources, runtime};

pub fn run(cache: &Option<PathBuf>, command: PluginCommand) -> Result<(), Error> {
    match command {
        PluginCommand::New { name, path, sdk } => new(&name, path, sdk),
        PluginCommand::Vendor { dir } => {
            let written = plugins::sdk::vendor(&dir).map_err(|e| Error::InvalidInput { what: dir.display().to_string(), message: e })?;
            eprintln!("wrote the orch-plugin-api {} SDK into {}", plugins::sdk::VERSION, written.display());
            Ok(())
        }
        PluginCommand::Build { dir } => {
            let wasm = plugins::source::build_crate(&dir, true)?;
            println!("{}", wasm.display());
            Ok(())
        }
        PluginCommand::Test { plugin, compose, settings, env_kind, expect, update, full_plan } => {
            test(cache, PluginTest { plugin, compose, settings, env_kind, expect, update, full_plan })
        }
        PluginCommand::Push { plugin, reference } => push(cache, &plugin, &reference),
        PluginCommand::Pull { reference, output } => {
            let r = PluginRef::parse(&reference);
            if !matches!(r, PluginRef::Oci(_)) {
                return Err(Error::Usage(format!("{reference:?} is not an oci:// reference")));
            }
            let (fetched, p) = fetch_and_load(cache, &r)?;
            if let Some(out) = output {
                std::fs::write(&out, &*fetched.bytes).map_err(|e| Error::Io { what: format!("writing {}", out.display()), source: e })?;
            }
            eprintln!("pulled {} {} (orch:policy@{}) from {reference}", p.description.name, p.description.version, p.api_version);
            println!("{}", fetched.digest);
            Ok(())
        }
        PluginCommand::Update { sources, config } => update(cache, &sources, config),
        PluginCommand::List | PluginCommand::Inspect { .. } => {
            unreachable!("handled by the caller")
        }
    }
}

/// Fetches a plugin (not pinned: outside any project's lock) and loads it, which checks that it is a plugin of a
/// compatible API version.
pub fn fetch_and_load(cache: &Option<PathBuf>, r: &PluginRef) -> Result<(Fetched, LoadedPlugin), Error> {
    let runtime = runtime(cache)?;
    let fetched = Sources::new(&runtime, None).fetch(r)?;
    let plugin = runtime.load(&r.display_name(), &fetched.bytes)?;
    Ok((fetched, plugin))
}

fn new(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> Result<(), Error> {
    let dest = orch::authoring::scaffold::new(name, path, sdk.as_deref())?;
    eprintln!("created plugin crate {name} in {}", dest.display());
    eprintln!("next: cd {} && orch plugin test . --compose tests/compose.yaml --settings tests/settings.json --expect tests/expected.json", dest.display());
    Ok(())
}

fn test(cache: &Option<PathBuf>, test: PluginTest) -> Result<(), Error> {
    match orch::authoring::test::run(&runtime(cache)?, &test)? {
        Outcome::Updated => eprintln!("wrote {}", test.expect.display()),
        Outcome::Passed { plugin } => {
            let what = if test.full_plan { "plans" } else { "decides" };
            eprintln!("ok: {plugin} {what} {} as {} expects", test.compose.display(), test.expect.display());
        }
    }
    Ok(())
}

fn push(cache: &Option<PathBuf>, plugin: &str, reference: &str) -> Result<(), Error> {
    let r = PluginRef::parse(plugin);
    if matches!(r, PluginRef::Oci(_)) {
        return Err(Error::Usage("push takes a local plugin (crate directory, .wasm file or built-in name) and a reference to push it to".into()));
    }
    plugins::oci::parse(reference)?;
    // Only a loadable orch plugin is pushed: what others pull must run.
    let (fetched, p) = fetch_and_load(cache, &r)?;
    let annotations = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), p.description.name.clone()),
        ("org.opencontainers.image.version".to_string(), p.description.version.clone()),
        ("org.opencontainers.image.description".to_string(), p.description.summary.clone()),
        (plugins::oci::API_ANNOTATION.to_string(), p.api_version.clone()),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let pushed = rt.block_on(plugins::oci::push(reference, &fetched.bytes, annotations))?;
    eprintln!("pushed {} {} to {reference} (manifest {})", p.description.name, p.description.version, pushed.manifest);
    println!("{}", pushed.digest);
    Ok(())
}

/// Forgets the named (or all) entries of the project's orch.lock and resolves the project's plugins again.
fn update(cache: &Option<PathBuf>, only: &[String], config: Option<PathBuf>) -> Result<(), Error> {
    let cwd = std::env::current_dir().map_err(|e| Error::Io { what: "reading the current directory".into(), source: e })?;
    let config = orch::config::ProjectConfig::find(config.as_deref(), &cwd)?
        .ok_or_else(|| Error::Usage("no orch.toml here: orch.lock belongs to a project (pass --config FILE)".into()))?;
    let runtime = runtime(cache)?;
    let mut sources = project_sources(&runtime, Some(&config), false)?;
    let lock = sources.lock.as_mut().expect("a project has a lock");
    let before: BTreeMap<String, String> = lock.entries().iter().map(|e| (e.source.clone(), e.digest.clone())).collect();
    let forgotten = lock.forget(only);
    if !only.is_empty() && forgotten.is_empty() {
        return Err(Error::NotFound(format!("orch.lock has no entry for {}", only.join(", "))));
    }
    let refs: Vec<PluginRef> = config.plugin_refs().iter().map(|p| PluginRef::parse(p)).collect();
    plugins::activate_from(&runtime, &refs, &config.plugin_settings(), &mut sources)?;
    sources.save_lock()?;
    for e in sources.lock.as_ref().expect("project lock").entries() {
        match before.get(&e.source) {
            Some(d) if *d == e.digest => eprintln!("unchanged {} {}", e.source, e.digest),
            Some(d) => eprintln!("updated   {} {d} → {}", e.source, e.digest),
            None => eprintln!("pinned    {} {}", e.source, e.digest),
        }
    }
    Ok(())
}
