//! Storage on SQLite (embedded default) and Postgres through sqlx: one `Db` type, native
//! connections underneath (sqlx's pool for Postgres, a set of our own for SQLite, see
//! [`sqlite`]), each query written once where the dialect is shared. Transactions live here.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

pub mod admin_tokens;
pub mod audit;
pub mod blocked_hosts;
pub mod clients;
pub mod codes;
mod columns;
pub mod grants;
pub mod groups;
pub mod identities;
pub mod keys;
pub mod machine_clients;
pub mod refresh;
pub mod registration;
pub mod resources;
pub mod revocations;
pub mod server_secrets;
pub mod sessions;
pub mod sqlite;
pub mod throttle;
pub(crate) mod tx;
pub mod users;

/// Runs `$body` with `$pool` bound to the engine's native executor: `&PgPool`, or on SQLite a
/// `&mut SqliteConnection` lent for the body's duration. The body is type-checked per engine and
/// runs one statement (transactions are [`tx::WriteTx`]). For reads: on SQLite the connection is
/// one of the readers. Waiting for a connection past the timeout
/// returns `Unavailable` from the enclosing function.
macro_rules! dispatch {
    ($db:expr, |$pool:ident| $body:expr) => {
        $crate::store::dispatch!(@lend readers, $db, |$pool| $body)
    };
    (@lend $side:ident, $db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(sqlite) => {
                let mut lease = sqlite.$side.acquire().await.map_err($crate::store::StoreError::from_sqlx)?;
                let $pool: &mut sqlx::sqlite::SqliteConnection = &mut lease;
                $body
            }
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch;

/// [`dispatch!`] for statements that write: on SQLite `$pool` is the single writing connection,
/// so writers queue in order here instead of sleeping in SQLite's busy handler.
macro_rules! dispatch_write {
    ($db:expr, |$pool:ident| $body:expr) => {
        $crate::store::dispatch!(@lend writer, $db, |$pool| $body)
    };
}
pub(crate) use dispatch_write;

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(Sqlite),
    Postgres(PgPool),
}

/// SQLite allows one writer at a time. Writes go through a single connection, where they wait
/// their turn in order; reads use the other connections, which WAL never blocks (an in-memory
/// database has one connection for both). With writers on
/// every connection, the losers slept in SQLite's busy handler (1, 2, 5, ... 100 ms) and the tail
/// latency of every writing endpoint was that sleep.
#[derive(Clone, Debug)]
pub struct Sqlite {
    readers: std::sync::Arc<sqlite::Connections>,
    writer: std::sync::Arc<sqlite::Connections>,
    writer_check: std::sync::Arc<WriterCheck>,
}

/// Readiness checks of the writing connection, one at a time. A probe that arrives while a check
/// runs waits for the next one and takes its answer: a flood of probes puts one check at a time
/// in the writers' queue, and no probe gets an answer older than itself.
#[derive(Debug, Default)]
struct WriterCheck {
    /// Checks started so far; a check numbered above a probe's arrival count began after it.
    started: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<(u64, std::result::Result<(), String>)>>,
}

impl Sqlite {
    /// A reading connection, for statements a test or tool writes itself.
    pub async fn read(&self) -> Result<sqlite::Lease> {
        self.readers.acquire().await.map_err(StoreError::from_sqlx)
    }

    /// The writing connection, for statements a test or tool writes itself.
    pub async fn write(&self) -> Result<sqlite::Lease> {
        self.writer.acquire().await.map_err(StoreError::from_sqlx)
    }

    /// Connections found inside a transaction when lent and rolled back (a cancelled caller's).
    pub fn settled(&self) -> u64 {
        match std::sync::Arc::ptr_eq(&self.readers, &self.writer) {
            true => self.writer.settled(),
            false => self.readers.settled() + self.writer.settled(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key already holds this value; the message names it for the person.
    #[error("{0}")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Input the database cannot store (Postgres refuses NUL characters in text).
    #[error("the request contains characters that cannot be stored")]
    InvalidInput,
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A row that no longer decodes into its type (edited by hand, or a bug): never papered over.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from_sqlx(e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Maps a unique-key violation to `Conflict(what)`, everything else unchanged.
    pub fn on_conflict(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what()),
            _ => StoreError::from_sqlx(e),
        }
    }

    pub fn from_sqlx(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            // A SQLite connection's thread stopped: the connections are checked before their next use.
            sqlx::Error::WorkerCrashed => {
                sqlite::worker_crashed();
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref d) if matches!(d.code().as_deref(), Some("22021" | "22P05")) => {
                StoreError::InvalidInput
            }
            // Postgres: a session limit ended the statement (lock_timeout, statement_timeout) or
            // the session (idle in a transaction); retrying later works.
            sqlx::Error::Database(ref d) if matches!(d.code().as_deref(), Some("55P03" | "57014" | "25P03")) => {
                StoreError::Unavailable(e.to_string())
            }
            // SQLite busy past the busy timeout (SQLITE_BUSY 5, SQLITE_LOCKED 6, and their extended
            // codes): another writer holds the lock; retrying later works.
            sqlx::Error::Database(ref d)
                if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && d.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            e => StoreError::Database(e),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Limits every Postgres session carries, so that no bug of ours or of a driver can hold a lock or
/// an open transaction for minutes (zero turns one off). SQLite needs none: one process holds the
/// file, and its connection holder settles a connection before lending it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    pub idle_in_transaction_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(15),
        }
    }
}

/// A pooled Postgres connection idle this long is checked before it is lent.
const PING_IDLE_AFTER: Duration = Duration::from_secs(10);

/// How long a readiness probe waits for a connection before it reports the database unavailable.
const READY_WAIT: Duration = Duration::from_secs(2);

impl Db {
    /// Connects to `sqlite:PATH` (creating the file and its directory) or `postgres://...`, with
    /// the default session limits.
    pub async fn connect(url: &str) -> Result<Db> {
        Db::connect_with(url, SessionLimits::default()).await
    }

    pub async fn connect_with(url: &str, limits: SessionLimits) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Sent as startup parameters, so every connection the pool opens carries them. Only the
            // limits that are set: with all three at 0 no `options` parameter is sent at all, which
            // a connection pooler such as PgBouncer refuses by default.
            let limits = [
                ("statement_timeout", limits.statement_timeout),
                ("lock_timeout", limits.lock_timeout),
                ("idle_in_transaction_session_timeout", limits.idle_in_transaction_timeout),
            ]
            .into_iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(name, d)| (name, d.as_millis().to_string()))
            .collect::<Vec<_>>();
            let mut opts = PgConnectOptions::from_str(url)?;
            if !limits.is_empty() {
                opts = opts.options(limits);
            }
            // A network connection can die while idle (a restart, a failover, a proxy's idle
            // cut), so one idle for a while is pinged before it is lent and replaced if dead. One
            // back from use moments ago is not: sqlx's ping on return has just checked it, and a
            // ping before every lend was a third of the round trips of a one-statement checkout.
            // A few connections stay open whatever callers do: a caller dropped while a new
            // connection is being opened abandons it, so a pool kept empty by such callers never
            // warms up (a transaction's `BEGIN` runs in a task of its own, a single statement does not).
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .min_connections(4)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IDLE_AFTER {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            return Ok(Db::Postgres(pool));
        }
        let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        let memory = path == ":memory:" || path.is_empty();
        if !memory
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", dir.display())))?;
        }
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let timeout = Duration::from_secs(5);
        let unavailable = |e: sqlx::Error| StoreError::Unavailable(e.to_string());
        // The writer first: it creates the file and switches it to WAL.
        let writer = std::sync::Arc::new(sqlite::Connections::open(&opts, 1, timeout).await.map_err(unavailable)?);
        // In memory: one connection for everything (sqlx makes `:memory:` a shared-cache database,
        // where a second connection would meet table-level locks instead of waiting its turn).
        let readers = match memory {
            true => writer.clone(),
            false => std::sync::Arc::new(sqlite::Connections::open(&opts, 7, timeout).await.map_err(unavailable)?),
        };
        Ok(Db::Sqlite(Sqlite { readers, writer, writer_check: Default::default() }))
    }

    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(s) => sqlx::migrate!("migrations/sqlite").run(&mut *s.write().await?).await?,
            Db::Postgres(p) => {
                // On a connection of its own without the session limits (building an index on a
                // large table may take longer), closed afterwards rather than returned with them off.
                let mut conn = p.acquire().await?.detach();
                sqlx::query("SET statement_timeout = 0").execute(&mut conn).await?;
                sqlx::query("SET lock_timeout = 0").execute(&mut conn).await?;
                sqlx::migrate!("migrations/postgres").run(&mut conn).await?;
                sqlx::Connection::close(conn).await?;
            }
        }
        Ok(())
    }

    /// Readiness: the database answers and can be written. On SQLite the writing connection is
    /// lent within a short wait and takes the write lock (`BEGIN IMMEDIATE`, rolled back), so a
    /// writer that is stuck or cannot write reads as not ready; on Postgres a connection is lent
    /// within the same wait and the server is not read-only (a standby, or read-only by default).
    pub async fn ready(&self) -> Result<()> {
        let gone = |_| StoreError::Unavailable("no connection within the readiness wait".into());
        match self {
            Db::Sqlite(s) => {
                sqlx::query("SELECT 1").execute(&mut *s.readers.acquire_within(READY_WAIT).await?).await?;
                use std::sync::atomic::Ordering::SeqCst;
                let arrived = s.writer_check.started.load(SeqCst);
                let mut last = s.writer_check.last.lock().await;
                if let Some((n, answer)) = &*last
                    && *n > arrived
                {
                    return answer.clone().map_err(StoreError::Unavailable);
                }
                let n = s.writer_check.started.fetch_add(1, SeqCst) + 1;
                // Within the wait, not SQLite's busy timeout: a probe must answer promptly. Cut
                // off, the `BEGIN` is settled before the connection's next use.
                let write = async {
                    let mut writer = s.writer.acquire_within(READY_WAIT).await?;
                    sqlx::Connection::begin_with(&mut *writer, "BEGIN IMMEDIATE").await?.rollback().await?;
                    Ok::<_, StoreError>(())
                };
                let answer = match tokio::time::timeout(READY_WAIT, write).await {
                    Ok(done) => done.map_err(|e| e.to_string()),
                    Err(_) => Err("the database cannot be written (locked)".to_string()),
                };
                *last = Some((n, answer.clone()));
                answer.map_err(StoreError::Unavailable)?;
            }
            Db::Postgres(p) => {
                let mut conn = tokio::time::timeout(READY_WAIT, p.acquire()).await.map_err(gone)??;
                let writable: bool = sqlx::query_scalar(
                    "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'",
                )
                .fetch_one(&mut *conn)
                .await?;
                if !writable {
                    return Err(StoreError::Unavailable("the database is read-only".into()));
                }
            }
        }
        Ok(())
    }

    /// SQLite connections found inside a transaction when lent and rolled back (a cancelled
    /// caller's); always 0 on Postgres, whose pool discards nothing it could count here.
    pub fn settled(&self) -> u64 {
        match self {
            Db::Sqlite(s) => s.settled(),
            Db::Postgres(_) => 0,
        }
    }

    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(s) => {
                s.readers.close().await;
                s.writer.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Deletes expired codes, sessions, refresh tokens, revocation entries and sign-in failures
    /// at the background pace ([`SweepPace::BACKGROUND`]); returns the total. Idempotent, so every
    /// node may run it.
    pub async fn sweep_expired(&self, now: i64) -> Result<u64> {
        Ok(self.sweep_expired_paced(now, SweepPace::BACKGROUND).await?.total())
    }

    /// [`Db::sweep_expired`] in fixed batches of `batch` rows, without rests.
    pub async fn sweep_expired_in_batches(&self, now: i64, batch: i64) -> Result<Swept> {
        self.sweep_expired_paced(now, SweepPace::fixed(batch)).await
    }

    /// [`Db::sweep_expired`] at `pace`, and what it deleted per table.
    ///
    /// Each statement deletes a batch of rows, the oldest first, found through the table's
    /// expiry index (the `ORDER BY` keeps the planner on it whatever share of the table is
    /// expired) and deleted by their physical row id; each commits on its own. On SQLite the
    /// write lock is held for one batch at a time and the writers queued meanwhile go first (the
    /// writing connection is lent in order), so a token request waits at most one batch; on
    /// Postgres no transaction stays open across batches, and rows another node's sweep has
    /// locked are skipped (`SKIP LOCKED`), not waited for.
    pub async fn sweep_expired_paced(&self, now: i64, pace: SweepPace) -> Result<Swept> {
        let mut swept = Swept::default();
        for &Expiring { table, expired, oldest_first, count } in EXPIRING {
            // By physical row id: no index lookup per row; on Postgres `= ANY(ARRAY(...))` is a
            // TID scan, where `IN` let the planner hash-join small tables whole.
            let (row, lock) = match self {
                Db::Postgres(_) => ("ctid", " FOR UPDATE SKIP LOCKED"),
                Db::Sqlite(_) => ("rowid", ""),
            };
            let oldest = format!("SELECT {row} FROM {table} WHERE {expired} ORDER BY {oldest_first} LIMIT $2{lock}");
            let sql = match self {
                Db::Postgres(_) => format!("DELETE FROM {table} WHERE ctid = ANY(ARRAY({oldest}))"),
                Db::Sqlite(_) => format!("DELETE FROM {table} WHERE rowid IN ({oldest})"),
            };
            let mut pacer = Pacer::new(pace);
            loop {
                // Timed from when the connection is lent: waiting for the writer behind requests
                // is no reason for a smaller batch.
                let (n, elapsed) = dispatch_write!(self, |pool| {
                    let started = std::time::Instant::now();
                    let n = sqlx::query(&sql).bind(now).bind(pacer.batch).execute(pool).await?.rows_affected();
                    (n, started.elapsed())
                });
                let elapsed_us = elapsed.as_micros() as u64;
                tracing::trace!(table, rows = n, batch = pacer.batch, elapsed_us, "sweep batch");
                swept.statements += 1;
                *count(&mut swept) += n;
                self.checkpoint_after(n).await;
                if !pacer.next(n, elapsed).await {
                    break;
                }
            }
        }
        Ok(swept)
    }

    /// Deletes dynamically registered clients never used since `unused_before`, or not used since
    /// `idle_before`, at `pace`: a client's grants, codes and refresh tokens go with it
    /// (cascade), so one statement's work grows with the clients it takes. Each row is deleted by
    /// exactly one caller (on Postgres, rows another node holds are skipped), so nodes may run
    /// this at the same time; returns the ids this call deleted.
    pub async fn delete_stale_dynamic_clients(
        &self,
        unused_before: i64,
        idle_before: i64,
        pace: SweepPace,
    ) -> Result<Vec<String>> {
        const STALE: &str = "kind = 'dynamic' AND \
            ((last_used_at IS NULL AND created_at < $1) OR (last_used_at IS NOT NULL AND last_used_at < $2))";
        let sql = match self {
            Db::Postgres(_) => format!(
                "DELETE FROM clients WHERE ctid = ANY(ARRAY(SELECT ctid FROM clients WHERE {STALE} LIMIT $3 \
                 FOR UPDATE SKIP LOCKED)) RETURNING client_id"
            ),
            Db::Sqlite(_) => format!(
                "DELETE FROM clients WHERE rowid IN (SELECT rowid FROM clients WHERE {STALE} LIMIT $3) RETURNING client_id"
            ),
        };
        let mut gone = Vec::new();
        let mut pacer = Pacer::new(pace);
        loop {
            let (ids, elapsed): (Vec<String>, _) = dispatch_write!(self, |pool| {
                let started = std::time::Instant::now();
                let ids = sqlx::query_scalar(&sql)
                    .bind(unused_before)
                    .bind(idle_before)
                    .bind(pacer.batch)
                    .fetch_all(pool)
                    .await?;
                (ids, started.elapsed())
            });
            let n = ids.len() as u64;
            let elapsed_us = elapsed.as_micros() as u64;
            tracing::trace!(rows = n, batch = pacer.batch, elapsed_us, "client clean-up batch");
            gone.extend(ids);
            self.checkpoint_after(n).await;
            if !pacer.next(n, elapsed).await {
                return Ok(gone);
            }
        }
    }
}

impl Db {
    /// SQLite, after a sweep statement that deleted rows: copies the write-ahead log's pages into
    /// the database file (a passive checkpoint) on a reading connection. A deleted row dirties a
    /// page in each of its table's indexes, most of them random (hashes, ids), so a sweep fills
    /// the log with pages scattered over the file; left there, SQLite has the writer copy and
    /// fsync them at the commit that crosses `wal_autocheckpoint` (1,000 pages), and the requests
    /// queued behind that commit wait for the disk (60-100 ms on the benchmark machine, seconds
    /// when other work shares the disk). A passive checkpoint waits for nobody and blocks no
    /// writer. A failure is only logged: the writer's own checkpoint still runs.
    async fn checkpoint_after(&self, deleted: u64) {
        let Db::Sqlite(s) = self else { return };
        if deleted == 0 || std::sync::Arc::ptr_eq(&s.readers, &s.writer) {
            return;
        }
        let started = std::time::Instant::now();
        let done = async {
            let mut reader = s.read().await?;
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *reader).await?;
            Ok::<_, StoreError>(())
        };
        match done.await {
            Ok(()) => tracing::trace!(elapsed_us = started.elapsed().as_micros() as u64, "sweep checkpoint"),
            Err(e) => tracing::debug!(error = %e, "checkpoint after a sweep statement failed"),
        }
    }
}

/// How a sweep paces its statements, so that it never holds up requests for long: SQLite has one
/// writer, and on either engine the sweep shares the machine with the requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepPace {
    /// Rows a run's first statement deletes at most.
    pub batch: i64,
    /// The most rows one statement deletes.
    pub max_batch: i64,
    /// How long one statement should take: the batch halves after a statement that took longer,
    /// and doubles (up to `max_batch`) after one that took less than half of it. A row costs from
    /// a few microseconds (a small table) to a few hundred (a refresh token on SQLite, whose
    /// random-keyed index entries each dirty a page of their own), so no fixed size fits.
    pub statement_target: Duration,
    /// After a full batch, the sweep waits this many times as long as the batch took: with 4, it
    /// takes at most a fifth of the writer's (and the CPU's) time while it works off a backlog.
    pub rest: u32,
}

impl SweepPace {
    /// The background job's pace.
    pub const BACKGROUND: SweepPace =
        SweepPace { batch: 50, max_batch: 2000, statement_target: Duration::from_millis(5), rest: 4 };

    /// Batches of exactly `batch` rows, one after the other.
    pub const fn fixed(batch: i64) -> SweepPace {
        let batch = if batch < 1 { 1 } else { batch };
        SweepPace { batch, max_batch: batch, statement_target: Duration::MAX, rest: 0 }
    }

    /// The next batch size after a statement of `batch` rows took `elapsed`.
    fn resize(&self, batch: i64, elapsed: Duration) -> i64 {
        let next = if elapsed > self.statement_target {
            batch / 2
        } else if elapsed < self.statement_target / 2 {
            batch.saturating_mul(2)
        } else {
            batch
        };
        next.clamp(1, self.max_batch.max(1))
    }
}

/// The batch size of a run of statements, and the rest between them.
struct Pacer {
    pace: SweepPace,
    batch: i64,
}

impl Pacer {
    fn new(pace: SweepPace) -> Pacer {
        Pacer { pace, batch: pace.batch.clamp(1, pace.max_batch.max(1)) }
    }

    /// After a statement that deleted `rows` (of at most `self.batch`) in `elapsed`: whether
    /// there may be more (a short batch means none is left), having rested and resized.
    async fn next(&mut self, rows: u64, elapsed: Duration) -> bool {
        let full = rows >= self.batch as u64;
        self.batch = self.pace.resize(self.batch, elapsed);
        if full {
            match self.pace.rest {
                // Still let the requests that queued behind this batch run before the next one.
                0 => tokio::task::yield_now().await,
                rest => tokio::time::sleep(elapsed.saturating_mul(rest)).await,
            }
        }
        full
    }
}

/// A table the expiry sweep empties: the condition of a row past keeping, the column its index
/// orders rows by (migrations 0001 and 0013), and its count in [`Swept`].
struct Expiring {
    table: &'static str,
    expired: &'static str,
    oldest_first: &'static str,
    count: fn(&mut Swept) -> &mut u64,
}

/// Codes and refresh tokens stay a day past expiry, so a replay in that day is still recognised.
const EXPIRING: &[Expiring] = &[
    Expiring {
        table: "authorization_codes",
        expired: "expires_at < $1 - 86400",
        oldest_first: "expires_at",
        count: |s| &mut s.authorization_codes,
    },
    Expiring {
        table: "web_sessions",
        expired: "expires_at < $1",
        oldest_first: "expires_at",
        count: |s| &mut s.web_sessions,
    },
    Expiring {
        table: "revoked_access_tokens",
        expired: "expires_at < $1",
        oldest_first: "expires_at",
        count: |s| &mut s.revoked_access_tokens,
    },
    Expiring {
        table: "refresh_tokens",
        expired: "expires_at < $1 - 86400",
        oldest_first: "expires_at",
        count: |s| &mut s.refresh_tokens,
    },
    Expiring {
        table: "used_client_assertions",
        expired: "expires_at < $1",
        oldest_first: "expires_at",
        count: |s| &mut s.used_client_assertions,
    },
    // Failures a day old are forgotten at the next one anyway (`throttle`).
    Expiring {
        table: "login_throttle",
        expired: "updated_at < $1 - 86400 AND locked_until < $1",
        oldest_first: "updated_at",
        count: |s| &mut s.login_throttle,
    },
];

/// Rows an expiry sweep deleted, per table, and the statements it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub authorization_codes: u64,
    pub web_sessions: u64,
    pub revoked_access_tokens: u64,
    pub refresh_tokens: u64,
    pub used_client_assertions: u64,
    pub login_throttle: u64,
    pub statements: u64,
}

impl Swept {
    pub fn total(&self) -> u64 {
        self.authorization_codes
            + self.web_sessions
            + self.revoked_access_tokens
            + self.refresh_tokens
            + self.used_client_assertions
            + self.login_throttle
    }
}

/// Current time in unix seconds; the one clock the store and domain compare against.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_batches_follow_the_statement_target() {
        let pace = SweepPace::BACKGROUND;
        let ms = Duration::from_millis;
        assert_eq!(pace.resize(50, ms(1)), 100, "fast: doubles");
        assert_eq!(pace.resize(50, ms(4)), 50, "near the target: stays");
        assert_eq!(pace.resize(50, ms(9)), 25, "slow: halves");
        assert_eq!(pace.resize(1, ms(100)), 1, "never below one row");
        assert_eq!(pace.resize(1500, ms(0)), 2000, "never above max_batch");
        let fixed = SweepPace::fixed(3);
        assert_eq!((fixed.resize(3, ms(0)), fixed.resize(3, Duration::from_secs(60))), (3, 3));
        assert_eq!(SweepPace::fixed(0).batch, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_readiness_probes_puts_few_checks_on_the_writer() {
        let dir = std::env::temp_dir().join(format!("portcullis-ready-{}", std::process::id()));
        let db = Db::connect(&format!("sqlite://{}/ready.db", dir.display())).await.unwrap();
        let Db::Sqlite(s) = &db else { unreachable!() };
        let probes: Vec<_> = (0..50)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move { db.ready().await })
            })
            .collect();
        for p in probes {
            p.await.unwrap().expect("ready");
        }
        let checks = s.writer_check.started.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..50).contains(&checks), "50 probes at once ran {checks} writer checks");
        // A probe after them gets a check of its own, never an older answer.
        db.ready().await.unwrap();
        assert_eq!(s.writer_check.started.load(std::sync::atomic::Ordering::SeqCst), checks + 1);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
