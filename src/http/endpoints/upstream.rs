//! Company sign-in: `/login/{provider}` sends the person to their identity provider,
//! `/login/{provider}/callback` is where they come back, and `/login/{provider}/backchannel-logout`
//! takes the provider's logout tokens.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::flows::error::ApiError;
use crate::flows::federation::{self, Callback, LogoutError};
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::endpoints::login::{after_sign_in, continue_target};
use crate::http::error::PageError;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::session;
use crate::http::redirect;
use crate::oauth::OAuthError;

#[derive(Debug, Deserialize)]
pub struct StartQuery {
    request_id: Option<String>,
    next: Option<String>,
}

pub async fn start(
    State(state): State<HttpState>,
    session: Session,
    Path(provider): Path<String>,
    Query(q): Query<StartQuery>,
) -> Result<Response, PageError> {
    let next = q.request_id.or(q.next);
    let pending = continue_target(&session, next.as_deref()).await?;
    let started = federation::start(&state, &provider, next, pending.as_ref()).await?;
    session::park_upstream(&session, started.login).await?;
    Ok(redirect(StatusCode::FOUND, &started.redirect))
}

pub async fn callback(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    Path(provider): Path<String>,
    Query(answer): Query<Callback>,
) -> Result<Response, PageError> {
    let login = session::take_upstream(&session, answer.state.as_deref()).await?;
    let (who, next) = federation::finish(&state, &provider, &answer, login, ip).await?;
    after_sign_in(&state, &session, who, next.as_deref()).await
}

pub async fn backchannel_logout(
    State(state): State<HttpState>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let token = params.require("logout_token")?;
    match federation::backchannel_logout(&state, &provider, token).await {
        // §2.8: 200, and no caching.
        Ok(()) => Ok((StatusCode::OK, [(axum::http::header::CACHE_CONTROL, "no-store")]).into_response()),
        Err(LogoutError::Store(e)) => Err(e.into()),
        Err(e) => Err(OAuthError::invalid_request(e.to_string()).into()),
    }
}
