//! Client authentication at the token endpoint (OAuth 2.1 §2.4): `none`, `client_secret_basic`
//! (credentials raw or form-encoded: both decode the same, since ours are unreserved characters)
//! and `client_secret_post`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::http::HttpState;
use crate::http::client_assertion;
use crate::http::clients::{self, RegisteredClient};
use crate::http::error::ApiError;
use crate::oauth::OAuthError;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::oauth::params::Params;
use crate::store;
use crate::tokens::secrets;

const BASIC_CHALLENGE: &str = "Basic realm=\"portcullis\", charset=\"UTF-8\"";

#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub secret: Option<String>,
    /// Sent in the Authorization header: failures answer 401 with a Basic challenge.
    pub via_basic: bool,
}

/// Reads the client's credentials from the Authorization header and/or the body.
pub fn credentials(headers: &HeaderMap, params: &Params) -> Result<Credentials, ApiError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        let client_id =
            body_id.ok_or_else(|| OAuthError::invalid_client("client authentication is required: send client_id"))?;
        return Ok(Credentials {
            client_id: client_id.into(),
            secret: body_secret.map(str::to_string),
            via_basic: false,
        });
    };
    let bad =
        || ApiError::from(OAuthError::invalid_client("malformed Basic credentials")).with_challenge(BASIC_CHALLENGE);
    let value = auth.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::from(OAuthError::invalid_client("unsupported client authentication scheme"))
            .with_challenge(BASIC_CHALLENGE));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id);
    let secret = form_decode(secret);
    if body_secret.is_some() {
        return Err(OAuthError::invalid_request("use one client authentication method, not two").into());
    }
    if body_id.is_some_and(|b| b != id) {
        return Err(ApiError::from(OAuthError::invalid_client(
            "client_id in the body does not match the Basic credentials",
        ))
        .with_challenge(BASIC_CHALLENGE));
    }
    Ok(Credentials { client_id: id, secret: Some(secret), via_basic: true })
}

/// RFC 6749 §2.3.1 form-encodes Basic credentials (Python does; the TS SDK sends them raw).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Authenticates the client. Unknown clients get `invalid_client`, so SDKs drop their stored
/// registration and register again.
pub async fn authenticate(
    state: &HttpState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<RegisteredClient, ApiError> {
    if let Some(kind) = params.get("client_assertion_type") {
        if kind != client_assertion::JWT_BEARER {
            return Err(OAuthError::invalid_client(format!("unsupported client_assertion_type {kind:?}")).into());
        }
        if headers.contains_key(header::AUTHORIZATION) || params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request("use one client authentication method, not two").into());
        }
        let assertion = params.require("client_assertion")?;
        let client = client_assertion::authenticate(state, params.get("client_id"), assertion).await?;
        touch(state, &client).await?;
        return Ok(client);
    }
    let creds = credentials(headers, params)?;
    let fail = |msg: &str| {
        let e = ApiError::from(OAuthError::invalid_client(msg));
        if creds.via_basic { e.with_challenge(BASIC_CHALLENGE) } else { e }
    };
    let client = match clients::resolve(state, &creds.client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(fail("unknown client: register again")),
        Err(crate::http::cimd::ResolveError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(fail(&e.public_message())),
    };
    // A document that prefers private_key_jwt but also allows none works either way.
    if client.auth_method() == TokenEndpointAuthMethod::PrivateKeyJwt && !crate::http::cimd::also_none(&client) {
        return Err(fail("this client must authenticate with a private_key_jwt client_assertion"));
    }
    match (&client.row.secret_hash, &creds.secret) {
        (Some(hash), Some(secret)) if secrets::verify(secret, hash) => {}
        (Some(_), Some(_)) => return Err(fail("client authentication failed")),
        (Some(_), None) => {
            return Err(fail("this client must authenticate with its client_secret"));
        }
        (None, Some(_)) => return Err(fail("this is a public client: it has no secret to send")),
        (None, None) => {}
    }
    touch(state, &client).await?;
    Ok(client)
}

/// Records use, at most once a minute per client, so the hot path usually writes nothing.
async fn touch(state: &HttpState, client: &RegisteredClient) -> Result<(), ApiError> {
    let now = store::now();
    if client.row.last_used_at.is_none_or(|t| t < now - 60) {
        store::clients::touch(&state.db, client.client_id(), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(s)).parse().unwrap());
        h
    }

    #[test]
    fn basic_raw_and_form_encoded_decode_alike() {
        let p = Params::parse("client_id=abc").unwrap();
        let c = credentials(&basic("abc:s3cr-t_x"), &p).unwrap();
        assert_eq!(c, Credentials { client_id: "abc".into(), secret: Some("s3cr-t_x".into()), via_basic: true });
        let c = credentials(&basic("a%20b:p%3Aq"), &Params::default()).unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.as_deref()), ("a b", Some("p:q")));
    }

    #[test]
    fn mismatched_or_doubled_credentials_fail() {
        assert!(credentials(&basic("abc:x"), &Params::parse("client_id=other").unwrap()).is_err());
        assert!(credentials(&basic("abc:x"), &Params::parse("client_secret=x").unwrap()).is_err());
        assert!(credentials(&HeaderMap::new(), &Params::default()).is_err());
        let post = credentials(&HeaderMap::new(), &Params::parse("client_id=a&client_secret=b").unwrap()).unwrap();
        assert!(!post.via_basic);
    }
}
