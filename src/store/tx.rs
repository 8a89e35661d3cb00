//! Write transactions on either engine: one type, with the statements that several transactions
//! share as its methods. A transaction's own statements are written once in its function with
//! [`on!`], which type-checks them per engine.
//!
//! SQLite: the single writing connection, `BEGIN IMMEDIATE` (the write lock up front, so two
//! writers never deadlock on upgrading). Postgres: a pooled connection, `BEGIN` in a task of its
//! own (see [`WriteTx::begin`]), rows locked with `FOR UPDATE`. Dropped without `commit`, a
//! transaction is rolled back: on SQLite the rollback is queued ahead of the connection's next
//! use, and a connection lent while still inside a transaction is settled first
//! (`store::sqlite`).

use std::borrow::Cow;

use sqlx::TransactionManager;

use super::audit::Event;
use super::refresh::NewRefreshToken;
use super::sqlite::Lease;
use super::{Db, Result, StoreError};

type SqliteTransactions = <sqlx::Sqlite as sqlx::Database>::TransactionManager;

/// Runs `$body` with `$conn` bound to the transaction's connection, type-checked per engine.
macro_rules! on {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx.engine() {
            $crate::store::tx::Engine::Sqlite($conn) => $body,
            $crate::store::tx::Engine::Postgres($conn) => $body,
        }
    };
}
pub(crate) use on;

/// One atomic write in one round trip, for writes with no decision between their statements:
/// on Postgres `$postgres`, a single statement (data-modifying CTEs); on SQLite `$sqlite`, a
/// batch `BEGIN IMMEDIATE; ...; COMMIT` on the writing connection ([`super::sqlite::Lease::batch`]).
/// `$bind` binds the `$N` arguments, which both texts use all of. The value is the statement's
/// outcome, `Result<Vec<row>, sqlx::Error>` (the rows of `RETURNING`), for the caller to map;
/// failing to get the writing connection returns from the enclosing function.
macro_rules! write_once {
    ($db:expr, sqlite: $sqlite:expr, postgres: $postgres:expr, |$q:ident| $bind:expr) => {
        match $db {
            $crate::store::Db::Sqlite(sqlite) => {
                let mut lease = sqlite.write().await?;
                let $q = sqlx::query_as($sqlite);
                lease.batch($bind).await
            }
            $crate::store::Db::Postgres(pool) => {
                let $q = sqlx::query_as($postgres);
                $bind.fetch_all(pool).await
            }
        }
    };
}
pub(crate) use write_once;

pub(crate) struct WriteTx {
    inner: Inner,
}

enum Inner {
    /// The lease and whether its transaction is still open (dropped open: rolled back).
    Sqlite {
        lease: Lease,
        open: bool,
    },
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// Committed (Postgres: the `Transaction` was consumed).
    Done,
}

/// The transaction's connection, as the engine's native type.
pub(crate) enum Engine<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

impl WriteTx {
    pub(crate) async fn begin(db: &Db) -> Result<WriteTx> {
        let inner = match db {
            Db::Sqlite(s) => {
                let mut lease = s.writer.acquire().await.map_err(StoreError::from_sqlx)?;
                SqliteTransactions::begin(&mut lease, Some(Cow::Borrowed("BEGIN IMMEDIATE"))).await?;
                Inner::Sqlite { lease, open: true }
            }
            // sqlx 0.8's `BEGIN` is not cancellation safe on Postgres: dropped after the statement
            // went out and before its answer came back, it leaves the server inside a transaction
            // that sqlx counts as closed, and the pool lends that connection on (its later
            // statements are never committed and hold their locks). So the `BEGIN` runs in a task
            // of its own, which always reads its answer; if the caller is gone by then, the task
            // drops the `Transaction`, whose rollback the pool sends before lending it again.
            Db::Postgres(pool) => {
                let pool = pool.clone();
                match tokio::spawn(async move { pool.begin().await }).await {
                    Ok(begun) => Inner::Postgres(begun?),
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // The runtime is shutting down.
                    Err(_) => return Err(StoreError::from_sqlx(sqlx::Error::PoolClosed)),
                }
            }
        };
        Ok(WriteTx { inner })
    }

    pub(crate) fn engine(&mut self) -> Engine<'_> {
        match &mut self.inner {
            Inner::Sqlite { lease, .. } => Engine::Sqlite(lease),
            Inner::Postgres(tx) => Engine::Postgres(tx),
            Inner::Done => unreachable!("`commit` consumes the transaction"),
        }
    }

    /// The row-lock suffix for `SELECT`s that decide what the transaction writes: `FOR UPDATE` on
    /// Postgres; nothing on SQLite, whose `BEGIN IMMEDIATE` already excludes other writers.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.inner {
            Inner::Postgres(_) => " FOR UPDATE",
            Inner::Sqlite { .. } | Inner::Done => "",
        }
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Sqlite { lease, open } => {
                SqliteTransactions::commit(lease).await?;
                *open = false;
            }
            Inner::Postgres(_) => {
                let Inner::Postgres(tx) = std::mem::replace(&mut self.inner, Inner::Done) else { unreachable!() };
                tx.commit().await?;
            }
            Inner::Done => {}
        }
        Ok(())
    }

    /// Inserts a refresh token.
    pub(crate) async fn insert_refresh(&mut self, r: &NewRefreshToken) -> Result<()> {
        on!(self, |c| {
            sqlx::query(
            "INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, parent_id, client_id, scope, created_at, \
             expires_at, family_started_at, dpop_jkt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.id)
        .bind(&r.token_hash)
        .bind(r.grant_id)
        .bind(r.family_id)
        .bind(r.parent_id)
        .bind(&r.client_id)
        .bind(&r.scope)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.family_started_at)
        .bind(&r.dpop_jkt)
        .execute(c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Records an audit event with the transaction's other writes.
    pub(crate) async fn insert_audit(&mut self, e: &Event<'_>, now: i64) -> Result<()> {
        on!(self, |c| super::audit::insert_query(e, now).execute(c).await?.rows_affected());
        Ok(())
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        // Postgres: `sqlx::Transaction`'s own drop queues the rollback.
        if let Inner::Sqlite { lease, open: true } = &mut self.inner {
            SqliteTransactions::start_rollback(lease);
        }
    }
}
