//! The tower-sessions store on the application's own database, so every node sees every session.
//! Expiry is an integer column, like every time that SQL compares.
//!
//! Anyone can create a session without signing in (a cookie-less `/authorize` parks its request
//! in one), so such sessions are bounded here, whatever the caller does: a session nobody is
//! signed in to lives at most `anonymous_lifetime` past its last save (not the 12 h of a signed-in
//! one), and a new one that names the address it came from ([`PENDING_FROM_KEY`]) is created only
//! while that address holds fewer than `pending_per_address` live ones.

use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::tx::{WriteTx, on};
use super::{Db, dispatch, dispatch_write};

/// The session entry that holds the signed-in person: a session without it is anonymous.
pub const SIGNED_IN_KEY: &str = "user";
/// The session entry naming the address (an [`crate::net::AddressKey`]) whose cookie-less request
/// created a session for a pending authorization request.
pub const PENDING_FROM_KEY: &str = "pending_from";
/// `create` refused a new pending-request session: its address holds its share already.
pub const PENDING_CAP_REACHED: &str = "this address holds its share of pending sign-in sessions";

/// Bounds on sessions nobody is signed in to.
#[derive(Clone, Copy, Debug)]
pub struct AnonymousSessions {
    /// Seconds an anonymous session lives past its last save.
    pub lifetime: i64,
    /// Live pending-request sessions one address may hold (0: no limit).
    pub pending_per_address: u32,
}

#[derive(Clone, Debug)]
pub struct DbSessionStore {
    db: Db,
    anonymous: AnonymousSessions,
}

impl DbSessionStore {
    pub fn new(db: Db, anonymous: AnonymousSessions) -> Self {
        DbSessionStore { db, anonymous }
    }

    /// The row's expiry and `pending_from` for a record: anonymous sessions are cut short.
    fn row_facts(&self, record: &Record) -> (i64, Option<String>) {
        let expires_at = record.expiry_date.unix_timestamp();
        if record.data.contains_key(SIGNED_IN_KEY) {
            return (expires_at, None);
        }
        let from = record.data.get(PENDING_FROM_KEY).and_then(|v| v.as_str()).map(str::to_string);
        (expires_at.min(crate::store::now() + self.anonymous.lifetime), from)
    }

    /// Inserts a pending-request session if its address is under the cap; `Ok(false)` when the
    /// id is taken. SQLite's single writer makes count-and-insert one step; on Postgres a
    /// transaction-scoped advisory lock on the address does.
    async fn create_capped(
        &self,
        record: &Record,
        data: &[u8],
        expires_at: i64,
        from: &str,
    ) -> session_store::Result<bool> {
        const INSERT: &str = "INSERT INTO web_sessions (id, data, expires_at, pending_from) \
             SELECT $1, $2, $3, $4 WHERE (SELECT COUNT(*) FROM web_sessions WHERE pending_from = $4 AND expires_at > $5) < $6 \
             ON CONFLICT (id) DO NOTHING";
        let now = crate::store::now();
        let cap = i64::from(self.anonymous.pending_per_address);
        let id = record.id.to_string();
        let mut tx = WriteTx::begin(&self.db).await?;
        let inserted = on!(tx, |conn| {
            if matches!(self.db, Db::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext('web_sessions.pending_from'), hashtext($1))")
                    .bind(from)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            let n = sqlx::query(INSERT)
                .bind(&id)
                .bind(data)
                .bind(expires_at)
                .bind(from)
                .bind(now)
                .bind(cap)
                .execute(&mut *conn)
                .await
                .map_err(backend)?
                .rows_affected();
            if n == 1 {
                true
            } else {
                let taken: Option<i32> = sqlx::query_scalar("SELECT 1 FROM web_sessions WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(backend)?;
                if taken.is_none() {
                    return Err(session_store::Error::Backend(PENDING_CAP_REACHED.into()));
                }
                false
            }
        });
        tx.commit().await?;
        Ok(inserted)
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
        let (expires_at, from) = self.row_facts(record);
        loop {
            let inserted = match &from {
                Some(from) if self.anonymous.pending_per_address > 0 => {
                    self.create_capped(record, &data, expires_at, from).await?
                }
                _ => {
                    dispatch_write!(&self.db, |pool| {
                        sqlx::query(
                            "INSERT INTO web_sessions (id, data, expires_at, pending_from) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (id) DO NOTHING",
                        )
                        .bind(record.id.to_string())
                        .bind(&data)
                        .bind(expires_at)
                        .bind(from.as_deref())
                        .execute(pool)
                        .await
                        .map_err(backend)?
                        .rows_affected()
                    }) == 1
                }
            };
            if inserted {
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
        let (expires_at, from) = self.row_facts(record);
        let updated = dispatch_write!(&self.db, |pool| sqlx::query(
            "UPDATE web_sessions SET data = $2, expires_at = $3, pending_from = $4 WHERE id = $1"
        )
        .bind(record.id.to_string())
        .bind(&data)
        .bind(expires_at)
        .bind(from.as_deref())
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
