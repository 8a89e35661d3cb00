//! `/userinfo` (OpenID Connect Core §5.3), with bearer tokens and DPoP-bound ones (RFC 9449 §7).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::flows::userinfo::{self, Credential, UserinfoError};
use crate::http::HttpState;
use crate::http::error::no_store;
use crate::http::routes::USERINFO;
use crate::oauth::ErrorCode;

/// RFC 6750 §3: the error in the body, and the challenge (which names it too, except when no
/// token was sent at all).
fn bearer_error(error: ErrorCode, challenge: &'static str) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    (status, [(header::WWW_AUTHENTICATE, challenge)], Json(json!({ "error": error.as_str() }))).into_response()
}

/// RFC 9449 §7.1: a `DPoP` challenge naming the accepted algorithms.
fn dpop_error(error: &str, description: &str) -> Response {
    let algs = crate::oauth::dpop::SIGNING_ALGS.join(" ");
    let description = crate::oauth::OAuthError::invalid_request(description).description;
    let challenge = format!("DPoP error=\"{error}\", error_description=\"{description}\", algs=\"{algs}\"");
    let body = Json(json!({ "error": error, "error_description": description }));
    let mut res = (StatusCode::UNAUTHORIZED, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// The access token and how it came: `Bearer`, or `DPoP` with the request's proof.
fn credential(headers: &HeaderMap) -> Credential<'_> {
    if let Some(token) = crate::http::bearer_token(headers) {
        return Credential::Bearer(token);
    }
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match value.and_then(|v| v.split_once(' ')) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") && !token.trim().is_empty() => {
            Credential::Dpop { token: token.trim(), proof: crate::http::dpop_proof(headers) }
        }
        _ => Credential::Absent,
    }
}

pub async fn userinfo(State(state): State<HttpState>, method: Method, headers: HeaderMap) -> Response {
    let url = state.routes.url(USERINFO);
    let request = userinfo::Request { credential: credential(&headers), method: method.as_str(), url: &url };
    match userinfo::userinfo(&state, request).await {
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
        Err(UserinfoError::WrongScheme) => dpop_error(
            ErrorCode::InvalidToken.as_str(),
            "a DPoP-bound token must be sent with the DPoP scheme and a proof; a bearer token with Bearer",
        ),
        Err(UserinfoError::InvalidDpopProof(why)) => dpop_error(ErrorCode::InvalidDpopProof.as_str(), &why),
        Err(UserinfoError::Unavailable) => {
            let body = Json(json!({ "error": ErrorCode::TemporarilyUnavailable.as_str() }));
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}
