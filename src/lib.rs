//! Portcullis: a self-hosted OAuth 2.1 authorization server for MCP servers.
//!
//! Three layers, calls going one way: `http` (axum handlers, views, error rendering) → `oauth`
//! (the protocol: pure functions and types) → `store` (SQL and transactions).

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
