//! The OAuth steps the setup and the scenarios share: registration, PKCE, the authorization
//! request and its redirect, code redemption, and checking token responses.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::Digest;

use crate::Res;
use crate::http1::{Conn, Response, expect_status, form, snippet};
use crate::setup::Fixture;
use crate::target::Target;

/// A hosted (web) client's redirect: the server answers a client with a grant at once. A public
/// client on a loopback redirect would get the "Continue to <app>" page first (RFC 8252 §8.6).
/// The redirect is never followed.
pub const REDIRECT_URI: &str = "https://load.example/callback";
pub const SCOPE: &str = "mcp:tools";

/// `n` random bytes, base64url: state values, PKCE verifiers, unique names.
pub fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    URL_SAFE_NO_PAD.encode(b)
}

#[derive(Deserialize)]
struct Registered<'a> {
    #[serde(borrow)]
    client_id: Cow<'a, str>,
    #[serde(borrow)]
    registration_access_token: Cow<'a, str>,
    redirect_uris: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Tokens<'a> {
    #[serde(borrow)]
    access_token: Cow<'a, str>,
    #[serde(borrow)]
    token_type: Cow<'a, str>,
    expires_in: i64,
    #[serde(borrow)]
    refresh_token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scope: Option<Cow<'a, str>>,
}

/// The registration request: a public client with the `refresh_token` grant (built once per run).
pub fn register_body() -> String {
    serde_json::json!({
        "client_name": "portcullis-load",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
    .to_string()
}

/// Registers a client; returns its id after checking the response's shape.
pub async fn register_client(c: &mut Conn, t: &Target, body: &str) -> Res<String> {
    let r = c.request("POST", &t.register, &[], Some(("application/json", body.as_bytes()))).await?;
    expect_status(&r, 201, "register")?;
    let reg: Registered = r.json()?;
    if reg.client_id.is_empty() || reg.registration_access_token.is_empty() || reg.redirect_uris.len() != 1 {
        return Err(format!("register: unexpected body {}", snippet(r.text())));
    }
    Ok(reg.client_id.into_owned())
}

/// A hidden form field's value (the CSRF token, `next`, `request_id`), unescaped.
pub fn hidden(html: &str, name: &str) -> Res<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).ok_or_else(|| format!("no hidden field {name} in the page"))? + marker.len();
    let end = html[start..].find('"').ok_or("unterminated value")? + start;
    Ok(html[start..end].replace("&#x2d;", "-").replace("&#x5f;", "_").replace("&amp;", "&"))
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

/// The `/authorize` request for the fixture's MCP server, with PKCE S256 and `state`.
pub fn authorize_path(t: &Target, fx: &Fixture, client_id: &str, pkce: &Pkce, state: &str) -> String {
    authorize_path_for(t, &fx.resource, client_id, pkce, state)
}

/// The `/authorize` request for `resource`.
pub fn authorize_path_for(t: &Target, resource: &str, client_id: &str, pkce: &Pkce, state: &str) -> String {
    let q = form(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT_URI),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("state", state),
        ("resource", resource),
        ("scope", SCOPE),
    ]);
    format!("{}?{q}", t.authorize)
}

/// The code from a redirect to the client, checking `state` and `iss`.
pub fn code_from(location: Option<&str>, t: &Target, state: &str) -> Res<String> {
    let loc = location.ok_or("no Location header")?;
    if !loc.starts_with(REDIRECT_URI) {
        return Err(format!("redirected to {loc} instead of the client"));
    }
    let u = url::Url::parse(loc).map_err(|e| e.to_string())?;
    let (mut code, mut st, mut iss, mut err) = (None, None, None, None);
    for (k, v) in u.query_pairs() {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => st = Some(v.into_owned()),
            "iss" => iss = Some(v.into_owned()),
            "error" => err = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(e) = err {
        return Err(format!("authorization error {e}: {loc}"));
    }
    if st.as_deref() != Some(state) || iss.as_deref() != Some(t.issuer.as_str()) {
        return Err(format!("state or iss wrong in {loc}"));
    }
    code.filter(|c| !c.is_empty()).ok_or_else(|| format!("no code in {loc}"))
}

/// Redeems a code; returns (access token, refresh token).
pub async fn redeem(
    c: &mut Conn,
    t: &Target,
    fx: &Fixture,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> Res<(String, String)> {
    redeem_with(c, t, fx, client_id, code, verifier, None).await
}

/// Redeems a code, with a DPoP proof when given (then the tokens must be `DPoP`).
pub async fn redeem_with(
    c: &mut Conn,
    t: &Target,
    fx: &Fixture,
    client_id: &str,
    code: &str,
    verifier: &str,
    proof: Option<&str>,
) -> Res<(String, String)> {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", client_id),
        ("code_verifier", verifier),
        ("resource", &fx.resource),
    ]);
    let r = match proof {
        Some(p) => c.post_form(&t.token, &[("DPoP", p)], &body).await?,
        None => c.post_form(&t.token, &[], &body).await?,
    };
    expect_status(&r, 200, "token (authorization_code)")?;
    tokens_ok_as(&r, if proof.is_some() { "DPoP" } else { "Bearer" })
}

/// Checks a client credentials answer: a Bearer JWT with the scope, and no refresh token.
pub fn machine_token_ok(r: &Response) -> Res<()> {
    let tok: Tokens = r.json()?;
    if tok.token_type != "Bearer" || tok.expires_in <= 0 || tok.access_token.split('.').count() != 3 {
        return Err(format!("token: unexpected body {}", snippet(r.text())));
    }
    if tok.refresh_token.is_some() || tok.scope.as_deref() != Some(SCOPE) {
        return Err(format!("client_credentials: a refresh token or the wrong scope: {}", snippet(r.text())));
    }
    Ok(())
}

/// Checks a token response's shape; returns (access token, refresh token).
pub fn tokens_ok(r: &Response) -> Res<(String, String)> {
    tokens_ok_as(r, "Bearer")
}

/// As [`tokens_ok`], with the `token_type` expected (`DPoP` for a request with a proof).
pub fn tokens_ok_as(r: &Response, token_type: &str) -> Res<(String, String)> {
    let tok: Tokens = r.json()?;
    if tok.token_type != token_type || tok.expires_in <= 0 || tok.access_token.split('.').count() != 3 {
        return Err(format!("token: unexpected body {}", snippet(r.text())));
    }
    let refresh = tok.refresh_token.ok_or("token: no refresh_token")?;
    Ok((tok.access_token.into_owned(), refresh.into_owned()))
}
