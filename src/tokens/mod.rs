//! Signing keys, JWT minting, secrets and sealing.

pub mod jwt;
pub mod keys;
pub mod seal;
pub mod secrets;
