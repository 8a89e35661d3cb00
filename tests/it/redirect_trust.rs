//! No open redirector (RFC 9700 §4.11.2; the round-two review's item 4): errors found before any
//! interaction are redirected automatically only to redirect URIs the server trusts, those of
//! pre-registered clients and those a person approved for the client on the consent page. Any
//! other gets the error on a page with the way back as a link the person may choose to follow.

use portcullis::config::ClientConfig;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, OAuthParams, PASSWORD, TestApp, browser, count_rows, db_tests, location, pkce, query_of};

db_tests!(
    an_unapproved_redirect_gets_a_page_with_a_link,
    a_person_approving_the_client_makes_its_redirect_trusted,
    pre_registered_clients_are_trusted,
);

const REDIRECT: &str = "https://app.example/cb";

/// An authorization request whose scope is unknown: an error found before any interaction.
fn bad_scope(client_id: &str, redirect: &str) -> OAuthParams {
    let (_, challenge) = pkce();
    OAuthParams::authorize(client_id, redirect, &challenge).scope("no-such-scope").state("st-9")
}

async fn get(app: &TestApp, http: &reqwest::Client, q: &OAuthParams) -> reqwest::Response {
    http.get(app.url("/authorize")).query(q).send().await.unwrap()
}

/// The error page for an untrusted redirect: 400, no `Location`, the error code, and a link to the
/// error response (with `state` and `iss`) naming the host.
async fn assert_page_with_link(res: reqwest::Response, code: &str, host: &str) {
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none(), "redirected to {:?}", res.headers().get("location"));
    let page = res.text().await.unwrap();
    assert!(page.contains(&format!("<code>{code}</code>")), "{page}");
    assert!(page.contains(&format!("Return to {host}")), "{page}");
    let href = page.split("href=\"").find(|h| h.starts_with("https://") || h.starts_with("http://127")).unwrap();
    let href = unescape(href.split('"').next().unwrap());
    let p = query_of(&href);
    assert_eq!((p["error"].as_str(), p["state"].as_str()), (code, "st-9"), "{href}");
    assert!(p.contains_key("iss"));
}

/// An attribute value as the page's HTML escaping wrote it (`&amp;`, `&#38;`, `&#x2f;` ...).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let entity_end = rest[i..].find(';').map(|j| i + j).expect("an entity");
        let c = match &rest[i + 1..entity_end] {
            "amp" => '&',
            "quot" => '"',
            "lt" => '<',
            "gt" => '>',
            e if e.starts_with("#x") => char::from_u32(u32::from_str_radix(&e[2..], 16).unwrap()).unwrap(),
            e if e.starts_with('#') => char::from_u32(e[1..].parse().unwrap()).unwrap(),
            e => panic!("unknown entity {e}"),
        };
        out.push(c);
        rest = &rest[entity_end + 1..];
    }
    out + rest
}

async fn an_unapproved_redirect_gets_a_page_with_a_link(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client = app.public_client(REDIRECT).await;
    let before = (count_rows(&app.db, "authorization_codes").await, count_rows(&app.db, "approved_redirects").await);
    assert_page_with_link(get(&app, &app.http, &bad_scope(&client, REDIRECT)).await, "invalid_scope", "app.example")
        .await;
    // prompt=none answers before any interaction too.
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(&client, REDIRECT, &challenge).state("st-9").with("prompt", "none");
    assert_page_with_link(get(&app, &app.http, &q).await, "login_required", "app.example").await;
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    assert_page_with_link(get(&app, &http, &q).await, "consent_required", "app.example").await;
    assert_eq!(
        (count_rows(&app.db, "authorization_codes").await, count_rows(&app.db, "approved_redirects").await),
        before,
        "nothing written"
    );
}

async fn a_person_approving_the_client_makes_its_redirect_trusted(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let loopback = "http://127.0.0.1/callback";
    let reg =
        app.register(json!({ "redirect_uris": [REDIRECT, loopback], "token_endpoint_auth_method": "none" })).await;
    let client = reg["client_id"].as_str().unwrap();
    // alice approves it through the loopback URI on one port...
    app.code_for_client(client, "http://127.0.0.1:51234/callback", &[]).await;
    assert_eq!(count_rows(&app.db, "approved_redirects").await, 1);
    // ...so its errors go back there, whatever the port (the registered form was approved).
    let res = get(&app, &app.http, &bad_scope(client, "http://127.0.0.1:40000/callback")).await;
    assert_eq!(res.status(), 302);
    let loc = location(&res);
    assert!(loc.starts_with("http://127.0.0.1:40000/callback?"), "{loc}");
    assert_eq!(query_of(&loc)["error"], "invalid_scope");
    // The other registered URI was never approved: still a page.
    assert_page_with_link(get(&app, &app.http, &bad_scope(client, REDIRECT)).await, "invalid_scope", "app.example")
        .await;
    // Denying records nothing.
    let http = browser();
    app.login(&http, "alice", PASSWORD).await;
    let (_, challenge) = pkce();
    let page = get(&app, &http, &OAuthParams::authorize(client, REDIRECT, &challenge).scope("mcp:admin"))
        .await
        .text()
        .await
        .unwrap();
    let res = crate::helpers::submit_consent(&http, &app.url("/consent"), &page, "deny").await;
    assert_eq!(query_of(&location(&res))["error"], "access_denied", "a denial after interaction is redirected");
    assert_eq!(count_rows(&app.db, "approved_redirects").await, 1);
    // A redirect URI swapped in later through RFC 7592 was never approved: a page again.
    let token = reg["registration_access_token"].as_str().unwrap();
    let mut update = reg.clone();
    for k in ["registration_access_token", "registration_client_uri", "client_id_issued_at", "client_secret_expires_at"]
    {
        update.as_object_mut().unwrap().remove(k);
    }
    update["redirect_uris"] = json!(["https://elsewhere.example/cb", loopback]);
    let res = app
        .http
        .request(Method::PUT, reg["registration_client_uri"].as_str().unwrap())
        .bearer_auth(token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.json::<Value>().await);
    let res = get(&app, &app.http, &bad_scope(client, "https://elsewhere.example/cb")).await;
    assert_page_with_link(res, "invalid_scope", "elsewhere.example").await;
}

async fn pre_registered_clients_are_trusted(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| {
        c.clients = vec![ClientConfig {
            client_id: "declared-app".into(),
            name: "Declared app".into(),
            redirect_uris: vec![REDIRECT.into()],
            client_secret: None,
            grant_types: None,
            jwks: None,
            jwks_uri: None,
            resources: vec![],
            dpop_bound_access_tokens: false,
        }]
    })
    .await
    .with_defaults()
    .await;
    let res = get(&app, &app.http, &bad_scope("declared-app", REDIRECT)).await;
    assert_eq!(res.status(), 302);
    let p = query_of(&location(&res));
    assert_eq!((p["error"].as_str(), p["state"].as_str()), ("invalid_scope", "st-9"));
}
