//! Turning errors into responses: RFC 6749 JSON for API endpoints, a readable page for browser
//! endpoints. Internals never reach a response; server errors are logged (inside the request's
//! span, which carries its id).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use crate::flows::error::{ApiError, PageError, ServerFault};
use crate::oauth::ErrorCode;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(match (self.error.code, self.www_authenticate) {
            // RFC 6749 §5.2: 401 only when the client authenticated through the Authorization header.
            (ErrorCode::InvalidClient, None) => 400,
            (code, _) => code.status(),
        })
        .unwrap_or(StatusCode::BAD_REQUEST);
        let body = Json(json!({ "error": self.error.code.as_str(), "error_description": self.error.description }));
        let mut res = (status, no_store(), body).into_response();
        res.extensions_mut().insert(OAuthErrorCode(self.error.code));
        if let Some(challenge) = self.www_authenticate {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            _ => {}
        }
        res
    }
}

/// Left on error responses so the metrics layer can count errors by code.
#[derive(Clone, Copy, Debug)]
pub struct OAuthErrorCode(pub crate::oauth::ErrorCode);

/// `Cache-Control: no-store` and `Pragma: no-cache`, for every response that carries a token,
/// a secret, or an error about one.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(self);
        res
    }
}
