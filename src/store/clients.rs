//! OAuth clients: pre-registered (CLI/config), dynamically registered (RFC 7591), and cached
//! Client ID Metadata Documents. Metadata is stored as the JSON document we echo back.

use crate::clients::ClientId;

use super::tx::{WriteTx, on, write_once};
use super::{Db, Result, StoreError, dispatch, dispatch_write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Static,
    Dynamic,
    MetadataDocument,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Static => "static",
            ClientKind::Dynamic => "dynamic",
            ClientKind::MetadataDocument => "metadata_document",
        }
    }
    fn parse(s: &str) -> Option<ClientKind> {
        match s {
            "static" => Some(ClientKind::Static),
            "dynamic" => Some(ClientKind::Dynamic),
            "metadata_document" => Some(ClientKind::MetadataDocument),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
struct Row {
    client_id: ClientId,
    kind: String,
    client_name: Option<String>,
    metadata: String,
    secret_hash: Option<Vec<u8>>,
    registration_token_hash: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
    last_used_at: Option<i64>,
    metadata_expires_at: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Client {
    pub client_id: ClientId,
    pub kind: ClientKind,
    pub client_name: Option<String>,
    /// The registered metadata as JSON (RFC 7591 field names).
    pub metadata: serde_json::Value,
    pub secret_hash: Option<Vec<u8>>,
    pub registration_token_hash: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_used_at: Option<i64>,
    pub metadata_expires_at: Option<i64>,
}

impl TryFrom<Row> for Client {
    type Error = StoreError;
    /// Metadata that no longer parses is a corrupt row: an error, never a client without metadata.
    fn try_from(r: Row) -> Result<Client> {
        let metadata = serde_json::from_str(&r.metadata)
            .map_err(|e| StoreError::Corrupt(format!("client {:?}: metadata is not JSON: {e}", r.client_id)))?;
        let kind = ClientKind::parse(&r.kind)
            .ok_or_else(|| StoreError::Corrupt(format!("client {:?}: unknown kind {:?}", r.client_id, r.kind)))?;
        Ok(Client {
            client_id: r.client_id,
            kind,
            client_name: r.client_name,
            metadata,
            secret_hash: r.secret_hash,
            registration_token_hash: r.registration_token_hash,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_used_at: r.last_used_at,
            metadata_expires_at: r.metadata_expires_at,
        })
    }
}

#[derive(Clone, Debug)]
pub struct NewClient {
    pub client_id: String,
    pub kind: ClientKind,
    pub client_name: Option<String>,
    pub metadata: serde_json::Value,
    pub secret_hash: Option<Vec<u8>>,
    pub registration_token_hash: Option<Vec<u8>>,
    pub metadata_expires_at: Option<i64>,
    /// Where a dynamic registration came from (per-IP limits, shared by every node).
    pub registered_ip: Option<String>,
}

const COLUMNS: &str = "client_id, kind, client_name, metadata, secret_hash, registration_token_hash, \
                       created_at, updated_at, last_used_at, metadata_expires_at";

pub async fn create(db: &Db, c: &NewClient, now: i64) -> Result<Client> {
    insert(db, c, None, None, now).await
}

/// Registers a dynamic client from `network` (what the per-address cap counts, see
/// [`registrations_from`]) and records `event` in the same transaction: no client without its
/// audit row, one commit.
pub async fn register(
    db: &Db,
    c: &NewClient,
    network: Option<&str>,
    event: &super::audit::Event<'_>,
    now: i64,
) -> Result<Client> {
    // One round trip: the client and its event in one statement (Postgres) or one batch (SQLite).
    static SQL: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
        let insert = format!(
            "INSERT INTO clients (client_id, kind, client_name, metadata, secret_hash, registration_token_hash, \
             created_at, updated_at, metadata_expires_at, registered_ip, registered_net) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10) RETURNING {COLUMNS}"
        );
        let event = format!(
            "INSERT INTO audit_events {} VALUES ($11, $12, $13, $14, $15, $16, $17, $18)",
            super::audit::COLUMNS
        );
        (format!("BEGIN IMMEDIATE; {insert}; {event}; COMMIT"), format!("WITH event AS ({event}) {insert}"))
    });
    let e = super::audit::Values::of(event, now);
    let metadata = c.metadata.to_string();
    let rows: Vec<Row> = write_once!(db, sqlite: &SQL.0, postgres: &SQL.1, |q| q
        .bind(&c.client_id)
        .bind(c.kind.as_str())
        .bind(&c.client_name)
        .bind(&metadata)
        .bind(&c.secret_hash)
        .bind(&c.registration_token_hash)
        .bind(now)
        .bind(c.metadata_expires_at)
        .bind(&c.registered_ip)
        .bind(network)
        .bind(e.id)
        .bind(e.at)
        .bind(e.event)
        .bind(e.actor)
        .bind(e.user_id)
        .bind(e.client_id)
        .bind(e.ip)
        .bind(e.details))
    .map_err(|err| StoreError::on_conflict(err, || format!("a client with id {:?} already exists", c.client_id)))?;
    rows.into_iter().next().ok_or(StoreError::NotFound)?.try_into()
}

async fn insert(
    db: &Db,
    new: &NewClient,
    network: Option<&str>,
    event: Option<&super::audit::Event<'_>>,
    now: i64,
) -> Result<Client> {
    let mut tx = WriteTx::begin(db).await?;
    let client = insert_in(&mut tx, new, network, now).await?;
    if let Some(event) = event {
        tx.insert_audit(event, now).await?;
    }
    tx.commit().await?;
    Ok(client)
}

/// Inserts a client inside `tx` (with what else belongs to it, e.g. a machine client's reach);
/// `network` is the registering address's network, for dynamic clients.
pub(crate) async fn insert_in(tx: &mut WriteTx, new: &NewClient, network: Option<&str>, now: i64) -> Result<Client> {
    let sql = format!(
        "INSERT INTO clients (client_id, kind, client_name, metadata, secret_hash, registration_token_hash, \
         created_at, updated_at, metadata_expires_at, registered_ip, registered_net) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    let metadata = new.metadata.to_string();
    let row: Row = on!(tx, |c| sqlx::query_as(&sql)
        .bind(&new.client_id)
        .bind(new.kind.as_str())
        .bind(&new.client_name)
        .bind(&metadata)
        .bind(&new.secret_hash)
        .bind(&new.registration_token_hash)
        .bind(now)
        .bind(new.metadata_expires_at)
        .bind(&new.registered_ip)
        .bind(network)
        .fetch_one(c)
        .await
        .map_err(|e| StoreError::on_conflict(e, || format!("a client with id {:?} already exists", new.client_id)))?);
    row.try_into()
}

fn upsert_sql() -> String {
    format!(
        "INSERT INTO clients (client_id, kind, client_name, metadata, secret_hash, registration_token_hash, \
         created_at, updated_at, metadata_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
         ON CONFLICT (client_id) DO UPDATE SET kind = excluded.kind, client_name = excluded.client_name, \
         metadata = excluded.metadata, secret_hash = excluded.secret_hash, \
         registration_token_hash = excluded.registration_token_hash, updated_at = excluded.updated_at, \
         metadata_expires_at = excluded.metadata_expires_at RETURNING {COLUMNS}"
    )
}

/// Creates or replaces a client declared in configuration (or a refreshed metadata document),
/// keeping `created_at`, `last_used_at` and the client's grants.
pub async fn upsert(db: &Db, c: &NewClient, now: i64) -> Result<Client> {
    let mut tx = WriteTx::begin(db).await?;
    let client = upsert_in(&mut tx, c, now).await?;
    tx.commit().await?;
    Ok(client)
}

/// [`upsert`] inside `tx`.
pub(crate) async fn upsert_in(tx: &mut WriteTx, c: &NewClient, now: i64) -> Result<Client> {
    let sql = upsert_sql();
    let metadata = c.metadata.to_string();
    let row: Row = on!(tx, |conn| sqlx::query_as(&sql)
        .bind(&c.client_id)
        .bind(c.kind.as_str())
        .bind(&c.client_name)
        .bind(&metadata)
        .bind(&c.secret_hash)
        .bind(&c.registration_token_hash)
        .bind(now)
        .bind(c.metadata_expires_at)
        .fetch_one(conn)
        .await?);
    row.try_into()
}

/// Replaces a dynamic client's metadata and secret (RFC 7592 update).
pub async fn update_metadata(
    db: &Db,
    client_id: &str,
    client_name: Option<&str>,
    metadata: &serde_json::Value,
    secret_hash: Option<&[u8]>,
    now: i64,
) -> Result<Client> {
    let sql = format!(
        "UPDATE clients SET client_name = $1, metadata = $2, secret_hash = $3, updated_at = $4 \
         WHERE client_id = $5 RETURNING {COLUMNS}"
    );
    let metadata = metadata.to_string();
    let row: Option<Row> = dispatch_write!(db, |pool| sqlx::query_as(&sql)
        .bind(client_name)
        .bind(&metadata)
        .bind(secret_hash)
        .bind(now)
        .bind(client_id)
        .fetch_optional(pool)
        .await?);
    row.ok_or(StoreError::NotFound)?.try_into()
}

pub async fn get(db: &Db, client_id: &str) -> Result<Option<Client>> {
    if client_id.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM clients WHERE client_id = $1");
    let row: Option<Row> = dispatch!(db, |pool| sqlx::query_as(&sql).bind(client_id).fetch_optional(pool).await?);
    row.map(Client::try_from).transpose()
}

pub async fn list(db: &Db) -> Result<Vec<Client>> {
    let sql = format!("SELECT {COLUMNS} FROM clients ORDER BY kind, created_at, client_id");
    let rows: Vec<Row> = dispatch!(db, |pool| sqlx::query_as(&sql).fetch_all(pool).await?);
    rows.into_iter().map(Client::try_from).collect()
}

pub async fn count_by_kind(db: &Db, kind: ClientKind) -> Result<i64> {
    dispatch!(db, |pool| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM clients WHERE kind = $1")
        .bind(kind.as_str())
        .fetch_one(pool)
        .await
        .map_err(StoreError::from))
}

/// Deletes a client; its grants, codes and refresh tokens go with it (cascade).
pub async fn remove(db: &Db, client_id: &str) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query("DELETE FROM clients WHERE client_id = $1")
        .bind(client_id)
        .execute(pool)
        .await?
        .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// Records use at most once a minute per client, so hot paths do not write on every request.
pub async fn touch(db: &Db, client_id: &str, now: i64) -> Result<()> {
    dispatch_write!(db, |pool| {
        sqlx::query(
        "UPDATE clients SET last_used_at = $1 WHERE client_id = $2 AND (last_used_at IS NULL OR last_used_at < $1 - 60)"
    )
    .bind(now)
    .bind(client_id)
    .execute(pool)
    .await?
    .rows_affected()
    });
    Ok(())
}

/// Dynamic registrations from this network (an IPv4 address or an IPv6 network, as
/// `net::AddressKey` writes it) since `since`.
pub async fn registrations_from(db: &Db, network: &str, since: i64) -> Result<i64> {
    dispatch!(db, |pool| Ok(sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM clients WHERE registered_net = $1 AND created_at >= $2"
    )
    .bind(network)
    .bind(since)
    .fetch_one(pool)
    .await?))
}

/// Stores a metadata-document client's logo, fetched through the hardened fetcher.
pub async fn set_logo(db: &Db, client_id: &str, logo: Option<(&[u8], &str)>) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "UPDATE clients SET logo = $1, logo_content_type = $2 WHERE client_id = $3"
    )
    .bind(logo.map(|l| l.0))
    .bind(logo.map(|l| l.1))
    .bind(client_id)
    .execute(pool)
    .await?
    .rows_affected());
    Ok(())
}

pub async fn logo(db: &Db, client_id: &str) -> Result<Option<(Vec<u8>, String)>> {
    let row: Option<(Option<Vec<u8>>, Option<String>)> =
        dispatch!(db, |pool| sqlx::query_as("SELECT logo, logo_content_type FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(pool)
            .await?);
    Ok(match row {
        Some((Some(bytes), Some(ct))) => Some((bytes, ct)),
        _ => None,
    })
}

/// Deletes dynamically registered clients never used since `unused_before`, or not used since
/// `idle_before`, with everything granted to them. Each row is deleted by exactly one caller, so
/// nodes may run this at the same time; returns the ids this call deleted.
pub async fn delete_stale_dynamic(db: &Db, unused_before: i64, idle_before: i64) -> Result<Vec<String>> {
    dispatch_write!(db, |pool| Ok(sqlx::query_scalar::<_, String>(
        "DELETE FROM clients WHERE kind = 'dynamic' AND \
         ((last_used_at IS NULL AND created_at < $1) OR (last_used_at IS NOT NULL AND last_used_at < $2)) \
         RETURNING client_id"
    )
    .bind(unused_before)
    .bind(idle_before)
    .fetch_all(pool)
    .await?))
}
