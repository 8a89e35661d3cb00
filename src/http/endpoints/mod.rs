//! One module per endpoint or page: extract the request, call the operation, render the result.

pub mod account;
pub mod admin_api;
pub mod admin_console;
pub mod assets;
pub mod authorize;
pub mod consent;
pub mod continue_page;
pub mod health;
pub mod introspect;
pub mod landing;
pub mod login;
pub mod metadata;
pub mod register;
pub mod revoke;
pub mod token;
pub mod upstream;
pub mod userinfo;

use axum::http::{HeaderMap, header};

use crate::flows::error::ApiError;
use crate::oauth::OAuthError;
use crate::oauth::params::Params;

/// Token-endpoint bodies are `application/x-www-form-urlencoded` UTF-8 (OAuth 2.1 §3.2).
pub fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded").into());
    }
    let body = std::str::from_utf8(body).map_err(|_| OAuthError::invalid_request("the body is not valid UTF-8"))?;
    Ok(Params::parse(body)?)
}
