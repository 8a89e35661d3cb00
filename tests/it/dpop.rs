//! DPoP (RFC 9449): bound tokens at /token on the code and refresh grants, every proof rejection
//! (each refused with nothing written: the code still redeems, no refresh token appears), server
//! nonces, `dpop_jkt`, `dpop_bound_access_tokens`, introspection's `cnf`, and /userinfo with
//! `Authorization: DPoP`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Map, Value, json};

use crate::helpers::{Engine, IssuedCode, MCP, OAuthParams, TestApp, count_rows, db_tests, jwt_parts};

const REDIRECT: &str = "https://app.example/cb";

db_tests!(
    a_proof_binds_the_tokens,
    every_bad_proof_is_refused_with_nothing_written,
    refresh_needs_the_same_key,
    nonces_rotate_and_can_be_required,
    dpop_jkt_binds_the_code,
    a_dpop_bound_client_must_send_proofs,
    userinfo_and_introspection_see_the_binding,
);

/// A client's DPoP key, and proofs made with it.
struct DpopKey {
    private: josekit::jwk::Jwk,
    public: Map<String, Value>,
}

/// What a proof says; `Default` is a good proof for `POST {base}/token` now.
#[derive(Clone, Default)]
struct Claims {
    htm: Option<&'static str>,
    htu: Option<String>,
    iat_offset: i64,
    jti: Option<String>,
    nonce: Option<String>,
    ath: Option<String>,
}

impl DpopKey {
    fn new() -> DpopKey {
        let pair = ES256.generate_key_pair().unwrap();
        DpopKey { private: pair.to_jwk_private_key(), public: pair.to_jwk_public_key().as_ref().clone() }
    }

    fn thumbprint(&self) -> String {
        portcullis::oauth::dpop::thumbprint(&self.public).unwrap()
    }

    /// A proof for `url` with `claims`, signed by this key, with `header` members on top.
    fn proof_with(&self, url: &str, claims: &Claims, header: Map<String, Value>) -> String {
        let mut h = JwsHeader::new();
        h.set_token_type("dpop+jwt");
        h.set_claim("jwk", Some(Value::Object(self.public.clone()))).unwrap();
        for (k, v) in header {
            h.set_claim(&k, Some(v)).unwrap();
        }
        let now = portcullis::store::now();
        let mut c = json!({
            "jti": claims.jti.clone().unwrap_or_else(|| portcullis::tokens::secrets::random_string(16)),
            "htm": claims.htm.unwrap_or("POST"),
            "htu": claims.htu.clone().unwrap_or_else(|| url.to_string()),
            "iat": now + claims.iat_offset,
        });
        if let Some(n) = &claims.nonce {
            c["nonce"] = json!(n);
        }
        if let Some(a) = &claims.ath {
            c["ath"] = json!(a);
        }
        let payload = JwtPayload::from_map(c.as_object().unwrap().clone()).unwrap();
        josekit::jwt::encode_with_signer(&payload, &h, &ES256.signer_from_jwk(&self.private).unwrap()).unwrap()
    }

    fn proof(&self, url: &str, claims: &Claims) -> String {
        self.proof_with(url, claims, Map::new())
    }
}

/// POST /token with `form` and, when given, a `DPoP` header: (status, body, DPoP-Nonce).
async fn token(app: &TestApp, form: &OAuthParams, proof: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = app.http.post(app.url("/token")).form(form);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let nonce = res.headers().get("dpop-nonce").map(|v| v.to_str().unwrap().to_string());
    (status, res.json().await.unwrap_or(Value::Null), nonce)
}

fn assert_refused(answer: &(u16, Value, Option<String>), error: &str, why: &str) {
    assert_eq!(answer.0, 400, "{why}: {}", answer.1);
    assert_eq!(answer.1["error"], error, "{why}: {}", answer.1);
    assert!(answer.2.is_some(), "{why}: a DPoP-Nonce on every /token answer");
}

/// What a refusal must leave as it was.
async fn written(app: &TestApp) -> [i64; 3] {
    [
        count_rows(&app.db, "refresh_tokens").await,
        count_rows(&app.db, "revoked_access_tokens").await,
        count_rows(&app.db, "authorization_codes WHERE redeemed_at IS NOT NULL").await,
    ]
}

async fn a_proof_binds_the_tokens(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let meta: Value =
        app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(meta["dpop_signing_alg_values_supported"], json!(["ES256", "ES384", "RS256", "PS256", "EdDSA"]));
    let key = DpopKey::new();
    let url = app.url("/token");
    let issued = app.code_for(REDIRECT, &[]).await;
    let (status, body, nonce) = token(&app, &issued.redeem(), Some(&key.proof(&url, &Claims::default()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert!(nonce.is_some_and(|n| !n.is_empty()));
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], json!(key.thumbprint()));
    // The refresh token of this public client is bound: the same key refreshes it.
    let refresh = OAuthParams::refresh(&issued.client_id, body["refresh_token"].as_str().unwrap());
    let (status, body, _) = token(&app, &refresh, Some(&key.proof(&url, &Claims::default()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(jwt_parts(body["access_token"].as_str().unwrap()).1["cnf"]["jkt"], json!(key.thumbprint()));
    // A client that sends no proof still gets a Bearer token, without cnf (Python accepts only that).
    let plain = app.code_for(REDIRECT, &[]).await;
    let (status, body, nonce) = token(&app, &plain.redeem(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(nonce.is_some());
    assert!(jwt_parts(body["access_token"].as_str().unwrap()).1.get("cnf").is_none());
    let (status, body, _) =
        token(&app, &OAuthParams::refresh(&plain.client_id, body["refresh_token"].as_str().unwrap()), None).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("Bearer")));
}

async fn every_bad_proof_is_refused_with_nothing_written(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let key = DpopKey::new();
    let url = app.url("/token");
    let issued = app.code_for(REDIRECT, &[]).await;
    let form = issued.redeem();
    let before = written(&app).await;
    let header = |pairs: &[(&str, Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Map<_, _>>();
    let used = Claims { jti: Some("used-once".into()), ..Default::default() };
    let cases: Vec<(&str, String)> = vec![
        ("wrong htm", key.proof(&url, &Claims { htm: Some("GET"), ..Default::default() })),
        ("wrong htu", key.proof(&url, &Claims { htu: Some(app.url("/introspect")), ..Default::default() })),
        (
            "another host in htu",
            key.proof(&url, &Claims { htu: Some("https://evil.example/token".into()), ..Default::default() }),
        ),
        ("stale iat", key.proof(&url, &Claims { iat_offset: -400, ..Default::default() })),
        ("future iat", key.proof(&url, &Claims { iat_offset: 120, ..Default::default() })),
        ("typ JWT", key.proof_with(&url, &Claims::default(), header(&[("typ", json!("JWT"))]))),
        (
            "a private key in jwk",
            key.proof_with(&url, &Claims::default(), header(&[("jwk", Value::Object(key.private.as_ref().clone()))])),
        ),
        (
            "signed by another key",
            key.proof_with(&url, &Claims::default(), header(&[("jwk", Value::Object(DpopKey::new().public))])),
        ),
        ("alg none", unsigned(&url)),
        ("alg HS256", hmac_signed(&url)),
        ("not a JWT", "not-a-jwt".into()),
    ];
    for (why, proof) in &cases {
        assert_refused(&token(&app, &form, Some(proof)).await, "invalid_dpop_proof", why);
    }
    // Two DPoP headers.
    let res = app
        .http
        .post(&url)
        .form(&form)
        .header("DPoP", key.proof(&url, &Claims::default()))
        .header("DPoP", key.proof(&url, &Claims::default()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_dpop_proof");
    assert_eq!(written(&app).await, before, "no refusal wrote anything (the code is unspent)");
    // A replayed jti: the first use redeems the code, the second is refused before the grant runs.
    let first = key.proof(&url, &used);
    let (status, body, _) = token(&app, &form, Some(&first)).await;
    assert_eq!(status, 200, "the code was never spent by the refusals: {body}");
    let again = app.code_for(REDIRECT, &[]).await;
    let before = written(&app).await;
    assert_refused(&token(&app, &again.redeem(), Some(&first)).await, "invalid_dpop_proof", "the same proof twice");
    assert_refused(
        &token(&app, &again.redeem(), Some(&key.proof(&url, &used))).await,
        "invalid_dpop_proof",
        "replayed jti",
    );
    assert_eq!(written(&app).await, before);
    let (status, _, _) = token(&app, &again.redeem(), Some(&key.proof(&url, &Claims::default()))).await;
    assert_eq!(status, 200, "a fresh proof redeems the code the replays left unspent");
}

/// A proof with `alg: none` and no signature.
fn unsigned(url: &str) -> String {
    let header = json!({ "typ": "dpop+jwt", "alg": "none", "jwk": DpopKey::new().public });
    let claims = json!({ "jti": "n1", "htm": "POST", "htu": url, "iat": portcullis::store::now() });
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// A proof MACed with HS256, its "key" in the header.
fn hmac_signed(url: &str) -> String {
    let mut h = JwsHeader::new();
    h.set_token_type("dpop+jwt");
    h.set_claim("jwk", Some(json!({ "kty": "oct", "k": URL_SAFE_NO_PAD.encode([7u8; 32]) }))).unwrap();
    let claims = json!({ "jti": "h1", "htm": "POST", "htu": url, "iat": portcullis::store::now() });
    let payload = JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
    let signer = josekit::jws::HS256.signer_from_bytes([7u8; 32]).unwrap();
    josekit::jwt::encode_with_signer(&payload, &h, &signer).unwrap()
}

async fn refresh_needs_the_same_key(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let key = DpopKey::new();
    let url = app.url("/token");
    let issued = app.code_for(REDIRECT, &[]).await;
    let (_, body, _) = token(&app, &issued.redeem(), Some(&key.proof(&url, &Claims::default()))).await;
    let refresh = OAuthParams::refresh(&issued.client_id, body["refresh_token"].as_str().unwrap());
    let before = written(&app).await;
    let other = DpopKey::new();
    assert_refused(
        &token(&app, &refresh, Some(&other.proof(&url, &Claims::default()))).await,
        "invalid_dpop_proof",
        "another key",
    );
    assert_refused(&token(&app, &refresh, None).await, "invalid_dpop_proof", "no proof");
    assert_eq!(written(&app).await, before, "the refresh token was neither rotated nor revoked");
    let (status, body, _) = token(&app, &refresh, Some(&key.proof(&url, &Claims::default()))).await;
    assert_eq!(status, 200, "the holder of the key still refreshes: {body}");
    // The successor keeps the binding.
    let next = OAuthParams::refresh(&issued.client_id, body["refresh_token"].as_str().unwrap());
    assert_refused(
        &token(&app, &next, Some(&other.proof(&url, &Claims::default()))).await,
        "invalid_dpop_proof",
        "successor, another key",
    );
    assert_eq!(token(&app, &next, Some(&key.proof(&url, &Claims::default()))).await.0, 200);
}

async fn nonces_rotate_and_can_be_required(engine: Engine) {
    // Optional (the default): no nonce is fine, a wrong one is refused with a fresh one to use.
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let key = DpopKey::new();
    let url = app.url("/token");
    let issued = app.code_for(REDIRECT, &[]).await;
    let before = written(&app).await;
    let stale = Claims { nonce: Some("bm90LWEtbm9uY2U".into()), ..Default::default() };
    let answer = token(&app, &issued.redeem(), Some(&key.proof(&url, &stale))).await;
    assert_refused(&answer, "use_dpop_nonce", "an unknown nonce");
    assert_eq!(written(&app).await, before);
    let fresh = Claims { nonce: answer.2.clone(), ..Default::default() };
    let (status, body, _) = token(&app, &issued.redeem(), Some(&key.proof(&url, &fresh))).await;
    assert_eq!(status, 200, "the nonce from DPoP-Nonce works: {body}");
    // Required.
    drop(app);
    let app = TestApp::spawn_with(engine, "", |c| c.dpop_nonce_required = true).await.with_defaults().await;
    let url = app.url("/token");
    let issued = app.code_for(REDIRECT, &[]).await;
    let before = written(&app).await;
    let answer = token(&app, &issued.redeem(), Some(&key.proof(&url, &Claims::default()))).await;
    assert_refused(&answer, "use_dpop_nonce", "no nonce where one is required");
    assert_eq!(written(&app).await, before);
    let with_nonce = Claims { nonce: answer.2.clone(), ..Default::default() };
    let (status, body, _) = token(&app, &issued.redeem(), Some(&key.proof(&url, &with_nonce))).await;
    assert_eq!(status, 200, "{body}");
    // A proof without DPoP is still a bearer request: the nonce concerns proofs only.
    let plain = app.code_for(REDIRECT, &[]).await;
    assert_eq!(token(&app, &plain.redeem(), None).await.0, 200);
    // Another node derives its nonce key from the same stored secret, so it accepts this one's.
    let other_node = portcullis::flows::dpop::nonce_key(&app.db).await.unwrap();
    assert!(other_node.accepts(answer.2.as_deref().unwrap(), portcullis::store::now()), "one secret for all nodes");
}

async fn dpop_jkt_binds_the_code(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let key = DpopKey::new();
    let url = app.url("/token");
    let jkt = key.thumbprint();
    let issued: IssuedCode = app.code_for(REDIRECT, &[("dpop_jkt", &jkt)]).await;
    let before = written(&app).await;
    assert_refused(&token(&app, &issued.redeem(), None).await, "invalid_dpop_proof", "no proof for a bound code");
    let other = DpopKey::new();
    assert_refused(
        &token(&app, &issued.redeem(), Some(&other.proof(&url, &Claims::default()))).await,
        "invalid_dpop_proof",
        "another key for a bound code",
    );
    assert_eq!(written(&app).await, before, "the bound code was not spent by the wrong key");
    let (status, body, _) = token(&app, &issued.redeem(), Some(&key.proof(&url, &Claims::default()))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(jwt_parts(body["access_token"].as_str().unwrap()).1["cnf"]["jkt"], json!(jkt));
    // A malformed dpop_jkt is an invalid request, back at the client.
    let client_id = app.approved_client(REDIRECT).await;
    let http = crate::helpers::browser();
    assert_eq!(app.login(&http, "alice", crate::helpers::PASSWORD).await.status(), 200);
    let (_, challenge) = crate::helpers::pkce();
    let query = OAuthParams::authorize(&client_id, REDIRECT, &challenge).with("dpop_jkt", "not-a-thumbprint");
    let res = http.get(app.url("/authorize")).query(&query).send().await.unwrap();
    let loc = crate::helpers::location(&res);
    assert_eq!(crate::helpers::query_of(&loc)["error"], "invalid_request", "{loc}");
}

async fn a_dpop_bound_client_must_send_proofs(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let registered = app
        .register(json!({ "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "dpop_bound_access_tokens": true }))
        .await;
    assert_eq!(registered["dpop_bound_access_tokens"], true, "echoed");
    let client_id = registered["client_id"].as_str().unwrap();
    let issued = app.code_for_client(client_id, REDIRECT, &[]).await;
    let before = written(&app).await;
    assert_refused(
        &token(&app, &issued.redeem(), None).await,
        "invalid_dpop_proof",
        "a dpop_bound_access_tokens client without a proof",
    );
    assert_eq!(written(&app).await, before);
    let key = DpopKey::new();
    let (status, body, _) =
        token(&app, &issued.redeem(), Some(&key.proof(&app.url("/token"), &Claims::default()))).await;
    assert_eq!((status, body["token_type"].as_str()), (200, Some("DPoP")), "{body}");
    let refresh = OAuthParams::refresh(client_id, body["refresh_token"].as_str().unwrap());
    assert_refused(&token(&app, &refresh, None).await, "invalid_dpop_proof", "its refresh without a proof");
    // Registration refuses a non-boolean.
    let res = app
        .http
        .post(app.url("/register"))
        .json(&json!({ "redirect_uris": [REDIRECT], "dpop_bound_access_tokens": "yes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

async fn userinfo_and_introspection_see_the_binding(engine: Engine) {
    let app = TestApp::spawn(engine).await.with_defaults().await;
    let key = DpopKey::new();
    let issued = app.code_for(REDIRECT, &[("scope", "openid mcp:tools")]).await;
    let (_, body, _) = token(&app, &issued.redeem(), Some(&key.proof(&app.url("/token"), &Claims::default()))).await;
    let access = body["access_token"].as_str().unwrap().to_string();
    let userinfo = app.url("/userinfo");
    let ath = portcullis::oauth::dpop::access_token_hash(&access);
    let good = || Claims { htm: Some("GET"), ath: Some(ath.clone()), ..Default::default() };
    let get = |scheme: &'static str, proof: Option<String>| {
        let mut req = app.http.get(&userinfo).header("Authorization", format!("{scheme} {access}"));
        if let Some(p) = proof {
            req = req.header("DPoP", p);
        }
        req.send()
    };
    let res = get("DPoP", Some(key.proof(&userinfo, &good()))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.unwrap()["sub"].is_string());
    let refused = [
        ("as Bearer", get("Bearer", None).await.unwrap(), "invalid_token"),
        ("no proof", get("DPoP", None).await.unwrap(), "invalid_dpop_proof"),
        (
            "bad ath",
            get("DPoP", Some(key.proof(&userinfo, &Claims { ath: Some("x".into()), ..good() }))).await.unwrap(),
            "invalid_dpop_proof",
        ),
        (
            "no ath",
            get("DPoP", Some(key.proof(&userinfo, &Claims { ath: None, ..good() }))).await.unwrap(),
            "invalid_dpop_proof",
        ),
        (
            "another key",
            get("DPoP", Some(DpopKey::new().proof(&userinfo, &good()))).await.unwrap(),
            "invalid_dpop_proof",
        ),
        (
            "wrong htm",
            get("DPoP", Some(key.proof(&userinfo, &Claims { htm: Some("POST"), ..good() }))).await.unwrap(),
            "invalid_dpop_proof",
        ),
    ];
    for (why, res, error) in refused {
        assert_eq!(res.status(), 401, "{why}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(challenge.starts_with("DPoP ") && challenge.contains(error), "{why}: {challenge}");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], error, "{why}");
    }
    // Replaying a proof that worked.
    let once = key.proof(&userinfo, &good());
    assert_eq!(get("DPoP", Some(once.clone())).await.unwrap().status(), 200);
    assert_eq!(get("DPoP", Some(once)).await.unwrap().status(), 401, "a proof is accepted once");
    // Introspection tells the MCP server which key the token is bound to.
    let (id, secret) = portcullis::admin::issue_introspection_credentials(&app.db, MCP).await.unwrap();
    let res = app
        .http
        .post(app.url("/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", &access)])
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(answer["cnf"]["jkt"], json!(key.thumbprint()));
}
