//! `orch plugin new/build/test/push/pull/update`: the plugin author's path from a template to a pinned reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use orch::Error;
use orch::plugins::source::{Fetched, Sources};
use orch::plugins::{self, LoadedPlugin, PluginRef};

use super::args::PluginCommand;
use orch::session::{project_sources, runtime};

/// The template crate (examples/plugin-template), embedded so `orch plugin new` works from any directory.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../examples/plugin-template/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../examples/plugin-template/src/lib.rs")),
    ("tests/compose.yaml", include_str!("../../../examples/plugin-template/tests/compose.yaml")),
    ("tests/settings.json", include_str!("../../../examples/plugin-template/tests/settings.json")),
    ("tests/expected.json", include_str!("../../../examples/plugin-template/tests/expected.json")),
    ("README.md", include_str!("../../../examples/plugin-template/README.md")),
    ("rustfmt.toml", include_str!("../../../examples/plugin-template/rustfmt.toml")),
    (".gitignore", "target/\n"),
];
const TEMPLATE_NAME: &str = "policy-template";
/// The template's dependency on the SDK in orch's repository; a new crate's points at its own copy.
const TEMPLATE_SDK: &str = "path = \"../../plugin-api\"";

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
            test(cache, &plugin, &compose, settings.as_deref(), env_kind, &expect, update, full_plan)
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

fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

fn camel(name: &str) -> String {
    name.split('-').map(|part| part[..1].to_ascii_uppercase() + &part[1..]).collect()
}

fn new(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> Result<(), Error> {
    if !valid_name(name) {
        return Err(Error::Usage(format!("invalid plugin name {name:?}: use lowercase letters, digits and -, starting with a letter (e.g. team-ports)")));
    }
    let dest = path.unwrap_or_else(|| PathBuf::from(name));
    if dest.exists() && std::fs::read_dir(&dest).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::Usage(format!("{} already exists and is not empty; choose another --path (nothing was written)", dest.display())));
    }
    // The SDK by a path relative to the crate, so the crate can be committed and moved with it.
    let sdk_path = match sdk {
        Some(sdk) => {
            let sdk = std::fs::canonicalize(&sdk).ok().filter(|p| p.join("Cargo.toml").is_file()).ok_or_else(|| {
                Error::Usage(format!("the orch-plugin-api crate is not at {}; pass --sdk PATH (the plugin-api folder of an orch checkout)", sdk.display()))
            })?;
            std::fs::create_dir_all(&dest).map_err(|e| Error::Io { what: format!("creating {}", dest.display()), source: e })?;
            let base = std::fs::canonicalize(&dest).map_err(|e| Error::Io { what: format!("reading {}", dest.display()), source: e })?;
            pathdiff::diff_paths(&sdk, &base).unwrap_or(sdk)
        }
        None => {
            plugins::sdk::write(&dest.join("vendor"))
                .map_err(|e| Error::Io { what: format!("writing the plugin SDK into {}", dest.join("vendor").display()), source: e })?;
            PathBuf::from("vendor/orch-plugin-api")
        }
    };
    let snake = name.replace('-', "_");
    for (file, text) in TEMPLATE {
        let text = text
            .replace(TEMPLATE_SDK, &format!("path = {:?}", sdk_path.display().to_string()))
            .replace(TEMPLATE_NAME, name)
            .replace(&TEMPLATE_NAME.replace('-', "_"), &snake)
            .replace(&camel(TEMPLATE_NAME), &camel(name))
            .replace("made by `orch plugin new` from orch's examples/plugin-template", "made by `orch plugin new`");
        let target = dest.join(file);
        std::fs::create_dir_all(target.parent().expect("has parent")).map_err(|e| Error::Io { what: format!("creating {}", dest.display()), source: e })?;
        std::fs::write(&target, text).map_err(|e| Error::Io { what: format!("writing {}", target.display()), source: e })?;
    }
    eprintln!("created plugin crate {name} in {}", dest.display());
    eprintln!("next: cd {} && orch plugin test . --compose tests/compose.yaml --settings tests/settings.json --expect tests/expected.json", dest.display());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn test(
    cache: &Option<PathBuf>,
    plugin: &str,
    compose: &Path,
    settings: Option<&str>,
    env_kind: orch::plan::EnvKind,
    expect: &Path,
    update: bool,
    full_plan: bool,
) -> Result<(), Error> {
    let runtime = runtime(cache)?;
    let r = PluginRef::parse(plugin);
    let mut values = BTreeMap::new();
    if let Some(given) = settings {
        let (what, value) = orch::plugins::settings_argument(given)?;
        if !value.is_object() {
            return Err(Error::InvalidInput { what, message: "the settings must be a JSON object".into() });
        }
        values.insert(r.display_name(), value);
    }
    let active = plugins::activate(&runtime, std::slice::from_ref(&r), &values)?;
    let name = active[0].plugin.description.name.clone();
    let request = orch::PlanRequest {
        compose: orch_compose::LoadOptions { files: vec![compose.to_path_buf()], ..Default::default() },
        env_id: Some("test".into()),
        env_kind,
        pools: vec![],
    };
    // No engine and no host facts: the plan depends on the inputs alone, so it is the same on every machine.
    let facts = orch::facts::Facts::default();
    let loaded = orch_compose::load(&request.compose)?;
    let planner = orch::Planner::new(&loaded, &active, env_kind, &request.pools);
    let actual = if full_plan {
        serde_json::to_value(&planner.plan(request.env_id.as_deref(), &facts)?.plan).expect("plan serialises")
    } else {
        let mut whole = planner.policy(planner.identity(request.env_id.as_deref())?, &facts)?;
        let decided = plugins::decided::decided(&whole.plan, &name);
        // The whole plan must still be valid: a plugin whose decisions orch refuses fails its test.
        planner.finish(&mut whole.plan, &facts)?;
        decided
    };
    let actual_text = serde_json::to_string_pretty(&actual).expect("JSON serialises") + "\n";
    if update {
        std::fs::write(expect, &actual_text).map_err(|e| Error::Io { what: format!("writing {}", expect.display()), source: e })?;
        eprintln!("wrote {}", expect.display());
        return Ok(());
    }
    let expected_text =
        std::fs::read_to_string(expect).map_err(|e| Error::Io { what: format!("reading {} (create it with --update)", expect.display()), source: e })?;
    let expected: serde_json::Value = serde_json::from_str(&expected_text)
        .map_err(|e| Error::InvalidInput { what: expect.display().to_string(), message: format!("not JSON: {e} (rewrite it with --update)") })?;
    let is_decisions = expected.get("format").and_then(|f| f.as_str()) == Some(plugins::decided::FORMAT);
    if is_decisions == full_plan {
        let (has, wants) =
            if full_plan { ("a plugin's decisions", "drop --full-plan") } else { ("a whole plan", "pass --full-plan, or rewrite it with --update") };
        return Err(Error::Usage(format!("{} holds {has}: {wants}", expect.display())));
    }
    if expected == actual {
        let what = if full_plan { "plans" } else { "decides" };
        eprintln!("ok: {name} {what} {} as {} expects", compose.display(), expect.display());
        return Ok(());
    }
    // Pretty-printed both ways, so the diff is by field whatever the file's own layout.
    let expected_pretty = serde_json::to_string_pretty(&expected).expect("JSON serialises") + "\n";
    Err(Error::TestFailed(format!(
        "what {name} decides differs from {} (run with --update if the change is intended):\n{}",
        expect.display(),
        line_diff(&expected_pretty, &actual_text)
    )))
}

/// A unified diff, expected → actual (plans are pretty-printed JSON, so lines are fields).
fn line_diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual).unified_diff().context_radius(2).header("expected", "actual").to_string()
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
