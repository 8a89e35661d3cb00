//! Every request runs to its end, whether or not its client waits for the answer.
//!
//! hyper drops a request's future when the client goes away (a closed tab, a client timeout, a
//! proxy's reset), at whatever `.await` it had reached. A handler that makes several writes would
//! then stop between two of them, and a store call would stop mid-transaction. So the rest of the
//! stack runs in a task of its own: the connection only stops waiting for it. What the client
//! started is finished as if the answer had been lost on the way back, which clients must handle
//! anyway. (The store is also safe against dropped futures on its own; see `docs/design.md`.)

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub async fn run_to_end(req: Request, next: Next) -> Response {
    match tokio::spawn(next.run(req)).await {
        Ok(res) => res,
        Err(e) => {
            // A panic in a handler: the request ends with a 500 instead of a dropped connection.
            tracing::error!(error = %e, "request task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
