//! `/authorize` (GET and POST; see [`crate::flows::authorize`]), and following a flow's decision:
//! back to the client, to the login page, or to the consent page.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::flows::authorize::{self as flow, Decision, Next};
use crate::flows::session::still_allowed;
use crate::http::HttpState;
use crate::http::endpoints::consent;
use crate::http::error::PageError;
use crate::http::header_value;
use crate::http::middleware::session::{self, SignedIn};
use crate::http::routes::{CONSENT, LOGIN};

pub async fn get(
    State(state): State<HttpState>,
    session: Session,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    authorize(&state, &session, &query.unwrap_or_default(), StatusCode::FOUND).await
}

pub async fn post(State(state): State<HttpState>, session: Session, body: Bytes) -> Result<Response, PageError> {
    let body = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("The request is not valid UTF-8."))?;
    authorize(&state, &session, body, StatusCode::SEE_OTHER).await
}

/// A redirect to `url` with the given status (302 after GET, 303 after POST; never 307).
pub fn redirect(status: StatusCode, url: &str) -> Response {
    (status, [(header::LOCATION, header_value(url))]).into_response()
}

async fn authorize(state: &HttpState, session: &Session, raw: &str, status: StatusCode) -> Result<Response, PageError> {
    let decision = flow::authorize(state, raw, session::signed_in(session).await?).await?;
    follow(state, session, decision, status).await
}

/// Carries out a decision: `status` is the redirect status back to the client.
pub async fn follow(
    state: &HttpState,
    session: &Session,
    decision: Decision,
    status: StatusCode,
) -> Result<Response, PageError> {
    if decision.sign_out {
        session::sign_out(session).await?;
    }
    match decision.next {
        Next::ToClient(url) => Ok(redirect(status, &url)),
        Next::SignIn(pending) => {
            let login = format!("{}?request_id={}", state.routes.path(LOGIN), pending.id);
            session::park(session, pending).await?;
            Ok(redirect(StatusCode::SEE_OTHER, &login))
        }
        Next::Consent(request) => {
            session::park(session, request.pending.clone()).await?;
            consent::render(state, session, &request).await
        }
    }
}

/// The signed-in person, if the session has one and the account is still enabled (a session
/// naming anyone else is signed out).
pub async fn current_user(state: &HttpState, session: &Session) -> Result<Option<SignedIn>, PageError> {
    let signed_in = session::signed_in(session).await?;
    let had_someone = signed_in.is_some();
    let who = still_allowed(state, signed_in).await?;
    if had_someone && who.is_none() {
        session::sign_out(session).await?;
    }
    Ok(who)
}

/// Where the login page continues to for a parked request (the id is the person's input here).
pub fn continue_path(state: &HttpState, request_id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(request_id.as_bytes()).collect();
    format!("{}?request_id={id}", state.routes.path(CONSENT))
}
