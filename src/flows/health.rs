//! Readiness and the metrics text: what the operator's probes and scrapers read.

use std::fmt::Write as _;

use crate::state::AppState;

/// Whether this node can serve: the database answers and can be written (see
/// `store::Db::ready`). `Err` carries the reason, for the log.
pub async fn ready(state: &AppState) -> Result<(), String> {
    state.db.ready().await.map_err(|e| e.to_string())
}

/// The database engine in use, named in readiness answers.
pub fn engine(state: &AppState) -> &'static str {
    state.db.engine()
}

/// Whether a `/metrics` request may read the counters: always without `metrics_token`, else only
/// with it as its Bearer token (compared in constant time). The counters tell an outsider how
/// busy the server is and how its sign-ins fail; operators who expose the port choose a token.
pub fn metrics_allowed(state: &AppState, bearer: Option<&str>) -> bool {
    match &state.settings.metrics_token {
        None => true,
        Some(expected) => bearer.is_some_and(|presented| {
            use subtle::ConstantTimeEq;
            let (a, b) = (crate::tokens::secrets::hash(presented), crate::tokens::secrets::hash(expected.expose()));
            bool::from(a.ct_eq(&b))
        }),
    }
}

/// Prometheus text: the request and protocol counters, and the store's own.
pub fn metrics_text(state: &AppState) -> String {
    let mut out = state.metrics.render();
    out.push_str(
        "# HELP portcullis_store_connections_settled_total SQLite connections found inside a transaction \
         when lent (a cancelled caller's) and rolled back.\n",
    );
    out.push_str("# TYPE portcullis_store_connections_settled_total counter\n");
    let _ = writeln!(out, "portcullis_store_connections_settled_total {}", state.db.settled());
    out
}
