//! Public keys of another party (an identity provider's `jwks_uri`), fetched through the hardened
//! fetcher and cached per node, and JWS verification against them with an algorithm allow-list.
//!
//! Rollover: a token signed with a `kid` the cached set does not have triggers one re-fetch, at
//! most every [`REFETCH_AFTER`] (so a stream of tokens with made-up `kid`s cannot make Portcullis
//! hammer the provider); a set is otherwise kept for its `Cache-Control` lifetime, clamped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use josekit::jwk::Jwk;
use josekit::jws::{ES256, ES384, ES512, EdDSA, JwsVerifier, PS256, PS384, PS512, RS256, RS384, RS512};
use serde_json::{Map, Value};

use crate::clients::fetch::{FetchError, Fetcher};

/// Asymmetric algorithms only: never `none`, never HMAC (whose "key" would be public).
pub const ALLOWED_ALGS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];
/// The shortest and longest a fetched key set is kept.
const MIN_TTL: Duration = Duration::from_secs(300);
const MAX_TTL: Duration = Duration::from_secs(86_400);
/// The soonest a key set is fetched again because a token named an unknown key.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a signed JWT")]
    Malformed,
    #[error("the token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key of the provider verifies the token's signature")]
    Signature,
    #[error("the provider's keys could not be fetched: {0}")]
    Keys(String),
}

struct Entry {
    keys: Vec<Value>,
    fetched_at: Instant,
    ttl: Duration,
}

/// Key sets by URL.
#[derive(Default)]
pub struct KeyCache {
    sets: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").finish_non_exhaustive()
    }
}

impl KeyCache {
    /// Verifies `token`'s signature with a key from `jwks_uri` and returns its header and claims.
    /// `allowed` narrows [`ALLOWED_ALGS`] further (the provider's advertised algorithms).
    pub async fn verify(
        &self,
        fetcher: &Fetcher,
        jwks_uri: &str,
        token: &str,
        allowed: &[String],
    ) -> Result<(Map<String, Value>, Map<String, Value>), VerifyError> {
        let header = josekit::jwt::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let alg = header.claim("alg").and_then(Value::as_str).unwrap_or_default().to_string();
        if !ALLOWED_ALGS.contains(&alg.as_str()) || (!allowed.is_empty() && !allowed.iter().any(|a| a == &alg)) {
            return Err(VerifyError::Algorithm(alg));
        }
        let kid = header.claim("kid").and_then(Value::as_str).map(str::to_string);
        let header_map = header_of(token).ok_or(VerifyError::Malformed)?;
        let keys = self.keys(fetcher, jwks_uri, kid.as_deref(), false).await?;
        if let Some(claims) = verify_with(&keys, token, &alg, kid.as_deref()) {
            return Ok((header_map, claims));
        }
        // Perhaps the provider rolled its keys: one fresh look (rate-limited).
        let keys = self.keys(fetcher, jwks_uri, kid.as_deref(), true).await?;
        verify_with(&keys, token, &alg, kid.as_deref()).map(|c| (header_map, c)).ok_or(VerifyError::Signature)
    }

    async fn keys(
        &self,
        fetcher: &Fetcher,
        url: &str,
        kid: Option<&str>,
        refetch: bool,
    ) -> Result<Vec<Value>, VerifyError> {
        let cached = {
            let sets = self.sets.lock().expect("key cache lock");
            sets.get(url).map(|e| {
                let fresh = e.fetched_at.elapsed() < e.ttl;
                let has_kid =
                    kid.is_none_or(|k| e.keys.iter().any(|key| key.get("kid").and_then(Value::as_str) == Some(k)));
                let may_refetch = e.fetched_at.elapsed() >= REFETCH_AFTER;
                (e.keys.clone(), fresh && (has_kid || !may_refetch) && !(refetch && may_refetch))
            })
        };
        match cached {
            Some((keys, true)) => return Ok(keys),
            Some((keys, false)) if refetch && !self.may_refetch(url) => return Ok(keys),
            _ => {}
        }
        let fetched = fetcher.get_json(url).await.map_err(|e: FetchError| VerifyError::Keys(e.to_string()))?;
        let set: Value = serde_json::from_slice(&fetched.body).map_err(|_| VerifyError::Keys("not JSON".into()))?;
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| VerifyError::Keys("no \"keys\" array".into()))?;
        let ttl = fetched.max_age.unwrap_or(MIN_TTL * 12).clamp(MIN_TTL, MAX_TTL);
        let mut sets = self.sets.lock().expect("key cache lock");
        sets.insert(url.to_string(), Entry { keys: keys.clone(), fetched_at: Instant::now(), ttl });
        Ok(keys)
    }

    fn may_refetch(&self, url: &str) -> bool {
        let sets = self.sets.lock().expect("key cache lock");
        sets.get(url).is_none_or(|e| e.fetched_at.elapsed() >= REFETCH_AFTER)
    }
}

/// The JOSE header as JSON.
fn header_of(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine;
    let part = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims, if a key of `keys` (matching `kid` when the token names one) verifies `token`.
fn verify_with(keys: &[Value], token: &str, alg: &str, kid: Option<&str>) -> Option<Map<String, Value>> {
    keys.iter()
        .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
        // A key that names its algorithm is used for that one only (RFC 7517 §4.4).
        .filter(|k| k.get("alg").and_then(Value::as_str).is_none_or(|a| a == alg))
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter_map(|k| verifier(alg, k))
        .find_map(|v| josekit::jwt::decode_with_verifier(token, v.as_ref()).ok())
        .map(|(payload, _)| payload.claims_set().clone())
}

/// A verifier for `alg` from a public JWK (none for a private or symmetric key). The key's `kid`
/// is left out: the caller matched it already, and josekit would otherwise demand that the header
/// name one, which RFC 7515 leaves optional (the TypeScript SDK's assertions carry none).
pub(crate) fn verifier(alg: &str, key: &Value) -> Option<Box<dyn JwsVerifier>> {
    // Never a private key as a verification key, whatever the set holds.
    if key.get("d").is_some() || key.get("k").is_some() {
        return None;
    }
    let mut key = key.clone();
    key.as_object_mut()?.remove("kid");
    let jwk = Jwk::from_bytes(key.to_string().as_bytes()).ok()?;
    Some(match alg {
        "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).ok()?),
        "RS384" => Box::new(RS384.verifier_from_jwk(&jwk).ok()?),
        "RS512" => Box::new(RS512.verifier_from_jwk(&jwk).ok()?),
        "PS256" => Box::new(PS256.verifier_from_jwk(&jwk).ok()?),
        "PS384" => Box::new(PS384.verifier_from_jwk(&jwk).ok()?),
        "PS512" => Box::new(PS512.verifier_from_jwk(&jwk).ok()?),
        "ES256" => Box::new(ES256.verifier_from_jwk(&jwk).ok()?),
        "ES384" => Box::new(ES384.verifier_from_jwk(&jwk).ok()?),
        "ES512" => Box::new(ES512.verifier_from_jwk(&jwk).ok()?),
        "EdDSA" => Box::new(EdDSA.verifier_from_jwk(&jwk).ok()?),
        _ => return None,
    })
}
