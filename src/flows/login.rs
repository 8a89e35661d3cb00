//! Signing in: the password check under the throttle (`users::throttle`, shared by every node
//! through the database), and the audit trail.

use std::net::IpAddr;

use crate::flows::error::PageError;
use crate::flows::session::SignedIn;
use crate::state::AppState;
use crate::store::{self, audit, users};
use crate::users::throttle::{self, Outcome};

/// The outcome of a sign-in attempt.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in: the caller puts this in the session.
    Ok(SignedIn),
    /// Too many failures for the account or the address: the message says for how long.
    Locked(String),
    /// Wrong username or password, or a disabled account: the message says which it may say.
    Failed(String),
}

/// The longest username a sign-in attempt may type.
pub const MAX_USERNAME: usize = 256;

/// Checks a sign-in attempt from `ip`, under the throttle (`users::throttle`: locks per account
/// and address, growing delays per account, the address locked for the accounts it guessed).
pub async fn sign_in(state: &AppState, ip: IpAddr, username: &str, password: String) -> Result<SignIn, PageError> {
    // No account has a name this long (`admin::validate_username` allows 64 bytes): refused
    // before anything is looked up, counted or audited.
    if username.len() > MAX_USERNAME {
        return Ok(SignIn::Failed(format!(
            "Wrong username or password (a username has at most {MAX_USERNAME} characters)."
        )));
    }
    let now = store::now();
    let ip_text = ip.to_string();
    let user = users::by_username(&state.db, username).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let checked = match throttle::check_password(state, ip, username, password, stored, now).await? {
        Outcome::Locked { until } => {
            state.metrics.login("locked");
            return Ok(SignIn::Locked(locked_message(until - now)));
        }
        Outcome::Checked(checked) => checked,
    };
    let user = match user {
        Some(u) if checked.matches && !u.disabled => u,
        other => {
            if let Some(until) = checked.locked_until {
                audit::record(
                    &state.db,
                    &audit::Event {
                        event: "login_locked",
                        actor: Some(username),
                        ip: Some(&ip_text),
                        details: serde_json::json!({ "until": until, "failures": checked.account_failures }),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            }
            state.metrics.login("failed");
            let reason = match &other {
                Some(u) if checked.matches && u.disabled => "disabled",
                Some(_) => "wrong_password",
                None => "unknown_user",
            };
            audit::record(
                &state.db,
                &audit::Event {
                    event: "login_failed",
                    actor: Some(username),
                    ip: Some(&ip_text),
                    user_id: other.as_ref().map(|u| u.id),
                    details: serde_json::json!({ "reason": reason }),
                    ..Default::default()
                },
                now,
            )
            .await?;
            let message = if reason == "disabled" {
                "This account is disabled. Ask your administrator."
            } else {
                "Wrong username or password."
            };
            return Ok(SignIn::Failed(message.into()));
        }
    };
    checked.accept(state).await?;
    state.metrics.login("success");
    let who = SignedIn {
        user_id: user.id,
        username: user.username.clone(),
        auth_time: now,
        login_id: crate::tokens::secrets::random_string(9),
    };
    audit::record(
        &state.db,
        &audit::Event {
            event: "login",
            actor: Some(&user.username),
            user_id: Some(user.id),
            ip: Some(&ip_text),
            ..Default::default()
        },
        now,
    )
    .await?;
    Ok(SignIn::Ok(who))
}

/// What a refused attempt is told: for how long (rounded up to minutes).
pub fn locked_message(seconds: i64) -> String {
    let minutes = (seconds.max(1) + 59) / 60;
    format!(
        "Too many failed sign-ins. Try again in {minutes} minute{}, or from another network.",
        if minutes == 1 { "" } else { "s" }
    )
}

/// The name of the MCP server a parked request is for, shown on the login page. The operator
/// registered that name; the app's own name is self-chosen and is shown only on the consent page,
/// with what was checked about it.
pub async fn resource_name(state: &AppState, resource_id: uuid::Uuid) -> Result<Option<String>, PageError> {
    Ok(store::resources::by_id(&state.db, resource_id).await?.map(|r| r.row.name))
}
