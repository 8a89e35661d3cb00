//! What people read on the pages (issue 19): the consent page's order and wording, step-up,
//! the login page, the operator's brand, the account page, error pages, sign-out, the landing
//! page, and the stylesheet's custom properties.

use crate::helpers::{
    Engine, MCP, OAuthParams, PASSWORD, TestApp, browser, count_rows, db_tests, hidden, location, pkce, submit_consent,
};

db_tests!(
    consent_leads_with_what_is_granted_and_names_an_unverified_app_once,
    step_up_says_more_access_and_lists_new_permissions_first,
    login_names_the_mcp_server_and_the_operator_brand,
    account_page_history_revoke_notice_and_password_errors,
    error_pages_speak_to_people_with_detail_and_request_id,
    sign_out_and_landing_page_have_ways_on,
);

const LOOPBACK: &str = "http://127.0.0.1/callback";

/// The consent page for `client_id` and `scope`, alice signed in on `http`.
async fn consent_page(app: &TestApp, http: &reqwest::Client, client_id: &str, scope: &str) -> String {
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(client_id, LOOPBACK, &challenge).scope(scope).state("s");
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    assert_eq!(res.status(), 200, "a consent page");
    res.text().await.unwrap()
}

fn at(page: &str, needle: &str) -> usize {
    page.find(needle).unwrap_or_else(|| panic!("{needle:?} not on the page:\n{page}"))
}

async fn consent_leads_with_what_is_granted_and_names_an_unverified_app_once(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let long = format!("Totally Official Assistant {}", "x".repeat(80));
    let c = app
        .register(serde_json::json!({
            "redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "none", "client_name": long,
        }))
        .await;
    let client_id = c["client_id"].as_str().unwrap();
    let http = browser();
    app.login(&http, "alice", PASSWORD).await;
    let page = consent_page(&app, &http, client_id, "openid email mcp:tools").await;

    // The heading says what was verified (nothing), not the app's name.
    assert!(page.contains("<h1>Allow an unverified app to use Example MCP?</h1>"), "{page}");
    // The name appears once, quoted, shortened to 40 characters.
    assert_eq!(page.matches("Totally Official Assistant").count(), 1, "{page}");
    let shown = format!("“{}…”", long.chars().take(39).collect::<String>());
    assert!(page.contains(&shown), "{page}");
    assert!(!page.contains(&"x".repeat(20)), "the long name is cut");
    // OpenID scopes in words, the same as on /account.
    assert!(page.contains("Confirm who you are") && page.contains("See your email address"), "{page}");
    // Order: heading, what it can do, app / MCP server / return host, one caution, the buttons.
    let order = [
        at(&page, "<h1>"),
        at(&page, "It will be able to"),
        at(&page, "Use the tools"),
        at(&page, "<dt>App</dt>"),
        at(&page, "<dt>MCP server</dt>"),
        at(&page, "<dt>Sends you back to</dt>"),
        at(&page, "on this computer"),
        at(&page, "value=\"approve\""),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order {order:?}:\n{page}");
    // A desktop app that registered itself is the ordinary case: one muted caution, no amber box.
    assert!(!page.contains("alert-warn"), "amber is for the unusual:\n{page}");
    assert_eq!(page.matches("class=\"caution").count(), 1, "{page}");
    // One verb; how long access lasts and where to remove it; the form contract is unchanged.
    assert!(page.contains("value=\"approve\">Allow</button>") && !page.contains("Approve"), "{page}");
    assert!(page.contains("value=\"deny\">Deny</button>"), "{page}");
    assert!(page.contains("Access lasts until you remove it in <a href=\"/account\">Connected apps</a>"), "{page}");
    let res = submit_consent(&http, &app.url("/consent"), &page, "approve").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with(LOOPBACK), "{}", location(&res));

    // The unusual gets the amber box: a return address that is a bare internet address.
    let bare = "https://203.0.113.7/cb";
    let client_id = app.public_client(bare).await;
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(&client_id, bare, &challenge).state("s");
    let page = http.get(app.url("/authorize")).query(&q).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<div class=\"alert alert-warn caution\" role=\"note\">"), "{page}");
    assert!(page.contains("203.0.113.7, a bare network address"), "{page}");
    assert_eq!(page.matches("class=\"caution").count() + page.matches("alert-warn caution").count(), 1, "one caution");
}

async fn step_up_says_more_access_and_lists_new_permissions_first(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client(LOOPBACK).await;
    let issued = app.code_for_client(&client_id, LOOPBACK, &[("scope", "mcp:tools")]).await;
    let page = consent_page(&app, &issued.browser, &client_id, "mcp:admin").await;
    assert!(page.contains("<h1>An unverified app wants more access to Example MCP</h1>"), "{page}");
    assert!(page.contains("It would also be able to"), "{page}");
    assert!(at(&page, "Administer") < at(&page, "Already allowed"), "new first:\n{page}");
    assert!(at(&page, "Already allowed") < at(&page, "Use the tools"), "the kept ones after, muted:\n{page}");
    assert!(page.contains("class=\"scopes scopes-kept\""), "{page}");
    let res = submit_consent(&issued.browser, &app.url("/consent"), &page, "approve").await;
    assert_eq!(res.status(), 303);
}

async fn login_names_the_mcp_server_and_the_operator_brand(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.brand_name = Some("Example Corp".into());
        c.brand_logo_url = Some("https://cdn.example.com/logo.png".into());
    })
    .await
    .with_defaults()
    .await;
    let client_id = app.public_client(LOOPBACK).await;
    let http = browser();
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(&client_id, LOOPBACK, &challenge).resource(MCP);
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    let res = http.get(app.url(&location(&res))).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("img-src 'self' data: https://cdn.example.com;"), "the logo's origin is allowed: {csp}");
    assert!(csp.contains("form-action 'self' http://127.0.0.1:*"), "and the login form may still continue: {csp}");
    let page = res.text().await.unwrap();
    assert!(page.contains("<title>Sign in · Example Corp</title>"), "{page}");
    assert!(page.contains("<span class=\"brand-name\">Example Corp</span>"), "{page}");
    assert!(page.contains("<img class=\"brand-logo\" src=\"https://cdn.example.com/logo.png\""), "{page}");
    assert!(
        page.contains("to use <strong class=\"name\">Example MCP</strong> with your Example Corp account"),
        "{page}"
    );
    assert!(!page.contains("Test client"), "the app's own name is for the consent page:\n{page}");
    assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""), "the form contract");
    // Every page carries the brand, the error page included.
    let res = http.get(app.url("/authorize")).query(&[("client_id", "nobody")]).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("<span class=\"brand-name\">Example Corp</span>"));
}

async fn account_page_history_revoke_notice_and_password_errors(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let issued = app.code_for(LOOPBACK, &[("scope", "mcp:tools")]).await;
    let http = issued.browser;
    let page = http.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let today = time::OffsetDateTime::now_utc();
    let month = &format!("{:?}", today.month())[..3];
    let approved = format!("Approved {} {month} {} · not used yet", today.day(), today.year());
    assert!(page.contains(&approved), "{approved:?}:\n{page}");
    assert!(page.contains("“Test client”"), "a self-chosen name is quoted:\n{page}");

    // The revoke notice names the app and the MCP server.
    let grant_id = hidden(&page, "grant_id");
    let res = http
        .post(app.url("/account/revoke"))
        .form(&[("csrf_token", hidden(&page, "csrf_token")), ("grant_id", grant_id.clone())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), format!("/account?revoked={grant_id}"));
    let after = http.get(app.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Access revoked: “Test client” can no longer use Example MCP."), "{after}");
    // Someone else's (or a made-up) id in the address bar names nothing.
    let other = http.get(app.url("/account?revoked=00000000-0000-0000-0000-000000000000")).send().await.unwrap();
    let other = other.text().await.unwrap();
    assert!(other.contains("Access revoked. The app must ask you again") && !other.contains("“Test client”"));

    // A refused password change: the message beside the form, the wrong field marked, nothing written.
    let audit_before = count_rows(&app.db, "audit_events").await;
    let res = http
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", hidden(&page, "csrf_token")),
            ("current_password", PASSWORD.to_string()),
            ("new_password", "new password 1".to_string()),
            ("confirm_password", "different 1".to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    let form = at(&page, "id=\"password-change\"");
    assert!(at(&page, "The new passwords do not match.") > form, "the error is beside the form:\n{page}");
    assert!(page.contains("action=\"/account/password#password-change\""), "the answer scrolls to the form");
    let confirm = &page[at(&page, "id=\"confirm_password\"")..];
    let confirm = &confirm[..confirm.find('>').unwrap()];
    assert!(confirm.contains("aria-invalid=\"true\"") && confirm.contains("aria-describedby=\"password-error\""));
    let current = &page[at(&page, "id=\"current_password\"")..];
    assert!(!current[..current.find('>').unwrap()].contains("aria-invalid"), "only the wrong field is marked");
    assert_eq!(count_rows(&app.db, "audit_events").await, audit_before, "a refused change writes nothing");
    assert_eq!(app.login(&browser(), "alice", PASSWORD).await.status(), 200, "the password is unchanged");
}

async fn error_pages_speak_to_people_with_detail_and_request_id(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client("https://app.example/cb").await;
    let (_, challenge) = pkce();
    let http = browser();
    let q = OAuthParams::authorize(&client_id, "https://evil.example/cb", &challenge);
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let page = res.text().await.unwrap();
    // The person's sentence first; the developer's detail, the code and the request id after, smaller.
    assert!(page.contains("The app that sent you here asked in a way this server does not accept."), "{page}");
    let details = at(&page, "class=\"error-details\"");
    assert!(at(&page, "The redirect_uri is not registered for this client") > details, "{page}");
    assert!(at(&page, "<code>invalid_request</code>") > details, "{page}");
    assert!(page.contains(&format!("<code class=\"request-id\">{request_id}</code>")), "{request_id}:\n{page}");
    assert_eq!(count_rows(&app.db, "grants").await, 0, "nothing written");
}

async fn sign_out_and_landing_page_have_ways_on(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    // A visitor: what this is, sign in, where the docs are; no session is created for them.
    let http = browser();
    let sessions_before = count_rows(&app.db, "web_sessions").await;
    let res = http.get(app.url("/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none(), "a visitor gets no session");
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Sign-in for MCP servers</h1>"), "{page}");
    assert!(page.contains("href=\"/login?next=account\""), "{page}");
    assert!(page.contains("For operators") && page.contains("README.md"), "{page}");
    assert!(page.contains("href=\"/.well-known/oauth-authorization-server\""), "{page}");
    assert_eq!(count_rows(&app.db, "web_sessions").await, sessions_before);

    // Signed in: the connected apps and sign-out.
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let page = http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Signed in as <strong class=\"name\">alice</strong>"), "{page}");
    assert!(page.contains("href=\"/account\">Connected apps</a>"), "{page}");

    // The sign-out question has a way back; signed out, a way to sign in again.
    let page = http.get(app.url("/logout")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("href=\"/account\">Stay signed in"), "{page}");
    let res = http.post(app.url("/logout")).form(&[("csrf_token", hidden(&page, "csrf_token"))]).send().await.unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains("You are signed out"), "{page}");
    assert!(page.contains("href=\"/login?next=account\">Sign in again</a>"), "{page}");
    assert!(page.contains("href=\"/\">Home</a>"), "{page}");

    // Under a path issuer the landing page is the issuer itself, with or without the slash.
    let app = TestApp::spawn_with(Engine::Sqlite, "/tenant1", |_| {}).await;
    for path in ["", "/"] {
        let res = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path:?}");
        assert!(res.text().await.unwrap().contains("href=\"/tenant1/login?next=account\""));
    }
}

/// Every `var(--name)` the stylesheet uses is defined in the light palette and, when the dark
/// palette overrides colours, there too (an undefined one silently falls back, e.g. in dark mode).
#[test]
fn stylesheet_custom_properties_are_defined_in_both_palettes() {
    let css = include_str!("../../static/style.css");
    let dark_start = css.find("@media (prefers-color-scheme: dark)").expect("a dark palette");
    let (light, dark) = (&css[..dark_start], &css[dark_start..]);
    let dark = &dark[..dark.find("\n}\n").expect("end of the dark palette")];
    let defined = |block: &str| -> Vec<String> {
        block.split("--").skip(1).filter_map(|s| s.split_once(':').map(|(n, _)| n.trim().to_string())).collect()
    };
    let (light_names, dark_names) = (defined(light), defined(dark));
    let used: Vec<&str> = css.split("var(--").skip(1).filter_map(|s| s.split([')', ',']).next()).collect();
    assert!(used.contains(&"info-border"));
    for name in used {
        assert!(light_names.iter().any(|n| n == name), "--{name} is used but not defined");
        let colour = !matches!(name, "radius" | "radius-sm" | "font" | "mono");
        assert!(!colour || dark_names.iter().any(|n| n == name), "--{name} has no dark-mode value");
    }
}
