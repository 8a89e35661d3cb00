//! AES-256-GCM sealing under a key derived from a secret. Used for private signing keys (under the
//! operator's key-encryption secret) and for a rotated refresh token's successor (under the
//! rotated token itself, so only a holder of that token can open it during the grace window).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
#[error("sealed data could not be opened (wrong secret or corrupted)")]
pub struct OpenError;

fn cipher(label: &str, secret: &[u8]) -> Aes256Gcm {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0u8]);
    h.update(secret);
    let key = h.finalize();
    Aes256Gcm::new_from_slice(&key).expect("SHA-256 output is a valid AES-256 key")
}

pub fn seal(label: &str, secret: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let mut out = nonce.to_vec();
    let ct = cipher(label, secret)
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("AES-GCM encryption of an in-memory buffer does not fail");
    out.extend_from_slice(&ct);
    out
}

pub fn open(label: &str, secret: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
    if sealed.len() < NONCE_LEN {
        return Err(OpenError);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher(label, secret).decrypt(Nonce::from_slice(nonce), ct).map_err(|_| OpenError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let s = seal("l", b"secret", b"hello");
        assert_eq!(open("l", b"secret", &s).unwrap(), b"hello");
        assert!(open("l", b"other", &s).is_err());
        assert!(open("other-label", b"secret", &s).is_err());
        assert!(open("l", b"secret", &s[..5]).is_err());
    }
}
