//! Dynamic client registration (RFC 7591, open registration) and management (RFC 7592 read,
//! update, delete with the registration access token).

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::clients::{self, RegisteredClient};
use crate::config::RegistrationPolicy;
use crate::flows::error::ApiError;
use crate::net::AddressKey;
use crate::oauth::client_metadata::{ClientMetadata, ClientMetadataError};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::clients::{ClientKind, NewClient};
use crate::store::registration;
use crate::store::{self, audit};
use crate::tokens::secrets;

/// The `WWW-Authenticate` challenge of a refused registration or registration access token.
pub const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

/// A registration or management request as the HTTP layer read it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    /// The `Authorization: Bearer` token: an initial access token, or a registration access token.
    pub bearer: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the client information response (RFC 7591 §3.2.1) says; the HTTP layer adds
/// `registration_client_uri`.
#[derive(Clone, Debug)]
pub struct ClientInformation {
    pub client_id: String,
    pub issued_at: i64,
    pub metadata: ClientMetadata,
    /// A newly issued secret (registration, or an update to a secret-based method).
    pub secret: Option<String>,
    /// Issued once, at registration.
    pub registration_token: Option<String>,
}

fn metadata_error(e: ClientMetadataError) -> OAuthError {
    OAuthError::new(e.code(), e.description())
}

/// A registration body: a JSON object sent as `application/json`.
fn json_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, OAuthError> {
    let is_json = content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(OAuthError::invalid_request("the body must be application/json"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| OAuthError::new(ErrorCode::InvalidClientMetadata, format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(OAuthError::new(ErrorCode::InvalidClientMetadata, "the body must be a JSON object"));
    }
    Ok(value)
}

/// The registration policy (open, closed, initial access token) and the abuse limits: per IP
/// address per hour, and in total. Counts come from the database, so every node shares them.
async fn admit(state: &AppState, bearer: Option<&str>, network: Option<&str>, now: i64) -> Result<(), ApiError> {
    match state.settings.registration.policy {
        RegistrationPolicy::Open => {}
        RegistrationPolicy::Closed => {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "dynamic client registration is closed on this server; ask its administrator for a client",
            )
            .into());
        }
        RegistrationPolicy::Token => {
            let valid = match bearer {
                Some(t) => registration::initial_token_valid(&state.db, &secrets::hash(t), now).await?,
                None => false,
            };
            if !valid {
                return Err(ApiError::from(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "registration requires a valid initial access token (Authorization: Bearer)",
                ))
                .with_challenge(INVALID_TOKEN));
            }
        }
    }
    let per_ip = state.settings.registration.per_ip_per_hour;
    if let Some(network) = network
        && per_ip > 0
        && store::clients::registrations_from(&state.db, network, now - 3600).await? >= per_ip as i64
    {
        return Err(
            OAuthError::new(ErrorCode::SlowDown, "too many registrations from this address; try again later").into()
        );
    }
    if dynamic_clients(state).await? >= state.settings.registration.max_dynamic_clients as i64 {
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "this server has reached its limit of registered clients",
        )
        .into());
    }
    Ok(())
}

/// The number of dynamic clients, counted at most every few seconds plus this node's registrations
/// since (counting a large table on every registration made registration slower as it grew).
async fn dynamic_clients(state: &AppState) -> Result<i64, ApiError> {
    {
        let cache = state.dynamic_client_count.lock().expect("count lock");
        if let Some((at, n)) = *cache
            && at.elapsed() < std::time::Duration::from_secs(5)
        {
            return Ok(n);
        }
    }
    let n = store::clients::count_by_kind(&state.db, ClientKind::Dynamic).await?;
    *state.dynamic_client_count.lock().expect("count lock") = Some((std::time::Instant::now(), n));
    Ok(n)
}

/// Registers a dynamic client; `ip` is the address it registers from (the per-address cap counts
/// IPv6 addresses by network, see [`AddressKey`]).
pub async fn register(state: &AppState, req: Request<'_>, ip: Option<IpAddr>) -> Result<ClientInformation, ApiError> {
    let network = ip.map(|ip| AddressKey::new(ip, state.settings.ipv6_prefix_length).to_string());
    admit(state, req.bearer, network.as_deref(), store::now()).await?;
    let request = json_body(req.content_type, req.body)?;
    let metadata = ClientMetadata::from_request(&request).map_err(metadata_error)?;
    let client_id = secrets::random_string(16);
    let secret = metadata.token_endpoint_auth_method.requires_secret().then(secrets::random_token);
    let registration_token = secrets::random_token();
    let now = store::now();
    let event = audit::Event {
        event: "client_registered",
        client_id: Some(&client_id),
        details: json!({ "client_name": metadata.client_name, "redirect_uris": metadata.to_json().get("redirect_uris") }),
        ..Default::default()
    };
    let row = store::clients::register(
        &state.db,
        &NewClient {
            client_id: client_id.clone(),
            kind: ClientKind::Dynamic,
            client_name: metadata.client_name.clone(),
            metadata: Value::Object(metadata.to_json()),
            secret_hash: secret.as_deref().map(secrets::hash),
            registration_token_hash: Some(secrets::hash(&registration_token)),
            metadata_expires_at: None,
            registered_ip: ip.map(|ip| ip.to_string()),
        },
        network.as_deref(),
        &event,
        now,
    )
    .await?;
    if let Some((_, n)) = state.dynamic_client_count.lock().expect("count lock").as_mut() {
        *n += 1;
    }
    Ok(ClientInformation {
        client_id,
        issued_at: row.created_at,
        metadata,
        secret,
        registration_token: Some(registration_token),
    })
}

/// The client named in the path, if the bearer token is its registration access token.
async fn managed(state: &AppState, bearer: Option<&str>, client_id: &str) -> Result<RegisteredClient, ApiError> {
    let denied = || {
        ApiError::from(OAuthError::new(ErrorCode::InvalidToken, "invalid registration access token"))
            .with_challenge(INVALID_TOKEN)
    };
    let token = bearer.ok_or_else(denied)?;
    let client = clients::find(state, client_id).await?.ok_or_else(denied)?;
    match &client.row.registration_token_hash {
        Some(hash) if secrets::verify(token.trim(), hash) => Ok(client),
        _ => Err(denied()),
    }
}

/// RFC 7592 read.
pub async fn read(state: &AppState, req: Request<'_>, client_id: &str) -> Result<ClientInformation, ApiError> {
    let client = managed(state, req.bearer, client_id).await?;
    Ok(ClientInformation {
        client_id: client.client_id().to_string(),
        issued_at: client.row.created_at,
        metadata: client.metadata,
        secret: None,
        registration_token: None,
    })
}

/// RFC 7592 update: the whole metadata is replaced.
pub async fn update(state: &AppState, req: Request<'_>, client_id: &str) -> Result<ClientInformation, ApiError> {
    let client = managed(state, req.bearer, client_id).await?;
    let request = json_body(req.content_type, req.body)?;
    if request.get("client_id").and_then(Value::as_str) != Some(client.client_id()) {
        return Err(OAuthError::invalid_request("the body must carry this client's client_id").into());
    }
    for field in
        ["registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at"]
    {
        if request.get(field).is_some() {
            return Err(OAuthError::invalid_request(format!("{field} must not be sent in an update")).into());
        }
    }
    if let Some(sent) = request.get("client_secret").and_then(Value::as_str)
        && !client.row.secret_hash.as_deref().is_some_and(|h| secrets::verify(sent, h))
    {
        return Err(OAuthError::invalid_request("client_secret does not match the current secret").into());
    }
    let metadata = ClientMetadata::from_request(&request).map_err(metadata_error)?;
    // Switching to a secret-based method issues a secret; switching to `none` drops it.
    let (secret_hash, new_secret) =
        match (metadata.token_endpoint_auth_method.requires_secret(), &client.row.secret_hash) {
            (true, Some(hash)) => (Some(hash.clone()), None),
            (true, None) => {
                let s = secrets::random_token();
                (Some(secrets::hash(&s)), Some(s))
            }
            (false, _) => (None, None),
        };
    let row = store::clients::update_metadata(
        &state.db,
        client.client_id(),
        metadata.client_name.as_deref(),
        &Value::Object(metadata.to_json()),
        secret_hash.as_deref(),
        store::now(),
    )
    .await?;
    Ok(ClientInformation {
        client_id: row.client_id.to_string(),
        issued_at: row.created_at,
        metadata,
        secret: new_secret,
        registration_token: None,
    })
}

/// RFC 7592 delete.
pub async fn delete(state: &AppState, req: Request<'_>, client_id: &str) -> Result<(), ApiError> {
    let client = managed(state, req.bearer, client_id).await?;
    store::clients::remove(&state.db, client.client_id()).await?;
    audit::record(
        &state.db,
        &audit::Event { event: "client_deleted", client_id: Some(client.client_id()), ..Default::default() },
        store::now(),
    )
    .await?;
    Ok(())
}
