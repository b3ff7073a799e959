//! Images before anything is created: present, built from their context (with additional contexts as helper
//! images), or a clear error (there is no registry to pull from).

use super::LifecycleError;
use super::Progress;
use super::UpOptions;
use crate::context::Archive;
use crate::engine::BuildSpec;
use crate::engine::{Engine, EngineError};
use crate::labels;
use crate::plan::Plan;
use crate::plan::fnv1a;
use std::collections::BTreeMap;
use std::path::Path;

/// The image each service runs; builds what has `build:` and fails early on what is missing.
pub(super) async fn ensure_images<E: Engine>(
    engine: &E,
    plan: &Plan,
    opts: &UpOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<BTreeMap<String, String>, LifecycleError> {
    let mut out = BTreeMap::new();
    let mut built: BTreeMap<String, String> = BTreeMap::new();
    // Builds first: a service may run the image another service builds; a build that uses another service's image
    // as a named context comes after it.
    let (mut builds, others): (Vec<_>, Vec<_>) = plan.services.iter().partition(|(_, s)| s.build.is_some());
    let used_as_context = |name: &str| {
        plan.services.values().filter_map(|s| s.build.as_ref()).any(|b| b.additional_contexts.values().any(|c| c.strip_prefix("service:") == Some(name)))
    };
    builds.sort_by_key(|(name, _)| !used_as_context(name));
    for (name, s) in builds.into_iter().chain(others) {
        let image = match (&s.build, &s.image) {
            (Some(b), image) => {
                let tag = image.clone().unwrap_or_else(|| format!("orch-build/{}-{}:latest", plan.identity.project, name));
                // `pull_policy: never` or `missing` use an image that is already there instead of building it.
                let use_local = matches!(s.pull_policy.as_deref(), Some("never" | "missing")) && image.is_some() && engine.image_exists(&tag).await?;
                // Services sharing one build (same tag) build once.
                if !use_local && !built.contains_key(&tag) {
                    progress(Progress::Building { service: name.clone(), image: tag.clone() });
                    build_service(engine, plan, name, b, &tag, &out, opts).await.map_err(|e| LifecycleError::Build { service: name.clone(), source: e })?;
                    for extra in &b.tags {
                        engine.tag_image(&tag, extra).await.map_err(|e| LifecycleError::Build { service: name.clone(), source: e })?;
                    }
                    built.insert(tag.clone(), name.clone());
                }
                tag
            }
            (None, Some(image)) => {
                if !engine.image_exists(image).await? {
                    return Err(LifecycleError::MissingImage { service: name.clone(), image: image.clone() });
                }
                image.clone()
            }
            (None, None) => {
                return Err(LifecycleError::MissingImage { service: name.clone(), image: "(none)".into() });
            }
        };
        out.insert(name.clone(), image);
    }
    Ok(out)
}

/// Builds one service's image. Named contexts (`additional_contexts`) become images first — a directory as a helper
/// image removed after the build, `docker-image://` as that image, `service:` as that service's image — and the
/// Dockerfile's references to them are rewritten, since the engine's classic builder knows one context only.
pub(super) async fn build_service<E: Engine>(
    engine: &E,
    plan: &Plan,
    name: &str,
    b: &orch_compose::Build,
    tag: &str,
    images: &BTreeMap<String, String>,
    opts: &UpOptions,
) -> Result<(), EngineError> {
    let failed = |message: String| EngineError::Build { image: tag.to_string(), message };
    let dockerfile = b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
    let mut inline = b.dockerfile_inline.clone();
    if inline.is_none() && !b.context.join(&dockerfile).is_file() {
        let chosen_by = plan
            .provenance
            .get(&format!("services.{name}.build"))
            .filter(|p| p.iter().any(|s| s.starts_with("plugin:")))
            .map(|p| format!(" (the build was set by {})", p.join(" → ")))
            .unwrap_or_default();
        return Err(failed(format!("there is no {dockerfile} in the build context {}{chosen_by}", b.context.display())));
    }
    let project_label = BTreeMap::from([(labels::PROJECT.to_string(), plan.identity.project.clone())]);
    let mut helpers = vec![];
    let mut named = BTreeMap::new();
    for (ctx, source) in &b.additional_contexts {
        let image = if let Some(reference) = source.strip_prefix("docker-image://") {
            reference.to_string()
        } else if let Some(service) = source.strip_prefix("service:") {
            images.get(service).cloned().ok_or_else(|| failed(format!("build context {ctx} names service {service}, whose image is not ready")))?
        } else {
            let dir = Path::new(source);
            let helper =
                format!("orch-ctx/{}-{:016x}:latest", plan.identity.project, fnv1a(format!("{}/{name}/{ctx}/{source}", plan.identity.env_id).as_bytes()));
            let archive = crate::context::archive(dir, "context/", &[(INLINE_DOCKERFILE, crate::dockerfile::CONTEXT_IMAGE_DOCKERFILE)], &[])
                .map_err(|e| failed(format!("cannot read build context {ctx} ({}): {e}", dir.display())))?;
            let spec = BuildSpec {
                tag: helper.clone(),
                context: archive.path().to_path_buf(),
                dockerfile: INLINE_DOCKERFILE.into(),
                labels: project_label.clone(),
                ..Default::default()
            };
            helpers.push(helper.clone());
            if let Err(e) = engine.build_image(spec).await {
                remove_helpers(engine, &helpers).await;
                return Err(e);
            }
            helper
        };
        named.insert(ctx.clone(), image);
    }
    if !named.is_empty() {
        let text = match &inline {
            Some(t) => t.clone(),
            None => orch_compose::input::read_text(&b.context.join(&dockerfile), orch_compose::input::MAX_COMPOSE_FILE)
                .map_err(|e| failed(format!("cannot read {dockerfile}: {e}")))?,
        };
        inline = Some(crate::dockerfile::rewrite_named_contexts(&text, &named));
    }
    let built = async {
        // Kept until the build is done: the engine streams it from disk.
        let archive = tar_context_keeping(&b.context, inline.as_deref(), &[Path::new(&dockerfile)])
            .map_err(|e| failed(format!("cannot read build context {}: {e}", b.context.display())))?;
        let spec = BuildSpec {
            tag: tag.to_string(),
            context: archive.path().to_path_buf(),
            dockerfile: if inline.is_some() { INLINE_DOCKERFILE.into() } else { dockerfile.clone() },
            args: b.args.clone(),
            target: b.target.clone(),
            labels: b.labels.clone().into_iter().chain(project_label.clone()).collect(),
            no_cache: opts.no_cache || b.no_cache == Some(true),
            network: b.network.clone(),
            shm_size: b.shm_size,
            extra_hosts: b.extra_hosts.clone(),
            cache_from: b.cache_from.clone(),
            platform: b.platform.clone(),
            pull: b.pull == Some(true),
        };
        engine.build_image(spec).await
    }
    .await;
    remove_helpers(engine, &helpers).await;
    built
}

/// Helper images are orch's own: removed whether the build worked or not (a failure to remove is only a leftover
/// image, which the next build of the same context replaces).
pub(super) async fn remove_helpers<E: Engine>(engine: &E, helpers: &[String]) {
    for h in helpers {
        let _ = engine.remove_image(h).await;
    }
}

/// Where an inline Dockerfile (`dockerfile_inline`) is placed in the build context.
pub(super) const INLINE_DOCKERFILE: &str = ".orch.inline.Dockerfile";

/// The build context as a tar archive on disk (paths relative to the context; `.dockerignore` applies; `.git` and
/// `target` are skipped, `dockerfile` always goes), with the inline Dockerfile added when there is one.
pub fn tar_context(dir: &Path, dockerfile: &str, inline_dockerfile: Option<&str>) -> std::io::Result<Archive> {
    tar_context_keeping(dir, inline_dockerfile, &[Path::new(dockerfile)])
}

fn tar_context_keeping(dir: &Path, inline_dockerfile: Option<&str>, keep: &[&Path]) -> std::io::Result<Archive> {
    let extra: Vec<(&str, &str)> = inline_dockerfile.map(|t| (INLINE_DOCKERFILE, t)).into_iter().collect();
    crate::context::archive(dir, "", &extra, keep)
}
