//! The login page and `/logout`.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::http::error::PageError;
use crate::http::routes::{ACCOUNT, CONSENT, LOGIN, LOGOUT};

/// The `next` value that continues to the account page rather than a parked request.
const ACCOUNT_NEXT: &str = "account";
/// The `next` value that continues to the admin console.
const ADMIN_NEXT: &str = "admin";
use crate::flows::federation;
use crate::flows::login::{self, SignIn};
use crate::flows::session::{PendingAuthorization, SignedIn};
use crate::http::HttpState;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::security;
use crate::http::middleware::session::{self, current_user};
use crate::http::redirect;
use crate::http::render;
use crate::http::views::{Brand, LoginPage, MessagePage, PageLinkView, ProviderLink};
use axum::Extension;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    request_id: Option<String>,
    /// `account`: continue to the connected-apps page.
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    csrf_token: Option<String>,
    #[serde(default)]
    next: String,
}

pub async fn page(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let target = q.request_id.or(q.next);
    show(&state, &session, target.as_deref(), String::new(), None, StatusCode::OK).await
}

/// The parked request a `next` value names (`account` and nothing name none).
pub async fn continue_target(session: &Session, next: Option<&str>) -> Result<Option<PendingAuthorization>, PageError> {
    match next {
        Some(ACCOUNT_NEXT) | Some(ADMIN_NEXT) | None => Ok(None),
        Some(id) => Ok(Some(session::pending(session, id).await?)),
    }
}

/// Starts the session of someone who just signed in, and continues where they were going.
pub async fn after_sign_in(
    state: &HttpState,
    session: &Session,
    who: SignedIn,
    next: Option<&str>,
) -> Result<Response, PageError> {
    let username = who.username.clone();
    session::sign_in(session, who).await?;
    match next.filter(|n| !n.is_empty()) {
        Some(ACCOUNT_NEXT) => Ok(redirect(StatusCode::SEE_OTHER, &state.routes.path(ACCOUNT))),
        Some(ADMIN_NEXT) => Ok(redirect(StatusCode::SEE_OTHER, &state.routes.path("/admin"))),
        Some(id) => Ok(redirect(StatusCode::SEE_OTHER, &continue_path(state, id))),
        None => Ok(render(&MessagePage {
            brand: Brand::new(&state.settings.brand),
            css_href: state.routes.stylesheet(),
            title: "You are signed in".into(),
            message: format!("Signed in as {username}. You can close this window, or see the apps you connected."),
            links: vec![PageLinkView { href: state.routes.path(ACCOUNT), label: "Connected apps".into() }],
        })),
    }
}

async fn show(
    state: &HttpState,
    session: &Session,
    request_id: Option<&str>,
    username: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let pending = continue_target(session, request_id).await?;
    // Straight to the company's provider when it is the only way in, or the hint names its domain.
    if error.is_none()
        && let Some(provider) = federation::preferred_provider(state, pending.as_ref())
    {
        let target = request_id.map(|r| format!("?request_id={}", encode(r))).unwrap_or_default();
        return Ok(redirect(StatusCode::FOUND, &format!("{}{target}", state.routes.upstream_start(provider))));
    }
    let query = request_id.map(|r| format!("?request_id={}", encode(r))).unwrap_or_default();
    let providers = state
        .federation
        .all()
        .map(|u| ProviderLink {
            name: u.provider.name.clone(),
            href: format!("{}{query}", state.routes.upstream_start(&u.provider.id)),
        })
        .collect();
    let resource_name = match &pending {
        Some(p) => login::resource_name(state, p.resource_id).await?,
        None => None,
    };
    let view = LoginPage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(LOGIN),
        csrf_token: session::csrf_token(session).await?,
        next: request_id.unwrap_or_default().to_string(),
        username,
        error,
        resource_name,
        providers,
        password_login: state.settings.password_login,
    };
    let mut res = (status, render(&view)).into_response();
    if let Some(p) = &pending {
        // Login may continue straight to the client when consent was given before.
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, security::csp_with_form_action(&p.redirect_uri));
    }
    Ok(res)
}

pub async fn submit(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let request_id = Some(form.next.as_str()).filter(|n| !n.is_empty());
    if !state.settings.password_login {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Password sign-in is off",
            "Sign in with your company account instead.",
        ));
    }
    let who = match login::sign_in(&state, ip, &form.username, form.password).await? {
        SignIn::Ok(who) => who,
        SignIn::Locked(message) => {
            return show(&state, &session, request_id, form.username, Some(message), StatusCode::TOO_MANY_REQUESTS)
                .await;
        }
        SignIn::Failed(message) => {
            return show(&state, &session, request_id, form.username, Some(message), StatusCode::UNAUTHORIZED).await;
        }
    };
    after_sign_in(&state, &session, who, request_id).await
}

/// GET shows a confirmation form: signing out changes state, so it takes a POST with the CSRF token.
pub async fn logout_page(State(state): State<HttpState>, session: Session) -> Result<Response, PageError> {
    let who = current_user(&state, &session).await?;
    let Some(who) = who else {
        return Ok(render(&signed_out(&state)));
    };
    let _ = who;
    let view = crate::http::views::LogoutPage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(LOGOUT),
        csrf_token: session::csrf_token(&session).await?,
        cancel_href: state.routes.path(ACCOUNT),
    };
    Ok(render(&view))
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf_token: Option<String>,
}

pub async fn logout(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<LogoutForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    session::sign_out(&session).await?;
    Ok(render(&signed_out(&state)))
}

/// Signed out, with the way back: signing in again leads to the connected apps.
fn signed_out(state: &HttpState) -> MessagePage {
    MessagePage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        title: "You are signed out".into(),
        message: "You can close this window. Apps you connected keep their access until you remove it.".into(),
        links: vec![
            PageLinkView {
                href: format!("{}?next={ACCOUNT_NEXT}", state.routes.path(LOGIN)),
                label: "Sign in again".into(),
            },
            PageLinkView { href: state.routes.landing(), label: "Home".into() },
        ],
    }
}

/// Where the login page continues to for a parked request (the id is the person's input here).
pub fn continue_path(state: &HttpState, request_id: &str) -> String {
    format!("{}?request_id={}", state.routes.path(CONSENT), encode(request_id))
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
