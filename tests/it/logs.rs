//! Tokens, codes, secrets and passwords never appear in logs or audit events: the real binary runs
//! with `RUST_LOG=debug` (human and JSON formats), its whole output is captured, a full flow is
//! driven over HTTP, and the output and the `audit_events` table are searched for every value the
//! flow issued or sent.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis::store::Db;
use reqwest::cookie::CookieStore;
use serde_json::{Value, json};

use crate::helpers::{
    Binary, Engine, OAuthParams, ServeOutput, TestDb, browser, db_tests, free_port, hidden, location, pkce, query_of,
    spawn_binary,
};

db_tests!(secrets_stay_out_of_human_debug_logs_and_audit, secrets_stay_out_of_json_debug_logs_and_audit);

const PASSWORD: &str = "Log-test pass phrase 7e1f2a";
const WRONG_PASSWORD: &str = "Wrong guess 4b9c0d-secret";
const REDIRECT: &str = "http://127.0.0.1/cb";
const MCP: &str = "https://mcp.example.com/mcp";

async fn secrets_stay_out_of_human_debug_logs_and_audit(engine: Engine) {
    check(engine, false).await
}

async fn secrets_stay_out_of_json_debug_logs_and_audit(engine: Engine) {
    check(engine, true).await
}

/// Every secret value the flow handled, by name.
type Secrets = Vec<(&'static str, String)>;

async fn check(engine: Engine, json_format: bool) {
    let db = TestDb::new(engine).await;
    db.connect().await; // as `serve` or `migrate` leaves it
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("PORTCULLIS_DATABASE_URL", db.url.as_str())];
    run(dir.path(), &["user", "add", "alice", "--password-stdin"], &env, Some(&format!("{PASSWORD}\n")));
    let out = run(
        dir.path(),
        &["resource", "add", MCP, "--name", "Example", "--scope", "mcp:tools=Use tools", "--introspection"],
        &env,
        None,
    );
    let rs_id = value_after(&out, "client_id:").unwrap_or_else(|| panic!("no introspection client_id in:\n{out}"));
    let rs_secret = value_after(&out, "client_secret:").unwrap_or_else(|| panic!("no introspection secret in:\n{out}"));

    let mut server = serve(dir.path(), &db.url, json_format);
    server.wait_ready().await;
    let mut secrets = flow(&server.base, &rs_id, &rs_secret).await;
    secrets.push(("password", PASSWORD.to_string()));
    secrets.push(("wrong password", WRONG_PASSWORD.to_string()));
    secrets.push(("introspection secret", rs_secret.clone()));
    let output = stop(server);

    // The capture is real: debug lines, one per request at least, in the chosen format.
    if json_format {
        assert!(output.contains("\"level\":\"DEBUG\""), "no JSON debug lines captured:\n{output}");
    } else {
        assert!(output.contains("DEBUG"), "no debug lines captured:\n{output}");
    }
    assert!(output.contains("/token") && output.contains("/introspect"), "requests are not logged:\n{output}");

    let mut leaks = Vec::new();
    for (name, value) in &secrets {
        assert!(value.len() >= 16 || *name == "code verifier", "{name} is too short to search for: {value:?}");
        for form in forms(value) {
            if output.contains(&form) {
                let line = output.lines().find(|l| l.contains(&form)).unwrap_or_default();
                leaks.push(format!("log: {name} ({form}) in: {line}"));
            }
        }
    }
    let conn = Db::connect(&db.url).await.expect("connect");
    for row in audit_rows(&conn).await {
        for (name, value) in &secrets {
            if forms(value).iter().any(|f| row.contains(f.as_str())) {
                leaks.push(format!("audit_events: {name} in {row}"));
            }
        }
    }
    assert!(audit_rows(&conn).await.len() >= 3, "the flow records audit events");
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// The value as it could appear: raw, percent-encoded, and inside a JSON string.
fn forms(value: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let json = serde_json::to_string(value).expect("json");
    let mut v = vec![value.to_string(), encoded, json.trim_matches('"').to_string()];
    v.dedup();
    v
}

async fn audit_rows(db: &Db) -> Vec<String> {
    let sql = "SELECT event || ' ' || COALESCE(actor, '') || ' ' || COALESCE(client_id, '') || ' ' || \
               COALESCE(ip, '') || ' ' || details FROM audit_events";
    match db {
        Db::Sqlite(s) => sqlx::query_scalar(sql).fetch_all(&mut *s.read().await.expect("connection")).await,
        Db::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
    }
    .expect("audit rows")
}

fn cookie(jar: &reqwest::cookie::Jar, base: &str) -> String {
    let header = jar.cookies(&base.parse().expect("url")).expect("a session cookie");
    let header = header.to_str().expect("ascii").to_string();
    header.split(';').map(str::trim).find_map(|c| c.strip_prefix("portcullis=")).expect("portcullis cookie").to_string()
}

/// Registration, a failed and a good sign-in, consent, code, token, refresh, userinfo,
/// introspection, revocation, registration read: returns every secret value seen on the way.
async fn flow(base: &str, rs_id: &str, rs_secret: &str) -> Secrets {
    let _ = browser(); // installs the TLS provider
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut secrets: Secrets = Vec::new();
    let url = |p: &str| format!("{base}{p}");

    let res = http
        .post(url("/register"))
        .json(&json!({
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["authorization_code", "refresh_token"],
            "client_name": "Log test",
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(res.status(), 201);
    let client: Value = res.json().await.expect("json");
    let client_id = client["client_id"].as_str().expect("client_id").to_string();
    let client_secret = client["client_secret"].as_str().expect("client_secret").to_string();
    let reg_token = client["registration_access_token"].as_str().expect("registration token").to_string();
    secrets.push(("client secret", client_secret.clone()));
    secrets.push(("registration access token", reg_token.clone()));
    let res = http.get(url(&format!("/register/{client_id}"))).bearer_auth(&reg_token).send().await.expect("read");
    assert_eq!(res.status(), 200, "registration read");

    let page = http.get(url("/login")).send().await.expect("login page").text().await.expect("text");
    let csrf = hidden(&page, "csrf_token");
    secrets.push(("CSRF token (signed out)", csrf.clone()));
    secrets.push(("session cookie (signed out)", cookie(&jar, base)));
    let res = http
        .post(url("/login"))
        .form(&[("username", "alice"), ("password", WRONG_PASSWORD), ("csrf_token", &csrf), ("next", "")])
        .send()
        .await
        .expect("failed login");
    assert_eq!(res.status(), 401);
    let res = http
        .post(url("/login"))
        .form(&[("username", "alice"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "")])
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), 200, "login");
    secrets.push(("session cookie (signed in)", cookie(&jar, base)));

    let (verifier, challenge) = pkce();
    secrets.push(("code verifier", verifier.clone()));
    let res = http
        .get(url("/authorize"))
        .query(
            &OAuthParams::authorize(&client_id, REDIRECT, &challenge)
                .scope("mcp:tools offline_access openid")
                .state("log-state"),
        )
        .send()
        .await
        .expect("authorize");
    assert_eq!(res.status(), 200, "consent page");
    let page = res.text().await.expect("page");
    let csrf = hidden(&page, "csrf_token");
    secrets.push(("CSRF token (signed in)", csrf.clone()));
    let res = http
        .post(url("/consent"))
        .form(&[("csrf_token", csrf.as_str()), ("request_id", &hidden(&page, "request_id")), ("decision", "approve")])
        .send()
        .await
        .expect("consent");
    assert_eq!(res.status(), 303);
    let code = query_of(&location(&res)).get("code").cloned().expect("code");
    secrets.push(("authorization code", code.clone()));

    let token = |form: OAuthParams| {
        let http = http.clone();
        async move {
            let res = http.post(url("/token")).form(&form).send().await.expect("token");
            assert_eq!(res.status(), 200, "token request {form:?}");
            res.json::<Value>().await.expect("json")
        }
    };
    let redeem =
        OAuthParams::code(&client_id, &code, &verifier).redirect_uri(REDIRECT).with("client_secret", &client_secret);
    let first = token(redeem.clone()).await;
    let access = first["access_token"].as_str().expect("access_token").to_string();
    let refresh1 = first["refresh_token"].as_str().expect("refresh_token").to_string();
    secrets.push(("access token", access.clone()));
    secrets.push(("refresh token 1", refresh1.clone()));
    if let Some(id_token) = first["id_token"].as_str() {
        secrets.push(("ID token", id_token.to_string()));
    }
    let second = token(OAuthParams::refresh(&client_id, &refresh1).with("client_secret", &client_secret)).await;
    let access2 = second["access_token"].as_str().expect("access_token").to_string();
    let refresh2 = second["refresh_token"].as_str().expect("refresh_token").to_string();
    assert_ne!(refresh1, refresh2, "refresh tokens rotate");
    secrets.push(("access token 2", access2.clone()));
    secrets.push(("refresh token 2", refresh2.clone()));

    let res = http.get(url("/userinfo")).bearer_auth(&access2).send().await.expect("userinfo");
    assert_eq!(res.status(), 200, "userinfo");

    let introspect = async |token: &str| -> Value {
        let res = http
            .post(url("/introspect"))
            .basic_auth(rs_id, Some(rs_secret))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        res.json().await.expect("json")
    };
    let answer = introspect(&access2).await;
    assert_eq!(answer["active"], true, "{answer}");

    let res = http
        .post(url("/revoke"))
        .form(&[
            ("token", refresh2.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", &client_id),
            ("client_secret", &client_secret),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), 200, "revoke");
    let answer = introspect(&access2).await;
    assert_eq!(answer["active"], false, "revoked: {answer}");
    // A replayed code and a rotated refresh token are refused (and audited).
    let res = http.post(url("/token")).form(&redeem).send().await.expect("replay");
    assert_eq!(res.status(), 400, "code replay");
    secrets
}

// ---- the binary ----

/// Runs a CLI subcommand to success and returns its standard output.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> String {
    let child = spawn_binary(dir, args, env, stdin);
    let out = child.wait_with_output().expect("portcullis output");
    assert!(out.status.success(), "portcullis {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value_after(text: &str, label: &str) -> Option<String> {
    text.lines().find_map(|l| l.trim().strip_prefix(label)).map(|v| v.trim().to_string())
}

/// `portcullis serve` at debug level, standard output and error captured in one file.
fn serve(dir: &Path, db_url: &str, json_format: bool) -> Binary {
    let mut env = vec![("PORTCULLIS_DATABASE_URL", db_url), ("RUST_LOG", "debug")];
    if json_format {
        env.push(("PORTCULLIS_LOG_FORMAT", "json"));
    }
    Binary::start(dir, free_port(), &env, ServeOutput::Combined)
}

/// Stops the server (after a moment for the last lines) and returns everything it printed.
fn stop(server: Binary) -> String {
    std::thread::sleep(Duration::from_millis(300));
    server.stop()
}
