//! Fault tolerance: the database going away under a running server (Postgres, through a TCP
//! forwarder the test can cut), a SQLite write lock held past the busy timeout, and the real
//! binary killed with SIGKILL in the middle of a burst of token requests, then restarted on the
//! same database: nothing redeemed twice, no refresh token with two successors, nothing
//! half-written, and the restarted server keeps every promise it made before the crash.
//!
//! Not covered on SQLite: a read-only data directory or a replaced/deleted database file. The
//! tests run as root (permissions do not bind) and an open SQLite connection keeps using the inode
//! it opened, so neither gives a deterministic "database down".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::state::AppState;
use portcullis::store::Db;
use portcullis::tokens::secrets;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use crate::helpers::{
    Binary, Engine, IssuedCode, MCP, OAuthParams, PASSWORD, ServeOutput, TestApp, TestDb, authorize_approve_at,
    db_tests, hidden, pkce, query_of, sign_in,
};

/// The redirect URI of every client these tests register (loopback: any port, http allowed).
pub(crate) const REDIRECT: &str = "http://127.0.0.1/cb";

// ---------------------------------------------------------------------------------------------
// HTTP helpers that work against any base URL (the in-process app or the served binary).
// ---------------------------------------------------------------------------------------------

/// A cookie-keeping client that does not follow redirects, with a bound on every request so a
/// hung server fails the test instead of blocking it.
pub(crate) fn client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).timeout(timeout).build().expect("client")
}

pub(crate) async fn register_client(http: &reqwest::Client, base: &str) -> String {
    let res = http
        .post(format!("{base}/register"))
        .json(&json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Faults" }))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201, "registration");
    let body: Value = res.json().await.expect("json");
    body["client_id"].as_str().expect("client_id").to_string()
}

pub(crate) async fn login(http: &reqwest::Client, base: &str) {
    let res = sign_in(http, &format!("{base}/login"), "alice", PASSWORD).await;
    assert_eq!(res.status(), 200, "login");
}

fn authorize_query(client_id: &str, challenge: &str) -> OAuthParams {
    OAuthParams::authorize(client_id, REDIRECT, challenge).state("st")
}

/// /authorize for a signed-in browser, through consent when asked: returns (code, verifier).
pub(crate) async fn authorize(http: &reqwest::Client, base: &str, client_id: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let loc = authorize_approve_at(http, base, &authorize_query(client_id, &challenge)).await;
    let code = query_of(&loc).remove("code").unwrap_or_else(|| panic!("no code in {loc}"));
    (code, verifier)
}

pub(crate) fn code_form(client_id: &str, code: &str, verifier: &str) -> OAuthParams {
    OAuthParams::code(client_id, code, verifier).redirect_uri(REDIRECT)
}

pub(crate) fn refresh_form(client_id: &str, token: &str) -> OAuthParams {
    OAuthParams::refresh(client_id, token)
}

/// POST /token; `None` when no answer came back (connection refused or reset: the server died).
pub(crate) async fn post_token(http: &reqwest::Client, base: &str, form: &OAuthParams) -> Option<(u16, Value)> {
    let res = http.post(format!("{base}/token")).form(form).send().await.ok()?;
    let status = res.status().as_u16();
    let body = res.bytes().await.ok()?;
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

pub(crate) async fn token(http: &reqwest::Client, base: &str, form: &OAuthParams) -> (u16, Value) {
    post_token(http, base, form).await.expect("the server answers /token")
}

/// Registration, sign-in, consent, code exchange and one refresh: the whole flow works.
pub(crate) async fn full_flow_works(base: &str) {
    let http = client(Duration::from_secs(30));
    let client_id = register_client(&http, base).await;
    login(&http, base).await;
    let (code, verifier) = authorize(&http, base, &client_id).await;
    let (status, body) = token(&http, base, &code_form(&client_id, &code, &verifier)).await;
    assert_eq!(status, 200, "code exchange: {body}");
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    let (status, body) = token(&http, base, &refresh_form(&client_id, refresh)).await;
    assert_eq!(status, 200, "refresh: {body}");
}

// ---------------------------------------------------------------------------------------------
// Part 1: the database goes away under a running server.
// ---------------------------------------------------------------------------------------------

/// A TCP forwarder between the app and Postgres that the test can cut (stop listening, drop every
/// open connection) and restore (listen again on the same port).
struct Forwarder {
    addr: SocketAddr,
    up: watch::Sender<bool>,
    listening: watch::Receiver<bool>,
    live: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

fn listen_reusing(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Forwarder {
        let listener = listen_reusing("127.0.0.1:0".parse().unwrap()).expect("forwarder listens");
        let addr = listener.local_addr().expect("forwarder address");
        let (up, up_rx) = watch::channel(true);
        let (listening_tx, listening) = watch::channel(true);
        let live = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(Self::run(listener, addr, target, up_rx, listening_tx, live.clone()));
        Forwarder { addr, up, listening, live, task }
    }

    async fn run(
        listener: TcpListener,
        addr: SocketAddr,
        target: SocketAddr,
        mut up: watch::Receiver<bool>,
        listening: watch::Sender<bool>,
        live: Arc<AtomicUsize>,
    ) {
        let mut listener = Some(listener);
        loop {
            match listener.take() {
                Some(l) => {
                    tokio::select! {
                        accepted = l.accept() => {
                            if let Ok((inbound, _)) = accepted {
                                live.fetch_add(1, Ordering::SeqCst);
                                tokio::spawn(Self::pipe(inbound, target, up.clone(), LiveGuard(live.clone())));
                            }
                            listener = Some(l);
                        }
                        changed = up.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if *up.borrow_and_update() {
                                listener = Some(l);
                            } else {
                                drop(l);
                                listening.send_replace(false);
                            }
                        }
                    }
                }
                None => {
                    if up.wait_for(|up| *up).await.is_err() {
                        return;
                    }
                    let mut tries = 0;
                    let l = loop {
                        match listen_reusing(addr) {
                            Ok(l) => break l,
                            Err(e) if tries < 50 => {
                                tries += 1;
                                eprintln!("forwarder: cannot listen again on {addr} yet: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(e) => panic!("forwarder: cannot listen again on {addr}: {e}"),
                        }
                    };
                    listener = Some(l);
                    listening.send_replace(true);
                }
            }
        }
    }

    async fn pipe(mut inbound: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>, _live: LiveGuard) {
        let Ok(mut outbound) = TcpStream::connect(target).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            _ = up.wait_for(|up| !*up) => {}
        }
        // Dropping both ends closes them: the app sees its connection die.
    }

    /// Stops listening and drops every open connection; returns once both are done.
    async fn cut(&mut self) {
        self.up.send_replace(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while *self.listening.borrow() || self.live.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < deadline, "the forwarder did not cut within 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens again on the same port; returns once it does.
    async fn restore(&mut self) {
        self.up.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), self.listening.wait_for(|l| *l))
            .await
            .expect("the forwarder listens again within 10 s")
            .expect("forwarder task alive");
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.up.send_replace(false);
        self.task.abort();
    }
}

/// The app in-process on 127.0.0.1:0 against `database_url` (which may differ from the test
/// database's own URL: it points at the forwarder).
struct InProcess {
    base: String,
    state: AppState,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl InProcess {
    async fn spawn(database_url: &str) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let settings = crate::helpers::settings_for(database_url, &base, addr, |_| {});
        let (state, _) = AppState::start(settings).await.expect("start");
        let app = portcullis::app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.expect("serve");
        });
        let me = InProcess { base, state, server };
        prepare_alice_and_resource(&me.state.db).await;
        me
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// alice and one MCP server, through the library.
async fn prepare_alice_and_resource(db: &Db) {
    let hasher = portcullis::users::password::Hasher::default();
    portcullis::admin::add_user(db, &hasher, "alice", PASSWORD).await.expect("add alice");
    let spec = portcullis::admin::ResourceSpec {
        uri: MCP.into(),
        name: "Example MCP".into(),
        scopes: vec![("mcp:tools".into(), "Use the tools".into(), true)],
        token_lifetime: None,
        ..Default::default()
    };
    portcullis::admin::add_resource(db, &spec).await.expect("add resource");
}

/// A fresh Postgres test database reached through a forwarder: (database, forwarder, app URL).
async fn postgres_behind_forwarder() -> (TestDb, Forwarder, String) {
    let db = TestDb::new(Engine::Postgres).await;
    let mut url = url::Url::parse(&db.url).expect("postgres url");
    let host = url.host_str().expect("postgres host").to_string();
    let port = url.port().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve postgres host")
        .find(SocketAddr::is_ipv4)
        .expect("an IPv4 address for postgres");
    let forwarder = Forwarder::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(forwarder.addr.port())).expect("port");
    (db, forwarder, url.to_string())
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// An API endpoint's answer while the database is away: 503, JSON `temporarily_unavailable`,
/// `Retry-After`, never cached.
async fn assert_temporarily_unavailable(what: &str, res: reqwest::Result<reqwest::Response>) {
    let res = res.unwrap_or_else(|e| panic!("{what}: no answer while the database is down: {e}"));
    assert_eq!(res.status(), 503, "{what}: status");
    assert!(!header(&res, "retry-after").is_empty(), "{what}: no Retry-After");
    assert!(header(&res, "content-type").starts_with("application/json"), "{what}: not JSON");
    assert_eq!(header(&res, "cache-control"), "no-store", "{what}: cache-control");
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
    assert_eq!(body["error"], "temporarily_unavailable", "{what}: {body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(!description.to_ascii_lowercase().contains("pool"), "{what}: internals leak: {description}");
}

/// A browser page's answer while the database is away: a 5xx error page with a body. Returns
/// what is wrong with it, if anything.
async fn error_page_problem(what: &str, res: reqwest::Result<reqwest::Response>) -> Option<String> {
    let res = match res {
        Ok(res) => res,
        Err(e) => return Some(format!("{what}: no answer while the database is down: {e}")),
    };
    let status = res.status();
    let content_type = header(&res, "content-type").to_string();
    let body = res.text().await.unwrap_or_default();
    let page = content_type.starts_with("text/html") && body.to_ascii_lowercase().contains("<html");
    let says_why = body.contains("navailable");
    (!(status.is_server_error() && page && says_why))
        .then(|| format!("{what}: {status}, content-type {content_type:?}, body {body:?}"))
}

async fn assert_error_page(what: &str, res: reqwest::Result<reqwest::Response>) {
    if let Some(problem) = error_page_problem(what, res).await {
        panic!("{problem}");
    }
}

/// Polls /readyz until 200 (bounded).
async fn wait_ready_again(http: &reqwest::Client, base: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let res = http.get(format!("{base}/readyz")).timeout(Duration::from_secs(6)).send().await;
        if res.is_ok_and(|r| r.status() == 200) {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "/readyz did not return to 200 within {within:?} of the database's return");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Postgres goes away (every connection dropped, new ones refused) and comes back: readiness and
/// API endpoints answer 503 `temporarily_unavailable` meanwhile, the key cache keeps /jwks.json up,
/// nothing that failed with 503 was spent, and the server recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(portcullis_postgres_tests), ignore = "set PORTCULLIS_TEST_POSTGRES_URL to run this Postgres test")]
async fn postgres_outage_answers_503_and_recovers() {
    let (_db, mut forwarder, url) = postgres_behind_forwarder().await;
    let app = InProcess::spawn(&url).await;
    let http = client(Duration::from_secs(30));

    // Before: a code and a refresh token in hand, and the published keys.
    let client_id = register_client(&http, &app.base).await;
    login(&http, &app.base).await;
    let (code, verifier) = authorize(&http, &app.base, &client_id).await;
    let (status, first) = token(&http, &app.base, &code_form(&client_id, &code, &verifier)).await;
    assert_eq!(status, 200, "{first}");
    let refresh = first["refresh_token"].as_str().expect("refresh_token").to_string();
    let (code, verifier) = authorize(&http, &app.base, &client_id).await;
    let jwks_before: Value = http.get(app.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    assert!(!jwks_before["keys"].as_array().expect("keys").is_empty());
    let (_, challenge) = pkce();

    forwarder.cut().await;
    let anonymous = client(Duration::from_secs(30));
    let started = Instant::now();
    let (ready, redeem, refreshed, register, revoke, jwks, authorize_anon, healthz, metadata) = tokio::join!(
        anonymous.get(app.url("/readyz")).send(),
        anonymous.post(app.url("/token")).form(&code_form(&client_id, &code, &verifier)).send(),
        anonymous.post(app.url("/token")).form(&refresh_form(&client_id, &refresh)).send(),
        anonymous
            .post(app.url("/register"))
            .json(&json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }))
            .send(),
        anonymous
            .post(app.url("/revoke"))
            .form(&[("token", refresh.as_str()), ("token_type_hint", "refresh_token"), ("client_id", &client_id)])
            .send(),
        anonymous.get(app.url("/jwks.json")).send(),
        anonymous.get(app.url("/authorize")).query(&authorize_query(&client_id, &challenge)).send(),
        anonymous.get(app.url("/healthz")).send(),
        anonymous.get(app.url("/.well-known/oauth-authorization-server")).send(),
    );
    let outage = started.elapsed();

    let ready = ready.expect("/readyz answers while the database is down");
    assert_eq!(ready.status(), 503, "/readyz while the database is down");
    assert_eq!(ready.json::<Value>().await.expect("readyz JSON")["status"], "unavailable");
    assert_temporarily_unavailable("POST /token (authorization_code)", redeem).await;
    assert_temporarily_unavailable("POST /token (refresh_token)", refreshed).await;
    assert_temporarily_unavailable("POST /register", register).await;
    assert_temporarily_unavailable("POST /revoke", revoke).await;
    let jwks = jwks.expect("/jwks.json answers");
    assert_eq!(jwks.status(), 200, "/jwks.json is served from the key cache");
    assert_eq!(jwks.json::<Value>().await.expect("jwks JSON"), jwks_before, "the cached key set");
    assert_error_page("GET /authorize (anonymous)", authorize_anon).await;
    assert_eq!(healthz.expect("/healthz").status(), 200, "liveness does not depend on the database");
    // Metadata lists the registered scopes, so it may need the database; either way no 500.
    let metadata = metadata.expect("metadata answers");
    if metadata.status() != 200 {
        assert_temporarily_unavailable("GET /.well-known/oauth-authorization-server", Ok(metadata)).await;
    }
    assert!(outage < Duration::from_secs(20), "answers while down took {outage:?}");

    forwarder.restore().await;
    let back = wait_ready_again(&anonymous, &app.base, Duration::from_secs(15)).await;
    eprintln!("postgres outage: answers while down within {outage:?}; ready again {back:?} after restore");

    // Nothing that failed with 503 was spent: the code and the refresh token still work.
    let (status, body) = token(&http, &app.base, &code_form(&client_id, &code, &verifier)).await;
    assert_eq!(status, 200, "the code refused with 503 is still good: {body}");
    let (status, body) = token(&http, &app.base, &refresh_form(&client_id, &refresh)).await;
    assert_eq!(status, 200, "the refresh token refused with 503 is still good (nor revoked): {body}");
    full_flow_works(&app.base).await;
}

/// Browser pages while Postgres is away, for a signed-in person and a new visitor: a readable
/// 5xx page, never an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(portcullis_postgres_tests), ignore = "set PORTCULLIS_TEST_POSTGRES_URL to run this Postgres test")]
async fn postgres_outage_browser_pages_show_an_error_page() {
    let (_db, mut forwarder, url) = postgres_behind_forwarder().await;
    let app = InProcess::spawn(&url).await;
    let signed_in = client(Duration::from_secs(30));
    let client_id = register_client(&signed_in, &app.base).await;
    login(&signed_in, &app.base).await;
    authorize(&signed_in, &app.base, &client_id).await;
    let (_, challenge) = pkce();

    let returning = client(Duration::from_secs(30));
    let page = returning.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf_token");
    forwarder.cut().await;
    let visitor = client(Duration::from_secs(30));
    let (authorize_signed_in, authorize_visitor, account, login_post, consent) = tokio::join!(
        signed_in.get(app.url("/authorize")).query(&authorize_query(&client_id, &challenge)).send(),
        visitor.get(app.url("/authorize")).query(&authorize_query(&client_id, &challenge)).send(),
        signed_in.get(app.url("/account")).send(),
        returning
            .post(app.url("/login"))
            .form(&[("username", "alice"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "")])
            .send(),
        signed_in.get(app.url("/consent")).query(&[("request_id", "x")]).send(),
    );
    let mut problems = Vec::new();
    problems.extend(error_page_problem("GET /authorize (signed in)", authorize_signed_in).await);
    problems.extend(error_page_problem("GET /authorize (new visitor)", authorize_visitor).await);
    problems.extend(error_page_problem("GET /account (signed in)", account).await);
    problems.extend(error_page_problem("POST /login (returning)", login_post).await);
    problems.extend(error_page_problem("GET /consent (signed in)", consent).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    forwarder.restore().await;
    wait_ready_again(&visitor, &app.base, Duration::from_secs(15)).await;
    let (code, verifier) = authorize(&signed_in, &app.base, &client_id).await;
    let (status, body) = token(&signed_in, &app.base, &code_form(&client_id, &code, &verifier)).await;
    assert_eq!(status, 200, "the session survived the outage: {body}");
}

/// The login page for a new visitor while Postgres is away. The handler renders the page (with a
/// fresh CSRF token in a new session), then tower-sessions fails to save the session and answers
/// its own bare 500 with an empty body, past the error-page renderer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(portcullis_postgres_tests), ignore = "set PORTCULLIS_TEST_POSTGRES_URL to run this Postgres test")]
async fn postgres_outage_login_page_is_an_error_page() {
    let (_db, mut forwarder, url) = postgres_behind_forwarder().await;
    let app = InProcess::spawn(&url).await;
    forwarder.cut().await;
    let visitor = client(Duration::from_secs(30));
    assert_error_page("GET /login (new visitor)", visitor.get(app.url("/login")).send().await).await;
    forwarder.restore().await;
    wait_ready_again(&visitor, &app.base, Duration::from_secs(15)).await;
    let res = visitor.get(app.url("/login")).send().await.expect("login page");
    assert_eq!(res.status(), 200, "the login page is back");
}

/// SQLite: another process holds the write lock longer than the busy timeout (5 s). Reads go on
/// (WAL), but the server cannot write, so /readyz answers 503 (within its own short wait) until
/// the lock is released; writes cannot happen now but will soon, which is
/// `temporarily_unavailable` (503, Retry-After), and nothing refused is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_write_lock_past_busy_timeout_is_temporarily_unavailable() {
    use sqlx::Connection as _;
    let app = TestApp::spawn(Engine::Sqlite).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (status, first) = app.token(&code_form(&client_id, &code, &verifier)).await;
    assert_eq!(status, 200, "{first}");
    let refresh = first["refresh_token"].as_str().unwrap().to_string();

    let mut locker = sqlx::SqliteConnection::connect(&app.test_db.url).await.expect("second connection");
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.expect("take the write lock");
    let http = client(Duration::from_secs(30));
    let (ready, refreshed) = tokio::join!(
        http.get(app.url("/readyz")).send(),
        http.post(app.url("/token")).form(&refresh_form(&client_id, &refresh)).send(),
    );
    sqlx::query("ROLLBACK").execute(&mut locker).await.expect("release the write lock");
    locker.close().await.ok();

    assert_eq!(ready.expect("/readyz").status(), 503, "the database cannot be written: not ready");
    assert_temporarily_unavailable("POST /token (refresh_token) under a held write lock", refreshed).await;
    // Probes within a second share one check: ready again within a few seconds of the release.
    wait_ready_again(&http, &app.base, Duration::from_secs(5)).await;
    let (status, body) = app.token(&refresh_form(&client_id, &refresh)).await;
    assert_eq!(status, 200, "the refresh token refused under the lock is still good: {body}");
}

// ---------------------------------------------------------------------------------------------
// Part 2: SIGKILL during a burst of token requests, then restart on the same database.
// ---------------------------------------------------------------------------------------------

db_tests!(sigkill_during_token_burst_leaves_consistent_state, code_replay_racing_a_refresh_revokes_the_whole_family);

/// A replayed code revokes the family its first redemption started, even when a refresh of that
/// family's token is in flight at the same moment: afterwards no token of the family works.
async fn code_replay_racing_a_refresh_revokes_the_whole_family(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client(REDIRECT).await;
    let http = client(Duration::from_secs(30));
    login(&http, &app.base).await;
    let mut survivors = Vec::new();
    for attempt in 0..20 {
        let (code, verifier) = authorize(&http, &app.base, &client_id).await;
        let (status, first) = app.token(&code_form(&client_id, &code, &verifier)).await;
        assert_eq!(status, 200, "{first}");
        let t0 = first["refresh_token"].as_str().unwrap().to_string();
        let (refresh, replay) = (refresh_form(&client_id, &t0), code_form(&client_id, &code, &verifier));
        let (refreshed, replayed) = tokio::join!(app.token(&refresh), app.token(&replay));
        assert_eq!((replayed.0, replayed.1["error"].as_str()), (400, Some("invalid_grant")), "the replay");
        if refreshed.0 != 200 {
            continue;
        }
        // The refresh won the race; the replay must still have revoked its successor.
        let successor = refreshed.1["refresh_token"].as_str().unwrap();
        let (status, _) = app.token(&refresh_form(&client_id, successor)).await;
        if status == 200 {
            survivors.push(format!("attempt {attempt}: the successor minted during the replay still refreshes (200)"));
        }
    }
    let live = count(
        &app.db,
        "SELECT COUNT(*) FROM (SELECT family_id FROM refresh_tokens GROUP BY family_id \
         HAVING COUNT(revoked_at) > 0 AND COUNT(revoked_at) < COUNT(*)) x",
        &[],
    )
    .await;
    assert!(
        survivors.is_empty() && live == 0,
        "{live} families partly revoked after a replay:\n{}",
        survivors.join("\n")
    );
}

/// `portcullis serve` on the given port (the same one across restarts); SIGKILLed when dropped
/// (also when a test fails).
fn serve(dir: &Path, database_url: &str, port: u16) -> Binary {
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("PORTCULLIS_DATABASE_URL", database_url),
        ("PORTCULLIS_ISSUER", base.as_str()),
        ("PORTCULLIS_BOOTSTRAP_ADMIN", "false"),
        // Codes outlive the test's rounds, so "not redeemed before the crash" means "still good".
        ("PORTCULLIS_AUTHORIZATION_CODE_LIFETIME", "600"),
    ];
    Binary::start(dir, port, &env, ServeOutput::Separate)
}

/// What one round prepared: codes not yet redeemed, codes already redeemed (with the refresh
/// tokens they gave), per client.
struct Round {
    fresh_codes: Vec<Code>,
    spent_codes: Vec<Code>,
    refresh_tokens: Vec<(String, String)>,
}

#[derive(Clone)]
struct Code {
    client_id: String,
    code: String,
    verifier: String,
}

const CLIENTS_PER_ROUND: usize = 4;
const CODES_PER_CLIENT: usize = 8;
/// Refreshes per chain in the burst (bounded: the token endpoint is rate-limited per IP).
const CHAIN_STEPS: usize = 12;

async fn prepare_round(base: &str) -> Round {
    let http = client(Duration::from_secs(30));
    login(&http, base).await;
    let mut round = Round { fresh_codes: vec![], spent_codes: vec![], refresh_tokens: vec![] };
    for _ in 0..CLIENTS_PER_ROUND {
        let client_id = register_client(&http, base).await;
        for i in 0..CODES_PER_CLIENT {
            let (code, verifier) = authorize(&http, base, &client_id).await;
            let code = Code { client_id: client_id.clone(), code, verifier };
            if i % 2 == 0 {
                let (status, body) = token(&http, base, &code_form(&code.client_id, &code.code, &code.verifier)).await;
                assert_eq!(status, 200, "{body}");
                let refresh = body["refresh_token"].as_str().expect("refresh_token").to_string();
                round.refresh_tokens.push((client_id.clone(), refresh));
                round.spent_codes.push(code);
            } else {
                round.fresh_codes.push(code);
            }
        }
    }
    round
}

/// Every answer the burst received: (what was presented, status, body).
#[derive(Default)]
struct Seen {
    codes: Vec<(String, u16, Value)>,
    refreshes: Vec<(String, u16, Value)>,
}

/// The last refresh token a chain was answered with, i.e. the one a real client would hold.
struct ChainEnd {
    client_id: String,
    last: String,
}

struct Burst {
    seen: Arc<Mutex<Seen>>,
    answered: Arc<AtomicUsize>,
    codes: Vec<tokio::task::JoinHandle<()>>,
    chains: Vec<tokio::task::JoinHandle<ChainEnd>>,
}

/// Fires concurrent /token requests: every fresh code redeemed (every other one twice at once),
/// two spent codes replayed, every refresh token rotated along a chain (every third step
/// presenting the same token twice at once), and two tokens rotated by two racing chains.
fn start_burst(base: &str, round: &Round) -> Burst {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut codes = Vec::new();
    let replays = round.spent_codes.iter().take(2);
    let doubled = round.fresh_codes.iter().step_by(2);
    for code in round.fresh_codes.iter().chain(doubled).chain(replays).cloned() {
        let (http, base, seen, answered) = (http.clone(), base.to_string(), seen.clone(), answered.clone());
        codes.push(tokio::spawn(async move {
            if let Some((status, body)) =
                post_token(&http, &base, &code_form(&code.client_id, &code.code, &code.verifier)).await
            {
                answered.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().codes.push((code.code, status, body));
            }
        }));
    }
    let mut chains = Vec::new();
    let racing = round.refresh_tokens.iter().step_by(8).cloned();
    for (client_id, start) in round.refresh_tokens.iter().cloned().chain(racing) {
        let (http, base, seen, answered) = (http.clone(), base.to_string(), seen.clone(), answered.clone());
        chains.push(tokio::spawn(async move {
            let mut current = start;
            for step in 0..CHAIN_STEPS {
                let form = refresh_form(&client_id, &current);
                let (a, b) = if step % 3 == 2 {
                    tokio::join!(post_token(&http, &base, &form), post_token(&http, &base, &form))
                } else {
                    (post_token(&http, &base, &form).await, None)
                };
                let gone = a.is_none() || (step % 3 == 2 && b.is_none());
                let mut next = None;
                for (status, body) in [a, b].into_iter().flatten() {
                    answered.fetch_add(1, Ordering::SeqCst);
                    if status == 200 {
                        next = body["refresh_token"].as_str().map(str::to_string);
                    }
                    seen.lock().unwrap().refreshes.push((current.clone(), status, body));
                }
                match next {
                    Some(n) => current = n,
                    None => break,
                }
                if gone {
                    break;
                }
            }
            ChainEnd { client_id, last: current }
        }));
    }
    Burst { seen, answered, codes, chains }
}

pub(crate) async fn count(db: &Db, sql: &str, binds: &[&[u8]]) -> i64 {
    match db {
        Db::Sqlite(s) => {
            let mut q = sqlx::query_scalar::<_, i64>(sql);
            for b in binds {
                q = q.bind(b.to_vec());
            }
            q.fetch_one(&mut *s.read().await.expect("connection")).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
        Db::Postgres(p) => {
            let mut q = sqlx::query_scalar::<_, i64>(sql);
            for b in binds {
                q = q.bind(b.to_vec());
            }
            q.fetch_one(p).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}

/// The invariants no crash may break, over the whole database.
pub(crate) async fn check_invariants(db: &Db) {
    let checks: &[(&str, &str)] = &[
        (
            "a successor_id names no row whose parent is this token",
            "SELECT COUNT(*) FROM refresh_tokens t WHERE t.successor_id IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM refresh_tokens s WHERE s.id = t.successor_id AND s.parent_id = t.id)",
        ),
        (
            "a child token whose parent does not name it as successor",
            "SELECT COUNT(*) FROM refresh_tokens s WHERE s.parent_id IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM refresh_tokens p WHERE p.id = s.parent_id AND p.successor_id = s.id)",
        ),
        (
            "two refresh tokens share a parent (two successors)",
            "SELECT COUNT(*) FROM (SELECT parent_id FROM refresh_tokens WHERE parent_id IS NOT NULL \
             GROUP BY parent_id HAVING COUNT(*) > 1) x",
        ),
        (
            "rotated_at, successor_id and successor_sealed not set together",
            "SELECT COUNT(*) FROM refresh_tokens WHERE (rotated_at IS NULL) <> (successor_id IS NULL) \
             OR (successor_id IS NULL) <> (successor_sealed IS NULL)",
        ),
        (
            "a child in another family or grant than its parent",
            "SELECT COUNT(*) FROM refresh_tokens s JOIN refresh_tokens p ON p.id = s.parent_id \
             WHERE p.family_id <> s.family_id OR p.grant_id <> s.grant_id",
        ),
        (
            "a redeemed code's issued family has no refresh token",
            "SELECT COUNT(*) FROM authorization_codes c WHERE c.redeemed_at IS NOT NULL AND c.issued_family_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = c.issued_family_id)",
        ),
        (
            "a code records what it issued but is not redeemed",
            "SELECT COUNT(*) FROM authorization_codes WHERE redeemed_at IS NULL \
             AND (issued_family_id IS NOT NULL OR issued_jti IS NOT NULL)",
        ),
        (
            "a redeemed code on a live grant (every redemption here is valid) without what it issued",
            "SELECT COUNT(*) FROM authorization_codes c JOIN grants g ON g.id = c.grant_id \
             WHERE c.redeemed_at IS NOT NULL AND g.revoked_at IS NULL \
             AND (c.issued_family_id IS NULL OR c.issued_jti IS NULL)",
        ),
        (
            "a family's first token that no redeemed code issued",
            "SELECT COUNT(*) FROM refresh_tokens t WHERE t.parent_id IS NULL AND NOT EXISTS \
             (SELECT 1 FROM authorization_codes c WHERE c.issued_family_id = t.family_id AND c.redeemed_at IS NOT NULL)",
        ),
        (
            "a family with more than one first token",
            "SELECT COUNT(*) FROM (SELECT family_id FROM refresh_tokens WHERE parent_id IS NULL \
             GROUP BY family_id HAVING COUNT(*) > 1) x",
        ),
        (
            "a refresh token whose grant does not exist",
            "SELECT COUNT(*) FROM refresh_tokens t LEFT JOIN grants g ON g.id = t.grant_id WHERE g.id IS NULL",
        ),
        (
            "a code whose grant does not exist",
            "SELECT COUNT(*) FROM authorization_codes c LEFT JOIN grants g ON g.id = c.grant_id WHERE g.id IS NULL",
        ),
        // Not checked: "a revoked grant with a live refresh token". On Postgres a rotation racing
        // the grant's revocation may insert its successor after the revoking UPDATE's snapshot; the
        // row is unusable (every refresh requires a live grant), which the restart checks cover.
        // Not checked here: "a family partly revoked". A code replay racing a refresh in the same
        // family leaves the new successor live on Postgres, crash or not; see
        // `code_replay_racing_a_refresh_revokes_the_whole_family`.
    ];
    let mut broken = Vec::new();
    for (what, sql) in checks {
        let n = count(db, sql, &[]).await;
        if n != 0 {
            broken.push(format!("{n} × {what}"));
        }
    }
    assert!(broken.is_empty(), "inconsistent state after the crash:\n{}", broken.join("\n"));
}

/// What the client was told before the crash is what the database holds after it.
async fn check_answers_were_durable(db: &Db, seen: &Seen) {
    let mut ok_per_code: HashMap<&str, usize> = HashMap::new();
    for (code, status, body) in &seen.codes {
        if *status != 200 {
            assert_eq!(body["error"], "invalid_grant", "a redemption failed otherwise: {status} {body}");
            continue;
        }
        *ok_per_code.entry(code).or_default() += 1;
        let refresh = body["refresh_token"].as_str().expect("refresh_token");
        let n = count(
            db,
            "SELECT COUNT(*) FROM authorization_codes c JOIN refresh_tokens t ON t.family_id = c.issued_family_id \
             AND t.parent_id IS NULL WHERE c.code_hash = $1 AND c.redeemed_at IS NOT NULL AND t.token_hash = $2",
            &[&secrets::hash(code), &secrets::hash(refresh)],
        )
        .await;
        assert_eq!(n, 1, "a code answered with tokens is not recorded as their redemption");
    }
    let twice: Vec<_> = ok_per_code.values().filter(|n| **n > 1).collect();
    assert!(twice.is_empty(), "codes redeemed twice: {twice:?}");

    let mut successors: HashMap<&str, Vec<&str>> = HashMap::new();
    for (presented, status, body) in &seen.refreshes {
        if *status != 200 {
            assert_eq!(body["error"], "invalid_grant", "a refresh failed otherwise: {status} {body}");
            continue;
        }
        let next = body["refresh_token"].as_str().expect("refresh_token");
        let list = successors.entry(presented).or_default();
        if !list.contains(&next) {
            list.push(next);
        }
        let n = count(
            db,
            "SELECT COUNT(*) FROM refresh_tokens p JOIN refresh_tokens s ON s.id = p.successor_id \
             WHERE p.token_hash = $1 AND s.token_hash = $2 AND s.parent_id = p.id",
            &[&secrets::hash(presented), &secrets::hash(next)],
        )
        .await;
        assert_eq!(n, 1, "a refresh answered with a successor the database does not record as such");
    }
    let forks = successors.values().filter(|s| s.len() > 1).count();
    assert_eq!(forks, 0, "refresh tokens answered with two different successors");
}

/// What the restarted server answers for a refresh token, from the database's state alone.
async fn expected_refresh_status(db: &Db, token: &str) -> u16 {
    let h = secrets::hash(token);
    let live = count(
        db,
        "SELECT COUNT(*) FROM refresh_tokens t JOIN grants g ON g.id = t.grant_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND g.revoked_at IS NULL",
        &[&h],
    )
    .await;
    if live == 0 {
        return 400;
    }
    let unrotated =
        count(db, "SELECT COUNT(*) FROM refresh_tokens WHERE token_hash = $1 AND rotated_at IS NULL", &[&h]).await;
    // Rotated: answered again (grace, 60 s by default) while its successor is still current.
    let successor_current = count(
        db,
        "SELECT COUNT(*) FROM refresh_tokens p JOIN refresh_tokens s ON s.id = p.successor_id \
         WHERE p.token_hash = $1 AND s.rotated_at IS NULL AND s.revoked_at IS NULL",
        &[&h],
    )
    .await;
    if unrotated == 1 || successor_current == 1 { 200 } else { 400 }
}

/// The restarted server keeps the promises: a client whose refresh answer was lost in the crash
/// can present its token again, spent codes stay spent, unspent codes work once.
async fn check_restarted_server(db: &Db, base: &str, round: &Round, ends: &[ChainEnd]) {
    let http = client(Duration::from_secs(30));
    for end in ends {
        let expected = expected_refresh_status(db, &end.last).await;
        let (status, body) = token(&http, base, &refresh_form(&end.client_id, &end.last)).await;
        assert_eq!(status, expected, "refreshing a chain's last token after the restart: {body}");
        if status == 200 {
            let next = body["refresh_token"].as_str().expect("refresh_token");
            let n = count(
                db,
                "SELECT COUNT(*) FROM refresh_tokens p JOIN refresh_tokens s ON s.id = p.successor_id \
                 WHERE p.token_hash = $1 AND s.token_hash = $2",
                &[&secrets::hash(&end.last), &secrets::hash(next)],
            )
            .await;
            assert_eq!(n, 1, "the answer after the restart is the recorded successor");
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    for code in round.fresh_codes.iter().chain(&round.spent_codes) {
        let redeemed = count(
            db,
            "SELECT COUNT(*) FROM authorization_codes WHERE code_hash = $1 AND redeemed_at IS NOT NULL",
            &[&secrets::hash(&code.code)],
        )
        .await;
        // Reuse detection in the racing chains may have revoked the client's grant, codes included.
        let grant_live = count(
            db,
            "SELECT COUNT(*) FROM authorization_codes c JOIN grants g ON g.id = c.grant_id \
             WHERE c.code_hash = $1 AND g.revoked_at IS NULL",
            &[&secrets::hash(&code.code)],
        )
        .await;
        let (status, body) = token(&http, base, &code_form(&code.client_id, &code.code, &code.verifier)).await;
        if redeemed == 1 || grant_live == 0 {
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a spent code again");
        } else {
            assert_eq!(status, 200, "a code the crash left unspent still works once: {body}");
        }
    }
}

async fn sigkill_during_token_burst_leaves_consistent_state(engine: Engine) {
    let test_db = TestDb::new(engine).await;
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let db = test_db.connect().await;
        prepare_alice_and_resource(&db).await;
        db.close().await;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = serve(dir.path(), &test_db.url, port);
    server.wait_ready_with(&client(Duration::from_secs(5))).await;

    // Kill early in the burst (mostly code redemptions in flight), then deep into it.
    for kill_after in [6, 70] {
        let round = prepare_round(&server.base).await;
        let burst = start_burst(&server.base, &round);
        let deadline = Instant::now() + Duration::from_secs(60);
        while burst.answered.load(Ordering::SeqCst) < kill_after && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let all_done = burst.codes.iter().all(|h| h.is_finished()) && burst.chains.iter().all(|h| h.is_finished());
        server.kill();
        let at = burst.answered.load(Ordering::SeqCst);
        assert!(!all_done, "the burst ended before the kill ({at} answers); nothing was interrupted");
        for h in burst.codes {
            h.await.expect("code task");
        }
        let mut ends = Vec::new();
        for h in burst.chains {
            ends.push(h.await.expect("chain task"));
        }
        let seen = std::mem::take(&mut *burst.seen.lock().unwrap());
        eprintln!(
            "{engine:?}: killed after {at} answers ({} redemptions, {} refreshes answered)",
            seen.codes.len(),
            seen.refreshes.len()
        );

        server = serve(dir.path(), &test_db.url, port);
        server.wait_ready_with(&client(Duration::from_secs(5))).await;
        let db = Db::connect(&test_db.url).await.expect("open the database after the crash");
        check_invariants(&db).await;
        check_answers_were_durable(&db, &seen).await;
        check_restarted_server(&db, &server.base, &round, &ends).await;
        check_invariants(&db).await;
        db.close().await;
    }
    full_flow_works(&server.base).await;
}
