//! /authorize, login and consent: what may redirect and what must not, loopback redirect rules,
//! PKCE, resource and scope resolution, prompt, remembered grants, deny, CSRF.

use serde::Serialize;
use serde_json::json;

use crate::helpers::{
    Engine, IssuedCode, MCP, OAuthParams, PASSWORD, TestApp, browser, db_tests, hidden, location, pkce, query_of,
    submit_consent,
};

db_tests!(
    unknown_client_or_redirect_gets_a_page_not_a_redirect,
    loopback_redirects_match_any_port,
    errors_redirect_with_state_and_iss,
    resource_is_canonicalised_and_checked,
    resource_defaults,
    scope_rules,
    login_then_consent_then_code,
    remembered_grant_skips_consent_until_more_is_asked,
    prompt_values,
    deny_returns_access_denied,
    forms_need_the_csrf_token,
    login_failures,
    consent_page_content,
    post_authorize_works_like_get,
);

fn base_query(client_id: &str, redirect: &str, challenge: &str) -> OAuthParams {
    OAuthParams::authorize(client_id, redirect, challenge).state("s-1")
}

async fn get<Q: Serialize + ?Sized>(app: &TestApp, http: &reqwest::Client, q: &Q) -> reqwest::Response {
    http.get(app.url("/authorize")).query(q).send().await.unwrap()
}

async fn unknown_client_or_redirect_gets_a_page_not_a_redirect(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client = app.public_client("https://app.example/cb").await;
    let (_, ch) = pkce();
    for (q, why) in [
        (base_query("no-such-client", "https://app.example/cb", &ch), "unknown client"),
        (base_query(&client, "https://evil.example/cb", &ch), "unregistered redirect"),
        (base_query(&client, "https://app.example/cb/", &ch), "not an exact match"),
        (base_query(&client, "https://app.example/cb?x=1", &ch), "extra query"),
    ] {
        let res = get(&app, &app.http, &q).await;
        assert_eq!(res.status(), 400, "{why}");
        assert!(res.headers().get("location").is_none(), "{why}: must not redirect");
        let ct = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{why}: {ct}");
        let body = res.text().await.unwrap();
        assert!(body.contains("<h1>"), "{why}: a readable page");
    }
    let res = app.http.get(app.url("/authorize")).send().await.unwrap();
    assert_eq!(res.status(), 400, "no parameters at all");
    let res = app.http.get(app.url(&format!("/authorize?client_id={client}&client_id={client}"))).send().await.unwrap();
    assert_eq!(res.status(), 400, "repeated parameters are refused");
    assert!(res.headers().get("location").is_none());
}

async fn loopback_redirects_match_any_port(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let c = app
        .register(json!({
            "redirect_uris": ["http://127.0.0.1/callback", "http://localhost/cb", "http://127.0.0.1:33418/", "http://[::1]/x"],
            "token_endpoint_auth_method": "none"
        }))
        .await;
    let id = c["client_id"].as_str().unwrap();
    let (_, ch) = pkce();
    for ok in [
        "http://127.0.0.1:58135/callback",
        "http://127.0.0.1/callback",
        "http://localhost:9/cb",
        "http://127.0.0.1:40001/",
        "http://[::1]:7/x",
    ] {
        let res = get(&app, &app.http, &base_query(id, ok, &ch)).await;
        assert_eq!(res.status(), 303, "{ok} should be accepted (redirect to login)");
        assert!(location(&res).contains("/login?request_id="), "{ok}");
    }
    for bad in [
        "http://localhost:5/callback",
        "http://127.0.0.1:5/callback/",
        "http://127.0.0.1:5/callback?x=1",
        "https://127.0.0.1:5/callback",
        "http://127.0.0.2:5/callback",
    ] {
        let res = get(&app, &app.http, &base_query(id, bad, &ch)).await;
        assert_eq!(res.status(), 400, "{bad} must be refused");
    }
}

/// Errors found before any interaction go back to a trusted redirect URI (here an approved
/// one; see `redirect_trust` for the rule) with `state` and `iss`.
async fn errors_redirect_with_state_and_iss(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.approved_client(redirect).await;
    let (_, ch) = pkce();
    let state = "odd state/+&=é";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("response_type", "code"), ("client_id", &client), ("redirect_uri", redirect), ("state", state)],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", &client),
                ("code_challenge", &ch),
                ("code_challenge_method", "plain"),
                ("state", state),
            ],
            "invalid_request",
        ),
        (
            vec![("response_type", "code"), ("client_id", &client), ("code_challenge", &ch), ("state", state)],
            "invalid_request",
        ),
        (
            vec![
                ("response_type", "token"),
                ("client_id", &client),
                ("code_challenge", &ch),
                ("code_challenge_method", "S256"),
                ("state", state),
            ],
            "unsupported_response_type",
        ),
        // Request objects are refused by name, not silently ignored (OIDC Core §3.1.2.6).
        (
            vec![
                ("response_type", "code"),
                ("client_id", &client),
                ("code_challenge", &ch),
                ("code_challenge_method", "S256"),
                ("request", "eyJhbGciOiJub25lIn0.e30."),
                ("state", state),
            ],
            "request_not_supported",
        ),
        (
            vec![
                ("response_type", "code"),
                ("client_id", &client),
                ("code_challenge", &ch),
                ("code_challenge_method", "S256"),
                ("request_uri", "urn:ietf:params:oauth:request_uri:abc"),
                ("state", state),
            ],
            "request_uri_not_supported",
        ),
    ];
    for (q, code) in cases {
        let res = get(&app, &app.http, &q).await;
        assert_eq!(res.status(), 302, "{q:?}");
        let loc = location(&res);
        assert!(loc.starts_with(redirect), "{loc}");
        let p = query_of(&loc);
        assert_eq!(p["error"], code, "{loc}");
        assert_eq!(p["state"], state, "state echoed byte for byte");
        assert_eq!(p["iss"], app.base, "iss on error responses");
        assert!(!loc.contains(&ch), "the challenge is never echoed");
    }
}

async fn resource_is_canonicalised_and_checked(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.approved_client(redirect).await;
    app.add_resource("https://other.example.com", &[("x:read", "Read", true)]).await;
    // Unknown resource: invalid_target through the redirect.
    let (_, ch) = pkce();
    let q = base_query(&client, redirect, &ch).resource("https://unknown.example.com/mcp");
    let res = get(&app, &app.http, &q).await;
    assert_eq!(query_of(&location(&res))["error"], "invalid_target");
    // Two different resources at once: refused.
    let q = base_query(&client, redirect, &ch).resource(MCP).resource("https://other.example.com");
    assert_eq!(query_of(&location(&get(&app, &app.http, &q).await))["error"], "invalid_target");
    // Non-canonical spellings of registered resources are accepted, and `aud` is canonical.
    for (sent, canonical) in
        [("HTTPS://MCP.EXAMPLE.COM:443/mcp", MCP), ("https://other.example.com/", "https://other.example.com")]
    {
        let c = app.code_for(redirect, &[("resource", sent)]).await;
        let (status, body) = app.token(&c.redeem().redirect_uri(redirect).resource(sent)).await;
        assert_eq!(status, 200, "{body}");
        let (_, claims) = crate::helpers::jwt_parts(body["access_token"].as_str().unwrap());
        assert_eq!(claims["aud"], json!(canonical), "{sent}");
    }
}

async fn resource_defaults(engine: Engine) {
    // One registered resource: requests without `resource` get it.
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let (status, body) = app.token(&app.code_for(redirect, &[]).await.redeem()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(crate::helpers::jwt_parts(body["access_token"].as_str().unwrap()).1["aud"], json!(MCP));
    // Two registered and no default: the client is told to send one.
    let client = app.approved_client(redirect).await;
    app.add_resource("https://second.example.com", &[("y", "Y", true)]).await;
    let (_, ch) = pkce();
    let res = get(&app, &app.http, &base_query(&client, redirect, &ch)).await;
    let p = query_of(&location(&res));
    assert_eq!(p["error"], "invalid_target");
    assert!(p["error_description"].contains("resource"), "{p:?}");
    // A configured default wins.
    let app2 = TestApp::spawn_with(engine, "", |c| c.default_resource = Some("https://second.example.com".into()))
        .await
        .with_defaults()
        .await;
    app2.add_resource("https://second.example.com", &[("y", "Y", true)]).await;
    let (_, body) = app2.token(&app2.code_for(redirect, &[]).await.redeem()).await;
    assert_eq!(
        crate::helpers::jwt_parts(body["access_token"].as_str().unwrap()).1["aud"],
        json!("https://second.example.com")
    );
}

async fn scope_rules(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.approved_client(redirect).await;
    let (_, ch) = pkce();
    let q = base_query(&client, redirect, &ch).scope("mcp:tools  bogus other");
    let p = query_of(&location(&get(&app, &app.http, &q).await));
    assert_eq!(p["error"], "invalid_scope");
    assert!(p["error_description"].contains("bogus other"), "names the unknown scopes: {p:?}");
    // No scope: the defaults. A leading space and runs of spaces are fine (claude.ai sends "+offline_access").
    for (asked, expected) in [
        (None, "mcp:tools"),
        (Some(" offline_access"), "mcp:tools offline_access"),
        (Some("mcp:admin   mcp:tools"), "mcp:admin mcp:tools"),
    ] {
        let extra: Vec<(&str, &str)> = asked.map(|s| vec![("scope", s)]).unwrap_or_default();
        let (_, body) = app.token(&app.code_for(redirect, &extra).await.redeem()).await;
        assert_eq!(body["scope"], expected, "{asked:?}");
        let claims = crate::helpers::jwt_parts(body["access_token"].as_str().unwrap()).1;
        assert_eq!(
            claims["scope"],
            expected.replace(" offline_access", ""),
            "offline_access is not for the MCP server"
        );
    }
}

async fn login_then_consent_then_code(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "http://127.0.0.1/callback";
    let client = app.public_client(redirect).await;
    let (_, ch) = pkce();
    let http = browser();
    let asked = "http://127.0.0.1:51234/callback";
    let res = get(&app, &http, &base_query(&client, asked, &ch)).await;
    assert_eq!(res.status(), 303);
    let login_url = location(&res);
    assert!(login_url.starts_with("/login?request_id="), "{login_url}");
    let page = http.get(app.url(&login_url)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:*"), "login may continue to the client: {csp}");
    let page = page.text().await.unwrap();
    assert!(
        page.contains("to use <strong class=\"name\">Example MCP</strong>"),
        "the login page names the MCP server:\n{page}"
    );
    assert!(!page.contains("Test client"), "not the app's self-chosen name:\n{page}");
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    assert_eq!(res.status(), 303);
    let next = location(&res);
    assert!(next.starts_with("/consent?request_id="), "{next}");
    let consent = http.get(app.url(&next)).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    let page = consent.text().await.unwrap();
    let res = submit_consent(&http, &app.url("/consent"), &page, "approve").await;
    assert_eq!(res.status(), 303, "never 307 after a form post");
    let loc = location(&res);
    assert!(loc.starts_with(asked), "back to the port the client asked for: {loc}");
    let p = query_of(&loc);
    assert_eq!(p["state"], "s-1");
    assert_eq!(p["iss"], app.base);
    assert!(!p["code"].is_empty());
    // The same request id cannot be approved twice.
    let again = submit_consent(&http, &app.url("/consent"), &page, "approve").await;
    assert_eq!(again.status(), 400);
}

async fn remembered_grant_skips_consent_until_more_is_asked(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let IssuedCode { client_id, browser: http, .. } = app.code_for(redirect, &[("scope", "mcp:tools")]).await;
    let (_, ch) = pkce();
    let q = base_query(&client_id, redirect, &ch).scope("mcp:tools");
    let res = get(&app, &http, &q).await;
    assert_eq!(res.status(), 302, "consent remembered: straight back with a code");
    assert!(query_of(&location(&res)).contains_key("code"));
    // Asking for more shows consent for the union, the new scope marked.
    let q = base_query(&client_id, redirect, &ch).scope("mcp:admin");
    let res = get(&app, &http, &q).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("Use the tools") && page.contains("Administer"), "the union is shown");
    let loc = app.authorize_approve(&http, &q).await;
    assert!(query_of(&loc).contains_key("code"));
    // Now both are remembered.
    let q = base_query(&client_id, redirect, &ch).scope("mcp:admin mcp:tools");
    assert_eq!(get(&app, &http, &q).await.status(), 302);
}

async fn prompt_values(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    app.add_user("bob").await;
    let redirect = "https://app.example/cb";
    let client = app.approved_client(redirect).await;
    let (_, ch) = pkce();
    // prompt=none without a session: login_required, through the redirect.
    let q = base_query(&client, redirect, &ch).with("prompt", "none");
    assert_eq!(query_of(&location(&get(&app, &app.http, &q).await))["error"], "login_required");
    // Signed in but no grant: consent_required.
    let http = browser();
    app.login(&http, "bob", PASSWORD).await;
    assert_eq!(query_of(&location(&get(&app, &http, &q).await))["error"], "consent_required");
    // With a grant, prompt=consent still asks.
    app.authorize_approve(&http, &base_query(&client, redirect, &ch)).await;
    let q = base_query(&client, redirect, &ch).with("prompt", "consent");
    assert_eq!(get(&app, &http, &q).await.status(), 200);
    // prompt=login asks to sign in again.
    let q = base_query(&client, redirect, &ch).with("prompt", "login");
    let res = get(&app, &http, &q).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).contains("/login"));
}

async fn deny_returns_access_denied(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.public_client(redirect).await;
    let (_, ch) = pkce();
    let http = browser();
    app.login(&http, "alice", PASSWORD).await;
    let page = get(&app, &http, &base_query(&client, redirect, &ch)).await.text().await.unwrap();
    let res = submit_consent(&http, &app.url("/consent"), &page, "deny").await;
    assert_eq!(res.status(), 303);
    let p = query_of(&location(&res));
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "s-1");
    assert_eq!(p["iss"], app.base);
    assert!(!p.contains_key("code"));
}

async fn forms_need_the_csrf_token(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.public_client(redirect).await;
    let (_, ch) = pkce();
    let http = browser();
    // Login without the token.
    http.get(app.url("/login")).send().await.unwrap();
    let res = http.post(app.url("/login")).form(&[("username", "alice"), ("password", PASSWORD)]).send().await.unwrap();
    assert_eq!(res.status(), 403);
    app.login(&http, "alice", PASSWORD).await;
    let page = get(&app, &http, &base_query(&client, redirect, &ch)).await.text().await.unwrap();
    let res = http
        .post(app.url("/consent"))
        .form(&[("csrf_token", "forged"), ("request_id", &hidden(&page, "request_id")), ("decision", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("location").is_none());
}

async fn login_failures(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let http = browser();
    for (user, password) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let res = app.login(&http, user, password).await;
        assert_eq!(res.status(), 401);
        let body = res.text().await.unwrap();
        assert!(body.contains("Wrong username or password."), "the same answer for both");
    }
    portcullis::admin::set_disabled(&app.db, "alice", true).await.unwrap();
    let res = app.login(&http, "alice", PASSWORD).await;
    assert_eq!(res.status(), 401);
    let events = portcullis::store::audit::list(&app.db, Some("login_failed"), 10).await.unwrap();
    assert_eq!(events.len(), 3);
    for e in events {
        assert!(!e.details.contains(PASSWORD), "no password in audit events");
    }
}

async fn consent_page_content(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "http://127.0.0.1/callback";
    let client = app.public_client(redirect).await;
    let (_, ch) = pkce();
    let http = browser();
    app.login(&http, "alice", PASSWORD).await;
    let q = base_query(&client, "http://127.0.0.1:5000/callback", &ch).scope("mcp:tools offline_access");
    let res = get(&app, &http, &q).await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    let page = res.text().await.unwrap();
    for needle in [
        "Test client",
        "nverified",
        "Example MCP",
        MCP,
        "Use the tools",
        "127.0.0.1",
        "Stay connected",
        "alice",
        "name=\"decision\" value=\"approve\"",
        "name=\"decision\" value=\"deny\"",
    ] {
        assert!(page.contains(needle), "consent page lacks {needle:?}");
    }
}

async fn post_authorize_works_like_get(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "https://app.example/cb";
    let client = app.approved_client(redirect).await;
    let (_, ch) = pkce();
    let res = app.http.post(app.url("/authorize")).form(&base_query(&client, redirect, &ch)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).contains("/login?request_id="));
    let res = app
        .http
        .post(app.url("/authorize"))
        .form(&[("response_type", "code"), ("client_id", client.as_str()), ("redirect_uri", redirect), ("state", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(query_of(&location(&res))["error"], "invalid_request");
}
