//! Asking for a newer sign-in (the round-two review's item 9): `prompt=login` and OIDC `max_age`
//! (Core §3.1.2.1) send the person to the login page, posting the consent form directly cannot
//! skip that, and the ID token carries `auth_time`.

use std::time::Duration;

use crate::helpers::{
    Engine, OAuthParams, PASSWORD, TestApp, browser, count_rows, db_tests, hidden, jwt_parts, location, pkce, query_of,
    submit_consent,
};

db_tests!(prompt_login_cannot_be_skipped_by_posting_consent, max_age_asks_for_a_newer_sign_in);

const REDIRECT: &str = "https://app.example/cb";

/// Posts the consent form for `request_id` with the session's CSRF token (taken from `page`),
/// as a person skipping the login page would.
async fn post_consent(app: &TestApp, http: &reqwest::Client, page: &str, request_id: &str) -> reqwest::Response {
    http.post(app.url("/consent"))
        .form(&[
            ("csrf_token", hidden(page, "csrf_token").as_str()),
            ("request_id", request_id),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap()
}

/// The request id of a redirect to the login page.
fn request_id(login_location: &str) -> String {
    assert!(login_location.starts_with("/login?request_id="), "not sent to sign in: {login_location}");
    login_location.trim_start_matches("/login?request_id=").to_string()
}

async fn written(app: &TestApp) -> (i64, i64) {
    (count_rows(&app.db, "authorization_codes").await, count_rows(&app.db, "grants").await)
}

async fn prompt_login_cannot_be_skipped_by_posting_consent(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client = app.public_client(REDIRECT).await;
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(&client, REDIRECT, &challenge).state("s").with("prompt", "login");
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    let id = request_id(&login);
    // Skipping the login page: the consent form posted straight away decides nothing.
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let before = written(&app).await;
    let res = post_consent(&app, &http, &page, &id).await;
    assert_eq!(res.status(), 303);
    assert_eq!(request_id(&location(&res)), id, "back to the login page for the same request");
    assert_eq!(written(&app).await, before, "a code was issued without the fresh sign-in");
    // Signing in again, then consenting, works.
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    assert_eq!(res.status(), 303);
    let consent = http.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    let res = submit_consent(&http, &app.url("/consent"), &consent.text().await.unwrap(), "approve").await;
    assert!(query_of(&location(&res)).contains_key("code"));
}

async fn max_age_asks_for_a_newer_sign_in(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client = app.approved_client(REDIRECT).await;
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let signed_in_at = portcullis::store::now();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (verifier, challenge) = pkce();
    let query = |max_age: &str| {
        OAuthParams::authorize(&client, REDIRECT, &challenge)
            .state("s")
            .scope("openid mcp:tools")
            .with("prompt", "consent")
            .with("max_age", max_age)
    };
    // A sign-in within max_age is good enough: straight to the consent page.
    let res = http.get(app.url("/authorize")).query(&query("600")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // One older than max_age is not.
    let res = http.get(app.url("/authorize")).query(&query("1")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    let id = request_id(&login);
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let before = written(&app).await;
    let res = post_consent(&app, &http, &page, &id).await;
    assert_eq!(request_id(&location(&res)), id, "the consent form skipped the sign-in max_age asks for");
    assert_eq!(written(&app).await, before);
    // prompt=none cannot sign in: login_required.
    let none = OAuthParams::authorize(&client, REDIRECT, &challenge).state("s").with("max_age", "1");
    let res = http.get(app.url("/authorize")).query(&none.with("prompt", "none")).send().await.unwrap();
    assert_eq!(query_of(&location(&res))["error"], "login_required");
    // A malformed max_age is invalid_request.
    let res = http.get(app.url("/authorize")).query(&query("-5")).send().await.unwrap();
    assert_eq!(query_of(&location(&res))["error"], "invalid_request");
    // After a fresh sign-in the request continues (max_age=0 too: no loop), and the ID token
    // says when the person signed in.
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    let consent = http.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    let res = submit_consent(&http, &app.url("/consent"), &consent.text().await.unwrap(), "approve").await;
    let code = query_of(&location(&res)).remove("code").expect("a code");
    let (status, body) = app.token(&OAuthParams::code(&client, &code, &verifier)).await;
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["id_token"].as_str().expect("an ID token"));
    let auth_time = claims["auth_time"].as_i64().expect("auth_time");
    assert!(auth_time >= signed_in_at + 2, "auth_time is the fresh sign-in's: {auth_time} vs {signed_in_at}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = http.get(app.url("/authorize")).query(&query("0")).send().await.unwrap();
    let login = location(&res);
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    assert_eq!(http.get(app.url(&location(&res))).send().await.unwrap().status(), 200, "max_age=0 after a sign-in");
}
