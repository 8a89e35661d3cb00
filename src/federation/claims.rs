//! The checks of a token from an identity provider once its signature holds: the ID token
//! (OpenID Connect Core §3.1.3.7) and the logout token (Back-Channel Logout 1.0 §2.6).

use serde_json::{Map, Value};

use super::provider::TENANT;

/// How far a provider's clock may be off from ours.
pub const SKEW: i64 = 120;
/// The oldest `iat` accepted: a token is redeemed right after it is issued.
pub const MAX_AGE: i64 = 600;

/// Why a token's claims were refused; `reason` is the audit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ClaimError {
    pub reason: &'static str,
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> ClaimError {
    ClaimError { reason, message: message.into() }
}

pub fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    // NumericDate may carry a fraction (RFC 7519 §2).
    claims.get(name).and_then(Value::as_f64).map(|v| v as i64)
}

/// The issuer the token must carry: the configured one, with Entra ID's `{tenantid}` filled in
/// from the token's own `tid` (which must then be an allowed tenant, when any are listed).
pub fn expected_issuer(
    configured: &str,
    claims: &Map<String, Value>,
    allowed_tenants: &[String],
) -> Result<String, ClaimError> {
    if !configured.contains(TENANT) {
        return Ok(configured.to_string());
    }
    let tid = str_claim(claims, "tid").ok_or_else(|| refuse("wrong_issuer", "the token names no tenant (tid)"))?;
    if tid.is_empty() || !tid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(refuse("wrong_issuer", "the token's tenant id is malformed"));
    }
    if !allowed_tenants.is_empty() && !allowed_tenants.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
        return Err(refuse("tenant_not_allowed", format!("tenant {tid} is not allowed to sign in here")));
    }
    Ok(configured.replace(TENANT, tid))
}

fn check_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), ClaimError> {
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&client_id) {
        return Err(refuse("wrong_audience", "the token was issued for another application"));
    }
    // Several audiences, or an `azp` at all: it must name us (OIDC Core §3.1.3.7 items 4 and 5).
    match str_claim(claims, "azp") {
        Some(azp) if azp != client_id => Err(refuse("wrong_audience", "the token was issued to another party (azp)")),
        None if audiences.len() > 1 => Err(refuse("wrong_audience", "the token has several audiences and no azp")),
        _ => Ok(()),
    }
}

fn check_times(claims: &Map<String, Value>, now: i64, need_exp: bool) -> Result<(), ClaimError> {
    match time_claim(claims, "exp") {
        Some(exp) if exp + SKEW <= now => return Err(refuse("expired", "the token has expired")),
        None if need_exp => return Err(refuse("malformed", "the token has no expiry (exp)")),
        _ => {}
    }
    let iat = time_claim(claims, "iat").ok_or_else(|| refuse("malformed", "the token has no issue time (iat)"))?;
    if iat > now + SKEW {
        return Err(refuse("issued_in_future", "the token was issued in the future: check the clocks"));
    }
    if iat < now - MAX_AGE - SKEW {
        return Err(refuse("expired", "the token was issued too long ago"));
    }
    Ok(())
}

/// What an ID token must say for this sign-in.
pub struct IdTokenExpectations<'a> {
    pub issuer: &'a str,
    pub allowed_tenants: &'a [String],
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

/// Checks a verified ID token's claims; `sub` is returned.
pub fn check_id_token(claims: &Map<String, Value>, e: &IdTokenExpectations<'_>) -> Result<String, ClaimError> {
    let issuer = expected_issuer(e.issuer, claims, e.allowed_tenants)?;
    if str_claim(claims, "iss") != Some(issuer.as_str()) {
        return Err(refuse("wrong_issuer", "the token comes from another issuer"));
    }
    check_audience(claims, e.client_id)?;
    check_times(claims, e.now, true)?;
    if str_claim(claims, "nonce") != Some(e.nonce) {
        return Err(refuse("nonce_mismatch", "the token does not belong to this sign-in (nonce)"));
    }
    subject(claims)
}

fn subject(claims: &Map<String, Value>) -> Result<String, ClaimError> {
    match str_claim(claims, "sub") {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 => Ok(sub.to_string()),
        _ => Err(refuse("malformed", "the token names no subject (sub)")),
    }
}

pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a logout token asks to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logout {
    pub sub: Option<String>,
    pub sid: Option<String>,
    pub jti: String,
    pub exp: i64,
}

/// Checks a verified logout token (Back-Channel Logout 1.0 §2.6).
pub fn check_logout_token(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    issuer: &str,
    allowed_tenants: &[String],
    client_id: &str,
    now: i64,
) -> Result<Logout, ClaimError> {
    // `logout+jwt` is recommended; an ID token (which has a nonce and no events) must never pass.
    match str_claim(header, "typ") {
        None | Some("JWT") | Some("jwt") | Some("logout+jwt") => {}
        Some(other) => return Err(refuse("malformed", format!("a logout token cannot have typ {other:?}"))),
    }
    let expected = expected_issuer(issuer, claims, allowed_tenants)?;
    if str_claim(claims, "iss") != Some(expected.as_str()) {
        return Err(refuse("wrong_issuer", "the logout token comes from another issuer"));
    }
    check_audience(claims, client_id)?;
    check_times(claims, now, false)?;
    let has_event =
        claims.get("events").and_then(Value::as_object).is_some_and(|e| e.contains_key(BACKCHANNEL_LOGOUT_EVENT));
    if !has_event {
        return Err(refuse("malformed", "the logout token has no back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(refuse("malformed", "a logout token must not have a nonce"));
    }
    let sub = str_claim(claims, "sub").map(str::to_string);
    let sid = str_claim(claims, "sid").map(str::to_string);
    if sub.is_none() && sid.is_none() {
        return Err(refuse("malformed", "the logout token names neither sub nor sid"));
    }
    let jti = str_claim(claims, "jti").filter(|j| !j.is_empty() && j.len() <= 255);
    let jti = jti.ok_or_else(|| refuse("malformed", "the logout token has no jti"))?.to_string();
    let exp = time_claim(claims, "exp").unwrap_or(now + MAX_AGE);
    Ok(Logout { sub, sid, jti, exp })
}

/// The media type an ID-JAG's `typ` header names (RFC 8725 §3.11).
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The longest an ID-JAG may live: it is redeemed right after it is issued.
pub const ID_JAG_MAX_LIFETIME: i64 = 600;

/// What a verified ID-JAG grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdJag {
    pub sub: String,
    pub jti: String,
    pub exp: i64,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub auth_time: Option<i64>,
}

/// Checks a verified ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §4.3 and RFC 7521
/// §5.2): `typ`, `iss`, `aud` = this server's issuer, `client_id` = the authenticated client,
/// `exp` and `iat` bounded, `jti` and `sub` present.
pub fn check_id_jag(
    header: &Map<String, Value>,
    claims: &Map<String, Value>,
    issuer: &str,
    our_issuer: &str,
    client_id: &str,
    now: i64,
) -> Result<IdJag, ClaimError> {
    let typ = str_claim(header, "typ").unwrap_or_default();
    if !typ.eq_ignore_ascii_case(ID_JAG_TYP) && !typ.eq_ignore_ascii_case("application/oauth-id-jag+jwt") {
        return Err(refuse("wrong_type", format!("the assertion's typ must be {ID_JAG_TYP}")));
    }
    if str_claim(claims, "iss") != Some(issuer) {
        return Err(refuse("wrong_issuer", "the assertion comes from another issuer"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == our_issuer,
        Some(Value::Array(list)) => list.len() == 1 && list[0].as_str() == Some(our_issuer),
        _ => false,
    };
    if !aud_ok {
        return Err(refuse("wrong_audience", "the assertion's aud must be this authorization server's issuer"));
    }
    if str_claim(claims, "client_id") != Some(client_id) {
        return Err(refuse("client_mismatch", "the assertion was issued to another client"));
    }
    let exp = time_claim(claims, "exp").ok_or_else(|| refuse("malformed", "the assertion has no exp"))?;
    if exp + SKEW <= now {
        return Err(refuse("expired", "the assertion has expired"));
    }
    if exp > now + ID_JAG_MAX_LIFETIME + SKEW {
        return Err(refuse("expired", "the assertion lives too long"));
    }
    check_times(claims, now, true)?;
    let jti = str_claim(claims, "jti").filter(|j| !j.is_empty() && j.len() <= 255);
    let jti = jti.ok_or_else(|| refuse("malformed", "the assertion has no jti"))?.to_string();
    Ok(IdJag {
        sub: subject(claims)?,
        jti,
        exp,
        resource: str_claim(claims, "resource").map(str::to_string),
        scope: str_claim(claims, "scope").map(str::to_string),
        email: str_claim(claims, "email").filter(|e| e.contains('@') && e.len() <= 254).map(str::to_string),
        email_verified: matches!(claims.get("email_verified"), Some(Value::Bool(true))),
        auth_time: time_claim(claims, "auth_time"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn expect<'a>(tenants: &'a [String]) -> IdTokenExpectations<'a> {
        IdTokenExpectations {
            issuer: "https://idp.example",
            allowed_tenants: tenants,
            client_id: "pc",
            nonce: "n1",
            now: 1000,
        }
    }

    fn good() -> Value {
        json!({ "iss": "https://idp.example", "aud": "pc", "sub": "u1", "exp": 1300, "iat": 990, "nonce": "n1" })
    }

    #[test]
    fn id_token_claims_are_checked_one_by_one() {
        let none: Vec<String> = vec![];
        assert_eq!(check_id_token(&map(good()), &expect(&none)), Ok("u1".into()));
        let cases = [
            ("iss", json!("https://evil.example"), "wrong_issuer"),
            ("aud", json!("other"), "wrong_audience"),
            ("aud", json!(["pc", "other"]), "wrong_audience"),
            ("azp", json!("other"), "wrong_audience"),
            ("exp", json!(800), "expired"),
            ("iat", json!(2000), "issued_in_future"),
            ("iat", json!(100), "expired"),
            ("nonce", json!("n2"), "nonce_mismatch"),
            ("sub", json!(""), "malformed"),
        ];
        for (claim, value, reason) in cases {
            let mut t = map(good());
            t.insert(claim.into(), value.clone());
            assert_eq!(check_id_token(&t, &expect(&none)).unwrap_err().reason, reason, "{claim} = {value}");
        }
        let mut several = map(good());
        several.insert("aud".into(), json!(["pc", "other"]));
        several.insert("azp".into(), json!("pc"));
        assert!(check_id_token(&several, &expect(&none)).is_ok());
        let mut no_nonce = map(good());
        no_nonce.remove("nonce");
        assert_eq!(check_id_token(&no_nonce, &expect(&none)).unwrap_err().reason, "nonce_mismatch");
    }

    #[test]
    fn entra_multi_tenant_issuers_follow_the_tokens_tenant() {
        let configured = "https://login.microsoftonline.com/{tenantid}/v2.0";
        let claims = map(json!({ "tid": "abc-123" }));
        assert_eq!(
            expected_issuer(configured, &claims, &[]).unwrap(),
            "https://login.microsoftonline.com/abc-123/v2.0"
        );
        let only = vec!["def-456".to_string()];
        assert_eq!(expected_issuer(configured, &claims, &only).unwrap_err().reason, "tenant_not_allowed");
        assert_eq!(expected_issuer(configured, &map(json!({})), &[]).unwrap_err().reason, "wrong_issuer");
        assert!(expected_issuer(configured, &map(json!({ "tid": "x/../y" })), &[]).is_err());
    }

    #[test]
    fn logout_tokens_need_the_event_and_no_nonce() {
        let header = map(json!({ "typ": "logout+jwt" }));
        let good = json!({ "iss": "https://idp.example", "aud": "pc", "sub": "u1", "iat": 990, "jti": "j1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} } });
        let ok = check_logout_token(&header, &map(good.clone()), "https://idp.example", &[], "pc", 1000).unwrap();
        assert_eq!(ok.sub.as_deref(), Some("u1"));
        let mut with_nonce = map(good.clone());
        with_nonce.insert("nonce".into(), json!("n"));
        assert!(check_logout_token(&header, &with_nonce, "https://idp.example", &[], "pc", 1000).is_err());
        let mut no_event = map(good.clone());
        no_event.remove("events");
        assert!(check_logout_token(&header, &no_event, "https://idp.example", &[], "pc", 1000).is_err());
        let id_token_typ = map(json!({ "typ": "at+jwt" }));
        assert!(check_logout_token(&id_token_typ, &map(good), "https://idp.example", &[], "pc", 1000).is_err());
    }
}
