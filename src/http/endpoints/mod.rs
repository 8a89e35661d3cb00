//! One module per endpoint or page: extract the request, call the operation, render the result.

pub mod account;
pub mod assets;
pub mod authorize;
pub mod consent;
pub mod health;
pub mod introspect;
pub mod login;
pub mod metadata;
pub mod register;
pub mod revoke;
pub mod token;
pub mod userinfo;
