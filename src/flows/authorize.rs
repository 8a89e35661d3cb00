//! Authorization requests (`/authorize`, GET and POST): validation, then the decision between
//! signing in, asking for consent and issuing the code. Requests that cannot be trusted with a
//! redirect (unknown client, unregistered redirect URI) get an error page. Other errors found
//! before the person did anything go back to the client (with `state` and `iss`) only when the
//! redirect URI is trusted (RFC 9700 §4.11.2, [`redirect_trusted`]); otherwise the error page
//! offers the way back as a link.

use crate::clients::{self, ClientId, RegisteredClient};
use crate::flows::access;
use crate::flows::consent::{self, ConsentFacts};
use crate::flows::error::{PageError, PageLink};
use crate::flows::session::{MAX_NONCE_BYTES, MAX_STATE_BYTES, PendingAuthorization, SignedIn};
use crate::oauth::authorize::{self as authz, Prompt};
use crate::oauth::params::Params;
use crate::oauth::pkce::CodeChallenge;
use crate::oauth::redirect_uri::RedirectUri;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::clients::ClientKind;
use crate::store::{self, codes, grants, resources};
use crate::tokens::secrets;

/// What the browser does next.
#[derive(Debug)]
pub enum Next {
    /// Back to the client with this URL: a code, or an error.
    ToClient(String),
    /// Park the request and sign in first.
    SignIn(Box<PendingAuthorization>),
    /// Park the request and ask the person.
    Consent(Box<ConsentRequest>),
    /// A grant covers the request, but the client is a native app anyone on the device could
    /// pretend to be (RFC 8252 §8.6): park the request and ask for one click to continue.
    Continue(Box<ConsentRequest>),
    /// Show this error, with the way back to the client as a link (its redirect URI is not
    /// trusted with an automatic redirect).
    ErrorPage(Box<PageError>),
}

/// A request waiting for the person's consent, with what the consent page shows.
#[derive(Debug)]
pub struct ConsentRequest {
    pub pending: PendingAuthorization,
    pub who: SignedIn,
    pub facts: ConsentFacts,
}

#[derive(Debug)]
pub struct Decision {
    pub next: Next,
    /// The session names someone who may no longer sign in: sign it out (before parking).
    pub sign_out: bool,
}

/// An authorization request (`raw` is the query or form body), for the session's person.
/// `from` is the requesting address, whose budget a metadata-document fetch spends.
pub async fn authorize(
    state: &AppState,
    raw: &str,
    signed_in: Option<SignedIn>,
    from: &crate::net::AddressKey,
) -> Result<Decision, PageError> {
    let params = Params::parse(raw).map_err(PageError::from)?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| PageError::bad_request("The app did not say who it is (client_id is missing)."))?;
    let client = match clients::resolve(state, &ClientId::parse(client_id), Some(from)).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(PageError::bad_request(
                "The app asking for access is not registered here. Ask its developer to register it again.",
            )
            .with_code(ErrorCode::InvalidClient));
        }
        Err(clients::cimd::ResolveError::Store(e)) => return Err(e.into()),
        Err(e) => return Err(PageError::bad_request(e.public_message()).with_code(ErrorCode::InvalidClient)),
    };
    let redirect_uri = authz::resolve_redirect_uri(&client.metadata.redirect_uris, params.get("redirect_uri"))
        .map_err(PageError::from)?;
    // An oversized `state` cannot be sent back (the error response must carry it): a page.
    if params.get("state").is_some_and(|s| s.len() > MAX_STATE_BYTES) {
        return Err(PageError::from(OAuthError::invalid_request(format!(
            "state is longer than {MAX_STATE_BYTES} bytes"
        ))));
    }
    let (mut pending, prompt) = match validate(state, &params, &client, &redirect_uri).await? {
        Ok(v) => v,
        Err(e) => {
            let next = error_answer(state, Some(&client), &redirect_uri, params.get("state"), e).await?;
            return Ok(Decision { next, sign_out: false });
        }
    };
    if prompt.login {
        let current = signed_in.as_ref().map(|s| s.login_id.clone());
        pending.stale_login = Some(current.unwrap_or_default());
    }
    proceed(state, signed_in, pending, prompt.none).await
}

/// RFC 9700 §4.11.2: the server redirects on its own only to redirect URIs it trusts, since
/// anyone may register a client with any redirect URI (open registration, metadata documents),
/// and an automatic error redirect would make this server's address a link to theirs. Trusted:
/// every redirect URI of a pre-registered client, and one a person approved for this client on
/// the consent page (which names the host the browser goes back to). A metadata document's own
/// host is not enough: whoever publishes a document controls both.
pub async fn redirect_trusted(
    state: &AppState,
    client: &RegisteredClient,
    redirect_uri: &str,
) -> Result<bool, store::StoreError> {
    if client.row.kind == ClientKind::Static {
        return Ok(true);
    }
    match authz::registered_form(&client.metadata.redirect_uris, redirect_uri) {
        Some(registered) => grants::redirect_approved(&state.db, client.client_id(), registered.as_str()).await,
        None => Ok(false),
    }
}

/// An error found before the person did anything: back to the client when its redirect URI is
/// trusted, else the error page with the way back as a link the person may choose to follow.
async fn error_answer(
    state: &AppState,
    client: Option<&RegisteredClient>,
    redirect_uri: &str,
    client_state: Option<&str>,
    e: OAuthError,
) -> Result<Next, PageError> {
    let url = authz::response_url(redirect_uri, &state.settings.issuer, client_state, Err(&e));
    let trusted = match client {
        Some(c) => redirect_trusted(state, c, redirect_uri).await?,
        None => false,
    };
    if trusted {
        return Ok(Next::ToClient(url));
    }
    let host = RedirectUri::parse(redirect_uri).ok().and_then(|r| r.host()).unwrap_or_else(|| redirect_uri.to_string());
    let page = PageError::from(e).with_link(PageLink { href: url, host });
    Ok(Next::ErrorPage(Box::new(page)))
}

/// The checks whose failures are reported to the client through the redirect.
async fn validate(
    state: &AppState,
    params: &Params,
    client: &RegisteredClient,
    redirect_uri: &str,
) -> Result<Result<(PendingAuthorization, Prompt), OAuthError>, PageError> {
    let check = || -> Result<(CodeChallenge, Prompt, Option<i64>), OAuthError> {
        authz::check_response_type(params.get("response_type"))?;
        authz::check_no_request_object(params.get("request"), params.get("request_uri"))?;
        if params.get("nonce").is_some_and(|n| n.len() > MAX_NONCE_BYTES) {
            return Err(OAuthError::invalid_request(format!("nonce is longer than {MAX_NONCE_BYTES} bytes")));
        }
        let challenge = CodeChallenge::parse(params.get("code_challenge"), params.get("code_challenge_method"))
            .map_err(|e| OAuthError::invalid_request(format!("PKCE: {e}")))?;
        let prompt = authz::parse_prompt(params.get("prompt"))?;
        Ok((challenge, prompt, authz::parse_max_age(params.get("max_age"))?))
    };
    let (challenge, prompt, max_age) = match check() {
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
    let dpop_jkt = params.get("dpop_jkt").filter(|j| !j.is_empty());
    if dpop_jkt.is_some_and(|j| !crate::oauth::dpop::is_thumbprint(j)) {
        return Ok(Err(OAuthError::invalid_request("dpop_jkt must be a JWK SHA-256 thumbprint (RFC 7638)")));
    }
    let now = store::now();
    Ok(Ok((
        PendingAuthorization {
            id: secrets::random_string(12),
            client_id: client.client_id().clone(),
            redirect_uri: redirect_uri.to_string(),
            resource_id: resource.row.id,
            scope,
            code_challenge: challenge.as_str().to_string(),
            state: params.get("state").map(str::to_string),
            nonce: params.get("nonce").map(str::to_string),
            dpop_jkt: dpop_jkt.map(str::to_string),
            force_consent: prompt.consent,
            stale_login: None,
            login_hint: login_hint(params),
            restricted: !resource.row.allowed_groups.is_empty() || resource.scopes.iter().any(|s| !s.groups.is_empty()),
            max_age,
            created_at: now,
        },
        prompt,
    )))
}

/// `login_hint`, else `domain_hint` as `@domain` (a hint, so a malformed one is dropped).
fn login_hint(params: &Params) -> Option<String> {
    let ok = |h: &&str| !h.is_empty() && h.len() <= 254 && !h.chars().any(|c| c.is_control() || c.is_whitespace());
    match (params.get("login_hint").filter(ok), params.get("domain_hint").filter(ok)) {
        (Some(hint), _) => Some(hint.to_string()),
        (None, Some(domain)) if !domain.contains('@') => Some(format!("@{domain}")),
        _ => None,
    }
}

/// Continues a validated request: sign in if needed, skip consent when a grant covers it, issue
/// the code. Shared by `/authorize`, the login page's continuation and the consent page.
pub async fn proceed(
    state: &AppState,
    signed_in: Option<SignedIn>,
    mut pending: PendingAuthorization,
    prompt_none: bool,
) -> Result<Decision, PageError> {
    // Only `prompt=none` answers with an error here, before any interaction.
    let answer = async |e: OAuthError| {
        let client = clients::find(state, &pending.client_id).await?;
        error_answer(state, client.as_ref(), &pending.redirect_uri, pending.state.as_deref(), e).await
    };
    // Who is signed in (still enabled) and what they already approved: one query.
    let mut sign_out = false;
    let signed_in = match signed_in {
        Some(who) => match grants::standing(&state.db, who.user_id, &pending.client_id, pending.resource_id).await? {
            Some(standing) if standing.enabled => Some((who, standing.grant)),
            _ => {
                sign_out = true;
                None
            }
        },
        None => None,
    };
    let decided = |next| Ok(Decision { next, sign_out });
    let (who, grant) = match signed_in {
        Some((who, grant)) if signed_in_recently_enough(&pending, &who) => (who, grant),
        _ if prompt_none => {
            return decided(answer(OAuthError::new(ErrorCode::LoginRequired, "the person is not signed in")).await?);
        }
        _ => return decided(Next::SignIn(Box::new(pending))),
    };
    if pending.restricted {
        let person = access::Person { user_id: who.user_id, username: Some(&who.username) };
        match access::check(state, &person, pending.resource_id, &pending.scope, Some(&pending.client_id)).await? {
            access::Decision::Denied(refusal) => return Err(access::denied_page(&refusal)),
            access::Decision::Allowed(kept) => pending.scope = kept,
        }
    }
    let requested = &pending.scope;
    // A metadata document whose redirect URIs, name or keys changed since consent asks again.
    let shown = match grant.is_some() && pending.client_id.is_metadata_document() {
        true => clients::find(state, &pending.client_id).await?.and_then(|c| clients::fingerprint(&c)),
        false => None,
    };
    if let Some(g) = &grant
        && !pending.force_consent
        && g.client_fingerprint == shown
        && requested.is_subset(&g.scope)
    {
        if !impersonable(state, &pending).await? {
            let url = issue_code(state, &pending, &who, g.id).await?;
            return decided(Next::ToClient(url));
        }
        if prompt_none {
            let e = OAuthError::new(ErrorCode::InteractionRequired, "this app needs the person to continue");
            return decided(answer(e).await?);
        }
        let facts = consent::facts(state, &pending, grant.as_ref()).await?;
        return decided(Next::Continue(Box::new(ConsentRequest { pending, who, facts })));
    }
    if prompt_none {
        let e = OAuthError::new(ErrorCode::ConsentRequired, "the person has not approved this access");
        return decided(answer(e).await?);
    }
    let facts = consent::facts(state, &pending, grant.as_ref()).await?;
    decided(Next::Consent(Box::new(ConsentRequest { pending, who, facts })))
}

/// RFC 8252 §8.6: a public client whose redirect URI is a loopback address or a private-use
/// scheme cannot be told from any other program on the device that knows its public client id,
/// so a live grant does not let it get a code without the person: one click first.
async fn impersonable(state: &AppState, pending: &PendingAuthorization) -> Result<bool, PageError> {
    let Ok(redirect) = RedirectUri::parse(&pending.redirect_uri) else {
        return Ok(false);
    };
    if !(redirect.is_loopback() || redirect.is_private_use()) {
        return Ok(false);
    }
    let client = clients::find(state, &pending.client_id).await?;
    Ok(client.is_some_and(|c| c.auth_method() == crate::oauth::client_metadata::TokenEndpointAuthMethod::None))
}

/// Whether the person's sign-in is good enough for a request: not the one `prompt=login` asked to
/// replace, and no older than `max_age` when the request came (a sign-in after the request
/// always is, so a fresh one never loops).
pub fn signed_in_recently_enough(pending: &PendingAuthorization, who: &SignedIn) -> bool {
    pending.stale_login.as_ref() != Some(&who.login_id)
        && pending.max_age.is_none_or(|max_age| who.auth_time.saturating_add(max_age) >= pending.created_at)
}

/// Mints a code bound to the client, redirect URI, PKCE challenge, resource, scope and person, and
/// returns the redirect that delivers it.
pub async fn issue_code(
    state: &AppState,
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
            dpop_jkt: pending.dpop_jkt.clone(),
            auth_time: who.auth_time,
            created_at: now,
            expires_at: now + state.settings.lifetimes.authorization_code.as_i64(),
        },
    )
    .await?;
    Ok(authz::response_url(&pending.redirect_uri, &state.settings.issuer, pending.state.as_deref(), Ok(&code)))
}
