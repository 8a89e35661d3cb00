//! Consent: what the consent page shows (who is asking, for which MCP server, with which
//! scopes), and the person's answer. Approve records (or widens) the grant and issues the code;
//! Deny answers `access_denied`.

use crate::clients;
use crate::flows::authorize::{issue_code, signed_in_recently_enough};
use crate::flows::error::PageError;
use crate::flows::session::{PendingAuthorization, SignedIn};
use crate::oauth::authorize as authz;
use crate::oauth::scope::{OFFLINE_ACCESS, ScopeSet};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::{self, audit, grants, resources};

/// One scope line of the consent page.
#[derive(Clone, Debug)]
pub struct ScopeShown {
    pub name: String,
    pub description: String,
    /// Not in the grant the client already holds.
    pub is_new: bool,
}

/// What the consent page shows.
#[derive(Clone, Debug)]
pub struct ConsentFacts {
    pub client_id: String,
    pub client_name: String,
    pub client_verified: bool,
    pub client_identity: String,
    pub resource_name: String,
    pub resource_uri: String,
    pub scopes: Vec<ScopeShown>,
    pub previously_granted: bool,
    /// A logo is stored for the client (served from this server).
    pub has_logo: bool,
}

/// The facts for a parked request; `grant` is the one the client already holds, if any.
pub async fn facts(
    state: &AppState,
    pending: &PendingAuthorization,
    grant: Option<&grants::Grant>,
) -> Result<ConsentFacts, PageError> {
    let client = clients::find(state, &pending.client_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The app asking for access is no longer registered."))?;
    let resource = resources::by_id(&state.db, pending.resource_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The MCP server is no longer registered."))?;
    let requested = &pending.scope;
    let granted = match grant {
        Some(g) => g.scope.clone(),
        None => ScopeSet::default(),
    };
    let shown = requested.union(&granted);
    let scopes = shown
        .iter()
        .map(|name| ScopeShown {
            name: name.to_string(),
            description: if name == OFFLINE_ACCESS {
                "Stay connected: keep access when you are not using the app, until you revoke it".to_string()
            } else {
                resource.scopes.iter().find(|s| s.name == name).map(|s| s.description.clone()).unwrap_or_default()
            },
            is_new: !granted.contains(name),
        })
        .collect();
    Ok(ConsentFacts {
        client_id: client.client_id().to_string(),
        client_name: client.display_name(),
        client_verified: client.verified(),
        client_identity: client.identity_line(),
        resource_name: resource.row.name.clone(),
        resource_uri: resource.row.uri.clone(),
        scopes,
        previously_granted: grant.is_some(),
        has_logo: store::clients::logo(&state.db, client.client_id()).await?.is_some(),
    })
}

/// Where the browser goes after the person answered.
#[derive(Debug)]
pub enum Answered {
    /// Back to the client with this URL: a code, or `access_denied`.
    ToClient(String),
    /// The request wants a newer sign-in (`prompt=login`, `max_age`) than the session's: nothing
    /// was decided; sign in, then the request continues.
    SignInAgain,
}

/// The person's answer (`approve` or `deny`) to a parked request. A form posted for a request
/// whose sign-in requirement was never met (the consent page skipped) decides nothing.
pub async fn decide(
    state: &AppState,
    who: &SignedIn,
    pending: &PendingAuthorization,
    decision: &str,
) -> Result<Answered, PageError> {
    if !signed_in_recently_enough(pending, who) {
        return Ok(Answered::SignInAgain);
    }
    let now = store::now();
    let event = |name| audit::Event {
        event: name,
        actor: Some(&who.username),
        user_id: Some(who.user_id),
        client_id: Some(&pending.client_id),
        details: serde_json::json!({ "scope": pending.scope, "resource_id": pending.resource_id }),
        ..Default::default()
    };
    let url = match decision {
        "approve" => {
            // Step-up widens the grant to the union of what it had and what was approved.
            // Computed inside the store's transaction, from the live grant it read (a stored scope
            // that no longer parses fails the read, as a corrupt row).
            let union = |granted: Option<&ScopeSet>| match granted {
                Some(granted) => pending.scope.union(granted),
                None => pending.scope.clone(),
            };
            let client = clients::find(state, &pending.client_id).await?;
            let fingerprint = client.as_ref().and_then(clients::fingerprint);
            // The page named this redirect's host: errors may go there automatically from now on.
            let redirect =
                client.as_ref().and_then(|c| authz::registered_form(&c.metadata.redirect_uris, &pending.redirect_uri));
            let shown = grants::Shown {
                client_fingerprint: fingerprint.as_deref(),
                redirect_uri: redirect.map(|r| r.as_str()),
            };
            let grant = grants::approve_as_shown(
                &state.db,
                who.user_id,
                &pending.client_id,
                pending.resource_id,
                union,
                shown,
                now,
            )
            .await?;
            audit::record(&state.db, &event("consent_granted"), now).await?;
            issue_code(state, pending, who, grant.id).await?
        }
        "deny" => {
            audit::record(&state.db, &event("consent_denied"), now).await?;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the person denied the request");
            authz::response_url(&pending.redirect_uri, &state.settings.issuer, pending.state.as_deref(), Err(&e))
        }
        _ => return Err(PageError::bad_request("Choose Approve or Deny.")),
    };
    Ok(Answered::ToClient(url))
}
