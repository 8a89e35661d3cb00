//! UserInfo (OpenID Connect Core §5.3): the person's claims for an access token with `openid`.

use serde_json::{Map, Value, json};

use crate::flows::dpop::{self, Nonces, ProofHeader};
use crate::state::AppState;
use crate::store::resources::{self, TokenFacts};
use crate::store::{self, users};
use crate::tokens::jwt;

/// Why no claims are returned (each answers with its own bearer challenge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserinfoError {
    /// No bearer token was sent.
    MissingToken,
    InvalidToken,
    /// The token was not issued with `openid`.
    InsufficientScope,
    Unavailable,
    /// A DPoP-bound token sent as a bearer token, or a bearer token with the DPoP scheme.
    WrongScheme,
    /// The DPoP proof is missing or fails a check (the reason for the client).
    InvalidDpopProof(String),
}

/// How the access token came (RFC 6750 `Bearer`, or RFC 9449 §7 `DPoP` with its proof).
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Absent,
    Bearer(&'a str),
    Dpop { token: &'a str, proof: ProofHeader<'a> },
}

/// A UserInfo request: the credential, and the method and URL a DPoP proof must name.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub credential: Credential<'a>,
    pub method: &'a str,
    pub url: &'a str,
}

/// The claims for the request's access token.
pub async fn userinfo(state: &AppState, request: Request<'_>) -> Result<Map<String, Value>, UserinfoError> {
    let (token, proof) = match request.credential {
        Credential::Absent => return Err(UserinfoError::MissingToken),
        Credential::Bearer(t) => (t.trim(), None),
        Credential::Dpop { token, proof } => (token.trim(), Some(proof)),
    };
    let now = store::now();
    let claims = jwt::verify_access_token(&state.keys, token, &state.settings.issuer, now)
        .await
        .ok_or(UserinfoError::InvalidToken)?;
    // A bound token only with its proof (RFC 9449 §7.1): a copied token alone gets nothing.
    match (claims.jkt(), proof) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => return Err(UserinfoError::WrongScheme),
        (Some(jkt), Some(header)) => {
            let invalid = |e: crate::oauth::OAuthError| UserinfoError::InvalidDpopProof(e.description);
            let checked = dpop::verify(state, header, request.method, request.url, Some(token), Nonces::Checked)
                .map_err(invalid)?
                .ok_or_else(|| UserinfoError::InvalidDpopProof("the DPoP header is missing".into()))?;
            if checked.jkt != jkt {
                return Err(UserinfoError::InvalidDpopProof(
                    "the DPoP proof is signed by another key than the token is bound to".into(),
                ));
            }
            dpop::remember(state, &checked).await.map_err(|e| match e.error.code {
                crate::oauth::ErrorCode::InvalidDpopProof => UserinfoError::InvalidDpopProof(e.error.description),
                _ => UserinfoError::Unavailable,
            })?;
        }
    }
    let scopes: Vec<&str> = claims.scope.split(' ').collect();
    if !scopes.contains(&"openid") {
        return Err(UserinfoError::InsufficientScope);
    }
    let Ok(user_id) = claims.sub.parse::<uuid::Uuid>() else {
        return Err(UserinfoError::InvalidToken);
    };
    let user = users::by_id(&state.db, user_id).await;
    // Live as introspection judges it: a revoked token, a revoked grant or a disabled person
    // gets no claims.
    let facts = TokenFacts { jti: &claims.jti, user_id, client_id: &claims.client_id, issued_at: claims.iat };
    let live = resources::access_token_live(&state.db, &claims.aud, &facts).await;
    match (user, live) {
        (Ok(Some(u)), Ok(true)) if !u.disabled => Ok(profile_claims(&u, &scopes)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "userinfo lookup failed");
            Err(UserinfoError::Unavailable)
        }
        _ => Err(UserinfoError::InvalidToken),
    }
}

/// `sub`, plus `profile` and `email` claims as the scopes allow. Shared with the ID token.
pub fn profile_claims(u: &users::User, scopes: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(u.id.to_string()));
    if scopes.contains(&"profile") {
        m.insert("preferred_username".into(), json!(u.username));
        if let Some(name) = &u.display_name {
            m.insert("name".into(), json!(name));
        }
    }
    if scopes.contains(&"email")
        && let Some(email) = &u.email
    {
        m.insert("email".into(), json!(email));
        m.insert("email_verified".into(), json!(false));
    }
    m
}
