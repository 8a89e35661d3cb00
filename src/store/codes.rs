//! Authorization codes: single use, short-lived, stored as SHA-256 hashes.

use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::refresh::NewRefreshToken;
use super::tx::{WriteTx, on};
use super::{Db, Result, dispatch_write};

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

/// The DPoP key a live, unspent code is bound to (`Some(None)`: not bound; `None`: no such
/// code), read before redeeming so that a request by the wrong key is refused without spending it.
pub async fn dpop_binding(db: &Db, code_hash: &[u8], now: i64) -> Result<Option<Option<String>>> {
    let found: Option<(Option<String>,)> = super::dispatch!(db, |pool| sqlx::query_as(
        "SELECT dpop_jkt FROM authorization_codes WHERE code_hash = $1 AND redeemed_at IS NULL AND expires_at > $2"
    )
    .bind(code_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?);
    Ok(found.map(|(jkt,)| jkt))
}

/// What the check needs besides the code: the resource it is bound to.
#[derive(Clone, Debug)]
pub struct CodeContext {
    pub resource_uri: String,
    pub token_lifetime: Option<i64>,
}

/// The names of what a redemption will issue, chosen before the code is spent so that the
/// spending update records them and a replay can revoke them. When less is issued (no refresh
/// token, a refused check, a revoked grant), the names nothing carries are cleared again.
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
    /// Already redeemed: what the first redemption issued has been revoked.
    Replayed { grant_id: Uuid },
    /// Unknown, expired, or its grant or person is no longer active.
    Invalid,
}

/// The spent code, with what the same statement read about its grant and resource.
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

/// Spends a code in one transaction: the conditional update decides (recording `planned` and
/// reading the grant and resource in the same statement); the `check` runs on the spent code and
/// returns the refresh token to record, if any; a second redemption revokes what the first issued.
pub async fn redeem<T, E>(
    db: &Db,
    code_hash: &[u8],
    now: i64,
    planned: &Planned,
    check: impl FnOnce(&Code, &CodeContext) -> std::result::Result<(Option<NewRefreshToken>, T), E>,
) -> Result<Redeemed<T, E>> {
    let mut tx = WriteTx::begin(db).await?;
    // Subqueries, not a join: SQLite's RETURNING may only name the updated table's columns.
    let spend = format!(
        "UPDATE authorization_codes SET redeemed_at = $1, issued_jti = $3, issued_family_id = $4 \
         WHERE code_hash = $2 AND redeemed_at IS NULL AND expires_at > $1 RETURNING {COLUMNS}, \
         (SELECT r.uri FROM resources r WHERE r.id = authorization_codes.resource_id) AS resource_uri, \
         (SELECT r.token_lifetime FROM resources r WHERE r.id = authorization_codes.resource_id) AS token_lifetime, \
         (SELECT g.revoked_at IS NULL AND NOT u.disabled FROM grants g JOIN users u ON u.id = g.user_id \
          WHERE g.id = authorization_codes.grant_id) AS grant_live, \
         (SELECT g.last_used_at FROM grants g WHERE g.id = authorization_codes.grant_id) AS grant_last_used"
    );
    let spent: Option<Spent> = on!(tx, |c| sqlx::query_as(&spend)
        .bind(now)
        .bind(code_hash)
        .bind(&planned.jti)
        .bind(planned.family_id)
        .fetch_optional(c)
        .await?);
    let Some(spent) = spent else {
        let replay: Option<(Uuid, Option<Uuid>, Option<String>)> = on!(tx, |c| sqlx::query_as(
            "SELECT grant_id, issued_family_id, issued_jti FROM authorization_codes \
             WHERE code_hash = $1 AND redeemed_at IS NOT NULL",
        )
        .bind(code_hash)
        .fetch_optional(c)
        .await?);
        let Some((grant_id, family, jti)) = replay else {
            return Ok(Redeemed::Invalid);
        };
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
        return Ok(Redeemed::Replayed { grant_id });
    };
    let checked = match (spent.resource_uri, spent.grant_live) {
        (Some(resource_uri), Some(true)) => {
            Some(check(&spent.code, &CodeContext { resource_uri, token_lifetime: spent.token_lifetime }))
        }
        _ => None,
    };
    let code = spent.code;
    // The spending update recorded the planned names; keep only what is actually issued.
    let (jti, family) = match &checked {
        Some(Ok((refresh, _))) => (Some(planned.jti.as_str()), refresh.as_ref().map(|r| r.family_id)),
        _ => (None, None),
    };
    if family.is_none() {
        on!(tx, |c| sqlx::query(
            "UPDATE authorization_codes SET issued_jti = $1, issued_family_id = NULL WHERE code_hash = $2"
        )
        .bind(jti)
        .bind(code_hash)
        .execute(c)
        .await?
        .rows_affected());
    }
    let (refresh, out) = match checked {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            tx.commit().await?;
            return Ok(Redeemed::Refused(e));
        }
        None => {
            tx.commit().await?;
            return Ok(Redeemed::Invalid);
        }
    };
    if let Some(r) = &refresh {
        debug_assert_eq!(r.family_id, planned.family_id, "the refresh token starts the planned family");
        tx.insert_refresh(r).await?;
    }
    tx.note_grant_use(code.grant_id, spent.grant_last_used, now).await?;
    tx.commit().await?;
    Ok(Redeemed::Ok(Box::new(code), out))
}
