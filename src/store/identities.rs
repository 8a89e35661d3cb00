//! People's links to upstream identity providers, by (provider, `sub`), and the one transaction
//! that signs a person in through a provider: find or link or create the person, refresh their
//! profile and the provider's groups, and record the sign-in.

use uuid::Uuid;

use super::audit::Event;
use super::tx::{WriteTx, on};
use super::users::{COLUMNS, User};
use super::{Db, Result, StoreError, dispatch};
use crate::users::groups::Groups;

/// What the provider said about the person, already checked and mapped.
#[derive(Debug)]
pub struct UpstreamPerson<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub username: &'a str,
    pub display_name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub email_verified: bool,
    /// The provider's session (`sid`), kept for back-channel logout by session.
    pub session_id: Option<&'a str>,
    /// `None`: the provider reports no groups (keep what is stored).
    pub groups: Option<&'a Groups>,
}

/// What the operator allows for people the provider names that are not linked yet.
#[derive(Debug, Clone, Copy)]
pub struct LinkPolicy {
    pub create_people: bool,
    pub link_by_email: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Already linked.
    Known,
    /// Linked now to an existing person with the same verified email.
    LinkedByEmail,
    /// Created now.
    Created,
}

/// Why a person could not be signed in (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not linked, and neither linking nor creating is allowed (or possible).
    NotProvisioned,
    /// Creating would take a username another person has.
    UsernameTaken,
    Disabled,
}

/// Signs a person in through a provider, in one transaction: the audit event `login` is written
/// with the rest, so a refusal writes nothing here (the caller audits refusals).
pub async fn sign_in(
    db: &Db,
    p: &UpstreamPerson<'_>,
    policy: LinkPolicy,
    audit: &Event<'_>,
    now: i64,
) -> Result<std::result::Result<(User, How), Refusal>> {
    let mut tx = WriteTx::begin(db).await?;
    let linked = format!(
        "SELECT {} FROM users u JOIN user_identities i ON i.user_id = u.id WHERE i.provider = $1 AND i.subject = $2{}",
        qualified("u"),
        tx.for_update()
    );
    let found: Option<User> =
        on!(tx, |c| sqlx::query_as(&linked).bind(p.provider).bind(p.subject).fetch_optional(c).await?);
    let (user, how) = match found {
        Some(u) => (u, How::Known),
        None => {
            let by_email = match (p.email, policy.link_by_email && p.email_verified) {
                (Some(email), true) => {
                    let sql = format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1) LIMIT 2");
                    let found: Vec<User> = on!(tx, |c| sqlx::query_as(&sql).bind(email).fetch_all(c).await?);
                    // Two people with one address: linking either would be a guess.
                    if found.len() == 1 { found.into_iter().next() } else { None }
                }
                _ => None,
            };
            match by_email {
                Some(u) => (u, How::LinkedByEmail),
                None if policy.create_people => {
                    let taken: Option<Uuid> =
                        on!(tx, |c| sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = lower($1)")
                            .bind(p.username)
                            .fetch_optional(c)
                            .await?);
                    if taken.is_some() {
                        return Ok(Err(Refusal::UsernameTaken));
                    }
                    let sql = format!(
                        "INSERT INTO users (id, username, password_hash, display_name, email, disabled, created_at, \
                         updated_at) VALUES ($1, $2, '', $3, $4, FALSE, $5, $5) RETURNING {COLUMNS}"
                    );
                    let u: User = on!(tx, |c| sqlx::query_as(&sql)
                        .bind(Uuid::now_v7())
                        .bind(p.username)
                        .bind(p.display_name)
                        .bind(p.email)
                        .bind(now)
                        .fetch_one(c)
                        .await?);
                    (u, How::Created)
                }
                None => return Ok(Err(Refusal::NotProvisioned)),
            }
        }
    };
    if user.disabled {
        return Ok(Err(Refusal::Disabled));
    }
    if how != How::Known {
        on!(tx, |c| sqlx::query(
            "INSERT INTO user_identities (provider, subject, user_id, email, created_at, last_login_at, session_id) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)"
        )
        .bind(p.provider)
        .bind(p.subject)
        .bind(user.id)
        .bind(p.email)
        .bind(now)
        .bind(p.session_id)
        .execute(c)
        .await?
        .rows_affected());
    } else {
        on!(tx, |c| sqlx::query(
            "UPDATE user_identities SET email = $1, last_login_at = $2, session_id = $5 \
             WHERE provider = $3 AND subject = $4"
        )
        .bind(p.email)
        .bind(now)
        .bind(p.provider)
        .bind(p.subject)
        .bind(p.session_id)
        .execute(c)
        .await?
        .rows_affected());
    }
    // The provider is the source of truth for the profile of people it created or manages.
    if p.display_name.is_some() || p.email.is_some() {
        on!(tx, |c| sqlx::query(
            "UPDATE users SET display_name = COALESCE($1, display_name), email = COALESCE($2, email), \
             updated_at = $3 WHERE id = $4"
        )
        .bind(p.display_name)
        .bind(p.email)
        .bind(now)
        .bind(user.id)
        .execute(c)
        .await?
        .rows_affected());
    }
    if let Some(groups) = p.groups {
        on!(tx, |c| sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND source = $2")
            .bind(user.id)
            .bind(p.provider)
            .execute(c)
            .await?
            .rows_affected());
        for name in groups.iter() {
            on!(tx, |c| sqlx::query("INSERT INTO user_groups (user_id, name, source) VALUES ($1, $2, $3)")
                .bind(user.id)
                .bind(name)
                .bind(p.provider)
                .execute(c)
                .await?
                .rows_affected());
        }
    }
    let event = Event { user_id: Some(user.id), actor: Some(&user.username), ..audit.clone() };
    tx.insert_audit(&event, now).await?;
    tx.commit().await?;
    Ok(Ok((user, how)))
}

/// The person linked to (provider, subject), if any.
pub async fn person(db: &Db, provider: &str, subject: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {} FROM users u JOIN user_identities i ON i.user_id = u.id WHERE i.provider = $1 AND i.subject = $2",
        qualified("u")
    );
    dispatch!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(provider)
        .bind(subject)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

/// The person whose latest sign-in through `provider` was in the provider's session `sid`.
pub async fn person_by_session(db: &Db, provider: &str, sid: &str) -> Result<Option<User>> {
    let sql = format!(
        "SELECT {} FROM users u JOIN user_identities i ON i.user_id = u.id WHERE i.provider = $1 AND i.session_id = $2 \
         LIMIT 1",
        qualified("u")
    );
    dispatch!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(provider)
        .bind(sid)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

/// One link, for listings.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Link {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub last_login_at: i64,
}

pub async fn of_user(db: &Db, user_id: Uuid) -> Result<Vec<Link>> {
    dispatch!(db, |pool| sqlx::query_as::<_, Link>(
        "SELECT provider, subject, email, last_login_at FROM user_identities WHERE user_id = $1 ORDER BY provider"
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
    .map_err(StoreError::from_sqlx))
}

fn qualified(alias: &str) -> String {
    COLUMNS.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}
