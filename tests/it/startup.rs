//! Start-up: resources and clients declared in the config file, the first admin, signing keys
//! (rotation publishes before signing; encrypted keys need their secret).

use std::time::Duration;

use portcullis::config::{ClientConfig, ResourceConfig, ScopeConfig, Seconds, Secret};
use portcullis::state::AppState;
use serde_json::Value;

use crate::helpers::{Engine, MCP, TestApp, TestDb, db_tests, jwt_parts, settings_for};

db_tests!(
    config_declared_resources_and_clients_apply_idempotently,
    first_start_creates_admin_once,
    rotated_key_is_published_before_it_signs,
    encrypted_keys_need_their_secret,
    keys_sealed_the_old_way_are_read_and_resealed,
);

fn declared(c: &mut portcullis::config::Config) {
    c.resources = vec![ResourceConfig {
        uri: "HTTPS://Declared.Example.com/".into(),
        name: "Declared".into(),
        token_lifetime: Some(Seconds(120)),
        scopes: vec![ScopeConfig { name: "d:read".into(), description: "Read".into(), default: true, groups: vec![] }],
        allowed_groups: vec![],
    }];
    c.clients = vec![ClientConfig {
        client_id: "agent-1".into(),
        name: "Agent".into(),
        redirect_uris: vec!["http://127.0.0.1/callback".into()],
        client_secret: Some(Secret::new("s".repeat(40))),
        ..Default::default()
    }];
}

async fn config_declared_resources_and_clients_apply_idempotently(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", declared).await;
    let r = portcullis::store::resources::by_uri(&app.db, "https://declared.example.com")
        .await
        .unwrap()
        .expect("canonical URI stored");
    assert_eq!(r.row.token_lifetime, Some(120));
    let c = portcullis::store::clients::get(&app.db, "agent-1").await.unwrap().expect("client applied");
    assert!(c.secret_hash.is_some());
    // Applying the same config again (a restart, another node) changes nothing and fails nothing.
    portcullis::admin::apply_config(&app.db, &app.state.settings).await.unwrap();
    assert_eq!(portcullis::store::resources::list(&app.db).await.unwrap().len(), 1);
    assert_eq!(portcullis::store::clients::list(&app.db).await.unwrap().len(), 1);
    let doc: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert!(doc["scopes_supported"].as_array().unwrap().contains(&"d:read".into()));
    // A bad declaration refuses to start and writes nothing.
    let bad = TestDb::new(engine).await;
    let settings = settings_for(&bad.url, "http://127.0.0.1:1", "127.0.0.1:1".parse().unwrap(), |c| {
        declared(c);
        c.clients[0].redirect_uris = vec!["javascript:alert(1)".into()];
    });
    assert!(AppState::start(settings).await.is_err());
    let db = bad.connect().await;
    assert!(portcullis::store::resources::list(&db).await.unwrap().is_empty(), "nothing half-applied");
}

async fn first_start_creates_admin_once(engine: Engine) {
    let t = TestDb::new(engine).await;
    let settings =
        settings_for(&t.url, "http://127.0.0.1:1", "127.0.0.1:1".parse().unwrap(), |c| c.bootstrap_admin = true);
    let (_, started) = AppState::start(settings.clone()).await.unwrap();
    let password = started.admin_password.expect("a password on first start");
    assert!(password.len() >= 16);
    let (state, again) = AppState::start(settings).await.unwrap();
    assert!(again.admin_password.is_none(), "only once");
    let admin = portcullis::store::users::by_username(&state.db, "admin").await.unwrap().unwrap();
    assert!(portcullis::users::password::verify_blocking(&password, &admin.password_hash));
}

async fn rotated_key_is_published_before_it_signs(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.key_publish_delay = Seconds(6)).await.with_defaults().await;
    let jwks = |app: &TestApp| {
        let (http, url) = (app.http.clone(), app.url("/jwks.json"));
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap()["keys"].as_array().unwrap().clone() }
    };
    let before = jwks(&app).await;
    assert_eq!(before.len(), 1);
    let old_kid = before[0]["kid"].as_str().unwrap().to_string();
    let settings = portcullis::state::key_settings(&app.state.settings);
    let new = portcullis::tokens::keys::rotate(&app.db, &settings, portcullis::store::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await; // the key cache refreshes every second in tests
    let published = jwks(&app).await;
    assert_eq!(published.len(), 2, "the new key is published at once");
    assert!(published.iter().any(|k| k["kid"] == new.kid.as_str()));
    let token = access_token(&app).await;
    assert_eq!(jwt_parts(&token).0["kid"], old_kid.as_str(), "but does not sign yet");
    // Wait until the new key's activation has passed (plus the one-second key cache).
    let wait = (new.activates_at - portcullis::store::now()).max(0) as u64 * 1000 + 1200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let token = access_token(&app).await;
    assert_eq!(jwt_parts(&token).0["kid"], new.kid.as_str(), "after the delay it signs");
    let kids: Vec<_> = jwks(&app).await.iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect();
    assert!(kids.contains(&old_kid), "the old key stays published while its tokens live");
}

async fn access_token(app: &TestApp) -> String {
    let redirect = "https://app.example/cb";
    let (status, body) = app.token(&app.code_for(redirect, &[]).await.redeem().resource(MCP)).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

async fn encrypted_keys_need_their_secret(engine: Engine) {
    let t = TestDb::new(engine).await;
    let with = |secret: Option<&str>| {
        settings_for(&t.url, "http://127.0.0.1:1", "127.0.0.1:1".parse().unwrap(), |c| {
            c.key_encryption_secret = secret.map(Secret::new);
        })
    };
    AppState::start(with(Some("first-secret-0123456789"))).await.unwrap();
    let db = t.connect().await;
    let keys = portcullis::store::keys::list(&db).await.unwrap();
    assert!(keys[0].encrypted, "stored encrypted");
    let err = AppState::start(with(None)).await.err().expect("refuses without the secret").to_string();
    assert!(err.contains("key_encryption_secret"), "{err}");
    let err = AppState::start(with(Some("another-secret-0123456789")))
        .await
        .err()
        .expect("refuses a wrong secret")
        .to_string();
    assert!(err.contains("wrong key_encryption_secret"), "{err}");
}

/// Review item 12: keys sealed under an unsalted SHA-256 of the secret (and keys stored in clear
/// before a secret was set) still load, and start-up re-seals them under argon2id with a salt.
async fn keys_sealed_the_old_way_are_read_and_resealed(engine: Engine) {
    use portcullis::tokens::seal;
    const LABEL: &str = "portcullis signing key v1";
    const SECRET: &str = "operator-secret-0123456789";
    let t = TestDb::new(engine).await;
    let with = |secret: Option<&str>| {
        settings_for(&t.url, "http://127.0.0.1:1", "127.0.0.1:1".parse().unwrap(), |c| {
            c.key_encryption_secret = secret.map(Secret::new);
            c.key_publish_delay = Seconds(0);
        })
    };
    // Two keys in clear; the first then sealed the way versions before this one did.
    AppState::start(with(None)).await.unwrap();
    let db = t.connect().await;
    let settings = portcullis::state::key_settings(&with(None));
    portcullis::tokens::keys::rotate(&db, &settings, portcullis::store::now() - 10).await.unwrap();
    let before = portcullis::store::keys::list(&db).await.unwrap();
    assert_eq!(before.len(), 2);
    let der = before[0].private_key.clone();
    let old = seal::seal(LABEL, SECRET.as_bytes(), &der);
    assert!(portcullis::store::keys::reseal(&db, &before[0].kid, &der, &old).await.unwrap());

    let (state, _) = AppState::start(with(Some(SECRET))).await.expect("old-format keys load");
    let after = portcullis::store::keys::list(&db).await.unwrap();
    assert_eq!(after.len(), 2, "no key added or lost");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a.kid, b.kid);
        assert!(a.encrypted, "{} sealed", a.kid);
        assert!(a.private_key.starts_with(b"PCK2"), "{} re-sealed in the salted format", a.kid);
        // Neither the old derivation nor the clear text opens it any more.
        assert!(seal::open(LABEL, SECRET.as_bytes(), &a.private_key).is_err());
        assert_ne!(a.private_key, der);
    }
    let keys = seal::PassphraseKeys::default();
    let (opened, format) = seal::open_under_passphrase(&keys, LABEL, SECRET.as_bytes(), &after[0].private_key).unwrap();
    assert_eq!((opened, format), (der, seal::Format::Current), "the same key, re-sealed");
    // The keys still sign: the key ring signs with the newer one and publishes both.
    assert!(state.keys.signing_key().await.is_ok());
    let jwks: Value = serde_json::from_slice(&state.keys.jwks().await.unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // A second start finds nothing to re-seal, and a wrong secret is still refused.
    AppState::start(with(Some(SECRET))).await.unwrap();
    assert_eq!(portcullis::store::keys::list(&db).await.unwrap()[0].private_key, after[0].private_key);
    let err = AppState::start(with(Some("another-secret-0123456789"))).await.err().expect("wrong secret").to_string();
    assert!(err.contains("wrong key_encryption_secret"), "{err}");
}
