//! Access tokens revoked before they expire, by `jti`. Rows outlive the token by nothing: the
//! sweep drops them once the token would have expired anyway.

use super::{Db, Result, dispatch, dispatch_write};

pub async fn revoke_access_token(db: &Db, jti: &str, expires_at: i64) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING"
    )
    .bind(jti)
    .bind(expires_at)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(())
}

pub async fn is_revoked(db: &Db, jti: &str) -> Result<bool> {
    let found: Option<String> =
        dispatch!(db, |pool| sqlx::query_scalar("SELECT jti FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(pool)
            .await?);
    Ok(found.is_some())
}
