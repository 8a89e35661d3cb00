//! Who may use an MCP server: its group policy applied to a person, at authorization (before
//! consent, so scopes the person may not have are never offered) and again at every refresh.
//! Every denial is audited.

use uuid::Uuid;

use crate::clients::ClientId;
use crate::flows::error::PageError;
use crate::oauth::scope::ScopeSet;
use crate::state::AppState;
use crate::store::{self, StoreError, audit, groups, resources};
use crate::users::groups::{Access, Groups, Policy};

/// The person the policy is applied to.
pub struct Person<'a> {
    pub user_id: Uuid,
    pub username: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the scopes the person may have.
    Allowed(ScopeSet),
    /// Not allowed: the resource's name and the groups it is limited to.
    Denied(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub resource_name: String,
    pub allowed_groups: Groups,
}

/// Applies the resource's policy to the person for `requested`; a denial is audited.
pub async fn check(
    state: &AppState,
    person: &Person<'_>,
    resource_id: Uuid,
    requested: &ScopeSet,
    client_id: Option<&ClientId>,
) -> Result<Decision, StoreError> {
    let Some(resource) = resources::by_id(&state.db, resource_id).await? else {
        return Ok(Decision::Allowed(requested.clone()));
    };
    let policy = Policy {
        allowed_groups: &resource.row.allowed_groups,
        scopes: resource.scopes.iter().map(|s| (s.name.as_str(), &s.groups)).collect(),
    };
    if !policy.restricts() {
        return Ok(Decision::Allowed(requested.clone()));
    }
    let theirs = groups::of_user(&state.db, person.user_id).await?;
    let decision = policy.decide(&theirs, requested);
    let removed = match &decision {
        Access::Allowed(kept) => requested.difference(kept),
        Access::Denied => requested.clone(),
    };
    if !removed.is_empty() || decision == Access::Denied {
        let event = if decision == Access::Denied { "access_denied_group" } else { "scope_withheld_group" };
        audit::record(
            &state.db,
            &audit::Event {
                event,
                actor: person.username,
                user_id: Some(person.user_id),
                client_id: client_id.map(ClientId::as_str),
                details: serde_json::json!({ "resource": resource.row.uri, "scope": removed.to_space_separated() }),
                ..Default::default()
            },
            store::now(),
        )
        .await?;
    }
    Ok(match decision {
        Access::Allowed(kept) => Decision::Allowed(kept),
        Access::Denied => Decision::Denied(Refusal {
            resource_name: resource.row.name.clone(),
            allowed_groups: resource.row.allowed_groups.clone(),
        }),
    })
}

/// The page for a person outside the MCP server's groups.
pub fn denied_page(r: &Refusal) -> PageError {
    PageError::new(
        http::StatusCode::FORBIDDEN,
        format!("{} is limited to some groups", r.resource_name),
        format!(
            "{} is limited to members of: {}. You are not in any of them, so no access was given. \
             Ask your administrator if you need it.",
            r.resource_name, r.allowed_groups
        ),
    )
    .with_code(crate::oauth::ErrorCode::AccessDenied)
}
