//! Group membership: `local` rows managed by the operator, and rows a provider reported (source =
//! the provider's id), replaced at each sign-in through that provider.

use uuid::Uuid;

use super::{Db, Result, StoreError, dispatch, dispatch_write};
use crate::users::groups::Groups;

pub const LOCAL: &str = "local";

/// Every group the person is in, whatever its source.
pub async fn of_user(db: &Db, user_id: Uuid) -> Result<Groups> {
    let names: Vec<String> =
        dispatch!(db, |pool| sqlx::query_scalar("SELECT DISTINCT name FROM user_groups WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(StoreError::from_sqlx)?);
    Ok(Groups::lenient(names))
}

/// Adds a person to a local group (idempotent).
pub async fn add_local(db: &Db, user_id: Uuid, name: &str) -> Result<()> {
    dispatch_write!(db, |pool| sqlx::query(
        "INSERT INTO user_groups (user_id, name, source) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    )
    .bind(user_id)
    .bind(name)
    .bind(LOCAL)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    Ok(())
}

/// Removes a person from a local group; `NotFound` when they were not in it.
pub async fn remove_local(db: &Db, user_id: Uuid, name: &str) -> Result<()> {
    let n = dispatch_write!(db, |pool| sqlx::query(
        "DELETE FROM user_groups WHERE user_id = $1 AND name = $2 AND source = $3"
    )
    .bind(user_id)
    .bind(name)
    .bind(LOCAL)
    .execute(pool)
    .await
    .map_err(StoreError::from_sqlx)?
    .rows_affected());
    if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

/// One membership, for listings.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Membership {
    pub name: String,
    pub username: String,
    pub source: String,
}

/// Every membership, by group then person.
pub async fn list(db: &Db) -> Result<Vec<Membership>> {
    dispatch!(db, |pool| sqlx::query_as::<_, Membership>(
        "SELECT g.name, u.username, g.source FROM user_groups g JOIN users u ON u.id = g.user_id \
         ORDER BY g.name, u.username, g.source"
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::from_sqlx))
}

/// Replaces a person's local groups (those from a provider stay), in one transaction.
pub async fn set_local(db: &Db, user_id: Uuid, groups: &Groups) -> Result<()> {
    use super::tx::{WriteTx, on};
    let mut tx = WriteTx::begin(db).await?;
    on!(tx, |c| sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND source = $2")
        .bind(user_id)
        .bind(LOCAL)
        .execute(c)
        .await?
        .rows_affected());
    for name in groups.iter() {
        on!(tx, |c| sqlx::query("INSERT INTO user_groups (user_id, name, source) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(name)
            .bind(LOCAL)
            .execute(c)
            .await?
            .rows_affected());
    }
    tx.commit().await
}
