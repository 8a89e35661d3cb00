//! `/authorize` (GET and POST; see [`crate::flows::authorize`]).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use tower_sessions::Session;

use crate::flows::authorize as flow;
use crate::http::HttpState;
use crate::http::endpoints::consent::follow;
use crate::http::error::PageError;
use crate::http::middleware::session;

pub async fn get(
    State(state): State<HttpState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    authorize(&state, &session, &query.unwrap_or_default(), StatusCode::FOUND).await
}

pub async fn post(State(state): State<HttpState>, session: Session, body: Bytes) -> Result<Response, PageError> {
    let body = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("The request is not valid UTF-8."))?;
    authorize(&state, &session, body, StatusCode::SEE_OTHER).await
}

async fn authorize(state: &HttpState, session: &Session, raw: &str, status: StatusCode) -> Result<Response, PageError> {
    let decision = flow::authorize(state, raw, session::signed_in(session).await?).await?;
    follow(state, session, decision, status).await
}
