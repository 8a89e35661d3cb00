//! `/authorize` (GET and POST). Requests that cannot be trusted with a redirect (unknown client,
//! unregistered redirect URI) get an error page; every other error goes back to the client with
//! `state` and `iss`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::clients::{self, RegisteredClient};
use crate::http::HttpState;
use crate::http::endpoints::consent;
use crate::http::error::PageError;
use crate::http::header_value;
use crate::http::middleware::session::{self, PendingAuthorization, SignedIn};
use crate::http::routes::{CONSENT, LOGIN};
use crate::oauth::authorize::{self as authz, Prompt};
use crate::oauth::params::Params;
use crate::oauth::pkce::CodeChallenge;
use crate::oauth::scope::ScopeSet;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::{self, codes, grants, resources, users};
use crate::tokens::secrets;

pub async fn get(
    State(state): State<HttpState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    authorize(&state, &session, &query.unwrap_or_default(), StatusCode::FOUND).await
}

pub async fn post(State(state): State<HttpState>, session: Session, body: Bytes) -> Result<Response, PageError> {
    let body = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("The request is not valid UTF-8."))?;
    authorize(&state, &session, body, StatusCode::SEE_OTHER).await
}

/// A redirect to `url` with the given status (302 after GET, 303 after POST; never 307).
pub fn redirect(status: StatusCode, url: &str) -> Response {
    (status, [(header::LOCATION, header_value(url))]).into_response()
}

async fn authorize(state: &HttpState, session: &Session, raw: &str, status: StatusCode) -> Result<Response, PageError> {
    let params = Params::parse(raw).map_err(PageError::from)?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| PageError::bad_request("The app did not say who it is (client_id is missing)."))?;
    let client = match clients::resolve(state, &crate::clients::ClientId::parse(client_id)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(PageError::bad_request(
                "The app asking for access is not registered here. Ask its developer to register it again.",
            )
            .with_code(ErrorCode::InvalidClient));
        }
        Err(crate::clients::cimd::ResolveError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(PageError::bad_request(e.public_message()).with_code(ErrorCode::InvalidClient)),
    };
    let redirect_uri = authz::resolve_redirect_uri(&client.metadata.redirect_uris, params.get("redirect_uri"))
        .map_err(PageError::from)?;
    let client_state = params.get("state").map(str::to_string);
    let fail = |e: OAuthError| {
        let url = authz::response_url(&redirect_uri, &state.settings.issuer, client_state.as_deref(), Err(&e));
        redirect(status, &url)
    };
    let (mut pending, prompt) = match validate(state, &params, &client, &redirect_uri).await? {
        Ok(v) => v,
        Err(e) => return Ok(fail(e)),
    };
    if prompt.login {
        let current = session::signed_in(session).await?.map(|s| s.login_id);
        pending.stale_login = Some(current.unwrap_or_default());
    }
    proceed(state, session, pending, prompt.none, status).await
}

/// The checks whose failures are reported to the client through the redirect.
async fn validate(
    state: &HttpState,
    params: &Params,
    client: &RegisteredClient,
    redirect_uri: &str,
) -> Result<Result<(PendingAuthorization, Prompt), OAuthError>, PageError> {
    let check = || -> Result<(CodeChallenge, Prompt), OAuthError> {
        authz::check_response_type(params.get("response_type"))?;
        let challenge = CodeChallenge::parse(params.get("code_challenge"), params.get("code_challenge_method"))
            .map_err(|e| OAuthError::invalid_request(format!("PKCE: {e}")))?;
        Ok((challenge, authz::parse_prompt(params.get("prompt"))?))
    };
    let (challenge, prompt) = match check() {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let requested = params.resources();
    let default = state.settings.default_resource.as_ref();
    // Only a request that names no MCP server, with no default configured, needs the catalogue:
    // the target is then the only one registered.
    let only = match requested.is_empty() && default.is_none() {
        true => match resources::list(&state.db).await?.as_slice() {
            [one] => crate::oauth::resource::ResourceUri::parse(&one.row.uri).ok(),
            _ => None,
        },
        false => None,
    };
    let target = match authz::select_resource(requested, default, only.as_ref()) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let Some(resource) = resources::by_uri(&state.db, target.as_str()).await? else {
        return Ok(Err(OAuthError::invalid_target(format!("{target} is not an MCP server registered here"))));
    };
    let catalogue: Vec<&str> = resource.scopes.iter().map(|s| s.name.as_str()).collect();
    let defaults: Vec<&str> = resource.scopes.iter().filter(|s| s.is_default).map(|s| s.name.as_str()).collect();
    let scope = match authz::resolve_scope(params.get("scope"), &catalogue, &defaults) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let now = store::now();
    Ok(Ok((
        PendingAuthorization {
            id: secrets::random_string(12),
            client_id: client.client_id().to_string(),
            redirect_uri: redirect_uri.to_string(),
            resource_id: resource.row.id,
            scope: scope.to_space_separated(),
            code_challenge: challenge.as_str().to_string(),
            state: params.get("state").map(str::to_string),
            nonce: params.get("nonce").map(str::to_string),
            force_consent: prompt.consent,
            stale_login: None,
            created_at: now,
        },
        prompt,
    )))
}

/// Continues a validated request: sign in if needed, skip consent when a grant covers it, issue
/// the code. Shared by `/authorize`, the login page's continuation and the consent page.
pub async fn proceed(
    state: &HttpState,
    session: &Session,
    pending: PendingAuthorization,
    prompt_none: bool,
    status: StatusCode,
) -> Result<Response, PageError> {
    let issuer = &state.settings.issuer;
    let answer = |e: OAuthError| {
        redirect(status, &authz::response_url(&pending.redirect_uri, issuer, pending.state.as_deref(), Err(&e)))
    };
    // Who is signed in (still enabled) and what they already approved: one query.
    let signed_in = match session::signed_in(session).await? {
        Some(who) => match grants::standing(&state.db, who.user_id, &pending.client_id, pending.resource_id).await? {
            Some(standing) if standing.enabled => Some((who, standing.grant)),
            _ => {
                session::sign_out(session).await?;
                None
            }
        },
        None => None,
    };
    let (who, grant) = match signed_in {
        Some((who, grant)) if pending.stale_login.as_ref() != Some(&who.login_id) => (who, grant),
        _ if prompt_none => {
            return Ok(answer(OAuthError::new(ErrorCode::LoginRequired, "the person is not signed in")));
        }
        _ => {
            let id = pending.id.clone();
            session::park(session, pending).await?;
            let login = format!("{}?request_id={id}", state.routes.path(LOGIN));
            return Ok(redirect(StatusCode::SEE_OTHER, &login));
        }
    };
    let requested = ScopeSet::parse(&pending.scope).unwrap_or_default();
    // A metadata document whose redirect URIs, name or keys changed since consent asks again.
    let shown = match grant.is_some() && crate::clients::cimd::is_client_id_url(&pending.client_id) {
        true => clients::find(state, &pending.client_id).await?.and_then(|c| clients::fingerprint(&c)),
        false => None,
    };
    if let Some(g) = &grant
        && !pending.force_consent
        && g.client_fingerprint == shown
        && requested.is_subset(&ScopeSet::parse(&g.scope).unwrap_or_default())
    {
        let url = issue_code(state, &pending, &who, g.id).await?;
        return Ok(redirect(status, &url));
    }
    if prompt_none {
        return Ok(answer(OAuthError::new(ErrorCode::ConsentRequired, "the person has not approved this access")));
    }
    session::park(session, pending.clone()).await?;
    consent::render(state, session, &pending, &who, grant.as_ref()).await
}

/// The signed-in person, if the session has one and the account is still enabled.
pub async fn current_user(state: &HttpState, session: &Session) -> Result<Option<SignedIn>, PageError> {
    let Some(who) = session::signed_in(session).await? else {
        return Ok(None);
    };
    match users::by_id(&state.db, who.user_id).await? {
        Some(u) if !u.disabled => Ok(Some(who)),
        _ => {
            session::sign_out(session).await?;
            Ok(None)
        }
    }
}

/// Mints a code bound to the client, redirect URI, PKCE challenge, resource, scope and person, and
/// returns the redirect that delivers it.
pub async fn issue_code(
    state: &HttpState,
    pending: &PendingAuthorization,
    who: &SignedIn,
    grant_id: uuid::Uuid,
) -> Result<String, PageError> {
    let code = secrets::random_token();
    let now = store::now();
    codes::insert(
        &state.db,
        &secrets::hash(&code),
        &codes::Code {
            grant_id,
            client_id: pending.client_id.clone(),
            user_id: who.user_id,
            resource_id: pending.resource_id,
            redirect_uri: pending.redirect_uri.clone(),
            scope: pending.scope.clone(),
            code_challenge: pending.code_challenge.clone(),
            nonce: pending.nonce.clone(),
            auth_time: who.auth_time,
            created_at: now,
            expires_at: now + state.settings.authorization_code_lifetime.as_i64(),
        },
    )
    .await?;
    Ok(authz::response_url(&pending.redirect_uri, &state.settings.issuer, pending.state.as_deref(), Ok(&code)))
}

/// Where the login page continues to for a parked request (the id is the person's input here).
pub fn continue_path(state: &HttpState, request_id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(request_id.as_bytes()).collect();
    format!("{}?request_id={id}", state.routes.path(CONSENT))
}
