//! Discovery: RFC 8414 metadata, the OIDC discovery document (same facts), and the JWKS. All URLs
//! come from the route table; no empty arrays, no empty strings.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::clients::assertion::SIGNING_ALGS;
use crate::config::CimdPolicy;
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::http::routes::{AUTHORIZE, INTROSPECT, JWKS, REGISTER, REVOKE, TOKEN, USERINFO};

async fn document(state: &HttpState) -> Result<serde_json::Map<String, Value>, ApiError> {
    let r = &state.routes;
    let scopes = crate::flows::discovery::scopes_supported(state).await?;
    let doc = json!({
        "issuer": state.settings.issuer,
        "authorization_endpoint": r.url(AUTHORIZE),
        "token_endpoint": r.url(TOKEN),
        "registration_endpoint": r.url(REGISTER),
        "jwks_uri": r.url(JWKS),
        "revocation_endpoint": r.url(REVOKE),
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint": r.url(INTROSPECT),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "userinfo_endpoint": r.url(USERINFO),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        // client_credentials: machine clients the operator registers (MCP ext-auth, SEP-1046).
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": state.settings.cimd.policy != CimdPolicy::Off,
        "prompt_values_supported": ["none", "login", "consent"],
        // RFC 9449 §5.1: asymmetric algorithms only.
        "dpop_signing_alg_values_supported": crate::oauth::dpop::SIGNING_ALGS,
    });
    let mut doc = doc;
    // Enterprise-managed authorization, when configured (SEP-990): accepting ID-JAGs, and issuing them.
    if state.federation.accepts_id_jags() {
        push(&mut doc["grant_types_supported"], crate::flows::id_jag::JWT_BEARER);
        doc["authorization_grant_profiles_supported"] = json!([crate::flows::id_jag::ID_JAG_PROFILE]);
    }
    if !state.settings.enterprise_apps.is_empty() {
        push(&mut doc["grant_types_supported"], crate::flows::id_jag::TOKEN_EXCHANGE);
        doc["identity_chaining_requested_token_types_supported"] = json!([crate::flows::id_jag::ID_JAG_TOKEN_TYPE]);
    }
    match doc {
        Value::Object(m) => Ok(m),
        _ => unreachable!("json! of an object literal is an object"),
    }
}

fn push(list: &mut Value, item: &str) {
    if let Value::Array(items) = list {
        items.push(item.into());
    }
}

fn respond(body: axum::body::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}

/// The serialized documents, rebuilt at most every few seconds: discovery is the hottest path and
/// only changes when a resource (and so `scopes_supported`) is added.
#[derive(Default)]
pub struct DocumentCache {
    docs: std::sync::Mutex<[Option<(std::time::Instant, axum::body::Bytes)>; 2]>,
}

const FRESH: std::time::Duration = std::time::Duration::from_secs(5);

async fn cached(state: &HttpState, oidc: bool) -> Result<axum::body::Bytes, ApiError> {
    let slot = usize::from(oidc);
    if let Some((at, body)) = &state.metadata_cache.docs.lock().expect("cache lock")[slot]
        && at.elapsed() < FRESH
    {
        return Ok(body.clone());
    }
    let doc = if oidc { oidc_document(state).await? } else { document(state).await? };
    let body = axum::body::Bytes::from(serde_json::to_vec(&Value::Object(doc)).unwrap_or_default());
    state.metadata_cache.docs.lock().expect("cache lock")[slot] = Some((std::time::Instant::now(), body.clone()));
    Ok(body)
}

pub async fn oauth_metadata(State(state): State<HttpState>) -> Result<Response, ApiError> {
    Ok(respond(cached(&state, false).await?))
}

pub async fn oidc_metadata(State(state): State<HttpState>) -> Result<Response, ApiError> {
    Ok(respond(cached(&state, true).await?))
}

/// OIDC discovery: the same facts plus the fields OIDC Discovery §3 requires, since strict clients
/// reject the document without them.
async fn oidc_document(state: &HttpState) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mut doc = document(state).await?;
    doc.insert("subject_types_supported".into(), json!(["public"]));
    // OIDC Discovery §3 defaults `request_uri_parameter_supported` to true: say no, as /authorize
    // answers `request_not_supported` / `request_uri_not_supported`.
    doc.insert("request_parameter_supported".into(), json!(false));
    doc.insert("request_uri_parameter_supported".into(), json!(false));
    doc.insert("id_token_signing_alg_values_supported".into(), json!([state.settings.keys.alg.as_str()]));
    doc.insert(
        "claims_supported".into(),
        json!([
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "azp",
            "name",
            "preferred_username",
            "email",
            "email_verified"
        ]),
    );
    Ok(doc)
}

pub async fn jwks(State(state): State<HttpState>) -> Result<Response, ApiError> {
    // `respond`'s max-age is short enough that a key rotated in (published `key_publish_delay`
    // before it signs) is seen by every verifier before its first token.
    Ok(respond(state.keys.jwks().await?))
}
