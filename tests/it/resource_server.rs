//! For resource servers and people: /revoke, /introspect, OpenID Connect, /account, grant CLI
//! functions, disabled people.

use serde_json::{Value, json};

use crate::helpers::{Engine, MCP, OAuthParams, PASSWORD, TestApp, browser, db_tests, hidden, jwt_parts, location};

const REDIRECT: &str = "https://app.example/cb";

db_tests!(
    introspection_answers_only_for_the_callers_audience,
    introspection_reads_inactive_after_revocations,
    revoke_refresh_token_kills_the_grant,
    revoke_access_token_by_jti,
    revoke_edge_cases,
    openid_yields_id_token_and_userinfo,
    oidc_discovery_is_complete,
    account_page_lists_and_revokes,
    account_password_change,
    operator_grant_list_and_revoke,
);

/// A signed-in flow up to tokens, with the resource server's introspection credentials.
struct Issued {
    client_id: String,
    access: String,
    refresh: String,
    body: Value,
}

async fn tokens(app: &TestApp, extra: &[(&str, &str)]) -> Issued {
    let c = app.code_for(REDIRECT, extra).await;
    let (status, body) = app.token(&c.redeem()).await;
    assert_eq!(status, 200, "{body}");
    Issued {
        client_id: c.client_id,
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap_or_default().into(),
        body,
    }
}

async fn introspect(app: &TestApp, creds: &(String, String), token: &str) -> (u16, Value) {
    let res = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn rs_credentials(app: &TestApp, uri: &str) -> (String, String) {
    portcullis::admin::issue_introspection_credentials(&app.db, uri).await.unwrap()
}

async fn introspection_answers_only_for_the_callers_audience(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    app.add_resource("https://other.example.com", &[("o", "O", true)]).await;
    let mine = rs_credentials(&app, MCP).await;
    let other = rs_credentials(&app, "https://other.example.com").await;
    let t = tokens(&app, &[("resource", MCP)]).await;
    let (status, body) = introspect(&app, &mine, &t.access).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true, "{body}");
    for field in ["sub", "client_id", "scope", "aud", "iss", "exp", "iat", "token_type"] {
        assert!(body.get(field).is_some(), "active responses carry {field}: {body}");
    }
    assert_eq!(body["aud"], MCP);
    assert_eq!(body["client_id"], json!(t.client_id));
    assert_eq!(body["iss"], json!(app.base));
    // Another MCP server may not read this token.
    assert_eq!(introspect(&app, &other, &t.access).await.1, json!({ "active": false }));
    // Garbage and refresh tokens are simply inactive.
    assert_eq!(introspect(&app, &mine, "garbage").await.1, json!({ "active": false }));
    assert_eq!(introspect(&app, &mine, &t.refresh).await.1, json!({ "active": false }));
    // Callers must authenticate.
    let res = app.http.post(app.url("/introspect")).form(&[("token", t.access.as_str())]).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(&mine.0, Some("wrong"))
        .form(&[("token", t.access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A missing token is reported only once the caller has authenticated.
    let without_token = |secret: &str| {
        app.http.post(app.url("/introspect")).basic_auth(&mine.0, Some(secret)).form(&[("x", "y")]).send()
    };
    assert_eq!(without_token("wrong").await.unwrap().status(), 401);
    let res = without_token(&mine.1).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
    // A client's credentials are not a resource server's.
    let res = app
        .http
        .post(app.url("/introspect"))
        .form(&[("token", t.access.as_str()), ("client_id", t.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

async fn introspection_reads_inactive_after_revocations(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let creds = rs_credentials(&app, MCP).await;
    // A revoked grant.
    let t = tokens(&app, &[]).await;
    let grant =
        portcullis::store::grants::list(&app.db, Some("alice"), Some(&t.client_id), false).await.unwrap().remove(0);
    portcullis::store::grants::revoke(&app.db, grant.id, portcullis::store::now()).await.unwrap();
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], false, "revoked grant");
    // A disabled person.
    let t = tokens(&app, &[]).await;
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], true);
    portcullis::admin::set_disabled(&app.db, "alice", true).await.unwrap();
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], false, "disabled person");
    portcullis::admin::set_disabled(&app.db, "alice", false).await.unwrap();
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], true, "enabled again");
    // A replayed code.
    let form = app.code_for(REDIRECT, &[]).await.redeem();
    let (_, first) = app.token(&form).await;
    app.token(&form).await;
    assert_eq!(
        introspect(&app, &creds, first["access_token"].as_str().unwrap()).await.1["active"],
        false,
        "replayed code"
    );
}

async fn revoke_refresh_token_kills_the_grant(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let creds = rs_credentials(&app, MCP).await;
    let t = tokens(&app, &[]).await;
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", t.refresh.as_str()), ("client_id", t.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().is_empty());
    let (status, body) = app.token(&OAuthParams::refresh(&t.client_id, &t.refresh)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], false, "the grant's access tokens die too");
}

async fn revoke_access_token_by_jti(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let creds = rs_credentials(&app, MCP).await;
    let t = tokens(&app, &[]).await;
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", t.access.as_str()), ("token_type_hint", "access_token"), ("client_id", t.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], false);
    // The refresh token still works: only that access token was revoked.
    let (status, _) = app.token(&OAuthParams::refresh(&t.client_id, &t.refresh)).await;
    assert_eq!(status, 200);
}

async fn revoke_edge_cases(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let creds = rs_credentials(&app, MCP).await;
    let t = tokens(&app, &[]).await;
    // Unknown tokens: 200.
    let res = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", "nope"), ("client_id", t.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Another client cannot revoke this client's tokens (and learns nothing: 200).
    let other = app.public_client(REDIRECT).await;
    for token in [&t.refresh, &t.access] {
        let res = app
            .http
            .post(app.url("/revoke"))
            .form(&[("token", token.as_str()), ("client_id", other.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], true, "still active");
    let (status, _) = app.token(&OAuthParams::refresh(&t.client_id, &t.refresh)).await;
    assert_eq!(status, 200, "still usable");
    // Client authentication is required; a missing token is invalid_request.
    let res = app.http.post(app.url("/revoke")).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client");
    let res = app.http.post(app.url("/revoke")).form(&[("client_id", t.client_id.as_str())]).send().await.unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_request");
}

async fn openid_yields_id_token_and_userinfo(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    portcullis::admin::add_user_with_profile(
        &app.db,
        &app.state.hasher,
        "alice",
        PASSWORD,
        Some("Alice Liddell"),
        Some("alice@example.com"),
    )
    .await
    .unwrap();
    app.add_resource(MCP, &[("mcp:tools", "Use the tools", true)]).await;
    let t = tokens(&app, &[("scope", "openid profile email"), ("nonce", "n-0S6_WzA2Mj")]).await;
    let id_token = t.body["id_token"].as_str().expect("an id_token for openid");
    let (header, claims) = jwt_parts(id_token);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(claims["iss"], json!(app.base));
    assert_eq!(claims["aud"], json!(t.client_id));
    assert_eq!(claims["azp"], json!(t.client_id));
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert!(claims["auth_time"].is_i64());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["name"], "Alice Liddell");
    // The resource's default scopes come along (VS Code asks for OIDC scopes only).
    assert!(t.body["scope"].as_str().unwrap().contains("mcp:tools"));
    let res = app.http.get(app.url("/userinfo")).bearer_auth(&t.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let info: Value = res.json().await.unwrap();
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    // No token, a bad token, a token without openid.
    assert_eq!(app.http.get(app.url("/userinfo")).send().await.unwrap().status(), 401);
    let res = app.http.get(app.url("/userinfo")).bearer_auth("garbage").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let plain = tokens(&app, &[]).await;
    assert!(plain.body.get("id_token").is_none());
    assert_eq!(app.http.get(app.url("/userinfo")).bearer_auth(&plain.access).send().await.unwrap().status(), 403);
    // Once the grant is revoked, its access tokens get no claims (as introspection reads them
    // inactive), though they have not expired.
    let grant =
        portcullis::store::grants::list(&app.db, Some("alice"), Some(&t.client_id), false).await.unwrap().remove(0);
    portcullis::store::grants::revoke(&app.db, grant.id, portcullis::store::now()).await.unwrap();
    let res = app.http.get(app.url("/userinfo")).bearer_auth(&t.access).send().await.unwrap();
    assert_eq!(res.status(), 401, "userinfo answered for a revoked grant");
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

async fn oidc_discovery_is_complete(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let doc: Value =
        app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    for field in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
        "code_challenge_methods_supported",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        assert!(doc.get(field).is_some(), "OIDC discovery lacks {field}");
    }
    let scopes = doc["scopes_supported"].as_array().unwrap();
    assert!(scopes.contains(&json!("openid")));
    let oauth: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert!(oauth["revocation_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
    assert_eq!(oauth["introspection_endpoint"], doc["introspection_endpoint"]);
}

async fn account_page_lists_and_revokes(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let creds = rs_credentials(&app, MCP).await;
    let t = tokens(&app, &[("scope", "mcp:tools offline_access")]).await;
    // Not signed in: to the login page, then back to /account.
    let http = browser();
    let res = http.get(app.url("/account")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(login.contains("next=account"), "{login}");
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let res = app.submit_login(&http, &page, "alice", PASSWORD).await;
    assert_eq!(location(&res), "/account");
    let page = http.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    for needle in ["Test client", "Unverified", "Example MCP", MCP, "Use the tools", "Stay connected"] {
        assert!(page.contains(needle), "account page lacks {needle:?}");
    }
    let res = http
        .post(app.url("/account/revoke"))
        .form(&[("csrf_token", hidden(&page, "csrf_token")), ("grant_id", hidden(&page, "grant_id"))])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let after = http.get(app.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(after.contains("Access revoked") && after.contains("No app has access"), "{after}");
    let (status, body) = app.token(&OAuthParams::refresh(&t.client_id, &t.refresh)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(introspect(&app, &creds, &t.access).await.1["active"], false);
    assert_eq!(portcullis::store::audit::list(&app.db, Some("grant_revoked"), 5).await.unwrap().len(), 1);
    // Forged or foreign grant ids do nothing.
    let res = http
        .post(app.url("/account/revoke"))
        .form(&[("csrf_token", "forged"), ("grant_id", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

async fn account_password_change(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let http = browser();
    app.login(&http, "alice", PASSWORD).await;
    let page = http.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf_token");
    let change = |current: &str, new: &str, confirm: &str| {
        let form = vec![
            ("csrf_token", csrf.clone()),
            ("current_password", current.to_string()),
            ("new_password", new.to_string()),
            ("confirm_password", confirm.to_string()),
        ];
        http.post(app.url("/account/password")).form(&form).send()
    };
    assert_eq!(change("wrong", "new password 1", "new password 1").await.unwrap().status(), 400);
    assert_eq!(change(PASSWORD, "new password 1", "different").await.unwrap().status(), 400);
    assert_eq!(change(PASSWORD, "short", "short").await.unwrap().status(), 400);
    let res = change(PASSWORD, "new password 1", "new password 1").await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("password was changed"));
    assert_eq!(app.login(&browser(), "alice", PASSWORD).await.status(), 401);
    assert_eq!(app.login(&browser(), "alice", "new password 1").await.status(), 200);
}

async fn operator_grant_list_and_revoke(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let t = tokens(&app, &[]).await;
    let list = portcullis::store::grants::list(&app.db, Some("alice"), None, false).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].client_id, t.client_id);
    assert!(portcullis::store::grants::list(&app.db, Some("bob"), None, false).await.unwrap().is_empty());
    portcullis::admin::revoke_grant(&app.db, &list[0].id.to_string()).await.unwrap();
    assert!(portcullis::admin::revoke_grant(&app.db, &list[0].id.to_string()).await.is_err(), "already revoked");
    assert!(portcullis::admin::revoke_grant(&app.db, "not-a-uuid").await.is_err());
    assert_eq!(portcullis::store::grants::list(&app.db, None, Some(&t.client_id), true).await.unwrap().len(), 1);
    let (status, _) = app.token(&OAuthParams::refresh(&t.client_id, &t.refresh)).await;
    assert_eq!(status, 400);
}
