//! UserInfo (OpenID Connect Core §5.3): the person's claims for an access token with `openid`.

use serde_json::{Map, Value, json};

use crate::state::AppState;
use crate::store::resources::{self, TokenFacts};
use crate::store::{self, users};
use crate::tokens::jwt;

/// Why no claims are returned (each answers with its own bearer challenge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserinfoError {
    /// No bearer token was sent.
    MissingToken,
    InvalidToken,
    /// The token was not issued with `openid`.
    InsufficientScope,
    Unavailable,
}

/// The claims for the access token `token`.
pub async fn userinfo(state: &AppState, token: Option<&str>) -> Result<Map<String, Value>, UserinfoError> {
    let token = token.ok_or(UserinfoError::MissingToken)?;
    let now = store::now();
    let claims = jwt::verify_access_token(&state.keys, token.trim(), &state.settings.issuer, now)
        .await
        .ok_or(UserinfoError::InvalidToken)?;
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
