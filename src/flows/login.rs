//! Signing in: the throttles (per account and per address, shared by every node through the
//! database), the password check, and the audit trail.

use std::net::IpAddr;

use crate::clients;
use crate::flows::error::PageError;
use crate::flows::session::SignedIn;
use crate::state::AppState;
use crate::store::{self, audit, throttle, users};

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

/// Checks a sign-in attempt from `ip`.
pub async fn sign_in(state: &AppState, ip: IpAddr, username: &str, password: String) -> Result<SignIn, PageError> {
    let now = store::now();
    let ip_text = ip.to_string();
    // Throttle keys: the account (whether or not it exists, so the answer reveals nothing) and
    // the address (with more room: many people may share one).
    // (Postgres text cannot hold NUL; such a name is simply an unknown user.)
    let user_key = format!("user:{}", username.to_lowercase().replace('\0', "\u{fffd}"));
    let ip_key = format!("ip:{ip_text}");
    let locked = throttle::locked_until(&state.db, &[&user_key, &ip_key]).await?;
    if locked > now {
        state.metrics.login("locked");
        let minutes = (locked - now + 59) / 60;
        let message =
            format!("Too many failed sign-ins. Try again in {minutes} minute{}.", if minutes == 1 { "" } else { "s" });
        return Ok(SignIn::Locked(message));
    }
    let user = users::by_username(&state.db, username).await?;
    let ok = state.hasher.verify(password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let user = match user {
        Some(u) if ok && !u.disabled => u,
        other => {
            let s = &state.settings.login;
            let lockout = s.lockout.as_i64();
            let (failures, user_lock) =
                throttle::record_failure(&state.db, &user_key, now, s.max_failures, lockout).await?;
            let (_, ip_lock) = throttle::record_failure(&state.db, &ip_key, now, s.max_failures * 5, lockout).await?;
            if user_lock.max(ip_lock) > now {
                audit::record(
                    &state.db,
                    &audit::Event {
                        event: "login_locked",
                        actor: Some(username),
                        ip: Some(&ip_text),
                        details: serde_json::json!({ "until": user_lock.max(ip_lock), "failures": failures }),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            }
            // A growing delay before answering slows guessing further (it costs no CPU here).
            tokio::time::sleep(std::time::Duration::from_millis(100 * failures.clamp(0, 10) as u64)).await;
            state.metrics.login("failed");
            let reason = match &other {
                Some(u) if ok && u.disabled => "disabled",
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
    throttle::clear(&state.db, &user_key).await?;
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

/// The name of the app a parked request is for, shown on the login page.
pub async fn client_name(state: &AppState, client_id: &str) -> Result<Option<String>, PageError> {
    Ok(clients::find(state, client_id).await?.map(|c| c.display_name()))
}
