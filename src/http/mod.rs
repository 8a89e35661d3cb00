//! HTTP: axum handlers, views, error rendering, security headers, CORS. Handlers parse the request
//! into domain types, call one function, and render the result.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

use crate::state::AppState;

pub mod admin_views;
pub mod endpoints;
pub mod error;
pub mod middleware;
pub mod routes;
pub mod state;
pub mod views;

pub use state::HttpState;

use endpoints::*;
use middleware::rate_limit::Bucket;
use middleware::*;
use routes::*;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application, as `serve` runs it and as the tests run it.
pub fn app(state: AppState) -> Router {
    let state = HttpState::new(state);
    let r = &state.routes;

    // Endpoints browsers' scripts may call (metadata, keys, token, registration): CORS for any origin.
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("mcp-protocol-version"),
            HeaderName::from_static("dpop"),
        ])
        // A browser client must read the nonce it is told to use (RFC 9449 §8).
        .expose_headers([DPOP_NONCE, header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(86_400));
    let limited = |bucket| axum::middleware::from_fn_with_state((state.clone(), bucket), rate_limit::limit);
    let mut api = Router::new()
        .route(&r.path(JWKS), get(metadata::jwks))
        .route(
            &r.path(TOKEN),
            post(token::token).layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_token)),
        )
        .route(&r.path(REVOKE), post(revoke::revoke).layer(limited(Bucket::Revoke)))
        .route(&r.path(INTROSPECT), post(introspect::introspect).layer(limited(Bucket::Introspect)))
        .route(&r.path(USERINFO), get(userinfo::userinfo).post(userinfo::userinfo))
        .route(&r.path(REGISTER), post(register::register).layer(limited(Bucket::Register)))
        .route(&r.path(REGISTER_CLIENT), get(register::read).put(register::update).delete(register::delete));
    for path in r.oauth_metadata_paths() {
        api = api.route(&path, get(metadata::oauth_metadata));
    }
    for path in r.oidc_metadata_paths() {
        api = api.route(&path, get(metadata::oidc_metadata));
    }
    let api = api.layer(cors);

    // Browser endpoints: sessions, no CORS (OAuth 2.1 §3.1 forbids it on /authorize).
    let session_layer = SessionManagerLayer::new(crate::flows::session_store(&state))
        .with_name(session::cookie_name(state.settings.secure_cookies, &state.routes.prefix))
        .with_same_site(SameSite::Lax)
        .with_secure(state.settings.secure_cookies)
        .with_http_only(true)
        .with_path(session::cookie_path(&state.routes.prefix))
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(state.settings.lifetimes.session.as_i64())));
    // The page routes, in the order of `routes::PAGES` (errors there are pages, not JSON).
    let page_routes = [
        (AUTHORIZE, get(authorize::get).post(authorize::post).layer(limited(Bucket::Authorize))),
        (LOGIN, get(login::page).post(login::submit).layer(limited(Bucket::Login))),
        (LOGOUT, get(login::logout_page).post(login::logout)),
        (CONSENT, get(consent::page).post(consent::submit)),
        (ACCOUNT, get(account::page)),
        (ACCOUNT_REVOKE, post(account::revoke)),
        // A password change checks a password: it shares the login limit.
        (ACCOUNT_PASSWORD, post(account::password).layer(limited(Bucket::Login))),
        (LANDING, get(landing::page)),
    ];
    assert!(page_routes.iter().map(|(p, _)| *p).eq(PAGES.iter().copied()), "routes::PAGES is the page route table");
    let mut pages =
        page_routes.into_iter().fold(Router::new(), |router, (path, handler)| router.route(&r.path(path), handler));
    if !r.prefix.is_empty() {
        // A path issuer's landing page answers without the trailing slash too.
        pages = pages.route(&r.prefix, get(landing::page));
    }
    let pages = pages
        .route(&r.path(UPSTREAM_START), get(upstream::start).layer(limited(Bucket::Login)))
        .route(&r.path(UPSTREAM_CALLBACK), get(upstream::callback).layer(limited(Bucket::Login)))
        .route(&r.path("/admin"), get(admin_console::overview))
        .route(&r.path("/admin/people"), get(admin_console::people).post(admin_console::add_person))
        .route(&r.path("/admin/people/{username}/{action}"), post(admin_console::person_action))
        .route(&r.path("/admin/confirm"), get(admin_console::confirm))
        .route(&r.path("/admin/groups"), post(admin_console::set_groups))
        .route(&r.path("/admin/resources"), get(admin_console::resources).post(admin_console::add_resource))
        .route(&r.path("/admin/resources/remove"), post(admin_console::remove_resource))
        .route(&r.path("/admin/resources/introspection"), post(admin_console::introspection_credentials))
        .route(&r.path("/admin/clients"), get(admin_console::clients).post(admin_console::add_client))
        .route(&r.path("/admin/clients/delete"), post(admin_console::remove_client))
        .route(&r.path("/admin/clients/block"), post(admin_console::block_host))
        .route(&r.path("/admin/clients/unblock"), post(admin_console::unblock_host))
        .route(&r.path("/admin/grants"), get(admin_console::grants))
        .route(&r.path("/admin/grants/{id}/revoke"), post(admin_console::revoke_grant))
        .route(&r.path("/admin/audit"), get(admin_console::audit))
        .route(&r.path("/admin/keys"), get(admin_console::keys))
        .route(&r.path("/admin/keys/rotate"), post(admin_console::rotate_key))
        .route(&r.path("/admin/settings"), get(admin_console::settings))
        .layer(session_layer);

    let admin = |p: &str| r.path(&format!("{ADMIN_API}{p}"));
    // No CORS here: nothing in a browser has business calling the admin API cross-origin.
    let admin_routes = Router::new()
        .route(&admin("/openapi.json"), get(admin_api::openapi))
        .route(&admin("/people"), get(admin_api::people).post(admin_api::add_person))
        .route(&admin("/people/{username}/disable"), post(admin_api::disable_person))
        .route(&admin("/people/{username}/enable"), post(admin_api::enable_person))
        .route(&admin("/people/{username}/password"), post(admin_api::new_password))
        .route(&admin("/people/{username}/groups"), axum::routing::put(admin_api::set_groups))
        .route(
            &admin("/resources"),
            get(admin_api::resources)
                .post(admin_api::add_resource)
                .put(admin_api::update_resource)
                .delete(admin_api::remove_resource),
        )
        .route(&admin("/grants"), get(admin_api::grants))
        .route(&admin("/grants/{id}"), axum::routing::delete(admin_api::revoke_grant))
        .route(&admin("/audit"), get(admin_api::audit))
        .route(&admin("/clients"), get(admin_api::clients).post(admin_api::add_client).delete(admin_api::remove_client))
        .route(&admin("/resources/introspection"), post(admin_api::introspection_credentials))
        .route(
            &admin("/blocked-hosts"),
            get(admin_api::blocked_hosts).post(admin_api::block_host).delete(admin_api::unblock_host),
        );
    let plain = Router::new()
        .route(&r.path(HEALTHZ), get(health::healthz))
        .route(&r.path(READYZ), get(health::readyz))
        .route(&r.path(METRICS), get(health::metrics))
        .route(&r.path(STYLE_CSS), get(assets::style))
        .route(&r.path(FAVICON_SVG), get(assets::favicon))
        .route(&r.path(CLIENT_LOGO), get(assets::client_logo))
        .route(&r.path(UPSTREAM_LOGOUT), post(upstream::backchannel_logout).layer(limited(Bucket::Token)));

    Router::new()
        .merge(api)
        .merge(pages)
        .merge(plain)
        .merge(admin_routes)
        .fallback(errors::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), run_to_end::run_to_end))
        .layer(axum::middleware::from_fn_with_state(state.clone(), errors::finish_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record_metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), security::headers))
        .layer(axum::extract::DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), client_ip::resolve))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), RandomRequestId))
        .with_state(state)
}

/// Request ids: random UUIDs from the thread's generator (`MakeRequestUuid` asks the kernel for
/// each one: a system call on every request).
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())).ok().map(RequestId::new)
    }
}

/// Renders an askama view; a template failure is a server error, never a half page.
pub fn render<T: askama::Template>(view: &T) -> Response {
    match view.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The token of an `Authorization: Bearer ...` header; the scheme is case-insensitive (RFC 7235 §2.1).
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// RFC 9449 §8: the server's nonce, on `/token` answers.
pub(crate) const DPOP_NONCE: axum::http::HeaderName = axum::http::HeaderName::from_static("dpop-nonce");

/// The request's `DPoP` header fields (RFC 9449 §4.1): one proof, none, or an unusable set.
pub(crate) fn dpop_proof(headers: &axum::http::HeaderMap) -> crate::flows::dpop::ProofHeader<'_> {
    use crate::flows::dpop::ProofHeader;
    let mut fields = headers.get_all("dpop").iter();
    match (fields.next(), fields.next()) {
        (None, _) => ProofHeader::Absent,
        (Some(v), None) => v.to_str().map_or(ProofHeader::Invalid, ProofHeader::One),
        (Some(_), Some(_)) => ProofHeader::Invalid,
    }
}

/// The `Authorization` header as client authentication reads it.
pub(crate) fn authorization(headers: &axum::http::HeaderMap) -> crate::clients::auth::Authorization<'_> {
    use crate::clients::auth::Authorization;
    match headers.get(header::AUTHORIZATION) {
        None => Authorization::Absent,
        Some(v) => v.to_str().map_or(Authorization::Unreadable, Authorization::Value),
    }
}

/// A redirect to `url` with the given status (302 after GET, 303 after POST; never 307).
pub fn redirect(status: axum::http::StatusCode, url: &str) -> Response {
    (status, [(header::LOCATION, header_value(url))]).into_response()
}

pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
