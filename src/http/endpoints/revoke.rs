//! `/revoke` (RFC 7009; see [`crate::flows::revocation`]).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::flows::revocation;
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::error::{ApiError, no_store};
use crate::http::middleware::client_ip::ClientIp;
use crate::http::routes::TOKEN;
use crate::net::AddressKey;

pub async fn revoke(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let token_endpoint = state.routes.url(TOKEN);
    let from = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    revocation::revoke(&state, &token_endpoint, crate::http::authorization(&headers), &params, Some(&from)).await?;
    Ok((StatusCode::OK, no_store()).into_response())
}
