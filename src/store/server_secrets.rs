//! Secrets every node shares (the DPoP nonce key): created once, by whichever node asks first.

use super::{Db, Result, dispatch, dispatch_write};

/// The secret named `name`: `candidate` if none existed (it is stored), else the stored one.
pub async fn get_or_create(db: &Db, name: &str, candidate: &[u8], now: i64) -> Result<Vec<u8>> {
    dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
    )
    .bind(name)
    .bind(candidate)
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected());
    let secret: Vec<u8> = dispatch!(db, |pool| sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await?);
    Ok(secret)
}
