//! Two nodes on one database behave as one server: sign in and consent at node A, redeem the
//! code at node B, refresh at A; a key rotated through one node is published by the other before
//! it signs; a revocation at one is seen at the other; the clean-up job on both does the work once.

use std::time::Duration;

use portcullis::config::Seconds;
use portcullis::state::AppState;
use serde_json::Value;

use crate::helpers::{Engine, MCP, OAuthParams, PASSWORD, TestApp, browser, db_tests, jwt_parts, pkce, settings_for};

db_tests!(two_nodes_share_everything);

/// A second node on node A's database, with the same issuer, on its own port.
async fn second_node(a: &TestApp) -> (String, AppState, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = settings_for(&a.test_db.url, &a.base, addr, |c| c.key_publish_delay = Seconds(5));
    let (state, _) = AppState::start(settings).await.unwrap();
    let app = portcullis::app(state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    (format!("http://{addr}"), state, server)
}

async fn kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let set: Value = http.get(format!("{base}/jwks.json")).send().await.unwrap().json().await.unwrap();
    set["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

async fn two_nodes_share_everything(engine: Engine) {
    let a = TestApp::spawn_with(engine, "", |c| c.key_publish_delay = Seconds(5)).await.with_defaults().await;
    let (b, b_state, b_server) = second_node(&a).await;
    let redirect = "https://app.example/cb";

    // Sign in and consent through A; redeem the code at B.
    let issued = a.code_for(redirect, &[("resource", MCP)]).await;
    let client_id = issued.client_id.as_str();
    let res = a.http.post(format!("{b}/token")).form(&issued.redeem()).send().await.unwrap();
    assert_eq!(res.status(), 200, "a code issued by A is redeemed at B");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(jwt_parts(tokens["access_token"].as_str().unwrap()).1["iss"], Value::from(a.base.clone()));

    // A session made at A works at B (sessions live in the database).
    let http = browser();
    a.login(&http, "alice", PASSWORD).await;
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(client_id, redirect, &challenge);
    let res = http.get(format!("{b}/authorize")).query(&q).send().await.unwrap();
    assert_eq!(res.status(), 302, "consent given at A is remembered at B");

    // Refresh at A the token B issued (and rotation seen everywhere).
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, rotated) = a.token(&OAuthParams::refresh(client_id, refresh)).await;
    assert_eq!(status, 200, "{rotated}");

    // A key rotated through B is published by A before it signs.
    let settings = portcullis::state::key_settings(&b_state.settings);
    let new_key = portcullis::tokens::keys::rotate(&b_state.db, &settings, portcullis::store::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await; // nodes reload keys every second in tests
    assert!(kids(&a.http, &a.base).await.contains(&new_key.kid), "A publishes the key B rotated in");
    let (_, fresh) = a.token(&OAuthParams::refresh(client_id, rotated["refresh_token"].as_str().unwrap())).await;
    assert_ne!(
        jwt_parts(fresh["access_token"].as_str().unwrap()).0["kid"],
        Value::from(new_key.kid.clone()),
        "not signing yet"
    );
    let wait = (new_key.activates_at - portcullis::store::now()).max(0) as u64 * 1000 + 1200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (_, later) = a.token(&OAuthParams::refresh(client_id, fresh["refresh_token"].as_str().unwrap())).await;
    assert_eq!(
        jwt_parts(later["access_token"].as_str().unwrap()).0["kid"],
        Value::from(new_key.kid.clone()),
        "A signs with it once active"
    );
    assert!(kids(&a.http, &b).await.contains(&new_key.kid));

    // Revocation at B is seen at A.
    let res = a
        .http
        .post(format!("{b}/revoke"))
        .form(&[("token", later["refresh_token"].as_str().unwrap()), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, body) = a.token(&OAuthParams::refresh(client_id, later["refresh_token"].as_str().unwrap())).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let creds = portcullis::admin::issue_introspection_credentials(&a.db, MCP).await.unwrap();
    let res = a
        .http
        .post(format!("{b}/introspect"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[("token", later["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], false, "B knows the grant A's revocation killed");

    // The clean-up job on both nodes at once deletes each stale client once.
    for _ in 0..5 {
        a.public_client(redirect).await;
    }
    let now = portcullis::store::now() + 10 * 86_400;
    let (x, y) = tokio::join!(
        portcullis::jobs::clean_up_clients(&a.db, now, 86_400, 90 * 86_400),
        portcullis::jobs::clean_up_clients(&b_state.db, now, 86_400, 90 * 86_400),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut all: Vec<_> = x.iter().chain(y.iter()).cloned().collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no client deleted twice");
    assert!(n >= 5, "the unused clients went: {n}");
    b_server.abort();
}
