//! Company sign-in, as a careful relying party: start (state, nonce, PKCE, hints), the callback
//! (every check of OpenID Connect Core §3.1.3.7, or GitHub's API), linking or creating the
//! person, and back-channel logout (OpenID Connect Back-Channel Logout 1.0).
//!
//! Every failure ends on a page that names the provider and says what to do, never in a
//! redirect back to the provider (no loops), and writes nothing but its audit event.

use std::net::IpAddr;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::federation::claims::{self, ClaimError, IdTokenExpectations, str_claim};
use crate::federation::github;
use crate::federation::keys::VerifyError;
use crate::federation::provider::{Kind, Provider};
use crate::federation::upstream::{AuthorizationRequest, CallError, Metadata, Upstream};
use crate::flows::error::PageError;
use crate::flows::revocation::{self, Revoker};
use crate::flows::session::{PendingAuthorization, SignedIn};
use crate::oauth::pkce;
use crate::state::AppState;
use crate::store::identities::{self, How, LinkPolicy, Refusal, UpstreamPerson};
use crate::store::{self, audit, grants, registration, users};
use crate::tokens::secrets;
use crate::users::groups::Groups;

/// How long a person may take at the provider.
pub const LOGIN_LIFETIME: i64 = 600;

/// The redirect URI registered at the provider.
pub fn callback_url(issuer: &str, provider_id: &str) -> String {
    format!("{issuer}/login/{provider_id}/callback")
}

/// What the browser session keeps between sending the person to the provider and their return.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UpstreamLogin {
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to continue: a parked request's id, or `account`.
    pub next: Option<String>,
    pub created_at: i64,
}

/// The redirect to the provider and what the session must keep.
#[derive(Debug)]
pub struct Started {
    pub redirect: String,
    pub login: UpstreamLogin,
}

/// Starts a sign-in through `provider_id`, for the parked request `pending` (if any).
pub async fn start(
    state: &AppState,
    provider_id: &str,
    next: Option<String>,
    pending: Option<&PendingAuthorization>,
) -> Result<Started, PageError> {
    let up = provider(state, provider_id)?;
    let metadata = up.metadata().await.map_err(|e| call_failed(state, &up.provider, &e))?;
    let verifier = pkce::new_verifier();
    let login = UpstreamLogin {
        provider: up.provider.id.clone(),
        state: secrets::random_token(),
        nonce: secrets::random_token(),
        verifier,
        next,
        created_at: store::now(),
    };
    let redirect_uri = callback_url(&state.settings.issuer, &up.provider.id);
    let challenge = pkce::s256(&login.verifier);
    let redirect = up.authorization_url(
        &metadata,
        &AuthorizationRequest {
            redirect_uri: &redirect_uri,
            state: &login.state,
            nonce: &login.nonce,
            code_challenge: &challenge,
            force_login: pending.is_some_and(|p| p.stale_login.is_some()),
            max_age: pending.and_then(|p| p.max_age),
            login_hint: pending.and_then(|p| p.login_hint.as_deref()).filter(|h| !h.starts_with('@')),
        },
    );
    Ok(Started { redirect, login })
}

/// The provider the login page should send the person to without asking: the only way in (one
/// provider, passwords off), or the one whose domain the request's `login_hint` names.
pub fn preferred_provider<'a>(state: &'a AppState, pending: Option<&PendingAuthorization>) -> Option<&'a str> {
    let mut all = state.federation.all();
    if !state.settings.password_login
        && let (Some(only), None) = (all.next(), all.next())
    {
        return Some(&only.provider.id);
    }
    let hint = pending?.login_hint.as_deref()?;
    let (_, domain) = hint.rsplit_once('@')?;
    state.federation.for_domain(domain).map(|u| u.provider.id.as_str())
}

/// The provider's answer at the callback.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Finishes a sign-in through `provider_id`: the person signed in, and where to continue.
/// `login` is what the session kept for the callback's `state` (none: expired, or another browser).
pub async fn finish(
    state: &AppState,
    provider_id: &str,
    callback: &Callback,
    login: Option<UpstreamLogin>,
    ip: IpAddr,
) -> Result<(SignedIn, Option<String>), PageError> {
    let up = provider(state, provider_id)?;
    let p = &up.provider;
    let fail = |reason: &'static str, message: String| Failure { reason, message };
    let outcome = async {
        let login = login
            .filter(|l| l.provider == p.id && l.created_at + LOGIN_LIFETIME > store::now())
            .ok_or_else(|| fail("state_mismatch", String::new()))?;
        if let Some(error) = &callback.error {
            let detail = callback.error_description.as_deref().unwrap_or_default();
            return Err(fail("provider_error", format!("{} ({error}) {detail}", p.name).trim_end().to_string()));
        }
        let code =
            callback.code.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| fail("provider_error", String::new()))?;
        let metadata = up.metadata().await.map_err(|e| call_failure(&e))?;
        let key = match p.client_auth {
            crate::federation::provider::ClientAuth::PrivateKeyJwt => Some(state.keys.signing_key().await?),
            _ => None,
        };
        let redirect_uri = callback_url(&state.settings.issuer, &p.id);
        let now = store::now();
        let tokens = up
            .redeem(&metadata, code, &login.verifier, &redirect_uri, key.as_deref(), now)
            .await
            .map_err(|e| call_failure(&e))?;
        let person = match p.kind {
            Kind::Oidc => {
                oidc_person(up, &metadata, &tokens.access_token, tokens.id_token.as_deref(), &login.nonce, now).await?
            }
            Kind::Github => github_person(up, &tokens.access_token).await?,
        };
        check_policy(p, &person)?;
        Ok::<_, Failure>((person, login.next))
    }
    .await;
    let ip_text = ip.to_string();
    let (person, next) = match outcome {
        Ok(v) => v,
        Err(f) => return Err(refused(state, p, f, None, &ip_text).await?),
    };
    let now = store::now();
    let upstream = UpstreamPerson {
        provider: &p.id,
        subject: &person.subject,
        username: &person.username,
        display_name: person.name.as_deref(),
        email: person.email.as_deref(),
        email_verified: person.email_verified,
        session_id: person.session_id.as_deref(),
        groups: person.groups.as_ref(),
    };
    let policy = LinkPolicy { create_people: p.create_people, link_by_email: p.link_by_email };
    let event = audit::Event {
        event: "login",
        ip: Some(&ip_text),
        details: serde_json::json!({ "provider": p.id }),
        ..Default::default()
    };
    let (user, how) = match identities::sign_in(&state.db, &upstream, policy, &event, now).await? {
        Ok(v) => v,
        Err(refusal) => {
            let f = match refusal {
                Refusal::NotProvisioned => fail("not_provisioned", String::new()),
                Refusal::UsernameTaken => fail("username_taken", person.username.clone()),
                Refusal::Disabled => fail("disabled", String::new()),
            };
            return Err(refused(state, p, f, Some(&person.subject), &ip_text).await?);
        }
    };
    if how != How::Known {
        tracing::info!(provider = %p.id, username = %user.username, how = ?how, "person linked to an identity provider");
    }
    state.metrics.login("success");
    let who =
        SignedIn { user_id: user.id, username: user.username, auth_time: now, login_id: secrets::random_string(9) };
    Ok((who, next))
}

/// What the provider says about the person, mapped.
struct Person {
    subject: String,
    username: String,
    name: Option<String>,
    email: Option<String>,
    email_verified: bool,
    session_id: Option<String>,
    groups: Option<Groups>,
    /// GitHub: organisation logins.
    organizations: Vec<String>,
    /// Google Workspace's `hd`.
    hosted_domain: Option<String>,
}

/// A refused sign-in: `reason` is the audit code; `message` adds detail for some reasons.
#[derive(Debug)]
struct Failure {
    reason: &'static str,
    message: String,
}

impl From<PageError> for Failure {
    fn from(e: PageError) -> Self {
        Failure { reason: "server_error", message: e.message }
    }
}

impl From<crate::tokens::keys::KeyError> for Failure {
    fn from(e: crate::tokens::keys::KeyError) -> Self {
        Failure::from(PageError::from(e))
    }
}

impl From<ClaimError> for Failure {
    fn from(e: ClaimError) -> Self {
        Failure { reason: e.reason, message: e.message }
    }
}

fn call_failure(e: &CallError) -> Failure {
    match e {
        CallError::Unreachable(_) => Failure { reason: "provider_unreachable", message: String::new() },
        CallError::Refused { code, .. } => Failure { reason: "provider_error", message: format!("({code})") },
        CallError::Invalid(m) => Failure { reason: "provider_invalid", message: m.clone() },
    }
}

async fn oidc_person(
    up: &Upstream,
    metadata: &Metadata,
    access_token: &str,
    id_token: Option<&str>,
    nonce: &str,
    now: i64,
) -> Result<Person, Failure> {
    let p = &up.provider;
    let id_token = id_token.ok_or_else(|| Failure { reason: "provider_invalid", message: "no ID token".into() })?;
    let (_, mut claims) = up
        .keys
        .verify(&up.fetcher, &metadata.jwks_uri, id_token, &metadata.id_token_signing_alg_values_supported)
        .await
        .map_err(|e| match e {
            VerifyError::Keys(m) => Failure { reason: "provider_unreachable", message: m },
            other => Failure { reason: "bad_signature", message: other.to_string() },
        })?;
    let expectations = IdTokenExpectations {
        issuer: &p.issuer,
        allowed_tenants: &p.allowed_tenants,
        client_id: &p.client_id,
        nonce,
        now,
    };
    let subject = claims::check_id_token(&claims, &expectations)?;
    // Claims the ID token left out come from userinfo, whose `sub` must match (OIDC Core §5.3.2).
    let wanted = [Some(p.email_claim.as_str()), Some(p.name_claim.as_str()), p.groups_claim.as_deref()];
    if wanted.iter().flatten().any(|c| !claims.contains_key(*c)) && metadata.userinfo_endpoint.is_some() {
        // Userinfo only adds claims: when it fails, sign-in goes on with the ID token's (a missing
        // groups claim then grants nothing a group policy guards).
        match up.userinfo(metadata, access_token).await {
            Ok(info) if str_claim(&info, "sub") != Some(subject.as_str()) => {
                return Err(Failure { reason: "provider_invalid", message: "userinfo names another person".into() });
            }
            Ok(info) => {
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
            Err(e) => tracing::warn!(provider = %p.id, error = %e, "userinfo failed; using the ID token's claims"),
        }
    }
    Ok(map_claims(p, subject, &claims))
}

/// The person from verified claims, by the provider's claim mapping.
fn map_claims(p: &Provider, subject: String, claims: &Map<String, Value>) -> Person {
    let text = |name: &str| str_claim(claims, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let email = text(&p.email_claim).filter(|e| e.len() <= 254 && e.contains('@'));
    // Some providers send "true" as a string.
    let email_verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || str_claim(claims, "email_verified") == Some("true");
    let groups = p.groups_claim.as_deref().map(|c| match claims.get(c) {
        Some(Value::Array(list)) => Groups::lenient(list.iter().filter_map(Value::as_str)),
        Some(Value::String(one)) => Groups::lenient([one.as_str()]),
        _ => Groups::default(),
    });
    let preferred = match &p.username_claim {
        Some(c) => text(c),
        None => text("preferred_username").or_else(|| email.clone()),
    };
    Person {
        username: username_for(&p.id, preferred.as_deref(), &subject),
        name: text(&p.name_claim).filter(|n| n.len() <= 200 && !n.chars().any(char::is_control)),
        email,
        email_verified,
        session_id: text("sid").filter(|s| s.len() <= 255),
        groups,
        organizations: vec![],
        hosted_domain: text("hd"),
        subject,
    }
}

/// A username Portcullis accepts: the provider's, or `{provider}-{sub}` when that does not fit.
fn username_for(provider_id: &str, preferred: Option<&str>, subject: &str) -> String {
    if let Some(name) = preferred
        && crate::admin::validate_username(name).is_ok()
    {
        return name.to_string();
    }
    let safe: String = subject.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
    let mut name = format!("{provider_id}-{safe}");
    name.truncate(64);
    name
}

async fn github_person(up: &Upstream, access_token: &str) -> Result<Person, Failure> {
    let gh = github::person(up, access_token).await.map_err(|e| call_failure(&e))?;
    let subject = gh.id.clone();
    Ok(Person {
        username: username_for(&up.provider.id, Some(&gh.login), &subject),
        name: gh.name,
        email_verified: gh.email.is_some(),
        email: gh.email,
        session_id: None,
        groups: Some(Groups::lenient(gh.groups)),
        organizations: gh.organizations,
        hosted_domain: None,
        subject,
    })
}

/// The operator's rules on who may sign in through this provider.
fn check_policy(p: &Provider, person: &Person) -> Result<(), Failure> {
    let refuse = |reason, message: String| Err(Failure { reason, message });
    if let Some(hd) = &p.hosted_domain
        && person.hosted_domain.as_deref().map(str::to_ascii_lowercase).as_deref() != Some(hd.as_str())
    {
        return refuse("domain_not_allowed", format!("only {hd} accounts may sign in"));
    }
    if !p.allowed_email_domains.is_empty() {
        let Some(email) = person.email.as_deref().filter(|_| person.email_verified) else {
            return refuse("email_not_verified", String::new());
        };
        let domain = email.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
        if !p.allowed_email_domains.contains(&domain) {
            return refuse("domain_not_allowed", format!("{domain} is not one of the allowed email domains"));
        }
    }
    if !p.allowed_organizations.is_empty() && !person.organizations.iter().any(|o| p.allowed_organizations.contains(o))
    {
        return refuse("organization_not_allowed", String::new());
    }
    if p.link_by_email && !p.create_people && person.email.is_some() && !person.email_verified {
        // Linking is the only way in, and it needs a verified address.
        return refuse("email_not_verified", String::new());
    }
    Ok(())
}

/// Records a refused sign-in and the page that explains it.
async fn refused(
    state: &AppState,
    p: &Provider,
    f: Failure,
    subject: Option<&str>,
    ip: &str,
) -> Result<PageError, PageError> {
    state.metrics.login("failed");
    tracing::info!(provider = %p.id, reason = f.reason, detail = %f.message, "sign-in through an identity provider refused");
    audit::record(
        &state.db,
        &audit::Event {
            event: "upstream_login_failed",
            ip: Some(ip),
            details: serde_json::json!({ "provider": p.id, "reason": f.reason, "subject": subject }),
            ..Default::default()
        },
        store::now(),
    )
    .await?;
    Ok(failure_page(p, &f))
}

/// The page for a refused sign-in: what happened and what to do, naming the provider.
fn failure_page(p: &Provider, f: &Failure) -> PageError {
    let name = &p.name;
    let (status, message) = match f.reason {
        "state_mismatch" => (
            StatusCode::BAD_REQUEST,
            format!(
                "This sign-in with {name} expired or was started in another browser window. Go back to the app and connect again."
            ),
        ),
        "provider_error" => (
            StatusCode::BAD_GATEWAY,
            format!(
                "{name} did not sign you in {}. Try again; if it keeps failing, ask your administrator.",
                f.message
            )
            .replace("  ", " "),
        ),
        "provider_unreachable" => (
            StatusCode::BAD_GATEWAY,
            format!(
                "{name} could not be reached. Try again in a few minutes; if it keeps failing, ask your administrator."
            ),
        ),
        "provider_invalid" | "bad_signature" | "wrong_issuer" | "wrong_audience" | "malformed" => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The answer from {name} could not be trusted, so you were not signed in. Ask your administrator to check the {name} settings (the event is in the audit log)."
            ),
        ),
        "nonce_mismatch" => (
            StatusCode::BAD_REQUEST,
            format!("This answer from {name} does not belong to your sign-in. Go back to the app and connect again."),
        ),
        "expired" | "issued_in_future" => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The sign-in from {name} had expired or came with a wrong time. Try again; if it keeps failing, ask your administrator to check the server clocks."
            ),
        ),
        "email_not_verified" => (
            StatusCode::FORBIDDEN,
            format!("Your email address at {name} is not verified. Verify it there, then try again."),
        ),
        "domain_not_allowed" | "tenant_not_allowed" => (
            StatusCode::FORBIDDEN,
            format!("This {name} account may not sign in here ({}). Use your company account.", f.message),
        ),
        "organization_not_allowed" => (
            StatusCode::FORBIDDEN,
            format!(
                "Your {name} account is not a member of an organisation allowed here. Ask your administrator for access."
            ),
        ),
        "not_provisioned" => (
            StatusCode::FORBIDDEN,
            format!("You signed in with {name}, but you have no account here yet. Ask your administrator to add you."),
        ),
        "username_taken" => (
            StatusCode::CONFLICT,
            format!(
                "You signed in with {name}, but the username {} belongs to another account here. Ask your administrator to link your account.",
                f.message
            ),
        ),
        "disabled" => (StatusCode::FORBIDDEN, "Your account here is disabled. Ask your administrator.".to_string()),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, format!("Sign-in with {name} failed. Try again later.")),
    };
    let mut page = PageError::new(status, format!("Sign-in with {name} failed"), message);
    page.code = Some(f.reason);
    page
}

fn provider<'a>(state: &'a AppState, id: &str) -> Result<&'a Upstream, PageError> {
    state.federation.get(id).ok_or_else(|| {
        PageError::new(StatusCode::NOT_FOUND, "Page not found", "No identity provider of that name is configured here.")
    })
}

/// A failure before the person left for the provider (its metadata could not be read).
fn call_failed(state: &AppState, p: &Provider, e: &CallError) -> PageError {
    let _ = state;
    tracing::warn!(provider = %p.id, error = %e, "identity provider metadata unavailable");
    failure_page(p, &call_failure(e))
}

/// Why a back-channel logout was refused (the provider gets `400 invalid_request`).
#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("no identity provider of that name")]
    UnknownProvider,
    #[error("{0}")]
    Invalid(String),
    #[error("the logout token was already used")]
    Replayed,
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// OpenID Connect Back-Channel Logout: ends the named person's sessions here and revokes their
/// grants (their refresh tokens stop working; their access tokens read inactive).
pub async fn backchannel_logout(state: &AppState, provider_id: &str, logout_token: &str) -> Result<(), LogoutError> {
    let up = state.federation.get(provider_id).ok_or(LogoutError::UnknownProvider)?;
    let p = &up.provider;
    if p.kind != Kind::Oidc {
        return Err(LogoutError::UnknownProvider);
    }
    let metadata = up.metadata().await.map_err(|e| LogoutError::Invalid(e.to_string()))?;
    let (header, claims) = up
        .keys
        .verify(&up.fetcher, &metadata.jwks_uri, logout_token, &metadata.id_token_signing_alg_values_supported)
        .await
        .map_err(|e| LogoutError::Invalid(e.to_string()))?;
    let now = store::now();
    let logout = claims::check_logout_token(&header, &claims, &p.issuer, &p.allowed_tenants, &p.client_id, now)
        .map_err(|e| LogoutError::Invalid(e.message))?;
    if !registration::first_use_of_assertion(
        &state.db,
        &format!("logout {} {}", p.id, logout.jti),
        logout.exp.max(now + 60),
    )
    .await?
    {
        return Err(LogoutError::Replayed);
    }
    let person = match (&logout.sub, &logout.sid) {
        (Some(sub), _) => identities::person(&state.db, &p.id, sub).await?,
        (None, Some(sid)) => identities::person_by_session(&state.db, &p.id, sid).await?,
        (None, None) => None,
    };
    // An unknown person is not an error: there is simply nothing to end here.
    let Some(person) = person else { return Ok(()) };
    users::end_sessions(&state.db, person.id, now).await?;
    for grant in grants::list_for_user(&state.db, person.id).await? {
        let by = Revoker::Provider { provider: &p.id, user_id: person.id };
        revocation::revoke_grant(&state.db, grant.id, Some(grant.client_id.as_str()), by, now).await?;
    }
    audit::record(
        &state.db,
        &audit::Event {
            event: "backchannel_logout",
            actor: Some(&person.username),
            user_id: Some(person.id),
            details: serde_json::json!({ "provider": p.id }),
            ..Default::default()
        },
        now,
    )
    .await?;
    Ok(())
}
