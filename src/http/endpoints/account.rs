//! `/account`: the signed-in person's connected apps (each grant, revocable at once) and a
//! password change.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::clients;
use crate::flows::revocation::{Revoker, revoke_grant};
use crate::http::HttpState;
use crate::http::endpoints::authorize::{current_user, redirect};
use crate::http::error::PageError;
use crate::http::middleware::session::{self, SignedIn};
use crate::http::render;
use crate::http::routes::{ACCOUNT, ACCOUNT_PASSWORD, ACCOUNT_REVOKE, LOGIN, LOGOUT};
use crate::http::views::{AccountPage, AppLine};
use crate::oauth::scope::OFFLINE_ACCESS;
use crate::store::{self, audit, grants, resources, users};
use crate::users::password;

#[derive(Deserialize)]
pub struct AccountQuery {
    revoked: Option<String>,
}

pub async fn page(
    State(state): State<HttpState>,
    session: Session,
    axum::extract::Query(q): axum::extract::Query<AccountQuery>,
) -> Result<Response, PageError> {
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(redirect(StatusCode::SEE_OTHER, &format!("{}?next=account", state.routes.path(LOGIN))));
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
    let mut apps = Vec::new();
    for g in grants::list_for_user(&state.db, who.user_id).await? {
        let client = clients::find(state, &g.client_id).await?;
        let Some(resource) = resources::by_id(&state.db, g.resource_id).await? else { continue };
        let scopes = g
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|name| match name {
                OFFLINE_ACCESS => "Stay connected when you are not using the app".to_string(),
                "openid" => "Confirm who you are".to_string(),
                "profile" => "See your name and username".to_string(),
                "email" => "See your email address".to_string(),
                _ => resource
                    .scopes
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.description.clone())
                    .unwrap_or(name.into()),
            })
            .collect();
        apps.push(AppLine {
            grant_id: g.id.to_string(),
            client_name: client.as_ref().map(|c| c.display_name()).unwrap_or_else(|| g.client_id.clone()),
            client_verified: client.as_ref().is_some_and(|c| c.verified()),
            client_identity: client.as_ref().map(|c| c.identity_line()).unwrap_or_default(),
            resource_name: resource.row.name.clone(),
            resource_uri: resource.row.uri.clone(),
            scopes,
            first_used: date(g.created_at),
            last_used: g.last_used_at.map(date).unwrap_or_else(|| "never".into()),
        });
    }
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

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
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
        return Ok(redirect(StatusCode::SEE_OTHER, &format!("{}?next=account", state.routes.path(LOGIN))));
    };
    let grant = match form.grant_id.parse() {
        Ok(id) => grants::by_id(&state.db, id).await?,
        Err(_) => None,
    };
    // Someone else's grant reads as not found.
    let Some(grant) = grant.filter(|g| g.user_id == who.user_id && g.revoked_at.is_none()) else {
        return show(
            &state,
            &session,
            &who,
            None,
            Some("That app no longer has access.".into()),
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    let by = Revoker::Person { username: &who.username, user_id: who.user_id };
    revoke_grant(&state.db, grant.id, Some(&grant.client_id), by, store::now()).await?;
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
    session: Session,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(redirect(StatusCode::SEE_OTHER, &format!("{}?next=account", state.routes.path(LOGIN))));
    };
    let fail = |msg: &str| Some(msg.to_string());
    let user = users::by_id(&state.db, who.user_id)
        .await?
        .ok_or_else(|| PageError::bad_request("Your account no longer exists."))?;
    if !state.hasher.verify(form.current_password, Some(user.password_hash)).await {
        return show(&state, &session, &who, None, fail("The current password is wrong."), StatusCode::BAD_REQUEST)
            .await;
    }
    if form.new_password != form.confirm_password {
        return show(&state, &session, &who, None, fail("The new passwords do not match."), StatusCode::BAD_REQUEST)
            .await;
    }
    if let Err(e) = password::check_policy(&form.new_password) {
        return show(&state, &session, &who, None, Some(format!("The new {e}.")), StatusCode::BAD_REQUEST).await;
    }
    let hash = state.hasher.hash(form.new_password).await.map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Your password was not changed.")
    })?;
    let now = store::now();
    users::set_password(&state.db, &who.username, &hash, now).await?;
    audit::record(
        &state.db,
        &audit::Event {
            event: "password_changed",
            actor: Some(&who.username),
            user_id: Some(who.user_id),
            ..Default::default()
        },
        now,
    )
    .await?;
    show(&state, &session, &who, Some("Your password was changed.".into()), None, StatusCode::OK).await
}
