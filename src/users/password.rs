//! argon2id password hashing, run off the async runtime and bounded, so a flood of logins can
//! neither exhaust memory (19 MiB per hash) nor starve request handling.

use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_LEN} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 1024;

/// Checks the policy for a new password.
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

pub fn verify_blocking(password: &str, stored: &str) -> bool {
    password.len() <= MAX_LEN && Argon2::default().verify_password(password.as_bytes(), stored).is_ok()
}

/// A hash of a random password, verified against when the user does not exist so that an unknown
/// name costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking(&crate::tokens::secrets::random_token()).unwrap_or_default());

/// argon2id takes 19 MiB per hash. glibc raises its mmap threshold after such a block is freed, so
/// later ones come from per-thread arenas and stay resident (hundreds of MB under a login burst).
/// Pinning the threshold keeps every such block mmapped and returned at once. Call once at start.
pub fn release_hash_memory_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning; it is called before threads allocate much.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Bounds concurrent argon2 computations across the process.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        // argon2 is CPU-bound: more hashes at once than cores only adds memory (19 MiB each).
        Hasher { permits: Arc::new(Semaphore::new(n)) }
    }
}

impl Hasher {
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))?
    }

    /// `stored` is `None` for an unknown user: a dummy verification keeps the timing the same.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || match stored {
            // An empty hash is a person who signs in only through an identity provider.
            Some(hash) if !hash.is_empty() => verify_blocking(&password, &hash),
            _ => {
                let _ = verify_blocking(&password, &DUMMY_HASH);
                false
            }
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("wrong horse", &h));
        assert!(!verify_blocking("x", "not a hash"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough").is_ok());
        assert!(check_policy(&"x".repeat(2000)).is_err());
    }
}
