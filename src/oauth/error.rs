//! OAuth error codes (RFC 6749 §4.1.2.1 and §5.2, RFC 7591 §3.2.2, RFC 8707, RFC 7009, OIDC) and the
//! one error value the protocol layer returns.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    InvalidTarget,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    /// OIDC Core §3.1.2.6: `prompt=none`, but the person must act (a native app's one click).
    InteractionRequired,
    InvalidRedirectUri,
    InvalidClientMetadata,
    InvalidToken,
    /// RFC 6750 §3.1: the token lacks a scope the resource needs; answered with 403.
    InsufficientScope,
    UnsupportedTokenType,
    /// OIDC Core §3.1.2.6: request objects (`request`, `request_uri`) are not supported.
    RequestNotSupported,
    RequestUriNotSupported,
    ServerError,
    TemporarilyUnavailable,
    /// A rate limit (the RFC 8628 code, the one OAuth has for "slow down"); answered with 429.
    SlowDown,
    /// RFC 9449 §5: the DPoP proof is missing where required, or fails a check.
    InvalidDpopProof,
    /// RFC 9449 §8: a proof must carry the server's current nonce (sent in `DPoP-Nonce`).
    UseDpopNonce,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidRequest => "invalid_request",
            InvalidClient => "invalid_client",
            InvalidGrant => "invalid_grant",
            UnauthorizedClient => "unauthorized_client",
            UnsupportedGrantType => "unsupported_grant_type",
            UnsupportedResponseType => "unsupported_response_type",
            InvalidScope => "invalid_scope",
            InvalidTarget => "invalid_target",
            AccessDenied => "access_denied",
            LoginRequired => "login_required",
            ConsentRequired => "consent_required",
            InteractionRequired => "interaction_required",
            InvalidRedirectUri => "invalid_redirect_uri",
            InvalidClientMetadata => "invalid_client_metadata",
            InvalidToken => "invalid_token",
            InsufficientScope => "insufficient_scope",
            UnsupportedTokenType => "unsupported_token_type",
            RequestNotSupported => "request_not_supported",
            RequestUriNotSupported => "request_uri_not_supported",
            ServerError => "server_error",
            TemporarilyUnavailable => "temporarily_unavailable",
            SlowDown => "slow_down",
            InvalidDpopProof => "invalid_dpop_proof",
            UseDpopNonce => "use_dpop_nonce",
        }
    }

    /// The HTTP status for this error on an API endpoint.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidClient | InvalidToken => 401,
            AccessDenied | InsufficientScope => 403,
            ServerError => 500,
            TemporarilyUnavailable => 503,
            SlowDown => 429,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

impl OAuthError {
    /// `description` is kept to RFC 6749's character set for `error_description` (§5.2:
    /// %x20-21 / %x23-5B / %x5D-7E): double quotes become apostrophes, backslashes slashes, and any
    /// other character outside the set (control, non-ASCII, often from the request) a `?`.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let description = description
            .into()
            .chars()
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        OAuthError { code, description }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, d)
    }
    pub fn invalid_dpop_proof(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidDpopProof, d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let e = OAuthError::invalid_request(format!("grant_type {:?} is not supported", "x\"é\\\n"));
        assert_eq!(e.description, "grant_type 'x/'?///n' is not supported");
        assert!(e.description.bytes().all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)));
    }
}
