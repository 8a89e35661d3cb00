//! The consent page: who is asking, for which MCP server, with which scopes, and where the browser
//! goes next. Approve records (or widens) the grant and issues the code; Deny answers
//! `access_denied`.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::clients;
use crate::http::HttpState;
use crate::http::endpoints::authorize::{self, current_user, issue_code, redirect};
use crate::http::error::PageError;
use crate::http::middleware::security;
use crate::http::middleware::session::{self, PendingAuthorization, SignedIn};
use crate::http::routes::{CLIENT_LOGO, CONSENT, LOGIN, LOGOUT};
use crate::http::views::{ConsentPage, ScopeLine};
use crate::oauth::authorize as authz;
use crate::oauth::redirect_uri::RedirectUri;
use crate::oauth::scope::{OFFLINE_ACCESS, ScopeSet};
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{self, audit, grants, resources};

#[derive(Deserialize)]
pub struct ConsentQuery {
    request_id: String,
}

/// Where the login page sends the person back: re-evaluates the parked request.
pub async fn page(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<ConsentQuery>,
) -> Result<Response, PageError> {
    let pending = session::pending(&session, &q.request_id).await?;
    authorize::proceed(&state, &session, pending, false, StatusCode::SEE_OTHER).await
}

pub async fn render(
    state: &HttpState,
    session: &Session,
    pending: &PendingAuthorization,
    who: &SignedIn,
    grant: Option<&grants::Grant>,
) -> Result<Response, PageError> {
    let client = clients::find(state, &pending.client_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The app asking for access is no longer registered."))?;
    let resource = resources::by_id(&state.db, pending.resource_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The MCP server is no longer registered."))?;
    let requested = ScopeSet::parse(&pending.scope).unwrap_or_default();
    let granted = grant.map(|g| ScopeSet::parse(&g.scope).unwrap_or_default()).unwrap_or_default();
    let shown = requested.union(&granted);
    let scopes = shown
        .iter()
        .map(|name| ScopeLine {
            name: name.to_string(),
            description: if name == OFFLINE_ACCESS {
                "Stay connected: keep access when you are not using the app, until you revoke it".to_string()
            } else {
                resource.scopes.iter().find(|s| s.name == name).map(|s| s.description.clone()).unwrap_or_default()
            },
            is_new: !granted.contains(name),
        })
        .collect();
    let redirect = RedirectUri::parse(&pending.redirect_uri).ok();
    let view = ConsentPage {
        brand: "Portcullis".into(),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(CONSENT),
        csrf_token: session::csrf_token(session).await?,
        request_id: pending.id.clone(),
        username: who.username.clone(),
        logout_action: state.routes.path(LOGOUT),
        client_name: client.display_name(),
        client_verified: client.verified(),
        client_identity: client.identity_line(),
        resource_name: resource.row.name.clone(),
        resource_uri: resource.row.uri.clone(),
        scopes,
        previously_granted: grant.is_some(),
        redirect_host: redirect.as_ref().and_then(|r| r.host()).unwrap_or_else(|| pending.redirect_uri.clone()),
        redirect_is_loopback: redirect.as_ref().is_some_and(|r| r.is_loopback()),
        client_logo: store::clients::logo(&state.db, client.client_id()).await?.map(|_| {
            let id: String = url::form_urlencoded::byte_serialize(client.client_id().as_bytes()).collect();
            format!("{}?client_id={id}", state.routes.path(CLIENT_LOGO))
        }),
    };
    let mut res = crate::http::render(&view);
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, security::csp_with_form_action(&pending.redirect_uri));
    Ok(res)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf_token: Option<String>,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    decision: String,
}

pub async fn submit(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<ConsentForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let pending = session::pending(&session, &form.request_id).await?;
    let Some(who) = current_user(&state, &session).await? else {
        let login = format!("{}?request_id={}", state.routes.path(LOGIN), pending.id);
        return Ok(redirect(StatusCode::SEE_OTHER, &login));
    };
    let now = store::now();
    let event = |name| audit::Event {
        event: name,
        actor: Some(&who.username),
        user_id: Some(who.user_id),
        client_id: Some(&pending.client_id),
        details: serde_json::json!({ "scope": pending.scope, "resource_id": pending.resource_id }),
        ..Default::default()
    };
    let url = match form.decision.as_str() {
        "approve" => {
            // Step-up widens the grant to the union of what it had and what was approved.
            let requested = ScopeSet::parse(&pending.scope).unwrap_or_default();
            let union = |granted: Option<&str>| {
                requested.union(&ScopeSet::parse(granted.unwrap_or_default()).unwrap_or_default()).to_space_separated()
            };
            let shown = clients::find(&state, &pending.client_id).await?.and_then(|c| clients::fingerprint(&c));
            let grant = grants::approve_as_shown(
                &state.db,
                who.user_id,
                &pending.client_id,
                pending.resource_id,
                union,
                shown.as_deref(),
                now,
            )
            .await?;
            audit::record(&state.db, &event("consent_granted"), now).await?;
            issue_code(&state, &pending, &who, grant.id).await?
        }
        "deny" => {
            audit::record(&state.db, &event("consent_denied"), now).await?;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the person denied the request");
            authz::response_url(&pending.redirect_uri, &state.settings.issuer, pending.state.as_deref(), Err(&e))
        }
        _ => return Err(PageError::bad_request("Choose Approve or Deny.")),
    };
    session::unpark(&session, &pending.id).await?;
    Ok(redirect(StatusCode::SEE_OTHER, &url).into_response())
}
