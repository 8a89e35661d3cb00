//! Authorization codes: single use, short-lived, stored as SHA-256 hashes.

use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::refresh::NewRefreshToken;
use super::tx::{WriteTx, on, write_once};
use super::{Db, Result, dispatch, dispatch_write};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Code {
    pub grant_id: Uuid,
    pub client_id: ClientId,
    pub user_id: Uuid,
    pub resource_id: Uuid,
    pub redirect_uri: String,
    pub scope: ScopeSet,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// `dpop_jkt` at `/authorize`: only a DPoP proof by this key redeems the code.
    pub dpop_jkt: Option<String>,
}

const COLUMNS: &str = "grant_id, client_id, user_id, resource_id, redirect_uri, scope, code_challenge, nonce, \
                       auth_time, created_at, expires_at, dpop_jkt";

pub async fn insert(db: &Db, code_hash: &[u8], code: &Code) -> Result<()> {
    let sql = format!(
        "INSERT INTO authorization_codes (code_hash, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    );
    dispatch_write!(db, |pool| sqlx::query(&sql)
        .bind(code_hash)
        .bind(code.grant_id)
        .bind(&code.client_id)
        .bind(code.user_id)
        .bind(code.resource_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(&code.code_challenge)
        .bind(&code.nonce)
        .bind(code.auth_time)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(&code.dpop_jkt)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}

/// What the check needs besides the code: the resource it is bound to.
#[derive(Clone, Debug)]
pub struct CodeContext {
    pub resource_uri: String,
    pub token_lifetime: Option<i64>,
}

/// The names of what a redemption will issue, chosen before the code is spent so that the
/// spending write records them and a replay can revoke them (only the names of what is actually
/// issued: no family without a refresh token, nothing after a refused check).
#[derive(Clone, Debug)]
pub struct Planned {
    pub jti: String,
    /// The family (and id) of the first refresh token, if one is issued.
    pub family_id: Uuid,
}

#[derive(Debug)]
pub enum Redeemed<T, E> {
    /// The code was live and the checks passed: tokens were recorded. (Boxed: the code is much
    /// larger than the other variants.)
    Ok(Box<Code>, T),
    /// The checks refused the code (wrong client, verifier, redirect URI). The code is spent.
    Refused(E),
    /// Refused before spending (the request lacks what the code is bound to): the code stays
    /// usable by the client that has it.
    Kept(E),
    /// Already redeemed: what the first redemption issued has been revoked.
    Replayed { grant_id: Uuid },
    /// Unknown, expired, or its grant or person is no longer active.
    Invalid,
}

/// A live code, with what the same statement read about its grant and resource.
#[derive(sqlx::FromRow)]
struct Spent {
    #[sqlx(flatten)]
    code: Code,
    resource_uri: Option<String>,
    token_lifetime: Option<i64>,
    /// The grant is not revoked and its person not disabled (`NULL`: no such grant).
    grant_live: Option<bool>,
    grant_last_used: Option<i64>,
}

/// Redeems a code. The common case, a live code presented once, is a read and one conditional
/// write (one round trip each): `keep` may refuse without spending; `check` runs on the code and
/// returns the refresh token to record, if any; the write spends the code (recording the names
/// of what is issued, so that a replay can revoke them) and records the refresh token only if
/// the code is still unspent when it runs. Anything else (an unknown or spent code, a race lost
/// to another redemption) is decided in a transaction, where a second redemption revokes what
/// the first issued.
pub async fn redeem<T, E>(
    db: &Db,
    code_hash: &[u8],
    now: i64,
    planned: &Planned,
    keep: impl FnOnce(&Code) -> std::result::Result<(), E>,
    check: impl FnOnce(&Code, &CodeContext) -> std::result::Result<(Option<NewRefreshToken>, T), E>,
) -> Result<Redeemed<T, E>> {
    let read = format!(
        "SELECT {COLUMNS}, {CONTEXT} FROM authorization_codes \
         WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2"
    );
    let found: Option<Spent> =
        dispatch!(db, |pool| sqlx::query_as(&read).bind(code_hash).bind(now).fetch_optional(pool).await?);
    let Some(found) = found else {
        return settle(db, code_hash, now).await;
    };
    if let Err(e) = keep(&found.code) {
        return Ok(Redeemed::Kept(e));
    }
    let checked = match (found.resource_uri, found.grant_live) {
        (Some(resource_uri), Some(true)) => {
            Some(check(&found.code, &CodeContext { resource_uri, token_lifetime: found.token_lifetime }))
        }
        _ => None,
    };
    // The names of what is actually issued.
    let (jti, refresh) = match &checked {
        Some(Ok((refresh, _))) => (Some(planned.jti.as_str()), refresh.as_ref()),
        _ => (None, None),
    };
    let due = found.grant_last_used.is_none_or(|at| now - at >= super::grants::LAST_USED_RESOLUTION);
    if !spend(db, code_hash, now, jti, refresh, &found.code, due).await? {
        // Redeemed since the read: this is the second redemption.
        return settle(db, code_hash, now).await;
    }
    Ok(match checked {
        Some(Ok((_, out))) => Redeemed::Ok(Box::new(found.code), out),
        Some(Err(e)) => Redeemed::Refused(e),
        None => Redeemed::Invalid,
    })
}

/// What a redemption reads about the code's resource and grant, beside the code.
// Subqueries, not a join: SQLite's RETURNING may only name the updated table's columns.
const CONTEXT: &str = "(SELECT r.uri FROM resources r WHERE r.id = authorization_codes.resource_id) AS resource_uri, \
     (SELECT r.token_lifetime FROM resources r WHERE r.id = authorization_codes.resource_id) AS token_lifetime, \
     (SELECT g.revoked_at IS NULL AND NOT u.disabled FROM grants g JOIN users u ON u.id = g.user_id \
      WHERE g.id = authorization_codes.grant_id) AS grant_live, \
     (SELECT g.last_used_at FROM grants g WHERE g.id = authorization_codes.grant_id) AS grant_last_used";

/// Spends the code if it is still unspent, recording `jti` and the refresh token's family, and
/// with it `refresh` and the grant's use (when `due`), in one atomic write; whether it did.
async fn spend(
    db: &Db,
    code_hash: &[u8],
    now: i64,
    jti: Option<&str>,
    refresh: Option<&NewRefreshToken>,
    code: &Code,
    due: bool,
) -> Result<bool> {
    // Arguments: $1 now, $2 the code, $3 the jti, $4 the family, $5 whether the grant's use is
    // due, $6 the grant; with a refresh token, $7..$14 its other columns.
    macro_rules! spend {
        () => {
            "UPDATE authorization_codes SET redeemed_at = $1, issued_jti = $3, issued_family_id = $4 \
             WHERE code_hash = $2 AND redeemed_at IS NULL AND expires_at > $1"
        };
    }
    macro_rules! insert_refresh {
        () => {
            "INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, client_id, scope, created_at, \
             expires_at, family_started_at, dpop_jkt) SELECT $7, $8, $6, $4, $9, $10, $11, $12, $13, $14"
        };
    }
    const POSTGRES: &str = concat!(
        "WITH spent AS (",
        spend!(),
        " RETURNING grant_id), used AS (UPDATE grants SET last_used_at = $1 \
         WHERE $5 AND id = $6 AND EXISTS (SELECT 1 FROM spent)) SELECT grant_id FROM spent"
    );
    const POSTGRES_WITH_REFRESH: &str = concat!(
        "WITH spent AS (",
        spend!(),
        " RETURNING grant_id), child AS (",
        insert_refresh!(),
        " FROM spent), used AS (UPDATE grants SET last_used_at = $1 \
         WHERE $5 AND id = $6 AND EXISTS (SELECT 1 FROM spent)) SELECT grant_id FROM spent"
    );
    // `changes()`: the rows the previous statement changed, so each runs only if the code was spent.
    const SQLITE: &str = concat!(
        "BEGIN IMMEDIATE; ",
        spend!(),
        " RETURNING grant_id; UPDATE grants SET last_used_at = $1 WHERE $5 AND id = $6 AND changes() = 1; COMMIT"
    );
    const SQLITE_WITH_REFRESH: &str = concat!(
        "BEGIN IMMEDIATE; ",
        spend!(),
        " RETURNING grant_id; ",
        insert_refresh!(),
        " WHERE changes() = 1; UPDATE grants SET last_used_at = $1 WHERE $5 AND id = $6 AND changes() = 1; COMMIT"
    );
    let family = refresh.map(|r| r.family_id);
    let spent: Vec<(Uuid,)> = match refresh {
        None => write_once!(db, sqlite: SQLITE, postgres: POSTGRES, |q| q
            .bind(now)
            .bind(code_hash)
            .bind(jti)
            .bind(family)
            .bind(due)
            .bind(code.grant_id))?,
        Some(r) => write_once!(db, sqlite: SQLITE_WITH_REFRESH, postgres: POSTGRES_WITH_REFRESH, |q| q
            .bind(now)
            .bind(code_hash)
            .bind(jti)
            .bind(family)
            .bind(due)
            .bind(code.grant_id)
            .bind(r.id)
            .bind(&r.token_hash)
            .bind(&r.client_id)
            .bind(&r.scope)
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.family_started_at)
            .bind(&r.dpop_jkt))?,
    };
    Ok(spent.len() == 1)
}

/// A code that is unknown, expired or already spent: a spent one was redeemed before, so what
/// that redemption issued is revoked, in one transaction.
async fn settle<T, E>(db: &Db, code_hash: &[u8], now: i64) -> Result<Redeemed<T, E>> {
    // Read first: an unknown code (a guess, a typo) never takes the write lock.
    let replay: Option<(Uuid, Option<Uuid>, Option<String>)> = dispatch!(db, |pool| sqlx::query_as(
        "SELECT grant_id, issued_family_id, issued_jti FROM authorization_codes \
         WHERE code_hash = $1 AND redeemed_at IS NOT NULL",
    )
    .bind(code_hash)
    .fetch_optional(pool)
    .await?);
    let Some((grant_id, family, jti)) = replay else {
        return Ok(Redeemed::Invalid);
    };
    let mut tx = WriteTx::begin(db).await?;
    if let Some(family) = family {
        // Lock the family first: a rotation in flight commits before the update below
        // takes its snapshot, so the successor it inserts is revoked too (Postgres).
        let lock = format!("SELECT id FROM refresh_tokens WHERE family_id = $1{}", tx.for_update());
        on!(tx, |c| sqlx::query(&lock).bind(family).fetch_all(c).await?.len());
        on!(tx, |c| sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL"
        )
        .bind(now)
        .bind(family)
        .execute(c)
        .await?
        .rows_affected());
    }
    if let Some(jti) = jti {
        on!(tx, |c| sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(&jti)
        .bind(now + 86_400)
        .execute(c)
        .await?
        .rows_affected());
    }
    tx.commit().await?;
    Ok(Redeemed::Replayed { grant_id })
}
