//! Clients that hang up mid-request. Thousands of write requests (registration, code exchange,
//! refresh, revocation, sign-in, consent) are cut off after a random short delay, by TCP resets
//! and by clients that stop waiting; store calls are dropped at random points of their
//! transactions. Afterwards every endpoint works at once, no connection is inside a transaction,
//! every write that answered 2xx is visible from a fresh connection, and nothing is half-written.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::store::{self, Db};
use portcullis::tokens::secrets;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::faults::{
    REDIRECT, authorize, check_invariants, client, code_form, count, full_flow_works, login, post_token, refresh_form,
    register_client,
};
use crate::helpers::{Engine, PASSWORD, TestApp, db_tests, hidden};

db_tests!(cut_off_requests_leave_every_endpoint_working, dropped_store_calls_leave_connections_clean);

/// Workers sending requests at once, and rounds each: 16 × 200 = 3,200 requests, most cut off.
const WORKERS: u64 = 16;
const ROUNDS: u64 = 200;

/// A small deterministic generator per worker (xorshift), so a failure can be replayed by seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// Waits `micros`, finer than tokio's millisecond timer.
async fn wait_micros(micros: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(micros) {
        tokio::task::yield_now().await;
    }
}

/// An HTTP/1.1 request on a connection of its own. With `cut` the connection is reset (RST, no
/// FIN) that many microseconds after the request went out and `None` is returned; otherwise the
/// answer is read to the end: `(status, body)`.
async fn raw(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
    cut: Option<u64>,
) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    if let Some(micros) = cut {
        wait_micros(micros).await;
        stream.set_zero_linger().expect("SO_LINGER");
        return None;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers within 30 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// What answered 2xx (or, for revocation, was confirmed), to be found again afterwards.
#[derive(Default)]
struct Answered {
    clients: Vec<String>,
    refresh_tokens: Vec<String>,
    revoked: Vec<(String, String)>,
    cut: u64,
}

/// One worker's refresh chain and the codes it may spend.
struct Worker {
    client_id: String,
    refresh: String,
    codes: Vec<(String, String)>,
    /// (client, refresh token) this worker revokes, one per use.
    to_revoke: Vec<(String, String)>,
}

async fn cut_off_requests_leave_every_endpoint_working(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.rate_limit_per_ip = portcullis::config::RateLimits::off();
        c.rate_limit_total = portcullis::config::RateLimits::off();
        // Each worker refreshes one family thousands of times a minute: a storm, not a client.
        c.rate_limit_per_refresh_family = 0;
        c.registrations_per_ip_per_hour = 0;
        c.authorization_code_lifetime = portcullis::config::Seconds(600);
        c.login_max_failures = 1_000_000;
    })
    .await
    .with_defaults()
    .await;
    let base = app.base.clone();
    let addr = base.trim_start_matches("http://").to_string();

    // Per worker: a consented client, a refresh chain, codes to spend and tokens to revoke.
    let browser = client(Duration::from_secs(30));
    login(&browser, &base).await;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let client_id = register_client(&browser, &base).await;
        let mut codes = Vec::new();
        for _ in 0..16 {
            codes.push(authorize(&browser, &base, &client_id).await);
        }
        let (code, verifier) = codes.pop().expect("a code");
        let (status, body) =
            post_token(&browser, &base, &code_form(&client_id, &code, &verifier)).await.expect("token");
        assert_eq!(status, 200, "{body}");
        let refresh = body["refresh_token"].as_str().expect("refresh_token").to_string();
        // Revoking a refresh token ends its whole grant: these come from a client of their own.
        let revoking = register_client(&browser, &base).await;
        let mut to_revoke = Vec::new();
        for _ in 0..3 {
            let (code, verifier) = authorize(&browser, &base, &revoking).await;
            let (_, body) = post_token(&browser, &base, &code_form(&revoking, &code, &verifier)).await.expect("token");
            to_revoke.push((revoking.clone(), body["refresh_token"].as_str().expect("refresh_token").to_string()));
        }
        workers.push(Worker { client_id, refresh, codes, to_revoke });
    }

    let answered = Arc::new(Mutex::new(Answered::default()));
    let mut tasks = Vec::new();
    for (n, mut w) in workers.into_iter().enumerate() {
        let (addr, base, answered) = (addr.clone(), base.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let browser = client(Duration::from_secs(30));
            for _ in 0..ROUNDS {
                // Three in four requests are cut off 0-4 ms after they went out; the rest are read.
                let cut = (dice.roll(4) != 0).then(|| dice.roll(4_000));
                if cut.is_some() {
                    answered.lock().unwrap().cut += 1;
                }
                // Registration and refresh most often; sign-in and consent (an argon2 hash, several
                // requests each) least. Code exchanges and revocations while there are codes and
                // tokens left.
                let op = match dice.roll(20) {
                    12..=14 if w.codes.is_empty() => 0,
                    15 if w.to_revoke.is_empty() => 6,
                    op => op,
                };
                match op {
                    0..=5 | 18..=19 => {
                        let body = json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" });
                        let res = raw(&addr, "POST", "/register", "application/json", &body.to_string(), cut).await;
                        if let Some((status, body)) = res {
                            assert_eq!(status, 201, "registration: {body}");
                            answered.lock().unwrap().clients.push(body["client_id"].as_str().unwrap().to_string());
                        }
                    }
                    6..=11 => {
                        // A cut refresh may or may not have rotated: presenting the same token again
                        // inside the grace window gets the same successor either way.
                        let body = refresh_form(&w.client_id, &w.refresh).encoded();
                        let res = raw(&addr, "POST", "/token", "application/x-www-form-urlencoded", &body, cut).await;
                        if let Some((status, body)) = res {
                            assert_eq!(status, 200, "refresh: {body}");
                            w.refresh = body["refresh_token"].as_str().unwrap().to_string();
                            answered.lock().unwrap().refresh_tokens.push(w.refresh.clone());
                        }
                    }
                    12..=14 => {
                        let (code, verifier) = w.codes.pop().unwrap();
                        let body = code_form(&w.client_id, &code, &verifier).encoded();
                        let res = raw(&addr, "POST", "/token", "application/x-www-form-urlencoded", &body, cut).await;
                        if let Some((status, body)) = res {
                            assert_eq!(status, 200, "code exchange: {body}");
                            let token = body["refresh_token"].as_str().unwrap().to_string();
                            answered.lock().unwrap().refresh_tokens.push(token);
                        }
                    }
                    15 => {
                        let (client_id, token) = w.to_revoke.pop().unwrap();
                        let body = url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs([("token", &token), ("client_id", &client_id)])
                            .finish();
                        let res = raw(&addr, "POST", "/revoke", "application/x-www-form-urlencoded", &body, cut).await;
                        if let Some((status, body)) = res {
                            assert_eq!(status, 200, "revocation: {body}");
                            answered.lock().unwrap().revoked.push((client_id, token));
                        }
                    }
                    16 => {
                        // Sign-in in a browser of its own (a cut sign-in still running on the server
                        // would change this browser's session under the next one); the client stops
                        // waiting (its timeout), as a closed tab does.
                        let browser = client(Duration::from_secs(30));
                        let page = browser.get(format!("{base}/login")).send().await.expect("login page");
                        let page = page.text().await.unwrap();
                        let post = browser.post(format!("{base}/login")).form(&[
                            ("username", "alice"),
                            ("password", PASSWORD),
                            ("csrf_token", &hidden(&page, "csrf_token")),
                            ("next", &hidden(&page, "next")),
                        ]);
                        let post = match cut {
                            Some(micros) => post.timeout(Duration::from_micros(micros.max(1))),
                            None => post,
                        };
                        if let Ok(res) = post.send().await {
                            assert!(
                                res.status().is_success() || res.status().is_redirection(),
                                "login: {}",
                                res.status()
                            );
                        }
                    }
                    _ => {
                        // Consent for a new client, cut while the answer is on its way.
                        let client_id = register_client(&browser, &base).await;
                        let (_, challenge) = crate::helpers::pkce();
                        let query = [
                            ("response_type", "code"),
                            ("client_id", client_id.as_str()),
                            ("redirect_uri", REDIRECT),
                            ("code_challenge", challenge.as_str()),
                            ("code_challenge_method", "S256"),
                        ];
                        let res =
                            browser.get(format!("{base}/authorize")).query(&query).send().await.expect("authorize");
                        if res.status() == 200 {
                            let page = res.text().await.unwrap();
                            let post = browser.post(format!("{base}/consent")).form(&[
                                ("csrf_token", hidden(&page, "csrf_token").as_str()),
                                ("request_id", hidden(&page, "request_id").as_str()),
                                ("decision", "approve"),
                            ]);
                            let post = match cut {
                                Some(micros) => post.timeout(Duration::from_micros(micros.max(1))),
                                None => post,
                            };
                            let _ = post.send().await;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let answered = Arc::try_unwrap(answered).ok().unwrap().into_inner().unwrap();
    assert!(answered.cut > 2_000, "thousands of requests were cut off: {}", answered.cut);

    // Nothing is left inside a transaction once the requests the server took on have finished.
    no_connection_in_a_transaction(&app.db, engine).await;

    // Every endpoint works at once, first try.
    let ready = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200, "ready after the storm");
    full_flow_works(&base).await;

    // What answered 2xx is there, seen from connections opened afresh.
    let fresh = Db::connect(&app.test_db.url).await.expect("a fresh connection");
    for client_id in &answered.clients {
        let n = clients_named(&fresh, client_id).await;
        assert_eq!(n, 1, "client {client_id} answered 201 but is not stored");
    }
    for token in &answered.refresh_tokens {
        let n =
            count(&fresh, "SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = $1", &[&secrets::hash(token)]).await;
        assert_eq!(n, 1, "a refresh token answered with 200 is not stored");
    }
    let http = client(Duration::from_secs(30));
    for (client_id, token) in &answered.revoked {
        let (status, body) = post_token(&http, &base, &refresh_form(client_id, token)).await.expect("token");
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a revoked token refreshed");
    }
    check_invariants(&fresh).await;
    let orphans = count(
        &fresh,
        "SELECT COUNT(*) FROM clients c WHERE c.kind = 'dynamic' AND NOT EXISTS \
         (SELECT 1 FROM audit_events a WHERE a.client_id = c.client_id AND a.event = 'client_registered')",
        &[],
    )
    .await;
    assert_eq!(orphans, 0, "a registered client without its audit event");
    fresh.close().await;
}

/// Store calls dropped at random points of their transactions (the store is safe on its own,
/// without the server's run-to-end tasks): afterwards no connection is inside a transaction,
/// every call that returned is visible from a fresh connection, and writes work at once.
async fn dropped_store_calls_leave_connections_clean(engine: Engine) {
    let test_db = crate::helpers::TestDb::new(engine).await;
    let db = test_db.connect().await;
    // Another set of connections, to see what each call that returned left behind.
    let witness = Db::connect(&test_db.url).await.expect("a second set of connections");
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for n in 0..8u64 {
        let (db, witness, done) = (db.clone(), witness.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ (n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for i in 0..300u64 {
                let client_id = format!("c-{n}-{i}");
                // A transaction (client and audit row), or a single statement outside one.
                let in_transaction = dice.roll(2) == 0;
                let call = async {
                    match in_transaction {
                        true => register_in_store(&db, &client_id).await,
                        false => record_in_store(&db, &client_id).await,
                    }
                };
                let cut = wait_micros(dice.roll(3_000));
                tokio::select! {
                    biased;
                    r = call => {
                        r.expect("a store call that was not cut succeeds");
                        // Committed: visible at once from other connections.
                        let seen = audit_rows_for(&witness, &client_id).await;
                        assert_eq!(seen, 1, "{client_id} returned but other connections do not see it");
                        done.lock().unwrap().push(client_id);
                    }
                    () = cut => {}
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    witness.close().await;
    let done = Arc::try_unwrap(done).unwrap().into_inner().unwrap();
    assert!(!done.is_empty() && done.len() < 2_400, "some calls finished, some were cut: {}", done.len());

    no_connection_in_a_transaction(&db, engine).await;
    // Writes work at once on every connection: as many as the pool holds, at the same time.
    let after: Vec<_> = (0..16)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move { register_in_store(&db, &format!("after-{i}")).await })
        })
        .collect();
    for r in after {
        r.await.expect("task").expect("a write after the storm");
    }
    db.ready().await.expect("ready");

    let fresh = Db::connect(&test_db.url).await.expect("a fresh connection");
    for client_id in &done {
        assert_eq!(audit_rows_for(&fresh, client_id).await, 1, "{client_id} returned but is not stored");
    }
    let half = count(
        &fresh,
        "SELECT COUNT(*) FROM clients c WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.client_id = c.client_id)",
        &[],
    )
    .await;
    assert_eq!(half, 0, "a client without its audit event: a transaction was half-written");
    fresh.close().await;
    db.close().await;
}

async fn clients_named(db: &Db, client_id: &str) -> i64 {
    count_text(db, "SELECT COUNT(*) FROM clients WHERE client_id = $1", client_id).await
}

/// A count with one text parameter, on either engine.
async fn count_text(db: &Db, sql: &str, value: &str) -> i64 {
    match db {
        Db::Sqlite(s) => sqlx::query_scalar(sql).bind(value).fetch_one(&mut *s.read().await.expect("connection")).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).bind(value).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn audit_rows_for(db: &Db, client_id: &str) -> i64 {
    count_text(db, "SELECT COUNT(*) FROM audit_events WHERE client_id = $1", client_id).await
}

async fn record_in_store(db: &Db, client_id: &str) -> store::Result<()> {
    let event = store::audit::Event { event: "cut_test", client_id: Some(client_id), ..Default::default() };
    store::audit::record(db, &event, store::now()).await
}

async fn register_in_store(db: &Db, client_id: &str) -> store::Result<()> {
    let client = store::clients::NewClient {
        client_id: client_id.to_string(),
        kind: store::clients::ClientKind::Dynamic,
        client_name: Some("cut".into()),
        metadata: json!({ "redirect_uris": [REDIRECT] }),
        secret_hash: None,
        registration_token_hash: None,
        metadata_expires_at: None,
        registered_ip: None,
    };
    let event = store::audit::Event { event: "client_registered", client_id: Some(client_id), ..Default::default() };
    store::clients::register(db, &client, None, &event, store::now()).await.map(|_| ())
}

/// No connection is inside a transaction (polled for a few seconds: work the server took on may
/// still be finishing). On Postgres from the server's own view of every session; on SQLite the
/// writing connection is lent within a second and can take the write lock.
async fn no_connection_in_a_transaction(db: &Db, engine: Engine) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = match engine {
            Engine::Postgres => {
                count(
                    db,
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
            }
            Engine::Sqlite => {
                let Db::Sqlite(s) = db else { unreachable!() };
                let lease = tokio::time::timeout(Duration::from_secs(1), s.write()).await;
                match lease {
                    Ok(Ok(mut writer)) => {
                        let begun = sqlx::Connection::begin_with(&mut *writer, "BEGIN IMMEDIATE").await;
                        i64::from(begun.is_err())
                    }
                    _ => 1,
                }
            }
        };
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{open} connection(s) still inside a transaction");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
