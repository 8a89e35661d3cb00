//! Every request runs to its end, whether or not its client waits for the answer.
//!
//! hyper drops a request's future when the client goes away (a closed tab, a client timeout, a
//! proxy's reset), at whatever `.await` it had reached. A handler that makes several writes would
//! then stop between two of them, and a store call would stop mid-transaction. So the routes (and
//! the layers on them: sessions, rate limits) run in a task of their own: the connection only
//! stops waiting for it. What the client started is finished as if the answer had been lost on
//! the way back, which clients must handle anyway. The layers outside this one write nothing.
//! (The store is also safe against dropped futures on its own; see `docs/design.md`.)

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::HttpState;
use crate::http::error::{ApiError, PageError};
use crate::oauth::OAuthError;

pub async fn run_to_end(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    // Nothing to finish, and the commonest requests: no task of their own.
    if state.routes.only_reads(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let page = state.routes.is_page(req.uri().path());
    match tokio::spawn(next.run(req)).await {
        Ok(res) => res,
        Err(e) => {
            // A panic in a handler: the error page or a JSON error (finished by the layer outside,
            // with the security headers and request id), instead of a dropped connection.
            tracing::error!(error = %e, "request task failed");
            match page {
                true => PageError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not complete this request.",
                )
                .into_response(),
                false => ApiError::from(OAuthError::server_error("the server could not complete this request"))
                    .into_response(),
            }
        }
    }
}
