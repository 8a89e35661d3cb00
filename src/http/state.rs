//! What the HTTP layer keeps beside the application state: the route table, the request rate
//! limiter and the serialized discovery documents.

use std::sync::Arc;

use crate::http::endpoints::metadata::DocumentCache;
use crate::http::middleware::rate_limit::Limiter;
use crate::http::routes::Routes;
use crate::state::AppState;

/// The axum state: the application state (reached through `Deref`) and the HTTP-only parts.
#[derive(Clone)]
pub struct HttpState(Arc<HttpInner>);

pub struct HttpInner {
    pub app: AppState,
    pub routes: Routes,
    pub limiter: Limiter,
    pub metadata_cache: DocumentCache,
}

impl HttpState {
    pub fn new(app: AppState) -> HttpState {
        let routes = Routes::new(&app.settings.issuer);
        HttpState(Arc::new(HttpInner { app, routes, limiter: Default::default(), metadata_cache: Default::default() }))
    }

    /// The application state the protocol code runs against.
    pub fn app(&self) -> &AppState {
        &self.0.app
    }
}

impl std::ops::Deref for HttpState {
    type Target = HttpInner;
    fn deref(&self) -> &HttpInner {
        &self.0
    }
}

impl std::ops::Deref for HttpInner {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.app
    }
}
