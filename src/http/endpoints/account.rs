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
use crate::http::views::{AccountPage, AppLine, Brand, PasswordOutcome};

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
    let overview = account::overview(&state, &who, q.revoked.as_deref()).await?;
    let shown = Shown { notice: overview.notice, ..Default::default() };
    show(&state, &session, &who, overview.apps, shown, StatusCode::OK).await
}

/// What the page shows besides the apps: a notice or error at the top, the password form's outcome.
#[derive(Default)]
struct Shown {
    notice: Option<String>,
    error: Option<String>,
    password: PasswordOutcome,
}

async fn show(
    state: &HttpState,
    session: &Session,
    who: &SignedIn,
    apps: Vec<AppLine>,
    shown: Shown,
    status: StatusCode,
) -> Result<Response, PageError> {
    let view = AccountPage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        username: who.username.clone(),
        csrf_token: session::csrf_token(session).await?,
        revoke_action: state.routes.path(ACCOUNT_REVOKE),
        password_action: state.routes.path(ACCOUNT_PASSWORD),
        logout_action: state.routes.path(LOGOUT),
        apps,
        notice: shown.notice,
        error: shown.error,
        password: shown.password,
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
    let Some(revoked) = account::revoke(&state, &who, &form.grant_id).await? else {
        let apps = account::connected_apps(&state, &who).await?;
        let shown = Shown { error: Some("That app no longer has access.".into()), ..Default::default() };
        return show(&state, &session, &who, apps, shown, StatusCode::NOT_FOUND).await;
    };
    // The grant's id, so the page can name the app it revoked.
    Ok(redirect(StatusCode::SEE_OTHER, &format!("{}?revoked={revoked}", state.routes.path(ACCOUNT))))
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
    let (password, status) = match account::change_password(&state, &who, ip, change).await? {
        Ok(()) => (PasswordOutcome { changed: true, ..Default::default() }, StatusCode::OK),
        Err(refused) => {
            let status = if refused.throttled { StatusCode::TOO_MANY_REQUESTS } else { StatusCode::BAD_REQUEST };
            (PasswordOutcome { changed: false, error: Some(refused.message), invalid: refused.field }, status)
        }
    };
    let apps = account::connected_apps(&state, &who).await?;
    show(&state, &session, &who, apps, Shown { password, ..Default::default() }, status).await
}
