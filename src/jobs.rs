//! Background work every node runs: idempotent statements whose rows go to exactly one caller,
//! so running them on several nodes at once is safe and does nothing twice.

use crate::state::AppState;
use crate::store::{self, Db, StoreError, SweepPace, audit};

/// Runs the jobs every `sweep_interval`, the first time one interval after start: nodes started
/// together (a rolling deploy) do not all sweep during their start-up. A run that outlasts the
/// interval is followed by the next one an interval later, not by a burst of missed ones.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = state.settings.sweep_interval.as_duration();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = store::now();
            let started = std::time::Instant::now();
            match state.db.sweep_expired_paced(now, SweepPace::BACKGROUND).await {
                Ok(swept) if swept.total() == 0 => {}
                Ok(swept) => tracing::debug!(
                    rows = swept.total(),
                    statements = swept.statements,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    ?swept,
                    "expired rows swept"
                ),
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
/// or idle for `idle_lifetime` (in paced batches: each takes the client's grants and tokens with
/// it), and records each deletion. Returns the ids this call deleted.
pub async fn clean_up_clients(
    db: &Db,
    now: i64,
    unused_lifetime: i64,
    idle_lifetime: i64,
) -> Result<Vec<String>, StoreError> {
    let gone =
        db.delete_stale_dynamic_clients(now - unused_lifetime, now - idle_lifetime, SweepPace::BACKGROUND).await?;
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
