//! `/token`: the authorization-code and refresh-token grants (see [`crate::flows::token`]).

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::flows::token;
use crate::http::HttpState;
use crate::http::endpoints::form_params;
use crate::http::error::{ApiError, no_store};
use crate::http::middleware::client_ip::ClientIp;
use crate::http::routes::TOKEN;
use crate::net::AddressKey;

pub async fn token(
    State(state): State<HttpState>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params(&headers, &body)?;
    let token_endpoint = state.routes.url(TOKEN);
    let from = AddressKey::new(ip, state.settings.ipv6_prefix_length);
    let answer = token::token(
        &state,
        &token_endpoint,
        crate::http::authorization(&headers),
        &params,
        Some(&from),
        crate::http::dpop_proof(&headers),
    )
    .await;
    let mut response = match answer.result {
        Ok(issued) => (no_store(), Json(issued)).into_response(),
        Err(e) => e.into_response(),
    };
    // RFC 9449 §8: the nonce to use next, on every answer (clients pick it up before they need it).
    if let Ok(nonce) = HeaderValue::from_str(&answer.dpop_nonce) {
        response.headers_mut().insert(crate::http::DPOP_NONCE, nonce);
    }
    Ok(response)
}
