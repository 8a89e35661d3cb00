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

/// Prometheus text (see `crate::metrics`); with `metrics_token` set, only for its Bearer holder.
pub async fn metrics(State(state): State<HttpState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    if !health::metrics_allowed(&state, crate::http::bearer_token(&headers)) {
        let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")];
        return (StatusCode::UNAUTHORIZED, challenge, "metrics_token required\n").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], health::metrics_text(&state)).into_response()
}
