//! Machine clients' reach (the `client_credentials` grant): the MCP servers a client may get
//! tokens for, and the scopes it may get at each. Only the operator sets it (`admin`).

use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use super::clients::{self, Client, NewClient};
use super::tx::{WriteTx, on};
use super::{Db, Result, StoreError, dispatch};

/// One MCP server (its canonical URI) a client may reach, and the scopes allowed there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowance {
    pub resource_uri: String,
    pub scope: ScopeSet,
}

/// An allowance as a token request reads it: with the MCP server's token lifetime and its scope
/// catalogue as it is now (the operator may have removed scopes since).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub resource_uri: String,
    pub token_lifetime: Option<i64>,
    pub allowed: ScopeSet,
    pub catalogue: Vec<String>,
}

/// Whether [`save`] creates the client (a second one with its id is a conflict) or creates or
/// replaces it (a client declared in the config file, applied at every start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Save {
    Create,
    Upsert,
}

/// Writes a client and sets its reach to exactly `allowances`, in one transaction. An allowance
/// that was there before keeps its `created_at`, so re-applying the configuration leaves the
/// client's tokens live (see [`token_reach`]). Every allowance's MCP server must be registered.
pub async fn save(db: &Db, client: &NewClient, allowances: &[Allowance], mode: Save, now: i64) -> Result<Client> {
    let mut tx = WriteTx::begin(db).await?;
    let saved = match mode {
        Save::Create => clients::insert_in(&mut tx, client, None, now).await?,
        Save::Upsert => clients::upsert_in(&mut tx, client, now).await?,
    };
    let mut kept = Vec::with_capacity(allowances.len());
    for a in allowances {
        // `WHERE` keeps SQLite from reading `ON CONFLICT` as a join constraint of the SELECT.
        let id: Option<Uuid> = on!(tx, |c| sqlx::query_scalar(
            "INSERT INTO client_resources (client_id, resource_id, scope, created_at) \
             SELECT $1, id, $2, $3 FROM resources WHERE uri = $4 \
             ON CONFLICT (client_id, resource_id) DO UPDATE SET scope = excluded.scope RETURNING resource_id"
        )
        .bind(&client.client_id)
        .bind(&a.scope)
        .bind(now)
        .bind(&a.resource_uri)
        .fetch_optional(c)
        .await
        .map_err(StoreError::from_sqlx)?);
        kept.push(id.ok_or(StoreError::NotFound)?);
    }
    let existing: Vec<Uuid> =
        on!(tx, |c| sqlx::query_scalar("SELECT resource_id FROM client_resources WHERE client_id = $1")
            .bind(&client.client_id)
            .fetch_all(c)
            .await?);
    for gone in existing.into_iter().filter(|id| !kept.contains(id)) {
        on!(tx, |c| sqlx::query("DELETE FROM client_resources WHERE client_id = $1 AND resource_id = $2")
            .bind(&client.client_id)
            .bind(gone)
            .execute(c)
            .await?
            .rows_affected());
    }
    tx.commit().await?;
    Ok(saved)
}

/// Where a client may get tokens, one query: each allowed MCP server with its scope catalogue.
pub async fn reach(db: &Db, client_id: &str) -> Result<Vec<Reach>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        uri: String,
        token_lifetime: Option<i64>,
        scope: ScopeSet,
        scope_name: Option<String>,
    }
    if client_id.contains('\0') {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = dispatch!(db, |pool| sqlx::query_as(
        "SELECT r.uri, r.token_lifetime, a.scope, s.name AS scope_name FROM client_resources a \
         JOIN resources r ON r.id = a.resource_id LEFT JOIN resource_scopes s ON s.resource_id = r.id \
         WHERE a.client_id = $1 ORDER BY r.uri, s.position"
    )
    .bind(client_id)
    .fetch_all(pool)
    .await
    .map_err(StoreError::from_sqlx)?);
    let mut out: Vec<Reach> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some(last) if last.resource_uri == r.uri => last.catalogue.extend(r.scope_name),
            _ => out.push(Reach {
                resource_uri: r.uri,
                token_lifetime: r.token_lifetime,
                allowed: r.scope,
                catalogue: r.scope_name.into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

/// Every allowance of every client (for `client list`), by client then MCP server.
pub async fn all(db: &Db) -> Result<Vec<(ClientId, Allowance)>> {
    let rows: Vec<(ClientId, String, ScopeSet)> = dispatch!(db, |pool| sqlx::query_as(
        "SELECT a.client_id, r.uri, a.scope FROM client_resources a JOIN resources r ON r.id = a.resource_id \
         ORDER BY a.client_id, r.uri"
    )
    .fetch_all(pool)
    .await?);
    Ok(rows.into_iter().map(|(c, resource_uri, scope)| (c, Allowance { resource_uri, scope })).collect())
}

/// What the liveness of a machine client's access token depends on besides its signature.
#[derive(Clone, Debug)]
pub struct MachineTokenFacts<'a> {
    pub jti: &'a str,
    pub client_id: &'a str,
    /// The token's `aud`: the MCP server.
    pub audience: &'a str,
    pub issued_at: i64,
}

/// The scopes the client may still get at the token's MCP server if its token is live there, in
/// one query: the token is not revoked, and the client and its permission for that server are
/// both older than the token (removed and added again, neither revives tokens issued before).
/// `None`: not live. The caller checks the token's scope against what is returned (a narrowed
/// permission ends tokens that carry a withdrawn scope).
pub async fn token_reach(db: &Db, t: &MachineTokenFacts<'_>) -> Result<Option<ScopeSet>> {
    if [t.jti, t.client_id, t.audience].iter().any(|s| s.contains('\0')) {
        return Ok(None);
    }
    dispatch!(db, |pool| Ok(sqlx::query_scalar(
        "SELECT a.scope FROM client_resources a JOIN clients c ON c.client_id = a.client_id \
         JOIN resources r ON r.id = a.resource_id WHERE a.client_id = $1 AND r.uri = $2 \
         AND c.created_at <= $3 AND a.created_at <= $3 \
         AND NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $4)"
    )
    .bind(t.client_id)
    .bind(t.audience)
    .bind(t.issued_at)
    .bind(t.jti)
    .fetch_optional(pool)
    .await?))
}
