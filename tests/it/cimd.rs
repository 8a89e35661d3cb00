//! Client ID Metadata Documents end to end, against a local HTTPS server signed by a throwaway
//! test CA (the approach of `fetch.rs`, with routes the test can change and count): documents
//! modelled on the published ones of Claude Code, claude.ai, ChatGPT (`private_key_jwt` with a
//! `jwks_uri`) and VS Code through a full flow; hostile documents and forbidden addresses refused
//! with an error page; caching; re-consent when a document changes; host policy; logos. Then the
//! client lifecycle: the cleanup job and the registration limits.
//!
//! Nothing here reaches the internet: documents live on 127.0.0.1, and the special-use addresses
//! (10.0.0.1, 169.254.169.254) are refused before any connection is attempted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use josekit::jwk::{Jwk, KeyPair as _};
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::JwtPayload;
use portcullis::config::{CimdPolicy, Config, RegistrationPolicy, Seconds};
use portcullis::store::audit;
use portcullis::store::clients::{self, ClientKind, NewClient};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::helpers::{
    Engine, IssuedCode, MCP, OAuthParams, PASSWORD, TestApp, TestDb, TlsTestServer, approve_consent, browser, db_tests,
    jwt_parts, location, pkce, read_request_head,
};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

// ---------------------------------------------------------------------------------------------
// The document server
// ---------------------------------------------------------------------------------------------

/// One canned answer of the document server.
#[derive(Clone)]
struct Reply {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send the head and one byte, then trickle a byte every 200 ms for 10 s.
    trickle: bool,
}

impl Reply {
    fn json(doc: &Value) -> Reply {
        Reply::raw("200 OK", &[("Content-Type", "application/json")], doc.to_string().into_bytes())
    }

    fn json_cached(doc: &Value, cache_control: &str) -> Reply {
        let mut r = Reply::json(doc);
        r.headers.push(("Cache-Control", cache_control.to_string()));
        r
    }

    fn raw(status: &'static str, headers: &[(&'static str, &str)], body: Vec<u8>) -> Reply {
        Reply { status, headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(), body, trickle: false }
    }
}

type Routes = Arc<Mutex<HashMap<String, Reply>>>;
type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// A local HTTPS server on 127.0.0.1 with a certificate for `localhost` and `127.0.0.1` from a
/// throwaway CA (its PEM in a temp file, for `cimd_test_ca_file`). Routes can be changed while
/// it runs, and every request is counted per path. The task dies with the test's runtime.
struct DocServer {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    routes: Routes,
    hits: Hits,
}

impl DocServer {
    async fn start() -> DocServer {
        let routes: Routes = Arc::default();
        let hits: Hits = Arc::default();
        let (r, h) = (routes.clone(), hits.clone());
        let TlsTestServer { port, ca_file } =
            TlsTestServer::start("Portcullis CIMD test CA", move |stream, acceptor, _port| {
                serve(stream, acceptor, r.clone(), h.clone())
            })
            .await;
        DocServer { port, ca_file, routes, hits }
    }

    /// A Client Identifier URL (or any URL) on this server, by host name.
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The app under test, trusting this server's CA, loopback allowed, with `tweak` on top.
    async fn app(&self, engine: Engine, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let ca = self.ca_file.path().to_owned();
        TestApp::spawn_with(engine, "", move |c| {
            c.cimd_test_ca_file = Some(ca);
            c.cimd_test_allow_loopback = true;
            // Every request here comes from 127.0.0.1, and most tests fetch again right after a
            // failure: budgets per address and the failure cache are tested on their own.
            c.cimd_fetches_per_address_per_minute = 0;
            c.cimd_failure_cache = Seconds(0);
            tweak(c);
        })
        .await
        .with_defaults()
        .await
    }
}

fn head(status: &str, headers: &[(&str, String)], content_length: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {content_length}\r\n\r\n"));
    out.into_bytes()
}

async fn serve(stream: TcpStream, acceptor: TlsAcceptor, routes: Routes, hits: Hits) {
    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await else {
        return;
    };
    let Some(request) = read_request_head(&mut tls).await else {
        return;
    };
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let reply = reply.unwrap_or_else(|| Reply::raw("404 Not Found", &[], Vec::new()));
    if reply.trickle {
        let _ = tls.write_all(&head(reply.status, &reply.headers, 64)).await;
        let _ = tls.write_all(b"[").await;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                return;
            }
        }
    } else {
        let mut out = head(reply.status, &reply.headers, reply.body.len());
        out.extend_from_slice(&reply.body);
        let _ = tls.write_all(&out).await;
    }
    let _ = tls.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Flow helpers
// ---------------------------------------------------------------------------------------------

/// The authorization request's query string, as a browser sends it (values percent-encoded).
fn query_string(client_id: &str, redirect_uri: &str, challenge: &str) -> String {
    OAuthParams::authorize(client_id, redirect_uri, challenge).state("st-cimd").resource(MCP).encoded()
}

/// `GET /authorize?{raw}` from `http`.
async fn authorize(app: &TestApp, http: &reqwest::Client, raw: &str) -> reqwest::Response {
    http.get(format!("{}?{raw}", app.url("/authorize"))).send().await.expect("authorize")
}

/// The code (and state, iss) in a redirect back to the client at `redirect_uri`.
fn code_from(loc: &str, redirect_uri: &str, app: &TestApp) -> String {
    assert!(loc.starts_with(redirect_uri), "the browser goes back to {redirect_uri}, not {loc}");
    let params = crate::helpers::query_of(loc);
    assert_eq!(params.get("state").map(String::as_str), Some("st-cimd"), "{loc}");
    assert_eq!(params.get("iss").map(String::as_str), Some(app.base.as_str()), "{loc}");
    params.get("code").unwrap_or_else(|| panic!("no code in {loc}")).clone()
}

/// A fresh browser through /authorize → login (alice) → consent (checking the page names the
/// document's client and its verified host) → approve. Returns the code and the consent page.
async fn first_flow(
    app: &TestApp,
    client_id: &str,
    client_name: &str,
    redirect_uri: &str,
    extra: &str,
) -> (IssuedCode, String) {
    let http = browser();
    let (verifier, challenge) = pkce();
    let mut raw = query_string(client_id, redirect_uri, &challenge);
    raw.push_str(extra);
    let res = authorize(app, &http, &raw).await;
    assert_eq!(res.status(), 303, "to the login page");
    let login_url = location(&res);
    assert!(login_url.starts_with("/login?request_id="), "{login_url}");
    let page = http.get(app.url(&login_url)).send().await.unwrap().text().await.unwrap();
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    assert_eq!(res.status(), 303, "signed in");
    let next = location(&res);
    assert!(next.starts_with("/consent?request_id="), "{next}");
    let consent = http.get(app.url(&next)).send().await.unwrap();
    assert_eq!(consent.status(), 200, "the consent page");
    let page = consent.text().await.unwrap();
    assert_consent_page(&page, client_name);
    let loc = approve(app, &http, &page).await;
    let code = code_from(&loc, redirect_uri, app);
    let issued = IssuedCode {
        client_id: client_id.to_string(),
        code,
        verifier,
        redirect_uri: redirect_uri.to_string(),
        browser: http,
    };
    (issued, page)
}

fn assert_consent_page(page: &str, client_name: &str) {
    assert!(page.contains(client_name), "the consent page names {client_name:?}:\n{page}");
    assert!(
        page.contains("Web address verified: localhost"),
        "the consent page says only the host was verified:\n{page}"
    );
    assert!(page.contains("Its name and logo are its own"), "{page}");
    assert!(page.contains("an app from localhost"), "the heading names the verified host, not the name:\n{page}");
    assert!(!page.contains("Unverified"), "a metadata-document client is not unverified");
}

async fn approve(app: &TestApp, http: &reqwest::Client, page: &str) -> String {
    let res = approve_consent(http, &app.url("/consent"), page).await;
    assert_eq!(res.status(), 303, "consent answer");
    location(&res)
}

/// A signed-in browser asks again: returns either the redirect's Location (straight, or after the
/// one click a native app with a grant needs, RFC 8252 §8.6) or the consent page.
async fn again(
    app: &TestApp,
    http: &reqwest::Client,
    client_id: &str,
    redirect_uri: &str,
) -> (Result<String, String>, String) {
    let (verifier, challenge) = pkce();
    let res = authorize(app, http, &query_string(client_id, redirect_uri, &challenge)).await;
    match res.status().as_u16() {
        302 => (Ok(location(&res)), verifier),
        200 => {
            let page = res.text().await.unwrap();
            if page.contains("<h1>Continue to") {
                return (Ok(approve(app, http, &page).await), verifier);
            }
            (Err(page), verifier)
        }
        s => panic!("unexpected /authorize status {s}: {}", res.text().await.unwrap_or_default()),
    }
}

/// A token response with an access token for `client_id` and a refresh token.
fn assert_tokens(status: u16, body: &Value, client_id: &str) -> String {
    assert_eq!(status, 200, "{body}");
    let at = body["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {body}"));
    let (_, claims) = jwt_parts(at);
    assert_eq!(claims["client_id"], json!(client_id));
    assert_eq!(claims["aud"], json!(MCP));
    body["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh token: {body}")).to_string()
}

async fn failures_for(app: &TestApp, client_id: &str) -> Vec<audit::EventRow> {
    audit::list(&app.db, Some("metadata_document_failed"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.client_id.as_deref() == Some(client_id))
        .collect()
}

/// An /authorize for `client_id` that must end on the error page: 400, HTML, no Location.
/// Returns the page and how long it took.
async fn refused(app: &TestApp, client_id: &str) -> (String, Duration) {
    let (_, challenge) = pkce();
    let http = browser();
    let started = Instant::now();
    let res = authorize(app, &http, &query_string(client_id, "http://127.0.0.1/callback", &challenge)).await;
    let took = started.elapsed();
    assert_eq!(res.status(), 400, "{client_id}");
    assert!(res.headers().get("location").is_none(), "no redirect for {client_id}");
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(ct.starts_with("text/html"), "an error page for {client_id}, not {ct}");
    (res.text().await.unwrap(), took)
}

/// The start of a flow for a resolvable client: the anonymous browser goes to the login page.
async fn accepted(app: &TestApp, client_id: &str, redirect_uri: &str) {
    let (_, challenge) = pkce();
    let res = authorize(app, &browser(), &query_string(client_id, redirect_uri, &challenge)).await;
    assert_eq!(res.status(), 303, "{client_id} is accepted: {}", res.text().await.unwrap_or_default());
}

fn claude_code_doc(client_id: &str, name: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": name,
        "client_uri": "https://claude.ai",
        "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    })
}

// ---------------------------------------------------------------------------------------------
// Real clients' documents through a full flow
// ---------------------------------------------------------------------------------------------

db_tests!(
    claude_code_document_full_flow,
    claude_ai_document_full_flow,
    chatgpt_document_with_private_key_jwt,
    chatgpt_document_without_an_assertion,
    chatgpt_bad_assertions_are_invalid_client,
    vscode_document_full_flow,
    metadata_advertises_cimd,
);

async fn metadata_advertises_cimd(engine: Engine) {
    let server = DocServer::start().await;
    let app = server.app(engine, |_| {}).await;
    let meta: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], json!(true), "{meta}");
    let methods = meta["token_endpoint_auth_methods_supported"].as_array().expect("methods");
    assert!(methods.contains(&json!("none")), "claude.ai uses CIMD only with none: {meta}");
    assert!(methods.contains(&json!("private_key_jwt")), "ChatGPT prefers private_key_jwt: {meta}");

    let off = TestApp::spawn_with(engine, "", |c| c.cimd_policy = CimdPolicy::Off).await;
    let meta: Value =
        off.http.get(off.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], json!(false), "{meta}");
}

/// Claude Code: port-less loopback redirect URIs, no application_type; the browser returns to an
/// ephemeral port, on `localhost` and on `127.0.0.1`.
async fn claude_code_document_full_flow(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/oauth/claude-code-client-metadata");
    server.set("/oauth/claude-code-client-metadata", Reply::json(&claude_code_doc(&client_id, "Claude Code")));
    let app = server.app(engine, |_| {}).await;

    let redirect = "http://localhost:58135/callback";
    let (IssuedCode { code, verifier, browser: http, .. }, _) =
        first_flow(&app, &client_id, "Claude Code", redirect, "").await;
    let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    let rt = assert_tokens(status, &body, &client_id);
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt)).await;
    assert_tokens(status, &body, &client_id);

    // Another run of the CLI, on 127.0.0.1 and another port: the grant covers it.
    let redirect = "http://127.0.0.1:49731/callback";
    let (answer, verifier) = again(&app, &http, &client_id, redirect).await;
    let code = code_from(&answer.expect("no second consent"), redirect, &app);
    let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    assert_tokens(status, &body, &client_id);

    let row = clients::get(&app.db, &client_id).await.unwrap().expect("stored");
    assert_eq!(row.kind, ClientKind::MetadataDocument);
    assert!(failures_for(&app, &client_id).await.is_empty());
}

/// claude.ai connectors: an https callback, `scope=+offline_access&prompt=consent`.
async fn claude_ai_document_full_flow(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/oauth/mcp-oauth-client-metadata");
    let redirect = "https://claude.ai/api/mcp/auth_callback";
    let doc = json!({
        "client_id": client_id,
        "client_name": "Claude",
        "client_uri": "https://claude.ai",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    });
    server.set("/oauth/mcp-oauth-client-metadata", Reply::json(&doc));
    let app = server.app(engine, |_| {}).await;

    // Exactly as claude.ai sends it: a literal "+" before offline_access.
    let (IssuedCode { code, verifier, browser: http, .. }, page) =
        first_flow(&app, &client_id, "Claude", redirect, "&scope=+offline_access&prompt=consent").await;
    assert!(page.contains("offline_access") || page.contains("Stay connected"), "offline access is shown:\n{page}");
    let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    let rt = assert_tokens(status, &body, &client_id);
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt)).await;
    assert_tokens(status, &body, &client_id);

    // prompt=consent asks again even with a grant.
    let (_, challenge) = pkce();
    let mut raw = query_string(&client_id, redirect, &challenge);
    raw.push_str("&scope=+offline_access&prompt=consent");
    let res = authorize(&app, &http, &raw).await;
    assert_eq!(res.status(), 200, "prompt=consent shows the consent page");
    assert_consent_page(&res.text().await.unwrap(), "Claude");
}

/// An RSA key pair with kid `kid`: (public JWK JSON, signer JWK).
fn rsa_key(kid: &str) -> (Value, Jwk) {
    let pair = RS256.generate_key_pair(2048).expect("RSA key");
    let mut public = pair.to_jwk_public_key();
    public.set_key_id(kid);
    public.set_algorithm("RS256");
    public.set_key_use("sig");
    let mut private = pair.to_jwk_private_key();
    private.set_key_id(kid);
    (serde_json::from_str(&public.to_string()).unwrap(), private)
}

/// A client assertion (RFC 7523 §2.2) signed with `key`, `iat` and `exp` in whole seconds.
fn assertion(key: &Jwk, kid: &str, client_id: &str, aud: &str, exp: SystemTime, jti: &str) -> String {
    assertion_at(key, kid, client_id, aud, whole_seconds(SystemTime::now()), whole_seconds(exp), jti)
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// josekit writes a NumericDate with fractional seconds unless the time is whole.
fn assertion_at(
    key: &Jwk,
    kid: &str,
    client_id: &str,
    aud: &str,
    iat: SystemTime,
    exp: SystemTime,
    jti: &str,
) -> String {
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(kid);
    let mut payload = JwtPayload::new();
    payload.set_issuer(client_id);
    payload.set_subject(client_id);
    payload.set_audience(vec![aud]);
    payload.set_issued_at(&iat);
    payload.set_expires_at(&exp);
    payload.set_jwt_id(jti);
    let signer = RS256.signer_from_jwk(key).expect("signer");
    josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("sign")
}

fn jti() -> String {
    portcullis::tokens::secrets::random_string(16)
}

fn in_a_minute() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

struct ChatGpt {
    server: DocServer,
    app: TestApp,
    client_id: String,
    key: Jwk,
}

const CHATGPT_REDIRECT: &str = "https://chatgpt.com/connector_platform_oauth_redirect";

/// ChatGPT's document: `private_key_jwt` preferred, `none` allowed, keys at a `jwks_uri`, RS256.
async fn chatgpt(engine: Engine) -> ChatGpt {
    let server = DocServer::start().await;
    let client_id = server.url("/oauth/abc123/client.json");
    let (public, key) = rsa_key("chatgpt-1");
    server.set("/oauth/jwks.json", Reply::json(&json!({ "keys": [public] })));
    let doc = json!({
        "client_id": client_id,
        "client_name": "ChatGPT",
        "client_uri": "https://chatgpt.com",
        "redirect_uris": ["https://chatgpt.com/connector/oauth/abc123", CHATGPT_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg": "RS256",
        "jwks_uri": server.url("/oauth/jwks.json")
    });
    server.set("/oauth/abc123/client.json", Reply::json(&doc));
    let app = server.app(engine, |_| {}).await;
    ChatGpt { server, app, client_id, key }
}

fn with_assertion(a: &str) -> [(&'static str, &str); 2] {
    [("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", a)]
}

async fn chatgpt_document_with_private_key_jwt(engine: Engine) {
    let ChatGpt { server, app, client_id, key } = chatgpt(engine).await;
    let (issued, _) = first_flow(&app, &client_id, "ChatGPT", CHATGPT_REDIRECT, "").await;
    let aud = app.url("/token");
    let a = assertion(&key, "chatgpt-1", &client_id, &aud, in_a_minute(), &jti());
    let (status, body) = app.token(&issued.redeem().redirect_uri(CHATGPT_REDIRECT).extend(&with_assertion(&a))).await;
    let rt = assert_tokens(status, &body, &client_id);
    // The refresh authenticates with a new assertion (aud = the issuer is accepted too).
    let a = assertion(&key, "chatgpt-1", &client_id, &app.base, in_a_minute(), &jti());
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt).extend(&with_assertion(&a))).await;
    assert_tokens(status, &body, &client_id);
    assert_eq!(server.hits("/oauth/jwks.json"), 1, "the jwks_uri was fetched once, from the server");
}

async fn chatgpt_document_without_an_assertion(engine: Engine) {
    let ChatGpt { server, app, client_id, .. } = chatgpt(engine).await;
    let (issued, _) = first_flow(&app, &client_id, "ChatGPT", CHATGPT_REDIRECT, "").await;
    // The document allows none too: client_id alone authenticates.
    let (status, body) = app.token(&issued.redeem().redirect_uri(CHATGPT_REDIRECT)).await;
    let rt = assert_tokens(status, &body, &client_id);
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt)).await;
    assert_tokens(status, &body, &client_id);
    assert_eq!(server.hits("/oauth/jwks.json"), 0, "no keys needed for none");
}

async fn chatgpt_bad_assertions_are_invalid_client(engine: Engine) {
    let ChatGpt { app, client_id, key, .. } = chatgpt(engine).await;
    let (issued, _) = first_flow(&app, &client_id, "ChatGPT", CHATGPT_REDIRECT, "").await;
    let aud = app.url("/token");
    let (status, body) = app.token(&issued.redeem().redirect_uri(CHATGPT_REDIRECT)).await;
    let rt = assert_tokens(status, &body, &client_id);

    let (_, other_key) = rsa_key("chatgpt-1");
    let past = SystemTime::now() - Duration::from_secs(30);
    let reused = assertion(&key, "chatgpt-1", &client_id, &aud, in_a_minute(), &jti());
    // A refresh with a good assertion uses its jti up (and rotates the refresh token).
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt).extend(&with_assertion(&reused))).await;
    let rt = assert_tokens(status, &body, &client_id);

    let cases = [
        ("wrong key", assertion(&other_key, "chatgpt-1", &client_id, &aud, in_a_minute(), &jti())),
        ("expired", assertion(&key, "chatgpt-1", &client_id, &aud, past, &jti())),
        ("reused jti", reused.clone()),
        ("wrong aud", assertion(&key, "chatgpt-1", &client_id, "https://other.example/token", in_a_minute(), &jti())),
        (
            "lives too long",
            assertion(&key, "chatgpt-1", &client_id, &aud, SystemTime::now() + Duration::from_secs(3600), &jti()),
        ),
        ("not a JWT", "not.a.jwt".to_string()),
    ];
    for (what, a) in &cases {
        let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt).extend(&with_assertion(a))).await;
        assert!(status == 400 || status == 401, "{what}: {status} {body}");
        assert_eq!(body["error"], "invalid_client", "{what}: {body}");
    }
    // A code redemption with a bad assertion is refused the same way.
    let bad = assertion(&other_key, "chatgpt-1", &client_id, &aud, in_a_minute(), &jti());
    let (status, body) = app
        .token(
            &OAuthParams::code(&client_id, "no-such-code", "v")
                .redirect_uri(CHATGPT_REDIRECT)
                .extend(&with_assertion(&bad)),
        )
        .await;
    assert!(status == 400 || status == 401, "{status} {body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // None of the failures spent the refresh token.
    let good = assertion(&key, "chatgpt-1", &client_id, &aud, in_a_minute(), &jti());
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt).extend(&with_assertion(&good))).await;
    assert_tokens(status, &body, &client_id);
}

db_tests!(chatgpt_assertion_with_fractional_exp);

async fn chatgpt_assertion_with_fractional_exp(engine: Engine) {
    let ChatGpt { app, client_id, key, .. } = chatgpt(engine).await;
    let (issued, _) = first_flow(&app, &client_id, "ChatGPT", CHATGPT_REDIRECT, "").await;
    let exp = whole_seconds(in_a_minute()) + Duration::from_millis(500);
    let a = assertion_at(&key, "chatgpt-1", &client_id, &app.url("/token"), SystemTime::now(), exp, &jti());
    assert!(jwt_parts(&a).1["exp"].is_f64(), "a fractional NumericDate");
    let (status, body) = app.token(&issued.redeem().redirect_uri(CHATGPT_REDIRECT).extend(&with_assertion(&a))).await;
    assert_tokens(status, &body, &client_id);
}

/// VS Code: `127.0.0.1` with and without a port.
async fn vscode_document_full_flow(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/vscode/client.json");
    let doc = json!({
        "client_id": client_id,
        "client_name": "Visual Studio Code",
        "redirect_uris": [
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/"
        ],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none"
    });
    server.set("/vscode/client.json", Reply::json(&doc));
    let app = server.app(engine, |_| {}).await;

    let redirect = "http://127.0.0.1:33418/";
    let (IssuedCode { code, verifier, browser: http, .. }, _) =
        first_flow(&app, &client_id, "Visual Studio Code", redirect, "").await;
    let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    let rt = assert_tokens(status, &body, &client_id);
    let (status, body) = app.token(&OAuthParams::refresh(&client_id, &rt)).await;
    assert_tokens(status, &body, &client_id);

    // The random-port fallback, matched against the port-less "http://127.0.0.1/".
    let redirect = "http://127.0.0.1:50123/";
    let (answer, verifier) = again(&app, &http, &client_id, redirect).await;
    let code = code_from(&answer.expect("the grant covers it"), redirect, &app);
    let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    assert_tokens(status, &body, &client_id);

    // A redirect URI the document does not list is an error page, not a redirect.
    let (_, challenge) = pkce();
    let res = authorize(&app, &http, &query_string(&client_id, "https://evil.example/cb", &challenge)).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
}

// ---------------------------------------------------------------------------------------------
// Hostile documents and forbidden addresses
// ---------------------------------------------------------------------------------------------

db_tests!(
    hostile_documents_are_refused_and_not_cached,
    slow_document_is_refused,
    forbidden_addresses_are_never_fetched
);

async fn hostile_documents_are_refused_and_not_cached(engine: Engine) {
    let server = DocServer::start().await;
    let app = server.app(engine, |_| {}).await;
    let big = {
        let id = server.url("/big");
        let mut d = claude_code_doc(&id, "Big");
        d["padding"] = json!("x".repeat(6 * 1024));
        d
    };
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "/mismatch",
            Reply::json(&claude_code_doc(&format!("https://localhost:{}/other", server.port), "Mismatch")),
            "client_id does not match",
        ),
        (
            "/redirect",
            Reply::raw("302 Found", &[("Location", &server.url("/good"))], Vec::new()),
            "redirects are not followed",
        ),
        ("/big", Reply::json(&big), "too large"),
        (
            "/html",
            Reply::raw(
                "200 OK",
                &[("Content-Type", "text/html; charset=utf-8")],
                b"<html><body>Claude</body></html>".to_vec(),
            ),
            "wrong content type",
        ),
        (
            "/secret",
            Reply::json(&{
                let mut d = claude_code_doc(&server.url("/secret"), "Secret");
                d["token_endpoint_auth_method"] = json!("client_secret_post");
                d
            }),
            "client_secret_post",
        ),
        ("/missing", Reply::raw("404 Not Found", &[("Content-Type", "application/json")], b"{}".to_vec()), "HTTP 404"),
    ];
    for (path, reply, needle) in cases {
        let client_id = server.url(path);
        server.set(path, reply);
        let (page, took) = refused(&app, &client_id).await;
        assert!(took < Duration::from_secs(2), "{path} refused quickly: {took:?}");
        assert!(page.contains(needle), "{path}: the page explains ({needle:?}):\n{page}");
        let events = failures_for(&app, &client_id).await;
        assert_eq!(events.len(), 1, "{path}: one metadata_document_failed event");
        assert!(clients::get(&app.db, &client_id).await.unwrap().is_none(), "{path}: nothing stored");
        assert_eq!(server.hits(path), 1, "{path} fetched once");

        // Not cached: fixed, the next attempt fetches again and succeeds.
        server.set(path, Reply::json(&claude_code_doc(&client_id, "Fixed")));
        accepted(&app, &client_id, "http://localhost:5555/callback").await;
        assert_eq!(server.hits(path), 2, "{path} fetched again after the failure");
        assert_eq!(failures_for(&app, &client_id).await.len(), 1, "{path}: no new failure");
    }
    assert_eq!(server.hits("/good"), 0, "the redirect was not followed");
}

async fn slow_document_is_refused(engine: Engine) {
    let server = DocServer::start().await;
    let app = server.app(engine, |_| {}).await;
    let client_id = server.url("/slow");
    let mut slow = Reply::raw("200 OK", &[("Content-Type", "application/json")], Vec::new());
    slow.trickle = true;
    server.set("/slow", slow);
    let (page, took) = refused(&app, &client_id).await;
    // The fetcher's total timeout is 5 s; the server would take 10 s.
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(page.contains("took too long"), "{page}");
    assert_eq!(failures_for(&app, &client_id).await.len(), 1);
    server.set("/slow", Reply::json(&claude_code_doc(&client_id, "Fixed")));
    accepted(&app, &client_id, "http://localhost:5555/callback").await;
}

async fn forbidden_addresses_are_never_fetched(engine: Engine) {
    let server = DocServer::start().await;
    let app = server.app(engine, |c| c.cimd_test_allow_loopback = false).await;
    let port = server.port;
    let ids = [
        format!("https://127.0.0.1:{port}/c"),
        format!("https://localhost:{port}/c"),
        "https://10.0.0.1/c".to_string(),
        "https://169.254.169.254/c".to_string(),
        format!("https://[::1]:{port}/c"),
    ];
    server.set("/c", Reply::json(&claude_code_doc(&ids[0], "Loopback")));
    for client_id in &ids {
        let (page, took) = refused(&app, client_id).await;
        assert!(took < Duration::from_secs(1), "{client_id} refused before connecting: {took:?}");
        assert!(page.contains("never fetched"), "{client_id}:\n{page}");
        assert_eq!(failures_for(&app, client_id).await.len(), 1, "{client_id}: audited");
        let events = failures_for(&app, client_id).await;
        assert!(events[0].details.contains("forbidden address"), "{client_id}: {}", events[0].details);
    }
    assert_eq!(server.hits("/c"), 0, "nothing reached the local server");
}

// ---------------------------------------------------------------------------------------------
// Caching and changes
// ---------------------------------------------------------------------------------------------

db_tests!(max_age_is_honoured, max_age_zero_is_clamped_to_the_minimum, a_changed_document_asks_for_consent_again);

async fn max_age_is_honoured(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/cached");
    server.set("/cached", Reply::json_cached(&claude_code_doc(&client_id, "Cached"), "max-age=600"));
    let app = server.app(engine, |_| {}).await;
    let redirect = "http://localhost:6000/callback";
    let (IssuedCode { code, verifier, browser: http, .. }, _) =
        first_flow(&app, &client_id, "Cached", redirect, "").await;
    let (answer, v2) = again(&app, &http, &client_id, redirect).await;
    let code2 = code_from(&answer.expect("no second consent"), redirect, &app);
    let (s, b) = app.token(&OAuthParams::code(&client_id, &code, &verifier).redirect_uri(redirect)).await;
    assert_tokens(s, &b, &client_id);
    let (s, b) = app.token(&OAuthParams::code(&client_id, &code2, &v2).redirect_uri(redirect)).await;
    assert_tokens(s, &b, &client_id);
    assert_eq!(server.hits("/cached"), 1, "two authorizations and two redemptions, one fetch");
    let row = clients::get(&app.db, &client_id).await.unwrap().unwrap();
    assert_eq!(row.metadata_expires_at.unwrap() - row.updated_at, 600, "max-age within the bounds is kept");
}

async fn max_age_zero_is_clamped_to_the_minimum(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/short");
    server.set("/short", Reply::json_cached(&claude_code_doc(&client_id, "Short"), "max-age=0"));
    let app = server.app(engine, |c| c.cimd_min_cache = Seconds(2)).await;
    let redirect = "http://localhost:6000/callback";
    accepted(&app, &client_id, redirect).await;
    let row = clients::get(&app.db, &client_id).await.unwrap().unwrap();
    assert_eq!(row.metadata_expires_at.unwrap() - row.updated_at, 2, "max-age=0 is clamped to cimd_min_cache");
    accepted(&app, &client_id, redirect).await;
    assert_eq!(server.hits("/short"), 1, "fresh for cimd_min_cache");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    accepted(&app, &client_id, redirect).await;
    assert_eq!(server.hits("/short"), 2, "refetched after expiry");
}

async fn a_changed_document_asks_for_consent_again(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/changing");
    server.set("/changing", Reply::json(&claude_code_doc(&client_id, "Claude Code")));
    let app = server
        .app(engine, |c| {
            c.cimd_min_cache = Seconds(1);
            c.cimd_max_cache = Seconds(1);
        })
        .await;
    let redirect = "http://localhost:7000/callback";
    let (IssuedCode { browser: http, .. }, _) = first_flow(&app, &client_id, "Claude Code", redirect, "").await;
    let (answer, _) = again(&app, &http, &client_id, redirect).await;
    code_from(&answer.expect("unchanged document: no second consent"), redirect, &app);

    // A new name: consent again, showing the new name.
    server.set("/changing", Reply::json(&claude_code_doc(&client_id, "Claude Code Renamed")));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (answer, _) = again(&app, &http, &client_id, redirect).await;
    let page = answer.expect_err("a renamed client asks for consent again");
    assert_consent_page(&page, "Claude Code Renamed");
    let loc = approve(&app, &http, &page).await;
    code_from(&loc, redirect, &app);
    let (answer, _) = again(&app, &http, &client_id, redirect).await;
    code_from(&answer.expect("approved as renamed"), redirect, &app);

    // New redirect URIs: consent again.
    let mut doc = claude_code_doc(&client_id, "Claude Code Renamed");
    doc["redirect_uris"].as_array_mut().unwrap().push(json!("https://attacker.example/cb"));
    server.set("/changing", Reply::json(&doc));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (answer, _) = again(&app, &http, &client_id, redirect).await;
    let page = answer.expect_err("changed redirect URIs ask for consent again");
    assert_consent_page(&page, "Claude Code Renamed");
}

// ---------------------------------------------------------------------------------------------
// Policy and logos
// ---------------------------------------------------------------------------------------------

db_tests!(policy_off_allowlist_and_denylist, logo_is_served_from_the_server);

// ---------------------------------------------------------------------------------------------
// The fetch budget (the round-two review's item 6)
// ---------------------------------------------------------------------------------------------

db_tests!(
    made_up_paths_cannot_starve_a_hosts_real_documents,
    failed_fetches_are_remembered_briefly,
    a_known_good_document_outlives_a_failed_refetch_within_the_grace
);

/// `/authorize` for `client_id` from `address` (behind the trusted proxy): the status.
async fn authorize_from(app: &TestApp, address: &str, client_id: &str) -> u16 {
    let (_, challenge) = pkce();
    let url = format!("{}?{}", app.url("/authorize"), query_string(client_id, "http://127.0.0.1/callback", &challenge));
    browser().get(url).header("X-Forwarded-For", address).send().await.unwrap().status().as_u16()
}

fn behind_proxy(c: &mut Config) {
    c.trusted_proxies = vec!["127.0.0.1".into()];
    c.cimd_fetches_per_address_per_minute = 10;
    c.cimd_fetches_per_host_per_minute = 30;
}

async fn made_up_paths_cannot_starve_a_hosts_real_documents(engine: Engine) {
    let server = DocServer::start().await;
    let real = server.url("/real");
    server.set("/real", Reply::json(&claude_code_doc(&real, "Real")));
    let app = server.app(engine, behind_proxy).await;
    // One address asks for 40 made-up documents on the host: only its own 10 are fetched.
    for i in 0..40 {
        assert_eq!(authorize_from(&app, "198.51.100.66", &server.url(&format!("/made-up-{i}"))).await, 400);
    }
    let fetched: usize = (0..40).map(|i| server.hits(&format!("/made-up-{i}"))).sum();
    assert_eq!(fetched, 10, "the address's budget, not the host's 30");
    // Someone else still gets the host's real document (before: refused, the host's budget spent).
    assert_eq!(authorize_from(&app, "203.0.113.10", &real).await, 303);
    assert_eq!(server.hits("/real"), 1);
    // The refused attempts wrote audit rows only for what was fetched or refused, once each.
    assert!(failures_for(&app, &real).await.is_empty());
}

async fn failed_fetches_are_remembered_briefly(engine: Engine) {
    let server = DocServer::start().await;
    let app = server
        .app(engine, |c| {
            behind_proxy(c);
            c.cimd_failure_cache = Seconds(2);
        })
        .await;
    let missing = server.url("/missing");
    for _ in 0..5 {
        let (page, _) = refused(&app, &missing).await;
        assert!(page.contains("HTTP 404"), "{page}");
    }
    assert_eq!(server.hits("/missing"), 1, "one fetch; the failure answered the other four");
    assert_eq!(failures_for(&app, &missing).await.len(), 1, "one audit row");
    // Published meanwhile: seen once the failure is forgotten.
    server.set("/missing", Reply::json(&claude_code_doc(&missing, "Late")));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    accepted(&app, &missing, "http://localhost:5555/callback").await;
    assert_eq!(server.hits("/missing"), 2);
}

async fn a_known_good_document_outlives_a_failed_refetch_within_the_grace(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/known");
    server.set("/known", Reply::json_cached(&claude_code_doc(&client_id, "Known"), "max-age=0"));
    let app = server
        .app(engine, |c| {
            behind_proxy(c);
            c.cimd_min_cache = Seconds(1);
            c.cimd_stale_grace = Seconds(60);
        })
        .await;
    assert_eq!(authorize_from(&app, "203.0.113.1", &client_id).await, 303);
    let stored = clients::get(&app.db, &client_id).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Stale, and the host fails: the last good copy serves (audited), unchanged.
    server.set("/known", Reply::raw("503 Service Unavailable", &[], Vec::new()));
    assert_eq!(authorize_from(&app, "203.0.113.1", &client_id).await, 303);
    assert_eq!(server.hits("/known"), 2);
    assert_eq!(failures_for(&app, &client_id).await.len(), 1);
    let row = clients::get(&app.db, &client_id).await.unwrap().unwrap();
    assert_eq!((row.metadata, row.metadata_expires_at), (stored.metadata.clone(), stored.metadata_expires_at));
    // Stale, and the host's budget spent by others: the last good copy serves without a fetch.
    for i in 0..3 {
        for j in 0..10 {
            authorize_from(&app, &format!("198.51.100.{i}"), &server.url(&format!("/spend-{i}-{j}"))).await;
        }
    }
    assert_eq!(authorize_from(&app, "203.0.113.2", &client_id).await, 303);
    assert_eq!(server.hits("/known"), 2, "no budget left: not fetched");
    // Past the grace, a document that cannot be re-fetched is refused.
    let short = server.url("/short-grace");
    server.set("/short-grace", Reply::json_cached(&claude_code_doc(&short, "Short"), "max-age=0"));
    let app = server
        .app(engine, |c| {
            behind_proxy(c);
            c.cimd_min_cache = Seconds(1);
            c.cimd_stale_grace = Seconds(1);
        })
        .await;
    assert_eq!(authorize_from(&app, "203.0.113.3", &short).await, 303);
    server.set("/short-grace", Reply::raw("503 Service Unavailable", &[], Vec::new()));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(authorize_from(&app, "203.0.113.3", &short).await, 400);
}

type Tweak = Box<dyn FnOnce(&mut Config) + Send>;

async fn policy_off_allowlist_and_denylist(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/policy");
    server.set("/policy", Reply::json(&claude_code_doc(&client_id, "Policy")));
    let off = "does not accept apps identified by a metadata document URL";
    let host = "Apps from localhost are not allowed";
    let tweaks: [(&str, &str, Tweak); 4] = [
        ("off", off, Box::new(|c: &mut Config| c.cimd_policy = CimdPolicy::Off)),
        (
            "allowlist",
            host,
            Box::new(|c: &mut Config| {
                c.cimd_policy = CimdPolicy::Allowlist;
                c.cimd_allow_hosts = vec!["example.org".into()];
            }),
        ),
        ("denylist", host, Box::new(|c: &mut Config| c.cimd_deny_hosts = vec!["localhost".into()])),
        ("denylist, trailing dot", host, Box::new(|c: &mut Config| c.cimd_deny_hosts = vec!["localhost.".into()])),
    ];
    for (what, needle, tweak) in tweaks {
        let app = server.app(engine, tweak).await;
        let (page, _) = refused(&app, &client_id).await;
        assert!(page.contains(needle), "{what}: {page}");
        // Policy refusals return before `resolve` records `metadata_document_failed`: nothing is
        // fetched, so nothing is asserted about the audit trail here.
    }
    // A deny entry covers subdomains and the fully qualified form with its trailing dot.
    let app = server.app(engine, |c| c.cimd_deny_hosts = vec!["localhost".into()]).await;
    for id in
        [format!("https://sub.localhost:{}/policy", server.port), format!("https://localhost.:{}/policy", server.port)]
    {
        let (page, _) = refused(&app, &id).await;
        assert!(page.contains("are not allowed on this server"), "{id}: {page}");
    }
    assert_eq!(server.hits("/policy"), 0, "policy refusals fetch nothing");
    // The allow-list admits its hosts.
    let app = server
        .app(engine, |c| {
            c.cimd_policy = CimdPolicy::Allowlist;
            c.cimd_allow_hosts = vec!["LOCALHOST".into()];
        })
        .await;
    accepted(&app, &client_id, "http://localhost:5555/callback").await;
}

async fn logo_is_served_from_the_server(engine: Engine) {
    let server = DocServer::start().await;
    let client_id = server.url("/with-logo");
    let mut doc = claude_code_doc(&client_id, "Logo App");
    doc["logo_uri"] = json!(server.url("/logo.png"));
    server.set("/with-logo", Reply::json(&doc));
    server.set("/logo.png", Reply::raw("200 OK", &[("Content-Type", "image/png")], PNG.to_vec()));
    let app = server.app(engine, |_| {}).await;

    let (IssuedCode { browser: http, .. }, page) =
        first_flow(&app, &client_id, "Logo App", "http://localhost:8000/callback", "").await;
    let start = page.find("<img class=\"client-logo\" src=\"").expect("a logo on the consent page") + 30;
    let src = page[start..].split('"').next().unwrap().replace("&amp;", "&").replace("&#x2f;", "/");
    let expected: String = url::form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
    assert_eq!(src, format!("/client-logo?client_id={expected}"));
    assert!(!page.contains("logo.png"), "the browser is never sent to the client's host");
    assert_eq!(server.hits("/logo.png"), 1, "fetched once, by the server");

    let res = http.get(app.url(&src)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().await.unwrap().as_ref(), PNG);
    assert_eq!(server.hits("/logo.png"), 1, "served from the database");
}

// ---------------------------------------------------------------------------------------------
// Client lifecycle
// ---------------------------------------------------------------------------------------------

db_tests!(
    cleanup_deletes_unused_and_idle_dynamic_clients,
    concurrent_cleanups_delete_each_client_once,
    registration_rate_limit_per_ip,
    registration_total_limit,
    registration_closed,
    registration_requires_an_initial_access_token,
);

db_tests!(registration_with_initial_access_token);

const NOW: i64 = 2_000_000_000;
const UNUSED: i64 = 86_400;
const IDLE: i64 = 90 * 86_400;

async fn add_client(db: &portcullis::store::Db, id: &str, kind: ClientKind, created: i64, used: Option<i64>) {
    let metadata = json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none" });
    clients::create(
        db,
        &NewClient {
            client_id: id.into(),
            kind,
            client_name: Some(id.into()),
            metadata,
            secret_hash: None,
            registration_token_hash: None,
            metadata_expires_at: None,
            registered_ip: None,
        },
        created,
    )
    .await
    .expect("create client");
    if let Some(t) = used {
        clients::touch(db, id, t).await.expect("touch");
    }
}

async fn cleanup_deletes_unused_and_idle_dynamic_clients(engine: Engine) {
    let test_db = TestDb::new(engine).await;
    let db = test_db.connect().await;
    let long_ago = NOW - 10 * IDLE;
    add_client(&db, "unused-old", ClientKind::Dynamic, NOW - UNUSED - 1, None).await;
    add_client(&db, "unused-recent", ClientKind::Dynamic, NOW - UNUSED + 60, None).await;
    add_client(&db, "unused-exactly", ClientKind::Dynamic, NOW - UNUSED, None).await;
    add_client(&db, "idle", ClientKind::Dynamic, long_ago, Some(NOW - IDLE - 1)).await;
    add_client(&db, "active", ClientKind::Dynamic, long_ago, Some(NOW - 100)).await;
    add_client(&db, "used-once-recently", ClientKind::Dynamic, NOW - UNUSED - 500, Some(NOW - UNUSED - 400)).await;
    add_client(&db, "static", ClientKind::Static, long_ago, None).await;
    add_client(&db, "static-idle", ClientKind::Static, long_ago, Some(long_ago + 10)).await;
    add_client(&db, "https://docs.example/c", ClientKind::MetadataDocument, long_ago, None).await;
    add_client(&db, "https://docs.example/idle", ClientKind::MetadataDocument, long_ago, Some(long_ago + 10)).await;

    let mut gone = portcullis::jobs::clean_up_clients(&db, NOW, UNUSED, IDLE).await.expect("cleanup");
    gone.sort();
    assert_eq!(gone, ["idle", "unused-old"]);
    let left: HashSet<String> =
        clients::list(&db).await.unwrap().into_iter().map(|c| c.client_id.to_string()).collect();
    for kept in [
        "unused-recent",
        "unused-exactly",
        "active",
        "used-once-recently",
        "static",
        "static-idle",
        "https://docs.example/c",
        "https://docs.example/idle",
    ] {
        assert!(left.contains(kept), "{kept} is kept");
    }
    assert_eq!(left.len(), 8);
    let events = audit::list(&db, Some("client_deleted"), 100).await.unwrap();
    let mut audited: Vec<String> = events.iter().filter_map(|e| e.client_id.clone()).collect();
    audited.sort();
    assert_eq!(audited, ["idle", "unused-old"], "one client_deleted per client");
    assert!(events.iter().all(|e| e.actor.as_deref() == Some("cleanup") && e.at == NOW));

    // Running again deletes nothing more.
    assert!(portcullis::jobs::clean_up_clients(&db, NOW, UNUSED, IDLE).await.unwrap().is_empty());
}

async fn concurrent_cleanups_delete_each_client_once(engine: Engine) {
    let test_db = TestDb::new(engine).await;
    let db = test_db.connect().await;
    let mut expected = HashSet::new();
    for i in 0..40 {
        let id = format!("stale-{i:02}");
        let used = (i % 2 == 0).then_some(NOW - IDLE - 1 - i);
        add_client(&db, &id, ClientKind::Dynamic, NOW - IDLE - 1000, used).await;
        expected.insert(id);
    }
    for i in 0..5 {
        add_client(&db, &format!("fresh-{i}"), ClientKind::Dynamic, NOW - 10, None).await;
        add_client(&db, &format!("static-{i}"), ClientKind::Static, 0, None).await;
    }
    let (a, b) = tokio::join!(
        portcullis::jobs::clean_up_clients(&db, NOW, UNUSED, IDLE),
        portcullis::jobs::clean_up_clients(&db, NOW, UNUSED, IDLE),
    );
    let (a, b) = (a.expect("first run"), b.expect("second run"));
    let all: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    let union: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), union.len(), "no client deleted twice: {a:?} / {b:?}");
    assert_eq!(union, expected);
    let events = audit::list(&db, Some("client_deleted"), 1000).await.unwrap();
    assert_eq!(events.len(), expected.len(), "one client_deleted per client");
    assert_eq!(clients::list(&db).await.unwrap().len(), 10);
}

fn registration() -> Value {
    json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none", "client_name": "R" })
}

async fn post_register(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut req = app.http.post(app.url("/register")).json(&registration());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("register")
}

async fn registration_rate_limit_per_ip(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.registrations_per_ip_per_hour = 2).await;
    for _ in 0..2 {
        assert_eq!(post_register(&app, None).await.status(), 201);
    }
    let res = post_register(&app, None).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some(), "Retry-After");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "slow_down", "{body}");
    assert_eq!(clients::count_by_kind(&app.db, ClientKind::Dynamic).await.unwrap(), 2);
}

async fn registration_total_limit(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.max_dynamic_clients = 1).await;
    assert_eq!(post_register(&app, None).await.status(), 201);
    let res = post_register(&app, None).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied", "{body}");
}

async fn registration_closed(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.registration = RegistrationPolicy::Closed).await;
    let res = post_register(&app, None).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "access_denied", "{body}");
    assert_eq!(clients::count_by_kind(&app.db, ClientKind::Dynamic).await.unwrap(), 0);
}

async fn registration_requires_an_initial_access_token(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.registration = RegistrationPolicy::Token).await;
    let res = post_register(&app, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(clients::count_by_kind(&app.db, ClientKind::Dynamic).await.unwrap(), 0);
}

async fn registration_with_initial_access_token(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.registration = RegistrationPolicy::Token).await;
    let res = post_register(&app, Some("not-a-token")).await;
    let status = res.status();
    assert_eq!(status, 401, "a wrong token: {}", res.text().await.unwrap_or_default());
    let token = portcullis::admin::issue_initial_access_token(&app.db, "t", None).await.expect("token");
    let res = post_register(&app, Some(&token)).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert!(body["client_id"].is_string());
}
