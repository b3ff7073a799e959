//! Pulling a component over the OCI distribution API with every response bounded in size, not only in time: the
//! token (64 KiB), the manifest (4 MiB), an error body (4 KiB, only its start is kept) and the blob (what the manifest
//! claims, at most [`super::oci::MAX_COMPONENT_BYTES`]). The OCI client library reads tokens and manifests whole, so
//! a registry streaming one forever would grow orch's memory until the deadline; here it is cut off at the cap.
//! Pushing (to the user's own registry) stays with the library.

use oci_client::Reference;
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

/// The largest token answer orch reads.
pub const MAX_TOKEN_BYTES: usize = 64 << 10;
/// The largest manifest orch reads (a plugin's is under 1 KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// How much of an error answer orch keeps for its message.
const MAX_ERROR_BYTES: usize = 4 << 10;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a bounded request failed: the library's error type (so the caller's retry over the next protocol and its
/// messages stay as they are), or a refusal of orch's.
pub(super) enum PullError {
    Client(OciDistributionError),
    Refused(String),
}

impl From<reqwest::Error> for PullError {
    fn from(e: reqwest::Error) -> PullError {
        PullError::Client(OciDistributionError::RequestError(e))
    }
}

/// One registry, one repository, over one scheme; the bearer token once a challenge asked for one.
pub(super) struct Registry {
    client: reqwest::Client,
    base: String,
    repository: String,
    auth: RegistryAuth,
    bearer: Option<String>,
}

impl Registry {
    pub(super) fn new(client: reqwest::Client, scheme: &str, reference: &Reference, auth: RegistryAuth) -> Registry {
        Registry { client, base: format!("{scheme}://{}", reference.resolve_registry()), repository: reference.repository().to_string(), auth, bearer: None }
    }

    /// The manifest `tag_or_digest` names, and the digest of its bytes.
    pub(super) async fn manifest(&mut self, tag_or_digest: &str) -> Result<(OciImageManifest, String), PullError> {
        let url = format!("{}/v2/{}/manifests/{tag_or_digest}", self.base, self.repository);
        let resp = self.get(&url, Some(MANIFEST_TYPES)).await?;
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES, "manifest").await?;
        let digest = super::oci::sha256(&bytes);
        let manifest: OciImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| PullError::Refused(format!("the manifest is not an OCI image manifest: {e}")))?;
        Ok((manifest, digest))
    }

    /// The blob `digest` as a response to stream (the caller counts and hashes it).
    pub(super) async fn blob(&mut self, digest: &str) -> Result<reqwest::Response, PullError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        self.get(&url, None).await
    }

    async fn send(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, PullError> {
        let mut req = self.client.get(url);
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        req = match (&self.bearer, &self.auth) {
            (Some(t), _) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            (None, RegistryAuth::Bearer(t)) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            (None, RegistryAuth::Anonymous) => req,
        };
        Ok(req.send().await?)
    }

    /// GET with the registry's token challenge answered once; an answer other than success is an error carrying the
    /// start of its body.
    async fn get(&mut self, url: &str, accept: Option<&str>) -> Result<reqwest::Response, PullError> {
        let mut resp = self.send(url, accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED
            && self.bearer.is_none()
            && let Some(challenge) = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(String::from)
            && let Some(params) = challenge.strip_prefix("Bearer ").or_else(|| challenge.strip_prefix("bearer "))
        {
            self.bearer = Some(self.token(params).await?);
            resp = self.send(url, accept).await?;
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status();
        let body = read_prefix(resp, MAX_ERROR_BYTES).await;
        Err(PullError::Client(OciDistributionError::ServerError { code: code.as_u16(), url: url.to_string(), message: body }))
    }

    /// The token a `Bearer realm=…,service=…,scope=…` challenge asks for.
    async fn token(&self, params: &str) -> Result<String, PullError> {
        let field = |name: &str| -> Option<String> {
            params.split(',').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                (k.eq_ignore_ascii_case(name)).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm = field("realm").ok_or_else(|| PullError::Refused("the registry asked for a token without saying where to get it".into()))?;
        let scope = field("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let mut query = vec![("scope", scope)];
        if let Some(service) = field("service") {
            query.push(("service", service));
        }
        let mut req = self.client.get(&realm).query(&query);
        if let RegistryAuth::Basic(u, p) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(PullError::Client(OciDistributionError::AuthenticationFailure(format!(
                "the token service answered {}: {}",
                resp.status(),
                read_prefix(resp, MAX_ERROR_BYTES).await
            ))));
        }
        let bytes = read_capped(resp, MAX_TOKEN_BYTES, "token").await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&bytes).map_err(|e| PullError::Refused(format!("the token service's answer is not a token: {e}")))?;
        t.token.or(t.access_token).ok_or_else(|| PullError::Refused("the token service's answer holds no token".into()))
    }
}

/// The whole body, refused as soon as it passes `cap` (by its announced length, or as it arrives).
async fn read_capped(mut resp: reqwest::Response, cap: usize, what: &str) -> Result<Vec<u8>, PullError> {
    let too_big = || PullError::Refused(format!("the registry's {what} is over {} KiB; orch reads at most that much, so it stopped", cap >> 10));
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// At most `cap` bytes of the body, as text (for an error message; the rest is not read).
async fn read_prefix(mut resp: reqwest::Response, cap: usize) -> String {
    let mut out = Vec::new();
    while out.len() < cap {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(cap - out.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).trim().to_string()
}
