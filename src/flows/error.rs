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

/// An error shown to a person in the browser. The HTTP layer renders it as the error page.
#[derive(Clone, Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub code: Option<&'static str>,
    /// A way back to the app that the person may choose to follow (never followed for them).
    pub link: Option<PageLink>,
}

/// A link on the error page: where it goes, and the host it is shown by.
#[derive(Clone, Debug)]
pub struct PageLink {
    pub href: String,
    pub host: String,
}

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError { status, title: title.into(), message: message.into(), code: None, link: None }
    }

    pub fn with_link(mut self, link: PageLink) -> Self {
        self.link = Some(link);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "This request can't be completed", message)
    }

    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = Some(code.as_str());
        self
    }
}

impl From<OAuthError> for PageError {
    fn from(e: OAuthError) -> Self {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let title = match e.code {
            ErrorCode::ServerError => "Something went wrong",
            ErrorCode::TemporarilyUnavailable => "Temporarily unavailable",
            _ => "This request can't be completed",
        };
        PageError::new(status, title, e.description).with_code(e.code)
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
