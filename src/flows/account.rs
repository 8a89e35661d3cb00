//! The account page's actions: the person's connected apps (each grant), revoking one, and a
//! password change.

use std::net::IpAddr;

use uuid::Uuid;

use crate::clients;
use crate::flows::describe::{self, Vouched};
use crate::flows::error::PageError;
use crate::flows::login;
use crate::flows::revocation::{Revoker, revoke_grant};
use crate::flows::session::SignedIn;
use crate::state::AppState;
use crate::store::{self, audit, grants, resources, users};
use crate::users::password;
use crate::users::throttle::{self, Outcome};

/// One connected app: a live grant, in words.
pub struct ConnectedApp {
    pub grant_id: String,
    /// Shortened, one line (see [`describe::short_name`]).
    pub client_name: String,
    /// Pre-registered, or identified by its metadata document's host.
    pub client_verified: bool,
    /// What was checked about the app, as a short label.
    pub client_identity: String,
    /// The name was chosen by the operator (shown plain) rather than by the app (shown quoted).
    pub name_is_checked: bool,
    pub resource_name: String,
    pub resource_uri: String,
    /// Each granted scope in words.
    pub scopes: Vec<String>,
    /// "Approved 5 Dec 2026 · not used yet" / "Approved 5 Dec 2026 · last used 7 Dec 2026".
    pub history: String,
}

/// The connected-apps page: the apps, and the confirmation of a revocation just made.
pub struct Overview {
    pub apps: Vec<ConnectedApp>,
    pub notice: Option<String>,
}

/// The person's connected apps; `revoked` is the grant id a revocation just redirected with
/// (the notice names its app when it is one of the person's revoked grants).
pub async fn overview(state: &AppState, who: &SignedIn, revoked: Option<&str>) -> Result<Overview, PageError> {
    let notice = match revoked {
        Some(grant_id) => Some(revoked_notice(state, who, grant_id).await?),
        None => None,
    };
    Ok(Overview { apps: connected_apps(state, who).await?, notice })
}

/// The person's connected apps.
pub async fn connected_apps(state: &AppState, who: &SignedIn) -> Result<Vec<ConnectedApp>, PageError> {
    let mut apps = Vec::new();
    for g in grants::list_for_user(&state.db, who.user_id).await? {
        let client = clients::find(state, &g.client_id).await?;
        let Some(resource) = resources::by_id(&state.db, g.resource_id).await? else { continue };
        let scopes = g.scope.iter().map(|name| describe::scope(&resource, name)).collect();
        let vouched = client.as_ref().map(Vouched::of).unwrap_or(Vouched::Nobody);
        let used = match g.last_used_at {
            Some(t) => format!("last used {}", describe::date(t)),
            None => "not used yet".into(),
        };
        apps.push(ConnectedApp {
            grant_id: g.id.to_string(),
            client_name: describe::short_name(
                &client.as_ref().map(|c| c.display_name()).unwrap_or_else(|| g.client_id.to_string()),
            ),
            client_verified: client.as_ref().is_some_and(|c| c.verified()),
            client_identity: vouched.label(),
            name_is_checked: vouched.name_is_checked(),
            resource_name: resource.row.name.clone(),
            resource_uri: resource.row.uri.clone(),
            scopes,
            history: format!("Approved {} · {used}", describe::date(g.created_at)),
        });
    }
    Ok(apps)
}

/// "Access revoked", naming the app and the MCP server when `grant_id` is a revoked grant of
/// this person's (anything else gets the plain sentence: the id comes from the address bar).
async fn revoked_notice(state: &AppState, who: &SignedIn, grant_id: &str) -> Result<String, PageError> {
    let plain = "Access revoked. The app must ask you again before it can use that MCP server.".to_string();
    let Ok(id) = grant_id.parse::<Uuid>() else { return Ok(plain) };
    let Some(grant) =
        grants::by_id(&state.db, id).await?.filter(|g| g.user_id == who.user_id && g.revoked_at.is_some())
    else {
        return Ok(plain);
    };
    let (Some(client), Some(resource)) =
        (clients::find(state, &grant.client_id).await?, resources::by_id(&state.db, grant.resource_id).await?)
    else {
        return Ok(plain);
    };
    let vouched = Vouched::of(&client);
    let name = describe::short_name(&client.display_name());
    let app = if vouched.name_is_checked() { name } else { format!("“{name}”") };
    Ok(format!("Access revoked: {app} can no longer use {}. It must ask you again before it can.", resource.row.name))
}

/// Revokes one of the person's grants (`grant_id` as the form sent it) and returns its id.
/// `None` when there is no such live grant of theirs: someone else's grant reads as not found.
pub async fn revoke(state: &AppState, who: &SignedIn, grant_id: &str) -> Result<Option<Uuid>, PageError> {
    let grant = match grant_id.parse::<Uuid>() {
        Ok(id) => grants::by_id(&state.db, id).await?,
        Err(_) => None,
    };
    let Some(grant) = grant.filter(|g| g.user_id == who.user_id && g.revoked_at.is_none()) else {
        return Ok(None);
    };
    let by = Revoker::Person { username: &who.username, user_id: who.user_id };
    revoke_grant(&state.db, grant.id, Some(&grant.client_id), by, store::now()).await?;
    Ok(Some(grant.id))
}

/// A password change as the form sent it.
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
    pub confirm_password: String,
}

/// Why a password change was refused, for the page to show beside the form.
#[derive(Debug)]
pub struct Refused {
    pub message: String,
    /// The field the message is about (`None`: the form as a whole).
    pub field: Option<PasswordField>,
    /// Too many wrong passwords: refused before checking this one (429).
    pub throttled: bool,
}

/// A field of the password form, so the page marks the one that was wrong (`aria-invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordField {
    Current,
    New,
    Confirm,
}

/// Changes the person's password; `ip` is where the request came from. `Ok(Err(refused))` when
/// the change is refused (wrong current password, too many wrong ones, mismatch, policy): the
/// page shows the message. The current password is checked like a sign-in, under the same
/// throttle (a stolen session must not become a way around the login limits).
pub async fn change_password(
    state: &AppState,
    who: &SignedIn,
    ip: IpAddr,
    form: PasswordChange,
) -> Result<Result<(), Refused>, PageError> {
    let fail = |field, msg: &str| Ok(Err(Refused { message: msg.to_string(), field: Some(field), throttled: false }));
    let user = users::by_id(&state.db, who.user_id)
        .await?
        .ok_or_else(|| PageError::bad_request("Your account no longer exists."))?;
    let now = store::now();
    let stored = Some(user.password_hash);
    match throttle::check_password(state, ip, &user.username, form.current_password, stored, now).await? {
        Outcome::Locked { until } => {
            return Ok(Err(Refused { message: login::locked_message(until - now), field: None, throttled: true }));
        }
        Outcome::Checked(checked) if checked.matches => checked.accept(state).await?,
        Outcome::Checked(_) => {
            audit::record(
                &state.db,
                &audit::Event {
                    event: "password_change_failed",
                    actor: Some(&who.username),
                    user_id: Some(who.user_id),
                    ip: Some(&ip.to_string()),
                    details: serde_json::json!({ "reason": "wrong_password" }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            return fail(PasswordField::Current, "The current password is wrong.");
        }
    }
    if form.new_password != form.confirm_password {
        return fail(PasswordField::Confirm, "The new passwords do not match.");
    }
    if let Err(e) = password::check_policy(&form.new_password) {
        return fail(PasswordField::New, &format!("The new {e}."));
    }
    let hash = state.hasher.hash(form.new_password).await.map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        PageError::new(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Your password was not changed.",
        )
    })?;
    users::set_password(&state.db, &who.username, &hash, now).await?;
    audit::record(
        &state.db,
        &audit::Event {
            event: "password_changed",
            actor: Some(&who.username),
            user_id: Some(who.user_id),
            ..Default::default()
        },
        now,
    )
    .await?;
    Ok(Ok(()))
}
