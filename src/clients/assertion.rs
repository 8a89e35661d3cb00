//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3) for metadata-document clients:
//! the assertion is signed with a key from the client's document (`jwks`, or `jwks_uri` fetched
//! through the hardened fetcher), names the client as `iss` and `sub`, this server as `aud`, is
//! short-lived, and is used once.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, ES384, JwsVerifier, PS256, RS256};
use serde_json::Value;

use crate::clients::{self, ClientId, RegisteredClient};
use crate::oauth::OAuthError;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::state::AppState;
use crate::store::{self, registration};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest lifetime accepted for an assertion: they are meant to be minted per request.
const MAX_LIFETIME: i64 = 600;

fn fail(msg: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client(msg)
}

/// The claims of an assertion, read before its signature is checked (to find the client).
fn unverified_claims(assertion: &str) -> Option<Value> {
    let payload = assertion.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `token_endpoint` is, besides the issuer, the audience the assertion may name.
pub async fn authenticate(
    state: &AppState,
    token_endpoint: &str,
    body_client_id: Option<&str>,
    assertion: &str,
) -> Result<RegisteredClient, OAuthError> {
    let claims = unverified_claims(assertion).ok_or_else(|| fail("client_assertion is not a JWT"))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let client_id = body_client_id.unwrap_or(iss);
    if iss != client_id || claims.get("sub").and_then(Value::as_str) != Some(client_id) {
        return Err(fail("client_assertion must name the client as iss and sub"));
    }
    let client = match clients::resolve(state, &ClientId::parse(client_id)).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(fail("unknown client: register again")),
        Err(e) => return Err(fail(e.public_message())),
    };
    if client.auth_method() != TokenEndpointAuthMethod::PrivateKeyJwt {
        return Err(fail("this client does not authenticate with private_key_jwt"));
    }
    let keys = client_keys(state, &client).await?;
    let header = josekit::jwt::decode_header(assertion).map_err(|_| fail("client_assertion has no valid header"))?;
    let alg = header.claim("alg").and_then(Value::as_str).unwrap_or_default().to_string();
    let kid = header.claim("kid").and_then(Value::as_str).map(str::to_string);
    let verified = keys
        .iter()
        .filter(|k| kid.is_none() || k.get("kid").and_then(Value::as_str) == kid.as_deref())
        .filter_map(|k| verifier(&alg, k))
        .any(|v| josekit::jwt::decode_with_verifier(assertion, v.as_ref()).is_ok());
    if !verified {
        return Err(fail("client_assertion signature does not verify with the client's keys"));
    }
    let now = store::now();
    // NumericDate may have a fraction (RFC 7519 §2); josekit writes one.
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .map(|e| e as i64)
        .ok_or_else(|| fail("client_assertion has no exp"))?;
    if exp <= now || exp > now + MAX_LIFETIME {
        return Err(fail("client_assertion is expired or lives too long"));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => audience_matches(state, token_endpoint, a),
        Some(Value::Array(list)) => {
            list.iter().filter_map(Value::as_str).any(|a| audience_matches(state, token_endpoint, a))
        }
        _ => false,
    };
    if !audience_ok {
        return Err(fail("client_assertion aud must be this server's issuer or token endpoint"));
    }
    let jti = claims.get("jti").and_then(Value::as_str).ok_or_else(|| fail("client_assertion has no jti"))?;
    let fresh = registration::first_use_of_assertion(&state.db, &format!("{client_id} {jti}"), exp)
        .await
        .map_err(|_| OAuthError::server_error("could not record the client assertion"))?;
    if !fresh {
        return Err(fail("client_assertion was already used"));
    }
    Ok(client)
}

fn audience_matches(state: &AppState, token_endpoint: &str, aud: &str) -> bool {
    aud == state.settings.issuer || aud == token_endpoint
}

fn verifier(alg: &str, key: &Value) -> Option<Box<dyn JwsVerifier>> {
    let jwk = Jwk::from_bytes(key.to_string().as_bytes()).ok()?;
    Some(match alg {
        "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).ok()?),
        "PS256" => Box::new(PS256.verifier_from_jwk(&jwk).ok()?),
        "ES256" => Box::new(ES256.verifier_from_jwk(&jwk).ok()?),
        "ES384" => Box::new(ES384.verifier_from_jwk(&jwk).ok()?),
        _ => return None,
    })
}

/// The client's public keys: inline `jwks`, or `jwks_uri` fetched (and cached per node for the
/// minimum document lifetime).
async fn client_keys(state: &AppState, client: &RegisteredClient) -> Result<Vec<Value>, OAuthError> {
    let set = match (&client.metadata.jwks, &client.metadata.jwks_uri) {
        (Some(jwks), _) => jwks.clone(),
        (None, Some(uri)) => {
            let cached = {
                let cache = state.client_keys.lock().expect("key cache lock");
                cache.get(uri).filter(|(until, _)| *until > Instant::now()).map(|(_, v)| v.clone())
            };
            match cached {
                Some(v) => v,
                None => {
                    let fetched = state.fetcher.get_json(uri).await.map_err(|e| {
                        fail(format!("the client's jwks_uri could not be fetched. {}", e.public_message()))
                    })?;
                    let v: Value =
                        serde_json::from_slice(&fetched.body).map_err(|_| fail("the client's jwks_uri is not JSON"))?;
                    let ttl = state.settings.cimd.min_cache.as_duration();
                    let mut cache = state.client_keys.lock().expect("key cache lock");
                    if cache.len() > 1000 {
                        cache.clear();
                    }
                    cache.insert(uri.clone(), (Instant::now() + ttl, v.clone()));
                    v
                }
            }
        }
        (None, None) => return Err(fail("the client's document has no keys")),
    };
    set.get("keys").and_then(Value::as_array).cloned().ok_or_else(|| fail("the client's key set has no keys"))
}
