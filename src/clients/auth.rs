//! Client authentication at the token endpoint (OAuth 2.1 §2.4): `none`, `client_secret_basic`
//! (credentials raw or form-encoded: both decode the same, since ours are unreserved characters)
//! and `client_secret_post`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::clients::{self, ClientId, RegisteredClient, assertion};
use crate::oauth::OAuthError;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::{self, StoreError};
use crate::tokens::secrets;

/// The `WWW-Authenticate` challenge of a failed Basic authentication.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"portcullis\", charset=\"UTF-8\"";

/// The request's `Authorization` header, as the HTTP layer read it.
#[derive(Clone, Copy, Debug)]
pub enum Authorization<'a> {
    Absent,
    /// Present but not visible ASCII.
    Unreadable,
    Value(&'a str),
}

/// Why a client was not authenticated.
#[derive(Debug)]
pub enum AuthError {
    /// The OAuth error to answer; `basic` when the credentials came in the Authorization header
    /// (the answer is then 401 with [`BASIC_CHALLENGE`]).
    Rejected {
        error: OAuthError,
        basic: bool,
    },
    Store(StoreError),
}

impl AuthError {
    fn plain(error: OAuthError) -> AuthError {
        AuthError::Rejected { error, basic: false }
    }

    fn basic(error: OAuthError) -> AuthError {
        AuthError::Rejected { error, basic: true }
    }
}

impl From<OAuthError> for AuthError {
    fn from(error: OAuthError) -> Self {
        AuthError::plain(error)
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(e)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: ClientId,
    pub secret: Option<String>,
    /// Sent in the Authorization header: failures answer 401 with a Basic challenge.
    pub via_basic: bool,
}

/// Reads the client's credentials from the Authorization header and/or the body.
pub fn credentials(authorization: Authorization<'_>, params: &Params) -> Result<Credentials, AuthError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let bad = || AuthError::basic(OAuthError::invalid_client("malformed Basic credentials"));
    let value = match authorization {
        Authorization::Absent => {
            let client_id = body_id
                .ok_or_else(|| OAuthError::invalid_client("client authentication is required: send client_id"))?;
            return Ok(Credentials {
                client_id: ClientId::parse(client_id),
                secret: body_secret.map(str::to_string),
                via_basic: false,
            });
        }
        Authorization::Unreadable => return Err(bad()),
        Authorization::Value(v) => v,
    };
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::basic(OAuthError::invalid_client("unsupported client authentication scheme")));
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
        return Err(AuthError::basic(OAuthError::invalid_client(
            "client_id in the body does not match the Basic credentials",
        )));
    }
    Ok(Credentials { client_id: ClientId::parse(id), secret: Some(secret), via_basic: true })
}

/// The client a token request says it is (Basic credentials, `client_id`, or a client
/// assertion's `iss`), before anything is checked: what rate limits key an authenticated
/// request on once the answer shows it was authenticated.
pub fn claimed_client_id(authorization: Authorization<'_>, params: &Params) -> Option<String> {
    if let Ok(creds) = credentials(authorization, params) {
        return Some(creds.client_id.to_string());
    }
    let payload = params.get("client_assertion")?.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// RFC 6749 §2.3.1 form-encodes Basic credentials (Python does; the TS SDK sends them raw).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Authenticates the client. Unknown (or deleted) clients get `invalid_client` with 401 and a
/// `WWW-Authenticate` challenge, so SDKs drop their stored registration and register again. `token_endpoint` is an audience a client assertion may name.
pub async fn authenticate(
    state: &AppState,
    token_endpoint: &str,
    authorization: Authorization<'_>,
    params: &Params,
    from: Option<&crate::net::AddressKey>,
) -> Result<RegisteredClient, AuthError> {
    if let Some(kind) = params.get("client_assertion_type") {
        if kind != assertion::JWT_BEARER {
            return Err(OAuthError::invalid_client(format!("unsupported client_assertion_type {kind:?}")).into());
        }
        if !matches!(authorization, Authorization::Absent) || params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request("use one client authentication method, not two").into());
        }
        let jwt = params.require("client_assertion")?;
        let client = assertion::authenticate(state, token_endpoint, params.get("client_id"), jwt, from).await?;
        touch(state, &client).await?;
        return Ok(client);
    }
    let creds = credentials(authorization, params)?;
    let fail = |msg: &str| AuthError::Rejected { error: OAuthError::invalid_client(msg), basic: creds.via_basic };
    let client = match clients::resolve(state, &creds.client_id, from).await {
        Ok(Some(c)) => c,
        // 401 with a challenge however the client sent its id: hosted clients drop their stored
        // registration and register again only on 401 (a 400 leaves their people stuck). An id
        // the database cannot even hold (Postgres: a NUL) is as unknown.
        Ok(None) | Err(clients::cimd::ResolveError::Store(StoreError::InvalidInput)) => {
            return Err(AuthError::basic(OAuthError::invalid_client("unknown client: register again")));
        }
        Err(clients::cimd::ResolveError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(fail(&e.public_message())),
    };
    // A document that prefers private_key_jwt but also allows none works either way.
    if client.auth_method() == TokenEndpointAuthMethod::PrivateKeyJwt && !clients::cimd::also_none(&client) {
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
async fn touch(state: &AppState, client: &RegisteredClient) -> Result<(), StoreError> {
    let now = store::now();
    if client.row.last_used_at.is_none_or(|t| t < now - 60) {
        store::clients::touch(&state.db, client.client_id(), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!("Basic {}", STANDARD.encode(s))
    }

    #[test]
    fn basic_raw_and_form_encoded_decode_alike() {
        let p = Params::parse("client_id=abc").unwrap();
        let c = credentials(Authorization::Value(&basic("abc:s3cr-t_x")), &p).unwrap();
        assert_eq!(
            c,
            Credentials { client_id: ClientId::parse("abc"), secret: Some("s3cr-t_x".into()), via_basic: true }
        );
        let c = credentials(Authorization::Value(&basic("a%20b:p%3Aq")), &Params::default()).unwrap();
        assert_eq!((c.client_id.as_str(), c.secret.as_deref()), ("a b", Some("p:q")));
    }

    #[test]
    fn mismatched_or_doubled_credentials_fail() {
        assert!(
            credentials(Authorization::Value(&basic("abc:x")), &Params::parse("client_id=other").unwrap()).is_err()
        );
        assert!(
            credentials(Authorization::Value(&basic("abc:x")), &Params::parse("client_secret=x").unwrap()).is_err()
        );
        assert!(credentials(Authorization::Absent, &Params::default()).is_err());
        let post = credentials(Authorization::Absent, &Params::parse("client_id=a&client_secret=b").unwrap()).unwrap();
        assert!(!post.via_basic);
    }
}
