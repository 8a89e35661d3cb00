//! The "Continue to <app>" page (see [`crate::flows::authorize::Next::Continue`]): a native app
//! with a grant gets its code only after one click. The form posts to the consent endpoint.

use axum::http::header;
use axum::response::Response;
use tower_sessions::Session;

use crate::flows::authorize::ConsentRequest;
use crate::http::HttpState;
use crate::http::error::PageError;
use crate::http::middleware::{security, session};
use crate::http::routes::{CONSENT, LOGOUT};
use crate::http::views::{Brand, ContinuePage};

pub async fn render(state: &HttpState, session: &Session, request: &ConsentRequest) -> Result<Response, PageError> {
    let (pending, facts) = (&request.pending, &request.facts);
    let view = ContinuePage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        action: state.routes.path(CONSENT),
        csrf_token: session::csrf_token(session).await?,
        request_id: pending.id.clone(),
        username: request.who.username.clone(),
        logout_action: state.routes.path(LOGOUT),
        client_name: facts.client_name.clone(),
        client_identity: facts.client_identity.clone(),
        resource_name: facts.resource_name.clone(),
        resource_uri: facts.resource_uri.clone(),
        redirect_host: facts.return_to.host.clone(),
    };
    let mut res = crate::http::render(&view);
    // The form's answer redirects to the app: the CSP's form-action must allow it.
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, security::csp_with_form_action(&pending.redirect_uri));
    Ok(res)
}
