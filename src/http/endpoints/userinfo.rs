//! `/userinfo` (OpenID Connect Core §5.3).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::flows::userinfo::{self, UserinfoError};
use crate::http::HttpState;
use crate::http::error::no_store;
use crate::oauth::ErrorCode;

/// RFC 6750 §3: the error in the body, and the challenge (which names it too, except when no
/// token was sent at all).
fn bearer_error(error: ErrorCode, challenge: &'static str) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": error.as_str() }))).into_response()
}

pub async fn userinfo(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match userinfo::userinfo(&state, crate::http::bearer_token(&headers)).await {
        Ok(claims) => (no_store(), Json(Value::Object(claims))).into_response(),
        // No credentials at all: a bare challenge, but a 401 all the same (RFC 6750 §3.1).
        Err(UserinfoError::MissingToken) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": ErrorCode::InvalidRequest.as_str() })),
        )
            .into_response(),
        Err(UserinfoError::InvalidToken) => bearer_error(ErrorCode::InvalidToken, "Bearer error=\"invalid_token\""),
        Err(UserinfoError::InsufficientScope) => {
            bearer_error(ErrorCode::InsufficientScope, "Bearer error=\"insufficient_scope\", scope=\"openid\"")
        }
        Err(UserinfoError::Unavailable) => {
            let body = Json(json!({ "error": ErrorCode::TemporarilyUnavailable.as_str() }));
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}
