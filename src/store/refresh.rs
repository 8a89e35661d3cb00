//! Refresh tokens: opaque, stored as SHA-256 hashes, rotated on every use. Each row links to its
//! grant, its family (the chain started by one code redemption), its parent and its successor.

use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::tx::{WriteTx, on};
use super::{Db, Result, dispatch};

#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub grant_id: Uuid,
    pub family_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub client_id: ClientId,
    pub scope: ScopeSet,
    pub created_at: i64,
    pub expires_at: i64,
    /// When the family began (its code's redemption); copied from the parent.
    pub family_started_at: i64,
    /// The DPoP key (thumbprint) a public client's token is bound to; copied from the parent.
    pub dpop_jkt: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RefreshToken {
    pub id: Uuid,
    pub grant_id: Uuid,
    pub family_id: Uuid,
    pub client_id: ClientId,
    pub scope: ScopeSet,
    pub created_at: i64,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    /// `NULL` for a family begun before the column existed (no absolute limit).
    pub family_started_at: Option<i64>,
    pub successor_id: Option<Uuid>,
    pub successor_sealed: Option<Vec<u8>>,
    pub revoked_at: Option<i64>,
    /// Presenting this token needs a DPoP proof by the key with this thumbprint.
    pub dpop_jkt: Option<String>,
    /// From the grant: the person and the MCP server.
    pub user_id: Uuid,
    pub resource_id: Uuid,
    pub grant_live: bool,
    pub grant_last_used_at: Option<i64>,
    /// From the resource: its canonical URI and token lifetime.
    pub resource_uri: String,
    pub token_lifetime: Option<i64>,
    /// The resource limits who may use it, or some scope, by group: the policy must be read.
    pub restricted: bool,
}

const SELECT: &str = "SELECT t.id, t.grant_id, t.family_id, t.client_id, t.scope, t.created_at, t.expires_at, \
     t.rotated_at, t.family_started_at, t.successor_id, t.successor_sealed, t.revoked_at, t.dpop_jkt, g.user_id, g.resource_id, \
     (g.revoked_at IS NULL AND NOT u.disabled) AS grant_live, g.last_used_at AS grant_last_used_at, r.uri AS resource_uri, r.token_lifetime, \
     (r.allowed_groups <> '[]' OR EXISTS (SELECT 1 FROM resource_scopes s WHERE s.resource_id = r.id AND s.groups <> '[]')) \
     AS restricted \
     FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id JOIN users u ON u.id = g.user_id \
     JOIN resources r ON r.id = g.resource_id";

pub async fn insert(db: &Db, r: &NewRefreshToken) -> Result<()> {
    let mut tx = WriteTx::begin(db).await?;
    tx.insert_refresh(r).await?;
    tx.commit().await
}

pub async fn by_hash(db: &Db, token_hash: &[u8]) -> Result<Option<RefreshToken>> {
    let sql = format!("{SELECT} WHERE t.token_hash = $1");
    dispatch!(db, |pool| Ok(sqlx::query_as::<_, RefreshToken>(&sql).bind(token_hash).fetch_optional(pool).await?))
}

/// How a presented refresh token was handled.
#[derive(Debug)]
pub enum Rotated<T, E> {
    /// First use: the successor was minted and recorded.
    Fresh(RefreshToken, T),
    /// The caller's checks refused the request (scope, resource); nothing changed.
    Refused(E),
    /// Used again inside the grace window: the same successor, sealed under a key from this token.
    Grace(RefreshToken, Vec<u8>),
    /// Used again after the grace window (or its successor moved on): the whole grant was revoked.
    Reused { grant_id: Uuid, user_id: Uuid, client_id: ClientId },
    /// Unknown, expired, revoked, or its grant or person is no longer active.
    Invalid,
}

/// The successor to record, built by the caller from the presented token.
pub struct Successor {
    pub token: NewRefreshToken,
    pub sealed: Vec<u8>,
}

/// Rotates a refresh token in one transaction with the row locked (`FOR UPDATE` on Postgres,
/// `BEGIN IMMEDIATE` on SQLite), so concurrent presentations are ordered and never both mint.
pub async fn rotate<T, E>(
    db: &Db,
    token_hash: &[u8],
    client_id: &ClientId,
    now: i64,
    grace: i64,
    successor: impl FnOnce(&RefreshToken) -> std::result::Result<(Successor, T), E>,
) -> Result<Rotated<T, E>> {
    let mut tx = WriteTx::begin(db).await?;
    let lock = match tx.for_update() {
        "" => "",
        _ => " FOR UPDATE OF t",
    };
    let select = format!("{SELECT} WHERE t.token_hash = $1{lock}");
    let row: Option<RefreshToken> = on!(tx, |c| sqlx::query_as(&select).bind(token_hash).fetch_optional(c).await?);
    let Some(row) = row else {
        return Ok(Rotated::Invalid);
    };
    // Another client presenting this token learns nothing and changes nothing.
    if row.client_id != *client_id || row.revoked_at.is_some() || !row.grant_live || row.expires_at <= now {
        return Ok(Rotated::Invalid);
    }
    let Some(rotated_at) = row.rotated_at else {
        let (next, out) = match successor(&row) {
            Ok(v) => v,
            Err(e) => return Ok(Rotated::Refused(e)),
        };
        tx.insert_refresh(&next.token).await?;
        on!(tx, |c| sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1, successor_id = $2, successor_sealed = $3 \
             WHERE id = $4 AND rotated_at IS NULL",
        )
        .bind(now)
        .bind(next.token.id)
        .bind(&next.sealed)
        .bind(row.id)
        .execute(c)
        .await?
        .rows_affected());
        tx.note_grant_use(row.grant_id, row.grant_last_used_at, now).await?;
        tx.commit().await?;
        return Ok(Rotated::Fresh(row, out));
    };
    // Presented again. Inside the window, and while its successor is still the current token,
    // this is a client racing itself: answer with the same successor.
    let successor_current: Option<i64> = match row.successor_id {
        Some(id) => on!(tx, |c| {
            sqlx::query_scalar(
            "SELECT CAST(1 AS BIGINT) FROM refresh_tokens WHERE id = $1 AND rotated_at IS NULL AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(c)
        .await?
        }),
        None => None,
    };
    if now - rotated_at < grace
        && successor_current.is_some()
        && let Some(sealed) = row.successor_sealed.clone()
    {
        return Ok(Rotated::Grace(row, sealed));
    }
    on!(tx, |c| sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(row.grant_id)
        .execute(c)
        .await?
        .rows_affected());
    on!(tx, |c| sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(row.grant_id)
        .execute(c)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(Rotated::Reused { grant_id: row.grant_id, user_id: row.user_id, client_id: row.client_id })
}
