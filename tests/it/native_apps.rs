//! Silent re-authorization of native apps (the round-two review's item 8, RFC 8252 §8.6). A
//! public client whose redirect URI is a loopback address or a private-use scheme can be
//! impersonated by any program on the device that knows its public client id: with a live grant
//! it gets a code only after one click on the "Continue to <app>" page. Other clients are still
//! answered at once.

use crate::helpers::{
    Engine, MCP, OAuthParams, TestApp, approve_consent, count_rows, db_tests, location, pkce, query_of, submit_consent,
};

db_tests!(a_native_app_with_a_grant_gets_its_code_after_one_click, web_apps_with_a_grant_are_answered_at_once,);

async fn a_native_app_with_a_grant_gets_its_code_after_one_click(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    for redirect in ["http://127.0.0.1/callback", "com.example.app:/oauth/cb"] {
        // Approved once on the consent page: a live grant.
        let first = app.code_for(redirect, &[("resource", MCP)]).await;
        let http = &first.browser;
        let request = || OAuthParams::authorize(&first.client_id, redirect, &pkce().1).resource(MCP).state("again");
        let codes = count_rows(&app.db, "authorization_codes").await;
        let grants = count_rows(&app.db, "grants").await;

        let res = http.get(app.url("/authorize")).query(&request()).send().await.unwrap();
        assert_eq!(res.status(), 200, "{redirect}: a page, not a code");
        let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
        let page = res.text().await.unwrap();
        assert!(page.contains("Continue to Test client"), "{page}");
        assert!(!page.contains("name=\"code\""));
        assert_eq!(count_rows(&app.db, "authorization_codes").await, codes, "{redirect}: no code before the click");
        assert!(csp.contains("form-action"), "{csp}");

        // prompt=none cannot skip the click.
        let res = http.get(app.url("/authorize")).query(&request().with("prompt", "none")).send().await.unwrap();
        assert_eq!(res.status(), 302, "{redirect}");
        let back = query_of(&location(&res));
        assert_eq!(back.get("error").map(String::as_str), Some("interaction_required"), "{back:?}");
        assert!(!back.contains_key("code"));
        assert_eq!(count_rows(&app.db, "authorization_codes").await, codes);

        // Cancel: access_denied, nothing issued, the grant stays.
        let res = submit_consent(http, &app.url("/consent"), &page, "deny").await;
        assert_eq!(query_of(&location(&res)).get("error").map(String::as_str), Some("access_denied"));
        assert_eq!(count_rows(&app.db, "authorization_codes").await, codes);

        // One click: the code.
        let page = http.get(app.url("/authorize")).query(&request()).send().await.unwrap().text().await.unwrap();
        let res = approve_consent(http, &app.url("/consent"), &page).await;
        assert_eq!(res.status(), 303);
        let back = query_of(&location(&res));
        assert!(location(&res).starts_with(redirect), "{}", location(&res));
        assert!(back.contains_key("code") && back.get("state").map(String::as_str) == Some("again"), "{back:?}");
        assert_eq!(count_rows(&app.db, "authorization_codes").await, codes + 1);
        assert_eq!(count_rows(&app.db, "grants").await, grants, "the same grant");
    }
}

async fn web_apps_with_a_grant_are_answered_at_once(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let first = app.code_for(redirect, &[("resource", MCP)]).await;
    let query = OAuthParams::authorize(&first.client_id, redirect, &pkce().1).resource(MCP);
    let res = first.browser.get(app.url("/authorize")).query(&query).send().await.unwrap();
    assert_eq!(res.status(), 302, "an https redirect URI is the client's own: no extra click");
    assert!(query_of(&location(&res)).contains_key("code"));
}
