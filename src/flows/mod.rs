//! Protocol operations: what an endpoint does, between reading the request and rendering the
//! answer. Each flow takes the application state (database, keys, settings, metrics, client
//! caches) and typed input, and returns typed output or an [`error::ApiError`] /
//! [`error::PageError`]. Nothing here knows axum.

pub mod access;
pub mod account;
pub mod admin_api;
pub mod authorize;
pub mod client_credentials;
pub mod consent;
pub mod describe;
pub mod discovery;
pub mod dpop;
pub mod error;
pub mod federation;
pub mod health;
pub mod id_jag;
pub mod introspection;
pub mod login;
pub mod refresh_budget;
pub mod registration;
pub mod revocation;
pub mod session;
pub mod token;
pub mod userinfo;

use crate::store::sessions::DbSessionStore;

/// The clock flows and sessions run on: seconds since the Unix epoch.
pub fn now() -> i64 {
    crate::store::now()
}

/// The browser-session store, on the application's database.
pub fn session_store(state: &crate::state::AppState) -> DbSessionStore {
    DbSessionStore::new(
        state.db.clone(),
        crate::store::sessions::AnonymousSessions {
            lifetime: session::ANONYMOUS_SESSION_LIFETIME,
            pending_per_address: state.settings.pending_sessions_per_address,
        },
    )
}
