//! Test kit: fresh databases, the app on a random port, a browser-like HTTP client, fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use portcullis::config::{Config, Settings};
use portcullis::state::AppState;
use portcullis::store::Db;
use reqwest::redirect::Policy;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Generates, per listed test function, `name::sqlite` and `name::postgres` tests. The Postgres
/// variant is ignored (with the reason) unless the tests were built with
/// `PORTCULLIS_TEST_POSTGRES_URL` set (see `build.rs`): it never passes without running.
macro_rules! db_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::helpers::Engine::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(portcullis_postgres_tests),
                ignore = "set PORTCULLIS_TEST_POSTGRES_URL to run the Postgres variant"
            )]
            async fn postgres() {
                super::$name(crate::helpers::Engine::Postgres).await
            }
        }
    )*};
}
pub(crate) use db_tests;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// The Postgres admin URL the tests create their databases from. A Postgres test runs only when
/// the tests were built with it set (or when asked to run ignored tests): without it, it fails.
pub fn postgres_admin_url() -> String {
    match std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "PORTCULLIS_TEST_POSTGRES_URL is not set, but a Postgres test is running: set it (e.g. \
             postgres://postgres@127.0.0.1:5432/postgres) for both the build and the run"
        ),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty database; dropped (Postgres) or deleted (SQLite) with the value.
pub struct TestDb {
    pub url: String,
    pub engine: Engine,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(engine: Engine) -> TestDb {
        match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
                TestDb { url, engine, _dir: Some(dir), pg_admin: None }
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!(
                    "portcullis_it_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    portcullis::tokens::secrets::random_string(4).to_ascii_lowercase().replace(['-', '_'], "x")
                );
                let conn = sqlx::PgPool::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PORTCULLIS_TEST_POSTGRES_URL is set but Postgres is unreachable: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&conn).await.expect("create test database");
                conn.close().await;
                let mut url = url::Url::parse(&admin).expect("postgres url");
                url.set_path(&name);
                TestDb { url: url.to_string(), engine, _dir: None, pg_admin: Some((admin, name)) }
            }
        }
    }

    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url).await.expect("connect");
        db.migrate().await.expect("migrate");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_admin.take() {
            // Best effort, on a thread of its own: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
                rt.block_on(async {
                    let conn = sqlx::PgPool::connect(&admin).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&conn).await.ok()?;
                    conn.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

pub const PASSWORD: &str = "correct horse battery";
pub const MCP: &str = "https://mcp.example.com/mcp";

/// The real app on 127.0.0.1:0, with its database and a cookie-keeping client that does not
/// follow redirects (tests look at each hop).
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub db: Db,
    pub http: reqwest::Client,
    pub test_db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn settings_for(url: &str, issuer: &str, bind: std::net::SocketAddr, tweak: impl FnOnce(&mut Config)) -> Settings {
    let mut c = Config {
        issuer: Some(issuer.to_string()),
        bind: bind.to_string(),
        database_url: Some(portcullis::config::Secret::new(url)),
        bootstrap_admin: false,
        key_publish_delay: portcullis::config::Seconds(0),
        key_cache_refresh: portcullis::config::Seconds(1),
        ..Config::default()
    };
    tweak(&mut c);
    c.validate().expect("valid test config")
}

impl TestApp {
    pub async fn spawn(engine: Engine) -> TestApp {
        Self::spawn_with(engine, "", |_| {}).await
    }

    /// `issuer_path` is "" or like "/tenant1".
    pub async fn spawn_with(engine: Engine, issuer_path: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::spawn_on(engine, listener, issuer_path, tweak).await
    }

    /// On a listener bound beforehand (two apps that must know each other's issuer).
    pub async fn spawn_on(
        engine: Engine,
        listener: tokio::net::TcpListener,
        issuer_path: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let test_db = TestDb::new(engine).await;
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}{issuer_path}");
        let settings = settings_for(&test_db.url, &base, addr, tweak);
        let (state, _) = AppState::start(settings).await.expect("start");
        let app = portcullis::app(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
                .expect("serve");
        });
        TestApp { base, db: state.db.clone(), state, http: browser(), test_db, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn add_user(&self, name: &str) {
        portcullis::admin::add_user(&self.db, &self.state.hasher, name, PASSWORD).await.expect("add user");
    }

    pub async fn add_resource(&self, uri: &str, scopes: &[(&str, &str, bool)]) {
        let spec = portcullis::admin::ResourceSpec {
            uri: uri.into(),
            name: "Example MCP".into(),
            scopes: scopes.iter().map(|(n, d, def)| (n.to_string(), d.to_string(), *def)).collect(),
            token_lifetime: None,
            ..Default::default()
        };
        portcullis::admin::add_resource(&self.db, &spec).await.expect("add resource");
    }

    /// The usual fixture: alice, one MCP server with a default and an extra scope.
    pub async fn with_defaults(self) -> TestApp {
        self.add_user("alice").await;
        self.add_resource(MCP, &[("mcp:tools", "Use the tools", true), ("mcp:admin", "Administer", false)]).await;
        self
    }

    /// Registers a public client through /register.
    pub async fn register(&self, body: Value) -> Value {
        let res = self.http.post(self.url("/register")).json(&body).send().await.expect("register");
        assert_eq!(res.status(), 201, "registration failed");
        res.json().await.expect("json")
    }

    pub async fn public_client(&self, redirect: &str) -> String {
        let c = self
            .register(json!({ "redirect_uris": [redirect], "token_endpoint_auth_method": "none", "client_name": "Test client" }))
            .await;
        c["client_id"].as_str().expect("client_id").to_string()
    }

    /// A public client that alice has approved once through `redirect`: the server trusts that
    /// redirect URI with its errors from then on (an unapproved dynamic client's errors found
    /// before any interaction are shown on a page instead, RFC 9700 §4.11.2).
    pub async fn approved_client(&self, redirect: &str) -> String {
        let client_id = self.public_client(redirect).await;
        self.code_for_client(&client_id, redirect, &[]).await;
        client_id
    }

    /// Signs in through the login form (as a browser would, CSRF token included).
    pub async fn login(&self, http: &reqwest::Client, username: &str, password: &str) -> reqwest::Response {
        sign_in(http, &self.url("/login"), username, password).await
    }

    /// Posts the login form of `page` (its CSRF token and `next`) as `username`.
    pub async fn submit_login(
        &self,
        http: &reqwest::Client,
        page: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        post_login(http, &self.url("/login"), page, username, password).await
    }

    /// Runs /authorize for a signed-in browser through consent (approving) and returns the
    /// final redirect Location to the client.
    pub async fn authorize_approve<Q: Serialize + ?Sized>(&self, http: &reqwest::Client, query: &Q) -> String {
        authorize_approve_at(http, &self.base, query).await
    }

    /// The whole dance for alice with a fresh public client: `state=st-1`, then `extra`.
    pub async fn code_for(&self, redirect: &str, extra: &[(&str, &str)]) -> IssuedCode {
        let client_id = self.public_client(redirect).await;
        let mut query = vec![("state", "st-1")];
        query.extend_from_slice(extra);
        self.code_for_client(&client_id, redirect, &query).await
    }

    /// alice signs in with a fresh browser and approves an authorization request for an existing
    /// client (`response_type`, `client_id`, `redirect_uri`, an S256 challenge, then `extra`);
    /// the code comes back to `redirect`.
    pub async fn code_for_client(&self, client_id: &str, redirect: &str, extra: &[(&str, &str)]) -> IssuedCode {
        let http = browser();
        let res = self.login(&http, "alice", PASSWORD).await;
        assert_eq!(res.status(), 200);
        let (verifier, challenge) = pkce();
        let loc =
            self.authorize_approve(&http, &OAuthParams::authorize(client_id, redirect, &challenge).extend(extra)).await;
        assert!(loc.starts_with(redirect), "redirected to {loc}");
        let code = query_of(&loc).remove("code").unwrap_or_else(|| panic!("no code in {loc}"));
        IssuedCode {
            client_id: client_id.to_string(),
            code,
            verifier,
            redirect_uri: redirect.to_string(),
            browser: http,
        }
    }

    /// POST /token with `form` (an [`OAuthParams`] or name/value pairs): (status, JSON body or null).
    pub async fn token<F: Serialize + ?Sized>(&self, form: &F) -> (u16, Value) {
        let res = self.http.post(self.url("/token")).form(form).send().await.expect("token");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// A code alice approved, with what redeeming it takes.
pub struct IssuedCode {
    pub client_id: String,
    pub code: String,
    pub verifier: String,
    /// The `redirect_uri` of the authorization request.
    pub redirect_uri: String,
    /// alice's signed-in browser (with the consent remembered).
    pub browser: reqwest::Client,
}

impl IssuedCode {
    /// The /token form redeeming it: `grant_type`, `code`, `code_verifier`, `client_id`. Tests
    /// that send `redirect_uri` (or `resource`) add it.
    pub fn redeem(&self) -> OAuthParams {
        OAuthParams::code(&self.client_id, &self.code, &self.verifier)
    }
}

// ---------------------------------------------------------------------------------------------
// /authorize and /token requests
// ---------------------------------------------------------------------------------------------

/// An /authorize query or a /token form, parameter by parameter, in order. It serializes as
/// name/value pairs, so it goes straight into reqwest's `.query(&…)` and `.form(&…)`.
#[derive(Clone, Debug, Default)]
pub struct OAuthParams(Vec<(String, String)>);

impl OAuthParams {
    /// /authorize: `response_type=code`, `client_id`, `redirect_uri`, `code_challenge` (S256).
    pub fn authorize(client_id: &str, redirect_uri: &str, challenge: &str) -> Self {
        Self::default()
            .with("response_type", "code")
            .with("client_id", client_id)
            .with("redirect_uri", redirect_uri)
            .with("code_challenge", challenge)
            .with("code_challenge_method", "S256")
    }

    /// /token, `grant_type=authorization_code`: `code`, `code_verifier`, `client_id`.
    pub fn code(client_id: &str, code: &str, verifier: &str) -> Self {
        Self::default()
            .with("grant_type", "authorization_code")
            .with("code", code)
            .with("code_verifier", verifier)
            .with("client_id", client_id)
    }

    /// /token, `grant_type=refresh_token`: `refresh_token`, `client_id`.
    pub fn refresh(client_id: &str, refresh_token: &str) -> Self {
        Self::default()
            .with("grant_type", "refresh_token")
            .with("refresh_token", refresh_token)
            .with("client_id", client_id)
    }

    /// Appends `name=value` (a name already there is sent twice).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.to_string(), value.to_string()));
        self
    }

    /// Appends each of `pairs`.
    pub fn extend(self, pairs: &[(&str, &str)]) -> Self {
        pairs.iter().fold(self, |p, (name, value)| p.with(name, value))
    }

    /// Leaves `name` out.
    pub fn without(mut self, name: &str) -> Self {
        self.0.retain(|(n, _)| n != name);
        self
    }

    pub fn redirect_uri(self, value: &str) -> Self {
        self.with("redirect_uri", value)
    }

    pub fn resource(self, value: &str) -> Self {
        self.with("resource", value)
    }

    pub fn scope(self, value: &str) -> Self {
        self.with("scope", value)
    }

    pub fn state(self, value: &str) -> Self {
        self.with("state", value)
    }

    /// The query string a browser sends (`application/x-www-form-urlencoded`).
    pub fn encoded(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.0).finish()
    }
}

impl Serialize for OAuthParams {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// /authorize at `base` for a signed-in browser, through consent (approving) when it is asked:
/// the final redirect's Location (to the client).
pub async fn authorize_approve_at<Q: Serialize + ?Sized>(http: &reqwest::Client, base: &str, query: &Q) -> String {
    let res = http.get(format!("{base}/authorize")).query(query).send().await.expect("authorize");
    match res.status().as_u16() {
        302 | 303 => location(&res),
        200 => {
            let page = res.text().await.expect("consent page");
            let res = approve_consent(http, &format!("{base}/consent"), &page).await;
            assert_eq!(res.status(), 303, "consent answer");
            location(&res)
        }
        s => panic!("unexpected /authorize status {s}: {}", res.text().await.unwrap_or_default()),
    }
}

pub fn browser() -> reqwest::Client {
    // reqwest is built without a default TLS provider (the server installs ring at start-up).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().expect("client")
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("not a URL {url:?}: {e}"));
    u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The value of `<input type="hidden" name="NAME" value="...">` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in page:\n{page}")) + marker.len();
    page[start..].split('"').next().unwrap_or_default().to_string()
}

/// (verifier, S256 challenge)
pub fn pkce() -> (String, String) {
    let verifier = portcullis::tokens::secrets::random_string(48);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Decodes a JWT's header and claims without verifying (tests verify separately).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let dec = |p: Option<&str>| -> Value {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.expect("jwt part")).expect("b64");
        serde_json::from_slice(&bytes).expect("json")
    };
    (dec(parts.next()), dec(parts.next()))
}

/// Posts the consent page's form, approving (CSRF token and request id taken from `page`).
/// Fetches the login page at `login_url` and signs in through it (a server that is not a `TestApp`).
pub async fn sign_in(http: &reqwest::Client, login_url: &str, username: &str, password: &str) -> reqwest::Response {
    let page = http.get(login_url).send().await.expect("login page").text().await.expect("text");
    post_login(http, login_url, &page, username, password).await
}

/// Posts the login form of `page` to `login_url` as `username` (its CSRF token and `next`).
pub async fn post_login(
    http: &reqwest::Client,
    login_url: &str,
    page: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    http.post(login_url)
        .form(&[
            ("username", username),
            ("password", password),
            ("csrf_token", &hidden(page, "csrf_token")),
            ("next", &hidden(page, "next")),
        ])
        .send()
        .await
        .expect("login")
}

pub async fn approve_consent(http: &reqwest::Client, consent_url: &str, page: &str) -> reqwest::Response {
    submit_consent(http, consent_url, page, "approve").await
}

/// Posts the consent form of `page` with `decision` (`approve` or `deny`).
pub async fn submit_consent(
    http: &reqwest::Client,
    consent_url: &str,
    page: &str,
    decision: &str,
) -> reqwest::Response {
    http.post(consent_url)
        .form(&[
            ("csrf_token", hidden(page, "csrf_token").as_str()),
            ("request_id", hidden(page, "request_id").as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .expect("consent")
}

/// `SELECT COUNT(*) FROM table`, on either engine.
pub async fn count_rows(db: &Db, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    match db {
        Db::Sqlite(s) => sqlx::query_scalar(&sql).fetch_one(&mut *s.read().await.expect("connection")).await,
        Db::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("count {table}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A local HTTPS server with a throwaway test CA
// ---------------------------------------------------------------------------------------------

/// A TLS acceptor with a certificate for `localhost` and `127.0.0.1`, signed by a throwaway CA
/// named `ca_name`, and that CA's PEM in a temp file (for the `*_test_ca_file` settings).
pub fn test_ca(ca_name: &str) -> (tokio_rustls::TlsAcceptor, tempfile::NamedTempFile) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("server key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("server params");
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).expect("server certificate");

    let ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca_file.path(), ca_cert.pem()).expect("write CA PEM");

    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server TLS config");
    (tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls)), ca_file)
}

/// A local HTTPS server on 127.0.0.1 (certificate from [`test_ca`]); every connection is handed
/// to `serve` with the acceptor and the server's port. The task dies with the test's runtime.
pub struct TlsTestServer {
    pub port: u16,
    pub ca_file: tempfile::NamedTempFile,
}

impl TlsTestServer {
    pub async fn start<F, Fut>(ca_name: &str, serve: F) -> TlsTestServer
    where
        F: Fn(tokio::net::TcpStream, tokio_rustls::TlsAcceptor, u16) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (acceptor, ca_file) = test_ca(ca_name);
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, acceptor.clone(), port));
            }
        });
        TlsTestServer { port, ca_file }
    }
}

/// Reads a request's head (up to the blank line) from a test server's connection: `None` if the
/// peer goes away first or sends more than 16 KiB.
pub async fn read_request_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 16 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&request).into_owned())
}

// ---------------------------------------------------------------------------------------------
// The real `portcullis` binary
// ---------------------------------------------------------------------------------------------

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The binary with `args`, run in `dir` with a clean environment: only the variables in `env`.
pub fn binary_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).current_dir(dir).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Where a served binary's standard output and error go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeOutput {
    /// `serve-N.out` and `serve-N.err` in the working directory (N: entries already there).
    Separate,
    /// Both into `serve.log` in the working directory.
    Combined,
}

/// `portcullis serve` on 127.0.0.1:`port` (`PORTCULLIS_BIND` set, plus `env` only); killed
/// (SIGKILL, std's `Child::kill` on Unix) and reaped when dropped.
pub struct Binary {
    child: Option<Child>,
    pub base: String,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Binary {
    pub fn start(dir: &Path, port: u16, env: &[(&str, &str)], output: ServeOutput) -> Binary {
        let bind = format!("127.0.0.1:{port}");
        let mut vars = env.to_vec();
        vars.push(("PORTCULLIS_BIND", bind.as_str()));
        let mut cmd = binary_command(dir, &["serve"], &vars);
        cmd.stdin(Stdio::null());
        let (stdout_path, stderr_path) = match output {
            ServeOutput::Separate => {
                let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
                let (out, err) = (dir.join(format!("serve-{n}.out")), dir.join(format!("serve-{n}.err")));
                cmd.stdout(std::fs::File::create(&out).expect("stdout file"));
                cmd.stderr(std::fs::File::create(&err).expect("stderr file"));
                (out, err)
            }
            ServeOutput::Combined => {
                let log = dir.join("serve.log");
                let file = std::fs::File::create(&log).expect("log file");
                cmd.stdout(file.try_clone().expect("clone"));
                cmd.stderr(file);
                (log.clone(), log)
            }
        };
        let child = cmd.spawn().expect("spawn portcullis serve");
        Binary { child: Some(child), base: format!("http://{bind}"), stdout_path, stderr_path }
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    /// Polls /readyz until 200; fails (with the server's output) if it exits or never gets ready.
    pub async fn wait_ready(&mut self) {
        self.wait_ready_with(&browser()).await
    }

    pub async fn wait_ready_with(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let res = http.get(format!("{}/readyz", self.base)).send().await;
            if res.is_ok_and(|r| r.status() == 200) {
                return;
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "serve exited ({exited:?}):\n{}", self.stderr());
            assert!(Instant::now() < deadline, "serve did not become ready:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the server and returns what it printed on standard output.
    pub fn stop(mut self) -> String {
        self.kill();
        self.stdout()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary with `args` (see [`binary_command`]), standard output and error piped, and `stdin`
/// (when given) written to its standard input.
pub fn spawn_binary(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Child {
    use std::io::Write;
    let mut child = binary_command(dir, args, env)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child
}
