//! What a browser session carries between requests (who is signed in, authorization requests
//! waiting for sign-in or consent), and the check that the person is still allowed in. The HTTP
//! layer stores these in the session.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clients::ClientId;
use crate::oauth::scope::ScopeSet;

use crate::flows::error::PageError;
use crate::state::AppState;
use crate::store::users;

pub use crate::store::sessions::{PENDING_CAP_REACHED, PENDING_FROM_KEY, SIGNED_IN_KEY};

/// How long a session nobody signed in to lives past its last change (a pending request, a
/// sign-in form's CSRF token, a sign-in at an identity provider): long enough for the pending
/// request's own ten minutes, far shorter than a signed-in session's `session_lifetime`.
pub const ANONYMOUS_SESSION_LIFETIME: i64 = 900;

/// The longest `state` and `nonce` an authorization request may carry: both are parked in the
/// session of someone not yet signed in. Clients send a random value (22 to 64 characters) or a
/// short encoded one; 1 KiB leaves room for the latter.
pub const MAX_STATE_BYTES: usize = 1024;
pub const MAX_NONCE_BYTES: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub username: String,
    pub auth_time: i64,
    /// Random per sign-in, so `prompt=login` can insist on a newer one.
    pub login_id: String,
}

/// A validated authorization request, parked while the person signs in and consents.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub id: String,
    pub client_id: ClientId,
    pub redirect_uri: String,
    pub resource_id: Uuid,
    pub scope: ScopeSet,
    pub code_challenge: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// RFC 9449 §10: `dpop_jkt`, the DPoP key the code will be bound to.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    /// `prompt=consent`: ask even when a grant covers the request.
    pub force_consent: bool,
    /// `prompt=login`: the sign-in (by `login_id`) that is not good enough for this request.
    pub stale_login: Option<String>,
    /// `login_hint` (an email or username), or a `domain_hint`'s domain as `@domain`: routes
    /// the person to the company's identity provider and is passed on to it.
    #[serde(default)]
    pub login_hint: Option<String>,
    /// The MCP server has a group policy: apply it once the person is known.
    #[serde(default)]
    pub restricted: bool,
    /// OIDC `max_age`: a sign-in older than this (seconds, when the request came) is not good
    /// enough for the request.
    #[serde(default)]
    pub max_age: Option<i64>,
    pub created_at: i64,
}

/// The session's person, if their account still exists and is enabled. `None` for a session
/// that names someone who may no longer sign in: the caller signs that session out.
pub async fn still_allowed(state: &AppState, signed_in: Option<SignedIn>) -> Result<Option<SignedIn>, PageError> {
    let Some(who) = signed_in else {
        return Ok(None);
    };
    match users::by_id(&state.db, who.user_id).await? {
        Some(u) if u.session_valid(who.auth_time) => Ok(Some(who)),
        _ => Ok(None),
    }
}
