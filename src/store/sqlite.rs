//! SQLite connections held by the store instead of sqlx's pool. sqlx runs each SQLite connection
//! on its own thread, so every command is a hand-off to that thread and back; its pool adds a
//! `ping` command each time a connection is returned (and, by default, before it is lent), which
//! costs as much as the statement itself. Measured on the target machine: one `SELECT 1` through
//! the pool cost ~57 µs of server CPU, about two thirds of it the hand-offs around the statement.
//! SQLite connections do not go stale the way network connections do, so nothing here pings.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

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
    permits: Semaphore,
    count: u32,
    options: SqliteConnectOptions,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    conn: SqliteConnection,
    /// The value of [`CRASHES`] when this connection was last known to work.
    checked: u64,
}

impl Connections {
    pub async fn open(
        options: &SqliteConnectOptions,
        count: u32,
        acquire_timeout: Duration,
    ) -> Result<Connections, sqlx::Error> {
        let mut idle = Vec::new();
        for _ in 0..count {
            idle.push(Idle { conn: options.connect().await?, checked: CRASHES.load(Ordering::Relaxed) });
        }
        Ok(Connections {
            idle: Mutex::new(idle),
            permits: Semaphore::new(count as usize),
            count,
            options: options.clone(),
            acquire_timeout,
        })
    }

    /// A connection for one store call; a caller waits at most the acquire timeout (then the
    /// store answers "unavailable", as it did when sqlx's pool timed out).
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let Idle { mut conn, checked } =
            self.idle.lock().expect("sqlite connections lock").pop().ok_or(sqlx::Error::PoolClosed)?;
        let crashes = CRASHES.load(Ordering::Relaxed);
        if checked < crashes && sqlx::Connection::ping(&mut conn).await.is_err() {
            match self.options.connect().await {
                Ok(fresh) => conn = fresh,
                Err(e) => {
                    // Keep the count of connections: the dead one stays, to be retried next time.
                    self.idle.lock().expect("sqlite connections lock").push(Idle { conn, checked });
                    return Err(e);
                }
            }
        }
        Ok(Lease { conn: Some(conn), checked: crashes, home: self, _permit: permit })
    }

    /// Waits (at most the acquire timeout) for the connections lent out, then closes them all and
    /// refuses new leases.
    pub async fn close(&self) {
        let _all = tokio::time::timeout(self.acquire_timeout, self.permits.acquire_many(self.count)).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().expect("sqlite connections lock"));
        for Idle { conn, .. } in idle {
            let _ = sqlx::Connection::close(conn).await;
        }
    }
}

/// A lent connection; dropping it returns the connection. A statement or transaction cancelled
/// mid-way is safe to hand on: sqlx queues its completion (or rollback) on the connection's own
/// thread ahead of the next borrower's commands.
#[derive(Debug)]
pub struct Lease<'a> {
    conn: Option<SqliteConnection>,
    checked: u64,
    home: &'a Connections,
    _permit: SemaphorePermit<'a>,
}

impl Deref for Lease<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("a lease holds its connection until dropped")
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // After `close`, a connection coming back is dropped, which closes it.
        if !self.home.permits.is_closed() {
            // Back on the stack before the permit (a field, dropped after this) admits the next.
            self.home.idle.lock().expect("sqlite connections lock").push(Idle { conn, checked: self.checked });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    async fn one_connection(timeout_ms: u64) -> Connections {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").unwrap();
        Connections::open(&options, 1, Duration::from_millis(timeout_ms)).await.unwrap()
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
        let conns = std::sync::Arc::new(one_connection(5_000).await);
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
        let conns = std::sync::Arc::new(one_connection(5_000).await);
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
