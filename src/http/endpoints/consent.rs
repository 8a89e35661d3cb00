//! The consent page (see [`crate::flows::consent`]): who is asking, for which MCP server, with
//! which scopes, and where the browser goes next; and following an authorization decision (back
//! to the client, to the login page, or to this page).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::flows::authorize::{self as flow, ConsentRequest, Decision, Next};
use crate::flows::consent::{self as consent_flow, Answered};
use crate::http::HttpState;
use crate::http::error::PageError;
use crate::http::middleware::security;
use crate::http::middleware::session::{self, current_user};
use crate::http::redirect;
use crate::http::routes::{ACCOUNT, CLIENT_LOGO, CONSENT, LOGIN, LOGOUT};
use crate::http::views::{Brand, ConsentPage, ScopeLine};

#[derive(Deserialize)]
pub struct ConsentQuery {
    request_id: String,
}

/// Where the login page sends the person back: re-evaluates the parked request.
pub async fn page(
    State(state): State<HttpState>,
    session: Session,
    Query(q): Query<ConsentQuery>,
) -> Result<Response, PageError> {
    let pending = session::pending(&session, &q.request_id).await?;
    let decision = flow::proceed(&state, session::signed_in(&session).await?, pending, false).await?;
    follow(&state, &session, decision, StatusCode::SEE_OTHER).await
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
            session::park(session, *pending).await?;
            Ok(redirect(StatusCode::SEE_OTHER, &login))
        }
        Next::Consent(request) => {
            session::park(session, request.pending.clone()).await?;
            render(state, session, &request).await
        }
        Next::Continue(request) => {
            session::park(session, request.pending.clone()).await?;
            crate::http::endpoints::continue_page::render(state, session, &request).await
        }
        Next::ErrorPage(page) => Err(*page),
    }
}

pub async fn render(state: &HttpState, session: &Session, request: &ConsentRequest) -> Result<Response, PageError> {
    let (pending, facts) = (&request.pending, &request.facts);
    let view = ConsentPage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(CONSENT),
        csrf_token: session::csrf_token(session).await?,
        request_id: pending.id.clone(),
        username: request.who.username.clone(),
        logout_action: state.routes.path(LOGOUT),
        account_href: state.routes.path(ACCOUNT),
        client_name: facts.client_name.clone(),
        vouched: facts.vouched.clone(),
        resource_name: facts.resource_name.clone(),
        resource_uri: facts.resource_uri.clone(),
        scopes: facts
            .scopes
            .iter()
            .map(|s| ScopeLine { name: s.name.clone(), description: s.description.clone(), is_new: s.is_new })
            .collect(),
        previously_granted: facts.previously_granted,
        redirect_host: facts.return_to.host.clone(),
        redirect_on_device: facts.return_to.on_device,
        caution: facts.caution.clone(),
        client_logo: facts.has_logo.then(|| {
            let id: String = url::form_urlencoded::byte_serialize(facts.client_id.as_bytes()).collect();
            format!("{}?client_id={id}", state.routes.path(CLIENT_LOGO))
        }),
    };
    let mut res = crate::http::render(&view);
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, security::csp_with_form_action(&pending.redirect_uri));
    Ok(res)
}

#[derive(Deserialize)]
pub struct ConsentForm {
    csrf_token: Option<String>,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    decision: String,
}

pub async fn submit(
    State(state): State<HttpState>,
    session: Session,
    Form(form): Form<ConsentForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&session, form.csrf_token.as_deref()).await?;
    let pending = session::pending(&session, &form.request_id).await?;
    let login = format!("{}?request_id={}", state.routes.path(LOGIN), pending.id);
    let Some(who) = current_user(&state, &session).await? else {
        return Ok(redirect(StatusCode::SEE_OTHER, &login));
    };
    match consent_flow::decide(&state, &who, &pending, &form.decision).await? {
        Answered::ToClient(url) => {
            session::unpark(&session, &pending.id).await?;
            Ok(redirect(StatusCode::SEE_OTHER, &url).into_response())
        }
        Answered::SignInAgain => Ok(redirect(StatusCode::SEE_OTHER, &login)),
    }
}
