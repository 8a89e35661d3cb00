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
    jwt::encode_with_signer(&p, &header, key.signer.as_ref())
}

fn claim(p: &mut JwtPayload, name: &str, v: serde_json::Value) -> Result<(), josekit::JoseError> {
    p.set_claim(name, Some(v))
}
