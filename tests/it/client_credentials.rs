//! The client credentials grant for machine clients (MCP ext-auth `oauth-client-credentials`,
//! RFC 6749 §4.4): only clients the operator registered for it, authenticated with a secret or a
//! `private_key_jwt` assertion (RFC 7523, audience rules of rfc7523bis), get a short-lived token
//! for one MCP server they may reach, as themselves; every refusal is the standard error with
//! nothing written.

use std::time::{Duration, SystemTime};

use josekit::jwk::Jwk;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use portcullis::admin::{self, ClientKeys, ClientSpec, ReachSpec};
use portcullis::config::{ClientConfig, ClientResourceConfig, ResourceConfig, ScopeConfig};
use portcullis::store::Db;
use serde_json::{Value, json};

use crate::helpers::{Engine, MCP, OAuthParams, TestApp, count_rows, db_tests, jwt_parts, settings_for};

db_tests!(
    a_secret_client_gets_a_token_for_its_mcp_server,
    a_private_key_jwt_client_gets_a_token,
    bad_assertions_are_invalid_client_and_write_nothing,
    clients_not_registered_for_the_grant_are_unauthorized_client,
    resource_and_scope_outside_the_policy_are_refused,
    introspection_follows_the_clients_permission,
    config_declared_machine_clients_follow_the_file,
    the_authorization_endpoint_refuses_a_machine_client,
    discovery_lists_the_grant_and_how_clients_authenticate,
);

const OTHER: &str = "https://other.example.com/mcp";
const CC: (&str, &str) = ("grant_type", "client_credentials");
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The default fixture plus a second MCP server with its own scope.
async fn app(engine: Engine) -> TestApp {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    app.add_resource(OTHER, &[("other:read", "Read other things", true)]).await;
    app
}

fn reach(uri: &str, scopes: &[&str]) -> ReachSpec {
    ReachSpec { uri: uri.into(), scopes: scopes.iter().map(|s| s.to_string()).collect() }
}

/// A machine client with a secret (returned) and the given reach.
async fn secret_client(app: &TestApp, id: &str, resources: Vec<ReachSpec>) -> String {
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: format!("{id} (machine)"),
        confidential: true,
        grant_types: vec!["client_credentials".into()],
        resources,
        ..Default::default()
    };
    admin::add_client(&app.db, &spec).await.expect("add machine client").secret.expect("a secret")
}

/// A machine client with an inline ES256 key; returns the private key.
async fn key_client(app: &TestApp, id: &str, resources: Vec<ReachSpec>) -> Jwk {
    let (public, private) = ec_key("k1");
    let spec = ClientSpec {
        client_id: Some(id.into()),
        name: format!("{id} (machine)"),
        grant_types: vec!["client_credentials".into()],
        keys: Some(ClientKeys::Jwks(json!({ "keys": [public] }))),
        resources,
        ..Default::default()
    };
    admin::add_client(&app.db, &spec).await.expect("add machine client");
    private
}

fn ec_key(kid: &str) -> (Value, Jwk) {
    let pair = EcKeyPair::generate(EcCurve::P256).expect("key");
    let mut public = pair.to_jwk_public_key();
    public.set_key_id(kid);
    let mut private = pair.to_jwk_private_key();
    private.set_key_id(kid);
    (serde_json::from_str(&public.to_string()).expect("jwk"), private)
}

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// A client assertion signed with `key`; `aud` goes in as given (a string or an array).
fn assertion(key: &Jwk, client_id: &str, aud: Value, exp: u64, jti: &str) -> String {
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id("k1");
    let mut payload = JwtPayload::new();
    payload.set_issuer(client_id);
    payload.set_subject(client_id);
    payload.set_claim("aud", Some(aud)).unwrap();
    payload.set_issued_at(&(SystemTime::UNIX_EPOCH + Duration::from_secs(now())));
    payload.set_expires_at(&(SystemTime::UNIX_EPOCH + Duration::from_secs(exp)));
    payload.set_jwt_id(jti);
    josekit::jwt::encode_with_signer(&payload, &header, &ES256.signer_from_jwk(key).expect("signer")).expect("sign")
}

/// The JOSE header of a JWT.
fn jwt_header(jwt: &str) -> serde_json::Map<String, Value> {
    use base64::Engine;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Re-signs `jwt` with a header without `kid` (josekit's signer adds the key's own).
fn strip_kid(jwt: &str, signer: &dyn josekit::jws::JwsSigner) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = jwt_header(jwt);
    header.remove("kid");
    let head = b64.encode(serde_json::to_vec(&header).unwrap());
    let body = jwt.split('.').nth(1).unwrap();
    let input = format!("{head}.{body}");
    let signature = signer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64.encode(signature))
}

fn jti() -> String {
    portcullis::tokens::secrets::random_string(16)
}

/// POST /token with HTTP Basic credentials: (status, body).
async fn token_basic(app: &TestApp, id: &str, secret: &str, form: &OAuthParams) -> (u16, Value) {
    let res = app.http.post(app.url("/token")).basic_auth(id, Some(secret)).form(form).send().await.expect("token");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn cc() -> OAuthParams {
    OAuthParams::default().with(CC.0, CC.1)
}

fn with_assertion(form: OAuthParams, a: &str) -> OAuthParams {
    form.with("client_assertion_type", ASSERTION_TYPE).with("client_assertion", a)
}

/// Rows a refused request must not add to.
async fn written(db: &Db) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for table in
        ["audit_events", "used_client_assertions", "refresh_tokens", "grants", "revoked_access_tokens", "clients"]
    {
        out.push((table, count_rows(db, table).await));
    }
    out
}

/// The token answer of a machine client: a Bearer JWT for `aud` with `scope`, no refresh token.
fn assert_machine_token(status: u16, body: &Value, client_id: &str, aud: &str, scope: &str) -> Value {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["scope"], scope, "{body}");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none(), "{body}");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!(expires_in > 0 && expires_in <= 900, "{body}");
    let (header, claims) = jwt_parts(body["access_token"].as_str().expect("access_token"));
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], client_id, "sub names the client: {claims}");
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["aud"], aud);
    assert_eq!(claims["scope"], scope);
    assert!(claims.get("auth_time").is_none(), "no person signed in: {claims}");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), expires_in);
    claims
}

async fn introspect(app: &TestApp, creds: &(String, String), token: &str) -> Value {
    let res = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(&creds.0, Some(&creds.1))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), 200);
    res.json().await.expect("json")
}

async fn a_secret_client_gets_a_token_for_its_mcp_server(engine: Engine) {
    let app = app(engine).await;
    let secret = secret_client(&app, "billing-agent", vec![reach(MCP, &["mcp:tools", "mcp:admin"])]).await;
    let rows = written(&app.db).await;

    // The only MCP server it may reach needs no `resource`; no `scope` means all it may get.
    let (status, body) = token_basic(&app, "billing-agent", &secret, &cc()).await;
    let claims = assert_machine_token(status, &body, "billing-agent", MCP, "mcp:admin mcp:tools");
    assert_eq!(claims["iss"], app.base.as_str());

    // client_secret_post, a narrower scope and the resource named (spelled another way).
    let post = cc()
        .with("client_id", "billing-agent")
        .with("client_secret", &secret)
        .scope("mcp:tools")
        .resource("HTTPS://MCP.example.com:443/mcp");
    let (status, body) = app.token(&post).await;
    assert_machine_token(status, &body, "billing-agent", MCP, "mcp:tools");

    // Each token has its audit event; no refresh token, no grant.
    let events = portcullis::store::audit::search(
        &app.db,
        &portcullis::store::audit::Filter {
            event: Some("client_credentials"),
            client_id: Some("billing-agent"),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(events.len(), 2);
    let details: Value = serde_json::from_str(&events[0].details).unwrap();
    assert_eq!(details["resource"], MCP, "{details}");
    assert!(details["jti"].is_string() && details["expires_at"].is_i64(), "{details}");
    let after = written(&app.db).await;
    assert_eq!(after.iter().find(|(t, _)| *t == "audit_events").unwrap().1, rows[0].1 + 2);
    for table in ["refresh_tokens", "grants"] {
        assert_eq!(count_rows(&app.db, table).await, 0, "{table}");
    }

    // Without its secret the client is not authenticated.
    let (status, body) = app.token(&cc().with("client_id", "billing-agent")).await;
    assert_invalid_client(status, &body, "no secret");
    let (status, body) = token_basic(&app, "billing-agent", "wrong-secret", &cc()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    // A machine token reads no person's claims.
    let token = body_token(&token_basic(&app, "billing-agent", &secret, &cc()).await);
    let res = app.http.get(app.url("/userinfo")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 403, "no openid scope, no person");
}

/// `invalid_client`: 401 when the credentials came in the Authorization header, else 400 or 401.
fn assert_invalid_client(status: u16, body: &Value, what: &str) {
    assert!(matches!(status, 400 | 401), "{what}: {status} {body}");
    assert_eq!(body["error"], "invalid_client", "{what}: {body}");
}

fn body_token((status, body): &(u16, Value)) -> String {
    assert_eq!(*status, 200, "{body}");
    body["access_token"].as_str().expect("access_token").to_string()
}

async fn a_private_key_jwt_client_gets_a_token(engine: Engine) {
    let app = app(engine).await;
    let key = key_client(&app, "report-bot", vec![reach(OTHER, &["other:read"])]).await;
    let exp = now() + 60;

    // The issuer as `aud`, as the MCP SDKs send it; no client_id in the body (TS SDK).
    let a = assertion(&key, "report-bot", json!(app.base), exp, &jti());
    let (status, body) = app.token(&with_assertion(cc(), &a)).await;
    assert_machine_token(status, &body, "report-bot", OTHER, "other:read");

    // The token endpoint's URL (RFC 7523 as first published), with client_id and resource sent.
    let a = assertion(&key, "report-bot", json!(app.url("/token")), exp, &jti());
    let form = with_assertion(cc().with("client_id", "report-bot").resource(OTHER).scope("other:read"), &a);
    let (status, body) = app.token(&form).await;
    assert_machine_token(status, &body, "report-bot", OTHER, "other:read");

    // A header that names no key (RFC 7515 leaves `kid` optional; the TypeScript SDK sends none)
    // is tried against every key, though the registered key has a `kid`.
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    let mut payload = JwtPayload::new();
    payload.set_issuer("report-bot");
    payload.set_subject("report-bot");
    payload.set_claim("aud", Some(json!(app.base))).unwrap();
    payload.set_issued_at(&(SystemTime::UNIX_EPOCH + Duration::from_secs(now())));
    payload.set_expires_at(&(SystemTime::UNIX_EPOCH + Duration::from_secs(exp)));
    payload.set_jwt_id(jti());
    let signer = ES256.signer_from_jwk(&key).expect("signer");
    let a = josekit::jwt::encode_with_signer(&payload, &header, &signer).expect("sign");
    let a = strip_kid(&a, &signer);
    assert!(!jwt_header(&a).contains_key("kid"), "the header names no key");
    let (status, body) = app.token(&with_assertion(cc(), &a)).await;
    assert_machine_token(status, &body, "report-bot", OTHER, "other:read");

    // Its keys are its only credential: a secret-style request is refused.
    let (status, body) = app.token(&cc().with("client_id", "report-bot")).await;
    assert_invalid_client(status, &body, "no assertion");
}

async fn bad_assertions_are_invalid_client_and_write_nothing(engine: Engine) {
    let app = app(engine).await;
    let key = key_client(&app, "report-bot", vec![reach(OTHER, &["other:read"])]).await;
    let (_, stranger) = ec_key("k1");
    let exp = now() + 60;
    let used = assertion(&key, "report-bot", json!(app.base), exp, &jti());
    let (status, body) = app.token(&with_assertion(cc(), &used)).await;
    assert_eq!(status, 200, "{body}");

    let rows = written(&app.db).await;
    let cases = [
        ("replayed", used),
        ("wrong aud", assertion(&key, "report-bot", json!("https://other-as.example"), exp, &jti())),
        ("the MCP server as aud", assertion(&key, "report-bot", json!(OTHER), exp, &jti())),
        ("aud an array with the issuer", assertion(&key, "report-bot", json!([app.base]), exp, &jti())),
        (
            "aud an array with the issuer and another server",
            assertion(&key, "report-bot", json!([app.base, "https://other-as.example"]), exp, &jti()),
        ),
        ("expired", assertion(&key, "report-bot", json!(app.base), now() - 5, &jti())),
        ("lives too long", assertion(&key, "report-bot", json!(app.base), now() + 3600, &jti())),
        ("another key", assertion(&stranger, "report-bot", json!(app.base), exp, &jti())),
        ("another client's name", assertion(&key, "billing-agent", json!(app.base), exp, &jti())),
    ];
    for (what, a) in &cases {
        let (status, body) = app.token(&with_assertion(cc(), a)).await;
        assert_invalid_client(status, &body, what);
        if what.starts_with("aud an array") {
            let d = body["error_description"].as_str().unwrap_or_default();
            assert!(d.contains("not an array"), "{what}: {body}");
        }
    }
    assert_eq!(written(&app.db).await, rows, "a refused assertion writes nothing");
}

async fn clients_not_registered_for_the_grant_are_unauthorized_client(engine: Engine) {
    let app = app(engine).await;
    // A dynamic registration asking for the grant: registered, without it.
    let res = app
        .http
        .post(app.url("/register"))
        .json(&json!({
            "client_name": "Self-made agent",
            "redirect_uris": ["https://agent.example/cb"],
            "grant_types": ["client_credentials", "authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let dynamic: Value = res.json().await.unwrap();
    assert_eq!(dynamic["grant_types"], json!(["authorization_code"]), "{dynamic}");
    let (dyn_id, dyn_secret) = (dynamic["client_id"].as_str().unwrap(), dynamic["client_secret"].as_str().unwrap());

    // A metadata-document client (its document cached as if fetched), asking the same.
    let doc = portcullis::oauth::client_metadata::ClientMetadata::from_request(&json!({
        "client_name": "Doc agent",
        "redirect_uris": ["https://doc-agent.example/cb"],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "none"
    }))
    .unwrap();
    let cimd_id = "https://doc-agent.example/client.json";
    portcullis::store::clients::upsert(
        &app.db,
        &portcullis::store::clients::NewClient {
            client_id: cimd_id.into(),
            kind: portcullis::store::clients::ClientKind::MetadataDocument,
            client_name: Some("Doc agent".into()),
            metadata: Value::Object(doc.to_json()),
            secret_hash: None,
            registration_token_hash: None,
            metadata_expires_at: Some(portcullis::store::now() + 3600),
            registered_ip: None,
        },
        portcullis::store::now(),
    )
    .await
    .unwrap();

    // A pre-registered interactive client with a secret, but without the grant.
    let interactive = admin::add_client(
        &app.db,
        &ClientSpec {
            client_id: Some("web-app".into()),
            name: "Web app".into(),
            redirect_uris: vec!["https://web.example/cb".into()],
            confidential: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .secret
    .unwrap();

    let rows = written(&app.db).await;
    for (what, (status, body)) in [
        ("dynamic", token_basic(&app, dyn_id, dyn_secret, &cc().resource(MCP)).await),
        ("metadata document", app.token(&cc().with("client_id", cimd_id).resource(MCP)).await),
        ("without the grant", token_basic(&app, "web-app", &interactive, &cc().resource(MCP)).await),
    ] {
        assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")), "{what}: {body}");
    }
    assert_eq!(written(&app.db).await, rows, "nothing written");
}

async fn resource_and_scope_outside_the_policy_are_refused(engine: Engine) {
    let app = app(engine).await;
    let secret =
        secret_client(&app, "ops-agent", vec![reach(MCP, &["mcp:tools"]), reach(OTHER, &["other:read"])]).await;
    let rows = written(&app.db).await;
    for (what, form, error) in [
        ("no resource with two servers", cc(), "invalid_target"),
        ("an unknown server", cc().resource("https://unknown.example.com/mcp"), "invalid_target"),
        ("not a resource indicator", cc().resource("mcp.example.com"), "invalid_target"),
        ("two servers at once", cc().resource(MCP).resource(OTHER), "invalid_target"),
        ("a scope not allowed", cc().resource(MCP).scope("mcp:admin"), "invalid_scope"),
        ("another server's scope", cc().resource(MCP).scope("other:read"), "invalid_scope"),
        ("openid", cc().resource(MCP).scope("openid mcp:tools"), "invalid_scope"),
    ] {
        let (status, body) = token_basic(&app, "ops-agent", &secret, &form).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(error)), "{what}: {body}");
    }
    assert_eq!(written(&app.db).await, rows, "nothing written");

    // A registered MCP server it may not reach is refused like an unknown one.
    let narrow = secret_client(&app, "narrow-agent", vec![reach(OTHER, &["other:read"])]).await;
    let rows = written(&app.db).await;
    let (status, body) = token_basic(&app, "narrow-agent", &narrow, &cc().resource(MCP)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_target")), "{body}");
    assert_eq!(written(&app.db).await, rows);

    // Each server named: a token for it alone.
    let (status, body) = token_basic(&app, "ops-agent", &secret, &cc().resource(OTHER)).await;
    assert_machine_token(status, &body, "ops-agent", OTHER, "other:read");
    let (status, body) = token_basic(&app, "ops-agent", &secret, &cc().resource(MCP).scope("offline_access")).await;
    assert_machine_token(status, &body, "ops-agent", MCP, "mcp:tools");
}

async fn introspection_follows_the_clients_permission(engine: Engine) {
    let app = app(engine).await;
    let creds = admin::issue_introspection_credentials(&app.db, MCP).await.unwrap();
    let other_creds = admin::issue_introspection_credentials(&app.db, OTHER).await.unwrap();
    let reach_both = || vec![reach(MCP, &["mcp:tools"]), reach(OTHER, &["other:read"])];
    let secret = secret_client(&app, "ops-agent", reach_both()).await;
    let issue = |resource: &'static str| {
        let app = &app;
        let secret = secret.clone();
        async move { body_token(&token_basic(app, "ops-agent", &secret, &cc().resource(resource)).await) }
    };

    // Active until it expires, for its own MCP server only.
    let token = issue(MCP).await;
    let i = introspect(&app, &creds, &token).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!((i["sub"].as_str(), i["client_id"].as_str()), (Some("ops-agent"), Some("ops-agent")), "{i}");
    assert_eq!(introspect(&app, &other_creds, &token).await["active"], false);

    // Revoked by the client (RFC 7009): inactive.
    let res = app
        .http
        .post(app.url("/revoke"))
        .basic_auth("ops-agent", Some(&secret))
        .form(&[("token", token.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&app, &creds, &token).await["active"], false, "revoked");

    // The client removed: its tokens are inactive, and stay so when it is added again.
    let token = issue(MCP).await;
    let other = issue(OTHER).await;
    assert_eq!(introspect(&app, &other_creds, &other).await["active"], true);
    admin::remove_client(&app.db, "ops-agent").await.unwrap();
    assert_eq!(count_rows(&app.db, "client_resources").await, 0, "its reach went with it");
    assert_eq!(introspect(&app, &creds, &token).await["active"], false, "client removed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let secret = secret_client(&app, "ops-agent", reach_both()).await;
    assert_eq!(introspect(&app, &creds, &token).await["active"], false, "not revived by adding it again");
    let fresh = body_token(&token_basic(&app, "ops-agent", &secret, &cc().resource(MCP)).await);
    assert_eq!(introspect(&app, &creds, &fresh).await["active"], true);

    // The MCP server removed (and its permission with it): inactive.
    admin::remove_resource(&app.db, OTHER).await.unwrap();
    assert_eq!(count_rows(&app.db, "client_resources").await, 1);
    assert_eq!(introspect(&app, &creds, &fresh).await["active"], true, "the other server's token lives on");
}

/// A machine client declared in the config file, with its MCP server and an inline key set given
/// as JSON text.
fn declared(public: &Value, scopes: &[&str]) -> impl FnOnce(&mut portcullis::config::Config) {
    let jwks = json!({ "keys": [public] }).to_string();
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    move |c| {
        c.resources = vec![ResourceConfig {
            uri: MCP.into(),
            name: "Declared".into(),
            token_lifetime: Some(portcullis::config::Seconds(3600)),
            scopes: vec![
                ScopeConfig {
                    name: "mcp:tools".into(),
                    description: "Use the tools".into(),
                    default: true,
                    groups: vec![],
                },
                ScopeConfig {
                    name: "mcp:admin".into(),
                    description: "Administer".into(),
                    default: false,
                    groups: vec![],
                },
            ],
            allowed_groups: vec![],
        }];
        c.clients = vec![ClientConfig {
            client_id: "nightly-sync".into(),
            name: "Nightly sync".into(),
            grant_types: Some(vec!["client_credentials".into()]),
            jwks: Some(Value::String(jwks)),
            resources: vec![ClientResourceConfig { uri: MCP.into(), scopes }],
            ..Default::default()
        }];
    }
}

async fn config_declared_machine_clients_follow_the_file(engine: Engine) {
    let (public, key) = ec_key("k1");
    let app = TestApp::spawn_with(engine, "", declared(&public, &["mcp:tools", "mcp:admin"])).await;
    let creds = admin::issue_introspection_credentials(&app.db, MCP).await.unwrap();
    let a = assertion(&key, "nightly-sync", json!(app.base), now() + 60, &jti());
    let (status, body) = app.token(&with_assertion(cc(), &a)).await;
    // The server's token lifetime is an hour; a machine token lives at most 15 minutes.
    let claims = assert_machine_token(status, &body, "nightly-sync", MCP, "mcp:admin mcp:tools");
    assert_eq!(body["expires_in"], 900, "{claims}");
    let token = body["access_token"].as_str().unwrap().to_string();

    // Applying the same file again (a restart, another node) keeps the token live.
    let reapply =
        |scopes: &[&str]| settings_for(&app.test_db.url, &app.base, app.state.settings.bind, declared(&public, scopes));
    admin::apply_config(&app.db, &reapply(&["mcp:tools", "mcp:admin"])).await.unwrap();
    assert_eq!(introspect(&app, &creds, &token).await["active"], true, "re-applied");

    // A scope withdrawn from the client: tokens carrying it are no longer active.
    admin::apply_config(&app.db, &reapply(&["mcp:tools"])).await.unwrap();
    assert_eq!(introspect(&app, &creds, &token).await["active"], false, "scope withdrawn");
    let a = assertion(&key, "nightly-sync", json!(app.base), now() + 60, &jti());
    let (status, body) = app.token(&with_assertion(cc(), &a)).await;
    assert_machine_token(status, &body, "nightly-sync", MCP, "mcp:tools");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &creds, &token).await["active"], true);

    // A declaration start-up would refuse writes nothing: a scope the server does not have.
    let rows = written(&app.db).await;
    let e = admin::apply_config(&app.db, &reapply(&["mcp:tools", "mcp:delete"])).await.unwrap_err();
    assert!(e.to_string().contains("\"mcp:delete\" is not a scope of"), "{e}");
    assert_eq!(written(&app.db).await, rows);
    assert_eq!(introspect(&app, &creds, &token).await["active"], true);
}

async fn the_authorization_endpoint_refuses_a_machine_client(engine: Engine) {
    let app = app(engine).await;
    secret_client(&app, "billing-agent", vec![reach(MCP, &["mcp:tools"])]).await;
    let (_, challenge) = crate::helpers::pkce();
    for redirect in ["https://evil.example/cb", ""] {
        let query = OAuthParams::authorize("billing-agent", redirect, &challenge).state("s");
        let res = app.http.get(app.url("/authorize")).query(&query).send().await.unwrap();
        assert_eq!(res.status(), 400, "an error page, never a redirect");
        let page = res.text().await.unwrap();
        assert!(page.contains("machine client"), "{page}");
    }
}

async fn discovery_lists_the_grant_and_how_clients_authenticate(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let doc: Value = app.http.get(app.url(path)).send().await.unwrap().json().await.unwrap();
        let list = |name: &str| doc[name].as_array().cloned().unwrap_or_default();
        assert!(list("grant_types_supported").contains(&json!("client_credentials")), "{path}: {doc}");
        for m in ["client_secret_basic", "client_secret_post", "private_key_jwt"] {
            assert!(list("token_endpoint_auth_methods_supported").contains(&json!(m)), "{path}: {m}");
        }
        assert_eq!(
            doc["token_endpoint_auth_signing_alg_values_supported"],
            json!(["RS256", "PS256", "ES256", "ES384"])
        );
        assert!(list("revocation_endpoint_auth_methods_supported").contains(&json!("private_key_jwt")), "{path}");
    }
}
