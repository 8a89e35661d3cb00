//! A fresh Postgres database per run, created from an admin URL and dropped afterwards, so runs
//! never see each other's rows (or dead tuples).

use sqlx::Connection;

use crate::Res;

/// Creates database `name` through the admin URL; returns the URL of the new database.
pub async fn create_database(admin: &str, name: &str) -> Res<String> {
    admin_sql(admin, &format!("CREATE DATABASE {name}")).await?;
    database_url(admin, name)
}

/// Drops database `name`, ending any session still connected to it.
pub async fn drop_database(admin: &str, name: &str) -> Res<()> {
    admin_sql(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await
}

/// The admin URL with its database replaced by `name` (user, host, port and options kept).
fn database_url(admin: &str, name: &str) -> Res<String> {
    let mut u = url::Url::parse(admin).map_err(|e| format!("bad Postgres URL: {e}"))?;
    u.set_path(&format!("/{name}"));
    Ok(u.to_string())
}

/// One statement on a connection of its own (`CREATE`/`DROP DATABASE` cannot run in a transaction).
async fn admin_sql(admin: &str, sql: &str) -> Res<()> {
    let mut c = sqlx::postgres::PgConnection::connect(admin).await.map_err(|e| format!("Postgres {admin}: {e}"))?;
    sqlx::query(sql).execute(&mut c).await.map_err(|e| format!("{sql}: {e}"))?;
    c.close().await.ok();
    Ok(())
}
