//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::http::HttpState;

/// The process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database answers and can be written; 503 otherwise, so a load balancer stops sending
/// traffic here.
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<serde_json::Value>) {
    match state.db.ready().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready", "database": state.db.engine() }))),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "database": state.db.engine() })))
        }
    }
}

/// Prometheus text (see `crate::metrics`).
pub async fn metrics(State(state): State<HttpState>) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}

/// Counts every request by its route (not its raw path, which would explode the label space),
/// and OAuth errors by code.
pub async fn record_metrics(
    State(state): State<HttpState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // `MatchedPath` is an `Arc<str>` and `Method` inline for the standard ones: no allocation.
    let endpoint = req.extensions().get::<axum::extract::MatchedPath>().cloned();
    let method = req.method().clone();
    let start = std::time::Instant::now();
    let res = next.run(req).await;
    let endpoint = endpoint.as_ref().map_or("unmatched", |p| p.as_str());
    state.metrics.request(endpoint, method.as_str(), res.status().as_u16(), start.elapsed());
    if let Some(code) = res.extensions().get::<crate::http::error::OAuthErrorCode>() {
        state.metrics.oauth_error(code.0);
    }
    res
}
