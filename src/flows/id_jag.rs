//! Enterprise-managed authorization (MCP ext-auth, SEP-990) on both sides of
//! draft-ietf-oauth-identity-assertion-authz-grant:
//!
//! - as the MCP servers' authorization server, [`redeem`] takes an ID-JAG from a trusted
//!   enterprise identity provider (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`)
//!   and answers with an access token for the MCP server it names, without a consent screen:
//!   the company's identity provider decided;
//! - as the company's identity provider, [`exchange`] takes an ID token Portcullis issued
//!   (RFC 8693 token exchange) and answers with an ID-JAG for another authorization server, as
//!   `[[enterprise_apps]]` allows.
//!
//! Every refusal is a standard OAuth error with nothing written but its audit event.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::clients::RegisteredClient;
use crate::federation::claims::{self, ID_JAG_TYP};
use crate::flows::access;
use crate::flows::error::ApiError;
use crate::flows::token::TokenResponse;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::oauth::params::Params;
use crate::oauth::resource::ResourceUri;
use crate::oauth::scope::ScopeSet;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::identities::{self, LinkPolicy, Refusal, UpstreamPerson};
use crate::store::{self, audit, grants, registration, resources, users};
use crate::tokens::jwt::{self, AccessTokenClaims};
use crate::tokens::secrets;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const ID_JAG_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";

/// Records a refused ID-JAG request and returns its error.
async fn refuse(state: &AppState, event: &str, client_id: &str, reason: &str, e: OAuthError) -> ApiError {
    let recorded = audit::record(
        &state.db,
        &audit::Event {
            event,
            client_id: Some(client_id),
            details: json!({ "reason": reason, "error": e.code.as_str() }),
            ..Default::default()
        },
        store::now(),
    )
    .await;
    match recorded {
        Ok(()) => e.into(),
        Err(store_error) => store_error.into(),
    }
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an ID-JAG.
pub async fn redeem(
    state: &AppState,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, ApiError> {
    let client_id = client.client_id().as_str();
    let deny = |reason: &'static str, e: OAuthError| refuse(state, "id_jag_refused", client_id, reason, e);
    if client.auth_method() == TokenEndpointAuthMethod::None {
        return Err(deny(
            "unauthenticated_client",
            OAuthError::new(ErrorCode::UnauthorizedClient, "an ID-JAG is redeemed by an authenticated client"),
        )
        .await);
    }
    let assertion = params.require("assertion")?;
    // The issuer, read before the signature is checked (to find its keys).
    let unverified = crate::clients::assertion::unverified_claims(assertion);
    let Some(iss) = unverified.and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string)) else {
        return Err(deny("malformed", OAuthError::invalid_grant("the assertion is not a JWT with an issuer")).await);
    };
    let Some(trusted) = state.federation.trusted(&iss) else {
        return Err(
            deny("untrusted_issuer", OAuthError::invalid_grant("the assertion's issuer is not trusted here")).await
        );
    };
    let jwks_uri = match trusted.jwks_uri().await {
        Ok(uri) => uri,
        Err(e) => {
            tracing::warn!(issuer = %iss, error = %e, "trusted issuer's keys unavailable");
            return Err(
                deny("issuer_unreachable", OAuthError::invalid_grant("the issuer's keys could not be read")).await
            );
        }
    };
    let (header, verified) = match trusted.keys.verify(&trusted.fetcher, &jwks_uri, assertion, &[]).await {
        Ok(v) => v,
        Err(e) => return Err(deny("bad_signature", OAuthError::invalid_grant(format!("the assertion: {e}"))).await),
    };
    let now = store::now();
    let jag = match claims::check_id_jag(&header, &verified, &iss, &state.settings.issuer, client_id, now) {
        Ok(j) => j,
        Err(e) => return Err(deny(e.reason, OAuthError::invalid_grant(e.message)).await),
    };
    // The MCP server: the ID-JAG's `resource`, which a `resource` parameter may repeat, not change.
    let asked = params.resources();
    let target = match (&jag.resource, asked.first()) {
        (Some(r), _) if asked.iter().any(|a| a != r) => {
            return Err(
                deny("resource_mismatch", OAuthError::invalid_target("resource differs from the assertion's")).await
            );
        }
        (Some(r), _) => r.clone(),
        (None, Some(a)) => a.to_string(),
        (None, None) => {
            return Err(deny("no_resource", OAuthError::invalid_target("name the MCP server (resource)")).await);
        }
    };
    let resource = match ResourceUri::parse(&target) {
        Ok(uri) => resources::by_uri(&state.db, uri.as_str()).await?,
        Err(_) => None,
    };
    let Some(resource) = resource else {
        return Err(deny(
            "unknown_resource",
            OAuthError::invalid_target(format!("{target} is not an MCP server registered here")),
        )
        .await);
    };
    // Scope: what was asked (default: what the ID-JAG carries) ∩ the ID-JAG ∩ the catalogue.
    let carried = ScopeSet::parse(jag.scope.as_deref().unwrap_or_default()).unwrap_or_default();
    let requested = match params.get("scope") {
        Some(s) => ScopeSet::parse(s).map_err(|e| OAuthError::invalid_scope(format!("scope: {e}")))?,
        None => carried.clone(),
    };
    if !requested.is_subset(&carried) {
        let extra = requested.difference(&carried);
        return Err(
            deny("scope_not_granted", OAuthError::invalid_scope(format!("{extra} is not in the assertion"))).await
        );
    }
    let catalogue = ScopeSet::from_iter(resource.scopes.iter().map(|s| s.name.clone()));
    let scope = ScopeSet::from_iter(requested.iter().filter(|s| catalogue.contains(s)).map(str::to_string));
    // The person: by (issuer, sub), or as the operator allows.
    let person = UpstreamPerson {
        provider: &iss,
        subject: &jag.sub,
        username: &username_for(&jag),
        display_name: None,
        email: jag.email.as_deref(),
        email_verified: jag.email_verified,
        session_id: None,
        groups: None,
    };
    let policy =
        LinkPolicy { create_people: trusted.config.create_people, link_by_email: trusted.config.link_by_email };
    let event = audit::Event {
        event: "id_jag_redeemed",
        client_id: Some(client_id),
        details: json!({ "issuer": iss, "resource": resource.row.uri, "scope": scope.to_space_separated() }),
        ..Default::default()
    };
    // The jti first: a replay must not even sign anyone in.
    if !registration::first_use_of_assertion(&state.db, &format!("id-jag {iss} {}", jag.jti), jag.exp.max(now + 60))
        .await?
    {
        return Err(deny("replayed", OAuthError::invalid_grant("the assertion was already used")).await);
    }
    let user = match identities::sign_in(&state.db, &person, policy, &event, now).await? {
        Ok((user, _)) => user,
        Err(r) => {
            let (reason, text) = match r {
                Refusal::NotProvisioned => ("unknown_person", "the person has no account here"),
                Refusal::UsernameTaken => ("username_taken", "the person's username belongs to another account here"),
                Refusal::Disabled => ("disabled", "the person's account here is disabled"),
            };
            return Err(deny(reason, OAuthError::invalid_grant(text)).await);
        }
    };
    // The MCP server's own group policy still applies.
    let who = access::Person { user_id: user.id, username: Some(&user.username) };
    let scope = match access::check(state, &who, resource.row.id, &scope, Some(client.client_id())).await? {
        access::Decision::Allowed(kept) => kept,
        access::Decision::Denied(_) => {
            return Err(deny(
                "group_policy",
                OAuthError::new(ErrorCode::AccessDenied, "the person may not use this MCP server"),
            )
            .await);
        }
    };
    // Recorded as a grant, so the person sees it among their connected apps and can revoke it, and
    // introspection's liveness rule holds.
    let widen = |live: Option<&ScopeSet>| live.map_or_else(|| scope.clone(), |g| g.union(&scope));
    grants::approve_as_shown(
        &state.db,
        user.id,
        client.client_id(),
        resource.row.id,
        widen,
        grants::Shown::default(),
        now,
    )
    .await?;
    let key = state.keys.signing_key().await?;
    let lifetime = resource.row.token_lifetime.unwrap_or_else(|| state.settings.lifetimes.access_token.as_i64());
    let subject = user.id.to_string();
    let scope_text = scope.to_space_separated();
    let access_token = jwt::mint_bound_access_token(
        &key,
        &AccessTokenClaims {
            issuer: &state.settings.issuer,
            subject: &subject,
            audience: &resource.row.uri,
            client_id,
            scope: &scope_text,
            issued_at: now,
            expires_at: now + lifetime,
            jti: &secrets::random_string(16),
            auth_time: jag.auth_time,
        },
        jkt,
    )
    .map_err(|_| OAuthError::server_error("could not sign the access token"))?;
    state.metrics.token_issued("jwt_bearer");
    Ok(TokenResponse::without_refresh(access_token, lifetime, scope_text).bound_to(jkt))
}

/// A username for a person first seen in an ID-JAG.
fn username_for(jag: &claims::IdJag) -> String {
    let preferred = jag.email.as_deref().filter(|e| crate::admin::validate_username(e).is_ok());
    match preferred {
        Some(e) => e.to_string(),
        None => {
            let safe: String = jag.sub.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
            let mut name = format!("idjag-{safe}");
            name.truncate(64);
            name
        }
    }
}

/// What a token exchange answers (RFC 8693 §2.2.1).
#[derive(Debug, serde::Serialize)]
pub struct Exchanged {
    pub access_token: String,
    pub issued_token_type: &'static str,
    /// Not an access token (the draft's §4.3.2).
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// RFC 8693 token exchange: an ID token Portcullis issued to this client, for an ID-JAG to
/// another authorization server.
pub async fn exchange(state: &AppState, client: &RegisteredClient, params: &Params) -> Result<Exchanged, ApiError> {
    let client_id = client.client_id().as_str();
    let deny = |reason: &'static str, e: OAuthError| refuse(state, "id_jag_issue_refused", client_id, reason, e);
    if params.get("requested_token_type") != Some(ID_JAG_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!("requested_token_type must be {ID_JAG_TOKEN_TYPE}")).into());
    }
    if params.get("subject_token_type") != Some(ID_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!("subject_token_type must be {ID_TOKEN_TYPE}")).into());
    }
    let subject_token = params.require("subject_token")?;
    let audience = params.require("audience")?;
    let Some(app) = state.settings.enterprise_apps.iter().find(|a| a.audience == audience) else {
        return Err(deny(
            "unknown_audience",
            OAuthError::invalid_target(format!("no ID-JAGs are issued for {audience}")),
        )
        .await);
    };
    let Some(remote_client_id) = app.remote_client_id(client_id) else {
        return Err(deny(
            "client_not_allowed",
            OAuthError::new(ErrorCode::AccessDenied, "this client may not ask for ID-JAGs for that audience"),
        )
        .await);
    };
    // The subject token: an ID token of ours, for this client, unexpired.
    let now = store::now();
    // Ours, and an ID token (`typ` JWT): not an access token (`at+jwt`) nor an ID-JAG.
    let Some((id_token, Value::String(typ))) = state.keys.verify(subject_token).await else {
        return Err(deny(
            "bad_subject_token",
            OAuthError::invalid_grant("subject_token is not an ID token issued here"),
        )
        .await);
    };
    let text = |k: &str| id_token.get(k).and_then(Value::as_str);
    let time = |k: &str| id_token.get(k).and_then(Value::as_i64);
    let aud_ok = match id_token.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(l)) => l.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if text("iss") != Some(state.settings.issuer.as_str()) || !aud_ok || typ != "JWT" {
        return Err(deny(
            "bad_subject_token",
            OAuthError::invalid_grant("subject_token must be an ID token issued here to this client"),
        )
        .await);
    }
    if time("exp").is_none_or(|e| e <= now) {
        return Err(deny("expired_subject_token", OAuthError::invalid_grant("subject_token has expired")).await);
    }
    let user = match text("sub").and_then(|s| Uuid::parse_str(s).ok()) {
        Some(id) => users::by_id(&state.db, id).await?,
        None => None,
    };
    let auth_time = time("auth_time").or(time("iat")).unwrap_or(0);
    let Some(user) = user.filter(|u| u.session_valid(auth_time)) else {
        return Err(deny("person_not_active", OAuthError::invalid_grant("the person is disabled or signed out")).await);
    };
    // The target: one of the app's MCP servers; scope within what the app allows.
    let resource = match params.resources().first() {
        Some(r) => match ResourceUri::parse(r) {
            Ok(uri) if app.resources.iter().any(|a| a == uri.as_str()) => uri.as_str().to_string(),
            _ => {
                return Err(deny(
                    "resource_not_allowed",
                    OAuthError::invalid_target(format!("{r} is not an MCP server of {audience}")),
                )
                .await);
            }
        },
        None if app.resources.len() == 1 => app.resources[0].clone(),
        None => return Err(deny("no_resource", OAuthError::invalid_target("name the MCP server (resource)")).await),
    };
    let allowed = ScopeSet::from_iter(app.scopes.iter().cloned());
    let scope = match params.get("scope") {
        Some(s) => ScopeSet::parse(s).map_err(|e| OAuthError::invalid_scope(format!("scope: {e}")))?,
        None => allowed.clone(),
    };
    if !scope.is_subset(&allowed) {
        let extra = scope.difference(&allowed);
        return Err(deny(
            "scope_not_allowed",
            OAuthError::invalid_scope(format!("{extra} may not be granted for {audience}")),
        )
        .await);
    }
    if !app.allowed_groups.is_empty() {
        let groups = store::groups::of_user(&state.db, user.id).await?;
        if !app.allowed_groups.admits(&groups) {
            return Err(deny(
                "group_policy",
                OAuthError::new(ErrorCode::AccessDenied, "the person may not use that application"),
            )
            .await);
        }
    }
    let key = state.keys.signing_key().await?;
    let mut claims = Map::new();
    claims.insert("iss".into(), state.settings.issuer.clone().into());
    claims.insert("sub".into(), user.id.to_string().into());
    claims.insert("aud".into(), audience.into());
    claims.insert("client_id".into(), remote_client_id.into());
    claims.insert("jti".into(), secrets::random_string(16).into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + app.lifetime).into());
    claims.insert("resource".into(), resource.clone().into());
    claims.insert("scope".into(), scope.to_space_separated().into());
    claims.insert("auth_time".into(), auth_time.into());
    if app.include_email
        && let Some(email) = &user.email
    {
        claims.insert("email".into(), email.clone().into());
    }
    let jag =
        jwt::sign_typed(&key, ID_JAG_TYP, claims).map_err(|_| OAuthError::server_error("could not sign the ID-JAG"))?;
    audit::record(
        &state.db,
        &audit::Event {
            event: "id_jag_issued",
            actor: Some(&user.username),
            user_id: Some(user.id),
            client_id: Some(client_id),
            details: json!({ "audience": audience, "resource": resource, "scope": scope.to_space_separated() }),
            ..Default::default()
        },
        now,
    )
    .await?;
    Ok(Exchanged {
        access_token: jag,
        issued_token_type: ID_JAG_TOKEN_TYPE,
        token_type: "N_A",
        expires_in: app.lifetime,
        scope: scope.to_space_separated(),
    })
}
