//! People: passwords (argon2id) and the checks around signing in (the throttle).

pub mod password;
pub mod throttle;
