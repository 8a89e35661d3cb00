//! Background work every node runs: idempotent statements, so running it on several nodes at
//! once is safe.

use std::time::Duration;

use crate::state::AppState;
use crate::store;

pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tick.tick().await;
            match state.db.sweep_expired(store::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "expired rows swept"),
                Err(e) => tracing::warn!(error = %e, "sweeping expired rows failed"),
            }
        }
    })
}
