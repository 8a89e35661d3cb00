//! `/account` (see [`crate::flows::account`]): the signed-in person's connected apps (each
//! revocable at once) and a password change.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use tower_sessions::Session;

use crate::flows::account::{self, PasswordChange};
use crate::http::HttpState;
use crate::http::error::PageError;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::session::{self, SignedIn, current_user};
use crate::http::redirect;
use crate::http::render;
use crate::http::routes::{ACCOUNT, ACCOUNT_PASSWORD, ACCOUNT_REVOKE, LOGIN, LOGOUT};
use crate::http::views::AccountPage;

#[derive(Deserialize)]
pub struct AccountQuery {
    revoked: Option<String>,
}

fn to_login(state: &HttpState) -> Response {
    redirect(StatusCode::SEE_OTHER, &format!("{}?next=account", state.routes.path(LOGIN)))
}

pub async fn page(
    State(state): State<HttpState>,
    session: Session,
    axum::extract::Query(q): axum::extract::Query<AccountQuery>,
) -> Result<Response, PageError> {
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(to_login(&state));
    };
    let notice = q.revoked.map(|_| "Access revoked. The app must ask you again to use that MCP server.".to_string());
    show(&state, &session, &who, notice, None, StatusCode::OK).await
}

async fn show(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let apps = account::connected_apps(state, who).await?;
    let view = AccountPage {
        brand: "Portcullis".into(),
        css_href: state.routes.stylesheet(),
        username: who.username.clone(),
        csrf_token: session::csrf_token(session).await?,
        revoke_action: state.routes.path(ACCOUNT_REVOKE),
        password_action: state.routes.path(ACCOUNT_PASSWORD),
        logout_action: state.routes.path(LOGOUT),
        apps,
        notice,
        error,
    };
    Ok((status, render(&view)).into_response())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf_token: Option<String>,
    #[serde(default)]
    grant_id: String,
}

pub async fn revoke(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(to_login(&state));
    };
    if !account::revoke(&state, &who, &form.grant_id).await? {
        let error = Some("That app no longer has access.".into());
        return show(&state, &session, &who, None, error, StatusCode::NOT_FOUND).await;
    }
    Ok(redirect(StatusCode::SEE_OTHER, &format!("{}?revoked=1", state.routes.path(ACCOUNT))))
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf_token: Option<String>,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

pub async fn password(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(to_login(&state));
    };
    let change = PasswordChange {
        current_password: form.current_password,
        new_password: form.new_password,
        confirm_password: form.confirm_password,
    };
    match account::change_password(&state, &who, ip, change).await? {
        Ok(()) => show(&state, &session, &who, Some("Your password was changed.".into()), None, StatusCode::OK).await,
        Err(refused) => {
            let status = if refused.throttled { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::BAD_REQUEST };
            show(&state, &session, &who, None, Some(refused.message), status).await
        }
    }
}
