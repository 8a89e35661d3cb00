//! `/introspect` (RFC 7662) for MCP servers that prefer asking to verifying JWTs. Callers are
//! resource servers with the credentials `portcullis resource add --introspection` issued; each
//! may introspect only tokens whose audience is itself (RFC 7662 §4).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::client_auth::credentials;
use crate::http::error::{ApiError, no_store};
use crate::http::token::form_params;
use crate::oauth::OAuthError;
use crate::state::AppState;
use crate::store::resources::ResourceRow;
use crate::store::{self, resources, revocations};
use crate::tokens::jwt::{self, VerifiedAccessToken};
use crate::tokens::secrets;

const CHALLENGE: &str = "Basic realm=\"portcullis\", charset=\"UTF-8\"";

async fn resource_server(
    state: &AppState,
    headers: &HeaderMap,
    body: &crate::oauth::params::Params,
) -> Result<ResourceRow, ApiError> {
    let denied = || {
        ApiError::from(OAuthError::invalid_client("resource server authentication failed")).with_challenge(CHALLENGE)
    };
    let creds = credentials(headers, body).map_err(|_| denied())?;
    let secret = creds.secret.ok_or_else(denied)?;
    let row = resources::by_introspection_id(&state.db, &creds.client_id).await?.ok_or_else(denied)?;
    match &row.introspection_secret_hash {
        Some(hash) if secrets::verify(&secret, hash) => Ok(row),
        _ => Err(denied()),
    }
}

pub async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let caller = resource_server(&state, &headers, &params).await?;
    let token = params.require("token")?;
    let now = store::now();
    let answer = match jwt::verify_access_token(&state.keys, token, &state.settings.issuer, now).await {
        Some(claims) if claims.aud == caller.uri && is_live(&state, &claims, caller.id).await? => json!({
            "active": true,
            "iss": state.settings.issuer,
            "sub": claims.sub,
            "aud": claims.aud,
            "client_id": claims.client_id,
            "scope": claims.scope,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
            "token_type": "Bearer",
        }),
        _ => json!({ "active": false }),
    };
    Ok((no_store(), Json(answer)).into_response())
}

/// Not revoked, the person enabled, and the grant it was issued under still live.
async fn is_live(state: &AppState, claims: &VerifiedAccessToken, resource_id: uuid::Uuid) -> Result<bool, ApiError> {
    let Ok(user_id) = claims.sub.parse::<uuid::Uuid>() else { return Ok(false) };
    let live =
        revocations::access_token_live(&state.db, &claims.jti, user_id, &claims.client_id, resource_id, claims.iat)
            .await?;
    Ok(live)
}
