//! `/userinfo` (OpenID Connect Core §5.3).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::flows::userinfo::{self, UserinfoError};
use crate::http::HttpState;
use crate::http::error::no_store;

fn bearer_error(status: StatusCode, error: &'static str, challenge: &'static str) -> Response {
    (status, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": error }))).into_response()
}

pub async fn userinfo(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    match userinfo::userinfo(&state, crate::http::bearer_token(&headers)).await {
        Ok(claims) => (no_store(), Json(Value::Object(claims))).into_response(),
        Err(UserinfoError::MissingToken) => bearer_error(StatusCode::UNAUTHORIZED, "invalid_request", "Bearer"),
        Err(UserinfoError::InvalidToken) => {
            bearer_error(StatusCode::UNAUTHORIZED, "invalid_token", "Bearer error=\"invalid_token\"")
        }
        Err(UserinfoError::InsufficientScope) => bearer_error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Bearer error=\"insufficient_scope\", scope=\"openid\"",
        ),
        Err(UserinfoError::Unavailable) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "temporarily_unavailable" }))).into_response()
        }
    }
}
