//! Finishing error responses: the error page or JSON error, whichever the route calls for, for
//! errors left by handlers, layers and extractors; and the 404 fallback.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::flows::error::sentence;
use crate::http::HttpState;
use crate::http::error::{ApiError, PageError};
use crate::oauth::{ErrorCode, OAuthError};

/// The one place error responses are finished: [`PageError`]s left by handlers become the error
/// page, and bare or plain-text errors from layers and extractors (405, 413, 415, a form that does
/// not parse, a session store that failed) become a JSON error or a page like every other error.
/// Headers that matter to the client (`Retry-After`, `Allow`, `WWW-Authenticate`) are kept.
pub async fn finish_errors(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let page_route = state.routes.is_page(req.uri().path());
    // Set by the outer request-id layer; shown on the page so support can find the log line.
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let res = next.run(req).await;
    let (mut parts, body) = res.into_parts();
    let page = match parts.extensions.remove::<PageError>() {
        Some(page) => page,
        None => {
            let status = parts.status;
            let content_type =
                parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let finished = content_type.starts_with("application/json") || content_type.starts_with("text/html");
            if status.as_u16() < 400 || finished || status == StatusCode::NOT_FOUND {
                return Response::from_parts(parts, body);
            }
            let text = match axum::body::to_bytes(body, 4096).await {
                Ok(b) => String::from_utf8_lossy(&b).chars().take(300).collect::<String>(),
                Err(_) => String::new(),
            };
            let (code, message) = match status.as_u16() {
                405 => (ErrorCode::InvalidRequest, "this method is not allowed here".to_string()),
                413 => (ErrorCode::InvalidRequest, "the request body is too large".to_string()),
                415 => (ErrorCode::InvalidRequest, "the request has the wrong content type".to_string()),
                s if s >= 500 => {
                    tracing::error!(status = s, detail = %text, "a layer failed");
                    (ErrorCode::TemporarilyUnavailable, "the service could not complete this request".to_string())
                }
                _ if text.is_empty() => (ErrorCode::InvalidRequest, "the request is malformed".to_string()),
                _ => (ErrorCode::InvalidRequest, text),
            };
            let status = if status.is_server_error() { StatusCode::SERVICE_UNAVAILABLE } else { status };
            if !page_route {
                let mut res = ApiError::from(OAuthError::new(code, message)).into_response();
                *res.status_mut() = status;
                copy_headers(&parts.headers, res.headers_mut());
                return res;
            }
            if status.is_server_error() {
                PageError::new(
                    status,
                    "Temporarily unavailable",
                    "This service could not finish your request. Try again in a moment.",
                )
            } else {
                PageError::new(
                    status,
                    "This request can't be completed",
                    "Your browser or the app sent a request this server could not read. Go back and try again.",
                )
                .with_detail(sentence(&message))
            }
        }
    };
    let view = crate::http::views::ErrorPage {
        brand: crate::http::views::Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        title: page.title,
        message: page.message,
        detail: page.detail,
        code: page.code.map(str::to_string),
        request_id,
        link: page.link.map(|l| (l.href, l.host)),
    };
    let mut res = (page.status, crate::http::render(&view)).into_response();
    copy_headers(&parts.headers, res.headers_mut());
    res
}

fn copy_headers(from: &axum::http::HeaderMap, to: &mut axum::http::HeaderMap) {
    for name in [header::RETRY_AFTER, header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(v) = from.get(&name) {
            to.insert(name, v.clone());
        }
    }
}

/// JSON 404 for unknown paths (well-known probes included): clients move on after a 4xx.
pub async fn not_found(req: Request) -> Response {
    let wants_html =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html && !req.uri().path().contains("/.well-known/") {
        return PageError::new(
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is nothing at this address. Check the link.",
        )
        .into_response();
    }
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found", "error_description": "no such endpoint" })))
        .into_response()
}
