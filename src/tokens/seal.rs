//! AES-256-GCM sealing under a key derived from a secret. Used for private signing keys (under the
//! operator's key-encryption secret, [`seal_under_passphrase`]) and for a rotated refresh token's
//! successor (under the rotated token itself, so only a holder of that token can open it during
//! the grace window, [`seal`]).
//!
//! The token's key is a plain SHA-256 of label and token: the token is 256 random bits, so there
//! is nothing to stretch. An operator's secret is a passphrase someone chose: its key comes from
//! argon2id with a random salt stored in the sealed value, so a stolen database cannot be attacked
//! with one precomputed table for every deployment, and each guess costs an argon2id evaluation.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;
/// Marks a value sealed under a passphrase with argon2id (m = 19 MiB, t = 2, p = 1: OWASP's
/// parameters, fixed by this version tag) and a 16-byte salt: `tag || salt || nonce || ciphertext`.
const PASSPHRASE_V2: &[u8; 4] = b"PCK2";
const SALT_LEN: usize = 16;

/// How a passphrase-sealed value was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// argon2id with a stored salt.
    Current,
    /// Before version 2: the key was an unsalted SHA-256 of the secret. Still opened; re-seal it.
    UnsaltedSha256,
}

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

/// The AES-256 key for a passphrase and salt: argon2id, OWASP's parameters (~15 ms, 19 MiB).
/// Callers that open the same value repeatedly cache the result by salt ([`PassphraseKeys`]).
pub fn passphrase_key(label: &str, passphrase: &[u8], salt: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    // The label goes into the salt input, so one passphrase yields unrelated keys per purpose.
    let mut salted = Vec::with_capacity(label.len() + 1 + salt.len());
    salted.extend_from_slice(label.as_bytes());
    salted.push(0);
    salted.extend_from_slice(salt);
    argon2::Argon2::default()
        .hash_password_into(passphrase, &salted, &mut key)
        .expect("argon2id with default parameters and a 16-byte salt does not fail");
    key
}

/// (digest of label and passphrase, salt): the derived key.
type DerivedKeys = std::collections::HashMap<(Vec<u8>, Vec<u8>), [u8; 32]>;

/// Derived keys by salt, so a value opened again (every key reload) costs no argon2id run.
#[derive(Default)]
pub struct PassphraseKeys {
    by_salt: std::sync::Mutex<DerivedKeys>,
}

impl std::fmt::Debug for PassphraseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphraseKeys(..)")
    }
}

impl PassphraseKeys {
    fn key(&self, label: &str, passphrase: &[u8], salt: &[u8]) -> [u8; 32] {
        // Keyed by passphrase digest too: a changed secret must not reuse a cached key.
        let id = Sha256::new()
            .chain_update(label.as_bytes())
            .chain_update([0u8])
            .chain_update(passphrase)
            .finalize()
            .to_vec();
        let mut cache = self.by_salt.lock().expect("key cache lock");
        *cache.entry((id, salt.to_vec())).or_insert_with(|| passphrase_key(label, passphrase, salt))
    }
}

/// Seals under an operator's passphrase: a fresh salt and nonce each time.
pub fn seal_under_passphrase(label: &str, passphrase: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    rand::fill(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let key = passphrase_key(label, passphrase, &salt);
    let ct = Aes256Gcm::new_from_slice(&key)
        .expect("32 bytes is an AES-256 key")
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .expect("AES-GCM encryption of an in-memory buffer does not fail");
    let mut out = Vec::with_capacity(PASSPHRASE_V2.len() + SALT_LEN + NONCE_LEN + ct.len());
    out.extend_from_slice(PASSPHRASE_V2);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens a value sealed under a passphrase, in either format, and says which it was. An old
/// value's random nonce may begin with the tag by chance (2^-32): the authenticated decryption
/// then fails and the old format is tried.
pub fn open_under_passphrase(
    keys: &PassphraseKeys,
    label: &str,
    passphrase: &[u8],
    sealed: &[u8],
) -> Result<(Vec<u8>, Format), OpenError> {
    let header = PASSPHRASE_V2.len() + SALT_LEN + NONCE_LEN;
    if sealed.len() >= header && sealed.starts_with(PASSPHRASE_V2) {
        let salt = &sealed[PASSPHRASE_V2.len()..PASSPHRASE_V2.len() + SALT_LEN];
        let nonce = &sealed[PASSPHRASE_V2.len() + SALT_LEN..header];
        let key = keys.key(label, passphrase, salt);
        let cipher = Aes256Gcm::new_from_slice(&key).expect("32 bytes is an AES-256 key");
        if let Ok(plain) = cipher.decrypt(Nonce::from_slice(nonce), &sealed[header..]) {
            return Ok((plain, Format::Current));
        }
    }
    open(label, passphrase, sealed).map(|plain| (plain, Format::UnsaltedSha256))
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

    #[test]
    fn passphrase_sealing_is_salted_and_reads_the_old_format() {
        let keys = PassphraseKeys::default();
        let a = seal_under_passphrase("l", b"passphrase", b"key material");
        let b = seal_under_passphrase("l", b"passphrase", b"key material");
        assert!(a.starts_with(PASSPHRASE_V2));
        assert_ne!(a[4..20], b[4..20], "each value has its own salt");
        assert_eq!(
            open_under_passphrase(&keys, "l", b"passphrase", &a).unwrap(),
            (b"key material".to_vec(), Format::Current)
        );
        assert!(open_under_passphrase(&keys, "l", b"wrong", &a).is_err());
        assert!(open_under_passphrase(&keys, "other", b"passphrase", &a).is_err());
        // The key is not the old unsalted SHA-256 of the secret.
        assert!(open("l", b"passphrase", &a[20..]).is_err());
        let old = seal("l", b"passphrase", b"key material");
        assert_eq!(
            open_under_passphrase(&keys, "l", b"passphrase", &old).unwrap(),
            (b"key material".to_vec(), Format::UnsaltedSha256)
        );
        assert!(open_under_passphrase(&keys, "l", b"wrong", &old).is_err());
    }
}
