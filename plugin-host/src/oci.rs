//! Plugins in OCI registries, in the CNCF wasm artifact layout (a `application/vnd.wasm.config.v0+json` config and
//! one `application/wasm` layer), so `oras`, `wkg` and registry UIs treat them as any other wasm component.
//! Registries are spoken to over TLS (system roots plus `ORCH_REGISTRY_CA_FILE`); a loopback registry that does not
//! speak TLS is reached over plain HTTP, as Docker does. Credentials come from the Docker config
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, including credential helpers).

use std::collections::BTreeMap;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
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
        return Err(invalid(
            "name the registry host explicitly, e.g. oci://registry.example.com/team/plugin:1.0.0 or oci://127.0.0.1:5000/team/plugin:1.0.0".into(),
        ));
    }
    bare.parse::<Reference>().map_err(|e| invalid(format!("not an OCI reference: {e}")))
}

/// Whether `s` is a digest orch accepts: `sha256:` and 64 lowercase hex digits. Every digest read from a lock file or
/// a registry is checked with this before it names anything (a cache file is named by it).
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { registry }).unwrap_or(registry);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Extra CA certificates (PEM) to trust for registries, besides the system's: `ORCH_REGISTRY_CA_FILE`.
pub const CA_ENV: &str = "ORCH_REGISTRY_CA_FILE";

/// How long one registry operation (a pull or a push, every request in it) may take in all:
/// `ORCH_REGISTRY_TIMEOUT` (e.g. `30s`), 120 s by default. A registry that stalls or trickles fails within it.
pub fn registry_timeout() -> std::time::Duration {
    std::env::var("ORCH_REGISTRY_TIMEOUT")
        .ok()
        .and_then(|v| orch_compose::parse_duration_ms(&v))
        .map(std::time::Duration::from_millis)
        .filter(|d| !d.is_zero())
        .unwrap_or(std::time::Duration::from_secs(120))
}

/// A connection must be made, and each read must see data, within this (the whole operation has
/// [`registry_timeout`]).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `ORCH_REGISTRY_CA_FILE`'s PEM, if set.
fn extra_ca() -> Result<Option<Vec<u8>>, PluginError> {
    let Some(path) = std::env::var_os(CA_ENV) else {
        return Ok(None);
    };
    orch_compose::input::read_bytes(std::path::Path::new(&path), 4 << 20)
        .map(Some)
        .map_err(|e| PluginError::Read { path: path.into(), source: std::io::Error::other(e) })
}

/// Makes ring rustls's crypto provider for this process (once; a provider installed already, by a program embedding
/// orch, is kept). reqwest is built without a provider of its own.
fn tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The OCI client library's client (for pushes).
fn client(protocol: ClientProtocol) -> Result<Client, PluginError> {
    tls_provider();
    let mut config =
        ClientConfig { protocol, connect_timeout: Some(CONNECT_TIMEOUT), read_timeout: Some(READ_TIMEOUT.min(registry_timeout())), ..Default::default() };
    if let Some(data) = extra_ca()? {
        config.extra_root_certificates.push(Certificate { encoding: CertificateEncoding::Pem, data });
    }
    Ok(Client::new(config))
}

/// A plain HTTP client with the same timeouts and trust (for pulls, whose every answer orch bounds itself).
fn http_client() -> Result<reqwest::Client, PluginError> {
    tls_provider();
    let mut b = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT.min(registry_timeout()));
    if let Some(data) = extra_ca()? {
        let cert = reqwest::Certificate::from_pem(&data)
            .map_err(|e| PluginError::Registry { reference: CA_ENV.into(), message: format!("the CA file is not a PEM certificate: {e}") })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| PluginError::Registry { reference: String::new(), message: format!("cannot make an HTTP client: {e}") })
}

/// The protocols to try, in order: TLS everywhere; for a loopback registry plain HTTP after TLS (as Docker does).
fn protocols(reference: &Reference) -> Vec<ClientProtocol> {
    if is_loopback(reference.resolve_registry()) { vec![ClientProtocol::Https, ClientProtocol::Http] } else { vec![ClientProtocol::Https] }
}

/// A failure in one attempt: the client's (a transport failure may be retried over the next protocol) or orch's.
enum Fail {
    Client(OciDistributionError),
    Orch(PluginError),
}

impl From<OciDistributionError> for Fail {
    fn from(e: OciDistributionError) -> Fail {
        Fail::Client(e)
    }
}

impl Fail {
    /// The connection (or TLS handshake) failed before any HTTP exchange.
    fn transport(&self) -> bool {
        matches!(self, Fail::Client(OciDistributionError::RequestError(e)) if e.is_connect() || e.is_request())
    }

    /// The server said it wants TLS (Go's "HTTP request to an HTTPS server", nginx's "plain HTTP request … HTTPS port").
    fn speaks_tls(&self) -> bool {
        matches!(self, Fail::Client(e) if { let m = e.to_string(); m.contains("HTTPS server") || m.contains("HTTPS port") })
    }

    fn into_plugin(self, reference: &str) -> PluginError {
        match self {
            Fail::Orch(e) => e,
            Fail::Client(e) => registry_error(reference, &e),
        }
    }
}

/// Runs one registry operation over each protocol in turn while the connection itself fails.
async fn attempt<T, F, Fut>(reference: &Reference, text: &str, op: F) -> Result<T, PluginError>
where
    F: Fn(ClientProtocol) -> Fut,
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let mut failures = vec![];
    let deadline = tokio::time::Instant::now() + registry_timeout();
    for protocol in protocols(reference) {
        let scheme = if matches!(protocol, ClientProtocol::Http) { "http" } else { "https" };
        let Ok(outcome) = tokio::time::timeout_at(deadline, op(protocol)).await else {
            return Err(PluginError::Registry {
                reference: text.into(),
                message: format!(
                    "the registry did not finish within {} s (ORCH_REGISTRY_TIMEOUT); check that it is up and answering",
                    registry_timeout().as_secs()
                ),
            });
        };
        match outcome {
            Ok(v) => return Ok(v),
            Err(f) if f.transport() => failures.push((scheme, f)),
            // A TLS server answering the plain-HTTP retry: the TLS failure is the one that explains.
            Err(f) if !failures.is_empty() && f.speaks_tls() => break,
            Err(f) => return Err(f.into_plugin(text)),
        }
    }
    // Every protocol failed to connect: say what each said (the TLS one usually explains a certificate problem).
    let message = failures
        .into_iter()
        .map(|(scheme, f)| format!("over {scheme}: {}", f.into_plugin(text).to_string().trim_start_matches(&format!("plugin {text}: "))))
        .collect::<Vec<_>>()
        .join("; ");
    Err(PluginError::Registry { reference: text.into(), message })
}

/// Credentials for a registry from the Docker config; anonymous when there are none.
pub fn auth(reference: &Reference) -> RegistryAuth {
    match docker_credential::get_credential(reference.resolve_registry()) {
        Ok(docker_credential::DockerCredential::UsernamePassword(u, p)) => RegistryAuth::Basic(u, p),
        Ok(docker_credential::DockerCredential::IdentityToken(t)) => RegistryAuth::Bearer(t),
        Err(_) => RegistryAuth::Anonymous,
    }
}

/// An error with its causes (reqwest puts the interesting part — refused, certificate — in the source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn registry_error(reference: &str, e: &OciDistributionError) -> PluginError {
    let message = chain(e);
    let lower = message.to_ascii_lowercase();
    let hint = if message.contains("401") || lower.contains("unauthorized") {
        " (log in with `docker login` so that orch finds the credentials in the Docker config)"
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        " (trust the registry's CA: install it in the system store or point ORCH_REGISTRY_CA_FILE at its PEM file)"
    } else if matches!(e, OciDistributionError::DigestError(_)) {
        return PluginError::Registry {
            reference: reference.into(),
            message: format!(
                "the registry served content that does not match its digest ({message}); its copy is corrupt or was tampered with — nothing was run"
            ),
        };
    } else if lower.contains("connect") || lower.contains("sending request") {
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
    let credentials = auth(&reference);
    let stored = attempt(&reference, text, |protocol| {
        let (layers, config, manifest, reference, credentials) = (layers.clone(), config.clone(), manifest.clone(), reference.clone(), credentials.clone());
        async move {
            let c = client(protocol).map_err(Fail::Orch)?;
            c.push(&reference, &layers, config, &credentials, Some(manifest)).await?;
            // The registry's digest of the manifest as stored, which is what a pull by digest asks for.
            Ok(c.fetch_manifest_digest(&reference, &credentials).await?)
        }
    })
    .await?;
    Ok(Pushed { manifest: stored, digest })
}

/// A pulled component with the digests it was verified against.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// Pulls the component of `text`; with `manifest`, exactly that manifest (a pinned digest), whatever the tag says now.
/// The largest component orch fetches (built-in plugins are under 1 MiB).
pub const MAX_COMPONENT_BYTES: u64 = 32 << 20;

/// The client checks the manifest and blob against their digests; a registry serving other bytes is refused.
pub async fn pull(text: &str, manifest: Option<&str>) -> Result<Pulled, PluginError> {
    let mut reference = parse(text)?;
    if let Some(m) = manifest {
        reference = reference.clone_with_digest(m.to_string());
    }
    let credentials = auth(&reference);
    let http = http_client()?;
    attempt(&reference, text, |protocol| {
        let scheme = if matches!(protocol, ClientProtocol::Http) { "http" } else { "https" };
        let registry = super::oci_pull::Registry::new(http.clone(), scheme, &reference, credentials.clone());
        let reference = reference.clone();
        async move { pull_with(registry, &reference, text, manifest).await }
    })
    .await
}

/// Every answer is bounded (see [`super::oci_pull`]); the manifest and the blob are checked against their digests.
async fn pull_with(mut registry: super::oci_pull::Registry, reference: &Reference, text: &str, manifest: Option<&str>) -> Result<Pulled, Fail> {
    let refuse = |message: String| Fail::Orch(PluginError::Registry { reference: text.into(), message });
    let bounded = |e: super::oci_pull::PullError| match e {
        super::oci_pull::PullError::Client(e) => Fail::Client(e),
        super::oci_pull::PullError::Refused(message) => refuse(message),
    };
    let wanted = reference.digest().or(reference.tag()).unwrap_or("latest").to_string();
    let (image, manifest_digest) = registry.manifest(&wanted).await.map_err(bounded)?;
    if !is_digest(&manifest_digest) {
        return Err(refuse(format!(
            "the registry named its manifest {:?}, which is not a sha256 digest",
            manifest_digest.chars().take(80).collect::<String>()
        )));
    }
    if let Some(m) = manifest
        && m != manifest_digest
    {
        return Err(refuse(format!("asked for manifest {m}, the registry answered with {manifest_digest}")));
    }
    let layer = image.layers.iter().find(|l| l.media_type == LAYER_MEDIA_TYPE || l.media_type.contains("wasm")).ok_or_else(|| {
        refuse(format!(
            "the artifact has no wasm layer (layers: {}); push plugins with `orch plugin push`",
            image.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    // The size a registry claims is checked before anything is fetched, and never reserved up front; the bytes it
    // sends are counted and hashed as they arrive, and it may not send more than it claimed.
    let claimed = u64::try_from(layer.size).unwrap_or(u64::MAX);
    if claimed > MAX_COMPONENT_BYTES {
        return Err(refuse(format!(
            "the manifest says the component is {claimed} bytes; orch takes plugins of up to {} MiB, so nothing was fetched",
            MAX_COMPONENT_BYTES >> 20
        )));
    }
    if !is_digest(&layer.digest) {
        return Err(refuse(format!("the manifest names its layer {:?}, which is not a sha256 digest", layer.digest.chars().take(80).collect::<String>())));
    }
    let mut stream = registry.blob(&layer.digest).await.map_err(bounded)?;
    let mut hasher = sha2::Sha256::new();
    let mut bytes = Vec::with_capacity(claimed.min(1 << 20) as usize);
    while let Some(chunk) = stream.chunk().await.transpose() {
        let chunk = chunk.map_err(|e| refuse(format!("the download broke off: {e}")))?;
        if bytes.len() as u64 + chunk.len() as u64 > claimed {
            return Err(refuse(format!("the registry sent more than the {claimed} bytes the manifest claims; stopped, nothing was run")));
        }
        sha2::Digest::update(&mut hasher, &chunk);
        bytes.extend_from_slice(&chunk);
    }
    let digest = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    if digest != layer.digest {
        return Err(refuse(format!(
            "the component's content does not match the digest the manifest names (tampered?): it has {digest}, the manifest says {}; nothing was run",
            layer.digest
        )));
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
