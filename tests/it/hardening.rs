//! Abuse limits and operations: login throttling and lockout, the client address behind trusted
//! proxies, Prometheus metrics, rate limits per address, native TLS.

use portcullis::config::{RateLimits, Seconds};
use serde_json::Value;

use crate::helpers::{
    Binary, Engine, MCP, OAuthParams, PASSWORD, ServeOutput, TestApp, binary_command, browser, db_tests, free_port,
    hidden,
};

db_tests!(
    login_locks_after_repeated_failures,
    client_address_comes_from_trusted_proxies_only,
    metrics_count_requests_tokens_and_errors,
    per_address_limits_answer_429,
);

async fn login_with_headers(
    app: &TestApp,
    http: &reqwest::Client,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let page = http.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let mut req = http.post(app.url("/login")).form(&[
        ("username", user),
        ("password", password),
        ("csrf_token", &hidden(&page, "csrf_token")),
        ("next", ""),
    ]);
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap()
}

async fn login_locks_after_repeated_failures(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.login_max_failures = 3;
        c.login_lockout = Seconds(60);
    })
    .await
    .with_defaults()
    .await;
    let http = browser();
    for _ in 0..3 {
        assert_eq!(app.login(&http, "alice", "wrong password").await.status(), 401);
    }
    // Locked: even the right password is refused, and an unknown name gets the same answer.
    let res = app.login(&http, "alice", PASSWORD).await;
    assert_eq!(res.status(), 429);
    assert!(res.text().await.unwrap().contains("Too many failed sign-ins"));
    let events = portcullis::store::audit::list(&app.db, Some("login_locked"), 5).await.unwrap();
    assert_eq!(events.len(), 1, "the lock is audited once");
    // Another account is not locked by alice's failures (the address allows five times more).
    app.add_user("bob").await;
    assert_eq!(app.login(&browser(), "bob", PASSWORD).await.status(), 200);
    // After the lock expires (simulated), the right password works and clears the count.
    match &app.db {
        portcullis::store::Db::Sqlite(s) => {
            let mut c = s.write().await.unwrap();
            sqlx::query("UPDATE login_throttle SET locked_until = 0").execute(&mut *c).await.unwrap();
        }
        portcullis::store::Db::Postgres(p) => {
            sqlx::query("UPDATE login_throttle SET locked_until = 0").execute(p).await.unwrap();
        }
    }
    assert_eq!(app.login(&browser(), "alice", PASSWORD).await.status(), 200);
}

async fn client_address_comes_from_trusted_proxies_only(engine: Engine) {
    // Not trusted: the header is ignored.
    let app = TestApp::spawn(engine).await.with_defaults().await;
    login_with_headers(&app, &browser(), "alice", PASSWORD, Some("203.0.113.7")).await;
    let e = portcullis::store::audit::list(&app.db, Some("login"), 1).await.unwrap().remove(0);
    assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
    // Trusted: the nearest untrusted hop.
    let app = TestApp::spawn_with(engine, "", |c| c.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()])
        .await
        .with_defaults()
        .await;
    login_with_headers(&app, &browser(), "alice", PASSWORD, Some("198.51.100.1, 203.0.113.7, 10.1.2.3")).await;
    let e = portcullis::store::audit::list(&app.db, Some("login"), 1).await.unwrap().remove(0);
    assert_eq!(e.ip.as_deref(), Some("203.0.113.7"));
    // A client's own `Forwarded`, passed through by the proxy, does not choose the address: only
    // the header the proxy sets (X-Forwarded-For by default) counts.
    let http = browser();
    let page = http.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let res = http
        .post(app.url("/login"))
        .header("forwarded", "for=192.0.2.66")
        .header("x-forwarded-for", "192.0.2.66, 203.0.113.8")
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", &hidden(&page, "csrf_token")),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let e = portcullis::store::audit::list(&app.db, Some("login"), 1).await.unwrap().remove(0);
    assert_eq!(e.ip.as_deref(), Some("203.0.113.8"), "the client-sent Forwarded header was believed");
}

async fn metrics_count_requests_tokens_and_errors(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let issued = app.code_for("https://app.example/cb", &[("resource", MCP)]).await;
    let form = issued.redeem();
    assert_eq!(app.token(&form).await.0, 200);
    assert_eq!(app.token(&form).await.0, 400);
    let res = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        "portcullis_http_requests_total{endpoint=\"/token\",method=\"POST\",status=\"200\"} 1",
        "portcullis_http_requests_total{endpoint=\"/token\",method=\"POST\",status=\"400\"} 1",
        "portcullis_http_request_duration_seconds_count{endpoint=\"/token\"} 2",
        "portcullis_tokens_issued_total{grant_type=\"authorization_code\"} 1",
        "portcullis_oauth_errors_total{error=\"invalid_grant\"} 1",
        "portcullis_logins_total{result=\"success\"} 1",
        "portcullis_refresh_reuse_detected_total 0",
        "# TYPE portcullis_store_connections_settled_total counter\nportcullis_store_connections_settled_total ",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    assert!(!text.contains(&issued.code) && !text.contains(&issued.verifier), "no secrets in metrics");
}

async fn per_address_limits_answer_429(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.rate_limit_per_ip = RateLimits { token: 3, ..RateLimits::off() };
        c.rate_limit_total = RateLimits::off();
    })
    .await
    .with_defaults()
    .await;
    let client_id = app.public_client("https://app.example/cb").await;
    for _ in 0..3 {
        assert_eq!(app.token(&OAuthParams::refresh(&client_id, "x")).await.0, 400);
    }
    let res = app.http.post(app.url("/token")).form(&OAuthParams::refresh(&client_id, "x")).send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "slow_down");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("portcullis_rate_limited_total{endpoint=\"token\"} 1"), "{metrics}");
    // Other endpoints are not affected.
    assert_eq!(app.http.get(app.url("/jwks.json")).send().await.unwrap().status(), 200);
}

/// `tls_cert_file`/`tls_key_file`: the real binary serves HTTPS directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tls_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let path = std::env::var("PATH").unwrap_or_default();
    let db_url = format!("sqlite://{}", dir.path().join("p.db").display());
    let issuer = format!("https://localhost:{port}");
    let env = [
        ("PATH", path.as_str()),
        ("PORTCULLIS_DATABASE_URL", db_url.as_str()),
        ("PORTCULLIS_ISSUER", issuer.as_str()),
        ("PORTCULLIS_TLS_CERT_FILE", cert_path.to_str().unwrap()),
        ("PORTCULLIS_TLS_KEY_FILE", key_path.to_str().unwrap()),
        ("PORTCULLIS_BOOTSTRAP_ADMIN", "false"),
    ];
    let _server = Binary::start(dir.path(), port, &env, ServeOutput::Separate);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let url = format!("https://localhost:{port}/.well-known/oauth-authorization-server");
    let mut doc = None;
    for _ in 0..100 {
        if let Ok(res) = http.get(&url).send().await {
            assert_eq!(res.headers()["strict-transport-security"], "max-age=31536000", "HSTS over TLS");
            doc = Some(res.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let doc = doc.expect("HTTPS answers");
    assert_eq!(doc["issuer"], Value::from(format!("https://localhost:{port}")));
    // Plain HTTP on the TLS port gets nothing useful.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/readyz")).send().await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

/// `portcullis audit list` with filters, against the real binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_list_filters() {
    let t = crate::helpers::TestDb::new(Engine::Sqlite).await;
    let db = t.connect().await;
    let now = portcullis::store::now();
    // The last actor is a username typed at the login form: an escape sequence that would recolour
    // (or worse) the operator's terminal.
    for (event, actor) in
        [("login", "alice"), ("login_failed", "mallory"), ("login", "bob"), ("login_failed", "eve\u{1b}[2J\u{7}")]
    {
        let e =
            portcullis::store::audit::Event { event, actor: Some(actor), ip: Some("192.0.2.1"), ..Default::default() };
        portcullis::store::audit::record(&db, &e, now).await.unwrap();
    }
    let run = |args: &[&str]| {
        let out = binary_command(&std::env::temp_dir(), args, &[("PORTCULLIS_DATABASE_URL", &t.url)]).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, _) = run(&["audit", "list", "--event", "login"]);
    assert!(ok);
    assert!(out.contains("alice") && out.contains("bob") && !out.contains("mallory"), "{out}");
    let (ok, out, _) = run(&["audit", "list", "--actor", "mallory", "--since", "1h"]);
    assert!(ok && out.contains("login_failed") && !out.contains("alice"), "{out}");
    let (ok, _, err) = run(&["audit", "list", "--since", "soon"]);
    assert!(!ok && err.starts_with("error:"), "{err}");
    let (ok, out, _) = run(&["audit", "list", "--event", "login_failed"]);
    assert!(ok && out.contains("eve\\u{1b}[2J\\u{7}"), "control characters shown escaped: {out}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "no control character reaches the terminal: {out:?}");
}
