//! SQLite connections held by the store instead of sqlx's pool. sqlx runs each SQLite connection
//! on its own thread, so every command is a hand-off to that thread and back; its pool adds a
//! `ping` command each time a connection is returned (and, by default, before it is lent), which
//! costs as much as the statement itself. Measured on the target machine: one `SELECT 1` through
//! the pool cost ~57 µs of server CPU, about two thirds of it the hand-offs around the statement.
//! SQLite connections do not go stale the way network connections do, so nothing here pings.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A fixed set of open connections, lent one at a time in the order they were asked for.
#[derive(Debug)]
pub struct Connections {
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per idle connection; tokio's semaphore is fair, so waiters are served in order.
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl Connections {
    pub async fn open(
        options: &SqliteConnectOptions,
        count: usize,
        acquire_timeout: Duration,
    ) -> Result<Connections, sqlx::Error> {
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(options.connect().await?);
        }
        Ok(Connections { idle: Mutex::new(idle), permits: Semaphore::new(count), acquire_timeout })
    }

    /// A connection for one store call; a caller waits at most the acquire timeout (then the
    /// store answers "unavailable", as it did when sqlx's pool timed out).
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let conn = self.idle.lock().expect("sqlite connections lock").pop().ok_or(sqlx::Error::PoolClosed)?;
        Ok(Lease { conn: Some(conn), home: self, _permit: permit })
    }

    /// Closes the idle connections and refuses new leases (leases still out close when dropped).
    pub async fn close(&self) {
        self.permits.close();
        let conns = std::mem::take(&mut *self.idle.lock().expect("sqlite connections lock"));
        for conn in conns {
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
        // Back on the stack before the permit (a field, dropped after this) admits the next.
        if let Some(conn) = self.conn.take() {
            self.home.idle.lock().expect("sqlite connections lock").push(conn);
        }
    }
}
