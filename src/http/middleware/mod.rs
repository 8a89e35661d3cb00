//! Layers every request passes through: the client address, rate limits, security headers,
//! sessions, error finishing, metrics, and running each request to its end.

pub mod client_ip;
pub mod errors;
pub mod metrics;
pub mod rate_limit;
pub mod run_to_end;
pub mod security;
pub mod session;
