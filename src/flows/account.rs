//! The account page's actions: the person's connected apps (each grant), revoking one, and a
//! password change.

use std::net::IpAddr;

use uuid::Uuid;

use crate::clients;
use crate::flows::error::PageError;
use crate::flows::login;
use crate::flows::revocation::{Revoker, revoke_grant};
use crate::flows::session::SignedIn;
use crate::oauth::scope::OFFLINE_ACCESS;
use crate::state::AppState;
use crate::store::{self, audit, grants, resources, users};
use crate::users::password;
use crate::users::throttle::{self, Outcome};

/// One connected app: a live grant, in words.
pub struct ConnectedApp {
    pub grant_id: String,
    pub client_name: String,
    pub client_verified: bool,
    pub client_identity: String,
    pub resource_name: String,
    pub resource_uri: String,
    /// Each granted scope in words.
    pub scopes: Vec<String>,
    pub first_used: String,
    pub last_used: String,
}

/// The person's connected apps.
pub async fn connected_apps(state: &AppState, who: &SignedIn) -> Result<Vec<ConnectedApp>, PageError> {
    let mut apps = Vec::new();
    for g in grants::list_for_user(&state.db, who.user_id).await? {
        let client = clients::find(state, &g.client_id).await?;
        let Some(resource) = resources::by_id(&state.db, g.resource_id).await? else { continue };
        let scopes = g
            .scope
            .iter()
            .map(|name| match name {
                OFFLINE_ACCESS => "Stay connected when you are not using the app".to_string(),
                "openid" => "Confirm who you are".to_string(),
                "profile" => "See your name and username".to_string(),
                "email" => "See your email address".to_string(),
                _ => resource
                    .scopes
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.description.clone())
                    .unwrap_or(name.into()),
            })
            .collect();
        apps.push(ConnectedApp {
            grant_id: g.id.to_string(),
            client_name: client.as_ref().map(|c| c.display_name()).unwrap_or_else(|| g.client_id.to_string()),
            client_verified: client.as_ref().is_some_and(|c| c.verified()),
            client_identity: client.as_ref().map(|c| c.identity_line()).unwrap_or_default(),
            resource_name: resource.row.name.clone(),
            resource_uri: resource.row.uri.clone(),
            scopes,
            first_used: date(g.created_at),
            last_used: g.last_used_at.map(date).unwrap_or_else(|| "never".into()),
        });
    }
    Ok(apps)
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_default()
}

/// Revokes one of the person's grants (`grant_id` as the form sent it). `false` when there is no
/// such live grant of theirs: someone else's grant reads as not found.
pub async fn revoke(state: &AppState, who: &SignedIn, grant_id: &str) -> Result<bool, PageError> {
    let grant = match grant_id.parse::<Uuid>() {
        Ok(id) => grants::by_id(&state.db, id).await?,
        Err(_) => None,
    };
    let Some(grant) = grant.filter(|g| g.user_id == who.user_id && g.revoked_at.is_none()) else {
        return Ok(false);
    };
    let by = Revoker::Person { username: &who.username, user_id: who.user_id };
    revoke_grant(&state.db, grant.id, Some(&grant.client_id), by, store::now()).await?;
    Ok(true)
}

/// A password change as the form sent it.
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
    pub confirm_password: String,
}

/// Why a password change was refused, for the page to show.
#[derive(Debug)]
pub struct Refused {
    pub message: String,
    /// Too many wrong passwords: refused before checking this one (429).
    pub throttled: bool,
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
    let fail = |msg: &str| Ok(Err(Refused { message: msg.to_string(), throttled: false }));
    let user = users::by_id(&state.db, who.user_id)
        .await?
        .ok_or_else(|| PageError::bad_request("Your account no longer exists."))?;
    let now = store::now();
    let stored = Some(user.password_hash);
    match throttle::check_password(state, ip, &user.username, form.current_password, stored, now).await? {
        Outcome::Locked { until } => {
            return Ok(Err(Refused { message: login::locked_message(until - now), throttled: true }));
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
            return fail("The current password is wrong.");
        }
    }
    if form.new_password != form.confirm_password {
        return fail("The new passwords do not match.");
    }
    if let Err(e) = password::check_policy(&form.new_password) {
        return fail(&format!("The new {e}."));
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
