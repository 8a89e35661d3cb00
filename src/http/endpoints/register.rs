//! `/register` and `/register/{client_id}` (see [`crate::flows::registration`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::flows::registration::{self, ClientInformation, Request};
use crate::http::HttpState;
use crate::http::error::{ApiError, no_store};
use crate::http::middleware::client_ip::ClientIp;

fn request<'a>(headers: &'a HeaderMap, body: &'a [u8]) -> Request<'a> {
    Request {
        bearer: crate::http::bearer_token(headers),
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        body,
    }
}

/// The RFC 7591 §3.2.1 client information response.
fn information(state: &HttpState, info: ClientInformation) -> Value {
    let mut doc = Map::new();
    doc.insert("client_id".into(), json!(info.client_id));
    doc.insert("client_id_issued_at".into(), json!(info.issued_at));
    if let Some(secret) = &info.secret {
        doc.insert("client_secret".into(), json!(secret));
        doc.insert("client_secret_expires_at".into(), json!(0));
    }
    if let Some(t) = &info.registration_token {
        doc.insert("registration_access_token".into(), json!(t));
    }
    doc.insert("registration_client_uri".into(), json!(state.routes.register_client_url(&info.client_id)));
    doc.extend(info.metadata.to_json());
    Value::Object(doc)
}

pub async fn register(
    State(state): State<HttpState>,
    connect: Option<axum::Extension<ClientIp>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ip = connect.map(|c| c.0.0);
    let info = registration::register(&state, request(&headers, &body), ip).await?;
    Ok((StatusCode::CREATED, no_store(), Json(information(&state, info))).into_response())
}

pub async fn read(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    let info = registration::read(&state, request(&headers, &[]), &client_id).await?;
    Ok((no_store(), Json(information(&state, info))).into_response())
}

pub async fn update(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let info = registration::update(&state, request(&headers, &body), &client_id).await?;
    Ok((no_store(), Json(information(&state, info))).into_response())
}

pub async fn delete(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(client_id): Path<String>,
) -> Result<Response, ApiError> {
    registration::delete(&state, request(&headers, &[]), &client_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
