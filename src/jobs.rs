//! Background work every node runs: idempotent statements whose rows go to exactly one caller,
//! so running them on several nodes at once is safe and does nothing twice.

use std::time::Duration;

use crate::state::AppState;
use crate::store::{self, Db, StoreError, audit};

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            let now = store::now();
            match state.db.sweep_expired(now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "expired rows swept"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
            }
            if let Some(retention) = state.settings.audit_retention {
                match audit::sweep(&state.db, now - retention.as_i64(), 1000, 100).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "audit events past audit_retention deleted"),
                    Err(e) => tracing::warn!(error = %e, "sweeping old audit events failed"),
                }
            }
            let s = &state.settings.registration;
            match clean_up_clients(&state.db, now, s.unused_client_lifetime.as_i64(), s.idle_client_lifetime.as_i64())
                .await
            {
                Ok(gone) if !gone.is_empty() => tracing::info!(clients = gone.len(), "stale dynamic clients deleted"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cleaning up clients failed"),
            }
        }
    })
}

/// Deletes dynamically registered clients never used within `unused_lifetime` of registering,
/// or idle for `idle_lifetime`, and records each deletion. Returns the ids this call deleted.
pub async fn clean_up_clients(
    db: &Db,
    now: i64,
    unused_lifetime: i64,
    idle_lifetime: i64,
) -> Result<Vec<String>, StoreError> {
    let gone = store::clients::delete_stale_dynamic(db, now - unused_lifetime, now - idle_lifetime).await?;
    for client_id in &gone {
        audit::record(
            db,
            &audit::Event {
                event: "client_deleted",
                actor: Some("cleanup"),
                client_id: Some(client_id),
                ..Default::default()
            },
            now,
        )
        .await?;
    }
    Ok(gone)
}
