//! People: passwords (argon2id) and the checks around signing in.

pub mod password;
