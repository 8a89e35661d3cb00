//! RFC 7591 dynamic client registration at `/register` and RFC 7592 management at
//! `/register/{client_id}`, with the bodies real MCP clients send
//! (requirements §2.4, §2.5 and the §4 "DCR response shape" pitfalls).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, MCP, OAuthParams, TestApp, db_tests};

db_tests!(
    registration_echoes_every_field_with_defaults,
    registration_response_is_json_and_not_cacheable,
    generated_credentials_are_unreserved_and_not_urls,
    auth_method_none_issues_no_secret,
    omitted_auth_method_defaults_to_client_secret_basic_with_a_secret,
    client_secret_post_is_honoured_and_echoed,
    cursor_registration_is_accepted_as_sent,
    vscode_registration_is_accepted_as_sent,
    python_sdk_registration_is_accepted,
    claude_ai_registration_gets_a_post_secret,
    unsupported_grant_types_are_filtered_not_fatal,
    scope_is_accepted_normalised_and_echoed,
    empty_optional_fields_are_omitted_from_the_response,
    content_type_with_charset_is_accepted,
    bad_redirect_uris_are_refused_with_invalid_redirect_uri,
    unsupported_auth_method_is_refused_with_invalid_client_metadata,
    malformed_bodies_are_refused_with_a_json_error,
    rejected_registration_writes_nothing,
    read_with_registration_token_returns_the_same_document,
    read_without_a_valid_token_is_401_invalid_token,
    another_clients_token_does_not_grant_access,
    update_replaces_the_metadata,
    update_to_a_secret_method_issues_a_secret,
    update_keeps_the_secret_unless_the_method_drops_it,
    update_with_mismatched_client_id_is_refused,
    update_with_server_managed_fields_is_refused,
    update_with_invalid_metadata_is_refused_and_changes_nothing,
    delete_removes_the_client_so_token_says_invalid_client,
    registered_scope_is_not_a_ceiling,
    registration_under_a_path_issuer,
    cors_preflight_for_register_is_allowed,
);

const CB: &str = "https://app.example/cb";

// ---- RFC 7591 §3.2.1: the client information response ----

async fn registration_echoes_every_field_with_defaults(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let before = now();
    let (status, doc) = post_register(&app, json!({ "redirect_uris": [CB], "client_name": "Example" })).await;
    let after = now();
    assert_eq!(status, 201, "{doc}");

    let client_id = doc["client_id"].as_str().expect("client_id");
    assert_eq!(doc["redirect_uris"], json!([CB]));
    assert_eq!(doc["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(doc["response_types"], json!(["code"]));
    assert_eq!(doc["application_type"], "web");
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(doc["client_name"], "Example");
    let issued = doc["client_id_issued_at"].as_i64().expect("client_id_issued_at is an integer");
    assert!((before..=after).contains(&issued), "client_id_issued_at {issued} not in [{before}, {after}]");
    assert!(!doc["registration_access_token"].as_str().expect("registration_access_token").is_empty());
    assert_eq!(doc["registration_client_uri"], app.url(&format!("/register/{client_id}")));
    assert_eq!(doc["client_secret_expires_at"], 0);
    assert_no_empty_values(&doc);
}

async fn registration_response_is_json_and_not_cacheable(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app.http.post(app.url("/register")).json(&json!({ "redirect_uris": [CB] })).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert!(header(&res, "content-type").starts_with("application/json"), "{}", header(&res, "content-type"));
}

async fn generated_credentials_are_unreserved_and_not_urls(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for _ in 0..5 {
        let doc = app.register(json!({ "redirect_uris": [CB] })).await;
        for field in ["client_id", "client_secret", "registration_access_token"] {
            let v = doc[field].as_str().unwrap_or_else(|| panic!("{field} missing in {doc}"));
            assert!(!v.is_empty() && v.chars().all(is_unreserved), "{field} {v:?} has reserved characters");
        }
        let client_id = doc["client_id"].as_str().unwrap();
        assert!(!client_id.starts_with("https://") && !client_id.starts_with("http://"), "{client_id}");
    }
}

async fn auth_method_none_issues_no_secret(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app.register(json!({ "redirect_uris": [CB], "token_endpoint_auth_method": "none" })).await;
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert!(doc.get("client_secret").is_none(), "a `none` client got a secret: {doc}");
    assert!(doc.get("client_secret_expires_at").is_none(), "{doc}");
}

async fn omitted_auth_method_defaults_to_client_secret_basic_with_a_secret(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app.register(json!({ "redirect_uris": [CB] })).await;
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
    assert!(doc["client_secret"].as_str().is_some_and(|s| s.len() >= 32), "{doc}");
    assert_eq!(doc["client_secret_expires_at"], 0);
}

async fn client_secret_post_is_honoured_and_echoed(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app.register(json!({ "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_post" })).await;
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_post");
    assert!(doc["client_secret"].as_str().is_some_and(|s| !s.is_empty()), "{doc}");
    assert_eq!(doc["client_secret_expires_at"], 0);
}

// ---- what real clients send ----

async fn cursor_registration_is_accepted_as_sent(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app
        .register(json!({
            "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"],
            "client_name": "Cursor",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "web"
        }))
        .await;
    assert_eq!(doc["redirect_uris"], json!(["cursor://anysphere.cursor-mcp/oauth/callback"]));
    // Echoed as sent, never "corrected" against the custom scheme.
    assert_eq!(doc["application_type"], "web");
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert!(doc.get("client_secret").is_none());
    assert_eq!(doc["grant_types"], json!(["authorization_code", "refresh_token"]));
}

async fn vscode_registration_is_accepted_as_sent(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let redirects = json!([
        "https://insiders.vscode.dev/redirect",
        "https://vscode.dev/redirect",
        "http://127.0.0.1/",
        "http://127.0.0.1:33418/"
    ]);
    let doc = app
        .register(json!({
            "client_name": "Visual Studio Code",
            "redirect_uris": redirects,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none"
        }))
        .await;
    assert_eq!(doc["redirect_uris"], redirects, "redirect URIs must be echoed byte for byte");
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert!(doc.get("client_secret").is_none());
    assert_eq!(doc["client_name"], "Visual Studio Code");
}

async fn python_sdk_registration_is_accepted(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app
        .register(json!({
            "redirect_uris": ["http://localhost:3030/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "mcp:tools",
            "client_name": "Simple Auth Client",
            "application_type": "native"
        }))
        .await;
    assert_eq!(doc["redirect_uris"], json!(["http://localhost:3030/callback"]));
    assert_eq!(doc["application_type"], "native");
    assert_eq!(doc["scope"], "mcp:tools");
    // No method sent: RFC 7591's default, echoed so the SDK knows to send the secret.
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_basic");
    assert!(doc["client_secret"].is_string());
}

async fn claude_ai_registration_gets_a_post_secret(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app
        .register(json!({
            "client_name": "Claude",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post"
        }))
        .await;
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_post");
    assert!(doc["client_secret"].is_string());
    assert_eq!(doc["client_secret_expires_at"], 0);
    assert!(doc["registration_client_uri"].is_string(), "claude.ai aborts without registration_client_uri");
    assert_eq!(doc["application_type"], "web");
}

async fn unsupported_grant_types_are_filtered_not_fatal(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app
        .register(json!({
            "redirect_uris": [CB],
            "grant_types": ["authorization_code", "client_credentials", "implicit", "urn:example:unknown"]
        }))
        .await;
    assert_eq!(doc["grant_types"], json!(["authorization_code"]));

    let doc = app.register(json!({ "redirect_uris": [CB], "grant_types": ["refresh_token", "password"] })).await;
    assert_eq!(doc["grant_types"], json!(["authorization_code", "refresh_token"]));
}

async fn scope_is_accepted_normalised_and_echoed(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app.register(json!({ "redirect_uris": [CB], "scope": "mcp:tools" })).await;
    assert_eq!(doc["scope"], "mcp:tools");
    // claude.ai-style leading space and doubled separators.
    let doc = app.register(json!({ "redirect_uris": [CB], "scope": " offline_access  mcp:tools " })).await;
    assert_eq!(doc["scope"], "mcp:tools offline_access");
}

async fn empty_optional_fields_are_omitted_from_the_response(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let doc = app
        .register(json!({
            "redirect_uris": [CB],
            "client_name": "",
            "client_uri": "",
            "logo_uri": "",
            "tos_uri": null,
            "jwks_uri": "",
            "scope": "",
            "contacts": []
        }))
        .await;
    for member in ["client_name", "client_uri", "logo_uri", "tos_uri", "jwks_uri", "scope", "contacts"] {
        assert!(doc.get(member).is_none(), "{member} should be omitted: {doc}");
    }
    assert_no_empty_values(&doc);
}

async fn content_type_with_charset_is_accepted(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app
        .http
        .post(app.url("/register"))
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({ "redirect_uris": [CB] }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

// ---- RFC 7591 §3.2.2: errors ----

async fn bad_redirect_uris_are_refused_with_invalid_redirect_uri(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let cases = [
        ("missing", json!({ "client_name": "x" })),
        ("empty list", json!({ "redirect_uris": [] })),
        ("null", json!({ "redirect_uris": null })),
        ("javascript:", json!({ "redirect_uris": ["javascript:alert(1)"] })),
        ("data:", json!({ "redirect_uris": ["data:text/html,<script>alert(1)</script>"] })),
        ("file:", json!({ "redirect_uris": ["file:///etc/passwd"] })),
        ("fragment", json!({ "redirect_uris": ["https://app.example/cb#frag"] })),
        ("http non-loopback", json!({ "redirect_uris": ["http://app.example/cb"] })),
        ("one bad among good", json!({ "redirect_uris": [CB, "http://evil.example/cb"] })),
        ("wildcard", json!({ "redirect_uris": ["https://*.app.example/cb"] })),
        ("relative", json!({ "redirect_uris": ["/cb"] })),
    ];
    for (case, body) in cases {
        let (status, doc) = post_register(&app, body).await;
        assert_eq!((status, doc["error"].as_str()), (400, Some("invalid_redirect_uri")), "{case}: {doc}");
        assert!(doc["error_description"].as_str().is_some_and(|d| !d.is_empty()), "{case}: {doc}");
    }
}

async fn unsupported_auth_method_is_refused_with_invalid_client_metadata(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for method in ["private_key_jwt", "client_secret_jwt", "tls_client_auth"] {
        let (status, doc) =
            post_register(&app, json!({ "redirect_uris": [CB], "token_endpoint_auth_method": method })).await;
        assert_eq!((status, doc["error"].as_str()), (400, Some("invalid_client_metadata")), "{method}: {doc}");
        assert!(doc["error_description"].as_str().is_some_and(|d| d.contains(method)), "{doc}");
    }
}

async fn malformed_bodies_are_refused_with_a_json_error(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let valid = json!({ "redirect_uris": [CB] }).to_string();
    let cases: [(&str, &str, String); 5] = [
        ("not JSON", "application/json", "redirect_uris=https://app.example/cb".into()),
        ("JSON array", "application/json", format!("[{valid}]")),
        ("empty body", "application/json", String::new()),
        ("text/plain", "text/plain", valid.clone()),
        ("form", "application/x-www-form-urlencoded", "redirect_uris=https%3A%2F%2Fapp.example%2Fcb".into()),
    ];
    for (case, content_type, body) in cases {
        let res =
            app.http.post(app.url("/register")).header("content-type", content_type).body(body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{case}");
        let doc: Value = res.json().await.unwrap_or_else(|e| panic!("{case}: not JSON: {e}"));
        assert!(doc["error"].as_str().is_some_and(|e| !e.is_empty()), "{case}: {doc}");
    }
    let res = app.http.post(app.url("/register")).body(valid).send().await.unwrap();
    assert_eq!(res.status(), 400, "no content type");
}

async fn rejected_registration_writes_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for body in [
        json!({ "redirect_uris": ["javascript:alert(1)"] }),
        json!({ "redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt" }),
        json!({ "redirect_uris": [CB], "client_name": "Evil\u{202E}App" }),
        json!([{ "redirect_uris": [CB] }]),
    ] {
        let (status, _) = post_register(&app, body).await;
        assert_eq!(status, 400);
    }
    assert_eq!(client_count(&app).await, 0);
    app.register(json!({ "redirect_uris": [CB] })).await;
    assert_eq!(client_count(&app).await, 1);
}

// ---- RFC 7592: read ----

async fn read_with_registration_token_returns_the_same_document(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app
        .register(json!({
            "redirect_uris": [CB, "http://127.0.0.1/cb"],
            "client_name": "Reader",
            "scope": "mcp:tools",
            "token_endpoint_auth_method": "client_secret_post",
            "client_uri": "https://app.example"
        }))
        .await;
    let res = manage(&app, Method::GET, &reg, Some(token_of(&reg)), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let read: Value = res.json().await.unwrap();
    // The secret and the registration token are shown once, at registration; the rest is identical.
    let mut expected = reg.clone();
    for secret in ["client_secret", "client_secret_expires_at", "registration_access_token"] {
        expected.as_object_mut().unwrap().remove(secret);
    }
    let mut read_without = read.clone();
    for secret in ["client_secret", "client_secret_expires_at", "registration_access_token"] {
        read_without.as_object_mut().unwrap().remove(secret);
    }
    assert_eq!(read_without, expected);
    if let Some(secret) = read.get("client_secret") {
        assert_eq!(secret, &reg["client_secret"], "a secret in the read response must be the current one");
    }
}

async fn read_without_a_valid_token_is_401_invalid_token(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB] })).await;
    let client_uri = reg["registration_client_uri"].as_str().unwrap();
    let cases: [(&str, Option<String>); 4] = [
        ("no header", None),
        ("wrong token", Some("Bearer not-the-token".into())),
        ("basic scheme", Some(format!("Basic {}", token_of(&reg)))),
        ("empty bearer", Some("Bearer ".into())),
    ];
    for (case, authorization) in cases {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let mut req = app.http.request(method.clone(), client_uri);
            if let Some(a) = &authorization {
                req = req.header("authorization", a);
            }
            if method == Method::PUT {
                req = req.json(&json!({ "client_id": reg["client_id"], "redirect_uris": [CB] }));
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 401, "{case} {method}");
            assert_eq!(header(&res, "www-authenticate"), r#"Bearer error="invalid_token""#, "{case} {method}");
            let doc: Value = res.json().await.unwrap();
            assert_eq!(doc["error"], "invalid_token", "{case} {method}");
        }
    }
    // The client survived every attempt.
    let res = manage(&app, Method::GET, &reg, Some(token_of(&reg)), None).await;
    assert_eq!(res.status(), 200);
}

async fn another_clients_token_does_not_grant_access(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let a = app.register(json!({ "redirect_uris": [CB] })).await;
    let b = app.register(json!({ "redirect_uris": [CB] })).await;
    let res = manage(&app, Method::GET, &a, Some(token_of(&b)), None).await;
    assert_eq!(res.status(), 401);
    let res = manage(&app, Method::DELETE, &a, Some(token_of(&b)), None).await;
    assert_eq!(res.status(), 401);
    // An unknown client id answers like a wrong token: nothing to learn from the difference.
    let res = app.http.get(app.url("/register/no-such-client")).bearer_auth(token_of(&a)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "www-authenticate"), r#"Bearer error="invalid_token""#);
}

/// RFC 7235 §2.1: the auth-scheme is case-insensitive, so `BEARER` must work like `Bearer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let reg = app.register(json!({ "redirect_uris": [CB] })).await;
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        let res = app
            .http
            .get(reg["registration_client_uri"].as_str().unwrap())
            .header("authorization", format!("{scheme} {}", token_of(&reg)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "scheme {scheme:?}");
    }
}

// ---- RFC 7592: update ----

async fn update_replaces_the_metadata(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app
        .register(json!({ "redirect_uris": [CB], "client_name": "Old", "token_endpoint_auth_method": "none", "scope": "mcp:tools" }))
        .await;
    let update = json!({
        "client_id": reg["client_id"],
        "redirect_uris": ["https://app.example/new-cb", "http://localhost/cb"],
        "client_name": "New",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"]
    });
    let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(update)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["client_id"], reg["client_id"]);
    assert_eq!(doc["client_name"], "New");
    assert_eq!(doc["redirect_uris"], json!(["https://app.example/new-cb", "http://localhost/cb"]));
    assert_eq!(doc["grant_types"], json!(["authorization_code"]));
    // RFC 7592 §2.2: omitted fields are deleted.
    assert!(doc.get("scope").is_none(), "{doc}");
    assert_eq!(doc["registration_client_uri"], reg["registration_client_uri"]);
    assert_eq!(doc["client_id_issued_at"], reg["client_id_issued_at"]);

    // The update is what a later read sees, and the registration token still works.
    let read: Value = manage(&app, Method::GET, &reg, Some(token_of(&reg)), None).await.json().await.unwrap();
    assert_eq!(read["client_name"], "New");
    assert_eq!(read["redirect_uris"], doc["redirect_uris"]);
}

async fn update_to_a_secret_method_issues_a_secret(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB], "token_endpoint_auth_method": "none" })).await;
    let update = json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "token_endpoint_auth_method": "client_secret_post" });
    let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(update)).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["token_endpoint_auth_method"], "client_secret_post");
    assert!(doc["client_secret"].as_str().is_some_and(|s| s.chars().all(is_unreserved)), "{doc}");
    assert_eq!(doc["client_secret_expires_at"], 0);
}

async fn update_keeps_the_secret_unless_the_method_drops_it(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB] })).await;
    let secret = reg["client_secret"].as_str().unwrap().to_string();
    assert!(secret_accepted(&app, &reg, &secret).await, "the issued secret does not authenticate");

    // Same method, with the current secret in the body (RFC 7592 §2.2 allows it): the secret stays.
    let body = json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "client_name": "Renamed", "client_secret": secret });
    let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["client_name"], "Renamed");
    assert!(doc.get("client_secret").is_none(), "an unchanged secret is not re-issued: {doc}");
    assert!(secret_accepted(&app, &reg, &secret).await, "the secret stopped working after an update");

    // Switching to `none` drops the secret; switching back issues a new one, never the old.
    let body = json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "token_endpoint_auth_method": "none" });
    assert_eq!(manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await.status(), 200);
    let body = json!({ "client_id": reg["client_id"], "redirect_uris": [CB] });
    let doc: Value = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await.json().await.unwrap();
    let new_secret = doc["client_secret"].as_str().expect("a new secret").to_string();
    assert_ne!(new_secret, secret);
    assert!(!secret_accepted(&app, &reg, &secret).await, "the dropped secret still authenticates");
    assert!(secret_accepted(&app, &reg, &new_secret).await);
}

async fn update_with_mismatched_client_id_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB], "client_name": "Kept" })).await;
    let other = app.register(json!({ "redirect_uris": [CB] })).await;
    for client_id in [other["client_id"].clone(), json!("something-else"), Value::Null] {
        let mut body = json!({ "redirect_uris": ["https://changed.example/cb"], "client_name": "Changed" });
        if !client_id.is_null() {
            body["client_id"] = client_id.clone();
        }
        let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await;
        assert_eq!(res.status(), 400, "client_id {client_id}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["error"], "invalid_request", "{doc}");
    }
    assert_unchanged(&app, &reg).await;
}

async fn update_with_server_managed_fields_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB], "client_name": "Kept" })).await;
    for field in
        ["registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at"]
    {
        let mut body = json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "client_name": "Changed" });
        body[field] = reg[field].clone();
        let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await;
        assert_eq!(res.status(), 400, "{field}");
        let doc: Value = res.json().await.unwrap();
        assert!(doc["error"].is_string(), "{doc}");
    }
    // A client_secret that is not the current one is refused as well.
    let body = json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "client_secret": "not-the-secret" });
    let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body)).await;
    assert_eq!(res.status(), 400);
    assert_unchanged(&app, &reg).await;
}

async fn update_with_invalid_metadata_is_refused_and_changes_nothing(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let reg = app.register(json!({ "redirect_uris": [CB], "client_name": "Kept" })).await;
    let cases = [
        (json!({ "client_id": reg["client_id"], "redirect_uris": ["javascript:alert(1)"] }), "invalid_redirect_uri"),
        (json!({ "client_id": reg["client_id"], "client_name": "No redirects" }), "invalid_redirect_uri"),
        (
            json!({ "client_id": reg["client_id"], "redirect_uris": [CB], "token_endpoint_auth_method": "private_key_jwt" }),
            "invalid_client_metadata",
        ),
    ];
    for (body, code) in cases {
        let res = manage(&app, Method::PUT, &reg, Some(token_of(&reg)), Some(body.clone())).await;
        assert_eq!(res.status(), 400, "{body}");
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["error"], code, "{body}");
    }
    assert_unchanged(&app, &reg).await;
}

// ---- RFC 7592: delete ----

async fn delete_removes_the_client_so_token_says_invalid_client(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "http://127.0.0.1/callback";
    let reg = app.register(json!({ "redirect_uris": [redirect], "token_endpoint_auth_method": "none" })).await;
    let client_id = reg["client_id"].as_str().unwrap();
    let issued = app.code_for_client(client_id, redirect, &[("state", "st-1"), ("resource", MCP)]).await;
    let (status, tokens) = app.token(&issued.redeem().redirect_uri(redirect)).await;
    assert_eq!(status, 200, "{tokens}");
    let refresh = tokens["refresh_token"].as_str().expect("refresh_token").to_string();

    let res = manage(&app, Method::DELETE, &reg, Some(token_of(&reg)), None).await;
    assert_eq!(res.status(), 204);
    assert!(res.bytes().await.unwrap().is_empty(), "204 has no body");
    assert_eq!(client_count(&app).await, 0);

    // The token endpoint no longer knows the client: 401 `invalid_client` with a challenge, the
    // answer on which hosted clients re-register; nothing is written.
    let tokens_before = crate::helpers::count_rows(&app.db, "refresh_tokens").await;
    let res = app.http.post(app.url("/token")).form(&OAuthParams::refresh(client_id, &refresh)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["error"], "invalid_client", "{doc}");
    assert_eq!(crate::helpers::count_rows(&app.db, "refresh_tokens").await, tokens_before);
    // The registration token died with it.
    let res = manage(&app, Method::GET, &reg, Some(token_of(&reg)), None).await;
    assert_eq!(res.status(), 401);
    let res = manage(&app, Method::DELETE, &reg, Some(token_of(&reg)), None).await;
    assert_eq!(res.status(), 401);
}

// ---- DCR scope is not a ceiling (requirements §2.4.8, §4 "DCR scope used as a ceiling") ----

async fn registered_scope_is_not_a_ceiling(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let redirect = "http://127.0.0.1/callback";
    let reg = app
        .register(json!({ "redirect_uris": [redirect], "token_endpoint_auth_method": "none", "scope": "mcp:tools" }))
        .await;
    let client_id = reg["client_id"].as_str().unwrap();
    let extra = [("state", "st-1"), ("resource", MCP), ("scope", "mcp:tools mcp:admin")];
    let issued = app.code_for_client(client_id, redirect, &extra).await;
    let (status, tokens) = app.token(&issued.redeem().redirect_uri(redirect).resource(MCP)).await;
    assert_eq!(status, 200, "{tokens}");
    let mut granted: Vec<&str> = tokens["scope"].as_str().expect("scope").split(' ').collect();
    granted.sort_unstable();
    assert_eq!(granted, ["mcp:admin", "mcp:tools"]);
}

// ---- path issuer and CORS ----

async fn registration_under_a_path_issuer(engine: Engine) {
    let app = TestApp::spawn_with(engine, "/tenant1", |_| {}).await;
    let doc = app.register(json!({ "redirect_uris": [CB] })).await;
    let client_id = doc["client_id"].as_str().unwrap();
    let client_uri = doc["registration_client_uri"].as_str().unwrap();
    assert!(app.base.ends_with("/tenant1"));
    assert_eq!(client_uri, format!("{}/register/{client_id}", app.base));
    let res = app.http.get(client_uri).bearer_auth(token_of(&doc)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

async fn cors_preflight_for_register_is_allowed(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app
        .http
        .request(Method::OPTIONS, app.url("/register"))
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "preflight status {}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    assert!(header(&res, "access-control-allow-methods").contains("POST"), "{:?}", res.headers());
    let allowed = header(&res, "access-control-allow-headers").to_ascii_lowercase();
    for h in ["content-type", "mcp-protocol-version"] {
        assert!(allowed.contains(h), "{h} not in {allowed:?}");
    }
    // And the actual POST from that origin carries the header too.
    let res = app
        .http
        .post(app.url("/register"))
        .header("origin", "http://localhost:6274")
        .json(&json!({ "redirect_uris": [CB] }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
}

// ---- helpers ----

/// POSTs a JSON body to /register; (status, body).
async fn post_register(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app.http.post(app.url("/register")).json(&body).send().await.expect("register");
    let status = res.status().as_u16();
    (status, res.json().await.expect("JSON response"))
}

/// A request to the client's `registration_client_uri` with an optional bearer token and JSON body.
async fn manage(
    app: &TestApp,
    method: Method,
    reg: &Value,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let uri = reg["registration_client_uri"].as_str().expect("registration_client_uri");
    let mut req = app.http.request(method, uri);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("registration management request")
}

/// Whether /token authenticates the client with this secret (Basic): a bogus code then fails with
/// `invalid_grant`, a bad secret with `invalid_client`.
async fn secret_accepted(app: &TestApp, reg: &Value, secret: &str) -> bool {
    let res = app
        .http
        .post(app.url("/token"))
        .basic_auth(reg["client_id"].as_str().unwrap(), Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "bogus"),
            ("redirect_uri", CB),
            ("code_verifier", "x".repeat(43).as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let doc: Value = res.json().await.unwrap();
    match doc["error"].as_str() {
        Some("invalid_client") => false,
        Some("invalid_grant") => true,
        other => panic!("unexpected /token answer {status} {other:?}: {doc}"),
    }
}

fn token_of(reg: &Value) -> &str {
    reg["registration_access_token"].as_str().expect("registration_access_token")
}

/// The stored registration still says what it said at registration.
async fn assert_unchanged(app: &TestApp, reg: &Value) {
    let read: Value = manage(app, Method::GET, reg, Some(token_of(reg)), None).await.json().await.unwrap();
    for field in ["client_name", "redirect_uris", "token_endpoint_auth_method", "grant_types"] {
        assert_eq!(read.get(field), reg.get(field), "{field} changed");
    }
}

async fn client_count(app: &TestApp) -> usize {
    portcullis::store::clients::list(&app.db).await.expect("list clients").len()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// RFC 3986 unreserved: identical whether or not a client form-encodes it for Basic auth.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~".contains(c)
}

/// No `""`, `null` or `[]` anywhere in a client information response (the TS SDK's schema fails on them).
fn assert_no_empty_values(doc: &Value) {
    for (k, v) in doc.as_object().expect("object") {
        let empty = v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty);
        assert!(!empty, "{k} is empty in {doc}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
