//! RFC 9068 JWT access tokens.

use josekit::jws::JwsHeader;
use josekit::jwt::{self, JwtPayload};

use crate::tokens::keys::LoadedKey;

#[derive(Clone, Debug)]
pub struct AccessTokenClaims<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub issued_at: i64,
    pub expires_at: i64,
    pub jti: &'a str,
    pub auth_time: Option<i64>,
}

pub fn mint_access_token(key: &LoadedKey, c: &AccessTokenClaims<'_>) -> Result<String, josekit::JoseError> {
    mint_bound_access_token(key, c, None)
}

/// An access token bound to a DPoP key (RFC 9449 §6.1: `cnf.jkt`, the key's thumbprint) when
/// `jkt` is given; a bearer token otherwise.
pub fn mint_bound_access_token(
    key: &LoadedKey,
    c: &AccessTokenClaims<'_>,
    jkt: Option<&str>,
) -> Result<String, josekit::JoseError> {
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id(&key.kid);
    let mut p = JwtPayload::new();
    p.set_issuer(c.issuer);
    p.set_subject(c.subject);
    p.set_audience(vec![c.audience]);
    p.set_jwt_id(c.jti);
    claim(&mut p, "client_id", c.client_id.into())?;
    claim(&mut p, "scope", c.scope.into())?;
    claim(&mut p, "iat", c.issued_at.into())?;
    claim(&mut p, "exp", c.expires_at.into())?;
    if let Some(t) = c.auth_time {
        claim(&mut p, "auth_time", t.into())?;
    }
    if let Some(jkt) = jkt {
        claim(&mut p, "cnf", serde_json::json!({ "jkt": jkt }))?;
    }
    jwt::encode_with_signer(&p, &header, key.signer.as_ref())
}

/// An OpenID Connect ID token; `claims` already holds `sub` and the profile claims.
pub fn mint_id_token(
    key: &LoadedKey,
    issuer: &str,
    client_id: &str,
    mut claims: serde_json::Map<String, serde_json::Value>,
    now: i64,
    lifetime: i64,
) -> Result<String, josekit::JoseError> {
    let mut header = JwsHeader::new();
    header.set_token_type("JWT");
    header.set_key_id(&key.kid);
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), client_id.into());
    claims.insert("azp".into(), client_id.into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + lifetime).into());
    let p = JwtPayload::from_map(claims)?;
    jwt::encode_with_signer(&p, &header, key.signer.as_ref())
}

/// A JWT of this server with the given `typ` (an ID-JAG's `oauth-id-jag+jwt`); `claims` complete.
pub fn sign_typed(
    key: &LoadedKey,
    typ: &str,
    claims: serde_json::Map<String, serde_json::Value>,
) -> Result<String, josekit::JoseError> {
    let mut header = JwsHeader::new();
    header.set_token_type(typ);
    header.set_key_id(&key.kid);
    jwt::encode_with_signer(&JwtPayload::from_map(claims)?, &header, key.signer.as_ref())
}

fn claim(p: &mut JwtPayload, name: &str, v: serde_json::Value) -> Result<(), josekit::JoseError> {
    p.set_claim(name, Some(v))
}

/// The claims of an access token this server issued, after its signature, type, issuer and
/// expiry were checked.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct VerifiedAccessToken {
    pub sub: String,
    #[serde(deserialize_with = "one_audience")]
    pub aud: String,
    pub client_id: String,
    #[serde(default)]
    pub scope: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// RFC 7800 confirmation: `{"jkt": ...}` on a DPoP-bound token.
    #[serde(default)]
    pub cnf: Option<Confirmation>,
}

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct Confirmation {
    pub jkt: String,
}

impl VerifiedAccessToken {
    /// The thumbprint of the DPoP key the token is bound to, if it is bound.
    pub fn jkt(&self) -> Option<&str> {
        self.cnf.as_ref().map(|c| c.jkt.as_str())
    }
}

fn one_audience<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    match Aud::deserialize(d)? {
        Aud::One(a) => Ok(a),
        Aud::Many(v) if v.len() == 1 => Ok(v.into_iter().next().unwrap_or_default()),
        Aud::Many(_) => Err(serde::de::Error::custom("expected one audience")),
    }
}

use serde::Deserialize;

/// Validates an access token: our signature, `typ: at+jwt`, our issuer, not expired.
pub async fn verify_access_token(
    keys: &crate::tokens::keys::KeyRing,
    token: &str,
    issuer: &str,
    now: i64,
) -> Option<VerifiedAccessToken> {
    let (claims, typ) = keys.verify(token).await?;
    if typ.as_str() != Some("at+jwt") || claims.get("iss").and_then(|v| v.as_str()) != Some(issuer) {
        return None;
    }
    let claims: VerifiedAccessToken = serde_json::from_value(serde_json::Value::Object(claims)).ok()?;
    (claims.exp > now).then_some(claims)
}
