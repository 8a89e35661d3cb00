//! Audit events: a named record of each security decision. Never holds tokens or secrets.

use uuid::Uuid;

use super::{Db, Result, dispatch, dispatch_write};

#[derive(Clone, Debug, Default)]
pub struct Event<'a> {
    pub event: &'a str,
    pub actor: Option<&'a str>,
    pub user_id: Option<Uuid>,
    pub client_id: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub details: serde_json::Value,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub at: i64,
    pub event: String,
    pub actor: Option<String>,
    pub user_id: Option<Uuid>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub details: String,
}

/// The statement that records `e`, for a connection of either engine or a [`super::tx::WriteTx`].
pub(crate) fn insert_query<'q, DB>(e: &'q Event<'q>, now: i64) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let v = Values::of(e, now);
    sqlx::query(
        "INSERT INTO audit_events (id, at, event, actor, user_id, client_id, ip, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(v.id)
    .bind(v.at)
    .bind(v.event)
    .bind(v.actor)
    .bind(v.user_id)
    .bind(v.client_id)
    .bind(v.ip)
    .bind(v.details)
}

/// An event's column values, in the order of the `INSERT`'s columns, ready to bind: for a store
/// function that records the event in the same statement or batch as its own write.
pub(crate) struct Values<'a> {
    pub id: Uuid,
    pub at: i64,
    pub event: &'a str,
    pub actor: Option<String>,
    pub user_id: Option<Uuid>,
    pub client_id: Option<String>,
    pub ip: Option<&'a str>,
    pub details: String,
}

/// The columns [`Values`] fills, for a statement that inserts an event.
pub(crate) const COLUMNS: &str = "(id, at, event, actor, user_id, client_id, ip, details)";

impl<'a> Values<'a> {
    pub(crate) fn of(e: &'a Event<'a>, now: i64) -> Values<'a> {
        // Actors and client ids come from requests: bounded (a typed "username" or a metadata-document
        // URL may be kilobytes), and NUL replaced (Postgres text cannot hold it).
        let clean = |s: Option<&str>| s.map(|s| bounded(&s.replace('\0', "\u{fffd}")));
        Values {
            id: Uuid::now_v7(),
            at: now,
            event: e.event,
            actor: clean(e.actor),
            user_id: e.user_id,
            client_id: clean(e.client_id),
            ip: e.ip,
            details: if e.details.is_null() { "{}".to_string() } else { e.details.to_string() },
        }
    }
}

/// The longest actor or client id an audit row keeps (in bytes, then an ellipsis).
pub const MAX_FIELD: usize = 512;

fn bounded(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Deletes events recorded before `before`, `batch` rows per statement (short write locks, so
/// sign-ins and token requests keep flowing), at most `max_batches` statements. Returns the rows
/// deleted; fewer than `batch * max_batches` means none older are left.
pub async fn sweep(db: &Db, before: i64, batch: i64, max_batches: u32) -> Result<u64> {
    let mut deleted = 0;
    for _ in 0..max_batches {
        let n = dispatch_write!(db, |pool| sqlx::query(
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)"
        )
        .bind(before)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected());
        deleted += n;
        if n < batch as u64 {
            break;
        }
    }
    Ok(deleted)
}

pub async fn record(db: &Db, e: &Event<'_>, now: i64) -> Result<()> {
    dispatch_write!(db, |pool| insert_query(e, now).execute(pool).await?.rows_affected());
    Ok(())
}

/// Most recent first; `event` filters by name when given.
pub async fn list(db: &Db, event: Option<&str>, limit: i64) -> Result<Vec<EventRow>> {
    search(db, &Filter { event, limit, ..Default::default() }).await
}

#[derive(Clone, Debug, Default)]
pub struct Filter<'a> {
    pub event: Option<&'a str>,
    /// Matches the actor or the user's name.
    pub actor: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub since: Option<i64>,
    /// Paging: only events older than this one (the last id of the previous page).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// Most recent first, filtered by every field that is set.
pub async fn search(db: &Db, f: &Filter<'_>) -> Result<Vec<EventRow>> {
    dispatch!(db, |pool| Ok(sqlx::query_as::<_, EventRow>(
        "SELECT id, at, event, actor, user_id, client_id, ip, details FROM audit_events \
         WHERE ($1 IS NULL OR event = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR client_id = $3) \
         AND ($4 IS NULL OR at >= $4) AND ($6 IS NULL OR id < $6) ORDER BY at DESC, id DESC LIMIT $5"
    )
    .bind(f.event)
    .bind(f.actor)
    .bind(f.client_id)
    .bind(f.since)
    .bind(f.limit)
    .bind(f.before)
    .fetch_all(pool)
    .await?))
}
