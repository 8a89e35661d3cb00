//! Access tokens revoked before they expire, by `jti`. Rows outlive the token by nothing: the
//! sweep drops them once the token would have expired anyway.

use uuid::Uuid;

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

/// What introspection asks of an access token besides its signature, in one query: not revoked,
/// its person enabled, and issued under the live grant of this person to this client for this
/// resource (a grant approved again after a revocation is a new grant, newer than the token).
pub async fn access_token_live(
    db: &Db,
    jti: &str,
    user_id: Uuid,
    client_id: &str,
    resource_id: Uuid,
    issued_at: i64,
) -> Result<bool> {
    let live: bool = dispatch!(db, |pool| sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1) AND EXISTS (SELECT 1 FROM grants g \
         JOIN users u ON u.id = g.user_id WHERE g.user_id = $2 AND g.client_id = $3 AND g.resource_id = $4 \
         AND g.revoked_at IS NULL AND NOT u.disabled AND g.created_at <= $5)"
    )
    .bind(jti)
    .bind(user_id)
    .bind(client_id)
    .bind(resource_id)
    .bind(issued_at)
    .fetch_one(pool)
    .await?);
    Ok(live)
}
