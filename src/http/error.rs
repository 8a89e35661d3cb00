//! Turning errors into responses: RFC 6749 JSON for API endpoints, a readable page for browser
//! endpoints. Internals never reach a response; server errors are logged (inside the request's
//! span, which carries its id).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::http::HttpState;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::StoreError;
use crate::tokens::keys::KeyError;

/// An error on a JSON API endpoint.
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    /// `WWW-Authenticate` to send (401 for Basic client authentication, RFC 7592 bearer errors).
    pub www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        ApiError { error, www_authenticate: None }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidInput => OAuthError::invalid_request(e.to_string()).into(),
            e => OAuthError::from(ServerFault::from(e)).into(),
        }
    }
}

impl From<crate::clients::auth::AuthError> for ApiError {
    fn from(e: crate::clients::auth::AuthError) -> Self {
        use crate::clients::auth::{AuthError, BASIC_CHALLENGE};
        match e {
            AuthError::Rejected { error, basic: true } => ApiError::from(error).with_challenge(BASIC_CHALLENGE),
            AuthError::Rejected { error, basic: false } => error.into(),
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        OAuthError::from(ServerFault::from(e)).into()
    }
}

/// A failure on our side, logged here and reported without detail.
#[derive(Debug)]
pub enum ServerFault {
    Unavailable(String),
    Internal(String),
}

impl From<StoreError> for ServerFault {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() { ServerFault::Unavailable(e.to_string()) } else { ServerFault::Internal(e.to_string()) }
    }
}

impl From<KeyError> for ServerFault {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(s) => s.into(),
            e => ServerFault::Internal(e.to_string()),
        }
    }
}

impl From<ServerFault> for OAuthError {
    fn from(f: ServerFault) -> Self {
        match f {
            ServerFault::Unavailable(detail) => {
                tracing::error!(%detail, "database unavailable");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the service is temporarily unavailable, retry later",
                )
            }
            ServerFault::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                OAuthError::server_error("an internal error occurred")
            }
        }
    }
}

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
        res.extensions_mut().insert(OAuthErrorCode(self.error.code.as_str()));
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
pub struct OAuthErrorCode(pub &'static str);

/// `Cache-Control: no-store` and `Pragma: no-cache`, for every response that carries a token,
/// a secret, or an error about one.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// An error shown to a person in the browser. Rendered by [`render_pages`], which has the state.
#[derive(Clone, Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub code: Option<&'static str>,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError { status, title: title.into(), message: message.into(), code: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "This request can't be completed", message)
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code.as_str());
        self
    }
}

impl From<OAuthError> for PageError {
    fn from(e: OAuthError) -> Self {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let title = match e.code {
            ErrorCode::ServerError => "Something went wrong",
            ErrorCode::TemporarilyUnavailable => "Temporarily unavailable",
            _ => "This request can't be completed",
        };
        PageError::new(status, title, e.description).with_code(e.code)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidInput => PageError::bad_request("The request contains characters that are not allowed."),
            e => OAuthError::from(ServerFault::from(e)).into(),
        }
    }
}

impl From<KeyError> for PageError {
    fn from(e: KeyError) -> Self {
        OAuthError::from(ServerFault::from(e)).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        res.extensions_mut().insert(self);
        res
    }
}

/// Paths people open in a browser: their errors are pages, everything else answers JSON.
fn is_page(state: &HttpState, path: &str) -> bool {
    use crate::http::routes::{ACCOUNT, AUTHORIZE, CONSENT, LOGIN, LOGOUT};
    let p = state.routes.prefix.as_str();
    let rest = path.strip_prefix(p).unwrap_or(path);
    [AUTHORIZE, LOGIN, LOGOUT, CONSENT].contains(&rest) || rest == ACCOUNT || rest.starts_with("/account/")
}

/// The one place error responses are finished: [`PageError`]s left by handlers become the error
/// page, and bare or plain-text errors from layers and extractors (405, 413, 415, a form that does
/// not parse, a session store that failed) become a JSON error or a page like every other error.
/// Headers that matter to the client (`Retry-After`, `Allow`, `WWW-Authenticate`) are kept.
pub async fn finish_errors(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let page_route = is_page(&state, req.uri().path());
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
            let title =
                if status.is_server_error() { "Temporarily unavailable" } else { "This request can't be completed" };
            PageError::new(status, title, capitalise(&message))
        }
    };
    let view = crate::http::views::ErrorPage {
        brand: "Portcullis".into(),
        css_href: state.routes.path("/static/style.css"),
        title: page.title,
        message: page.message,
        code: page.code.map(str::to_string),
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

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().collect::<String>() + c.as_str() + if s.ends_with('.') { "" } else { "." },
        None => String::new(),
    }
}

/// JSON 404 for unknown paths (well-known probes included): clients move on after a 4xx.
pub async fn not_found(req: Request) -> Response {
    let wants_html =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html && !req.uri().path().contains("/.well-known/") {
        return PageError::new(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.")
            .into_response();
    }
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found", "error_description": "no such endpoint" })))
        .into_response()
}
