//! DPoP at this server's endpoints (RFC 9449): a request's proof checked against the request, its
//! `jti` remembered by every node (so a proof is accepted once), and server nonces.

use crate::oauth::dpop::{self, Expected, Proof};
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::{self, StoreError};

/// The request's `DPoP` header fields.
#[derive(Debug, Clone, Copy)]
pub enum ProofHeader<'a> {
    Absent,
    One(&'a str),
    /// More than one field, or one that is not text: refused (RFC 9449 §4.3 check 1).
    Invalid,
}

/// How the request's nonce is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nonces {
    /// A nonce must be present and current (`dpop_nonce_required`).
    Required,
    /// A proof without one is accepted; one that is present must be current.
    Checked,
}

/// The name of the shared secret the nonce key derives from.
pub const NONCE_SECRET: &str = "dpop_nonce";

/// The nonce key, from the secret all nodes share (created on first start).
pub async fn nonce_key(db: &store::Db) -> Result<dpop::NonceKey, StoreError> {
    let candidate: [u8; 32] = rand::random();
    let secret = store::server_secrets::get_or_create(db, NONCE_SECRET, &candidate, store::now()).await?;
    Ok(dpop::NonceKey::new(&secret))
}

/// The nonce to send in `DPoP-Nonce` now.
pub fn current_nonce(state: &AppState) -> String {
    state.dpop_nonces.issue(store::now())
}

/// Verifies the proof in `header`, if any, for a request to `url` with `method`. Stateless (no
/// write): [`remember`] records the proof once the caller is ready to act on it.
pub fn verify(
    state: &AppState,
    header: ProofHeader<'_>,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    nonces: Nonces,
) -> Result<Option<Proof>, OAuthError> {
    let proof = match header {
        ProofHeader::Absent => return Ok(None),
        ProofHeader::Invalid => {
            return Err(OAuthError::invalid_dpop_proof("send exactly one DPoP header"));
        }
        ProofHeader::One(p) => p,
    };
    let now = store::now();
    let proof = dpop::verify(proof.trim(), &Expected { method, url, access_token, now })
        .map_err(|e| OAuthError::invalid_dpop_proof(e.to_string()))?;
    match (&proof.nonce, nonces) {
        (Some(n), _) if state.dpop_nonces.accepts(n, now) => {}
        (Some(_), _) => {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof's nonce is stale or unknown; use the one in the DPoP-Nonce header",
            ));
        }
        (None, Nonces::Required) => {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the server's nonce, sent in the DPoP-Nonce header",
            ));
        }
        (None, Nonces::Checked) => {}
    }
    Ok(Some(proof))
}

/// Records the proof's `jti` in the table of used ids all nodes share; refuses a proof seen
/// before (within the window in which it could be accepted at all).
pub async fn remember(state: &AppState, proof: &Proof) -> Result<(), crate::flows::error::ApiError> {
    use base64::Engine;
    use sha2::Digest;
    // Per key (RFC 9449 §11.1), and hashed: a fixed-size id whatever the client's `jti`.
    let digest = sha2::Sha256::new().chain_update(proof.jkt.as_bytes()).chain_update([0]).chain_update(&proof.jti);
    let id = format!("dpop:{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.finalize()));
    let expires_at = proof.iat.max(store::now()) + dpop::JTI_RETENTION;
    if store::registration::first_use_of_assertion(&state.db, &id, expires_at).await? {
        Ok(())
    } else {
        Err(OAuthError::invalid_dpop_proof("the DPoP proof was already used (its jti was seen before)").into())
    }
}
