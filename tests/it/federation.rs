//! Company sign-in against a small in-process OpenID provider: the whole flow, group policy,
//! every upstream failure (a page naming the provider, an audit row, nothing else written), and
//! back-channel logout. The interop rig runs the same against node-oidc-provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value, json};

use crate::helpers::*;
use portcullis::config::Config;

const SECRET: &str = "idp-client-secret";
const RESTRICTED: &str = "https://restricted.example.com/mcp";

/// Codes the fake provider issued: code → (the ID token's claims, the PKCE challenge).
type Codes = Arc<Mutex<HashMap<String, (Map<String, Value>, String)>>>;

/// The fake provider: signs ID tokens with an ES256 key; the test decides each token's claims.
#[derive(Clone)]
struct Idp {
    issuer: String,
    key: Arc<Jwk>,
    /// code → (claims, code_challenge)
    codes: Codes,
    token_error: Arc<Mutex<Option<&'static str>>>,
    /// Sign the next ID tokens with this key instead (one the provider never published).
    forge: Arc<Mutex<Option<Jwk>>>,
    /// What `/userinfo` answers for the upstream access token (none: 401).
    userinfo: Arc<Mutex<Option<Value>>>,
    _server: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Idp {
    async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let pair = ES256.generate_key_pair().unwrap();
        let mut private = pair.to_jwk_private_key();
        private.set_key_id("k1");
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("k1");
        let jwks = json!({ "keys": [serde_json::from_str::<Value>(&public.to_string()).unwrap()] });
        let codes: Codes = Default::default();
        let token_error: Arc<Mutex<Option<&'static str>>> = Default::default();
        let forge: Arc<Mutex<Option<Jwk>>> = Default::default();
        let userinfo: Arc<Mutex<Option<Value>>> = Default::default();
        let info = userinfo.clone();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks"),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let key = Arc::new(private);
        let shared = (codes.clone(), token_error.clone(), key.clone(), forge.clone());
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
            .route("/jwks", get(move || async move { axum::Json(jwks) }))
            .route(
                "/userinfo",
                get(move |h: HeaderMap| async move {
                    let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer upstream-at");
                    match (ok, info.lock().unwrap().clone()) {
                        (true, Some(v)) => axum::Json(v).into_response(),
                        _ => StatusCode::UNAUTHORIZED.into_response(),
                    }
                }),
            )
            .route("/token", post(token))
            .with_state(shared);
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp { issuer, key, codes, token_error, forge, userinfo, _server: Arc::new(AbortOnDrop(server)) }
    }

    fn sign(&self, claims: Map<String, Value>, typ: &str) -> String {
        sign_with(&self.key, claims, typ)
    }
}

type Shared = (Codes, Arc<Mutex<Option<&'static str>>>, Arc<Jwk>, Arc<Mutex<Option<Jwk>>>);

fn sign_with(key: &Jwk, claims: Map<String, Value>, typ: &str) -> String {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    header.set_key_id(key.key_id().unwrap_or("k1"));
    let payload = JwtPayload::from_map(claims).unwrap();
    josekit::jwt::encode_with_signer(&payload, &header, &ES256.signer_from_jwk(key).unwrap()).unwrap()
}

/// The provider's token endpoint: client_secret_basic, the code, PKCE.
async fn token(
    State((codes, error, key, forge)): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use base64::Engine;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("portcullis:{SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "error": "invalid_client" }))).into_response();
    }
    if let Some(code) = *error.lock().unwrap() {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": code }))).into_response();
    }
    let Some((claims, challenge)) = codes.lock().unwrap().remove(f.get("code").map(String::as_str).unwrap_or_default())
    else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant" }))).into_response();
    };
    if portcullis::oauth::pkce::s256(f.get("code_verifier").map(String::as_str).unwrap_or_default()) != challenge {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant", "error_description": "pkce" })))
            .into_response();
    }
    let forged = forge.lock().unwrap().clone();
    let id_token = sign_with(forged.as_ref().unwrap_or(&key), claims, "JWT");
    axum::Json(json!({ "access_token": "upstream-at", "token_type": "Bearer", "id_token": id_token })).into_response()
}

fn provider(idp: &Idp, tweak: impl FnOnce(&mut Value)) -> portcullis::federation::provider::ProviderConfig {
    let mut v = json!({
        "id": "company", "name": "Company", "kind": "oidc", "issuer": idp.issuer, "client_id": "portcullis",
        "client_secret": SECRET, "groups_claim": "groups", "create_people": true, "allow_private_network": true,
    });
    tweak(&mut v);
    serde_json::from_value(v).unwrap()
}

async fn app_with(
    engine: Engine,
    idp: &Idp,
    tweak: impl FnOnce(&mut Value),
    config: impl FnOnce(&mut Config),
) -> TestApp {
    let p = provider(idp, tweak);
    let app = TestApp::spawn_with(engine, "", |c| {
        c.identity_providers = vec![p];
        c.password_login = Some(true);
        config(c);
    })
    .await;
    app.add_user("alice").await;
    let spec = portcullis::admin::ResourceSpec {
        uri: RESTRICTED.into(),
        name: "Finance MCP".into(),
        scopes: vec![("read".into(), "Read".into(), true), ("write".into(), "Write".into(), true)],
        allowed_groups: vec!["mcp-users".into()],
        scope_groups: vec![("write".into(), vec!["admins".into()])],
        ..Default::default()
    };
    portcullis::admin::add_resource(&app.db, &spec).await.unwrap();
    app
}

/// The claims of a good ID token for `sub` with this sign-in's nonce.
fn claims(idp: &Idp, sub: &str, nonce: &str, groups: &[&str]) -> Map<String, Value> {
    let now = portcullis::store::now();
    json!({
        "iss": idp.issuer, "aud": "portcullis", "sub": sub, "iat": now, "exp": now + 300, "nonce": nonce,
        "preferred_username": sub, "email": format!("{sub}@example.com"), "email_verified": true,
        "name": format!("{sub} Example"), "groups": groups,
    })
    .as_object()
    .unwrap()
    .clone()
}

/// One browser through /authorize → login page → the provider link; returns the browser, the
/// client's redirect and verifier, and the provider's authorization request.
struct Started {
    http: reqwest::Client,
    client_id: String,
    verifier: String,
    upstream: HashMap<String, String>,
}

const REDIRECT: &str = "http://127.0.0.1:9/cb";

async fn start(app: &TestApp) -> Started {
    let http = browser();
    let client_id = app.public_client(REDIRECT).await;
    let (verifier, challenge) = pkce();
    let q = OAuthParams::authorize(&client_id, REDIRECT, &challenge).resource(RESTRICTED).state("st-1");
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    let login = location(&res);
    let page = http.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with Company"), "{page}");
    let href = page.split("href=\"").find(|s| s.starts_with("/login/company")).unwrap().split('"').next().unwrap();
    let res = http.get(app.url(&href.replace("&amp;", "&"))).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let upstream = query_of(&location(&res));
    assert_eq!(upstream["code_challenge_method"], "S256");
    assert_eq!(upstream["redirect_uri"], app.url("/login/company/callback"));
    Started { http, client_id, verifier, upstream }
}

/// The provider "signs the person in": a code whose token carries `claims`; the browser returns.
async fn come_back(app: &TestApp, idp: &Idp, s: &Started, claims: Map<String, Value>) -> reqwest::Response {
    let code = portcullis::tokens::secrets::random_token();
    idp.codes.lock().unwrap().insert(code.clone(), (claims, s.upstream["code_challenge"].clone()));
    let url = format!("{}?code={code}&state={}", app.url("/login/company/callback"), s.upstream["state"]);
    s.http.get(url).send().await.unwrap()
}

async fn audit_reasons(app: &TestApp) -> Vec<String> {
    let rows = portcullis::store::audit::list(&app.db, None, 1000).await.unwrap();
    rows.into_iter()
        .filter(|r| r.event == "upstream_login_failed")
        .map(|r| serde_json::from_str::<Value>(&r.details).unwrap()["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn company_sign_in_creates_the_person_and_applies_group_policy(engine: Engine) {
    let idp = Idp::start().await;
    let app = app_with(engine, &idp, |_| {}, |_| {}).await;
    let s = start(&app).await;
    let c = claims(&idp, "carol", &s.upstream["nonce"], &["mcp-users", "staff"]);
    let res = come_back(&app, &idp, &s, c).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let consent = location(&res);
    assert!(consent.contains("/consent?request_id="));
    let page = s.http.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Finance MCP") && page.contains(">read<") || page.contains("read"), "{page}");
    assert!(!page.contains("\"write\""), "the write scope is for admins only:\n{page}");
    let res = approve_consent(&s.http, &app.url("/consent"), &page).await;
    let code = query_of(&location(&res)).remove("code").expect("a code");
    let (status, body) = app
        .token(&OAuthParams::code(&s.client_id, &code, &s.verifier).redirect_uri(REDIRECT).resource(RESTRICTED))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "read", "scopes outside the person's groups never reach a token");
    let carols_client = s.client_id.clone();
    let carol = portcullis::store::users::by_username(&app.db, "carol").await.unwrap().expect("carol was created");
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));
    assert!(portcullis::store::identities::person(&app.db, "company", "carol").await.unwrap().is_some());
    let groups = portcullis::store::groups::of_user(&app.db, carol.id).await.unwrap();
    assert!(groups.contains("mcp-users") && groups.contains("staff"));

    // dave is not in mcp-users: a clear page, no code, an audit row.
    let codes_before = count_rows(&app.db, "authorization_codes").await;
    let s = start(&app).await;
    let res = come_back(&app, &idp, &s, claims(&idp, "dave", &s.upstream["nonce"], &["staff"])).await;
    assert_eq!(res.status(), 303);
    let res = s.http.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(page.contains("Finance MCP is limited") && page.contains("mcp-users"), "{page}");
    assert_eq!(count_rows(&app.db, "authorization_codes").await, codes_before);
    let rows = portcullis::store::audit::list(&app.db, None, 1000).await.unwrap();
    assert!(rows.iter().any(|r| r.event == "access_denied_group" && r.actor.as_deref() == Some("dave")));

    // carol leaves mcp-users: her next sign-in records it, and her refresh then fails.
    let refresh = body["refresh_token"].as_str().map(str::to_string);
    let s = start(&app).await;
    come_back(&app, &idp, &s, claims(&idp, "carol", &s.upstream["nonce"], &["staff"])).await;
    let refresh = refresh.expect("a refresh token");
    let (status, body) = app.token(&OAuthParams::refresh(&carols_client, &refresh)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let rows = portcullis::store::audit::list(&app.db, Some("grant_revoked"), 10).await.unwrap();
    assert!(rows.iter().any(|r| r.details.contains("group_policy")), "the grant is revoked by the policy");
}

async fn upstream_failures_end_on_a_page_and_write_only_the_audit_event(engine: Engine) {
    let idp = Idp::start().await;
    let app = app_with(engine, &idp, |v| v["allowed_email_domains"] = json!(["example.com"]), |_| {}).await;
    let other_key = {
        let mut k = ES256.generate_key_pair().unwrap().to_jwk_private_key();
        k.set_key_id("k1");
        k
    };
    type Tweak = Box<dyn Fn(&mut Map<String, Value>)>;
    let cases: Vec<(&str, Tweak, u16)> = vec![
        (
            "nonce_mismatch",
            Box::new(|c| {
                c.insert("nonce".into(), json!("other"));
            }),
            400,
        ),
        (
            "wrong_audience",
            Box::new(|c| {
                c.insert("aud".into(), json!("someone-else"));
            }),
            502,
        ),
        (
            "wrong_issuer",
            Box::new(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            }),
            502,
        ),
        (
            "expired",
            Box::new(|c| {
                c.insert("exp".into(), json!(1000));
            }),
            502,
        ),
        (
            "email_not_verified",
            Box::new(|c| {
                c.insert("email_verified".into(), json!(false));
            }),
            403,
        ),
        (
            "domain_not_allowed",
            Box::new(|c| {
                c.insert("email".into(), json!("x@elsewhere.example"));
            }),
            403,
        ),
    ];
    let people = count_rows(&app.db, "users").await;
    for (reason, tweak, status) in cases {
        let s = start(&app).await;
        let mut c = claims(&idp, "mallory", &s.upstream["nonce"], &["mcp-users"]);
        tweak(&mut c);
        let res = come_back(&app, &idp, &s, c).await;
        assert_eq!(res.status(), status, "{reason}");
        let page = res.text().await.unwrap();
        assert!(page.contains("Company"), "{reason}: the page names the provider:\n{page}");
        assert_eq!(audit_reasons(&app).await.first().map(String::as_str), Some(reason));
    }
    // A token signed with a key the provider never published.
    *idp.forge.lock().unwrap() = Some(other_key);
    let s = start(&app).await;
    let res = come_back(&app, &idp, &s, claims(&idp, "mallory", &s.upstream["nonce"], &[])).await;
    assert_eq!(res.status(), 502);
    assert_eq!(audit_reasons(&app).await.first().map(String::as_str), Some("bad_signature"));
    *idp.forge.lock().unwrap() = None;
    // The provider says no.
    let s = start(&app).await;
    let url = format!("{}?error=access_denied&state={}", app.url("/login/company/callback"), s.upstream["state"]);
    let res = s.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(audit_reasons(&app).await.first().map(String::as_str), Some("provider_error"));
    // A callback whose state this browser never sent.
    let s = start(&app).await;
    let url = format!("{}?code=x&state=not-mine", app.url("/login/company/callback"));
    let res = s.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("another browser"));
    // The token endpoint refuses.
    *idp.token_error.lock().unwrap() = Some("invalid_grant");
    let s = start(&app).await;
    let res = come_back(&app, &idp, &s, claims(&idp, "mallory", &s.upstream["nonce"], &[])).await;
    assert_eq!(res.status(), 502);
    *idp.token_error.lock().unwrap() = None;
    // Nobody was created, linked or signed in by any of it.
    assert_eq!(count_rows(&app.db, "users").await, people);
    assert_eq!(count_rows(&app.db, "user_identities").await, 0);
    assert_eq!(count_rows(&app.db, "grants").await, 0);
    let res = s.http.get(app.url("/account")).send().await.unwrap();
    assert_ne!(res.status(), 200, "not signed in");
}

async fn people_must_exist_unless_the_provider_creates_them(engine: Engine) {
    let idp = Idp::start().await;
    let app = app_with(
        engine,
        &idp,
        |v| {
            v["create_people"] = json!(false);
            v["link_by_email"] = json!(true);
        },
        |_| {},
    )
    .await;
    let s = start(&app).await;
    let res = come_back(&app, &idp, &s, claims(&idp, "erin", &s.upstream["nonce"], &["mcp-users"])).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("no account here yet"));
    assert_eq!(audit_reasons(&app).await.first().map(String::as_str), Some("not_provisioned"));
    // alice exists with that verified email: linked, not duplicated.
    portcullis::store::users::set_profile(&app.db, "alice", None, Some("alice@example.com"), 1).await.unwrap();
    let users = count_rows(&app.db, "users").await;
    let s = start(&app).await;
    let res = come_back(&app, &idp, &s, claims(&idp, "alice", &s.upstream["nonce"], &["mcp-users"])).await;
    assert_eq!(res.status(), 303);
    assert_eq!(count_rows(&app.db, "users").await, users);
    let linked = portcullis::store::identities::person(&app.db, "company", "alice").await.unwrap().unwrap();
    assert_eq!(linked.username, "alice");
}

async fn backchannel_logout_ends_sessions_and_revokes_grants(engine: Engine) {
    let idp = Idp::start().await;
    let app = app_with(engine, &idp, |_| {}, |_| {}).await;
    let s = start(&app).await;
    let mut c = claims(&idp, "carol", &s.upstream["nonce"], &["mcp-users"]);
    c.insert("sid".into(), json!("sess-1"));
    let res = come_back(&app, &idp, &s, c).await;
    let page = s.http.get(app.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    let res = approve_consent(&s.http, &app.url("/consent"), &page).await;
    let code = query_of(&location(&res)).remove("code").unwrap();
    let (_, body) = app
        .token(
            &OAuthParams::code(&s.client_id, &code, &s.verifier)
                .redirect_uri(REDIRECT)
                .resource(RESTRICTED)
                .scope("read offline_access"),
        )
        .await;
    assert_eq!(s.http.get(app.url("/account")).send().await.unwrap().status(), 200);

    let now = portcullis::store::now();
    let logout = |jti: &str, extra: Value| {
        let mut m = json!({ "iss": idp.issuer, "aud": "portcullis", "iat": now, "jti": jti, "sid": "sess-1",
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} } })
        .as_object()
        .unwrap()
        .clone();
        for (k, v) in extra.as_object().unwrap() {
            m.insert(k.clone(), v.clone());
        }
        idp.sign(m, "logout+jwt")
    };
    let post = |token: String| {
        let http = reqwest::Client::new();
        let url = app.url("/login/company/backchannel-logout");
        async move { http.post(url).form(&[("logout_token", token)]).send().await.unwrap() }
    };
    // Refused: a nonce (an ID token in disguise), another audience; nothing changes.
    assert_eq!(post(logout("j0", json!({ "nonce": "n" }))).await.status(), 400);
    assert_eq!(post(logout("j0b", json!({ "aud": "other" }))).await.status(), 400);
    assert_eq!(s.http.get(app.url("/account")).send().await.unwrap().status(), 200);

    let res = post(logout("j1", json!({}))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(post(logout("j1", json!({}))).await.status(), 400, "a logout token is used once");
    assert_ne!(s.http.get(app.url("/account")).send().await.unwrap().status(), 200, "the session ended");
    let refresh = body["refresh_token"].as_str().expect("a refresh token");
    let (status, body) = app.token(&OAuthParams::refresh(&s.client_id, refresh)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let rows = portcullis::store::audit::list(&app.db, None, 1000).await.unwrap();
    assert!(rows.iter().any(|r| r.event == "backchannel_logout"));
}

async fn the_login_page_follows_the_configuration(engine: Engine) {
    let idp = Idp::start().await;
    // Passwords off, one provider: straight there.
    let app = app_with(engine, &idp, |_| {}, |c| c.password_login = Some(false)).await;
    let res = app.http.get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "/login/company");
    let page =
        app.http.post(app.url("/login")).form(&[("username", "alice"), ("password", PASSWORD)]).send().await.unwrap();
    assert_ne!(page.status(), 200, "no password sign-in when it is off");
    // Passwords on: both ways, and a login_hint in the provider's domain goes straight there.
    let idp2 = Idp::start().await;
    let app = app_with(engine, &idp2, |v| v["allowed_email_domains"] = json!(["corp.example"]), |_| {}).await;
    let page = app.http.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Sign in with Company") && page.contains("name=\"password\""), "{page}");
    let client_id = app.public_client(REDIRECT).await;
    let (_, challenge) = pkce();
    let q = OAuthParams::authorize(&client_id, REDIRECT, &challenge)
        .resource(RESTRICTED)
        .with("login_hint", "bob@corp.example");
    let http = browser();
    let res = http.get(app.url("/authorize")).query(&q).send().await.unwrap();
    let res = http.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(res.status(), 302);
    assert!(location(&res).starts_with("/login/company?request_id="));
    let res = http.get(app.url(&location(&res))).send().await.unwrap();
    assert_eq!(query_of(&location(&res))["login_hint"], "bob@corp.example");
}

db_tests!(
    company_sign_in_creates_the_person_and_applies_group_policy,
    upstream_failures_end_on_a_page_and_write_only_the_audit_event,
    people_must_exist_unless_the_provider_creates_them,
    backchannel_logout_ends_sessions_and_revokes_grants,
    the_login_page_follows_the_configuration,
);

/// A fake GitHub: the OAuth token endpoint and the REST API, for one person in `orgs`.
async fn fake_github(orgs: &'static [&'static str]) -> (String, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let authorized =
        |headers: &HeaderMap| headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer gh-token");
    let app =
        axum::Router::new()
            // GitHub answers the code exchange with 200, also for errors; client_secret_post here.
            .route(
                "/login/oauth/access_token",
                post(|Form(f): Form<HashMap<String, String>>| async move {
                    if f.get("client_secret").map(String::as_str) != Some(SECRET) || !f.contains_key("code_verifier") {
                        return axum::Json(json!({ "error": "incorrect_client_credentials" }));
                    }
                    axum::Json(json!({ "access_token": "gh-token", "token_type": "bearer", "scope": "read:user" }))
                }),
            )
            .route(
                "/api/user",
                get(move |h: HeaderMap| async move {
                    if !authorized(&h) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                    }
                    axum::Json(json!({ "id": 4242, "login": "octo-cat", "name": "Octo Cat" })).into_response()
                }),
            )
            .route(
                "/api/user/emails",
                get(|| async {
                    axum::Json(json!([
                        { "email": "octo@users.noreply.example", "primary": false, "verified": true },
                        { "email": "octo@acme.example", "primary": true, "verified": true },
                    ]))
                }),
            )
            .route(
                "/api/user/orgs",
                get(move || async move {
                    axum::Json(json!(orgs.iter().map(|o| json!({ "login": o })).collect::<Vec<_>>()))
                }),
            )
            .route(
                "/api/user/teams",
                get(move || async move {
                    let teams: Vec<Value> =
                        orgs.iter().map(|o| json!({ "slug": "platform", "organization": { "login": o } })).collect();
                    axum::Json(json!(teams))
                }),
            );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, AbortOnDrop(server))
}

async fn github_sign_in_uses_organisations_as_groups(engine: Engine) {
    for (orgs, allowed) in [(&["Acme"][..], true), (&["elsewhere"][..], false)] {
        let (base, _server) = fake_github(orgs).await;
        let p: portcullis::federation::provider::ProviderConfig = serde_json::from_value(json!({
            "id": "github", "name": "GitHub", "kind": "github", "client_id": "gh-client", "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_post", "allowed_organizations": ["acme"],
            "create_people": true, "allow_private_network": true, "github_url": base, "github_api_url": format!("{base}/api"),
        }))
        .unwrap();
        let app = TestApp::spawn_with(engine, "", |c| c.identity_providers = vec![p]).await;
        let http = browser();
        let res = http.get(app.url("/login")).send().await.unwrap();
        assert_eq!(location(&res), "/login/github", "passwords are off by default with a provider");
        let res = http.get(app.url("/login/github")).send().await.unwrap();
        let upstream = query_of(&location(&res));
        assert!(location(&res).starts_with(&format!("{base}/login/oauth/authorize?")));
        assert!(!upstream.contains_key("nonce"), "GitHub is not OpenID Connect");
        let callback = format!("{}?code=c1&state={}", app.url("/login/github/callback"), upstream["state"]);
        let res = http.get(callback).send().await.unwrap();
        if allowed {
            assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
            let octo = portcullis::store::users::by_username(&app.db, "octo-cat").await.unwrap().expect("created");
            assert_eq!(octo.email.as_deref(), Some("octo@acme.example"));
            let groups = portcullis::store::groups::of_user(&app.db, octo.id).await.unwrap();
            assert!(groups.contains("acme") && groups.contains("acme/platform"), "{groups}");
            assert!(portcullis::store::identities::person(&app.db, "github", "4242").await.unwrap().is_some());
        } else {
            assert_eq!(res.status(), 403);
            assert!(res.text().await.unwrap().contains("organisation"));
            assert_eq!(audit_reasons(&app).await.first().map(String::as_str), Some("organization_not_allowed"));
            assert_eq!(count_rows(&app.db, "users").await, 0);
        }
    }
}

db_tests!(github_sign_in_uses_organisations_as_groups);

async fn claims_missing_from_the_id_token_come_from_userinfo(engine: Engine) {
    let idp = Idp::start().await;
    let app = app_with(engine, &idp, |_| {}, |_| {}).await;
    // The ID token has no groups; userinfo has them (for the same sub).
    *idp.userinfo.lock().unwrap() = Some(json!({ "sub": "frank", "groups": ["mcp-users"] }));
    let s = start(&app).await;
    let mut c = claims(&idp, "frank", &s.upstream["nonce"], &[]);
    c.remove("groups");
    let res = come_back(&app, &idp, &s, c).await;
    assert_eq!(res.status(), 303);
    let frank = portcullis::store::users::by_username(&app.db, "frank").await.unwrap().unwrap();
    assert!(portcullis::store::groups::of_user(&app.db, frank.id).await.unwrap().contains("mcp-users"));
    // Userinfo naming someone else is refused.
    *idp.userinfo.lock().unwrap() = Some(json!({ "sub": "someone-else", "groups": ["mcp-users"] }));
    let s = start(&app).await;
    let mut c = claims(&idp, "grace", &s.upstream["nonce"], &[]);
    c.remove("groups");
    let res = come_back(&app, &idp, &s, c).await;
    assert_eq!(res.status(), 502);
    assert!(portcullis::store::users::by_username(&app.db, "grace").await.unwrap().is_none());
}

db_tests!(claims_missing_from_the_id_token_come_from_userinfo);
