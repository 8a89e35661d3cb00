//! Client ID Metadata Document clients. Resolving one: policy (off, allow-list, deny-list), the cached document
//! while it is fresh, otherwise a fetch through the hardened fetcher (within the requesting
//! address's and the host's budgets, [`budget`]), validation, and storage with a lifetime from
//! its cache headers within configured bounds. A failed fetch is remembered briefly
//! (`cimd_failure_cache`, in memory; never stored). A document that was fetched and valid is still used for `cimd_stale_grace`
//! past its freshness when a re-fetch is refused or fails, so nobody can cut a popular host's
//! clients off by spending its budget or by making its server slow for a moment.

use serde_json::Value;

pub mod budget;
mod document;

pub use budget::FetchBudget;

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
    /// A fetch of this document failed moments ago (its public message).
    #[error("{0} (remembered for a few seconds)")]
    RecentlyFailed(String),
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
            ResolveError::RecentlyFailed(m) => format!("{m} Try again in a minute."),
            ResolveError::Store(_) => "The service is temporarily unavailable.".into(),
        }
    }
}

/// A host name in the form the lists compare: lower case, without the trailing dot of a fully
/// qualified name (`evil.example.` is `evil.example`), and for a list entry without a leading
/// `*.` or `.`.
pub fn normal_host(host: &str) -> String {
    let h = host.trim_start_matches("*.").trim_start_matches('.');
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// A deny entry covers its host and every subdomain: refusing `evil.example` while accepting
/// `a.evil.example` would refuse nothing, since whoever holds a domain makes subdomains at will.
fn denied_by(entry: &str, host: &str) -> bool {
    let (entry, host) = (normal_host(entry), normal_host(host));
    !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
}

fn check_policy(state: &AppState, host: &str) -> Result<(), ResolveError> {
    let s = &state.settings.cimd;
    // The allow-list names hosts exactly (a subdomain is someone else's to vouch for).
    let allowed = |list: &[String]| list.iter().any(|h| normal_host(h) == normal_host(host));
    let denied = |list: &[String]| list.iter().any(|h| denied_by(h, host));
    if s.policy == CimdPolicy::Off {
        return Err(ResolveError::Policy(
            "This server does not accept apps identified by a metadata document URL.".into(),
        ));
    }
    if denied(&s.deny_hosts) || (s.policy == CimdPolicy::Allowlist && !allowed(&s.allow_hosts)) {
        return Err(ResolveError::Policy(format!("Apps from {host} are not allowed on this server.")));
    }
    Ok(())
}

/// The client behind a Client ID Metadata Document URL; `from` is the requesting address (an
/// [`crate::net::AddressKey`]), whose fetch budget a fetch spends.
pub async fn resolve(
    state: &AppState,
    client_id: &ClientId,
    from: Option<&str>,
) -> Result<RegisteredClient, ResolveError> {
    let client_id = client_id.as_str();
    let host = host_of(client_id);
    let now = store::now();
    if let Err(e) = check_policy(state, &host) {
        audit_failure(state, client_id, &e, now).await;
        return Err(e);
    }
    // Blocked at run time by an operator (console, admin API).
    if store::blocked_hosts::covers(&state.db, &normal_host(&host)).await? {
        let e = ResolveError::Policy(format!("Apps from {host} are blocked on this server."));
        audit_failure(state, client_id, &e, now).await;
        return Err(e);
    }
    let s = &state.settings.cimd;
    // The stored document: fresh, or within the grace past its freshness (`stale`).
    let mut stale = None;
    if let Some(row) = store::clients::get(&state.db, client_id).await?
        && row.kind == ClientKind::MetadataDocument
        && let Some(expires_at) = row.metadata_expires_at
        && expires_at.saturating_add(s.stale_grace.as_i64()) > now
        && let Ok(metadata) = ClientMetadata::from_stored(&row.metadata)
    {
        let known = RegisteredClient { row, metadata };
        if expires_at > now {
            return Ok(known);
        }
        stale = Some(known);
    }
    let budget = &state.cimd_budget;
    let failure_ttl = s.failure_cache.as_duration();
    let refused = if let Some(message) = budget.recent_failure(client_id, failure_ttl) {
        // Failed moments ago, already audited: no fetch, no budget, no audit row.
        ResolveError::RecentlyFailed(message)
    } else if !budget.allow(from, &host, s.fetches_per_address_per_minute, s.fetches_per_host_per_minute) {
        ResolveError::RateLimited
    } else {
        match fetch_and_store(state, client_id, now).await {
            Ok(client) => {
                budget.forget_failure(client_id);
                return Ok(client);
            }
            Err(e) => {
                if matches!(e, ResolveError::Fetch(_) | ResolveError::Invalid(_)) {
                    budget.remember_failure(client_id, e.public_message(), failure_ttl);
                }
                audit_failure(state, client_id, &e, now).await;
                e
            }
        }
    };
    match (stale, refused) {
        (_, e @ ResolveError::Store(_)) => Err(e),
        (Some(known), e) => {
            tracing::info!(client_id, error = %e, "metadata document not re-fetched; serving the last good copy");
            Ok(known)
        }
        (None, e) => Err(e),
    }
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

async fn fetch_and_store(state: &AppState, client_id: &str, now: i64) -> Result<RegisteredClient, ResolveError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_entries_cover_subdomains_and_a_trailing_dot() {
        for host in ["evil.example", "EVIL.example", "evil.example.", "a.evil.example", "a.b.evil.example."] {
            for entry in ["evil.example", "evil.example.", "*.evil.example", ".Evil.Example"] {
                assert!(denied_by(entry, host), "{entry} denies {host}");
            }
        }
        for host in ["notevil.example", "evil.example.com", "example"] {
            assert!(!denied_by("evil.example", host), "{host}");
        }
        assert!(!denied_by("", "evil.example"));
        assert!(!denied_by(".", "evil.example"));
        assert_eq!(normal_host("Client.Example."), "client.example");
    }
}
