//! The admin API on both engines: every operation, authentication failures, bad input (a clear
//! 4xx with a stable code and nothing written), and the audit trail; the CLI's admin tokens.

use serde_json::{Value, json};

use crate::cli::run_in;
use crate::helpers::*;

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, app.url(&format!("/admin/api{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn every_operation_works_for_an_admin_token(engine: Engine) {
    use reqwest::Method;
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let token = portcullis::admin::create_admin_token(&app.db, "terraform", None).await.unwrap();
    let t = Some(token.as_str());

    let (s, people) = call(&app, Method::GET, "/people", t, None).await;
    assert_eq!(s, 200);
    assert_eq!(people[0]["username"], "alice");
    let (s, added) = call(
        &app,
        Method::POST,
        "/people",
        t,
        Some(json!({ "username": "bob", "email": "bob@example.com", "groups": ["eng"] })),
    )
    .await;
    assert_eq!(s, 201, "{added}");
    assert!(added["password"].as_str().is_some_and(|p| p.len() >= 15), "a generated password is returned once");
    let (s, _) = call(&app, Method::POST, "/people/bob/disable", t, None).await;
    assert_eq!(s, 204);
    let bob = portcullis::store::users::by_username(&app.db, "bob").await.unwrap().unwrap();
    assert!(bob.disabled);
    assert_eq!(call(&app, Method::POST, "/people/bob/enable", t, None).await.0, 204);
    let (s, _) = call(&app, Method::PUT, "/people/bob/groups", t, Some(json!({ "groups": ["ops", "eng"] }))).await;
    assert_eq!(s, 204);
    let (_, people) = call(&app, Method::GET, "/people", t, None).await;
    let bob = people.as_array().unwrap().iter().find(|p| p["username"] == "bob").unwrap().clone();
    assert_eq!(bob["groups"], json!(["eng", "ops"]));
    assert_eq!(call(&app, Method::PUT, "/people/nobody/groups", t, Some(json!({ "groups": [] }))).await.0, 404);
    assert_eq!(call(&app, Method::PUT, "/people/bob/groups", t, Some(json!({ "groups": [""] }))).await.0, 400);
    let (s, fresh) = call(&app, Method::POST, "/people/bob/password", t, None).await;
    assert_eq!(s, 200);
    assert_ne!(fresh["password"], added["password"], "a new password");

    let new = json!({ "uri": "https://finance.example.com/mcp", "name": "Finance", "allowed_groups": ["finance"],
        "scopes": [{ "name": "ledger:read", "description": "Read" }, { "name": "ledger:write", "description": "Write", "groups": ["leads"] }] });
    let (s, body) = call(&app, Method::POST, "/resources", t, Some(new.clone())).await;
    assert_eq!(s, 201, "{body}");
    let (_, list) = call(&app, Method::GET, "/resources", t, None).await;
    let finance = list.as_array().unwrap().iter().find(|r| r["name"] == "Finance").unwrap().clone();
    assert_eq!(finance["allowed_groups"], json!(["finance"]));
    assert_eq!(finance["scopes"][1]["groups"], json!(["leads"]));
    let (s, body) = call(&app, Method::POST, "/resources", t, Some(new.clone())).await;
    assert_eq!((s, body["error"].as_str()), (409, Some("conflict")));
    // Changed in place: same URI, new name and scopes.
    let mut changed = new.clone();
    changed["name"] = json!("Finance (renamed)");
    changed["scopes"] = json!([{ "name": "ledger:read", "description": "Read the ledger" }]);
    let (s, body) = call(&app, Method::PUT, "/resources", t, Some(changed.clone())).await;
    assert_eq!(s, 200, "{body}");
    let (_, list) = call(&app, Method::GET, "/resources", t, None).await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "Finance (renamed)" && r["scopes"].as_array().unwrap().len() == 1)
    );
    changed["uri"] = json!("https://never-added.example.com/mcp");
    assert_eq!(call(&app, Method::PUT, "/resources", t, Some(changed)).await.0, 404);

    app.code_for("http://127.0.0.1:9/cb", &[("resource", MCP)]).await;
    let (_, grants) = call(&app, Method::GET, "/grants?user=alice", t, None).await;
    let id = grants[0]["id"].as_str().expect("alice's grant").to_string();
    assert_eq!(call(&app, Method::DELETE, &format!("/grants/{id}"), t, None).await.0, 204);
    let (s, body) = call(&app, Method::DELETE, &format!("/grants/{id}"), t, None).await;
    assert_eq!((s, body["error"].as_str()), (404, Some("not_found")), "{body}");
    let (s, creds) =
        call(&app, Method::POST, "/resources/introspection?uri=https://finance.example.com/mcp", t, None).await;
    assert_eq!(s, 201, "{creds}");
    assert!(creds["client_secret"].as_str().is_some_and(|c| c.len() >= 32), "the secret is returned once: {creds}");
    assert_eq!(call(&app, Method::DELETE, "/resources?uri=https://finance.example.com/mcp", t, None).await.0, 204);
    let body = json!({ "name": "Internal agent", "client_id": "internal-agent", "redirect_uris": ["http://127.0.0.1/cb"], "confidential": true });
    let (s, added) = call(&app, Method::POST, "/clients", t, Some(body.clone())).await;
    assert_eq!(s, 201, "{added}");
    assert!(added["client_secret"].as_str().is_some_and(|c| c.len() >= 32), "the secret is returned once: {added}");
    assert_eq!(call(&app, Method::POST, "/clients", t, Some(body)).await.0, 409, "a second with the same id");
    let (s, e) =
        call(&app, Method::POST, "/clients", t, Some(json!({ "name": "X", "redirect_uris": ["not a uri"] }))).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_input")), "{e}");
    let (_, clients) = call(&app, Method::GET, "/clients", t, None).await;
    let dynamic =
        clients.as_array().unwrap().iter().find(|c| c["kind"] == "dynamic").expect("the flow's client").clone();
    let id = dynamic["client_id"].as_str().unwrap().to_string();
    let path =
        format!("/clients?client_id={}", url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>());
    assert_eq!(call(&app, Method::DELETE, &path, t, None).await.0, 204);
    assert_eq!(call(&app, Method::DELETE, &path, t, None).await.0, 404);

    let (_, events) = call(&app, Method::GET, "/audit?limit=50", t, None).await;
    let by_api: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "admin-token:terraform")
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in [
        "person_added",
        "introspection_credentials_issued",
        "client_deleted_by_admin",
        "client_added_by_admin",
        "resource_updated",
        "groups_set",
        "person_disabled",
        "person_enabled",
        "resource_added",
        "grant_revoked_by_api",
        "resource_removed",
    ] {
        assert!(by_api.contains(&e), "{e} audited: {by_api:?}");
    }
    // Paging: the next page starts after the last event of this one.
    let (_, first) = call(&app, Method::GET, "/audit?limit=3", t, None).await;
    let last = first[2]["id"].as_str().unwrap();
    let (_, next) = call(&app, Method::GET, &format!("/audit?limit=3&before={last}"), t, None).await;
    let ids: Vec<&str> =
        first.as_array().unwrap().iter().chain(next.as_array().unwrap()).map(|e| e["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (6, 6), "no event twice across pages");
    assert!(next[0]["at"].as_i64() <= first[2]["at"].as_i64());
    assert_eq!(call(&app, Method::GET, "/audit?before=nope", t, None).await.0, 400);
    let (s, doc) = call(&app, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/people"]["post"].is_object());
}

async fn bad_credentials_and_bad_input_are_refused_and_write_nothing(engine: Engine) {
    use reqwest::Method;
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let users = count_rows(&app.db, "users").await;
    let body = Some(json!({ "username": "mallory" }));
    for token in [None, Some("pca_not-a-token")] {
        let (s, e) = call(&app, Method::POST, "/people", token, body.clone()).await;
        assert_eq!((s, e["error"].as_str()), (401, Some("unauthorized")));
    }
    let expired = portcullis::admin::create_admin_token(&app.db, "old", Some(1)).await.unwrap();
    let revoked = portcullis::admin::create_admin_token(&app.db, "gone", None).await.unwrap();
    portcullis::admin::revoke_admin_token(&app.db, "gone").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    for token in [&expired, &revoked] {
        assert_eq!(call(&app, Method::GET, "/people", Some(token), None).await.0, 401);
    }
    let token = portcullis::admin::create_admin_token(&app.db, "ops", None).await.unwrap();
    let t = Some(token.as_str());
    for (bad, what) in [
        (json!({ "username": "bad name" }), "username"),
        (json!({ "username": "carol", "password": "short" }), "password"),
        (json!({ "username": "carol", "groups": [""] }), "group"),
        (json!({ "username": "carol", "surprise": 1 }), "unknown field"),
        (json!({ "username": "alice" }), "exists"),
    ] {
        let (s, e) = call(&app, Method::POST, "/people", t, Some(bad)).await;
        assert!(s == 400 || s == 409, "{what}: {s} {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {e}");
    }
    let (s, e) = call(&app, Method::POST, "/people/nobody/disable", t, None).await;
    assert_eq!((s, e["error"].as_str()), (404, Some("not_found")));
    let (s, e) =
        call(&app, Method::POST, "/resources", t, Some(json!({ "uri": "http://public.example.com/mcp", "name": "X" })))
            .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_input")), "{e}");
    assert_eq!(call(&app, Method::DELETE, "/grants/not-a-uuid", t, None).await.0, 400);
    assert_eq!(count_rows(&app.db, "users").await, users, "nothing was written");
}

#[test]
fn admin_tokens_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), &["migrate"], &[], None).success();
    let out = run_in(dir.path(), &["admin-token", "create", "ci", "--expires-in", "30d"], &[], None).success();
    assert!(out.stdout.lines().any(|l| l.starts_with("pca_")), "{out:?}");
    let list = run_in(dir.path(), &["admin-token", "list"], &[], None).success().stdout;
    assert!(list.contains("ci") && list.contains("live") && !list.contains("pca_"), "{list}");
    run_in(dir.path(), &["admin-token", "revoke", "ci"], &[], None).success();
    assert!(run_in(dir.path(), &["admin-token", "list"], &[], None).success().stdout.contains("revoked"));
    let e = run_in(dir.path(), &["admin-token", "revoke", "ci"], &[], None).failure().one_error_line();
    assert!(e.contains("does not exist"), "{e}");
    run_in(dir.path(), &["admin-token", "create", "bad name"], &[], None).failure().one_error_line();
}

db_tests!(every_operation_works_for_an_admin_token, bad_credentials_and_bad_input_are_refused_and_write_nothing);

async fn a_blocked_host_refuses_its_metadata_document_clients(engine: Engine) {
    use reqwest::Method;
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let token = portcullis::admin::create_admin_token(&app.db, "ops", None).await.unwrap();
    let t = Some(token.as_str());
    let (s, body) = call(&app, Method::POST, "/blocked-hosts", t, Some(json!({ "host": "Example.COM." }))).await;
    assert_eq!((s, body["host"].as_str()), (201, Some("example.com")), "stored normalised");
    let (s, e) = call(&app, Method::POST, "/blocked-hosts", t, Some(json!({ "host": "not a host/" }))).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_input")));
    let (_, challenge) = pkce();
    let client = "https://apps.example.com/client.json";
    let q = OAuthParams::authorize(client, "https://apps.example.com/cb", &challenge);
    let page = app.http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    assert_eq!(page.status(), 400);
    assert!(
        page.text().await.unwrap().contains("blocked on this server"),
        "a subdomain of a blocked host is refused before any fetch"
    );
    let (_, list) = call(&app, Method::GET, "/blocked-hosts", t, None).await;
    assert_eq!(list[0]["blocked_by"], "admin-token:ops");
    assert_eq!(call(&app, Method::DELETE, "/blocked-hosts?host=example.com", t, None).await.0, 204);
    assert_eq!(call(&app, Method::DELETE, "/blocked-hosts?host=example.com", t, None).await.0, 404);
    let page = app.http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    assert!(!page.text().await.unwrap().contains("blocked on this server"), "unblocked: a fetch is tried again");
}

db_tests!(a_blocked_host_refuses_its_metadata_document_clients);
