//! The token endpoint's grants: authorization code (with PKCE, redirect URI and resource checks,
//! run inside the redemption's transaction by [`check_code`]) and refresh token (rotation with a
//! grace period and reuse detection). A DPoP proof (RFC 9449) binds what any grant issues to the
//! proof's key: the access token (`cnf.jkt`, `token_type=DPoP`) and a public client's refresh
//! token.

use serde::Serialize;
use uuid::Uuid;

use crate::clients::ClientId;
use crate::clients::RegisteredClient;
use crate::clients::auth::{self as client_auth, Authorization};
use crate::flows::dpop::{self, Nonces, ProofHeader};
use crate::flows::error::ApiError;
use crate::oauth::client_metadata::TokenEndpointAuthMethod;
use crate::oauth::params::Params;
use crate::oauth::pkce::CodeChallenge;
use crate::oauth::resource::ResourceUri;
use crate::oauth::scope::{OFFLINE_ACCESS, ScopeSet};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::codes::{self, Code, CodeContext, Planned, Redeemed};
use crate::store::refresh::{self, NewRefreshToken, Rotated, Successor};
use crate::store::{self, audit};
use crate::tokens::jwt::{self, AccessTokenClaims};
use crate::tokens::keys::LoadedKey;
use crate::tokens::{seal, secrets};

const SUCCESSOR_LABEL: &str = "portcullis refresh successor v1";

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl TokenResponse {
    /// A bearer access token alone (the client credentials grant).
    pub(crate) fn without_refresh(access_token: String, expires_in: i64, scope: String) -> TokenResponse {
        TokenResponse { access_token, token_type: "Bearer", expires_in, scope, refresh_token: None, id_token: None }
    }

    /// `token_type=DPoP` when the access token was bound to a key; `Bearer` otherwise (the Python
    /// SDK refuses any other type, so DPoP only when the client sent a proof).
    pub(crate) fn bound_to(mut self, jkt: Option<&str>) -> TokenResponse {
        self.token_type = token_type(jkt);
        self
    }
}

fn token_type(jkt: Option<&str>) -> &'static str {
    if jkt.is_some() { "DPoP" } else { "Bearer" }
}

/// What `/token` answers, and the DPoP nonce to send with it whatever the outcome.
#[derive(Debug)]
pub struct TokenAnswer {
    pub result: Result<Issued, ApiError>,
    pub dpop_nonce: String,
}

/// What the token endpoint answers: tokens, or (token exchange) an ID-JAG.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Issued {
    Tokens(TokenResponse),
    Exchanged(crate::flows::id_jag::Exchanged),
}

/// A token request: authenticates the client (`token_endpoint` is an audience its assertion may
/// name, and the URL a DPoP proof must name) and runs the grant it asks for.
pub async fn token(
    state: &AppState,
    token_endpoint: &str,
    authorization: Authorization<'_>,
    params: &Params,
    from: Option<&crate::net::AddressKey>,
    proof: ProofHeader<'_>,
) -> TokenAnswer {
    let result = run(state, token_endpoint, authorization, params, from, proof).await;
    TokenAnswer { result, dpop_nonce: dpop::current_nonce(state) }
}

async fn run(
    state: &AppState,
    token_endpoint: &str,
    authorization: Authorization<'_>,
    params: &Params,
    from: Option<&crate::net::AddressKey>,
    proof: ProofHeader<'_>,
) -> Result<Issued, ApiError> {
    use crate::flows::id_jag::{self, JWT_BEARER, TOKEN_EXCHANGE};
    let nonces = if state.settings.dpop_nonce_required { Nonces::Required } else { Nonces::Checked };
    // The proof first: checking it writes nothing, so a bad one is refused before anything is.
    let proof = dpop::verify(state, proof, "POST", token_endpoint, None, nonces)?;
    let client = client_auth::authenticate(state, token_endpoint, authorization, params, from).await?;
    if proof.is_none() && client.metadata.dpop_bound_access_tokens {
        return Err(OAuthError::invalid_dpop_proof(
            "this client registered dpop_bound_access_tokens: its token requests must carry a DPoP proof",
        )
        .into());
    }
    // Token exchange answers with an ID-JAG, which no proof binds; every other grant is bound.
    let exchange = params.get("grant_type") == Some(TOKEN_EXCHANGE);
    if let Some(p) = proof.as_ref().filter(|_| !exchange) {
        dpop::remember(state, p).await?;
    }
    let jkt = proof.as_ref().map(|p| p.jkt.as_str());
    let tokens = match params.get("grant_type") {
        Some("authorization_code") => authorization_code(state, &client, params, jkt).await,
        Some("refresh_token") => refresh_token(state, &client, params, jkt).await,
        Some("client_credentials") => crate::flows::client_credentials::grant(state, &client, params, jkt).await,
        Some(JWT_BEARER) if state.federation.accepts_id_jags() => id_jag::redeem(state, &client, params, jkt).await,
        Some(TOKEN_EXCHANGE) if !state.settings.enterprise_apps.is_empty() => {
            return id_jag::exchange(state, &client, params).await.map(Issued::Exchanged);
        }
        Some(other) => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant_type {other:?} is not supported here; the metadata lists those that are (grant_types_supported)"
            ),
        )
        .into()),
        None => Err(OAuthError::invalid_request("missing parameter grant_type").into()),
    };
    tokens.map(Issued::Tokens)
}

/// The `resource` values sent with a token request must all name the grant's resource.
fn check_resources(sent: &[String], bound: &str) -> Result<(), OAuthError> {
    for r in sent {
        match ResourceUri::parse_requested(r) {
            Ok(u) if u.as_str() == bound => {}
            _ => {
                return Err(OAuthError::invalid_target(format!(
                    "resource {r:?} is not the MCP server this grant was approved for ({bound})"
                )));
            }
        }
    }
    Ok(())
}

struct Minted {
    access_token: String,
    expires_in: i64,
}

#[allow(clippy::too_many_arguments)]
fn mint(
    state: &AppState,
    key: &LoadedKey,
    client_id: &str,
    user_id: Uuid,
    audience: &str,
    scope: &ScopeSet,
    lifetime: Option<i64>,
    auth_time: Option<i64>,
    jti: String,
    jkt: Option<&str>,
    now: i64,
) -> Result<Minted, OAuthError> {
    let expires_in = lifetime.unwrap_or_else(|| state.settings.lifetimes.access_token.as_i64());
    let subject = user_id.to_string();
    // `offline_access` concerns refresh tokens, not the MCP server (SEP-2207): keep it out of `scope`.
    let scope = scope.without(OFFLINE_ACCESS).to_space_separated();
    let access_token = jwt::mint_bound_access_token(
        key,
        &AccessTokenClaims {
            issuer: &state.settings.issuer,
            subject: &subject,
            audience,
            client_id,
            scope: &scope,
            issued_at: now,
            expires_at: now + expires_in,
            jti: &jti,
            auth_time,
        },
        jkt,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::server_error("could not sign the access token")
    })?;
    Ok(Minted { access_token, expires_in })
}

/// Where a refresh token sits in its family: the first (its id names the family), or the
/// successor of `parent` in a family begun at `started` (`None`: before that was recorded).
enum Lineage {
    Root(Uuid),
    Successor { family: Uuid, parent: Uuid, started: Option<i64> },
}

fn new_refresh(
    state: &AppState,
    grant_id: Uuid,
    lineage: Lineage,
    client_id: &ClientId,
    scope: &ScopeSet,
    dpop_jkt: Option<&str>,
    now: i64,
) -> (String, NewRefreshToken) {
    let token = secrets::random_token();
    let (id, family_id, parent_id, started) = match lineage {
        Lineage::Root(id) => (id, id, None, now),
        Lineage::Successor { family, parent, started } => {
            (Uuid::now_v7(), family, Some(parent), started.unwrap_or(now))
        }
    };
    let lifetimes = &state.settings.lifetimes;
    // Sliding (each rotation extends it), but never past the family's absolute limit.
    let expires_at =
        (now + lifetimes.refresh_token.as_i64()).min(started.saturating_add(lifetimes.refresh_token_max.as_i64()));
    let row = NewRefreshToken {
        id,
        token_hash: secrets::hash(&token),
        grant_id,
        family_id,
        parent_id,
        client_id: client_id.clone(),
        scope: scope.clone(),
        created_at: now,
        expires_at,
        family_started_at: started,
        dpop_jkt: dpop_jkt.map(str::to_string),
    };
    (token, row)
}

async fn authorization_code(
    state: &AppState,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, ApiError> {
    let code = params.require("code")?;
    let verifier = params.require("code_verifier")?;
    let key = state.keys.signing_key().await?;
    let now = store::now();
    let planned = Planned { jti: secrets::random_string(16), family_id: Uuid::now_v7() };
    let exchange = CodeExchange { state, client, params, verifier, key: &key, planned: &planned, jkt, now };
    // A code bound with `dpop_jkt` (RFC 9449 §10) and presented without that key is refused
    // before it is spent: the client that holds the key can still redeem it.
    let keep = |code: &Code| match code.dpop_jkt.as_deref() {
        Some(bound) if jkt != Some(bound) => Err(wrong_key("the authorization code")),
        _ => Ok(()),
    };
    let outcome = codes::redeem(&state.db, &secrets::hash(code), now, &planned, keep, |code, ctx| {
        check_code(&exchange, code, ctx)
    })
    .await?;
    match outcome {
        Redeemed::Ok(code, mut response) => {
            state.metrics.token_issued("authorization_code");
            if code.scope.contains("openid") {
                response.id_token = Some(id_token(state, &key, client.client_id(), &code, now).await?);
            }
            Ok(response)
        }
        Redeemed::Refused(e) | Redeemed::Kept(e) => Err(e.into()),
        Redeemed::Replayed { grant_id } => {
            audit::record(
                &state.db,
                &audit::Event {
                    event: "code_replay_detected",
                    client_id: Some(client.client_id()),
                    details: serde_json::json!({ "grant_id": grant_id }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            Err(OAuthError::invalid_grant(
                "the authorization code was already used; the tokens issued for it are revoked",
            )
            .into())
        }
        Redeemed::Invalid => Err(OAuthError::invalid_grant("the authorization code is invalid or expired").into()),
    }
}

/// What the checks of a code redemption need besides the code.
struct CodeExchange<'a> {
    state: &'a AppState,
    client: &'a RegisteredClient,
    params: &'a Params,
    verifier: &'a str,
    key: &'a LoadedKey,
    planned: &'a Planned,
    /// The DPoP key of the request's proof, if it carried one.
    jkt: Option<&'a str>,
    now: i64,
}

/// Refusing a token bound to a DPoP key, presented without a proof by that key.
fn wrong_key(what: &str) -> OAuthError {
    OAuthError::invalid_dpop_proof(format!("{what} is bound to a DPoP key: send a proof signed with that key"))
}

/// The checks a redemption runs on the live code before it is spent (a refusal spends it too):
/// the client, the redirect URI, PKCE and the resource; then the access token and the refresh
/// token to record.
fn check_code(
    x: &CodeExchange<'_>,
    code: &Code,
    ctx: &CodeContext,
) -> Result<(Option<NewRefreshToken>, TokenResponse), OAuthError> {
    let (state, client, params, now) = (x.state, x.client, x.params, x.now);
    if code.client_id != *client.client_id() {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if params.get("redirect_uri").is_some_and(|r| r != code.redirect_uri) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
    }
    CodeChallenge::parse(Some(&code.code_challenge), Some("S256"))
        .and_then(|c| c.verify(x.verifier))
        .map_err(|e| OAuthError::invalid_grant(format!("PKCE verification failed: {e}")))?;
    check_resources(params.resources(), &ctx.resource_uri)?;
    // Checked before the code was spent too; this holds it against the row actually spent.
    if code.dpop_jkt.as_deref().is_some_and(|bound| x.jkt != Some(bound)) {
        return Err(wrong_key("the authorization code"));
    }
    let scope = code.scope.clone();
    let minted = mint(
        state,
        x.key,
        client.client_id(),
        code.user_id,
        &ctx.resource_uri,
        &scope,
        ctx.token_lifetime,
        Some(code.auth_time),
        x.planned.jti.clone(),
        x.jkt,
        now,
    )?;
    // RFC 9449 §5: a public client's refresh token is bound to its key (a confidential client's
    // is bound to the client's own credentials already).
    let refresh_jkt = x.jkt.filter(|_| client.metadata.token_endpoint_auth_method == TokenEndpointAuthMethod::None);
    let refresh = client.gets_refresh_token(&scope).then(|| {
        let root = Lineage::Root(x.planned.family_id);
        new_refresh(state, code.grant_id, root, client.client_id(), &code.scope, refresh_jkt, now)
    });
    let response = TokenResponse {
        access_token: minted.access_token,
        token_type: token_type(x.jkt),
        expires_in: minted.expires_in,
        scope: scope.to_space_separated(),
        refresh_token: refresh.as_ref().map(|(t, _)| t.clone()),
        id_token: None,
    };
    Ok((refresh.map(|(_, row)| row), response))
}

/// `slow_down` (429) once this family was refreshed `rate_limit_per_refresh_family` times this
/// minute (see [`crate::flows::refresh_budget`]).
fn within_family_budget(state: &AppState, family: uuid::Uuid) -> Result<(), OAuthError> {
    match state.refresh_budget.spend(family, state.settings.rate_limits.per_refresh_family) {
        true => Ok(()),
        false => Err(OAuthError::new(
            crate::oauth::ErrorCode::SlowDown,
            "this refresh token is refreshed too often; retry after the time in Retry-After",
        )),
    }
}

async fn refresh_token(
    state: &AppState,
    client: &RegisteredClient,
    params: &Params,
    jkt: Option<&str>,
) -> Result<TokenResponse, ApiError> {
    let presented = params.require("refresh_token")?;
    let narrowed = params
        .get("scope")
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|e| OAuthError::invalid_scope(format!("the scope parameter is malformed: {e}")))?;
    let key = state.keys.signing_key().await?;
    let now = store::now();
    // The checks and the access token, the same for a first use and a repeat inside the window.
    let answer = |row: &refresh::RefreshToken| -> Result<(ScopeSet, Minted), OAuthError> {
        if row.dpop_jkt.as_deref().is_some_and(|bound| jkt != Some(bound)) {
            return Err(wrong_key("the refresh token"));
        }
        check_resources(params.resources(), &row.resource_uri)?;
        let granted = row.scope.clone();
        let scope = match &narrowed {
            Some(s) if !s.is_subset(&granted) => {
                return Err(OAuthError::invalid_scope(format!(
                    "a refresh can narrow the scope, not widen it: {} was not granted",
                    s.difference(&granted)
                )));
            }
            Some(s) => s.clone(),
            None => granted,
        };
        let minted = mint(
            state,
            &key,
            client.client_id(),
            row.user_id,
            &row.resource_uri,
            &scope,
            row.token_lifetime,
            None,
            secrets::random_string(16),
            jkt,
            now,
        )?;
        Ok((scope, minted))
    };
    let grace = state.settings.lifetimes.refresh_grace_period.as_i64();
    let outcome: Rotated<_, OAuthError> =
        refresh::rotate(&state.db, &secrets::hash(presented), client.client_id(), now, grace, |row| {
            within_family_budget(state, row.family_id)?;
            let (scope, minted) = answer(row)?;
            let lineage = Lineage::Successor { family: row.family_id, parent: row.id, started: row.family_started_at };
            // The successor keeps the presented token's binding (or its absence).
            let bound = row.dpop_jkt.as_deref();
            let (token, next) = new_refresh(state, row.grant_id, lineage, client.client_id(), &row.scope, bound, now);
            let sealed = seal::seal(SUCCESSOR_LABEL, presented.as_bytes(), token.as_bytes());
            Ok((Successor { token: next, sealed }, (scope, minted, token)))
        })
        .await?;
    let (row, (scope, minted, refresh_token)) = match outcome {
        Rotated::Fresh(row, v) => (row, v),
        Rotated::Refused(e) => return Err(e.into()),
        Rotated::Grace(row, sealed) => {
            within_family_budget(state, row.family_id)?;
            let (scope, minted) = answer(&row)?;
            let successor = seal::open(SUCCESSOR_LABEL, presented.as_bytes(), &sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::server_error("the refresh token's successor could not be recovered"))?;
            // Allowed (a client racing itself), but on the record: a stolen token replayed inside
            // the window looks the same from here.
            audit::record(
                &state.db,
                &audit::Event {
                    event: "refresh_grace_reuse",
                    user_id: Some(row.user_id),
                    client_id: Some(&row.client_id),
                    details: serde_json::json!({ "grant_id": row.grant_id }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            (row, (scope, minted, successor))
        }
        Rotated::Reused { grant_id, user_id, client_id } => {
            tracing::warn!(%grant_id, %client_id, "refresh token reuse detected: grant revoked");
            state.metrics.refresh_reuse();
            audit::record(
                &state.db,
                &audit::Event {
                    event: "refresh_reuse_detected",
                    user_id: Some(user_id),
                    client_id: Some(&client_id),
                    details: serde_json::json!({ "grant_id": grant_id }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked, sign in again",
            )
            .into());
        }
        Rotated::Invalid => {
            return Err(OAuthError::invalid_grant("the refresh token is invalid, expired or revoked").into());
        }
    };
    // The MCP server's group policy, as it is now, for the person as they are now.
    let (scope, minted) = if row.restricted {
        let person = crate::flows::access::Person { user_id: row.user_id, username: None };
        match crate::flows::access::check(state, &person, row.resource_id, &scope, Some(client.client_id())).await? {
            crate::flows::access::Decision::Denied(_) => {
                let by = crate::flows::revocation::Revoker::Policy { user_id: row.user_id };
                crate::flows::revocation::revoke_grant(
                    &state.db,
                    row.grant_id,
                    Some(client.client_id().as_str()),
                    by,
                    now,
                )
                .await?;
                return Err(OAuthError::invalid_grant("the person is no longer allowed to use this MCP server").into());
            }
            crate::flows::access::Decision::Allowed(narrowed) if narrowed != scope => {
                let minted = mint(
                    state,
                    &key,
                    client.client_id(),
                    row.user_id,
                    &row.resource_uri,
                    &narrowed,
                    row.token_lifetime,
                    None,
                    secrets::random_string(16),
                    jkt,
                    now,
                )?;
                (narrowed, minted)
            }
            crate::flows::access::Decision::Allowed(_) => (scope, minted),
        }
    } else {
        (scope, minted)
    };
    state.metrics.token_issued("refresh_token");
    Ok(TokenResponse {
        access_token: minted.access_token,
        token_type: token_type(jkt),
        expires_in: minted.expires_in,
        scope: scope.to_space_separated(),
        refresh_token: Some(refresh_token),
        id_token: None,
    })
}

/// The OpenID Connect ID token for a redeemed code: who signed in, when, for which client.
async fn id_token(
    state: &AppState,
    key: &LoadedKey,
    client_id: &str,
    code: &codes::Code,
    now: i64,
) -> Result<String, ApiError> {
    let user = store::users::by_id(&state.db, code.user_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the person no longer exists"))?;
    let scopes: Vec<&str> = code.scope.iter().collect();
    let mut claims = crate::flows::userinfo::profile_claims(&user, &scopes);
    claims.insert("auth_time".into(), code.auth_time.into());
    if let Some(nonce) = &code.nonce {
        claims.insert("nonce".into(), nonce.clone().into());
    }
    let lifetime = state.settings.lifetimes.access_token.as_i64();
    jwt::mint_id_token(key, &state.settings.issuer, client_id, claims, now, lifetime).map_err(|e| {
        tracing::error!(error = %e, "signing an ID token failed");
        OAuthError::server_error("could not sign the ID token").into()
    })
}
