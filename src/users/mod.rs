//! People: passwords (argon2id), groups and the access policy by group.

pub mod groups;
pub mod password;
