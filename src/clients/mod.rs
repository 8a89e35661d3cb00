//! Clients: their identifiers, a stored client with its parsed metadata and how it is presented
//! to people, client authentication ([`auth`], [`assertion`]), metadata-document clients
//! ([`cimd`]) and the hardened fetcher their documents, keys and logos come through ([`fetch`]).

use crate::oauth::client_metadata::{ClientMetadata, GrantType, TokenEndpointAuthMethod};
use crate::oauth::scope::{OFFLINE_ACCESS, ScopeSet};
use crate::state::AppState;
use crate::store::clients::{Client, ClientKind};
use crate::store::{self, StoreError};

pub mod assertion;
pub mod auth;
pub mod cimd;
pub mod fetch;
mod id;

pub use id::ClientId;

#[derive(Clone, Debug)]
pub struct RegisteredClient {
    pub row: Client,
    pub metadata: ClientMetadata,
}

impl RegisteredClient {
    pub fn client_id(&self) -> &ClientId {
        &self.row.client_id
    }

    /// The name to show; dynamic clients chose it themselves.
    pub fn display_name(&self) -> String {
        match (&self.metadata.client_name, self.row.kind) {
            (Some(name), _) => name.clone(),
            // CIMD: without a name, the verified host is the best identity there is.
            (None, ClientKind::MetadataDocument) => cimd::host_of(&self.row.client_id),
            (None, _) => self.row.client_id.to_string(),
        }
    }

    /// Pre-registered clients, and metadata-document clients (their host vouches for the document).
    pub fn verified(&self) -> bool {
        matches!(self.row.kind, ClientKind::Static | ClientKind::MetadataDocument)
    }

    pub fn identity_line(&self) -> String {
        match self.row.kind {
            ClientKind::Static => "Registered by your administrator".into(),
            ClientKind::Dynamic => "Unverified: this app registered itself".into(),
            ClientKind::MetadataDocument => {
                let host = url::Url::parse(&self.row.client_id)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                format!("Verified: {host}")
            }
        }
    }

    pub fn auth_method(&self) -> TokenEndpointAuthMethod {
        self.metadata.token_endpoint_auth_method
    }

    /// Refresh tokens go to clients that registered the grant, or that were granted `offline_access`.
    pub fn gets_refresh_token(&self, scope: &ScopeSet) -> bool {
        self.metadata.grant_types.contains(&GrantType::RefreshToken) || scope.contains(OFFLINE_ACCESS)
    }
}

/// The client for a request: a metadata-document client is (re)fetched when its cached document
/// expired (a fetch spends the budget of `from`, the requesting address); any other client is
/// looked up.
pub async fn resolve(
    state: &AppState,
    client_id: &ClientId,
    from: Option<&crate::net::AddressKey>,
) -> Result<Option<RegisteredClient>, cimd::ResolveError> {
    if client_id.is_metadata_document() {
        let from = from.map(ToString::to_string);
        return cimd::resolve(state, client_id, from.as_deref()).await.map(Some);
    }
    Ok(find(state, client_id).await?)
}

/// The fingerprint a grant records for this client (metadata-document clients only).
pub fn fingerprint(client: &RegisteredClient) -> Option<String> {
    (client.row.kind == ClientKind::MetadataDocument).then(|| cimd::fingerprint(&client.metadata))
}

pub async fn find(state: &AppState, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
    let Some(row) = store::clients::get(&state.db, client_id).await? else {
        return Ok(None);
    };
    match ClientMetadata::from_stored(&row.metadata) {
        Ok(metadata) => Ok(Some(RegisteredClient { row, metadata })),
        Err(e) => {
            tracing::error!(client_id, error = %e, "stored client metadata no longer validates");
            Ok(None)
        }
    }
}
