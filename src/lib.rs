//! Portcullis: a self-hosted OAuth 2.1 authorization server for MCP servers.
//!
//! Calls go one way: `http` (axum only: endpoints, middleware, views) → `flows` (the protocol
//! operations) → `oauth`, `clients`, `tokens`, `users` (domain parts) → `store` (SQL and
//! transactions). The browser flows (authorize, consent, login, account) still reach the store
//! from their endpoints; moving them is the next step.

pub mod admin;
pub mod clients;
pub mod config;
pub mod flows;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod state;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod users;

pub use http::app;
pub use state::AppState;
