//! Security headers. Every response gets `nosniff`, and `Strict-Transport-Security` when the
//! issuer is https; HTML gets a strict CSP without inline script,
//! `frame-ancestors 'none'`, `X-Frame-Options: DENY` and a referrer policy. Handlers that post a
//! form whose answer redirects to a client may set their own CSP (see [`csp_with_form_action`]).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::HttpState;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// The image sources of every page's CSP; the operator's logo origin (`brand_logo_url`) is added.
const IMG_SRC: &str = "img-src 'self' data:";

pub async fn headers(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Served over https (directly or behind a TLS proxy): browsers keep to https from then on.
    if state.settings.secure_cookies {
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    let html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if html {
        if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        }
        if let Some(origin) = &state.settings.brand.logo_origin
            && let Some(csp) = h.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok())
        {
            // An origin is ASCII without spaces or quotes; a value that is not a header keeps the old one.
            if let Ok(csp) = HeaderValue::from_str(&csp.replacen(IMG_SRC, &format!("{IMG_SRC} {origin}"), 1)) {
                h.insert(header::CONTENT_SECURITY_POLICY, csp);
            }
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    }
    res
}

/// A CSP whose `form-action` also allows where the form's answer will redirect: Chrome applies
/// `form-action` to the redirect after a form post, so the client's redirect URI must be allowed.
pub fn csp_with_form_action(redirect_uri: &str) -> HeaderValue {
    let source = form_action_source(redirect_uri);
    let csp = format!(
        "default-src 'none'; style-src 'self'; {IMG_SRC}; form-action 'self' {source}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static(CSP))
}

/// The CSP source expression for a redirect URI: its origin (any port on loopback), or its scheme
/// for private-use schemes.
fn form_action_source(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
            let host = u.host_str().unwrap_or_default();
            if host == "[::1]" {
                // A CSP host-source cannot hold an IPv6 literal: allow the scheme instead.
                format!("{}:", u.scheme())
            } else if matches!(host, "127.0.0.1" | "localhost") {
                format!("{}://{}:*", u.scheme(), host)
            } else {
                u.origin().ascii_serialization()
            }
        }
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_action_sources() {
        assert_eq!(form_action_source("https://claude.ai/api/mcp/auth_callback"), "https://claude.ai");
        assert_eq!(form_action_source("http://127.0.0.1:5555/callback"), "http://127.0.0.1:*");
        assert_eq!(form_action_source("cursor://anysphere.cursor-mcp/oauth/callback"), "cursor:");
        assert_eq!(form_action_source("https://a.example:8443/cb"), "https://a.example:8443");
    }
}
