//! One configured provider at run time: its own fetcher (private network or not), its metadata
//! (OpenID Connect discovery, cached), its key cache, and the calls Portcullis makes to it as a
//! relying party: the authorization URL, the code redemption, userinfo.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::KeyCache;
use super::provider::{ClientAuth, Kind, Provider};
use crate::clients::fetch::{ApiCall, FetchConfig, FetchError, Fetcher};
use crate::tokens::keys::LoadedKey;

/// How long discovered metadata is kept, and how soon a failed discovery is retried.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Discovery documents, key sets and API answers of real providers fit (Entra's key set is ~10 KB).
const MAX_BYTES: usize = 512 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A failure talking to the provider (not a judgement on what it said).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("could not be reached: {0}")]
    Unreachable(FetchError),
    /// An OAuth error response (`error`, `error_description`).
    #[error("answered with the error {code}")]
    Refused { code: String, description: Option<String> },
    #[error("answered with something unexpected: {0}")]
    Invalid(String),
}

/// The endpoints Portcullis uses (OpenID Connect Discovery 1.0; fixed ones for GitHub).
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// What the token endpoint returned.
#[derive(Debug, Deserialize)]
pub struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
}

pub struct Upstream {
    pub provider: Provider,
    pub fetcher: Fetcher,
    pub keys: KeyCache,
    metadata: Mutex<Option<(Instant, Arc<Metadata>)>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("id", &self.provider.id).finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(provider: Provider, test_ca_file: Option<std::path::PathBuf>) -> Result<Upstream, FetchError> {
        let fetcher = Fetcher::new(FetchConfig {
            test_ca_file,
            test_allow_loopback: false,
            private_network: provider.allow_private_network,
            max_bytes: MAX_BYTES,
            timeout: TIMEOUT,
        })?;
        Ok(Upstream { provider, fetcher, keys: KeyCache::default(), metadata: Mutex::new(None) })
    }

    /// The provider's endpoints: discovered (and cached) for OpenID Connect, fixed for GitHub.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, CallError> {
        let p = &self.provider;
        if p.kind == Kind::Github {
            return Ok(Arc::new(Metadata {
                issuer: String::new(),
                authorization_endpoint: format!("{}/login/oauth/authorize", p.github_url),
                token_endpoint: format!("{}/login/oauth/access_token", p.github_url),
                userinfo_endpoint: Some(format!("{}/user", p.github_api_url)),
                jwks_uri: String::new(),
                id_token_signing_alg_values_supported: vec![],
            }));
        }
        if let Some((at, m)) = self.metadata.lock().expect("metadata lock").as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let fetched = self.fetcher.get_json(&p.discovery_url).await.map_err(CallError::Unreachable)?;
        let m: Metadata = serde_json::from_slice(&fetched.body)
            .map_err(|e| CallError::Invalid(format!("its discovery document does not parse: {e}")))?;
        // OpenID Connect Discovery §4.3: the document must name exactly the configured issuer
        // (Entra ID's multi-tenant document carries the `{tenantid}` template itself).
        if m.issuer != p.issuer {
            return Err(CallError::Invalid(format!(
                "its discovery document names the issuer {:?}, not the configured {:?}",
                m.issuer, p.issuer
            )));
        }
        if m.jwks_uri.is_empty() {
            return Err(CallError::Invalid("its discovery document has no jwks_uri".into()));
        }
        let m = Arc::new(m);
        *self.metadata.lock().expect("metadata lock") = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    /// The URL that sends the browser to the provider.
    pub fn authorization_url(&self, m: &Metadata, request: &AuthorizationRequest<'_>) -> String {
        let p = &self.provider;
        let scope = p.scopes.join(" ");
        let mut pairs: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &p.client_id),
            ("redirect_uri", request.redirect_uri),
            ("scope", &scope),
            ("state", request.state),
            ("code_challenge", request.code_challenge),
            ("code_challenge_method", "S256"),
        ];
        if p.kind == Kind::Oidc {
            pairs.push(("nonce", request.nonce));
        }
        let max_age = request.max_age.map(|m| m.to_string());
        if let Some(m) = &max_age {
            pairs.push(("max_age", m));
        }
        if request.force_login {
            pairs.push(("prompt", "login"));
        }
        if let Some(hint) = request.login_hint {
            // GitHub calls it `login`.
            pairs.push((if p.kind == Kind::Github { "login" } else { "login_hint" }, hint));
        }
        if let Some(hd) = &p.hosted_domain {
            pairs.push(("hd", hd));
        }
        let mut url = url::Url::parse(&m.authorization_endpoint).expect("checked when discovered");
        url.query_pairs_mut().extend_pairs(pairs);
        url.to_string()
    }

    /// Redeems the code at the provider's token endpoint.
    pub async fn redeem(
        &self,
        m: &Metadata,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        signing_key: Option<&LoadedKey>,
        now: i64,
    ) -> Result<TokenAnswer, CallError> {
        let p = &self.provider;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        let secret = p.client_secret.as_ref().map(|s| s.expose()).unwrap_or_default();
        // RFC 6749 §2.3.1: the Basic credentials are form-encoded first.
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let (user, password) = (encode(&p.client_id), encode(secret));
        let assertion;
        let mut basic = None;
        match p.client_auth {
            ClientAuth::ClientSecretBasic => basic = Some((user.as_str(), password.as_str())),
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &p.client_id));
                form.push(("client_secret", secret));
            }
            ClientAuth::PrivateKeyJwt => {
                let key = signing_key.ok_or_else(|| CallError::Invalid("no signing key for private_key_jwt".into()))?;
                assertion = client_assertion(key, &p.client_id, &m.token_endpoint, now)
                    .map_err(|e| CallError::Invalid(format!("could not sign the client assertion: {e}")))?;
                form.push(("client_id", &p.client_id));
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                form.push(("client_assertion", &assertion));
            }
        }
        let call = ApiCall { url: &m.token_endpoint, form: Some(&form), basic, bearer: None };
        let answer = self.fetcher.call(&call).await.map_err(CallError::Unreachable)?;
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| CallError::Invalid("its token endpoint did not answer JSON".into()))?;
        // GitHub answers errors with 200.
        if let Some(code) = body.get("error").and_then(Value::as_str) {
            let description = body.get("error_description").and_then(Value::as_str).map(str::to_string);
            return Err(CallError::Refused { code: code.to_string(), description });
        }
        if answer.status != 200 {
            return Err(CallError::Invalid(format!("its token endpoint answered HTTP {}", answer.status)));
        }
        serde_json::from_value(body).map_err(|_| CallError::Invalid("its token response has no access_token".into()))
    }

    /// A JSON object from an API of the provider (userinfo, GitHub's REST API), with the access token.
    pub async fn get(&self, url: &str, access_token: &str) -> Result<Value, CallError> {
        let call = ApiCall { url, form: None, basic: None, bearer: Some(access_token) };
        let answer = self.fetcher.call(&call).await.map_err(CallError::Unreachable)?;
        if answer.status != 200 {
            return Err(CallError::Invalid(format!("{url} answered HTTP {}", answer.status)));
        }
        serde_json::from_slice(&answer.body).map_err(|_| CallError::Invalid(format!("{url} did not answer JSON")))
    }

    pub async fn userinfo(&self, m: &Metadata, access_token: &str) -> Result<Map<String, Value>, CallError> {
        let Some(url) = &m.userinfo_endpoint else { return Ok(Map::new()) };
        match self.get(url, access_token).await? {
            Value::Object(map) => Ok(map),
            _ => Err(CallError::Invalid("its userinfo is not a JSON object".into())),
        }
    }
}

/// What one authorization request to the provider carries.
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
    pub force_login: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<&'a str>,
}

/// RFC 7523 client authentication with Portcullis's own signing key.
fn client_assertion(key: &LoadedKey, client_id: &str, audience: &str, now: i64) -> Result<String, josekit::JoseError> {
    let mut header = josekit::jws::JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(&key.kid);
    let mut p = josekit::jwt::JwtPayload::new();
    p.set_issuer(client_id);
    p.set_subject(client_id);
    p.set_audience(vec![audience]);
    p.set_jwt_id(crate::tokens::secrets::random_string(16));
    p.set_claim("iat", Some(now.into()))?;
    p.set_claim("exp", Some((now + 60).into()))?;
    josekit::jwt::encode_with_signer(&p, &header, key.signer.as_ref())
}
