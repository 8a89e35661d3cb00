//! People who sign in.

use uuid::Uuid;

use super::{Db, Result, StoreError, dispatch, dispatch_write};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// May use the admin console and API.
    pub is_admin: bool,
    /// Sessions that began at or before this instant are over (back-channel logout, "sign out
    /// everywhere"); 0: none ended.
    pub sessions_not_before: i64,
}

impl User {
    /// The person's session that began at `auth_time` may continue.
    pub fn session_valid(&self, auth_time: i64) -> bool {
        !self.disabled && auth_time > self.sessions_not_before
    }
}

pub(crate) const COLUMNS: &str =
    "id, username, password_hash, display_name, email, disabled, created_at, updated_at, is_admin, sessions_not_before";

pub async fn create(db: &Db, username: &str, password_hash: &str, now: i64) -> Result<User> {
    let sql = format!(
        "INSERT INTO users (id, username, password_hash, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, FALSE, $4, $4) RETURNING {COLUMNS}"
    );
    let id = Uuid::now_v7();
    dispatch_write!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(id)
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .fetch_one(pool)
        .await
        .map_err(|e| StoreError::on_conflict(e, || format!("a user named {username:?} already exists"))))
}

pub async fn by_username(db: &Db, username: &str) -> Result<Option<User>> {
    // No stored name has a NUL (Postgres cannot even compare one): the same answer on both engines.
    if username.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username = $1");
    dispatch!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(username)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

pub async fn by_id(db: &Db, id: Uuid) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    dispatch!(db, |pool| sqlx::query_as::<_, User>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

pub async fn list(db: &Db) -> Result<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY username");
    dispatch!(db, |pool| sqlx::query_as::<_, User>(&sql).fetch_all(pool).await.map_err(StoreError::from_sqlx))
}

pub async fn count(db: &Db) -> Result<i64> {
    dispatch!(db, |pool| sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await
        .map_err(StoreError::from_sqlx))
}

pub async fn set_password(db: &Db, username: &str, password_hash: &str, now: i64) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3"
    )
    .bind(password_hash)
    .bind(now)
    .bind(username)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

pub async fn set_disabled(db: &Db, username: &str, disabled: bool, now: i64) -> Result<()> {
    set_flag(db, "disabled", username, disabled, now).await
}

pub async fn set_profile(
    db: &Db,
    username: &str,
    display_name: Option<&str>,
    email: Option<&str>,
    now: i64,
) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "UPDATE users SET display_name = $1, email = $2, updated_at = $3 WHERE username = $4"
    )
    .bind(display_name)
    .bind(email)
    .bind(now)
    .bind(username)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

pub async fn set_admin(db: &Db, username: &str, is_admin: bool, now: i64) -> Result<()> {
    set_flag(db, "is_admin", username, is_admin, now).await
}

/// Sets one boolean column of a person; `column` is one of this module's, never input.
async fn set_flag(db: &Db, column: &'static str, username: &str, value: bool, now: i64) -> Result<()> {
    let sql = format!("UPDATE users SET {column} = $1, updated_at = $2 WHERE username = $3");
    let n = dispatch_write!(db, |pool| sqlx::query(&sql)
        .bind(value)
        .bind(now)
        .bind(username)
        .execute(pool)
        .await
        .map_err(StoreError::from_sqlx)?
        .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// Ends every session of the person that began at or before `now`.
pub async fn end_sessions(db: &Db, id: Uuid, now: i64) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "UPDATE users SET sessions_not_before = $1, updated_at = $1 WHERE id = $2 AND sessions_not_before < $1"
    )
    .bind(now)
    .bind(id)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    Ok(())
}
