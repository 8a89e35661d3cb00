//! `/introspect` (RFC 7662; see [`crate::flows::introspection`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::flows::introspection;
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::error::{ApiError, no_store};

pub async fn introspect(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let answer = introspection::introspect(&state, crate::http::authorization(&headers), &params).await?;
    Ok((no_store(), Json(answer)).into_response())
}
