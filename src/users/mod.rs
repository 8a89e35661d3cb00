//! People: passwords (argon2id), groups and the access policy by group, and the checks around
//! signing in (the throttle).

pub mod groups;
pub mod password;
pub mod throttle;
