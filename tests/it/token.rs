//! /token: code redemption (single use, PKCE, redirect and client binding, resource), refresh
//! rotation with its grace window and reuse detection, client authentication, response shape.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Engine, IssuedCode, MCP, OAuthParams, TestApp, count_rows, db_tests, jwt_parts, pkce};

const REDIRECT: &str = "https://app.example/cb";

db_tests!(
    code_exchange_response_and_jwt,
    code_replay_revokes_first_tokens,
    code_checks,
    client_authentication_methods,
    unknown_client_is_invalid_client,
    refresh_rotation_and_grace,
    concurrent_refreshes_get_the_same_successor,
    reuse_after_grace_revokes_the_grant,
    a_refresh_family_ends_at_its_absolute_lifetime,
    refresh_scope_and_resource_rules,
    disabled_person_stops_at_refresh,
    request_shape_errors,
    refresh_token_only_when_asked,
    path_issuer_full_flow,
);

/// Redeems a code at /token, with `redirect_uri` [`REDIRECT`].
async fn redeem(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> (u16, Value) {
    app.token(&OAuthParams::code(client_id, code, verifier).redirect_uri(REDIRECT)).await
}

async fn refresh(app: &TestApp, client_id: &str, token: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    app.token(&OAuthParams::refresh(client_id, token).extend(extra)).await
}

/// Verifies an access token's signature against the published JWKS, as an MCP server would.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Value {
    let (header, _) = jwt_parts(token);
    let jwks: Value = app.http.get(app.url("/jwks.json")).send().await.unwrap().json().await.unwrap();
    let key = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid published");
    let jwk = josekit::jwk::Jwk::from_bytes(key.to_string().as_bytes()).unwrap();
    let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
    let (payload, _) = josekit::jwt::decode_with_verifier(token, &verifier).expect("signature verifies");
    serde_json::from_str(&payload.to_string()).unwrap()
}

async fn code_exchange_response_and_jwt(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let issued = app.code_for(REDIRECT, &[]).await;
    let client_id = &issued.client_id;
    let res = app.http.post(app.url("/token")).form(&issued.redeem().redirect_uri(REDIRECT)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].is_i64(), "integer expires_in");
    assert_eq!(body["scope"], "mcp:tools");
    assert!(body["refresh_token"].is_string(), "DCR clients register refresh_token by default");
    let token = body["access_token"].as_str().unwrap();
    let (header, _) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    let claims = verify_with_jwks(&app, token).await;
    assert_eq!(claims["iss"], json!(app.base));
    assert_eq!(claims["aud"], json!(MCP));
    assert_eq!(claims["client_id"], json!(client_id));
    assert_eq!(claims["scope"], "mcp:tools");
    let alice = portcullis::store::users::by_username(&app.db, "alice").await.unwrap().unwrap();
    assert_eq!(claims["sub"], json!(alice.id.to_string()));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), body["expires_in"].as_i64().unwrap());
    assert!(claims["jti"].is_string());
}

async fn code_replay_revokes_first_tokens(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (status, first) = redeem(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, 200);
    let (status, second) = redeem(&app, &client_id, &code, &verifier).await;
    assert_eq!((status, second["error"].as_str()), (400, Some("invalid_grant")));
    let (status, body) = refresh(&app, &client_id, first["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the first redemption's refresh token is revoked"
    );
    let events = portcullis::store::audit::list(&app.db, Some("code_replay_detected"), 5).await.unwrap();
    assert_eq!(events.len(), 1);
}

async fn code_checks(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    // Wrong verifier: refused, and the code is spent.
    let c = app.code_for(REDIRECT, &[]).await;
    let (_, wrong) = pkce();
    let (status, body) = redeem(&app, &c.client_id, &c.code, &wrong).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(redeem(&app, &c.client_id, &c.code, &c.verifier).await.0, 400, "a refused attempt spends the code");
    // Missing verifier: invalid_request, code untouched.
    let c = app.code_for(REDIRECT, &[]).await;
    let (status, body) = app.token(&c.redeem().without("code_verifier")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    assert_eq!(redeem(&app, &c.client_id, &c.code, &c.verifier).await.0, 200);
    // Redirect URI must match.
    let c = app.code_for(REDIRECT, &[]).await;
    let (status, body) = app.token(&c.redeem().redirect_uri("https://app.example/other")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    // Another client cannot redeem it.
    let c = app.code_for(REDIRECT, &[]).await;
    let thief = app.public_client(REDIRECT).await;
    assert_eq!(redeem(&app, &thief, &c.code, &c.verifier).await.1["error"], "invalid_grant");
    // `resource` at the token endpoint must be the approved one.
    let c = app.code_for(REDIRECT, &[]).await;
    let (status, body) = app.token(&c.redeem().resource("https://elsewhere.example")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    // Garbage code.
    assert_eq!(redeem(&app, &c.client_id, "not-a-code", &c.verifier).await.1["error"], "invalid_grant");
}

async fn client_authentication_methods(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    for method in ["client_secret_basic", "client_secret_post"] {
        let reg = app.register(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": method })).await;
        let id = reg["client_id"].as_str().unwrap().to_string();
        let secret = reg["client_secret"].as_str().unwrap().to_string();
        let c = app.code_for_client(&id, REDIRECT, &[]).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", c.code.as_str()),
            ("code_verifier", c.verifier.as_str()),
            ("redirect_uri", REDIRECT),
        ];
        // Basic with raw credentials (TS SDK) and form-encoded ones (Python SDK) are the same for unreserved secrets.
        let res = app.http.post(app.url("/token")).basic_auth(&id, Some(&secret)).form(&form).send().await.unwrap();
        assert_eq!(res.status(), 200, "{method} via Basic");
        let c = app.code_for_client(&id, REDIRECT, &[]).await;
        let post = c.redeem().redirect_uri(REDIRECT).with("client_secret", &secret);
        assert_eq!(app.token(&post).await.0, 200, "{method} via post");
        // Wrong secret, and a missing secret.
        let res = app.http.post(app.url("/token")).basic_auth(&id, Some("wrong")).form(&form).send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        let (status, body) = app.token(&OAuthParams::code(&id, "x", "y")).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_client")));
    }
}

/// Hosted clients re-register only on 401: an unknown client gets 401 `invalid_client` with a
/// challenge whether its id came in the body or in Basic credentials.
async fn unknown_client_is_invalid_client(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let res = app.http.post(app.url("/token")).form(&OAuthParams::code("ghost", "x", "y")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth("ghost", Some("secret"))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
}

async fn refresh_rotation_and_grace(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    let t0 = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&app, &client_id, t0, &[("resource", MCP)]).await;
    assert_eq!(status, 200, "{second}");
    let t1 = second["refresh_token"].as_str().unwrap();
    assert_ne!(t0, t1, "rotated");
    assert_eq!(second["scope"], "mcp:tools", "keeps the grant's scope");
    assert_eq!(jwt_parts(second["access_token"].as_str().unwrap()).1["aud"], json!(MCP));
    // Inside the grace window the previous token gets the same successor (and a fresh access token).
    let (status, again) = refresh(&app, &client_id, t0, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(again["refresh_token"], second["refresh_token"]);
    // Allowed, and recorded: a token replayed inside the window leaves a trace.
    let events = portcullis::store::audit::list(&app.db, Some("refresh_grace_reuse"), 5).await.unwrap();
    assert_eq!(events.len(), 1, "one grace reuse, one audit event");
    assert_eq!(events[0].client_id.as_deref(), Some(client_id.as_str()));
    // The successor works and rotates on.
    let (status, third) = refresh(&app, &client_id, t1, &[]).await;
    assert_eq!(status, 200);
    assert_ne!(third["refresh_token"], second["refresh_token"]);
    // Another client cannot use it.
    let other = app.public_client(REDIRECT).await;
    assert_eq!(refresh(&app, &other, third["refresh_token"].as_str().unwrap(), &[]).await.1["error"], "invalid_grant");
}

async fn concurrent_refreshes_get_the_same_successor(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    let t0 = first["refresh_token"].as_str().unwrap().to_string();
    let calls = (0..4).map(|_| {
        let (http, url, t0, id) = (app.http.clone(), app.url("/token"), t0.clone(), client_id.clone());
        tokio::spawn(async move {
            let res = http.post(url).form(&OAuthParams::refresh(&id, &t0)).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    });
    let mut successors = std::collections::HashSet::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "every concurrent refresh succeeds: {body}");
        successors.insert(body["refresh_token"].as_str().unwrap().to_string());
    }
    assert_eq!(successors.len(), 1, "one successor, not several");
    let rows = count_rows(&app.db, "refresh_tokens").await;
    assert_eq!(rows, 2, "the original and its one successor");
}

async fn reuse_after_grace_revokes_the_grant(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.refresh_grace_period = portcullis::config::Seconds(1))
        .await
        .with_defaults()
        .await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    let t0 = first["refresh_token"].as_str().unwrap();
    let (_, second) = refresh(&app, &client_id, t0, &[]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = refresh(&app, &client_id, t0, &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "reuse after the window");
    let (status, _) = refresh(&app, &client_id, second["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 400, "the whole grant is revoked, the successor too");
    assert_eq!(portcullis::store::audit::list(&app.db, Some("refresh_reuse_detected"), 5).await.unwrap().len(), 1);
}

/// Rotation extends a refresh token (sliding), but never past its family's absolute lifetime,
/// counted from the code's redemption.
async fn a_refresh_family_ends_at_its_absolute_lifetime(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.refresh_token_max_lifetime = portcullis::config::Seconds(2))
        .await
        .with_defaults()
        .await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    let (status, second) = refresh(&app, &client_id, first["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(status, 200, "inside the limit: {second}");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = refresh(&app, &client_id, second["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "past the family's limit: {body}");
}

async fn refresh_scope_and_resource_rules(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } =
        app.code_for(REDIRECT, &[("scope", "mcp:tools mcp:admin")]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    let t0 = first["refresh_token"].as_str().unwrap();
    let (status, body) = refresh(&app, &client_id, t0, &[("scope", "mcp:tools offline_access")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "never widen");
    let (status, body) = refresh(&app, &client_id, t0, &[("resource", "https://elsewhere.example")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")));
    // Refused requests did not rotate the token: a narrowing refresh still works.
    let (status, narrowed) = refresh(&app, &client_id, t0, &[("scope", "mcp:tools")]).await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["scope"], "mcp:tools");
    // The new refresh token keeps the grant's full scope.
    let (_, full) = refresh(&app, &client_id, narrowed["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(full["scope"], "mcp:admin mcp:tools");
}

async fn disabled_person_stops_at_refresh(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (_, first) = redeem(&app, &client_id, &code, &verifier).await;
    portcullis::admin::set_disabled(&app.db, "alice", true).await.unwrap();
    let (status, body) = refresh(&app, &client_id, first["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

async fn request_shape_errors(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client(REDIRECT).await;
    let (status, body) = app.token(&[("grant_type", "password"), ("client_id", &client_id)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let (status, body) = app.token(&[("client_id", &client_id)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")));
    let (status, body) =
        app.token(&[("grant_type", "refresh_token"), ("grant_type", "refresh_token"), ("client_id", &client_id)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_request")), "repeated parameter");
    let res = app.http.post(app.url("/token")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    let res = app.http.get(app.url("/token")).send().await.unwrap();
    assert_eq!(res.status(), 405);
}

async fn refresh_token_only_when_asked(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let reg = app
        .register(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "grant_types": ["authorization_code"] }))
        .await;
    let id = reg["client_id"].as_str().unwrap();
    let c = app.code_for_client(id, REDIRECT, &[]).await;
    let (_, body) = redeem(&app, id, &c.code, &c.verifier).await;
    assert!(body.get("refresh_token").is_none(), "no refresh grant registered, no offline_access: {body}");
}

async fn path_issuer_full_flow(engine: Engine) {
    let app = TestApp::spawn_with(engine, "/tenant1", |_| {}).await.with_defaults().await;
    let IssuedCode { client_id, code, verifier, .. } = app.code_for(REDIRECT, &[]).await;
    let (status, body) = redeem(&app, &client_id, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify_with_jwks(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], json!(app.base));
    assert!(app.base.ends_with("/tenant1"));
}
