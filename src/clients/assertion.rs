//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3) for metadata-document clients and
//! for clients the operator registered with keys (machine clients among them): the assertion is
//! signed with one of the client's keys (`jwks`, or `jwks_uri` fetched through the hardened
//! fetcher), names the client as `iss` and `sub`, this server as `aud`, is short-lived, and is
//! used once.
//!
//! The audience is one JSON string: this server's issuer identifier, as draft-ietf-oauth-rfc7523bis
//! requires (and the MCP SDKs send), or, for clients written to RFC 7523 §3 and OpenID Connect
//! Core §9 before it, the token endpoint's URL. Arrays are refused even when they name us: an
//! audience list is how an assertion meant for several servers, one of them possibly an
//! attacker's, would be replayed here (the audience-injection attack rfc7523bis answers).

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::JwsVerifier;
use serde_json::Value;

use crate::clients::{self, ClientId, RegisteredClient};
use crate::oauth::OAuthError;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::state::AppState;
use crate::store::{self, registration};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The algorithms an assertion may be signed with (asymmetric only: `none` and HMAC never), as
/// the metadata's `token_endpoint_auth_signing_alg_values_supported` lists them.
pub const SIGNING_ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "ES384"];
/// JWK members that only a private key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];
/// Longest lifetime accepted for an assertion: they are meant to be minted per request.
const MAX_LIFETIME: i64 = 600;

fn fail(msg: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client(msg)
}

/// The claims of an assertion, read before its signature is checked (to find the client).
pub(crate) fn unverified_claims(assertion: &str) -> Option<Value> {
    let payload = assertion.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// `token_endpoint` is, besides the issuer, the audience the assertion may name.
pub async fn authenticate(
    state: &AppState,
    token_endpoint: &str,
    body_client_id: Option<&str>,
    assertion: &str,
    from: Option<&crate::net::AddressKey>,
) -> Result<RegisteredClient, OAuthError> {
    let claims = unverified_claims(assertion).ok_or_else(|| fail("client_assertion is not a JWT"))?;
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
    let client_id = body_client_id.unwrap_or(iss);
    if iss != client_id || claims.get("sub").and_then(Value::as_str) != Some(client_id) {
        return Err(fail("client_assertion must name the client as iss and sub"));
    }
    let client = match clients::resolve(state, &ClientId::parse(client_id), from).await {
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
    match claims.get("aud") {
        Some(Value::String(a)) if audience_matches(state, token_endpoint, a) => {}
        Some(Value::Array(_)) => {
            return Err(fail(format!(
                "client_assertion aud must be one string, this server's issuer ({}), not an array",
                state.settings.issuer
            )));
        }
        _ => {
            return Err(fail(format!("client_assertion aud must be this server's issuer ({})", state.settings.issuer)));
        }
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

/// The issuer; the token endpoint URL for clients that follow RFC 7523 as first published.
fn audience_matches(state: &AppState, token_endpoint: &str, aud: &str) -> bool {
    aud == state.settings.issuer || aud == token_endpoint
}

/// Checks a key set the operator declares for a client: public keys only, each one usable with
/// one of [`SIGNING_ALGS`] (so that an assertion can verify against it). The message names the
/// key and what is wrong with it.
pub fn check_key_set(jwks: &Value) -> Result<(), String> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or("a JWK set is a JSON object with a \"keys\" array")?;
    if keys.is_empty() {
        return Err("the JWK set has no keys".into());
    }
    if keys.len() > 20 {
        return Err("a client may have at most 20 keys".into());
    }
    for (i, k) in keys.iter().enumerate() {
        let name = match k.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key {kid:?}"),
            None => format!("key {}", i + 1),
        };
        if !k.is_object() {
            return Err(format!("{name} is not a JSON object"));
        }
        if PRIVATE_MEMBERS.iter().any(|m| k.get(*m).is_some()) {
            return Err(format!("{name} contains private key material: give the client's public key only"));
        }
        if k.get("use").is_some_and(|u| u != "sig") {
            return Err(format!("{name} is not a signing key (\"use\" must be \"sig\")"));
        }
        let algs: Vec<&str> = match k.get("alg").and_then(Value::as_str) {
            Some(alg) => vec![alg],
            None => SIGNING_ALGS.to_vec(),
        };
        if !algs.iter().any(|alg| SIGNING_ALGS.contains(alg) && verifier(alg, k).is_some()) {
            return Err(format!("{name} is not a public RSA or EC (P-256, P-384) key for {}", SIGNING_ALGS.join(", ")));
        }
    }
    Ok(())
}

/// A verifier for one of [`SIGNING_ALGS`] (the shared one accepts more).
fn verifier(alg: &str, key: &Value) -> Option<Box<dyn JwsVerifier>> {
    SIGNING_ALGS.contains(&alg).then(|| crate::federation::keys::verifier(alg, key)).flatten()
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
        (None, None) => return Err(fail("the client has no registered keys")),
    };
    set.get("keys").and_then(Value::as_array).cloned().ok_or_else(|| fail("the client's key set has no keys"))
}

#[cfg(test)]
mod tests {
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use serde_json::json;

    use super::*;

    fn ec_pair() -> (Value, Value) {
        let pair = EcKeyPair::generate(EcCurve::P256).unwrap();
        let public: Value = serde_json::from_str(&pair.to_jwk_public_key().to_string()).unwrap();
        let private: Value = serde_json::from_str(&pair.to_jwk_private_key().to_string()).unwrap();
        (public, private)
    }

    #[test]
    fn key_sets_hold_usable_public_keys_only() {
        let (public, private) = ec_pair();
        assert_eq!(check_key_set(&json!({ "keys": [public.clone()] })), Ok(()));
        let mut with_alg = public.clone();
        with_alg["alg"] = json!("ES256");
        with_alg["use"] = json!("sig");
        assert_eq!(check_key_set(&json!({ "keys": [with_alg] })), Ok(()));

        let refused = |set: Value, says: &str| {
            let e = check_key_set(&set).expect_err("refused");
            assert!(e.contains(says), "{set}: {e}");
        };
        refused(json!({ "keys": [private] }), "private key material");
        refused(json!({ "keys": [{"kty": "oct", "k": "c2VjcmV0"}] }), "private key material");
        refused(json!({ "keys": [] }), "no keys");
        refused(json!([public.clone()]), "\"keys\" array");
        refused(json!({ "keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "bad"}] }), "key \"bad\"");
        refused(
            json!({ "keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}] }),
            "key 1",
        );
        let mut hmac = public.clone();
        hmac["alg"] = json!("HS256");
        refused(json!({ "keys": [hmac] }), "ES256");
        let mut enc = public;
        enc["use"] = json!("enc");
        refused(json!({ "keys": [enc] }), "signing key");
    }
}
