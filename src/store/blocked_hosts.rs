//! Metadata-document hosts blocked at run time by an operator.

use super::{Db, Result, StoreError, dispatch, dispatch_write};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BlockedHost {
    pub host: String,
    pub blocked_by: String,
    pub created_at: i64,
}

pub async fn list(db: &Db) -> Result<Vec<BlockedHost>> {
    dispatch!(db, |pool| sqlx::query_as::<_, BlockedHost>(
        "SELECT host, blocked_by, created_at FROM blocked_hosts ORDER BY host"
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::from_sqlx))
}

/// Blocks `host` (already normalised); blocking it again changes nothing.
pub async fn add(db: &Db, host: &str, by: &str, now: i64) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO blocked_hosts (host, blocked_by, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    )
    .bind(host)
    .bind(by)
    .bind(now)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    Ok(())
}

pub async fn remove(db: &Db, host: &str) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query("DELETE FROM blocked_hosts WHERE host = $1")
        .bind(host)
        .execute(pool)
        .await
        .map_err(StoreError::from_sqlx)?
        .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// Whether `host` or one of its parent domains is blocked (`a.b.example` is covered by `b.example`):
/// one query, as it runs for every metadata-document client's request.
pub async fn covers(db: &Db, host: &str) -> Result<bool> {
    let mut candidates = vec![host];
    let mut rest = host;
    while let Some((_, parent)) = rest.split_once('.') {
        candidates.push(parent);
        rest = parent;
    }
    let placeholders: Vec<String> = (1..=candidates.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT COUNT(*) FROM blocked_hosts WHERE host IN ({})", placeholders.join(", "));
    let found: i64 = dispatch!(db, |pool| {
        let mut q = sqlx::query_scalar(&sql);
        for c in &candidates {
            q = q.bind(*c);
        }
        q.fetch_one(pool).await?
    });
    Ok(found > 0)
}
