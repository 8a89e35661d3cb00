//! Failed sign-ins by key, in the database so every node enforces the same limits: per account
//! and address (`pair:`), per account (`user:`) and per address (`ip:`); the policy is
//! `users::throttle`. A failure unrepeated for a day is forgotten: the next one counts from 1.
//!
//! An attempt is counted before its password is checked ([`reserve`]), in one transaction with
//! the check of the locks, so a parallel burst cannot get more guesses evaluated than the limit
//! allows: each count is an upsert that increments the stored value (on Postgres two first
//! failures racing on a missing row would otherwise both write 1), and the row stays locked
//! until the transaction ends, so the next attempt on the key sees this one's count and lock.

use super::tx::{WriteTx, on};
use super::{Db, Result};

/// Failures are counted in a sliding day: a key whose last failure is older starts again at 1.
const WINDOW: i64 = 86_400;

/// One key's state after counting the attempt being made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Failures in the window, this attempt included.
    pub failures: i64,
    /// Until when the key was locked before this attempt (0: never).
    pub locked_until: i64,
}

/// The three keys' counts for one attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub pair: Count,
    pub account: Count,
    pub address: Count,
}

/// What the policy decided about a counted attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Refused while locked until then: the count is rolled back, nothing is written.
    Refuse(i64),
    /// Checked: the count stands (a success takes it back, [`succeeded`]); these new locks are
    /// written with it.
    Admit { pair_lock: Option<i64>, address_lock: Option<i64> },
}

/// The keys of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Keys<'a> {
    pub pair: &'a str,
    pub account: &'a str,
    pub address: &'a str,
}

/// Counts an attempt as a failure under each key and lets `decide` (the policy) admit or refuse
/// it, in one transaction: a refusal writes nothing.
pub async fn reserve(
    db: &Db,
    keys: Keys<'_>,
    now: i64,
    decide: impl FnOnce(&Counts) -> Decision,
) -> Result<(Counts, Decision)> {
    let mut tx = WriteTx::begin(db).await?;
    let mut counts = Counts::default();
    for (key, count) in
        [(keys.pair, &mut counts.pair), (keys.account, &mut counts.account), (keys.address, &mut counts.address)]
    {
        let (failures, locked_until): (i64, i64) = on!(tx, |c| sqlx::query_as(
            "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, 1, 0, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = CASE WHEN login_throttle.updated_at > $3 \
             THEN login_throttle.failures + 1 ELSE 1 END, updated_at = excluded.updated_at \
             RETURNING failures, locked_until"
        )
        .bind(key)
        .bind(now)
        .bind(now - WINDOW)
        .fetch_one(c)
        .await?);
        *count = Count { failures, locked_until };
    }
    let decision = decide(&counts);
    match decision {
        // Dropped uncommitted: rolled back.
        Decision::Refuse(_) => return Ok((counts, decision)),
        Decision::Admit { pair_lock, address_lock } => {
            for (key, until) in [(keys.pair, pair_lock), (keys.address, address_lock)] {
                let Some(until) = until else { continue };
                on!(tx, |c| sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1")
                    .bind(key)
                    .bind(until)
                    .execute(c)
                    .await?
                    .rows_affected());
            }
        }
    }
    tx.commit().await?;
    Ok((counts, decision))
}

/// Takes back a reserved attempt that succeeded: the account's failures, from here and from
/// everywhere, are forgotten; the address keeps its other failures (people behind one address
/// are not vouched for by one of them signing in), less this attempt, and a lock the attempt set
/// on it is put back as it was (unless a later failure has set another since).
pub async fn succeeded(db: &Db, keys: Keys<'_>, counts: &Counts, decision: &Decision) -> Result<()> {
    let mut tx = WriteTx::begin(db).await?;
    for key in [keys.pair, keys.account] {
        on!(tx, |c| sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(key)
            .execute(c)
            .await?
            .rows_affected());
    }
    on!(tx, |c| sqlx::query("UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0")
        .bind(keys.address)
        .execute(c)
        .await?
        .rows_affected());
    if let Decision::Admit { address_lock: Some(ours), .. } = decision {
        on!(tx, |c| sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1 AND locked_until = $3")
            .bind(keys.address)
            .bind(counts.address.locked_until)
            .bind(ours)
            .execute(c)
            .await?
            .rows_affected());
    }
    tx.commit().await
}
