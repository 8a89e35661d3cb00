//! `/userinfo` (OpenID Connect Core §5.3): the person's claims for an access token with `openid`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::HttpState;
use crate::http::error::no_store;
use crate::store::{self, revocations, users};
use crate::tokens::jwt;

fn bearer_error(status: StatusCode, error: &'static str, challenge: &'static str) -> Response {
    (status, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": error }))).into_response()
}

pub async fn userinfo(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let invalid = || bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "Bearer error=\"invalid_token\"");
    let Some(token) = crate::http::bearer_token(&headers) else {
        return bearer_error(StatusCode::UNAUTHORIZED, "invalid_request", "Bearer");
    };
    let now = store::now();
    let Some(claims) = jwt::verify_access_token(&state.keys, token.trim(), &state.settings.issuer, now).await else {
        return invalid();
    };
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Bearer error=\"insufficient_scope\", scope=\"openid\"",
        );
    }
    let user = match claims.sub.parse::<uuid::Uuid>() {
        Ok(id) => users::by_id(&state.db, id).await,
        Err(_) => return invalid(),
    };
    let revoked = revocations::is_revoked(&state.db, &claims.jti).await;
    match (user, revoked) {
        (Ok(Some(u)), Ok(false)) if !u.disabled => {
            (no_store(), Json(Value::Object(profile_claims(&u, &scopes)))).into_response()
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "userinfo lookup failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "temporarily_unavailable" }))).into_response()
        }
        _ => invalid(),
    }
}

/// `sub`, plus `profile` and `email` claims as the scopes allow. Shared with the ID token.
pub fn profile_claims(u: &users::User, scopes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(u.id.to_string()));
    if scopes.contains(&"profile") {
        m.insert("preferred_username".into(), json!(u.username));
        if let Some(name) = &u.display_name {
            m.insert("name".into(), json!(name));
        }
    }
    if scopes.contains(&"email")
        && let Some(email) = &u.email
    {
        m.insert("email".into(), json!(email));
        m.insert("email_verified".into(), json!(false));
    }
    m
}
