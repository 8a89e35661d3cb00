//! Portcullis: a self-hosted OAuth 2.1 authorization server for MCP servers.
//!
//! Layers, calls going one way: `http` (axum only: endpoints, middleware, routes, views, error
//! rendering) → `flows` (the protocol operations, no axum) → the domain parts `oauth` (pure
//! protocol types and parsers), `clients` (client ids, client authentication, metadata-document
//! clients, the outbound fetcher), `tokens` and `users` → `store` (SQL and transactions).
//! `config`, `state` (the application state) and `net` (addresses) import no layer above them.

pub mod admin;
pub mod clients;
pub mod config;
pub mod doctor;
pub mod federation;
pub mod flows;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod serve;
pub mod state;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod users;

pub use http::app;
pub use state::AppState;
