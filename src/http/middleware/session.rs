//! The browser session: who is signed in, the CSRF token, and authorization requests waiting for
//! login or consent. Stored server-side (the `web_sessions` table), so any node can continue.

use tower_sessions::Session;

use crate::flows::federation::{LOGIN_LIFETIME, UpstreamLogin};
use crate::flows::session::{PENDING_CAP_REACHED, PENDING_FROM_KEY, SIGNED_IN_KEY, still_allowed};
pub use crate::flows::session::{PendingAuthorization, SignedIn};
use crate::http::HttpState;
use crate::http::error::PageError;
use crate::tokens::secrets;

const USER: &str = SIGNED_IN_KEY;
const CSRF: &str = "csrf";
const PENDING: &str = "pending";
const UPSTREAM: &str = "upstream";
/// Sign-ins at an identity provider a session waits for at once (several tabs); older ones go.
const MAX_UPSTREAM: usize = 4;
/// Authorization requests a session keeps at once; older ones are dropped.
const MAX_PENDING: usize = 8;
/// How long a person may take between /authorize and approving consent.
pub const PENDING_LIFETIME: i64 = 600;

/// The session cookie's name for an https issuer (`secure`) with this path prefix ("" for an
/// origin issuer). `__Host-` requires `Path=/`, so an issuer with a path (several tenants on one
/// host, each its own issuer) uses `__Secure-` with its own path: a tenant's cookie is never sent
/// to (or overwritten by) another tenant's pages.
pub fn cookie_name(secure: bool, prefix: &str) -> &'static str {
    match (secure, prefix.is_empty()) {
        (true, true) => "__Host-portcullis",
        (true, false) => "__Secure-portcullis",
        (false, _) => "portcullis",
    }
}

/// The session cookie's `Path`: the issuer's path, or `/`.
pub fn cookie_path(prefix: &str) -> String {
    if prefix.is_empty() { "/".into() } else { prefix.to_string() }
}

fn internal(e: tower_sessions::session::Error) -> PageError {
    tracing::error!(error = %e, "session store failed");
    PageError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Your session could not be read. Please try again in a moment.",
    )
}

pub async fn signed_in(session: &Session) -> Result<Option<SignedIn>, PageError> {
    session.get::<SignedIn>(USER).await.map_err(internal)
}

/// Starts an authenticated session with a new id (no session fixation) and a new CSRF token.
pub async fn sign_in(session: &Session, who: SignedIn) -> Result<(), PageError> {
    session.cycle_id().await.map_err(internal)?;
    // No longer a pending-request session: it leaves its address's count.
    session.remove_value(PENDING_FROM_KEY).await.map_err(internal)?;
    session.insert(USER, who).await.map_err(internal)?;
    session.insert(CSRF, secrets::random_token()).await.map_err(internal)
}

pub async fn sign_out(session: &Session) -> Result<(), PageError> {
    session.flush().await.map_err(internal)
}

/// The session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String, PageError> {
    if let Some(t) = session.get::<String>(CSRF).await.map_err(internal)? {
        return Ok(t);
    }
    let t = secrets::random_token();
    session.insert(CSRF, &t).await.map_err(internal)?;
    Ok(t)
}

/// Refuses a form post whose token does not match the session's (a cross-site post, or a session
/// that expired while the page was open).
pub async fn check_csrf(session: &Session, submitted: Option<&str>) -> Result<(), PageError> {
    let expected = session.get::<String>(CSRF).await.map_err(internal)?;
    let ok = match (expected, submitted) {
        (Some(e), Some(s)) => secrets::verify(s, &secrets::hash(&e)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(PageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "This form has expired",
            "The page was open too long or came from another site. Go back to the app and start again.",
        ))
    }
}

pub async fn park(session: &Session, req: PendingAuthorization) -> Result<(), PageError> {
    let mut list: Vec<PendingAuthorization> = session.get(PENDING).await.map_err(internal)?.unwrap_or_default();
    // A request parked again (after sign-in, narrowed by policy) replaces its earlier self.
    list.retain(|p| p.created_at + PENDING_LIFETIME > crate::flows::now() && p.id != req.id);
    if list.len() >= MAX_PENDING {
        list.remove(0);
    }
    list.push(req);
    session.insert(PENDING, list).await.map_err(internal)
}

pub async fn pending(session: &Session, id: &str) -> Result<PendingAuthorization, PageError> {
    let list: Vec<PendingAuthorization> = session.get(PENDING).await.map_err(internal)?.unwrap_or_default();
    list.into_iter().find(|p| p.id == id && p.created_at + PENDING_LIFETIME > crate::flows::now()).ok_or_else(|| {
        PageError::bad_request(
            "This sign-in request has expired or was already used. Go back to the app and connect again.",
        )
    })
}

/// A session this request created to park an authorization request (the browser sent no cookie,
/// or one naming no live session) is stored now, counted against `from` (an address key): an
/// address holding `pending_sessions_per_address` already is refused with 429 and nothing is
/// stored. Any other session is left to the session layer.
pub async fn admit_new_pending(session: &Session, from: &str) -> Result<(), PageError> {
    if session.id().is_some() || session.is_empty().await || signed_in(session).await?.is_some() {
        return Ok(());
    }
    session.insert(PENDING_FROM_KEY, from).await.map_err(internal)?;
    match session.save().await {
        Ok(()) => Ok(()),
        Err(tower_sessions::session::Error::Store(tower_sessions::session_store::Error::Backend(m)))
            if m == PENDING_CAP_REACHED =>
        {
            // Emptied, the session layer stores nothing and sets no cookie.
            session.clear().await;
            Err(PageError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins in progress",
                "Too many sign-ins are waiting to be finished from your network. Finish one, or try again in a few minutes.",
            ))
        }
        Err(e) => Err(internal(e)),
    }
}

/// Keeps a sign-in at an identity provider until the person comes back.
pub async fn park_upstream(session: &Session, login: UpstreamLogin) -> Result<(), PageError> {
    let mut list: Vec<UpstreamLogin> = session.get(UPSTREAM).await.map_err(internal)?.unwrap_or_default();
    list.retain(|l| l.created_at + LOGIN_LIFETIME > crate::flows::now());
    if list.len() >= MAX_UPSTREAM {
        list.remove(0);
    }
    list.push(login);
    session.insert(UPSTREAM, list).await.map_err(internal)
}

/// The sign-in the provider's `state` names, removed from the session (each is used once).
pub async fn take_upstream(session: &Session, state: Option<&str>) -> Result<Option<UpstreamLogin>, PageError> {
    let Some(state) = state else { return Ok(None) };
    let mut list: Vec<UpstreamLogin> = session.get(UPSTREAM).await.map_err(internal)?.unwrap_or_default();
    let Some(at) = list.iter().position(|l| secrets::verify(state, &secrets::hash(&l.state))) else {
        return Ok(None);
    };
    let login = list.remove(at);
    session.insert(UPSTREAM, list).await.map_err(internal)?;
    Ok(Some(login))
}

pub async fn unpark(session: &Session, id: &str) -> Result<(), PageError> {
    let mut list: Vec<PendingAuthorization> = session.get(PENDING).await.map_err(internal)?.unwrap_or_default();
    list.retain(|p| p.id != id);
    session.insert(PENDING, list).await.map_err(internal)
}

/// The signed-in person, if the session has one and the account is still enabled (a session
/// naming anyone else is signed out).
pub async fn current_user(state: &HttpState, session: &Session) -> Result<Option<SignedIn>, PageError> {
    let signed_in = signed_in(session).await?;
    let had_someone = signed_in.is_some();
    let who = still_allowed(state, signed_in).await?;
    if had_someone && who.is_none() {
        sign_out(session).await?;
    }
    Ok(who)
}
