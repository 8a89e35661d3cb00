//! What discovery and the pages need from the database: the scopes to advertise, client logos.

use crate::flows::error::ApiError;
use crate::oauth::scope::OFFLINE_ACCESS;
use crate::state::AppState;
use crate::store::{self, StoreError};

/// `scopes_supported`: every declared resource's scopes, plus the ones this server defines.
pub async fn scopes_supported(state: &AppState) -> Result<Vec<String>, ApiError> {
    let mut scopes = store::resources::all_scope_names(&state.db).await?;
    scopes.extend([OFFLINE_ACCESS, "openid", "profile", "email"].map(String::from));
    Ok(scopes)
}

/// A metadata-document client's stored logo and its media type.
pub async fn client_logo(state: &AppState, client_id: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
    store::clients::logo(&state.db, client_id).await
}
