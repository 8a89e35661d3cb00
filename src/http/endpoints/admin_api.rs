//! `/admin/api`: the admin API's routes (JSON in, JSON out; errors `{"error", "message"}` with a
//! stable code). See [`crate::flows::admin_api`] and the OpenAPI document at
//! `/admin/api/openapi.json`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::flows::admin_api::{self as api, Actor, AdminApiError};
use crate::http::HttpState;
use crate::http::bearer_token;

impl IntoResponse for AdminApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut res = (status, Json(json!({ "error": self.code, "message": self.message }))).into_response();
        if self.status == 401 {
            res.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        res
    }
}

async fn actor(state: &HttpState, headers: &HeaderMap) -> Result<Actor, AdminApiError> {
    api::authenticate(state, bearer_token(headers)).await
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, AdminApiError> {
    serde_json::from_slice(bytes).map_err(|e| AdminApiError::invalid(format!("the body is not the expected JSON: {e}")))
}

type Answer = Result<Response, AdminApiError>;

pub async fn people(State(state): State<HttpState>, headers: HeaderMap) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::people(&state).await?).into_response())
}

pub async fn add_person(State(state): State<HttpState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = actor(&state, &headers).await?;
    let added = api::add_person(&state, &who, body(&bytes)?).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

pub async fn disable_person(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Answer {
    let who = actor(&state, &headers).await?;
    api::set_disabled(&state, &who, &username, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn enable_person(State(state): State<HttpState>, headers: HeaderMap, Path(username): Path<String>) -> Answer {
    let who = actor(&state, &headers).await?;
    api::set_disabled(&state, &who, &username, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn resources(State(state): State<HttpState>, headers: HeaderMap) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::resources(&state).await?).into_response())
}

pub async fn add_resource(State(state): State<HttpState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = actor(&state, &headers).await?;
    let added = api::add_resource(&state, &who, body(&bytes)?).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

#[derive(Deserialize)]
pub struct UriQuery {
    uri: String,
}

pub async fn remove_resource(State(state): State<HttpState>, headers: HeaderMap, Query(q): Query<UriQuery>) -> Answer {
    let who = actor(&state, &headers).await?;
    api::remove_resource(&state, &who, &q.uri).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub struct GrantQuery {
    user: Option<String>,
    client: Option<String>,
}

pub async fn grants(State(state): State<HttpState>, headers: HeaderMap, Query(q): Query<GrantQuery>) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::grants(&state, q.user.as_deref(), q.client.as_deref()).await?).into_response())
}

pub async fn revoke_grant(State(state): State<HttpState>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let who = actor(&state, &headers).await?;
    api::revoke_grant(&state, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub struct AuditQuery {
    event: Option<String>,
    before: Option<String>,
    limit: Option<i64>,
}

pub async fn audit(State(state): State<HttpState>, headers: HeaderMap, Query(q): Query<AuditQuery>) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::audit_page(&state, q.event.as_deref(), q.before.as_deref(), q.limit).await?).into_response())
}

/// The OpenAPI 3.1 document of the API (public: it describes, it grants nothing).
pub async fn openapi(State(state): State<HttpState>) -> Response {
    Json(document(&state.routes.url("/admin/api"))).into_response()
}

fn document(base: &str) -> Value {
    let error = json!({ "description": "an error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let errors = json!({ "400": error, "401": error, "404": error, "409": error });
    let op = |summary: &str, ok: &str| {
        let mut responses = errors.clone();
        responses[ok] = json!({ "description": "success" });
        json!({ "summary": summary, "security": [{ "adminToken": [] }], "responses": responses })
    };
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Portcullis admin API", "version": env!("CARGO_PKG_VERSION") },
        "servers": [{ "url": base }],
        "paths": {
            "/people": { "get": op("List people", "200"), "post": op("Add a person (a generated password is returned once)", "201") },
            "/people/{username}/disable": { "post": op("Disable a person: sign-in, refresh and introspection stop", "204") },
            "/people/{username}/enable": { "post": op("Enable a person", "204") },
            "/people/{username}/groups": { "put": op("Replace a person's local groups ({\"groups\": [...]})", "204") },
            "/people/{username}/password": { "post": op("Give a person a new random password (returned once)", "200") },
            "/resources": {
                "get": op("List MCP servers", "200"),
                "post": op("Register an MCP server", "201"),
                "put": op("Change a registered MCP server (same body; its grants are kept)", "200"),
                "delete": op("Remove an MCP server (?uri=) and every grant for it", "204"),
            },
            "/resources/introspection": { "post": op("Issue or replace an MCP server's /introspect credentials (?uri=); the secret is returned once", "201") },
            "/clients": {
                "get": op("List clients by kind, with their metadata", "200"),
                "post": op("Pre-register a client (a confidential one's secret is returned once)", "201"),
                "delete": op("Delete a client (?client_id=) and its grants", "204"),
            },
            "/blocked-hosts": {
                "get": op("Hosts whose metadata-document clients are refused", "200"),
                "post": op("Block a host and its subdomains ({\"host\": ...})", "201"),
                "delete": op("Unblock a host (?host=)", "204"),
            },
            "/grants": { "get": op("List live grants (?user=, ?client=)", "200") },
            "/grants/{id}": { "delete": op("Revoke a grant and its refresh tokens", "204") },
            "/audit": { "get": op("Audit events, newest first (?event=, ?limit= up to 1000, ?before=ID of the previous page's last event)", "200") },
        },
        "components": {
            "securitySchemes": { "adminToken": { "type": "http", "scheme": "bearer", "description": "portcullis admin-token create NAME" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": { "type": "string", "enum": ["invalid_input", "unauthorized", "not_found", "conflict", "unavailable"] },
                        "message": { "type": "string" },
                    },
                },
            },
        },
    })
}

pub async fn clients(State(state): State<HttpState>, headers: HeaderMap) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::clients(&state).await?).into_response())
}

#[derive(Deserialize)]
pub struct ClientQuery {
    client_id: String,
}

pub async fn remove_client(State(state): State<HttpState>, headers: HeaderMap, Query(q): Query<ClientQuery>) -> Answer {
    let who = actor(&state, &headers).await?;
    api::remove_client(&state, &who, &q.client_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn introspection_credentials(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<UriQuery>,
) -> Answer {
    let who = actor(&state, &headers).await?;
    Ok((StatusCode::CREATED, Json(api::introspection_credentials(&state, &who, &q.uri).await?)).into_response())
}

pub async fn new_password(State(state): State<HttpState>, headers: HeaderMap, Path(username): Path<String>) -> Answer {
    let who = actor(&state, &headers).await?;
    let password = api::new_password(&state, &who, &username).await?;
    Ok(Json(json!({ "username": username, "password": password })).into_response())
}

pub async fn add_client(State(state): State<HttpState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = actor(&state, &headers).await?;
    let added = api::add_client(&state, &who, body(&bytes)?).await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}

#[derive(Deserialize)]
pub struct HostQuery {
    host: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostBody {
    host: String,
}

pub async fn blocked_hosts(State(state): State<HttpState>, headers: HeaderMap) -> Answer {
    actor(&state, &headers).await?;
    Ok(Json(api::blocked_hosts(&state).await?).into_response())
}

pub async fn block_host(State(state): State<HttpState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = actor(&state, &headers).await?;
    let HostBody { host } = body(&bytes)?;
    let host = api::block_host(&state, &who, &host).await?;
    Ok((StatusCode::CREATED, Json(json!({ "host": host }))).into_response())
}

pub async fn unblock_host(State(state): State<HttpState>, headers: HeaderMap, Query(q): Query<HostQuery>) -> Answer {
    let who = actor(&state, &headers).await?;
    api::unblock_host(&state, &who, &q.host).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn update_resource(State(state): State<HttpState>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let who = actor(&state, &headers).await?;
    Ok(Json(api::update_resource(&state, &who, body(&bytes)?).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsBody {
    groups: Vec<String>,
}

pub async fn set_groups(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(username): Path<String>,
    bytes: Bytes,
) -> Answer {
    let who = actor(&state, &headers).await?;
    let GroupsBody { groups } = body(&bytes)?;
    api::set_groups(&state, &who, &username, &groups).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
