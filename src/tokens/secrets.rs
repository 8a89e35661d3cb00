//! Random secrets and their at-rest form. Every secret is made of unreserved characters only
//! (`[A-Za-z0-9-_]`), so form-encoded and raw Basic credentials decode to the same bytes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    random_string(32)
}

pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256: enough for high-entropy secrets (codes, tokens, client secrets); passwords use argon2id.
pub fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time comparison of a presented secret with a stored hash.
pub fn verify(secret: &str, stored_hash: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    hash(secret).ct_eq(stored_hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unreserved_and_distinct() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn verify_matches_hash() {
        let t = random_token();
        assert!(verify(&t, &hash(&t)));
        assert!(!verify("other", &hash(&t)));
    }
}
