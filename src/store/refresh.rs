//! Refresh tokens: opaque, stored as SHA-256 hashes, rotated on every use. Each row links to its
//! grant, its family (the chain started by one code redemption), its parent and its successor.

use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::tx::{WriteTx, on, write_once};
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

/// Rotates a refresh token. The common case, a current token presented once, is a read and one
/// conditional write (one round trip each): the successor is recorded only if the token is still
/// current when the write runs. Anything else (a repeat, a lost race with another presentation)
/// is decided in a transaction with the row locked (`FOR UPDATE` on Postgres, `BEGIN IMMEDIATE`
/// on SQLite), so concurrent presentations are ordered and never both mint.
pub async fn rotate<T, E>(
    db: &Db,
    token_hash: &[u8],
    client_id: &ClientId,
    now: i64,
    grace: i64,
    successor: impl FnOnce(&RefreshToken) -> std::result::Result<(Successor, T), E>,
) -> Result<Rotated<T, E>> {
    let Some(row) = by_hash(db, token_hash).await? else {
        return Ok(Rotated::Invalid);
    };
    if !usable(&row, client_id, now) {
        return Ok(Rotated::Invalid);
    }
    if row.rotated_at.is_none() {
        let (next, out) = match successor(&row) {
            Ok(v) => v,
            Err(e) => return Ok(Rotated::Refused(e)),
        };
        if swap(db, &row, &next, now).await? {
            return Ok(Rotated::Fresh(row, out));
        }
        // Rotated or revoked since the read: decided below like any repeat.
    }
    repeated(db, token_hash, client_id, now, grace).await
}

/// Another client presenting this token learns nothing and changes nothing; nor does anyone
/// presenting a revoked or expired token, or one whose grant or person is no longer active.
fn usable(row: &RefreshToken, client_id: &ClientId, now: i64) -> bool {
    row.client_id == *client_id && row.revoked_at.is_none() && row.grant_live && row.expires_at > now
}

/// Records `next` as `row`'s successor if `row` is still current (not rotated, not revoked), in
/// one atomic write that also notes the grant's use when due; whether it did.
async fn swap(db: &Db, row: &RefreshToken, next: &Successor, now: i64) -> Result<bool> {
    // The same arguments in both texts: $1 now, $2 the successor's id, $3 it sealed, $4 the
    // parent, $5..$12 the successor's columns, $13 whether the grant's use is due, $14 the grant.
    macro_rules! insert_successor {
        () => {
            "INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, parent_id, client_id, scope, created_at, \
             expires_at, family_started_at, dpop_jkt) SELECT $2, $5, $14, $6, $4, $7, $8, $9, $10, $11, $12"
        };
    }
    const POSTGRES: &str = concat!(
        "WITH parent AS (UPDATE refresh_tokens SET rotated_at = $1, successor_id = $2, successor_sealed = $3 \
         WHERE id = $4 AND rotated_at IS NULL AND revoked_at IS NULL RETURNING id), child AS (",
        insert_successor!(),
        " FROM parent RETURNING id), \
         used AS (UPDATE grants SET last_used_at = $1 WHERE $13 AND id = $14 AND EXISTS (SELECT 1 FROM child)) \
         SELECT id FROM child"
    );
    // `changes()`: the rows the previous statement changed, so each runs only if the one before it did.
    const SQLITE: &str = concat!(
        "BEGIN IMMEDIATE; UPDATE refresh_tokens SET rotated_at = $1, successor_id = $2, successor_sealed = $3 \
         WHERE id = $4 AND rotated_at IS NULL AND revoked_at IS NULL; ",
        insert_successor!(),
        " WHERE changes() = 1 RETURNING id; \
         UPDATE grants SET last_used_at = $1 WHERE $13 AND id = $14 AND changes() = 1; COMMIT"
    );
    let t = &next.token;
    let due = row.grant_last_used_at.is_none_or(|at| now - at >= super::grants::LAST_USED_RESOLUTION);
    let inserted: Vec<(Uuid,)> = write_once!(db, sqlite: SQLITE, postgres: POSTGRES, |q| q
        .bind(now)
        .bind(t.id)
        .bind(&next.sealed)
        .bind(row.id)
        .bind(&t.token_hash)
        .bind(t.family_id)
        .bind(&t.client_id)
        .bind(&t.scope)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.family_started_at)
        .bind(&t.dpop_jkt)
        .bind(due)
        .bind(row.grant_id))?;
    Ok(inserted.len() == 1)
}

/// A token presented again (or rotated under a racing presentation): inside the grace window,
/// while its successor is still current, the same successor; otherwise the grant is revoked.
async fn repeated<T, E>(
    db: &Db,
    token_hash: &[u8],
    client_id: &ClientId,
    now: i64,
    grace: i64,
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
    if !usable(&row, client_id, now) {
        return Ok(Rotated::Invalid);
    }
    let Some(rotated_at) = row.rotated_at else {
        // Current after all: the swap lost to a revocation or expiry that this read now shows.
        return Ok(Rotated::Invalid);
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
