//! Request and error counters (see `crate::metrics`).

use axum::extract::State;

use crate::http::HttpState;

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
        state.metrics.oauth_error(code.0.as_str());
    }
    res
}
