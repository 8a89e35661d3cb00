//! Client ID Metadata Document clients. Resolving one: policy (off, allow-list, deny-list), the cached document
//! while it is fresh, otherwise a fetch through the hardened fetcher (rate-limited per host),
//! validation, and storage with a lifetime from its cache headers within configured bounds.
//! Failures are never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

mod document;

pub use document::{CimdError, Document, fingerprint, host_of, is_client_id_url, validate_document};

use crate::clients::fetch::FetchError;
use crate::clients::{ClientId, RegisteredClient};
use crate::config::CimdPolicy;
use crate::oauth::client_metadata::ClientMetadata;
use crate::state::AppState;
use crate::store::clients::{ClientKind, NewClient};
use crate::store::{self, StoreError, audit};

/// Stored beside the metadata: the document also allows `none` besides `private_key_jwt`.
pub const ALSO_NONE: &str = "portcullis_also_none";

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Policy(String),
    #[error("fetching the client's metadata document failed: {0}")]
    Fetch(FetchError),
    #[error("the client's metadata document is invalid: {0}")]
    Invalid(String),
    #[error("too many metadata-document fetches for this host; try again in a minute")]
    RateLimited,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ResolveError {
    /// What a person (or the client) may read: no resolver or network detail.
    pub fn public_message(&self) -> String {
        match self {
            ResolveError::Policy(m) | ResolveError::Invalid(m) => m.clone(),
            ResolveError::Fetch(e) => {
                format!("The app's metadata document could not be fetched. {}", e.public_message())
            }
            ResolveError::RateLimited => self.to_string(),
            ResolveError::Store(_) => "The service is temporarily unavailable.".into(),
        }
    }
}

/// Fetches per host per minute, per node (fetches are rare: documents are cached).
#[derive(Default)]
pub struct HostLimiter {
    windows: Mutex<HashMap<String, (Instant, u64)>>,
}

impl HostLimiter {
    fn allow(&self, host: &str, per_minute: u64) -> bool {
        let mut w = self.windows.lock().expect("limiter lock");
        let now = Instant::now();
        if w.len() > 10_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
        let entry = w.entry(host.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= per_minute
    }
}

fn check_policy(state: &AppState, host: &str) -> Result<(), ResolveError> {
    let s = &state.settings.cimd;
    let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(host));
    if s.policy == CimdPolicy::Off {
        return Err(ResolveError::Policy(
            "This server does not accept apps identified by a metadata document URL.".into(),
        ));
    }
    if listed(&s.deny_hosts) || (s.policy == CimdPolicy::Allowlist && !listed(&s.allow_hosts)) {
        return Err(ResolveError::Policy(format!("Apps from {host} are not allowed on this server.")));
    }
    Ok(())
}

/// The client behind a Client ID Metadata Document URL.
pub async fn resolve(state: &AppState, client_id: &ClientId) -> Result<RegisteredClient, ResolveError> {
    let client_id = client_id.as_str();
    let host = host_of(client_id);
    let now = store::now();
    if let Err(e) = check_policy(state, &host) {
        audit_failure(state, client_id, &e, now).await;
        return Err(e);
    }
    if let Some(row) = store::clients::get(&state.db, client_id).await?
        && row.kind == ClientKind::MetadataDocument
        && row.metadata_expires_at.is_some_and(|t| t > now)
        && let Ok(metadata) = ClientMetadata::from_stored(&row.metadata)
    {
        return Ok(RegisteredClient { row, metadata });
    }
    let result = fetch_and_store(state, client_id, &host, now).await;
    if let Err(e) = &result {
        audit_failure(state, client_id, e, now).await;
    }
    result
}

async fn audit_failure(state: &AppState, client_id: &str, e: &ResolveError, now: i64) {
    tracing::warn!(client_id, error = %e, "metadata document refused");
    if !matches!(e, ResolveError::Store(_)) {
        let _ = audit::record(
            &state.db,
            &audit::Event {
                event: "metadata_document_failed",
                client_id: Some(client_id),
                details: serde_json::json!({ "reason": e.to_string() }),
                ..Default::default()
            },
            now,
        )
        .await;
    }
}

async fn fetch_and_store(
    state: &AppState,
    client_id: &str,
    host: &str,
    now: i64,
) -> Result<RegisteredClient, ResolveError> {
    if !state.cimd_limiter.allow(host, state.settings.cimd.fetches_per_host_per_minute) {
        return Err(ResolveError::RateLimited);
    }
    let fetched = state.fetcher.get_json(client_id).await.map_err(ResolveError::Fetch)?;
    let doc = validate_document(client_id, &fetched.body).map_err(|e| ResolveError::Invalid(e.0))?;
    let s = &state.settings.cimd;
    let lifetime = fetched.max_age.map(|d| d.as_secs()).unwrap_or(s.min_cache.0).clamp(s.min_cache.0, s.max_cache.0);
    let mut metadata = Value::Object(doc.metadata.to_json());
    metadata[ALSO_NONE] = Value::Bool(doc.also_none);
    let previous_logo_uri = store::clients::get(&state.db, client_id)
        .await?
        .and_then(|c| c.metadata.get("logo_uri").and_then(Value::as_str).map(str::to_string));
    let row = store::clients::upsert(
        &state.db,
        &NewClient {
            client_id: client_id.to_string(),
            kind: ClientKind::MetadataDocument,
            client_name: doc.metadata.client_name.clone(),
            metadata,
            secret_hash: None,
            registration_token_hash: None,
            metadata_expires_at: Some(now + lifetime as i64),
            registered_ip: None,
        },
        now,
    )
    .await?;
    if doc.metadata.logo_uri != previous_logo_uri {
        refresh_logo(state, client_id, doc.metadata.logo_uri.as_deref()).await?;
    }
    Ok(RegisteredClient { row, metadata: doc.metadata })
}

/// The logo is fetched through the hardened fetcher and served from here, never hot-linked.
async fn refresh_logo(state: &AppState, client_id: &str, logo_uri: Option<&str>) -> Result<(), StoreError> {
    let fetched = match logo_uri {
        Some(uri) => match state.fetcher.get_image(uri).await {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::info!(client_id, error = %e, "logo not fetched");
                None
            }
        },
        None => None,
    };
    store::clients::set_logo(
        &state.db,
        client_id,
        fetched.as_ref().map(|f| (f.body.as_slice(), f.content_type.as_str())),
    )
    .await
}

/// Whether a metadata-document client that negotiated `private_key_jwt` may also use `none`.
pub fn also_none(client: &RegisteredClient) -> bool {
    client.row.metadata.get(ALSO_NONE).and_then(Value::as_bool).unwrap_or(false)
}
