//! `/`: a small page saying what this server is, with the ways on (sign in, connected apps) and,
//! for operators, where the documentation and the metadata are.

use axum::extract::State;
use axum::response::Response;
use tower_sessions::Session;

use crate::http::HttpState;
use crate::http::error::PageError;
use crate::http::middleware::session::{self, current_user};
use crate::http::render;
use crate::http::routes::{ACCOUNT, LOGIN, LOGOUT, OAUTH_METADATA};
use crate::http::views::{Brand, LandingPage};

pub async fn page(State(state): State<HttpState>, session: Session) -> Result<Response, PageError> {
    let who = current_user(&state, &session).await?;
    // Only a signed-in person gets a token (for "Sign out"): a visitor must not create a session.
    let csrf_token = match &who {
        Some(_) => session::csrf_token(&session).await?,
        None => String::new(),
    };
    let view = LandingPage {
        brand: Brand::new(&state.settings.brand),
        css_href: state.routes.stylesheet(),
        username: who.map(|w| w.username),
        login_href: format!("{}?next=account", state.routes.path(LOGIN)),
        account_href: state.routes.path(ACCOUNT),
        logout_action: state.routes.path(LOGOUT),
        csrf_token,
        metadata_href: state.routes.oauth_metadata_paths().into_iter().next().unwrap_or(OAUTH_METADATA.to_string()),
    };
    Ok(render(&view))
}
