//! Expiry sweeps in batches (issue 18): every row past keeping is deleted however many batches it
//! takes, every row still live (or inside its day of grace) stays, and the counts say what went.

use portcullis::store::clients::{ClientKind, NewClient};
use portcullis::store::resources::NewResource;
use portcullis::store::{Db, SweepPace, Swept, clients, grants, resources, users};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Engine, TestDb, count_rows, db_tests};

db_tests!(
    every_expired_row_goes_in_batches_and_live_ones_stay,
    the_default_sweep_takes_several_batches,
    stale_clients_go_in_batches_with_their_grants,
);

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// Runs `$body` with `$tx` a transaction on the database's writing connection, on either engine.
macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:expr) => {
        match $db {
            Db::Sqlite(s) => {
                let mut lease = s.write().await.expect("writer");
                let mut $tx = sqlx::Connection::begin(&mut *lease).await.expect("begin");
                $body;
                $tx.commit().await.expect("commit");
            }
            Db::Postgres(p) => {
                let mut $tx = p.begin().await.expect("begin");
                $body;
                $tx.commit().await.expect("commit");
            }
        }
    };
}

/// A person, a client and an MCP server with a grant between them, for the rows that refer to one.
struct Parties {
    grant: Uuid,
    user: Uuid,
    resource: Uuid,
}

fn client(id: &str, kind: ClientKind) -> NewClient {
    NewClient {
        client_id: id.into(),
        kind,
        client_name: None,
        metadata: json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none" }),
        secret_hash: None,
        registration_token_hash: None,
        metadata_expires_at: None,
        registered_ip: None,
    }
}

async fn parties(db: &Db) -> Parties {
    let user = users::create(db, "alice", "h", NOW).await.unwrap().id;
    clients::create(db, &client("c1", ClientKind::Dynamic), NOW).await.unwrap();
    let new = NewResource {
        uri: "https://mcp.example.com".into(),
        name: "M".into(),
        token_lifetime: None,
        allowed_groups: Default::default(),
        scopes: vec![],
    };
    let resource = resources::create(db, &new, NOW).await.unwrap().row.id;
    let scope = portcullis::oauth::scope::ScopeSet::parse("a").unwrap();
    let grant = grants::approve(db, user, &"c1".into(), resource, &scope, NOW).await.unwrap().id;
    Parties { grant, user, resource }
}

/// Refresh tokens named `{name}{n}` for n in 0..count, expiring at `expires_at`.
async fn refresh_tokens(db: &Db, p: &Parties, name: &str, count: usize, expires_at: i64) {
    const SQL: &str = "INSERT INTO refresh_tokens (id, token_hash, grant_id, family_id, client_id, scope, \
                       created_at, expires_at) VALUES ($1, $2, $3, $4, 'c1', 'a', $5, $6)";
    in_tx!(db, |tx| for n in 0..count {
        sqlx::query(SQL)
            .bind(Uuid::now_v7())
            .bind(format!("{name}{n}").into_bytes())
            .bind(p.grant)
            .bind(p.grant)
            .bind(expires_at - 30 * DAY)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .expect("insert refresh token");
    });
}

/// Authorization codes named `{name}{n}`.
async fn codes(db: &Db, p: &Parties, name: &str, count: usize, expires_at: i64) {
    const SQL: &str = "INSERT INTO authorization_codes (code_hash, grant_id, client_id, user_id, resource_id, \
                       redirect_uri, scope, code_challenge, auth_time, created_at, expires_at) \
                       VALUES ($1, $2, 'c1', $3, $4, 'https://app.example/cb', 'a', 'x', $5, $5, $6)";
    in_tx!(db, |tx| for n in 0..count {
        sqlx::query(SQL)
            .bind(format!("{name}{n}").into_bytes())
            .bind(p.grant)
            .bind(p.user)
            .bind(p.resource)
            .bind(expires_at - 60)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .expect("insert code");
    });
}

/// Rows `{name}{n}` of a table with a text key and `expires_at` (sessions, revoked access tokens,
/// used client assertions).
async fn expiring(db: &Db, table: &str, name: &str, count: usize, expires_at: i64) {
    let (key, extra, value) = match table {
        "web_sessions" => ("id", ", data", ", $3"),
        "revoked_access_tokens" => ("jti", "", ""),
        _ => ("id", "", ""),
    };
    let sql = format!("INSERT INTO {table} ({key}, expires_at{extra}) VALUES ($1, $2{value})");
    in_tx!(db, |tx| for n in 0..count {
        let q = sqlx::query(&sql).bind(format!("{name}{n}")).bind(expires_at);
        let q = if extra.is_empty() { q } else { q.bind(b"{}".to_vec()) };
        q.execute(&mut *tx).await.expect("insert expiring row");
    });
}

/// Sign-in throttle rows `{name}{n}`.
async fn throttle(db: &Db, name: &str, count: usize, locked_until: i64, updated_at: i64) {
    const SQL: &str = "INSERT INTO login_throttle (key, failures, locked_until, updated_at) VALUES ($1, 3, $2, $3)";
    in_tx!(db, |tx| for n in 0..count {
        sqlx::query(SQL)
            .bind(format!("{name}{n}"))
            .bind(locked_until)
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .expect("insert throttle row");
    });
}

/// The keys left in a table, sorted.
async fn keys(db: &Db, table: &str, key: &str) -> Vec<String> {
    let sql = format!("SELECT {key} FROM {table}");
    let mut keys: Vec<String> = match db {
        Db::Sqlite(s) => {
            let mut c = s.read().await.expect("reader");
            match table {
                "authorization_codes" | "refresh_tokens" => sqlx::query_scalar::<_, Vec<u8>>(&sql)
                    .fetch_all(&mut *c)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect(),
                _ => sqlx::query_scalar(&sql).fetch_all(&mut *c).await.unwrap(),
            }
        }
        Db::Postgres(p) => match table {
            "authorization_codes" | "refresh_tokens" => sqlx::query_scalar::<_, Vec<u8>>(&sql)
                .fetch_all(p)
                .await
                .unwrap()
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect(),
            _ => sqlx::query_scalar(&sql).fetch_all(p).await.unwrap(),
        },
    };
    keys.sort();
    keys
}

fn names(name: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{name}{n}")).collect()
}

async fn every_expired_row_goes_in_batches_and_live_ones_stay(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let p = parties(&db).await;
    // Past keeping: codes and refresh tokens a day past expiry, the rest past expiry.
    codes(&db, &p, "old", 7, NOW - DAY - 1).await;
    refresh_tokens(&db, &p, "old", 7, NOW - DAY - 1).await;
    expiring(&db, "web_sessions", "old", 6, NOW - 1).await;
    expiring(&db, "revoked_access_tokens", "old", 1, NOW - 1).await;
    expiring(&db, "used_client_assertions", "old", 3, NOW - 1).await;
    throttle(&db, "old", 7, 0, NOW - DAY - 1).await;
    // Kept: expired codes and refresh tokens inside their day, live rows, a throttle row a day
    // old that is still locked, and a recent one.
    codes(&db, &p, "grace", 2, NOW - DAY + 1).await;
    codes(&db, &p, "live", 2, NOW + 60).await;
    refresh_tokens(&db, &p, "grace", 2, NOW - 1).await;
    refresh_tokens(&db, &p, "live", 2, NOW + DAY).await;
    expiring(&db, "web_sessions", "live", 2, NOW + 1).await;
    expiring(&db, "revoked_access_tokens", "live", 2, NOW).await;
    expiring(&db, "used_client_assertions", "live", 2, NOW + 300).await;
    throttle(&db, "locked", 1, NOW + 60, NOW - DAY - 1).await;
    throttle(&db, "recent", 2, 0, NOW - 60).await;

    let swept = db.sweep_expired_in_batches(NOW, 3).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            authorization_codes: 7,
            web_sessions: 6,
            revoked_access_tokens: 1,
            refresh_tokens: 7,
            used_client_assertions: 3,
            login_throttle: 7,
            // Batches of 3: 7 rows take 3 statements, 6 take 3 (the last finds none), 3 take 2,
            // 1 takes 1.
            statements: 3 + 3 + 1 + 3 + 2 + 3,
        }
    );
    assert_eq!(swept.total(), 31);

    let kept = |groups: &[(&str, usize)]| {
        let mut all: Vec<String> = groups.iter().flat_map(|(name, n)| names(name, *n)).collect();
        all.sort();
        all
    };
    assert_eq!(keys(&db, "authorization_codes", "code_hash").await, kept(&[("grace", 2), ("live", 2)]));
    assert_eq!(keys(&db, "refresh_tokens", "token_hash").await, kept(&[("grace", 2), ("live", 2)]));
    assert_eq!(keys(&db, "web_sessions", "id").await, kept(&[("live", 2)]));
    assert_eq!(keys(&db, "revoked_access_tokens", "jti").await, kept(&[("live", 2)]));
    assert_eq!(keys(&db, "used_client_assertions", "id").await, kept(&[("live", 2)]));
    assert_eq!(keys(&db, "login_throttle", "key").await, kept(&[("locked", 1), ("recent", 2)]));
    // The grant, its person and its client are none of the sweep's business.
    assert_eq!(count_rows(&db, "grants").await, 1);

    // Nothing left to delete: one statement per table, no rows.
    let again = db.sweep_expired_in_batches(NOW, 3).await.unwrap();
    assert_eq!(again, Swept { statements: 6, ..Swept::default() });
}

async fn the_default_sweep_takes_several_batches(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let p = parties(&db).await;
    // More than the background pace's first batch and its doubling: several statements.
    let expired = 1234;
    refresh_tokens(&db, &p, "old", expired as usize, NOW - DAY - 1).await;
    refresh_tokens(&db, &p, "live", 5, NOW + DAY).await;
    expiring(&db, "web_sessions", "old", 10, NOW - 1).await;
    assert_eq!(db.sweep_expired(NOW).await.unwrap(), expired + 10);
    assert_eq!(keys(&db, "refresh_tokens", "token_hash").await, names("live", 5));
    assert_eq!(count_rows(&db, "web_sessions").await, 0);
    assert_eq!(db.sweep_expired(NOW).await.unwrap(), 0);
}

async fn stale_clients_go_in_batches_with_their_grants(engine: Engine) {
    let t = TestDb::new(engine).await;
    let db = t.connect().await;
    let p = parties(&db).await;
    // Stale (never used and registered before the cut-off, or idle for 90 days): five unused,
    // one last used 100 days ago, and "c1" with a grant and refresh tokens.
    for n in 0..5 {
        clients::create(&db, &client(&format!("unused{n}"), ClientKind::Dynamic), NOW - 2 * DAY).await.unwrap();
    }
    clients::create(&db, &client("idle", ClientKind::Dynamic), NOW - 200 * DAY).await.unwrap();
    clients::touch(&db, "idle", NOW - 100 * DAY).await.unwrap();
    // Kept: registered after the cut-off, used yesterday, and a pre-registered client never used.
    clients::create(&db, &client("new", ClientKind::Dynamic), NOW + 60).await.unwrap();
    clients::create(&db, &client("used", ClientKind::Dynamic), NOW - 200 * DAY).await.unwrap();
    clients::touch(&db, "used", NOW - DAY).await.unwrap();
    clients::create(&db, &client("static", ClientKind::Static), NOW - 200 * DAY).await.unwrap();
    refresh_tokens(&db, &p, "c1-token", 3, NOW + DAY).await;

    let mut gone = db.delete_stale_dynamic_clients(NOW + 1, NOW - 90 * DAY, SweepPace::fixed(2)).await.unwrap();
    gone.sort();
    assert_eq!(gone, ["c1", "idle", "unused0", "unused1", "unused2", "unused3", "unused4"]);
    assert_eq!(keys(&db, "clients", "client_id").await, ["new", "static", "used"]);
    // c1's grant and refresh tokens went with it.
    assert_eq!(count_rows(&db, "grants").await, 0);
    assert_eq!(count_rows(&db, "refresh_tokens").await, 0);
    let again = db.delete_stale_dynamic_clients(NOW + 1, NOW - 90 * DAY, SweepPace::fixed(2)).await.unwrap();
    assert!(again.is_empty());
}
