//! Hosted clients behind shared addresses (the round-two review's "real clients"): claude.ai,
//! ChatGPT and the like call `/token` for all of a company's people from a handful of addresses.
//! Under the default configuration, 2,000 refreshes from one address spread over 100 clients are
//! all served (the per-address limit, 600 a minute, counts failed requests; served ones count
//! against their client); failures from the address still meet the address limit.

use std::time::Instant;

use portcullis::oauth::client_metadata::ClientMetadata;
use portcullis::store::clients::{self, ClientKind, NewClient};
use serde_json::{Value, json};

use crate::helpers::{Engine, OAuthParams, PASSWORD, TestApp, authorize_approve_at, browser, db_tests, pkce, query_of};

db_tests!(two_thousand_refreshes_from_one_address_over_100_clients_are_served);

const REDIRECT: &str = "https://hosted.example/callback";
const CLIENTS: usize = 100;
const REFRESHES_EACH: usize = 20;

/// A dynamic client as a hosted client registers one (made in the store: registering 100 from one
/// address is limited too, and is not what this test measures).
async fn hosted_client(app: &TestApp, n: usize) -> String {
    let id = format!("hosted-{n}");
    let metadata = ClientMetadata::from_request(&json!({
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": format!("Hosted connector {n}"),
    }))
    .expect("metadata");
    let new = NewClient {
        client_id: id.clone(),
        kind: ClientKind::Dynamic,
        client_name: metadata.client_name.clone(),
        metadata: Value::Object(metadata.to_json()),
        secret_hash: None,
        registration_token_hash: None,
        metadata_expires_at: None,
        registered_ip: None,
    };
    clients::create(&app.db, &new, portcullis::store::now()).await.expect("create client");
    id
}

async fn two_thousand_refreshes_from_one_address_over_100_clients_are_served(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let http = browser();
    assert_eq!(app.login(&http, "alice", PASSWORD).await.status(), 200);
    let mut families = Vec::new();
    for n in 0..CLIENTS {
        let client_id = hosted_client(&app, n).await;
        let (verifier, challenge) = pkce();
        let loc =
            authorize_approve_at(&http, &app.base, &OAuthParams::authorize(&client_id, REDIRECT, &challenge)).await;
        let code = query_of(&loc).remove("code").unwrap_or_else(|| panic!("no code in {loc}"));
        let (status, body) = app.token(&OAuthParams::code(&client_id, &code, &verifier)).await;
        assert_eq!(status, 200, "{body}");
        families.push((client_id, body["refresh_token"].as_str().expect("refresh_token").to_string()));
    }
    // Every client refreshes 20 times in a row; the clients run side by side, all from 127.0.0.1.
    let started = Instant::now();
    let lanes = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let chains: Vec<_> = families
        .into_iter()
        .map(|(client_id, mut refresh)| {
            let (http, url, lanes) = (app.http.clone(), app.url("/token"), lanes.clone());
            tokio::spawn(async move {
                let _lane = lanes.acquire_owned().await.unwrap();
                let mut statuses = Vec::new();
                for _ in 0..REFRESHES_EACH {
                    let res = http.post(&url).form(&OAuthParams::refresh(&client_id, &refresh)).send().await.unwrap();
                    statuses.push(res.status().as_u16());
                    let body: Value = res.json().await.unwrap_or(Value::Null);
                    match body["refresh_token"].as_str() {
                        Some(next) => refresh = next.to_string(),
                        None => break,
                    }
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for chain in chains {
        statuses.push(chain.await.unwrap());
    }
    let elapsed = started.elapsed();
    let all: Vec<u16> = statuses.into_iter().flatten().collect();
    let served = all.iter().filter(|s| **s == 200).count();
    eprintln!("{served} of {} refreshes served in {elapsed:?} ({engine:?})", CLIENTS * REFRESHES_EACH);
    assert_eq!(
        served,
        CLIENTS * REFRESHES_EACH,
        "refused: {:?}",
        all.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    // Failures from the same address still meet the per-address limit (600 a minute).
    // Twice the limit plus one: the limit counts per minute window, and a run that straddles a
    // window's end still puts more than 600 into one of the two.
    let mut last = 0;
    for _ in 0..1201 {
        let res = app.http.post(app.url("/token")).form(&OAuthParams::refresh("hosted-0", "not-a-token")).send();
        last = res.await.unwrap().status().as_u16();
        if last == 429 {
            break;
        }
        assert_eq!(last, 400);
    }
    assert_eq!(last, 429, "600 failures a minute from one address are not limited");
}
