//! Signing out against a request in flight (the round-two review's item 14). The session layer
//! loads a session when a request starts and saves it when the request ends; a save that
//! re-inserted a deleted session let a request started before a sign-out bring the signed-in
//! session back (and send its cookie again). Here the request in flight is an `/authorize` held
//! at the fetch of a metadata document, released after the sign-out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::helpers::{
    Engine, OAuthParams, PASSWORD, TestApp, TlsTestServer, browser, db_tests, hidden, pkce, read_request_head,
};

db_tests!(a_request_in_flight_cannot_undo_a_sign_out);

/// A metadata-document server that answers each request only when the test releases a permit.
struct HeldDocument {
    server: TlsTestServer,
    arrived: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

async fn held_document() -> HeldDocument {
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (a, r) = (arrived.clone(), release.clone());
    let server = TlsTestServer::start("Portcullis session test CA", move |stream, acceptor, port| {
        let (arrived, release) = (a.clone(), r.clone());
        async move {
            let Ok(mut tls) = acceptor.accept(stream).await else { return };
            if read_request_head(&mut tls).await.is_none() {
                return;
            }
            arrived.fetch_add(1, Ordering::SeqCst);
            let Ok(permit) = release.acquire().await else { return };
            permit.forget();
            let client_id = format!("https://localhost:{port}/client.json");
            let body = json!({
                "client_id": client_id,
                "client_name": "Held app",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none"
            })
            .to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = tls.write_all(head.as_bytes()).await;
            let _ = tls.write_all(body.as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    })
    .await;
    HeldDocument { server, arrived, release }
}

async fn a_request_in_flight_cannot_undo_a_sign_out(engine: Engine) {
    let doc = held_document().await;
    let ca = doc.server.ca_file.path().to_owned();
    let app = TestApp::spawn_with(engine, "", move |c| {
        c.cimd_test_ca_file = Some(ca);
        c.cimd_test_allow_loopback = true;
    })
    .await
    .with_defaults()
    .await;
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let account = http.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200, "signed in");
    let csrf = hidden(&account.text().await.unwrap(), "csrf_token");

    // An authorization request starts with alice's session loaded, and waits for the document.
    let client_id = format!("https://localhost:{}/client.json", doc.server.port);
    let (_, challenge) = pkce();
    let query = OAuthParams::authorize(&client_id, "http://127.0.0.1:5000/callback", &challenge);
    let in_flight = tokio::spawn({
        let (http, url) = (http.clone(), app.url("/authorize"));
        async move { http.get(url).query(&query).send().await.unwrap().status().as_u16() }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while doc.arrived.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "the document was never fetched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // She signs out meanwhile.
    let res = http.post(app.url("/logout")).form(&[("csrf_token", csrf.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(crate::helpers::count_rows(&app.db, "web_sessions").await, 0, "signed out");
    // The request finishes (it parks the request in the session it loaded: a change to save).
    doc.release.add_permits(10);
    assert_eq!(in_flight.await.unwrap(), 200, "the consent page");
    // Her browser, which that response may have given the old cookie back, is signed out.
    let res = http.get(app.url("/account")).send().await.unwrap();
    assert_eq!(res.status(), 303, "the signed-in session came back after signing out");
    assert!(res.headers()["location"].to_str().unwrap().starts_with("/login"));
}
