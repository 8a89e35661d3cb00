//! Revocation: a grant revoked by the person, the client or the operator (one audited function
//! for all three), and `/revoke` (RFC 7009). Revoking a refresh token revokes its grant (every
//! refresh token of it, and its access tokens read inactive at introspection); an access token
//! is revoked by `jti`. Unknown tokens, and other clients' tokens, get the same empty answer.

use uuid::Uuid;

use crate::clients::auth::{self as client_auth, Authorization};
use crate::flows::error::ApiError;
use crate::oauth::params::Params;
use crate::state::AppState;
use crate::store::{self, Db, StoreError, audit, grants, refresh, revocations};
use crate::tokens::{jwt, secrets};

/// Who revokes a grant, as the audit event records it.
#[derive(Clone, Copy, Debug)]
pub enum Revoker<'a> {
    /// The person, from their account page.
    Person { username: &'a str, user_id: Uuid },
    /// The client, at `/revoke`, with one of the grant's refresh tokens.
    Client { user_id: Uuid },
    /// The operator, from the command line.
    Operator,
    /// The person's identity provider, by back-channel logout.
    Provider { provider: &'a str, user_id: Uuid },
    /// The MCP server's group policy no longer admits the person.
    Policy { user_id: Uuid },
}

/// Revokes a grant and every refresh token issued under it, and records `grant_revoked`.
/// Returns whether the grant was live. An operator naming a grant that is not live is told so
/// (`false`) and nothing is recorded; a person's or client's revocation is recorded either way,
/// as it is answered either way.
pub async fn revoke_grant(
    db: &Db,
    grant_id: Uuid,
    client_id: Option<&str>,
    by: Revoker<'_>,
    now: i64,
) -> Result<bool, StoreError> {
    let live = grants::revoke(db, grant_id, now).await?;
    let (actor, user_id, who) = match by {
        Revoker::Operator if !live => return Ok(false),
        Revoker::Operator => (Some("cli"), None, "operator"),
        Revoker::Person { username, user_id } => (Some(username), Some(user_id), "person"),
        Revoker::Client { user_id } => (None, Some(user_id), "client"),
        Revoker::Provider { provider, user_id } => (Some(provider), Some(user_id), "identity_provider"),
        Revoker::Policy { user_id } => (Some("policy"), Some(user_id), "group_policy"),
    };
    audit::record(
        db,
        &audit::Event {
            event: "grant_revoked",
            actor,
            user_id,
            client_id,
            details: serde_json::json!({ "grant_id": grant_id, "by": who }),
            ..Default::default()
        },
        now,
    )
    .await?;
    Ok(live)
}

/// `/revoke`: authenticates the client (`token_endpoint` is an audience its assertion may name)
/// and revokes the token if it is the client's.
pub async fn revoke(
    state: &AppState,
    token_endpoint: &str,
    authorization: Authorization<'_>,
    params: &Params,
    from: Option<&crate::net::AddressKey>,
) -> Result<(), ApiError> {
    let client = client_auth::authenticate(state, token_endpoint, authorization, params, from).await?;
    let token = params.require("token")?;
    let now = store::now();
    // The hint only orders the look-ups (RFC 7009 §2.1); a wrong hint still finds the token.
    let access_first = params.get("token_type_hint") == Some("access_token");
    for kind in if access_first { ["access", "refresh"] } else { ["refresh", "access"] } {
        let done = match kind {
            "refresh" => match refresh::by_hash(&state.db, &secrets::hash(token)).await? {
                Some(row) if row.client_id == *client.client_id() => {
                    let by = Revoker::Client { user_id: row.user_id };
                    revoke_grant(&state.db, row.grant_id, Some(client.client_id()), by, now).await?;
                    true
                }
                Some(_) => true,
                None => false,
            },
            _ => match jwt::verify_access_token(&state.keys, token, &state.settings.issuer, now).await {
                Some(claims) if claims.client_id == client.client_id().as_str() => {
                    revocations::revoke_access_token(&state.db, &claims.jti, claims.exp).await?;
                    true
                }
                Some(_) => true,
                None => false,
            },
        };
        if done {
            break;
        }
    }
    Ok(())
}
