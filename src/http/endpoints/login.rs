//! The login page and `/logout`.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::http::endpoints::authorize::{continue_path, current_user, redirect};
use crate::http::error::PageError;
use crate::http::routes::{ACCOUNT, LOGIN, LOGOUT};

/// The `next` value that continues to the account page rather than a parked request.
const ACCOUNT_NEXT: &str = "account";
use crate::clients;
use crate::http::HttpState;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::security;
use crate::http::middleware::session::{self, SignedIn};
use crate::http::render;
use crate::http::views::{LoginPage, MessagePage};
use crate::store::{self, audit, throttle, users};
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

async fn show(
    state: &HttpState,
    session: &Session,
    request_id: Option<&str>,
    username: String,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let pending = match request_id {
        Some(ACCOUNT_NEXT) | None => None,
        Some(id) => Some(session::pending(session, id).await?),
    };
    let client_name = match &pending {
        Some(p) => clients::find(state, &p.client_id).await?.map(|c| c.display_name()),
        None => None,
    };
    let view = LoginPage {
        brand: "Portcullis".into(),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(LOGIN),
        csrf_token: session::csrf_token(session).await?,
        next: request_id.unwrap_or_default().to_string(),
        username,
        error,
        client_name,
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
    let now = store::now();
    let ip_text = ip.to_string();
    // Throttle keys: the account (whether or not it exists, so the answer reveals nothing) and
    // the address (with more room: many people may share one).
    // (Postgres text cannot hold NUL; such a name is simply an unknown user.)
    let user_key = format!("user:{}", form.username.to_lowercase().replace('\0', "\u{fffd}"));
    let ip_key = format!("ip:{ip_text}");
    let locked = throttle::locked_until(&state.db, &[&user_key, &ip_key]).await?;
    if locked > now {
        state.metrics.login("locked");
        let minutes = (locked - now + 59) / 60;
        let message =
            format!("Too many failed sign-ins. Try again in {minutes} minute{}.", if minutes == 1 { "" } else { "s" });
        return show(&state, &session, request_id, form.username, Some(message), StatusCode::TOO_MANY_REQUESTS).await;
    }
    let user = users::by_username(&state.db, &form.username).await?;
    let ok = state.hasher.verify(form.password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        other => {
            let s = &state.settings;
            let lockout = s.login_lockout.as_i64();
            let (failures, user_lock) =
                throttle::record_failure(&state.db, &user_key, now, s.login_max_failures, lockout).await?;
            let (_, ip_lock) =
                throttle::record_failure(&state.db, &ip_key, now, s.login_max_failures * 5, lockout).await?;
            if user_lock.max(ip_lock) > now {
                audit::record(
                    &state.db,
                    &audit::Event {
                        event: "login_locked",
                        actor: Some(&form.username),
                        ip: Some(&ip_text),
                        details: serde_json::json!({ "until": user_lock.max(ip_lock), "failures": failures }),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            }
            // A growing delay before answering slows guessing further (it costs no CPU here).
            tokio::time::sleep(std::time::Duration::from_millis(100 * failures.clamp(0, 10) as u64)).await;
            state.metrics.login("failed");
            let reason = match &other {
                Some(u) if ok && u.disabled => "disabled",
                Some(_) => "wrong_password",
                None => "unknown_user",
            };
            audit::record(
                &state.db,
                &audit::Event {
                    event: "login_failed",
                    actor: Some(&form.username),
                    ip: Some(&ip_text),
                    user_id: other.as_ref().map(|u| u.id),
                    details: serde_json::json!({ "reason": reason }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            let message = if reason == "disabled" {
                "This account is disabled. Ask your administrator."
            } else {
                "Wrong username or password."
            };
            return show(&state, &session, request_id, form.username, Some(message.into()), StatusCode::UNAUTHORIZED)
                .await;
        }
    };
    throttle::clear(&state.db, &user_key).await?;
    state.metrics.login("success");
    session::sign_in(
        &session,
        SignedIn {
            user_id: user.id,
            username: user.username.clone(),
            auth_time: now,
            login_id: crate::tokens::secrets::random_string(9),
        },
    )
    .await?;
    audit::record(
        &state.db,
        &audit::Event {
            event: "login",
            actor: Some(&user.username),
            user_id: Some(user.id),
            ip: Some(&ip_text),
            ..Default::default()
        },
        now,
    )
    .await?;
    match request_id {
        Some(ACCOUNT_NEXT) => Ok(redirect(StatusCode::SEE_OTHER, &state.routes.path(ACCOUNT))),
        Some(id) => Ok(redirect(StatusCode::SEE_OTHER, &continue_path(&state, id))),
        None => Ok(render(&MessagePage {
            brand: "Portcullis".into(),
            css_href: state.routes.stylesheet(),
            title: "You are signed in".into(),
            message: format!("Signed in as {}. You can close this window.", user.username),
        })),
    }
}

/// GET shows a confirmation form: signing out changes state, so it takes a POST with the CSRF token.
pub async fn logout_page(State(state): State<HttpState>, session: Session) -> Result<Response, PageError> {
    let who = current_user(&state, &session).await?;
    let Some(who) = who else {
        return Ok(render(&signed_out(&state)));
    };
    let _ = who;
    let view = crate::http::views::LogoutPage {
        brand: "Portcullis".into(),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(LOGOUT),
        csrf_token: session::csrf_token(&session).await?,
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

fn signed_out(state: &HttpState) -> MessagePage {
    MessagePage {
        brand: "Portcullis".into(),
        css_href: state.routes.stylesheet(),
        title: "You are signed out".into(),
        message: "You can close this window.".into(),
    }
}
