//! What an unauthenticated `/authorize` can park (the round-two review's item 5): `state` and
//! `nonce` are capped at 1 KiB; a session created for a pending request (nobody signed in) lives
//! 15 minutes, not `session_lifetime`; one address holds at most `pending_sessions_per_address`
//! of them at once, a parallel burst included. The session cookie's path follows a path issuer.

use portcullis::store::Db;

use crate::helpers::{Engine, MCP, OAuthParams, PASSWORD, TestApp, browser, count_rows, db_tests, pkce};

db_tests!(
    oversized_state_and_nonce_are_refused_before_anything_is_parked,
    pending_sessions_are_short_lived_until_sign_in,
    pending_sessions_are_capped_per_address,
    session_cookie_path_follows_a_path_issuer,
);

const REDIRECT: &str = "http://127.0.0.1/callback";

/// (expires_at, pending_from) of every session, on either engine.
async fn sessions(db: &Db) -> Vec<(i64, Option<String>)> {
    let sql = "SELECT expires_at, pending_from FROM web_sessions ORDER BY expires_at";
    match db {
        Db::Sqlite(s) => sqlx::query_as(sql).fetch_all(&mut *s.read().await.expect("connection")).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
    }
    .expect("sessions")
}

fn request(client_id: &str) -> OAuthParams {
    OAuthParams::authorize(client_id, REDIRECT, &pkce().1).resource(MCP)
}

async fn oversized_state_and_nonce_are_refused_before_anything_is_parked(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client(REDIRECT).await;
    for (name, value) in [("state", "s".repeat(1025)), ("nonce", "n".repeat(1025))] {
        let res =
            browser().get(app.url("/authorize")).query(&request(&client_id).with(name, &value)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{name}");
        assert!(res.headers().get("set-cookie").is_none(), "{name}: no session");
        let page = res.text().await.unwrap();
        assert!(
            page.contains("invalid_request")
                && page.to_lowercase().contains(&format!("{name} is longer than 1024 bytes")),
            "{page}"
        );
        assert!(!page.contains(&value), "{name} not echoed");
        assert_eq!(count_rows(&app.db, "web_sessions").await, 0, "{name}: nothing parked");
    }
    // At the limit both are fine.
    let at_limit = request(&client_id).state(&"s".repeat(1024)).with("nonce", &"n".repeat(1024));
    let res = browser().get(app.url("/authorize")).query(&at_limit).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["location"].to_str().unwrap().contains("/login?request_id="));
    assert_eq!(count_rows(&app.db, "web_sessions").await, 1);
}

async fn pending_sessions_are_short_lived_until_sign_in(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client(REDIRECT).await;
    let http = browser();
    let res = http.get(app.url("/authorize")).query(&request(&client_id)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let now = portcullis::store::now();
    let [(expires_at, from)] = &sessions(&app.db).await[..] else { panic!("one session") };
    let (expires_at, from) = (*expires_at, from.clone());
    assert!(expires_at <= now + 900 && expires_at > now + 800, "15 minutes, not 12 hours: {}", expires_at - now);
    assert_eq!(from.as_deref(), Some("127.0.0.1"), "counted against its address");
    // The login page's visit keeps it short.
    let login = res.headers()["location"].to_str().unwrap().to_string();
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    assert!(sessions(&app.db).await[0].0 <= portcullis::store::now() + 900);
    // Signed in, it is an ordinary session: session_lifetime, and no longer counted.
    let form = [
        ("username", "alice".to_string()),
        ("password", PASSWORD.to_string()),
        ("csrf_token", crate::helpers::hidden(&page, "csrf_token")),
        ("next", crate::helpers::hidden(&page, "next")),
    ];
    let res = http.post(app.url(&login)).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 303, "signed in");
    let [(expires_at, from)] = &sessions(&app.db).await[..] else { panic!("one session (the id was cycled)") };
    let (expires_at, from) = (*expires_at, from.clone());
    assert!(expires_at > portcullis::store::now() + 11 * 3600, "session_lifetime once signed in");
    assert_eq!(from, None);
}

async fn pending_sessions_are_capped_per_address(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.pending_sessions_per_address = 3;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
    .with_defaults()
    .await;
    let client_id = app.public_client(REDIRECT).await;
    let from = |address: &'static str| {
        let query = request(&client_id);
        let url = app.url("/authorize");
        async move { browser().get(url).header("X-Forwarded-For", address).query(&query).send().await.unwrap() }
    };
    // A parallel burst from one address: exactly the cap is admitted.
    let burst = futures_join(20, || from("203.0.113.7")).await;
    let admitted = burst.iter().filter(|s| **s == 303).count();
    assert_eq!(admitted, 3, "{burst:?}");
    assert!(burst.iter().all(|s| *s == 303 || *s == 429), "{burst:?}");
    assert_eq!(count_rows(&app.db, "web_sessions").await, 3);
    // Refused: a clear page, no cookie, nothing written.
    let res = from("203.0.113.7").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("set-cookie").is_none());
    assert!(res.text().await.unwrap().contains("Too many sign-ins"));
    assert_eq!(count_rows(&app.db, "web_sessions").await, 3);
    // Another address, and a browser that already has a session, are not affected.
    assert_eq!(from("203.0.113.8").await.status(), 303);
    let http = browser();
    let url = app.url("/authorize");
    assert_eq!(
        http.get(&url)
            .header("X-Forwarded-For", "203.0.113.9")
            .query(&request(&client_id))
            .send()
            .await
            .unwrap()
            .status(),
        303
    );
    for _ in 0..5 {
        let res =
            http.get(&url).header("X-Forwarded-For", "203.0.113.9").query(&request(&client_id)).send().await.unwrap();
        assert_eq!(res.status(), 303, "the same browser parks more requests in its one session");
    }
    assert_eq!(count_rows(&app.db, "web_sessions").await, 5);
}

/// Runs `n` requests at once; their statuses.
async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<u16>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status().as_u16());
    }
    statuses
}

async fn session_cookie_path_follows_a_path_issuer(engine: Engine) {
    let cookie_of = |res: &reqwest::Response| res.headers()["set-cookie"].to_str().unwrap().to_string();
    let app = TestApp::spawn_with(engine, "/tenant1", |_| {}).await;
    let cookie = cookie_of(&browser().get(app.url("/login")).send().await.unwrap());
    assert!(cookie.starts_with("portcullis=") && cookie.contains("Path=/tenant1"), "{cookie}");
    // https with a path: `__Host-` needs `Path=/`, so `__Secure-` and the tenant's path.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app =
        TestApp::spawn_on(engine, listener, "/tenant1", |c| c.issuer = Some("https://auth.example.com/tenant1".into()))
            .await;
    let cookie = cookie_of(&browser().get(app.url("/login")).send().await.unwrap());
    assert!(
        cookie.starts_with("__Secure-portcullis=") && cookie.contains("Path=/tenant1") && cookie.contains("Secure"),
        "{cookie}"
    );
}
