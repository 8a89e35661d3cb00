//! `/revoke` (RFC 7009; see [`crate::flows::revocation`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::flows::revocation;
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::error::{ApiError, no_store};
use crate::http::routes::TOKEN;

pub async fn revoke(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let token_endpoint = state.routes.url(TOKEN);
    revocation::revoke(&state, &token_endpoint, crate::http::authorization(&headers), &params).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}
