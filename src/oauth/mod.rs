//! The OAuth protocol: parsing and validation of what clients send, pure and unit-tested.
//! No axum, no SQL.

pub mod authorize;
pub mod client_metadata;
pub mod dpop;
pub mod error;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod resource;
pub mod scope;

pub use error::{ErrorCode, OAuthError};
