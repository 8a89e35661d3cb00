//! The shared application state and start-up: database, migrations, declared resources and
//! clients, signing keys, the first admin user. Protocol code runs against this; the HTTP
//! layer wraps it with what only it needs (routes, rate limits, cached documents).

use std::sync::Arc;

use crate::config::Settings;
use crate::store::{self, Db};
use crate::tokens::keys::{KeyRing, KeySettings};
use crate::users::password::Hasher;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Db,
    pub keys: KeyRing,
    pub hasher: Hasher,
    /// Outbound fetches of client-supplied URLs (metadata documents, keys, logos).
    pub fetcher: crate::clients::fetch::Fetcher,
    /// Metadata-document fetch budgets (per requesting address and per host) and recent failures.
    pub cimd_budget: crate::clients::cimd::FetchBudget,
    /// Refreshes per refresh-token family per minute.
    pub refresh_budget: crate::flows::refresh_budget::RefreshBudget,
    /// `jwks_uri` documents of `private_key_jwt` clients, by URL, until the instant given.
    pub client_keys: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, serde_json::Value)>>,
    pub metrics: crate::metrics::Metrics,
    /// The company identity providers people sign in with.
    pub federation: crate::federation::Federation,
    /// Dynamic clients registered (for `max_dynamic_clients`), recounted every few seconds.
    pub dynamic_client_count: std::sync::Mutex<Option<(std::time::Instant, i64)>>,
    /// DPoP server nonces, under a key every node derives from the same stored secret.
    pub dpop_nonces: crate::oauth::dpop::NonceKey,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::tokens::keys::KeyError),
    #[error("{0}")]
    Admin(#[from] crate::admin::AdminError),
    #[error("metadata-document fetcher: {0}")]
    Fetch(#[from] crate::clients::fetch::FetchError),
}

pub fn key_settings(settings: &Settings) -> KeySettings {
    KeySettings {
        alg: settings.keys.alg,
        encryption_secret: settings.keys.encryption_secret.clone(),
        publish_delay: settings.keys.publish_delay.as_i64(),
        retention: settings.keys.retention.as_i64(),
        refresh: settings.keys.cache_refresh.as_duration(),
    }
}

/// What start-up did that the operator must see once.
#[derive(Debug, Default)]
pub struct Started {
    pub admin_password: Option<String>,
}

impl AppState {
    /// Connects, migrates, applies declared resources and clients, loads keys and, on an empty
    /// database, creates the first admin.
    pub async fn start(settings: Settings) -> Result<(AppState, Started), StartError> {
        let db = Db::connect_with(settings.database.url.expose(), settings.database.limits).await?;
        db.migrate().await?;
        crate::admin::apply_config(&db, &settings).await?;
        if let Some(warning) = settings.keys_in_clear_warning() {
            tracing::warn!(target: "portcullis::security", "{warning}");
        }
        let keys = KeyRing::open(db.clone(), key_settings(&settings)).await?;
        let hasher = Hasher::default();
        let mut started = Started::default();
        if settings.bootstrap_admin {
            started.admin_password = crate::admin::bootstrap_admin(&db, &hasher).await?;
        }
        let fetcher = crate::clients::fetch::Fetcher::new(crate::clients::fetch::FetchConfig {
            test_ca_file: settings.cimd.test_ca_file.clone(),
            test_allow_loopback: settings.cimd.test_allow_loopback,
            ..Default::default()
        })?;
        let federation = crate::federation::Federation::new(
            &settings.identity_providers,
            &settings.trusted_identity_providers,
            settings.cimd.test_ca_file.clone(),
        )?;
        let dpop_nonces = crate::flows::dpop::nonce_key(&db).await?;
        let inner = Inner {
            settings,
            db,
            keys,
            hasher,
            fetcher,
            cimd_budget: Default::default(),
            refresh_budget: Default::default(),
            client_keys: Default::default(),
            metrics: Default::default(),
            federation,
            dynamic_client_count: Default::default(),
            dpop_nonces,
        };
        Ok((AppState(Arc::new(inner)), started))
    }
}
