//! Enterprise-managed authorization (SEP-990): one Portcullis as the company's identity provider
//! issuing ID-JAGs (RFC 8693 token exchange), another as the MCP server's authorization server
//! redeeming them (RFC 7523 jwt-bearer), and every refusal on both sides with nothing written.

use axum::routing::get;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value, json};

use crate::helpers::*;

const SECRET_A: &str = "agent-secret-at-the-identity-provider-0001";
const SECRET_B: &str = "agent-secret-at-the-mcp-authorization-s-02";
const MCP_B: &str = "https://mcp-b.example.com/mcp";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A bare trusted issuer for crafted ID-JAGs: discovery and a key set, nothing else.
struct Forger {
    issuer: String,
    key: Jwk,
    _server: tokio::task::JoinHandle<()>,
}

impl Forger {
    async fn start() -> Forger {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let pair = ES256.generate_key_pair().unwrap();
        let mut key = pair.to_jwk_private_key();
        key.set_key_id("f1");
        let mut public = pair.to_jwk_public_key();
        public.set_key_id("f1");
        let jwks = json!({ "keys": [serde_json::from_str::<Value>(&public.to_string()).unwrap()] });
        let discovery = json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") });
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
            .route("/jwks", get(move || async move { axum::Json(jwks) }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Forger { issuer, key, _server: server }
    }

    fn sign(&self, key: &Jwk, typ: &str, claims: Value) -> String {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id("f1");
        let payload = JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
        josekit::jwt::encode_with_signer(&payload, &header, &ES256.signer_from_jwk(key).unwrap()).unwrap()
    }

    fn id_jag(&self, audience: &str, tweak: impl FnOnce(&mut Map<String, Value>)) -> String {
        let now = portcullis::store::now();
        let mut c = json!({
            "iss": self.issuer, "sub": "u-42", "aud": audience, "client_id": "agent-b",
            "jti": portcullis::tokens::secrets::random_string(12), "iat": now, "exp": now + 300,
            "resource": MCP_B, "scope": "mcp:tools", "email": "erin@example.com", "email_verified": true,
        })
        .as_object()
        .unwrap()
        .clone();
        tweak(&mut c);
        self.sign(&self.key, "oauth-id-jag+jwt", Value::Object(c))
    }
}

struct Pair {
    idp: TestApp,
    mcp_as: TestApp,
    forger: Forger,
}

/// The identity provider (alice, client `agent`) and the MCP server's authorization server
/// (client `agent-b`), each knowing the other's issuer; B also trusts the forger.
async fn pair(engine: Engine) -> Pair {
    let forger = Forger::start().await;
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a, b) = (format!("http://{}", la.local_addr().unwrap()), format!("http://{}", lb.local_addr().unwrap()));
    let client = |id: &str, secret: &str| -> portcullis::config::ClientConfig {
        serde_json::from_value(json!({ "client_id": id, "name": "Agent", "redirect_uris": ["http://127.0.0.1:9/cb"], "client_secret": secret })).unwrap()
    };
    let (ca, cb) = (client("agent", SECRET_A), client("agent-b", SECRET_B));
    let other = client("other", SECRET_A);
    let app: portcullis::federation::enterprise::EnterpriseAppConfig = serde_json::from_value(json!({
        "audience": b, "resources": [MCP_B], "scopes": ["mcp:tools"], "include_email": true,
        "clients": [{ "client_id": "agent", "remote_client_id": "agent-b" }],
    }))
    .unwrap();
    let idp = TestApp::spawn_on(engine, la, "", |c| {
        c.clients = vec![ca, other];
        c.enterprise_apps = vec![app];
    })
    .await
    .with_defaults()
    .await;
    let trust = |issuer: &str| -> portcullis::federation::trusted::TrustedIssuerConfig {
        serde_json::from_value(json!({ "issuer": issuer, "create_people": true, "allow_private_network": true }))
            .unwrap()
    };
    let (ta, tf) = (trust(&a), trust(&forger.issuer));
    let mcp_as = TestApp::spawn_on(engine, lb, "", |c| {
        c.clients = vec![cb];
        c.trusted_identity_providers = vec![ta, tf];
    })
    .await;
    mcp_as.add_resource(MCP_B, &[("mcp:tools", "Use the tools", true), ("mcp:admin", "Administer", false)]).await;
    Pair { idp, mcp_as, forger }
}

async fn post(app: &TestApp, user: &str, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let res =
        reqwest::Client::new().post(app.url("/token")).basic_auth(user, Some(secret)).form(form).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// alice's ID token from the identity provider, for client `agent`.
async fn id_token(idp: &TestApp) -> String {
    let http = browser();
    idp.login(&http, "alice", PASSWORD).await;
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:9/cb";
    let loc = idp
        .authorize_approve(&http, &OAuthParams::authorize("agent", redirect, &challenge).scope("openid mcp:tools"))
        .await;
    let code = query_of(&loc).remove("code").expect("code");
    let (status, body) = post(
        idp,
        "agent",
        SECRET_A,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", redirect),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id_token"].as_str().expect("an ID token").to_string()
}

fn exchange_form<'a>(subject: &'a str, audience: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("requested_token_type", ID_JAG),
        ("subject_token_type", ID_TOKEN),
        ("subject_token", subject),
        ("audience", audience),
        ("resource", MCP_B),
        ("scope", "mcp:tools"),
    ]
}

async fn the_whole_enterprise_chain_works(engine: Engine) {
    let Pair { idp, mcp_as, .. } = pair(engine).await;
    let meta: Value =
        reqwest::get(idp.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert!(meta["grant_types_supported"].as_array().unwrap().contains(&json!(TOKEN_EXCHANGE)));
    let meta: Value =
        reqwest::get(mcp_as.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert!(meta["grant_types_supported"].as_array().unwrap().contains(&json!(JWT_BEARER)));
    assert_eq!(meta["authorization_grant_profiles_supported"], json!(["urn:ietf:params:oauth:grant-profile:id-jag"]));

    let subject = id_token(&idp).await;
    let (status, body) = post(&idp, "agent", SECRET_A, &exchange_form(&subject, &mcp_as.base)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["issued_token_type"].as_str(), body["token_type"].as_str()), (Some(ID_JAG), Some("N_A")));
    let jag = body["access_token"].as_str().unwrap().to_string();
    let (header, claims) = jwt_parts(&jag);
    assert_eq!(header["typ"], "oauth-id-jag+jwt");
    assert_eq!((claims["aud"].as_str(), claims["client_id"].as_str()), (Some(mcp_as.base.as_str()), Some("agent-b")));
    assert_eq!((claims["resource"].as_str(), claims["scope"].as_str()), (Some(MCP_B), Some("mcp:tools")));
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);

    let (status, body) = post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &jag)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    let (_, at) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        (at["aud"].as_str(), at["client_id"].as_str(), at["scope"].as_str()),
        (Some(MCP_B), Some("agent-b"), Some("mcp:tools"))
    );
    assert_eq!(count_rows(&mcp_as.db, "user_identities").await, 1, "the person is linked by (issuer, sub)");
    assert_eq!(count_rows(&mcp_as.db, "grants").await, 1, "recorded as a grant the person can see and revoke");
    // Used once.
    let (status, body) = post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &jag)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let rows = portcullis::store::audit::list(&mcp_as.db, Some("id_jag_redeemed"), 10).await.unwrap();
    assert_eq!(rows.len(), 1);
}

async fn the_identity_provider_refuses_what_policy_does_not_allow(engine: Engine) {
    let Pair { idp, mcp_as, .. } = pair(engine).await;
    let subject = id_token(&idp).await;
    let aud = mcp_as.base.clone();
    let base = exchange_form(&subject, &aud);
    let with = |k: &'static str, v: &'static str| -> Vec<(&str, &str)> {
        base.iter().map(|(n, old)| if *n == k { (*n, v) } else { (*n, *old) }).collect()
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("agent", with("audience", "https://unknown-as.example.com"), "invalid_target", "unknown audience"),
        ("agent", with("resource", "https://other.example.com/mcp"), "invalid_target", "resource not allowed"),
        ("agent", with("scope", "mcp:tools mcp:admin"), "invalid_scope", "scope outside policy"),
        ("other", base.clone(), "access_denied", "client not allowed"),
        ("agent", with("subject_token", "not-a-token"), "invalid_grant", "not an ID token"),
        (
            "agent",
            with("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            "invalid_request",
            "wrong type",
        ),
    ];
    for (client, form, error, what) in cases {
        let (status, body) = post(&idp, client, SECRET_A, &form).await;
        assert_eq!((status >= 400, body["error"].as_str()), (true, Some(error)), "{what}: {body}");
    }
    // An access token is not an ID token.
    let at_form = {
        let http = browser();
        idp.login(&http, "alice", PASSWORD).await;
        let (verifier, challenge) = pkce();
        let loc =
            idp.authorize_approve(&http, &OAuthParams::authorize("agent", "http://127.0.0.1:9/cb", &challenge)).await;
        let code = query_of(&loc).remove("code").unwrap();
        let (_, body) = post(
            &idp,
            "agent",
            SECRET_A,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
            ],
        )
        .await;
        body["access_token"].as_str().unwrap().to_string()
    };
    let form: Vec<(&str, &str)> =
        base.iter().map(|(n, v)| if *n == "subject_token" { (*n, at_form.as_str()) } else { (*n, *v) }).collect();
    let (_, body) = post(&idp, "agent", SECRET_A, &form).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // A disabled person gets nothing.
    portcullis::admin::set_disabled(&idp.db, "alice", true).await.unwrap();
    let (_, body) = post(&idp, "agent", SECRET_A, &base).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let issued = portcullis::store::audit::list(&idp.db, Some("id_jag_issued"), 10).await.unwrap();
    assert!(issued.is_empty(), "nothing was issued");
    let refused = portcullis::store::audit::list(&idp.db, Some("id_jag_issue_refused"), 20).await.unwrap();
    assert!(refused.len() >= 5, "refusals are audited");
}

async fn the_mcp_authorization_server_refuses_bad_id_jags(engine: Engine) {
    let Pair { mcp_as, forger, .. } = pair(engine).await;
    let aud = mcp_as.base.clone();
    let stranger = ES256.generate_key_pair().unwrap().to_jwk_private_key();
    let now = portcullis::store::now();
    let cases: Vec<(&str, String)> = vec![
        ("wrong typ", forger.sign(&forger.key, "JWT", Value::Object(jwt_claims(&forger, &aud)))),
        ("bad signature", forger.sign(&stranger, "oauth-id-jag+jwt", Value::Object(jwt_claims(&forger, &aud)))),
        ("wrong aud", forger.id_jag("https://someone-else.example.com", |_| {})),
        (
            "expired",
            forger.id_jag(&aud, |c| {
                c.insert("exp".into(), json!(now - 600));
                c.insert("iat".into(), json!(now - 900));
            }),
        ),
        (
            "lives too long",
            forger.id_jag(&aud, |c| {
                c.insert("exp".into(), json!(now + 86_400));
            }),
        ),
        (
            "client mismatch",
            forger.id_jag(&aud, |c| {
                c.insert("client_id".into(), json!("someone-else"));
            }),
        ),
        (
            "untrusted issuer",
            forger.id_jag(&aud, |c| {
                c.insert("iss".into(), json!("https://evil.example.com"));
            }),
        ),
    ];
    for (what, jag) in cases {
        let (status, body) =
            post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &jag)]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{what}: {body}");
    }
    let unknown = forger.id_jag(&aud, |c| {
        c.insert("resource".into(), json!("https://unknown.example.com/mcp"));
    });
    let (_, body) = post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &unknown)]).await;
    assert_eq!(body["error"], "invalid_target", "{body}");
    let jag = forger.id_jag(&aud, |_| {});
    let (_, body) = post(
        &mcp_as,
        "agent-b",
        SECRET_B,
        &[("grant_type", JWT_BEARER), ("assertion", &jag), ("scope", "mcp:tools mcp:admin")],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope", "scope outside the ID-JAG: {body}");
    // Nothing was written by any of it but the audit events.
    assert_eq!(count_rows(&mcp_as.db, "users").await, 0);
    assert_eq!(count_rows(&mcp_as.db, "grants").await, 0);
    let refused = portcullis::store::audit::list(&mcp_as.db, Some("id_jag_refused"), 20).await.unwrap();
    assert!(refused.len() >= 9, "{}", refused.len());
    // A good one now works (the scope asked for may narrow), and a disabled person stops.
    let (status, body) =
        post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &forger.id_jag(&aud, |_| {}))])
            .await;
    assert_eq!(status, 200, "{body}");
    let person = portcullis::store::identities::person(&mcp_as.db, &forger.issuer, "u-42").await.unwrap().unwrap();
    portcullis::admin::set_disabled(&mcp_as.db, &person.username, true).await.unwrap();
    let (_, body) =
        post(&mcp_as, "agent-b", SECRET_B, &[("grant_type", JWT_BEARER), ("assertion", &forger.id_jag(&aud, |_| {}))])
            .await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

fn jwt_claims(forger: &Forger, aud: &str) -> Map<String, Value> {
    let (_, c) = jwt_parts(&forger.id_jag(aud, |_| {}));
    c.as_object().unwrap().clone()
}

db_tests!(
    the_whole_enterprise_chain_works,
    the_identity_provider_refuses_what_policy_does_not_allow,
    the_mcp_authorization_server_refuses_bad_id_jags,
);
