//! The stylesheet and icon, compiled into the binary so it runs from anywhere.

use axum::http::header;
use axum::response::IntoResponse;

const STYLE: &str = include_str!("../../../static/style.css");
const FAVICON: &str = include_str!("../../../static/favicon.svg");

pub async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], STYLE)
}

#[derive(serde::Deserialize)]
pub struct LogoQuery {
    client_id: String,
}

/// A metadata-document client's logo, as fetched through the hardened fetcher (raster types
/// only, never SVG) and stored; browsers never contact the client's host.
pub async fn client_logo(
    axum::extract::State(state): axum::extract::State<crate::http::HttpState>,
    axum::extract::Query(q): axum::extract::Query<LogoQuery>,
) -> axum::response::Response {
    match crate::flows::discovery::client_logo(&state, &q.client_id).await {
        Ok(Some((bytes, content_type))) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600".to_string()),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'".to_string()),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => axum::http::StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "loading a client logo failed");
            axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

pub async fn favicon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "public, max-age=86400")], FAVICON)
}
