//! Liveness, readiness and the metrics text.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::flows::health;
use crate::http::HttpState;

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and can be written; 503 otherwise, so a load balancer stops sending
/// traffic here.
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<serde_json::Value>) {
    let database = health::engine(&state);
    match health::ready(&state).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "database": database }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "database": database })))
        }
    }
}

/// Prometheus text (see `crate::metrics`).
pub async fn metrics(State(state): State<HttpState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], health::metrics_text(&state))
}
