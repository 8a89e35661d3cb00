//! Admin API tokens: named, stored as SHA-256 hashes, expiring, revocable.

use uuid::Uuid;

use super::{Db, Result, StoreError, dispatch, dispatch_write};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AdminToken {
    pub id: Uuid,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, name, created_at, expires_at, revoked_at, last_used_at";

pub async fn create(db: &Db, name: &str, token_hash: &[u8], expires_at: Option<i64>, now: i64) -> Result<AdminToken> {
    let sql = format!(
        "INSERT INTO admin_tokens (id, name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING {COLUMNS}"
    );
    dispatch_write!(db, |pool| sqlx::query_as::<_, AdminToken>(&sql)
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::on_conflict(e, || format!("an admin token named {name:?} already exists"))))
}

pub async fn list(db: &Db) -> Result<Vec<AdminToken>> {
    let sql = format!("SELECT {COLUMNS} FROM admin_tokens ORDER BY name");
    dispatch!(db, |pool| sqlx::query_as::<_, AdminToken>(&sql).fetch_all(pool).await.map_err(StoreError::from_sqlx))
}

/// Revokes the live token named `name`; `NotFound` when there is none.
pub async fn revoke(db: &Db, name: &str, now: i64) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "UPDATE admin_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL"
    )
    .bind(now)
    .bind(name)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// The live token with this hash (not revoked, not expired), its use noted (at most once a minute).
pub async fn authenticate(db: &Db, token_hash: &[u8], now: i64) -> Result<Option<AdminToken>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)"
    );
    let found: Option<AdminToken> =
        dispatch!(db, |pool| sqlx::query_as(&sql).bind(token_hash).bind(now).fetch_optional(pool).await?);
    if let Some(t) = &found
        && t.last_used_at.is_none_or(|at| now - at >= 60)
    {
        dispatch_write!(db, |pool| sqlx::query("UPDATE admin_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(t.id)
            .execute(pool)
            .await?
            .rows_affected());
    }
    Ok(found)
}
