//! Signing keys. The private part is stored encrypted when a key-encryption secret is configured.

use super::{Db, Result, StoreError, dispatch, dispatch_write};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub private_key: Vec<u8>,
    pub encrypted: bool,
    pub created_at: i64,
    /// The key signs from this time on (until a newer key activates); it is published before.
    pub activates_at: i64,
}

const COLUMNS: &str = "kid, alg, public_jwk, private_key, encrypted, created_at, activates_at";

pub async fn insert(db: &Db, k: &KeyRow) -> Result<()> {
    let sql = format!("INSERT INTO signing_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
    dispatch_write!(db, |pool| sqlx::query(&sql)
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.public_jwk)
        .bind(&k.private_key)
        .bind(k.encrypted)
        .bind(k.created_at)
        .bind(k.activates_at)
        .execute(pool)
        .await
        .map_err(|e| StoreError::on_conflict(e, || format!("key {} exists", k.kid)))?
        .rows_affected());
    Ok(())
}

/// Replaces a key's stored private part with `sealed` (encrypted) if it is still `old`; whether
/// this call did it (another node starting at the same time may have).
pub async fn reseal(db: &Db, kid: &str, old: &[u8], sealed: &[u8]) -> Result<bool> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "UPDATE signing_keys SET private_key = $3, encrypted = TRUE WHERE kid = $1 AND private_key = $2"
    )
    .bind(kid)
    .bind(old)
    .bind(sealed)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(n == 1)
}

/// All keys, oldest activation first.
pub async fn list(db: &Db) -> Result<Vec<KeyRow>> {
    let sql = format!("SELECT {COLUMNS} FROM signing_keys ORDER BY activates_at, created_at");
    dispatch!(db, |pool| Ok(sqlx::query_as::<_, KeyRow>(&sql).fetch_all(pool).await?))
}

/// Drops keys superseded long enough ago that no token they signed can still be valid.
pub async fn delete(db: &Db, kid: &str) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
        .bind(kid)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}
