//! Plugins in OCI registries, in the CNCF wasm artifact layout (a `application/vnd.wasm.config.v0+json` config and
//! one `application/wasm` layer), so `oras`, `wkg` and registry UIs treat them as any other wasm component.
//! Loopback registries are spoken to over plain HTTP, others over TLS; credentials come from the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, including credential helpers).

use std::collections::BTreeMap;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::PluginError;

pub const SCHEME: &str = "oci://";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Annotation carrying the orch:policy API version a plugin targets.
pub const API_ANNOTATION: &str = "dev.orch.policy.api-version";

/// `oci://host[:port]/repo[:tag][@sha256:…]` → a reference (tag `latest` when none is given).
pub fn parse(text: &str) -> Result<Reference, PluginError> {
    let bare = text.strip_prefix(SCHEME).unwrap_or(text);
    let invalid = |m: String| PluginError::Registry { reference: text.into(), message: m };
    if !bare.split('/').next().is_some_and(|host| host.contains('.') || host.contains(':') || host == "localhost") || !bare.contains('/') {
        return Err(invalid("name the registry host explicitly, e.g. oci://registry.example.com/team/plugin:1.0.0 or oci://127.0.0.1:5000/team/plugin:1.0.0".into()));
    }
    bare.parse::<Reference>().map_err(|e| invalid(format!("not an OCI reference: {e}")))
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { registry }).unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn client(reference: &Reference) -> Client {
    let registry = reference.resolve_registry().to_string();
    let protocol = if is_loopback(&registry) { ClientProtocol::Http } else { ClientProtocol::Https };
    Client::new(ClientConfig { protocol, ..Default::default() })
}

/// Credentials for a registry from the Docker config; anonymous when there are none.
pub fn auth(reference: &Reference) -> RegistryAuth {
    match docker_credential::get_credential(reference.resolve_registry()) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => RegistryAuth::Basic(u, p),
        Ok(docker_credential::DockerCredential::IdentityToken(t)) => RegistryAuth::Bearer(t),
        Err(_) => RegistryAuth::Anonymous,
    }
}

fn registry_error(reference: &str, e: impl std::fmt::Display) -> PluginError {
    let message = e.to_string();
    let hint = if message.contains("401") || message.to_ascii_lowercase().contains("unauthorized") {
        " (log in with `docker login` so that orch finds the credentials in the Docker config)"
    } else if message.contains("error sending request") || message.contains("connect") {
        " (is the registry running and reachable? plugins pinned in orch.lock and already cached need no registry)"
    } else {
        ""
    };
    PluginError::Registry { reference: reference.into(), message: format!("{message}{hint}") }
}

/// What a push stored: the manifest and component digests.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub manifest: String,
    pub digest: String,
}

/// Pushes a component with a CNCF wasm config.
pub async fn push(text: &str, bytes: &[u8], annotations: BTreeMap<String, String>) -> Result<Pushed, PluginError> {
    let reference = parse(text)?;
    let digest = sha256(bytes);
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [digest],
    });
    let config = Config { data: serde_json::to_vec(&config).expect("json").into(), media_type: CONFIG_MEDIA_TYPE.into(), annotations: None };
    let layers = vec![ImageLayer::new(bytes.to_vec(), LAYER_MEDIA_TYPE.into(), None)];
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let (c, credentials) = (client(&reference), auth(&reference));
    c.push(&reference, &layers, config, &credentials, Some(manifest)).await.map_err(|e| registry_error(text, e))?;
    // The registry's digest of the manifest as stored, which is what a pull by digest asks for.
    let manifest = c.fetch_manifest_digest(&reference, &credentials).await.map_err(|e| registry_error(text, e))?;
    Ok(Pushed { manifest, digest })
}

/// A pulled component with the digests it was verified against.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// Pulls the component of `text`; with `manifest`, exactly that manifest (a pinned digest), whatever the tag says now.
/// The client checks the manifest and blob against their digests; a registry serving other bytes is refused.
pub async fn pull(text: &str, manifest: Option<&str>) -> Result<Pulled, PluginError> {
    let mut reference = parse(text)?;
    if let Some(m) = manifest {
        reference = reference.clone_with_digest(m.to_string());
    }
    let c = client(&reference);
    let (image, manifest_digest) = c.pull_image_manifest(&reference, &auth(&reference)).await.map_err(|e| registry_error(text, e))?;
    if let Some(m) = manifest
        && m != manifest_digest
    {
        return Err(PluginError::Registry { reference: text.into(), message: format!("asked for manifest {m}, the registry answered with {manifest_digest}") });
    }
    let layer = image.layers.iter().find(|l| l.media_type == LAYER_MEDIA_TYPE || l.media_type.contains("wasm")).ok_or_else(|| PluginError::Registry {
        reference: text.into(),
        message: format!("the artifact has no wasm layer (layers: {}); push plugins with `orch plugin push`", image.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")),
    })?;
    let mut bytes = Vec::with_capacity(layer.size.max(0) as usize);
    c.pull_blob(&reference, layer, &mut bytes).await.map_err(|e| {
        let message = e.to_string();
        if message.to_ascii_lowercase().contains("digest") {
            PluginError::Registry {
                reference: text.into(),
                message: format!("the registry served a component whose content does not match its digest {} ({message}); its copy is corrupt or was tampered with — nothing was run", layer.digest),
            }
        } else {
            registry_error(text, e)
        }
    })?;
    // Checked here too, so the guarantee does not rest on the client library alone.
    let digest = sha256(&bytes);
    if digest != layer.digest {
        return Err(PluginError::Registry { reference: text.into(), message: format!("the component's content has digest {digest}, but the manifest says {}; nothing was run", layer.digest) });
    }
    Ok(Pulled { manifest: manifest_digest, digest, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let r = parse("oci://127.0.0.1:5000/team/demo:1.2.0").unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "team/demo", Some("1.2.0")));
        assert!(parse("oci://team/demo:1").unwrap_err().to_string().contains("registry host"));
        assert!(is_loopback("127.0.0.1:5000") && is_loopback("localhost:5000") && is_loopback("[::1]:5000") && !is_loopback("ghcr.io"));
    }
}
