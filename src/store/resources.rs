//! MCP servers (resources) and their scope catalogues.

use uuid::Uuid;

use super::tx::{WriteTx, on};
use super::{Db, Result, StoreError, dispatch, dispatch_write};
use crate::users::groups::Groups;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ResourceRow {
    pub id: Uuid,
    pub uri: String,
    pub name: String,
    pub token_lifetime: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The resource server's credentials for /introspect, when issued.
    pub introspection_id: Option<String>,
    pub introspection_secret_hash: Option<Vec<u8>>,
    /// Only people in one of these groups may use it; empty: everyone.
    pub allowed_groups: Groups,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScopeRow {
    pub name: String,
    pub description: String,
    pub is_default: bool,
    /// Only people in one of these groups are offered this scope; empty: everyone allowed in.
    pub groups: Groups,
}

#[derive(Clone, Debug)]
pub struct Resource {
    pub row: ResourceRow,
    pub scopes: Vec<ScopeRow>,
}

/// What to register; `uri` is already canonical.
#[derive(Clone, Debug)]
pub struct NewResource {
    pub uri: String,
    pub name: String,
    pub token_lifetime: Option<i64>,
    pub allowed_groups: Groups,
    pub scopes: Vec<ScopeRow>,
}

const COLUMNS: &str = "id, uri, name, token_lifetime, created_at, updated_at, introspection_id, \
                       introspection_secret_hash, allowed_groups";

/// Registers a resource; a second registration of the same URI is a `Conflict`.
pub async fn create(db: &Db, new: &NewResource, now: i64) -> Result<Resource> {
    write(db, new, now, false).await
}

/// Creates or replaces (name, lifetime, scope catalogue) the resource at `new.uri`, keeping its id
/// so grants survive. Used when the config file declares resources.
pub async fn upsert(db: &Db, new: &NewResource, now: i64) -> Result<Resource> {
    write(db, new, now, true).await
}

async fn write(db: &Db, new: &NewResource, now: i64, replace: bool) -> Result<Resource> {
    let conflict = || format!("a resource with URI {} is already registered", new.uri);
    let mut tx = WriteTx::begin(db).await?;
    let existing: Option<Uuid> = on!(tx, |c| sqlx::query_scalar("SELECT id FROM resources WHERE uri = $1")
        .bind(&new.uri)
        .fetch_optional(c)
        .await?);
    let row: ResourceRow = match existing {
        Some(_) if !replace => return Err(StoreError::Conflict(conflict())),
        Some(id) => {
            on!(tx, |c| sqlx::query("DELETE FROM resource_scopes WHERE resource_id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected());
            let update = format!(
                "UPDATE resources SET name = $1, token_lifetime = $2, updated_at = $3, allowed_groups = $5 \
                 WHERE id = $4 RETURNING {COLUMNS}"
            );
            on!(tx, |c| sqlx::query_as(&update)
                .bind(&new.name)
                .bind(new.token_lifetime)
                .bind(now)
                .bind(id)
                .bind(&new.allowed_groups)
                .fetch_one(c)
                .await?)
        }
        None => {
            let insert = format!(
                "INSERT INTO resources (id, uri, name, token_lifetime, created_at, updated_at, allowed_groups) \
                 VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING {COLUMNS}"
            );
            on!(tx, |c| sqlx::query_as(&insert)
                .bind(Uuid::now_v7())
                .bind(&new.uri)
                .bind(&new.name)
                .bind(new.token_lifetime)
                .bind(now)
                .bind(&new.allowed_groups)
                .fetch_one(c)
                .await
                .map_err(|e| StoreError::on_conflict(e, conflict))?)
        }
    };
    for (position, s) in new.scopes.iter().enumerate() {
        on!(tx, |c| {
            sqlx::query(
                "INSERT INTO resource_scopes (resource_id, name, description, is_default, position, groups) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.id)
            .bind(&s.name)
            .bind(&s.description)
            .bind(s.is_default)
            .bind(position as i64)
            .bind(&s.groups)
            .execute(c)
            .await
            .map_err(|e| StoreError::on_conflict(e, || format!("scope {:?} is listed twice", s.name)))?
            .rows_affected()
        });
    }
    tx.commit().await?;
    Ok(Resource { row, scopes: new.scopes.clone() })
}

/// The resource at a canonical URI with its scopes, in one query (the authorization endpoint's).
pub async fn by_uri(db: &Db, uri: &str) -> Result<Option<Resource>> {
    let sql = format!(
        "SELECT {}, s.name AS scope_name, s.description AS scope_description, s.is_default AS scope_is_default, \
         s.groups AS scope_groups \
         FROM resources r LEFT JOIN resource_scopes s ON s.resource_id = r.id WHERE r.uri = $1 ORDER BY s.position",
        qualified("r")
    );
    let rows: Vec<WithScope> =
        dispatch!(db, |pool| sqlx::query_as(&sql).bind(uri).fetch_all(pool).await.map_err(StoreError::from_sqlx)?);
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else { return Ok(None) };
    let scopes = std::iter::once(first.scope).chain(rows.map(|r| r.scope)).filter_map(JoinedScope::into_row).collect();
    Ok(Some(Resource { row: first.row, scopes }))
}

/// A resource row joined with one of its scopes (none: the resource has no scopes).
#[derive(sqlx::FromRow)]
struct WithScope {
    #[sqlx(flatten)]
    row: ResourceRow,
    #[sqlx(flatten)]
    scope: JoinedScope,
}

#[derive(sqlx::FromRow)]
struct JoinedScope {
    scope_name: Option<String>,
    scope_description: Option<String>,
    scope_is_default: Option<bool>,
    scope_groups: Option<Groups>,
}

impl JoinedScope {
    fn into_row(self) -> Option<ScopeRow> {
        Some(ScopeRow {
            name: self.scope_name?,
            description: self.scope_description.unwrap_or_default(),
            is_default: self.scope_is_default.unwrap_or(false),
            groups: self.scope_groups.unwrap_or_default(),
        })
    }
}

/// `COLUMNS` prefixed with a table alias.
fn qualified(alias: &str) -> String {
    COLUMNS.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<Resource>> {
    let row: Option<ResourceRow> =
        dispatch!(db, |pool| sqlx::query_as(&format!("SELECT {COLUMNS} FROM resources WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::from_sqlx)?);
    match row {
        Some(row) => Ok(Some(with_scopes(db, row).await?)),
        None => Ok(None),
    }
}

async fn with_scopes(db: &Db, row: ResourceRow) -> Result<Resource> {
    let scopes = dispatch!(db, |pool| {
        sqlx::query_as::<_, ScopeRow>(
            "SELECT name, description, is_default, groups FROM resource_scopes WHERE resource_id = $1 ORDER BY position",
        )
        .bind(row.id)
        .fetch_all(pool)
        .await
        .map_err(StoreError::from_sqlx)?
    });
    Ok(Resource { row, scopes })
}

/// Every resource with its scopes, in two queries (the authorization endpoint reads this).
pub async fn list(db: &Db) -> Result<Vec<Resource>> {
    let rows: Vec<ResourceRow> =
        dispatch!(db, |pool| sqlx::query_as(&format!("SELECT {COLUMNS} FROM resources ORDER BY uri"))
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_sqlx)?);
    let scopes: Vec<(Uuid, String, String, bool, Groups)> = dispatch!(db, |pool| {
        sqlx::query_as(
        "SELECT resource_id, name, description, is_default, groups FROM resource_scopes ORDER BY resource_id, position"
    )
    .fetch_all(pool)
    .await?
    });
    Ok(rows
        .into_iter()
        .map(|row| {
            let mine = scopes
                .iter()
                .filter(|s| s.0 == row.id)
                .map(|s| ScopeRow { name: s.1.clone(), description: s.2.clone(), is_default: s.3, groups: s.4.clone() })
                .collect();
            Resource { row, scopes: mine }
        })
        .collect())
}

/// Every scope name of every resource, for `scopes_supported`.
pub async fn all_scope_names(db: &Db) -> Result<Vec<String>> {
    dispatch!(db, |pool| sqlx::query_scalar::<_, String>("SELECT DISTINCT name FROM resource_scopes ORDER BY name")
        .fetch_all(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

/// Removes a resource; its grants, codes and refresh tokens go with it (cascade).
pub async fn remove(db: &Db, uri: &str) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query("DELETE FROM resources WHERE uri = $1")
        .bind(uri)
        .execute(pool)
        .await
        .map_err(StoreError::from_sqlx)?
        .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// Issues (or replaces) the resource server's introspection credentials.
pub async fn set_introspection(db: &Db, uri: &str, id: &str, secret_hash: &[u8], now: i64) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "UPDATE resources SET introspection_id = $1, introspection_secret_hash = $2, updated_at = $3 WHERE uri = $4"
    )
    .bind(id)
    .bind(secret_hash)
    .bind(now)
    .bind(uri)
    .execute(pool)
    .await?
    .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// What introspection checks of an access token besides its signature.
#[derive(Clone, Debug)]
pub struct TokenFacts<'a> {
    pub jti: &'a str,
    pub user_id: Uuid,
    pub client_id: &'a str,
    pub issued_at: i64,
}

/// The resource whose introspection credentials have this id, and whether the token is live
/// there, in one query: not revoked, its person enabled, and issued under the live grant of that
/// person to that client for this resource (a grant approved again after a revocation is a new
/// grant, newer than the token). Without facts (the token did not verify) it is not live.
pub async fn for_introspection(
    db: &Db,
    id: &str,
    token: Option<&TokenFacts<'_>>,
) -> Result<Option<(ResourceRow, bool)>> {
    // Postgres text cannot hold NUL; the token's facts come from a token this server signed.
    if id.contains('\0') {
        return Ok(None);
    }
    #[derive(sqlx::FromRow)]
    struct Found {
        #[sqlx(flatten)]
        row: ResourceRow,
        token_live: bool,
    }
    let sql = format!(
        "SELECT {COLUMNS}, NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2) AND EXISTS (SELECT 1 \
         FROM grants g JOIN users u ON u.id = g.user_id WHERE g.user_id = $3 AND g.client_id = $4 \
         AND g.resource_id = resources.id AND g.revoked_at IS NULL AND NOT u.disabled AND g.created_at <= $5) \
         AS token_live FROM resources WHERE introspection_id = $1"
    );
    let found: Option<Found> = dispatch!(db, |pool| sqlx::query_as(&sql)
        .bind(id)
        .bind(token.map(|t| t.jti))
        .bind(token.map(|t| t.user_id))
        .bind(token.map(|t| t.client_id))
        .bind(token.map(|t| t.issued_at))
        .fetch_optional(pool)
        .await?);
    Ok(found.map(|f| (f.row, token.is_some() && f.token_live)))
}

/// Whether an access token for the MCP server at `audience` is live, by the same rule as
/// [`for_introspection`] (for `/userinfo`, which has no resource-server credentials): not
/// revoked, its person enabled, issued under the live grant of that person to that client for
/// that server.
pub async fn access_token_live(db: &Db, audience: &str, token: &TokenFacts<'_>) -> Result<bool> {
    if audience.contains('\0') || token.client_id.contains('\0') {
        return Ok(false);
    }
    let sql = "SELECT NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1) AND EXISTS (SELECT 1 \
               FROM grants g JOIN users u ON u.id = g.user_id JOIN resources r ON r.id = g.resource_id \
               WHERE g.user_id = $2 AND g.client_id = $3 AND r.uri = $4 AND g.revoked_at IS NULL \
               AND NOT u.disabled AND g.created_at <= $5)";
    dispatch!(db, |pool| Ok(sqlx::query_scalar(sql)
        .bind(token.jti)
        .bind(token.user_id)
        .bind(token.client_id)
        .bind(audience)
        .bind(token.issued_at)
        .fetch_one(pool)
        .await?))
}
