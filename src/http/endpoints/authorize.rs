//! `/authorize` (GET and POST; see [`crate::flows::authorize`]).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use tower_sessions::Session;

use crate::flows::authorize as flow;
use crate::http::HttpState;
use crate::http::endpoints::consent::follow;
use crate::http::error::PageError;
use crate::http::middleware::client_ip::ClientIp;
use crate::http::middleware::session;
use crate::net::AddressKey;

pub async fn get(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let from = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    authorize(&state, &session, &from, &query.unwrap_or_default(), StatusCode::FOUND).await
}

pub async fn post(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    session: Session,
    body: Bytes,
) -> Result<Response, PageError> {
    let body = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("The request is not valid UTF-8."))?;
    let from = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    authorize(&state, &session, &from, body, StatusCode::SEE_OTHER).await
}

async fn authorize(
    state: &HttpState,
    session: &Session,
    from: &AddressKey,
    raw: &str,
    status: StatusCode,
) -> Result<Response, PageError> {
    let decision = flow::authorize(state, raw, session::signed_in(session).await?, from).await?;
    let answer = follow(state, session, decision, status).await?;
    // A cookie-less request that parked something counts against its address.
    session::admit_new_pending(session, &from.to_string()).await?;
    Ok(answer)
}
