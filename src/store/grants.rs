//! Grants: a person's consent for (client, MCP server, scopes). Remembered until revoked.

use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::tx::{WriteTx, on};
use super::{Db, Result, StoreError, dispatch};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Grant {
    pub id: Uuid,
    pub user_id: Uuid,
    pub client_id: ClientId,
    pub resource_id: Uuid,
    pub scope: ScopeSet,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// For metadata-document clients: the document's identity (redirect URIs, name, keys) that
    /// was shown when the person consented; a change asks again.
    pub client_fingerprint: Option<String>,
}

/// `grants.last_used_at` is written at most this often (seconds): it is shown to people, not
/// used for decisions, and skipping the write saves a statement on most redemptions and refreshes.
pub const LAST_USED_RESOLUTION: i64 = 60;

const COLUMNS: &str =
    "id, user_id, client_id, resource_id, scope, created_at, updated_at, last_used_at, revoked_at, client_fingerprint";

/// Whether the person may use the service (exists, not disabled) and their live grant to this
/// client for this resource, in one query. `None` when the person no longer exists.
pub async fn standing(db: &Db, user_id: Uuid, client_id: &ClientId, resource_id: Uuid) -> Result<Option<Standing>> {
    let sql = format!(
        "SELECT NOT u.disabled AS enabled, {} FROM users u LEFT JOIN grants g ON g.user_id = u.id \
         AND g.client_id = $2 AND g.resource_id = $3 AND g.revoked_at IS NULL WHERE u.id = $1",
        COLUMNS.split(", ").map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", ")
    );
    dispatch!(db, |pool| {
        let Some(row) = sqlx::query(&sql).bind(user_id).bind(client_id).bind(resource_id).fetch_optional(pool).await?
        else {
            return Ok(None);
        };
        let grant = match row.try_get::<Option<Uuid>, _>("id")? {
            Some(_) => Some(Grant::from_row(&row)?),
            None => None,
        };
        Ok(Some(Standing { enabled: row.try_get("enabled")?, grant }))
    })
}

#[derive(Clone, Debug)]
pub struct Standing {
    pub enabled: bool,
    pub grant: Option<Grant>,
}

pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<Grant>> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE id = $1");
    dispatch!(db, |pool| sqlx::query_as::<_, Grant>(&sql).bind(id).fetch_optional(pool).await.map_err(StoreError::from))
}

/// Records consent: sets the live grant's scope to `scope`, creating the grant when there is none.
/// One transaction, so two approvals racing end with one grant.
pub async fn approve(
    db: &Db,
    user_id: Uuid,
    client_id: &ClientId,
    resource_id: Uuid,
    scope: &ScopeSet,
    now: i64,
) -> Result<Grant> {
    approve_as_shown(db, user_id, client_id, resource_id, |_| scope.clone(), Shown::default(), now).await
}

/// What the consent page showed the person, recorded with their approval.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shown<'a> {
    /// Metadata-document clients: the document's identity (a change asks again).
    pub client_fingerprint: Option<&'a str>,
    /// The redirect URI the browser was to go back to (the page names its host), in its
    /// registered form: from now on errors may be redirected there without asking
    /// ([`redirect_approved`]).
    pub redirect_uri: Option<&'a str>,
}

/// [`approve`] where the new scope is computed from the live grant inside the transaction (so two
/// step-ups racing both end up in the grant), recording what the person saw ([`Shown`]).
pub async fn approve_as_shown(
    db: &Db,
    user_id: Uuid,
    client_id: &ClientId,
    resource_id: Uuid,
    scope_for: impl FnOnce(Option<&ScopeSet>) -> ScopeSet,
    shown: Shown<'_>,
    now: i64,
) -> Result<Grant> {
    let client_fingerprint = shown.client_fingerprint;
    let mut tx = WriteTx::begin(db).await?;
    let select = format!(
        "SELECT {COLUMNS} FROM grants WHERE user_id = $1 AND client_id = $2 AND resource_id = $3 \
         AND revoked_at IS NULL{}",
        tx.for_update()
    );
    let existing: Option<Grant> =
        on!(tx, |c| sqlx::query_as(&select).bind(user_id).bind(client_id).bind(resource_id).fetch_optional(c).await?);
    let scope = scope_for(existing.as_ref().map(|g| &g.scope));
    let grant: Grant = match existing {
        Some(g) => {
            let update = format!(
                "UPDATE grants SET scope = $1, updated_at = $2, client_fingerprint = $3 WHERE id = $4 RETURNING {COLUMNS}"
            );
            on!(tx, |c| sqlx::query_as(&update)
                .bind(&scope)
                .bind(now)
                .bind(client_fingerprint)
                .bind(g.id)
                .fetch_one(c)
                .await?)
        }
        None => {
            let insert = format!(
                "INSERT INTO grants (id, user_id, client_id, resource_id, scope, created_at, updated_at, client_fingerprint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7) RETURNING {COLUMNS}"
            );
            on!(tx, |c| sqlx::query_as(&insert)
                .bind(Uuid::now_v7())
                .bind(user_id)
                .bind(client_id)
                .bind(resource_id)
                .bind(&scope)
                .bind(now)
                .bind(client_fingerprint)
                .fetch_one(c)
                .await?)
        }
    };
    if let Some(uri) = shown.redirect_uri {
        on!(tx, |c| sqlx::query(
            "INSERT INTO approved_redirects (client_id, redirect_uri, approved_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, redirect_uri) DO NOTHING"
        )
        .bind(client_id)
        .bind(uri)
        .bind(now)
        .execute(c)
        .await?
        .rows_affected());
    }
    tx.commit().await?;
    Ok(grant)
}

/// Whether a person has approved this client with this redirect URI (its registered form).
pub async fn redirect_approved(db: &Db, client_id: &ClientId, redirect_uri: &str) -> Result<bool> {
    let found: Option<i64> = dispatch!(db, |pool| sqlx::query_scalar(
        "SELECT approved_at FROM approved_redirects WHERE client_id = $1 AND redirect_uri = $2"
    )
    .bind(client_id)
    .bind(redirect_uri)
    .fetch_optional(pool)
    .await?);
    Ok(found.is_some())
}

/// Revokes a grant and every refresh token issued under it. Returns false when it was not live.
pub async fn revoke(db: &Db, id: Uuid, now: i64) -> Result<bool> {
    let mut tx = WriteTx::begin(db).await?;
    let n = on!(tx, |c| sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(c)
        .await?
        .rows_affected());
    on!(tx, |c| sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(c)
        .await?
        .rows_affected());
    tx.commit().await?;
    Ok(n > 0)
}

pub async fn list_for_user(db: &Db, user_id: Uuid) -> Result<Vec<Grant>> {
    let sql = format!("SELECT {COLUMNS} FROM grants WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at");
    dispatch!(db, |pool| sqlx::query_as::<_, Grant>(&sql).bind(user_id).fetch_all(pool).await.map_err(StoreError::from))
}

/// A grant with the names an operator reads.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GrantListing {
    pub id: Uuid,
    pub username: String,
    pub client_id: ClientId,
    pub client_name: Option<String>,
    pub resource_uri: String,
    pub scope: ScopeSet,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Grants, live ones first, optionally for one person and/or one client.
pub async fn list(
    db: &Db,
    username: Option<&str>,
    client_id: Option<&str>,
    include_revoked: bool,
) -> Result<Vec<GrantListing>> {
    dispatch!(db, |pool| Ok(sqlx::query_as::<_, GrantListing>(
        "SELECT g.id, u.username, g.client_id, c.client_name, r.uri AS resource_uri, g.scope, g.created_at, \
         g.last_used_at, g.revoked_at FROM grants g JOIN users u ON u.id = g.user_id \
         JOIN clients c ON c.client_id = g.client_id JOIN resources r ON r.id = g.resource_id \
         WHERE ($1 IS NULL OR u.username = $1) AND ($2 IS NULL OR g.client_id = $2) AND ($3 OR g.revoked_at IS NULL) \
         ORDER BY g.revoked_at IS NOT NULL, g.created_at"
    )
    .bind(username)
    .bind(client_id)
    .bind(include_revoked)
    .fetch_all(pool)
    .await?))
}
