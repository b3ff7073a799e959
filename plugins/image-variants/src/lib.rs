//! `image-variants`: Alpine or regular images per environment kind (seeds 001 and 004) — test and ci run Alpine,
//! prod regular, dev as configured. Tags switch `name:tag` ↔ `name:tag-alpine`; builds switch `X.Dockerfile` ↔
//! `X.alpine.Dockerfile`. A chosen image that is not present locally gets a warning (there is no registry to pull it).

use std::collections::BTreeMap;

use orch_plugin_api::*;

#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Environment kinds that use Alpine variants.
    #[schemars(extend("items" = {"enum": ["test", "dev", "ci", "prod"]}))]
    pub alpine_kinds: Vec<String>,
    /// Per service: "alpine" or "regular", whatever the kind.
    #[schemars(extend("additionalProperties" = {"enum": ["alpine", "regular"]}))]
    pub services: BTreeMap<String, String>,
    /// Per image repository: the Alpine image to use instead of the `-alpine` tag rule.
    pub images: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { alpine_kinds: vec!["test".into(), "ci".into()], services: BTreeMap::new(), images: BTreeMap::new() }
    }
}

/// `postgres:15` → `postgres:15-alpine`; `redis` → `redis:alpine`; already-alpine tags are kept.
pub fn alpine_tag(image: &str) -> String {
    let (repo, tag) = split(image);
    match tag {
        None => format!("{repo}:alpine"),
        Some(t) if t.contains("alpine") => image.to_string(),
        Some(t) => format!("{repo}:{t}-alpine"),
    }
}

/// `postgres:15-alpine` → `postgres:15`; `redis:alpine` → `redis:latest`.
pub fn regular_tag(image: &str) -> String {
    let (repo, tag) = split(image);
    match tag {
        Some("alpine") => format!("{repo}:latest"),
        Some(t) if t.ends_with("-alpine") => format!("{repo}:{}", t.trim_end_matches("-alpine")),
        _ => image.to_string(),
    }
}

fn split(image: &str) -> (&str, Option<&str>) {
    // A colon after the last slash is a tag; one before it is a registry port.
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], Some(&image[i + 1..])),
        _ => (image, None),
    }
}

/// `Dockerfile` ↔ `alpine.Dockerfile`, `backend.Dockerfile` ↔ `backend.alpine.Dockerfile`.
pub fn dockerfile_variant(dockerfile: &str, alpine: bool) -> String {
    let (stem, ext) = dockerfile.rsplit_once(".Dockerfile").map(|(s, _)| (s, ".Dockerfile")).unwrap_or((dockerfile, ""));
    match (alpine, stem.ends_with(".alpine") || stem == "alpine") {
        (true, true) | (false, false) => dockerfile.to_string(),
        (true, false) if ext.is_empty() => format!("alpine.{stem}"),
        (true, false) => format!("{stem}.alpine{ext}"),
        (false, true) if stem == "alpine" => "Dockerfile".into(),
        (false, true) => format!("{}{ext}", stem.trim_end_matches(".alpine")),
    }
}

pub struct ImageVariants;

#[plugin]
impl Plugin for ImageVariants {
    type Settings = Settings;

    fn describe() -> Description {
        describe(
            "image-variants",
            env!("CARGO_PKG_VERSION"),
            "Alpine images in test and ci, regular in prod (tags name:tag-alpine, builds *.alpine.Dockerfile); warns when the variant is not local",
        )
    }

    fn check_settings(s: &Settings) -> Vec<Diagnostic> {
        s.services
            .iter()
            .filter(|(_, v)| v.as_str() != "alpine" && v.as_str() != "regular")
            .map(|(k, v)| diagnostic(Level::Error, "variants.choice", format!("{v:?} is not alpine or regular"), Some(format!("services.{k}"))))
            .collect()
    }

    fn images(snapshot: &Snapshot, s: &Settings) -> Result<ImagePlan, PluginError> {
        let kind_alpine = s.alpine_kinds.iter().any(|k| k == snapshot.env_kind.as_str());
        let mut plan = ImagePlan { services: vec![], diagnostics: vec![] };
        let alpine_for = |svc: &Service| match s.services.get(&svc.name).map(String::as_str) {
            Some("alpine") => true,
            Some(_) => false,
            None => kind_alpine,
        };
        // Images another service builds in this plan are there by the time they are needed.
        let built: Vec<String> = snapshot
            .services
            .iter()
            .filter(|svc| svc.build.is_some())
            .filter_map(|svc| svc.image.as_deref().map(|i| if alpine_for(svc) { alpine_tag(i) } else { regular_tag(i) }))
            .collect();
        for svc in &snapshot.services {
            let alpine = alpine_for(svc);
            let mut intent = ImageIntent { service: svc.name.clone(), image: None, build: None };
            if let Some(b) = &svc.build {
                let current = b.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
                let wanted = dockerfile_variant(&current, alpine);
                if wanted != current {
                    intent.build = Some(BuildSpec { dockerfile: Some(wanted), ..b.clone() });
                    // The variant is built under its own tag so that it never overwrites the other variant's image.
                    if let Some(image) = &svc.image {
                        intent.image = Some(if alpine { alpine_tag(image) } else { regular_tag(image) }).filter(|i| i != image);
                    }
                }
            } else if let Some(image) = &svc.image {
                let (repo, _) = split(image);
                let wanted = if alpine { s.images.get(repo).cloned().unwrap_or_else(|| alpine_tag(image)) } else { regular_tag(image) };
                if &wanted != image {
                    if !snapshot.facts.local_images.contains(&wanted) && !built.contains(&wanted) {
                        plan.diagnostics.push(diagnostic(
                            Level::Warning,
                            "variants.missing",
                            format!(
                                "{}: {wanted} is not present locally and cannot be pulled; build it or set image-variants.services.{} = \"regular\"",
                                svc.name, svc.name
                            ),
                            Some(format!("services.{}.image", svc.name)),
                        ));
                    }
                    intent.image = Some(wanted);
                }
            }
            if intent.image.is_some() || intent.build.is_some() {
                plan.services.push(intent);
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_dockerfiles() {
        assert_eq!(alpine_tag("postgres:15"), "postgres:15-alpine");
        assert_eq!(alpine_tag("redis"), "redis:alpine");
        assert_eq!(alpine_tag("localhost:5000/team/app:1.2"), "localhost:5000/team/app:1.2-alpine");
        assert_eq!(alpine_tag("python:3.11-alpine3.19"), "python:3.11-alpine3.19");
        assert_eq!(regular_tag("postgres:15-alpine"), "postgres:15");
        assert_eq!(regular_tag("redis:alpine"), "redis:latest");
        assert_eq!(dockerfile_variant("docker/backend.Dockerfile", true), "docker/backend.alpine.Dockerfile");
        assert_eq!(dockerfile_variant("docker/backend.alpine.Dockerfile", false), "docker/backend.Dockerfile");
        assert_eq!(dockerfile_variant("Dockerfile", true), "alpine.Dockerfile");
        assert_eq!(dockerfile_variant("alpine.Dockerfile", false), "Dockerfile");
    }
}
