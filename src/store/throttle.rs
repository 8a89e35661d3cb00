//! Failed sign-ins by key (`user:NAME`, `ip:ADDR`), in the database so every node enforces the
//! same lock. Failures older than a day are forgotten at the next failure.

use super::tx::{WriteTx, on};
use super::{Db, Result, dispatch, dispatch_write};

/// The latest lock among `keys` (0 when none).
pub async fn locked_until(db: &Db, keys: &[&str]) -> Result<i64> {
    let mut until = 0;
    for key in keys {
        let t: Option<i64> =
            dispatch!(db, |pool| sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
                .bind(*key)
                .fetch_optional(pool)
                .await?);
        until = until.max(t.unwrap_or(0));
    }
    Ok(until)
}

/// Counts a failure; from `max_failures` on, locks for `lockout` doubled per further failure
/// (capped at a day). Returns (failures, locked_until).
pub async fn record_failure(db: &Db, key: &str, now: i64, max_failures: u32, lockout: i64) -> Result<(i64, i64)> {
    let mut tx = WriteTx::begin(db).await?;
    let select = format!("SELECT failures, updated_at FROM login_throttle WHERE key = $1{}", tx.for_update());
    let row: Option<(i64, i64)> = on!(tx, |c| sqlx::query_as(&select).bind(key).fetch_optional(c).await?);
    let failures = match row {
        Some((n, updated)) if updated > now - 86_400 => n + 1,
        _ => 1,
    };
    let over = failures - i64::from(max_failures);
    let locked_until = if over >= 0 { now + (lockout << over.min(16)).min(86_400) } else { 0 };
    on!(tx, |c| sqlx::query(
        "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until, \
         updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(failures)
    .bind(locked_until)
    .bind(now)
    .execute(c)
    .await?
    .rows_affected());
    tx.commit().await?;
    Ok((failures, locked_until))
}

pub async fn clear(db: &Db, key: &str) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?
        .rows_affected());
    Ok(())
}
