//! Enterprise identity providers whose ID-JAGs (Identity Assertion JWT Authorization Grants,
//! draft-ietf-oauth-identity-assertion-authz-grant) Portcullis accepts at `/token`
//! (`[[trusted_identity_providers]]`): their keys are fetched and cached like an upstream
//! provider's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::KeyCache;
use crate::clients::fetch::{FetchConfig, FetchError, Fetcher};

/// One `[[trusted_identity_providers]]` entry, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
    /// The issuer exactly as its ID-JAGs name it (`iss`).
    pub issuer: String,
    /// Its key set; default: `jwks_uri` from `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Link an unknown (issuer, `sub`) to an existing person with the ID-JAG's `email`, when it
    /// also says `email_verified`.
    #[serde(default)]
    pub link_by_email: bool,
    /// Create a person for an unknown (issuer, `sub`).
    #[serde(default)]
    pub create_people: bool,
    /// The issuer is on a private network (any address, plain http).
    #[serde(default)]
    pub allow_private_network: bool,
}

pub struct TrustedIssuer {
    pub config: TrustedIssuerConfig,
    pub fetcher: Fetcher,
    pub keys: KeyCache,
    discovered: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

impl TrustedIssuer {
    pub fn new(config: TrustedIssuerConfig, test_ca_file: Option<std::path::PathBuf>) -> Result<Self, FetchError> {
        let fetcher = Fetcher::new(FetchConfig {
            test_ca_file,
            test_allow_loopback: false,
            private_network: config.allow_private_network,
            max_bytes: 512 * 1024,
            timeout: Duration::from_secs(10),
        })?;
        Ok(TrustedIssuer { config, fetcher, keys: KeyCache::default(), discovered: Mutex::new(None) })
    }

    /// The issuer's key set URL: configured, or discovered (and cached for an hour).
    pub async fn jwks_uri(&self) -> Result<String, String> {
        if let Some(uri) = &self.config.jwks_uri {
            return Ok(uri.clone());
        }
        if let Some((at, uri)) = self.discovered.lock().expect("discovery lock").as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(uri.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let fetched = self.fetcher.get_json(&url).await.map_err(|e| format!("discovery: {e}"))?;
        let doc: Value = serde_json::from_slice(&fetched.body).map_err(|_| "discovery: not JSON".to_string())?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err("discovery: the document names another issuer".into());
        }
        let uri = doc.get("jwks_uri").and_then(Value::as_str).ok_or("discovery: no jwks_uri")?.to_string();
        *self.discovered.lock().expect("discovery lock") = Some((Instant::now(), uri.clone()));
        Ok(uri)
    }
}

/// Validates the entries: well-formed, https unless on a private network, no duplicates.
pub fn validate_all(configs: &[TrustedIssuerConfig]) -> Result<(), String> {
    for (i, c) in configs.iter().enumerate() {
        for (what, u) in [("issuer", Some(&c.issuer)), ("jwks_uri", c.jwks_uri.as_ref())] {
            let Some(u) = u else { continue };
            let parsed = url::Url::parse(u).map_err(|e| format!("{what} {u:?}: {e}"))?;
            if parsed.scheme() != "https" && !(parsed.scheme() == "http" && c.allow_private_network) {
                return Err(format!("{what} {u:?} must be https (http only with allow_private_network)"));
            }
        }
        if configs[..i].iter().any(|o| o.issuer == c.issuer) {
            return Err(format!("{} is listed twice", c.issuer));
        }
    }
    Ok(())
}
