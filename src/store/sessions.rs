//! The tower-sessions store on the application's own database, so every node sees every session.
//! Expiry is an integer column, like every time that SQL compares.

use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::{Db, dispatch, dispatch_write};

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        DbSessionStore { db }
    }
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

impl From<super::StoreError> for session_store::Error {
    fn from(e: super::StoreError) -> Self {
        backend(e)
    }
}

#[async_trait::async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        loop {
            let inserted = dispatch_write!(&self.db, |pool| {
                sqlx::query(
                    "INSERT INTO web_sessions (id, data, expires_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
                )
                .bind(record.id.to_string())
                .bind(&data)
                .bind(record.expiry_date.unix_timestamp())
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected()
            });
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Updates a session that still exists, and only that. tower-sessions calls `save` for a
    /// session it loaded at the start of the request (new ones go through `create`); an upsert
    /// here let a request still in flight when the person signed out (or when sign-in cycled the
    /// id, or the session expired) write the old, signed-in session back at its end. A session
    /// deleted meanwhile stays deleted: its id leads nowhere and the next request starts afresh.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let updated = dispatch_write!(&self.db, |pool| sqlx::query(
            "UPDATE web_sessions SET data = $2, expires_at = $3 WHERE id = $1"
        )
        .bind(record.id.to_string())
        .bind(&data)
        .bind(record.expiry_date.unix_timestamp())
        .execute(pool)
        .await
        .map_err(backend)?
        .rows_affected());
        if updated == 0 {
            tracing::info!("a session ended while a request on it was in flight; its changes were dropped");
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = crate::store::now();
        let data: Option<Vec<u8>> = dispatch!(&self.db, |pool| sqlx::query_scalar(
            "SELECT data FROM web_sessions WHERE id = $1 AND expires_at > $2"
        )
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(backend)?);
        data.map(|d| serde_json::from_slice(&d).map_err(|e| session_store::Error::Decode(e.to_string()))).transpose()
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        dispatch_write!(&self.db, |pool| sqlx::query("DELETE FROM web_sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(pool)
            .await
            .map_err(backend)?
            .rows_affected());
        Ok(())
    }
}
