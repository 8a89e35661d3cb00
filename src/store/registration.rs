//! Initial access tokens for closed registration (RFC 7591 §3), and used client-assertion ids
//! (RFC 7523 §3 replay protection). Both shared by every node through the database.

use super::{Db, Result, dispatch, dispatch_write};

pub async fn create_initial_token(
    db: &Db,
    token_hash: &[u8],
    label: &str,
    now: i64,
    expires_at: Option<i64>,
) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO initial_access_tokens (token_hash, label, created_at, expires_at) VALUES ($1, $2, $3, $4)"
    )
    .bind(token_hash)
    .bind(label)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(())
}

pub async fn initial_token_valid(db: &Db, token_hash: &[u8], now: i64) -> Result<bool> {
    let found: Option<String> = dispatch!(db, |pool| sqlx::query_scalar(
        "SELECT label FROM initial_access_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)"
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?);
    Ok(found.is_some())
}

/// Records a client assertion's id; false when it was seen before (a replay).
pub async fn first_use_of_assertion(db: &Db, id: &str, expires_at: i64) -> Result<bool> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO used_client_assertions (id, expires_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"
    )
    .bind(id)
    .bind(expires_at)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}
