//! Introspection (RFC 7662) for MCP servers that prefer asking to verifying JWTs. Callers are
//! resource servers with the credentials `portcullis resource add --introspection` issued; each
//! may introspect only tokens whose audience is itself (RFC 7662 §4). A person's token is live
//! while its grant is; a machine client's (client credentials) while the client keeps its
//! permission for that server.

use serde_json::{Value, json};

use crate::clients::auth::{Authorization, BASIC_CHALLENGE, credentials};
use crate::flows::client_credentials;
use crate::flows::error::ApiError;
use crate::oauth::OAuthError;
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::resources::{self, TokenFacts};
use crate::store::{self};
use crate::tokens::{jwt, secrets};

/// The introspection answer for the token in `params`, to the resource server whose credentials
/// came in `authorization` or `params`.
pub async fn introspect(
    state: &AppState,
    authorization: Authorization<'_>,
    params: &Params,
) -> Result<Value, ApiError> {
    let denied = || {
        ApiError::from(OAuthError::invalid_client("resource server authentication failed"))
            .with_challenge(BASIC_CHALLENGE)
    };
    let creds = credentials(authorization, params).map_err(|_| denied())?;
    let secret = creds.secret.ok_or_else(denied)?;
    // The signature first (CPU only, and bounded by the endpoint's rate limit), so that one query
    // both finds the caller and checks the token. A missing token is reported only to a caller
    // who authenticated.
    let token = params.get("token");
    let claims = match token {
        Some(t) => jwt::verify_access_token(&state.keys, t, &state.settings.issuer, store::now()).await,
        None => None,
    };
    let facts = claims.as_ref().and_then(|c| {
        Some(TokenFacts { jti: &c.jti, user_id: c.sub.parse().ok()?, client_id: &c.client_id, issued_at: c.iat })
    });
    let (caller, live) =
        resources::for_introspection(&state.db, &creds.client_id, facts.as_ref()).await?.ok_or_else(denied)?;
    if !caller.introspection_secret_hash.as_ref().is_some_and(|hash| secrets::verify(&secret, hash)) {
        return Err(denied());
    }
    if token.is_none() {
        return Err(OAuthError::invalid_request("missing parameter token").into());
    }
    // A machine client's token has no person and no grant: its own rule decides.
    let live = match &claims {
        Some(c) if client_credentials::is_machine_token(c) && c.aud == caller.uri => {
            client_credentials::token_live(state, c).await?
        }
        _ => live,
    };
    Ok(match claims {
        // A resource server may introspect only tokens whose audience is itself.
        Some(claims) if live && claims.aud == caller.uri => {
            let mut answer = json!({
                "active": true,
                "iss": state.settings.issuer,
                "sub": claims.sub,
                "aud": claims.aud,
                "client_id": claims.client_id,
                "scope": claims.scope,
                "exp": claims.exp,
                "iat": claims.iat,
                "jti": claims.jti,
                "token_type": "Bearer",
            });
            // RFC 9449 §6.2: a bound token's key, which the resource server checks the proof against.
            if let Some(jkt) = claims.jkt() {
                answer["token_type"] = "DPoP".into();
                answer["cnf"] = json!({ "jkt": jkt });
            }
            answer
        }
        _ => json!({ "active": false }),
    })
}
