//! The client credentials grant (RFC 6749 §4.4; MCP's `oauth-client-credentials` extension,
//! SEP-1046): a machine client the operator registered for it gets an access token for one MCP
//! server it may reach, as itself (`sub` is the client id). No refresh token: it asks again.
//!
//! Who may use it is the operator's decision alone: a static client declared with the grant and
//! its reach (`store::machine_clients`). Dynamic registration and metadata documents never
//! obtain the grant (registration drops it from `grant_types`), so such clients are answered
//! `unauthorized_client`. The client has authenticated before this runs, with its secret or a
//! `private_key_jwt` assertion (`clients::auth`).

use serde_json::json;

use crate::clients::RegisteredClient;
use crate::flows::error::ApiError;
use crate::flows::token::TokenResponse;
use crate::oauth::authorize::select_resource;
use crate::oauth::client_metadata::{GrantType, TokenEndpointAuthMethod};
use crate::oauth::params::Params;
use crate::oauth::scope::{OFFLINE_ACCESS, ScopeSet};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::clients::ClientKind;
use crate::store::machine_clients::{self, MachineTokenFacts, Reach};
use crate::store::{self, StoreError, audit};
use crate::tokens::jwt::{self, AccessTokenClaims, VerifiedAccessToken};
use crate::tokens::secrets;

/// The longest a machine token lives, whatever the MCP server's token lifetime: it cannot be
/// refreshed and is not tied to a person's grant, so it ends soon and the client asks again.
pub const MAX_LIFETIME: i64 = 900;

/// A `grant_type=client_credentials` request from an authenticated client; the token is bound to
/// the DPoP key `jkt` when the request carried a proof.
pub async fn grant(
    state: &AppState,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, ApiError> {
    check_client(client)?;
    let reach = machine_clients::reach(&state.db, client.client_id()).await?;
    let target = select_target(params.resources(), &reach)?;
    let scope = resolve_scope(params.get("scope"), target)?.to_space_separated();
    let key = state.keys.signing_key().await?;
    let now = store::now();
    let lifetime = target.token_lifetime.unwrap_or_else(|| state.settings.lifetimes.access_token.as_i64());
    let lifetime = lifetime.min(MAX_LIFETIME);
    let client_id = client.client_id().as_str();
    let jti = secrets::random_string(16);
    let access_token = jwt::mint_bound_access_token(
        &key,
        &AccessTokenClaims {
            issuer: &state.settings.issuer,
            // RFC 9068 §2.2: without a resource owner, `sub` names the client.
            subject: client_id,
            audience: &target.resource_uri,
            client_id,
            scope: &scope,
            issued_at: now,
            expires_at: now + lifetime,
            jti: &jti,
            auth_time: None,
        },
        jkt,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::server_error("could not sign the access token")
    })?;
    // On the record before the token leaves: no token without its audit event.
    audit::record(
        &state.db,
        &audit::Event {
            event: "client_credentials",
            client_id: Some(client_id),
            details: json!({
                "resource": target.resource_uri,
                "scope": scope,
                "jti": jti,
                "expires_at": now + lifetime,
            }),
            ..Default::default()
        },
        now,
    )
    .await?;
    state.metrics.token_issued("client_credentials");
    Ok(TokenResponse::without_refresh(access_token, lifetime, scope).bound_to(jkt))
}

/// Only a static client declared with the grant, holding a credential (RFC 6749 §4.4: confidential
/// clients only), may use it.
fn check_client(client: &RegisteredClient) -> Result<(), OAuthError> {
    let declared =
        client.row.kind == ClientKind::Static && client.metadata.grant_types.contains(&GrantType::ClientCredentials);
    if !declared {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant: only clients the operator registered for it may",
        ));
    }
    let confidential =
        client.row.secret_hash.is_some() || client.auth_method() == TokenEndpointAuthMethod::PrivateKeyJwt;
    if !confidential {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "the client_credentials grant needs a client that authenticates with a secret or keys",
        ));
    }
    Ok(())
}

/// The MCP server a request targets among those the client may reach: the one `resource` sent
/// (RFC 8707), or the client's only one when it sends none. Anything else is `invalid_target`.
fn select_target<'a>(requested: &[String], reach: &'a [Reach]) -> Result<&'a Reach, OAuthError> {
    match (requested, reach) {
        (_, []) => Err(OAuthError::invalid_target(
            "this client may not get tokens for any MCP server; the operator has to allow one",
        )),
        ([], [only]) => Ok(only),
        ([], several) => Err(OAuthError::invalid_target(format!(
            "send a resource parameter naming the MCP server (RFC 8707): this client may reach several ({})",
            several.iter().map(|r| r.resource_uri.as_str()).collect::<Vec<_>>().join(", ")
        ))),
        (sent, _) => {
            let uri = select_resource(sent, None, None)?;
            reach.iter().find(|r| r.resource_uri == uri.as_str()).ok_or_else(|| {
                OAuthError::invalid_target(format!("{uri} is not an MCP server this client may get tokens for"))
            })
        }
    }
}

/// The token's scope: what was asked, all of it allowed for this client at this server, or
/// everything allowed when nothing was asked. Allowed means declared by the operator for the
/// client and still in the server's catalogue. `offline_access` is ignored: no refresh token is
/// issued here, and the answer's `scope` says so.
fn resolve_scope(requested: Option<&str>, target: &Reach) -> Result<ScopeSet, OAuthError> {
    let available: ScopeSet = target.allowed.iter().filter(|s| target.catalogue.iter().any(|c| c == s)).collect();
    let asked = ScopeSet::parse(requested.unwrap_or(""))
        .map_err(|e| OAuthError::invalid_scope(format!("the scope parameter is malformed: {e}")))?
        .without(OFFLINE_ACCESS);
    if asked.is_empty() {
        return Ok(available);
    }
    let refused = asked.difference(&available);
    if !refused.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "not allowed for this client at {}: {refused} (it may get: {})",
            target.resource_uri,
            if available.is_empty() { "no scope".to_string() } else { available.to_string() }
        )));
    }
    Ok(asked)
}

/// Whether an access token is a machine client's: its `sub` is the client itself. A person's
/// `sub` is a UUID and a machine client's id never is (the operator cannot declare one), so the
/// two cannot be confused (RFC 9068 §5).
pub fn is_machine_token(claims: &VerifiedAccessToken) -> bool {
    claims.sub == claims.client_id && uuid::Uuid::parse_str(&claims.sub).is_err()
}

/// Introspection's liveness rule for a machine token (there is no grant to revoke): live until it
/// expires unless it was revoked (RFC 7009), the client was removed, or its permission for that
/// MCP server (or a scope the token carries) was withdrawn; a client or permission removed and
/// added again does not revive tokens issued before.
pub async fn token_live(state: &AppState, claims: &VerifiedAccessToken) -> Result<bool, StoreError> {
    let facts = MachineTokenFacts {
        jti: &claims.jti,
        client_id: &claims.client_id,
        audience: &claims.aud,
        issued_at: claims.iat,
    };
    let Some(allowed) = machine_clients::token_reach(&state.db, &facts).await? else {
        return Ok(false);
    };
    Ok(ScopeSet::parse(&claims.scope).is_ok_and(|carried| carried.is_subset(&allowed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(uri: &str, allowed: &str, catalogue: &[&str]) -> Reach {
        Reach {
            resource_uri: uri.into(),
            token_lifetime: None,
            allowed: ScopeSet::parse(allowed).unwrap(),
            catalogue: catalogue.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn code(r: Result<impl std::fmt::Debug, OAuthError>) -> &'static str {
        r.expect_err("refused").code.as_str()
    }

    #[test]
    fn the_only_server_needs_no_resource_several_do() {
        let one = [reach("https://a.example/mcp", "x", &["x"])];
        assert_eq!(select_target(&[], &one).unwrap().resource_uri, "https://a.example/mcp");
        let two = [reach("https://a.example/mcp", "x", &["x"]), reach("https://b.example/mcp", "y", &["y"])];
        let e = select_target(&[], &two).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidTarget);
        assert!(e.description.contains("https://b.example/mcp"), "{}", e.description);
        let sent = ["HTTPS://B.example:443/mcp".to_string()];
        assert_eq!(select_target(&sent, &two).unwrap().resource_uri, "https://b.example/mcp");
        assert_eq!(code(select_target(&[], &[])), "invalid_target");
    }

    #[test]
    fn a_server_outside_the_reach_is_invalid_target() {
        let one = [reach("https://a.example/mcp", "x", &["x"])];
        for sent in [
            vec!["https://other.example/mcp".to_string()],
            vec!["not a uri".to_string()],
            vec!["https://a.example/mcp".to_string(), "https://other.example/mcp".to_string()],
        ] {
            assert_eq!(code(select_target(&sent, &one)), "invalid_target", "{sent:?}");
        }
        // The same server written twice is one resource.
        let twice = ["https://a.example/mcp".to_string(), "https://A.example/mcp".to_string()];
        assert!(select_target(&twice, &one).is_ok());
    }

    #[test]
    fn scope_is_what_was_asked_within_what_is_allowed() {
        let r = reach("https://a.example/mcp", "read write", &["read", "write", "admin"]);
        assert_eq!(resolve_scope(None, &r).unwrap().to_string(), "read write");
        assert_eq!(resolve_scope(Some("read"), &r).unwrap().to_string(), "read");
        assert_eq!(resolve_scope(Some("offline_access"), &r).unwrap().to_string(), "read write");
        assert_eq!(resolve_scope(Some("read offline_access"), &r).unwrap().to_string(), "read");
        let e = resolve_scope(Some("read admin"), &r).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("admin") && !e.description.contains("read,"), "{}", e.description);
        assert_eq!(code(resolve_scope(Some("openid"), &r)), "invalid_scope");
        assert_eq!(code(resolve_scope(Some("a\tb"), &r)), "invalid_scope");
    }

    #[test]
    fn a_scope_gone_from_the_catalogue_is_no_longer_allowed() {
        let r = reach("https://a.example/mcp", "read write", &["read"]);
        assert_eq!(resolve_scope(None, &r).unwrap().to_string(), "read");
        assert_eq!(code(resolve_scope(Some("write"), &r)), "invalid_scope");
    }

    #[test]
    fn machine_tokens_are_told_from_peoples() {
        let claims = |sub: &str, client_id: &str| VerifiedAccessToken {
            sub: sub.into(),
            aud: "https://a.example/mcp".into(),
            client_id: client_id.into(),
            scope: String::new(),
            iat: 0,
            exp: 1,
            jti: "j".into(),
            cnf: None,
        };
        assert!(is_machine_token(&claims("billing-agent", "billing-agent")));
        assert!(!is_machine_token(&claims("0190b7a2-1c1e-7c3e-8f00-000000000001", "billing-agent")));
        let uuid = "0190b7a2-1c1e-7c3e-8f00-000000000001";
        assert!(!is_machine_token(&claims(uuid, uuid)), "a UUID subject is a person's");
    }
}
