//! SQLite connections held by the store instead of sqlx's pool. sqlx runs each SQLite connection
//! on its own thread, so every command is a hand-off to that thread and back; its pool adds a
//! `ping` command each time a connection is returned (and, by default, before it is lent), which
//! costs as much as the statement itself. Measured on the target machine: one `SELECT 1` through
//! the pool cost ~57 µs of server CPU, about two thirds of it the hand-offs around the statement.
//! SQLite connections do not go stale the way network connections do, so nothing here pings on
//! the common path.
//!
//! Cancellation: a store call whose future is dropped (a client hung up, a timeout fired) drops
//! its lease at whatever `.await` it had reached. sqlx copes with most such points (a dropped
//! `Transaction` queues its rollback ahead of the next borrower's commands), but not all: a
//! `BEGIN IMMEDIATE` acknowledged after its caller was dropped leaves a transaction that no
//! `Transaction` value owns, and every later `begin_with` on that connection fails. So before a
//! connection is lent, a connection that sqlx counts as inside a transaction is settled: its
//! queued commands run, whatever is still open is rolled back through sqlx (so sqlx's count and
//! SQLite agree), and a connection that cannot be put right is replaced. The test is one atomic
//! load, so the common path costs nothing; the settling runs inside the new lease, so a borrower
//! dropped while settling leaves the work to the next one.
//!
//! Batches ([`Lease::batch`]): a write that needs no decision between its statements is sent as
//! one string, `BEGIN IMMEDIATE; ...; COMMIT`, one hand-off instead of one per statement. sqlx does
//! not count such a transaction, so the lease marks itself while a batch runs; a batch cut short
//! (its caller dropped, or a statement failed and the rest did not run) leaves the mark, and the
//! connection is rolled back before its next use like any other.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, TransactionManager};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Transactions = <sqlx::Sqlite as sqlx::Database>::TransactionManager;

/// How many times a connection's thread was seen to have stopped (`WorkerCrashed`), in this
/// process. Each connection is checked once (a ping) after every such event, and reopened if dead:
/// the check sqlx's pool made on every return, made only when it can matter.
static CRASHES: AtomicU64 = AtomicU64::new(0);

/// Records that some connection's thread stopped; see [`CRASHES`].
pub fn worker_crashed() {
    CRASHES.fetch_add(1, Ordering::Relaxed);
}

/// A fixed set of open connections, lent one at a time in the order they were asked for.
#[derive(Debug)]
pub struct Connections {
    idle: Mutex<Vec<Idle>>,
    /// One permit per idle connection; tokio's semaphore is fair, so waiters are served in order.
    permits: Arc<Semaphore>,
    count: u32,
    options: SqliteConnectOptions,
    acquire_timeout: Duration,
    /// Connections found inside a transaction when lent, and settled (see the module comment).
    settled: AtomicU64,
}

#[derive(Debug)]
struct Idle {
    conn: SqliteConnection,
    /// The value of [`CRASHES`] when this connection was last known to work.
    checked: u64,
    /// A batch on it did not finish: it may be inside a transaction sqlx does not know of.
    unfinished: bool,
}

impl Connections {
    pub async fn open(
        options: &SqliteConnectOptions,
        count: u32,
        acquire_timeout: Duration,
    ) -> Result<Connections, sqlx::Error> {
        let mut idle = Vec::new();
        for _ in 0..count {
            idle.push(Idle {
                conn: options.connect().await?,
                checked: CRASHES.load(Ordering::Relaxed),
                unfinished: false,
            });
        }
        Ok(Connections {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(count as usize)),
            count,
            options: options.clone(),
            acquire_timeout,
            settled: AtomicU64::new(0),
        })
    }

    /// A connection for one store call; a caller waits at most the acquire timeout (then the
    /// store answers "unavailable", as it did when sqlx's pool timed out).
    pub async fn acquire(self: &Arc<Self>) -> Result<Lease, sqlx::Error> {
        self.acquire_within(self.acquire_timeout).await
    }

    /// [`Connections::acquire`] with the caller's own timeout (a readiness probe waits less).
    pub async fn acquire_within(self: &Arc<Self>, timeout: Duration) -> Result<Lease, sqlx::Error> {
        let permit = tokio::time::timeout(timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let Idle { conn, checked, unfinished } =
            self.idle.lock().expect("sqlite connections lock").pop().ok_or(sqlx::Error::PoolClosed)?;
        let mut lease = Lease { conn: Some(conn), checked, unfinished, home: self.clone(), _permit: permit };
        let crashes = CRASHES.load(Ordering::Relaxed);
        if checked < crashes || unfinished || lease.is_in_transaction() {
            lease.settle().await?;
        }
        lease.checked = crashes;
        Ok(lease)
    }

    /// How many connections were found inside a transaction when lent, and settled.
    pub fn settled(&self) -> u64 {
        self.settled.load(Ordering::Relaxed)
    }

    /// Waits (at most the acquire timeout) for the connections lent out, then closes them all and
    /// refuses new leases.
    pub async fn close(&self) {
        let _all = tokio::time::timeout(self.acquire_timeout, self.permits.acquire_many(self.count)).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("sqlite connections lock"));
        for Idle { conn, .. } in idle {
            let _ = conn.close().await;
        }
    }
}

/// A lent connection; dropping it returns the connection, whatever state it is in (the next
/// borrower settles it, see the module comment).
#[derive(Debug)]
pub struct Lease {
    conn: Option<SqliteConnection>,
    checked: u64,
    unfinished: bool,
    home: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Brings the connection to a known state: queued commands run (a rollback sqlx started for
    /// a dropped `Transaction`, a statement whose caller left), a transaction nobody owns is
    /// rolled back, a dead connection is replaced. On error the lease still holds a connection,
    /// which goes back to be settled by the next borrower.
    async fn settle(&mut self) -> Result<(), sqlx::Error> {
        let batch_cut = self.unfinished;
        let conn: &mut SqliteConnection = self;
        let mut sound = conn.ping().await.is_ok();
        if sound && batch_cut {
            // "No transaction is active" when the batch got as far as its `COMMIT`: not an error.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            sound = conn.ping().await.is_ok();
        }
        let was_open = sound && (batch_cut || conn.is_in_transaction());
        while sound && conn.is_in_transaction() {
            sound = Transactions::rollback(conn).await.is_ok();
        }
        if sound {
            self.unfinished = false;
            if was_open {
                self.home.settled.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "a SQLite connection came back inside a transaction (its caller was cancelled); rolled back"
                );
            }
            return Ok(());
        }
        let fresh = self.home.options.connect().await?;
        tracing::warn!("a SQLite connection could not be checked or rolled back; replaced it");
        // Dropping the old connection ends its thread; SQLite rolls back what it left open.
        self.conn = Some(fresh);
        self.unfinished = false;
        Ok(())
    }

    /// Runs a batch, `BEGIN IMMEDIATE; statements; COMMIT` in one string, in one hand-off: the
    /// same `$N` arguments are bound in every statement, and the rows they produce (`RETURNING`)
    /// come back. For writes with no decision between their statements; conditions go
    /// in the SQL (`WHERE changes() = 1`). On error nothing is committed.
    pub async fn batch<'q, O>(
        &mut self,
        query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        debug_assert!(!self.is_in_transaction(), "a batch is its own transaction");
        self.unfinished = true;
        let rows = query.fetch_all(&mut **self).await;
        if rows.is_err() {
            // The statements after the failed one did not run: the transaction may be open.
            let _ = sqlx::query("ROLLBACK").execute(&mut **self).await;
        }
        self.unfinished = false;
        rows
    }
}

impl Deref for Lease {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // After `close`, a connection coming back is dropped, which closes it.
        if !self.home.permits.is_closed() {
            // Back on the stack before the permit (a field, dropped after this) admits the next.
            let (checked, unfinished) = (self.checked, self.unfinished);
            self.home.idle.lock().expect("sqlite connections lock").push(Idle { conn, checked, unfinished });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    async fn one_connection(timeout_ms: u64) -> Arc<Connections> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").unwrap();
        Arc::new(Connections::open(&options, 1, Duration::from_millis(timeout_ms)).await.unwrap())
    }

    #[tokio::test]
    async fn a_busy_set_times_out_then_lends_again() {
        let conns = one_connection(100).await;
        let lease = conns.acquire().await.unwrap();
        assert!(matches!(conns.acquire().await, Err(sqlx::Error::PoolTimedOut)));
        drop(lease);
        let mut lease = conns.acquire().await.unwrap();
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *lease).await.unwrap();
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn waiters_are_served_in_order() {
        let conns = one_connection(5_000).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let held = conns.acquire().await.unwrap();
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (conns, order) = (conns.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _lease = conns.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
            }));
            // Each waiter queues before the next is spawned.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn close_waits_for_leases_and_then_refuses() {
        let conns = one_connection(5_000).await;
        let lease = conns.acquire().await.unwrap();
        let closing = {
            let conns = conns.clone();
            tokio::spawn(async move { conns.close().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!closing.is_finished(), "close waits for the connection lent out");
        drop(lease);
        closing.await.unwrap();
        assert!(matches!(conns.acquire().await, Err(sqlx::Error::PoolClosed)));
        assert!(conns.idle.lock().unwrap().is_empty(), "every connection was closed");
    }

    async fn count(conns: &Arc<Connections>) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&mut *conns.acquire().await.unwrap()).await.unwrap()
    }

    async fn with_table(conns: &Arc<Connections>) {
        sqlx::query("CREATE TABLE t (n INTEGER)").execute(&mut *conns.acquire().await.unwrap()).await.unwrap();
    }

    #[tokio::test]
    async fn a_transaction_nobody_owns_is_rolled_back_before_the_next_lease() {
        let conns = one_connection(1_000).await;
        with_table(&conns).await;
        let mut lease = conns.acquire().await.unwrap();
        let mut tx = lease.begin_with("BEGIN IMMEDIATE").await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *tx).await.unwrap();
        // What a BEGIN acknowledged after its caller was dropped leaves: an open transaction that
        // no `Transaction` value owns.
        std::mem::forget(tx);
        drop(lease);
        let mut lease = conns.acquire().await.unwrap();
        assert!(!lease.is_in_transaction());
        lease.begin_with("BEGIN IMMEDIATE").await.expect("the next writer can begin").commit().await.unwrap();
        drop(lease);
        assert_eq!(count(&conns).await, 0, "the orphaned insert was rolled back");
        assert_eq!(conns.settled(), 1);
    }

    /// Drops a write transaction's future after `micros`: at every await point of begin, insert
    /// and commit in turn, as a hung-up client does. Whether the write finished.
    async fn cut_after(conns: &Arc<Connections>, micros: u64) -> bool {
        let write = async {
            let mut lease = conns.acquire().await.unwrap();
            let mut tx = lease.begin_with("BEGIN IMMEDIATE").await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        };
        let cut = async {
            // Finer than tokio's millisecond timer.
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_micros(micros) {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            () = write => true,
            () = cut => false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_cut_at_any_point_leave_the_connection_usable() {
        let options = SqliteConnectOptions::from_str(&format!(
            "sqlite://{}/cut.db",
            std::env::temp_dir().join(format!("portcullis-cut-{}", std::process::id())).display()
        ))
        .unwrap()
        .create_if_missing(true);
        std::fs::create_dir_all(std::env::temp_dir().join(format!("portcullis-cut-{}", std::process::id()))).unwrap();
        let conns = Arc::new(Connections::open(&options, 1, Duration::from_secs(5)).await.unwrap());
        with_table(&conns).await;
        let (mut finished, mut cut) = (0, 0);
        for i in 0..2_000 {
            match cut_after(&conns, (i * 7) % 4_000).await {
                true => finished += 1,
                false => cut += 1,
            }
        }
        assert!(finished > 0 && cut > 0, "both outcomes seen: {finished} finished, {cut} cut");
        assert!(conns.settled() > 0, "some writes were cut inside their transaction");
        // Every write that finished is there; a cut one may or may not have committed, never half.
        let rows = count(&conns).await;
        assert!(rows >= finished, "{rows} rows, {finished} finished writes");
        assert!(rows <= 2_000);
        let mut lease = conns.acquire().await.unwrap();
        lease.begin_with("BEGIN IMMEDIATE").await.expect("still writable").commit().await.unwrap();
        drop(lease);
        conns.close().await;
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("portcullis-cut-{}", std::process::id())));
    }

    #[tokio::test]
    async fn a_failed_batch_commits_nothing_and_leaves_the_connection_usable() {
        let conns = one_connection(1_000).await;
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&mut *conns.acquire().await.unwrap())
            .await
            .unwrap();
        let mut lease = conns.acquire().await.unwrap();
        // The second insert breaks the key: the statements after it never run, COMMIT included.
        let failed = lease
            .batch(
                sqlx::query_as::<_, (i64,)>(
                    "BEGIN IMMEDIATE; INSERT INTO t VALUES ($1) RETURNING n; INSERT INTO t VALUES ($1); COMMIT",
                )
                .bind(7_i64),
            )
            .await;
        assert!(failed.is_err());
        let rows = lease
            .batch(
                sqlx::query_as::<_, (i64,)>("BEGIN IMMEDIATE; INSERT INTO t VALUES ($1) RETURNING n; COMMIT")
                    .bind(8_i64),
            )
            .await
            .expect("the next batch begins: the failed one was rolled back");
        assert_eq!(rows, vec![(8,)]);
        drop(lease);
        assert_eq!(count(&conns).await, 1, "nothing of the failed batch was kept");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_cut_at_any_point_are_all_or_nothing() {
        let dir = std::env::temp_dir().join(format!("portcullis-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}/batch.db", dir.display()))
            .unwrap()
            .create_if_missing(true);
        let conns = Arc::new(Connections::open(&options, 1, Duration::from_secs(5)).await.unwrap());
        with_table(&conns).await;
        let (mut finished, mut cut) = (0, 0);
        for i in 0..2_000u64 {
            let write =
                async {
                    let mut lease = conns.acquire().await.unwrap();
                    lease
                    .batch(sqlx::query_as::<_, (i64,)>(
                        "BEGIN IMMEDIATE; INSERT INTO t VALUES ($1); INSERT INTO t VALUES ($1) RETURNING n; COMMIT",
                    )
                    .bind(i as i64))
                    .await
                    .unwrap();
                };
            let stop = async {
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_micros((i * 7) % 4_000) {
                    tokio::task::yield_now().await;
                }
            };
            tokio::select! {
                biased;
                () = write => finished += 1,
                () = stop => cut += 1,
            }
        }
        assert!(finished > 0 && cut > 0, "both outcomes seen: {finished} finished, {cut} cut");
        let rows = count(&conns).await;
        assert!(conns.settled() > 0, "some batches were cut after they began");
        assert_eq!(rows % 2, 0, "every batch wrote both rows or neither: {rows} rows");
        assert!(rows >= 2 * finished as i64, "{rows} rows, {finished} finished batches");
        let mut lease = conns.acquire().await.unwrap();
        lease.begin_with("BEGIN IMMEDIATE").await.expect("still writable").commit().await.unwrap();
        drop(lease);
        conns.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn after_a_crash_each_connection_is_checked_once() {
        let conns = one_connection(1_000).await;
        let before = conns.acquire().await.unwrap().checked;
        worker_crashed();
        let lease = conns.acquire().await.unwrap();
        assert!(lease.checked > before, "checked (a ping) and marked current");
        drop(lease);
        assert_eq!(conns.idle.lock().unwrap()[0].checked, CRASHES.load(Ordering::Relaxed));
    }
}
