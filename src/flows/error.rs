//! What flows fail with: an OAuth error for API clients ([`ApiError`]), a readable error for
//! people in a browser ([`PageError`]). Failures on our side ([`ServerFault`]) are logged here and
//! reported without detail. The HTTP layer renders both.

use http::StatusCode;

use crate::oauth::{ErrorCode, OAuthError};
use crate::store::StoreError;
use crate::tokens::keys::KeyError;

/// An error on a JSON API endpoint.
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    /// `WWW-Authenticate` to send (401 for Basic client authentication, RFC 7592 bearer errors).
    pub www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn with_challenge(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(challenge);
        self
    }
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        ApiError { error, www_authenticate: None }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidInput => OAuthError::invalid_request(e.to_string()).into(),
            e => OAuthError::from(ServerFault::from(e)).into(),
        }
    }
}

impl From<crate::clients::auth::AuthError> for ApiError {
    fn from(e: crate::clients::auth::AuthError) -> Self {
        use crate::clients::auth::{AuthError, BASIC_CHALLENGE};
        match e {
            AuthError::Rejected { error, basic: true } => ApiError::from(error).with_challenge(BASIC_CHALLENGE),
            AuthError::Rejected { error, basic: false } => error.into(),
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<ServerFault> for ApiError {
    fn from(f: ServerFault) -> Self {
        OAuthError::from(f).into()
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        OAuthError::from(ServerFault::from(e)).into()
    }
}

/// A failure on our side, logged here and reported without detail.
#[derive(Debug)]
pub enum ServerFault {
    Unavailable(String),
    Internal(String),
}

impl From<StoreError> for ServerFault {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() { ServerFault::Unavailable(e.to_string()) } else { ServerFault::Internal(e.to_string()) }
    }
}

impl From<KeyError> for ServerFault {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(s) => s.into(),
            e => ServerFault::Internal(e.to_string()),
        }
    }
}

impl From<ServerFault> for OAuthError {
    fn from(f: ServerFault) -> Self {
        match f {
            ServerFault::Unavailable(detail) => {
                tracing::error!(%detail, "database unavailable");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the service is temporarily unavailable, retry later",
                )
            }
            ServerFault::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                OAuthError::server_error("an internal error occurred")
            }
        }
    }
}

/// An error shown to a person in the browser. The HTTP layer renders it as the error page:
/// `title` and `message` speak to the person; `detail` (for the app's developer) and `code` go
/// in a smaller line with the request id.
#[derive(Clone, Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    /// The technical reason, for whoever supports the app.
    pub detail: Option<String>,
    pub code: Option<&'static str>,
    /// A way back to the app that the person may choose to follow (never followed for them).
    /// Boxed: rare, and it keeps `Result<_, PageError>` small.
    pub link: Option<Box<PageLink>>,
}

/// A link on the error page: where it goes, and the host it is shown by.
#[derive(Clone, Debug)]
pub struct PageLink {
    pub href: String,
    pub host: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError { status, title: title.into(), message: message.into(), detail: None, code: None, link: None }
    }

    pub fn with_link(mut self, link: PageLink) -> Self {
        self.link = Some(Box::new(link));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "This request can't be completed", message)
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code.as_str());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// What a person is told for an OAuth error: the title and a sentence about what to do. The
/// error's own description is for developers and goes in the page's smaller detail line.
fn for_people(code: ErrorCode) -> (&'static str, &'static str) {
    use ErrorCode::*;
    match code {
        ServerError => (
            "Something went wrong",
            "Something went wrong on our side. Try again in a moment; if it keeps happening, give your administrator the request ID below.",
        ),
        TemporarilyUnavailable => {
            ("Temporarily unavailable", "This service is briefly unavailable. Try again in a moment.")
        }
        SlowDown => ("Too many requests", "Too many requests came from your network. Wait a minute and try again."),
        InvalidClient | UnauthorizedClient => (
            "This app can't ask for access here",
            "This server does not recognise the app that sent you here, or does not let it ask for access this way. Go back to the app; if it happens again, tell whoever supports the app.",
        ),
        InvalidScope => (
            "This request can't be completed",
            "The app asked for permissions that this server does not offer. Go back to the app; if it happens again, tell whoever supports the app.",
        ),
        InvalidTarget => (
            "This request can't be completed",
            "The app asked to use an MCP server that is not set up on this server. Check the MCP server's address in the app.",
        ),
        AccessDenied => {
            ("You don't have access", "You don't have access to this. Ask your administrator if you need it.")
        }
        LoginRequired | ConsentRequired | InteractionRequired => {
            ("Sign-in needed", "The app needs you to sign in. Go back to the app and connect again.")
        }
        _ => (
            "This request can't be completed",
            "The app that sent you here asked in a way this server does not accept. Go back to the app and try again; if it happens again, tell whoever supports the app.",
        ),
    }
}

impl From<OAuthError> for PageError {
    fn from(e: OAuthError) -> Self {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let (title, message) = for_people(e.code);
        let page = PageError::new(status, title, message).with_code(e.code);
        // A server fault's description says nothing the person's sentence does not.
        match e.code {
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => page,
            _ => page.with_detail(sentence(&e.description)),
        }
    }
}

/// "the redirect_uri is not registered" → "The redirect_uri is not registered."
pub fn sentence(s: &str) -> String {
    let mut c = s.trim().chars();
    match c.next() {
        Some(first) => {
            let end = if s.trim_end().ends_with(['.', '!', '?']) { "" } else { "." };
            first.to_uppercase().collect::<String>() + c.as_str() + end
        }
        None => String::new(),
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidInput => PageError::bad_request("The request contains characters that are not allowed."),
            e => OAuthError::from(ServerFault::from(e)).into(),
        }
    }
}

impl From<ServerFault> for PageError {
    fn from(f: ServerFault) -> Self {
        OAuthError::from(f).into()
    }
}

impl From<KeyError> for PageError {
    fn from(e: KeyError) -> Self {
        OAuthError::from(ServerFault::from(e)).into()
    }
}
