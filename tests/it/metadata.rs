//! Discovery and the endpoints around it: RFC 8414 metadata, OIDC discovery, path issuers, JWKS,
//! unknown well-known paths, CORS, health, and the security headers of HTML pages
//! (requirements §2.1, §2.10.1–2.10.4, §4 pitfalls).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Engine, TestApp, db_tests};

db_tests!(
    oauth_metadata_describes_the_server,
    metadata_scopes_are_the_union_of_resource_scopes_and_offline_access,
    metadata_has_no_empty_arrays_or_strings,
    oidc_discovery_states_the_same_facts_plus_oidc_fields,
    advertised_endpoints_are_served,
    path_issuer_metadata_uses_path_insertion,
    path_issuer_serves_endpoints_under_the_prefix,
    unknown_well_known_paths_are_json_404,
    cors_on_metadata_jwks_and_token,
    cors_preflight_allows_mcp_headers,
    no_cors_on_authorize,
    jwks_publishes_public_signing_keys_only,
    healthz_is_ok,
    readyz_reflects_the_database,
    html_pages_carry_strict_security_headers,
    https_issuer_is_published_verbatim_and_cookies_are_secure,
);

const OAUTH: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

// ---- RFC 8414 ----

async fn oauth_metadata_describes_the_server(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let res = app.http.get(app.url(OAUTH)).header("mcp-protocol-version", "2026-07-28").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"), "{}", header(&res, "content-type"));
    let doc: Value = res.json().await.unwrap();

    // Byte-identical to the issuer clients were told about: no trailing slash.
    assert_eq!(doc["issuer"], app.base.as_str());
    assert!(!app.base.ends_with('/'));
    assert_eq!(doc["authorization_endpoint"], app.url("/authorize"));
    assert_eq!(doc["token_endpoint"], app.url("/token"));
    assert_eq!(doc["registration_endpoint"], app.url("/register"));
    assert_eq!(doc["jwks_uri"], app.url("/jwks.json"));
    assert_eq!(doc["revocation_endpoint"], app.url("/revoke"));
    assert_eq!(doc["introspection_endpoint"], app.url("/introspect"));
    assert!(strings(&doc["revocation_endpoint_auth_methods_supported"]).contains(&"none"));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);

    let grants = strings(&doc["grant_types_supported"]);
    assert!(grants.contains(&"authorization_code") && grants.contains(&"refresh_token"), "{grants:?}");
    for forbidden in ["implicit", "password"] {
        assert!(!grants.contains(&forbidden), "{forbidden} advertised");
    }
    let methods = strings(&doc["token_endpoint_auth_methods_supported"]);
    for m in ["none", "client_secret_basic", "client_secret_post"] {
        assert!(methods.contains(&m), "{m} not in {methods:?}");
    }
}

async fn metadata_scopes_are_the_union_of_resource_scopes_and_offline_access(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    assert_eq!(scopes(&app, OAUTH).await, with_built_ins(&["mcp:admin", "mcp:tools"]));

    // A second server sharing one scope name: listed once; new scopes appear without a restart.
    app.add_resource(
        "https://other.example.com/mcp",
        &[("mcp:tools", "Tools", true), ("files:read", "Read files", false)],
    )
    .await;
    // Documents are cached for a few seconds (discovery is the hottest path): poll for the change.
    let expected = with_built_ins(&["files:read", "mcp:admin", "mcp:tools"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(7);
    while scopes(&app, OAUTH).await != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(scopes(&app, OAUTH).await, expected);
    assert_eq!(scopes(&app, OIDC).await, expected);
}

async fn metadata_has_no_empty_arrays_or_strings(engine: Engine) {
    // A fresh server without any resource is the likeliest to produce an empty list.
    let bare = TestApp::spawn(engine).await;
    let full = TestApp::spawn_with(engine, "/tenant1", |_| {}).await.with_defaults().await;
    for app in [&bare, &full] {
        for path in [OAUTH, OIDC] {
            let doc = get_json(app, &well_known(app, path)).await;
            assert_no_empty_values(&doc, path);
        }
    }
    assert_eq!(scopes(&bare, OAUTH).await, with_built_ins(&[]));
}

// ---- OIDC discovery ----

async fn oidc_discovery_states_the_same_facts_plus_oidc_fields(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let res = app.http.get(app.url(OIDC)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let oidc: Value = res.json().await.unwrap();
    let oauth = get_json(&app, OAUTH).await;

    for (key, value) in oauth.as_object().unwrap() {
        assert_eq!(oidc.get(key), Some(value), "OIDC discovery disagrees on {key}");
    }
    // OIDC Discovery §3 REQUIRED members (the TS SDK hard-fails without them).
    assert_eq!(oidc["issuer"], app.base.as_str());
    assert_eq!(oidc["jwks_uri"], app.url("/jwks.json"));
    assert_eq!(oidc["response_types_supported"], json!(["code"]));
    assert!(strings(&oidc["subject_types_supported"]).contains(&"public"), "{oidc}");
    assert_eq!(
        (&oidc["request_parameter_supported"], &oidc["request_uri_parameter_supported"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(oidc["code_challenge_methods_supported"], json!(["S256"]));
}

async fn advertised_endpoints_are_served(engine: Engine) {
    for prefix in ["", "/tenant1"] {
        let app = TestApp::spawn_with(engine, prefix, |_| {}).await.with_defaults().await;
        let doc = get_json(&app, &well_known(&app, OAUTH)).await;
        let url = |k: &str| doc[k].as_str().unwrap_or_else(|| panic!("{k} missing")).to_string();

        let res = app.http.get(url("jwks_uri")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{prefix} jwks_uri");
        let res = app.http.post(url("token_endpoint")).send().await.unwrap();
        assert_eq!(res.status(), 400, "{prefix} token_endpoint");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
        let res = app
            .http
            .post(url("registration_endpoint"))
            .json(&json!({ "redirect_uris": ["https://a.example/cb"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{prefix} registration_endpoint");
        let res = app.http.get(url("authorization_endpoint")).send().await.unwrap();
        assert_eq!(res.status(), 400, "{prefix} authorization_endpoint without parameters");
        // Every other advertised endpoint exists where it is advertised (a 4xx error, not a 404).
        for (key, method) in [
            ("revocation_endpoint", Method::POST),
            ("introspection_endpoint", Method::POST),
            ("userinfo_endpoint", Method::GET),
        ] {
            let Some(endpoint) = doc[key].as_str() else { continue };
            let res = app.http.request(method, endpoint).send().await.unwrap();
            let status = res.status().as_u16();
            assert!((400..500).contains(&status) && status != 404 && status != 405, "{prefix} {key}: {status}");
        }
    }
}

// ---- path issuers (RFC 8414 §3 insertion, OIDC appending) ----

async fn path_issuer_metadata_uses_path_insertion(engine: Engine) {
    let app = TestApp::spawn_with(engine, "/tenant1", |_| {}).await.with_defaults().await;
    let origin = app.base.trim_end_matches("/tenant1").to_string();
    assert!(app.base.ends_with("/tenant1") && origin.starts_with("http://127.0.0.1:"));

    let oauth = get_json(&app, &format!("{origin}{OAUTH}/tenant1")).await;
    assert_eq!(oauth["issuer"], app.base.as_str());
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("registration_endpoint", "/register"),
        ("jwks_uri", "/jwks.json"),
    ] {
        assert_eq!(oauth[key], format!("{origin}/tenant1{path}"), "{key}");
    }
    for url in [format!("{origin}{OIDC}/tenant1"), format!("{origin}/tenant1{OIDC}")] {
        let oidc = get_json(&app, &url).await;
        assert_eq!(oidc["issuer"], app.base.as_str(), "{url}");
        assert_eq!(oidc["token_endpoint"], oauth["token_endpoint"], "{url}");
        assert!(oidc["subject_types_supported"].is_array(), "{url}");
    }

    // The root-form URLs belong to another (origin) issuer: not served here.
    for path in [OAUTH, OIDC, "/.well-known/oauth-authorization-server/other"] {
        let res = app.http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string(), "{path}");
    }
}

async fn path_issuer_serves_endpoints_under_the_prefix(engine: Engine) {
    let app = TestApp::spawn_with(engine, "/tenant1", |_| {}).await.with_defaults().await;
    let origin = app.base.trim_end_matches("/tenant1").to_string();

    let res = app.http.post(app.url("/token")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    let res = app.http.get(app.url("/authorize")).send().await.unwrap();
    assert_eq!(res.status(), 400, "GET /tenant1/authorize");
    let res = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /tenant1/login");
    let res = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // The same paths at the origin are not this issuer's.
    for (method, path) in [(Method::POST, "/token"), (Method::GET, "/authorize"), (Method::GET, "/jwks.json")] {
        let res = app.http.request(method, format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path} at the origin");
    }
}

// ---- unknown well-known paths ----

async fn unknown_well_known_paths_are_json_404(engine: Engine) {
    let root = TestApp::spawn(engine).await;
    let tenant = TestApp::spawn_with(engine, "/tenant1", |_| {}).await;
    let tenant_origin = tenant.base.trim_end_matches("/tenant1").to_string();
    let probes = [
        root.url("/.well-known/oauth-protected-resource"),
        root.url("/.well-known/oauth-protected-resource/mcp"),
        root.url("/.well-known/foo"),
        root.url("/.well-known/oauth-authorization-server/mcp"),
        root.url("/.well-known/openid-configuration/mcp"),
        format!("{tenant_origin}{OAUTH}"),
        format!("{tenant_origin}/.well-known/oauth-protected-resource/tenant1"),
    ];
    for url in probes {
        // Clients send `Accept: application/json`; browsers and some tools `text/html`: JSON either way.
        for accept in ["application/json", "text/html,application/xhtml+xml", "*/*"] {
            let res = root
                .http
                .get(&url)
                .header("accept", accept)
                .header("mcp-protocol-version", "2026-07-28")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 404, "{url} ({accept})");
            assert!(
                header(&res, "content-type").starts_with("application/json"),
                "{url} ({accept}): {}",
                header(&res, "content-type")
            );
            let doc: Value = res.json().await.unwrap();
            assert!(doc["error"].is_string(), "{url}: {doc}");
        }
    }
}

// ---- CORS (requirements §2.1.19, §2.1.20) ----

async fn cors_on_metadata_jwks_and_token(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let origin = "http://localhost:6274";
    for path in [OAUTH, OIDC, "/jwks.json"] {
        let res = app
            .http
            .get(app.url(path))
            .header("origin", origin)
            .header("mcp-protocol-version", "2026-07-28")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "access-control-allow-origin"), "*", "{path}");
    }
    // Token errors are readable by the browser client as well.
    let res = app
        .http
        .post(app.url("/token"))
        .header("origin", origin)
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
}

async fn cors_preflight_allows_mcp_headers(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for (path, method) in [
        (OAUTH, "GET"),
        (OIDC, "GET"),
        ("/jwks.json", "GET"),
        ("/token", "POST"),
        ("/register", "POST"),
        ("/register/some-client", "PUT"),
    ] {
        let res = app
            .http
            .request(Method::OPTIONS, app.url(path))
            .header("origin", "http://localhost:6274")
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "mcp-protocol-version,authorization,content-type")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(header(&res, "access-control-allow-origin"), "*", "{path}");
        assert!(header(&res, "access-control-allow-methods").contains(method), "{path}");
        let allowed = header(&res, "access-control-allow-headers").to_ascii_lowercase();
        for h in ["mcp-protocol-version", "authorization", "content-type"] {
            assert!(allowed.contains(h), "{path}: {h} not in {allowed:?}");
        }
    }
}

async fn no_cors_on_authorize(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let client_id = app.public_client("http://127.0.0.1/cb").await;
    let res = app
        .http
        .get(app.url("/authorize"))
        .header("origin", "https://evil.example")
        .query(&[("response_type", "code"), ("client_id", client_id.as_str()), ("redirect_uri", "http://127.0.0.1/cb")])
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "{:?}", res.headers());
    let res = app
        .http
        .request(Method::OPTIONS, app.url("/authorize"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none(), "{:?}", res.headers());
    for path in ["/login", "/consent"] {
        let res = app.http.get(app.url(path)).header("origin", "https://evil.example").send().await.unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none(), "{path}");
    }
}

// ---- JWKS ----

async fn jwks_publishes_public_signing_keys_only(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app.http.get(app.url("/jwks.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty(), "no signing key published");
    let mut kids = Vec::new();
    for key in keys {
        for member in ["kid", "kty", "alg"] {
            assert!(key[member].as_str().is_some_and(|v| !v.is_empty()), "{member} missing in {key}");
        }
        assert_eq!(key["use"], "sig", "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(key.get(private).is_none(), "private member {private} published: {key}");
        }
        kids.push(key["kid"].as_str().unwrap().to_string());
    }
    let n = kids.len();
    kids.sort();
    kids.dedup();
    assert_eq!(kids.len(), n, "duplicate kid");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["kty"], "EC");
}

// ---- health ----

async fn healthz_is_ok(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
}

async fn readyz_reflects_the_database(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    app.db.close().await;
    let res = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(header(&res, "content-type").starts_with("application/json"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["status"], "unavailable");
    // Still alive, and the server keeps answering.
    let res = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.http.get(app.url(OAUTH)).send().await.unwrap();
    assert!(res.status().is_server_error(), "metadata without a database: {}", res.status());
    assert!(res.json::<Value>().await.unwrap()["error"].is_string());
}

/// A resource may not reuse a built-in scope name (`openid` is refused), or if it may, the name is
/// listed once: `scopes_supported` is a set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_scope_named_like_an_oidc_scope_is_not_listed_twice() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    for name in ["email", "profile"] {
        let spec = portcullis::admin::ResourceSpec {
            uri: format!("https://{name}.example.com/mcp"),
            name: "Clash".into(),
            scopes: vec![(name.to_string(), "Clashing scope".to_string(), true)],
            token_lifetime: None,
            ..Default::default()
        };
        if portcullis::admin::add_resource(&app.db, &spec).await.is_ok() {
            scopes(&app, OAUTH).await; // asserts there are no duplicates
        }
    }
}

// ---- HTML pages ----

async fn html_pages_carry_strict_security_headers(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let res = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_html_security_headers(&res, "/login");

    let cookies: Vec<String> =
        res.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("portcullis="))
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    let attrs: Vec<String> = session.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    assert!(attrs.iter().any(|a| a == "httponly"), "{session}");
    assert!(attrs.iter().any(|a| a == "samesite=lax"), "{session}");
    assert!(attrs.iter().any(|a| a == "path=/"), "{session}");

    // Error pages are HTML too and get the same treatment.
    let res = app.http.get(app.url("/authorize")).query(&[("client_id", "unknown")]).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_html_security_headers(&res, "/authorize error");

    // JSON responses are never sniffed either.
    let res = app.http.get(app.url(OAUTH)).send().await.unwrap();
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
}

async fn https_issuer_is_published_verbatim_and_cookies_are_secure(engine: Engine) {
    let app = TestApp::spawn_with(engine, "", |c| c.issuer = Some("https://auth.example.com".into())).await;
    let doc = get_json(&app, OAUTH).await;
    assert_eq!(doc["issuer"], "https://auth.example.com");
    assert_eq!(doc["token_endpoint"], "https://auth.example.com/token");
    assert_eq!(get_json(&app, OIDC).await["issuer"], "https://auth.example.com");

    let res = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cookie = header(&res, "set-cookie");
    let attrs: Vec<String> = cookie.split(';').map(|a| a.trim().to_ascii_lowercase()).collect();
    // `__Host-`: Secure, Path=/, no Domain, so no other host or path can plant or read it.
    assert!(cookie.starts_with("__Host-portcullis="), "{cookie}");
    for required in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == required), "{required} missing: {cookie}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain=")), "{cookie}");
}

// ---- helpers ----

fn assert_html_security_headers(res: &reqwest::Response, what: &str) {
    let csp = header(res, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: CSP {csp:?}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: CSP {csp:?}");
    assert!(!csp.is_empty() && csp.contains("default-src"), "{what}: CSP {csp:?}");
    assert_eq!(header(res, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(res, "x-content-type-options"), "nosniff", "{what}");
}

/// The well-known URL for this app's issuer (RFC 8414 §3 insertion for a path issuer).
fn well_known(app: &TestApp, doc: &str) -> String {
    let u = url::Url::parse(&app.base).unwrap();
    let origin = u.origin().ascii_serialization();
    format!("{origin}{doc}{}", u.path().trim_end_matches('/'))
}

async fn get_json(app: &TestApp, url_or_path: &str) -> Value {
    let url = if url_or_path.starts_with('/') { app.url(url_or_path) } else { url_or_path.to_string() };
    let res = app.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    res.json().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn scopes(app: &TestApp, path: &str) -> Vec<String> {
    let doc = get_json(app, path).await;
    let mut v: Vec<String> = strings(&doc["scopes_supported"]).into_iter().map(str::to_string).collect();
    let n = v.len();
    v.sort();
    v.dedup();
    assert_eq!(v.len(), n, "duplicates in scopes_supported: {doc}");
    v
}

/// Resource scopes plus the ones the server always offers (`offline_access` and the OIDC ones), sorted.
fn with_built_ins(resource_scopes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = resource_scopes
        .iter()
        .chain(&["offline_access", "openid", "profile", "email"])
        .map(|s| s.to_string())
        .collect();
    v.sort();
    v
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|s| s.as_str().expect("string")).collect()
}

/// RFC 8414 §3.2: no zero-element claims; and no `""` anywhere (TS's zod rejects the document).
fn assert_no_empty_values(v: &Value, at: &str) {
    match v {
        Value::String(s) => assert!(!s.is_empty(), "empty string at {at}"),
        Value::Array(a) => {
            assert!(!a.is_empty(), "empty array at {at}");
            a.iter().for_each(|x| assert_no_empty_values(x, at));
        }
        Value::Object(m) => m.iter().for_each(|(k, x)| assert_no_empty_values(x, &format!("{at}.{k}"))),
        Value::Null => panic!("null at {at}"),
        _ => {}
    }
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}
