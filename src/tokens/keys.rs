//! Signing keys: generated in the database, cached by every node, rotated by publishing a new key
//! `key_publish_delay` before it signs and keeping a superseded key published for `key_retention`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use josekit::jwk::KeyPair;
use josekit::jws::{ES256, JwsSigner, JwsVerifier, RS256};
use sha2::Digest;

use crate::config::{Secret, SigningAlg};
use crate::store::keys::KeyRow;
use crate::store::{self, Db, StoreError};
use crate::tokens::{seal, secrets};

const SEAL_LABEL: &str = "portcullis signing key v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {0} is encrypted: set key_encryption_secret to the secret it was stored with")]
    NeedSecret(String),
    #[error("signing key {0} could not be decrypted: wrong key_encryption_secret")]
    WrongSecret(String),
    #[error("signing key {0} is unusable: {1}")]
    Broken(String, String),
    #[error("no signing key is active")]
    NoActiveKey,
}

#[derive(Clone, Debug)]
pub struct KeySettings {
    pub alg: SigningAlg,
    pub encryption_secret: Option<Secret>,
    pub publish_delay: i64,
    pub retention: i64,
    pub refresh: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Published and signing.
    Active,
    /// Superseded; published until the tokens it signed have expired.
    Retiring { until: i64 },
    /// Superseded longer than the retention: neither published nor used.
    Expired,
}

impl KeyState {
    pub fn published(self) -> bool {
        !matches!(self, KeyState::Expired)
    }
}

/// The state of each key, given activation times in ascending order.
pub fn classify(activations: &[i64], now: i64, retention: i64) -> Vec<KeyState> {
    // With no key active yet (the only key was rotated in before the first start), the earliest
    // signs: no verifier can hold a stale key set, since none was ever published.
    let active = activations.iter().rposition(|&a| a <= now).or(if activations.is_empty() { None } else { Some(0) });
    activations
        .iter()
        .enumerate()
        .map(|(i, _)| match active {
            Some(a) if i == a => KeyState::Active,
            Some(a) if i < a => {
                let until = activations[i + 1] + retention;
                if until > now { KeyState::Retiring { until } } else { KeyState::Expired }
            }
            _ => KeyState::Pending,
        })
        .collect()
}

pub struct LoadedKey {
    pub kid: String,
    pub alg: String,
    pub activates_at: i64,
    pub public_jwk: serde_json::Value,
    pub signer: Box<dyn JwsSigner>,
    pub verifier: Box<dyn JwsVerifier>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

struct Loaded {
    keys: Vec<Arc<LoadedKey>>,
    loaded_at: Instant,
    /// The serialized JWK Set and which keys it publishes: rebuilt only when that changes.
    jwks: Mutex<Option<(Vec<bool>, Bytes)>>,
    /// JWTs whose signature these keys checked, by the token's SHA-256: an MCP server
    /// introspects the same access token on every call it serves, and a token's signature
    /// never changes. Only the signature is remembered (what the claims say is checked by the
    /// caller every time, liveness read fresh); the set starts empty with every reload of the
    /// keys, so a key that leaves the ring takes its tokens with it.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

/// A verified JWT's claims and its header's `typ`.
type Claims = (serde_json::Map<String, serde_json::Value>, serde_json::Value);

/// The most signatures [`Loaded::verified`] remembers (a few hundred bytes each); when full it
/// starts again empty.
const VERIFIED_CAPACITY: usize = 4096;

impl Loaded {
    fn new(keys: Vec<Arc<LoadedKey>>) -> Loaded {
        Loaded { keys, loaded_at: Instant::now(), jwks: Mutex::new(None), verified: Mutex::new(HashMap::new()) }
    }
}

/// The node's cache of signing keys. Reloads from the database every `refresh`, so a key rotated
/// through any node (or the CLI) is published here before it starts to sign.
pub struct KeyRing {
    db: Db,
    settings: KeySettings,
    /// Keys derived from `key_encryption_secret`, by salt: a reload runs no argon2id.
    derived: seal::PassphraseKeys,
    loaded: RwLock<Arc<Loaded>>,
    reload: tokio::sync::Mutex<()>,
}

impl KeyRing {
    /// Creates the first key on an empty database, then loads every key.
    pub async fn open(db: Db, settings: KeySettings) -> Result<KeyRing, KeyError> {
        let now = store::now();
        if store::keys::list(&db).await?.is_empty() {
            let row = generate(&settings, now, now)?;
            // Another node may have created the first key at the same moment: that is fine.
            match store::keys::insert(&db, &row).await {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let derived = seal::PassphraseKeys::default();
        reseal(&db, &settings, &derived).await?;
        let keys = load(&db, &settings, &derived).await?;
        Ok(KeyRing {
            db,
            settings,
            derived,
            loaded: RwLock::new(Arc::new(Loaded::new(keys))),
            reload: tokio::sync::Mutex::new(()),
        })
    }

    async fn current(&self) -> Result<Arc<Loaded>, KeyError> {
        let snapshot = self.loaded.read().expect("key cache lock").clone();
        if snapshot.loaded_at.elapsed() < self.settings.refresh {
            return Ok(snapshot);
        }
        let _guard = self.reload.lock().await;
        let snapshot = self.loaded.read().expect("key cache lock").clone();
        if snapshot.loaded_at.elapsed() < self.settings.refresh {
            return Ok(snapshot);
        }
        match load(&self.db, &self.settings, &self.derived).await {
            Ok(keys) => {
                let fresh = Arc::new(Loaded::new(keys));
                *self.loaded.write().expect("key cache lock") = fresh.clone();
                Ok(fresh)
            }
            // Keep signing with what we have while the database is away.
            Err(e) => {
                tracing::warn!(error = %e, "reloading signing keys failed; using the cached set");
                Ok(snapshot)
            }
        }
    }

    /// The key that signs now.
    pub async fn signing_key(&self) -> Result<Arc<LoadedKey>, KeyError> {
        let loaded = self.current().await?;
        let activations: Vec<i64> = loaded.keys.iter().map(|k| k.activates_at).collect();
        let states = classify(&activations, store::now(), self.settings.retention);
        loaded
            .keys
            .iter()
            .zip(states)
            .find(|(_, s)| *s == KeyState::Active)
            .map(|(k, _)| k.clone())
            .ok_or(KeyError::NoActiveKey)
    }

    /// Checks a JWT's signature against the key its `kid` names (any key still loaded) and
    /// returns its header and claims. Claims are not validated here.
    pub async fn verify(&self, token: &str) -> Option<(serde_json::Map<String, serde_json::Value>, serde_json::Value)> {
        let loaded = self.current().await.ok()?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(known) = loaded.verified.lock().expect("verified cache lock").get(&digest) {
            return Some(known.clone());
        }
        let header = josekit::jwt::decode_header(token).ok()?;
        let kid = header.claim("kid")?.as_str()?.to_string();
        let typ = header.claim("typ").cloned().unwrap_or(serde_json::Value::Null);
        let key = loaded.keys.iter().find(|k| k.kid == kid)?;
        let (payload, _) = josekit::jwt::decode_with_verifier(token, key.verifier.as_ref()).ok()?;
        let claims = (payload.claims_set().clone(), typ);
        let mut verified = loaded.verified.lock().expect("verified cache lock");
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(digest, claims.clone());
        Some(claims)
    }

    /// Every published public key, as a serialized JWK Set.
    pub async fn jwks(&self) -> Result<Bytes, KeyError> {
        let loaded = self.current().await?;
        let activations: Vec<i64> = loaded.keys.iter().map(|k| k.activates_at).collect();
        let published: Vec<bool> = classify(&activations, store::now(), self.settings.retention)
            .into_iter()
            .map(KeyState::published)
            .collect();
        let mut cached = loaded.jwks.lock().expect("jwks cache lock");
        if let Some((for_keys, body)) = cached.as_ref()
            && *for_keys == published
        {
            return Ok(body.clone());
        }
        let keys: Vec<_> =
            loaded.keys.iter().zip(&published).filter(|(_, p)| **p).map(|(k, _)| &k.public_jwk).collect();
        let body = Bytes::from(serde_json::json!({ "keys": keys }).to_string());
        *cached = Some((published, body.clone()));
        Ok(body)
    }
}

async fn load(
    db: &Db,
    settings: &KeySettings,
    derived: &seal::PassphraseKeys,
) -> Result<Vec<Arc<LoadedKey>>, KeyError> {
    let rows = store::keys::list(db).await?;
    let states = classify(&rows.iter().map(|r| r.activates_at).collect::<Vec<_>>(), store::now(), settings.retention);
    let mut keys = Vec::with_capacity(rows.len());
    for (row, state) in rows.into_iter().zip(states) {
        if state == KeyState::Expired {
            continue;
        }
        keys.push(Arc::new(decode(row, settings, derived)?));
    }
    Ok(keys)
}

/// The private key's DER, and whether it is stored in a form to re-seal: the old unsalted
/// SHA-256 key derivation, or in clear while a secret is configured.
fn private_der(
    row: &KeyRow,
    settings: &KeySettings,
    derived: &seal::PassphraseKeys,
) -> Result<(Vec<u8>, bool), KeyError> {
    if !row.encrypted {
        return Ok((row.private_key.clone(), settings.encryption_secret.is_some()));
    }
    let secret = settings.encryption_secret.as_ref().ok_or_else(|| KeyError::NeedSecret(row.kid.clone()))?;
    let (der, format) = seal::open_under_passphrase(derived, SEAL_LABEL, secret.expose().as_bytes(), &row.private_key)
        .map_err(|_| KeyError::WrongSecret(row.kid.clone()))?;
    Ok((der, format != seal::Format::Current))
}

/// Re-seals, under argon2id with a fresh salt, every key stored the old way (an unsalted SHA-256
/// of the secret) or in clear while a secret is configured. Each update is conditional on the
/// stored bytes, so nodes starting together re-seal each key once and never lose one.
async fn reseal(db: &Db, settings: &KeySettings, derived: &seal::PassphraseKeys) -> Result<(), KeyError> {
    let Some(secret) = &settings.encryption_secret else {
        return Ok(());
    };
    for row in store::keys::list(db).await? {
        let (der, stale) = private_der(&row, settings, derived)?;
        if !stale {
            continue;
        }
        let sealed = seal::seal_under_passphrase(SEAL_LABEL, secret.expose().as_bytes(), &der);
        if store::keys::reseal(db, &row.kid, &row.private_key, &sealed).await? {
            tracing::info!(kid = %row.kid, "signing key re-sealed under key_encryption_secret (argon2id, salted)");
        }
    }
    Ok(())
}

fn decode(row: KeyRow, settings: &KeySettings, derived: &seal::PassphraseKeys) -> Result<LoadedKey, KeyError> {
    let (der, _) = private_der(&row, settings, derived)?;
    let broken = |e: josekit::JoseError| KeyError::Broken(row.kid.clone(), e.to_string());
    let signer: Box<dyn JwsSigner> = match row.alg.as_str() {
        "ES256" => Box::new(ES256.signer_from_der(&der).map_err(broken)?),
        "RS256" => Box::new(RS256.signer_from_der(&der).map_err(broken)?),
        other => {
            return Err(KeyError::Broken(row.kid.clone(), format!("unsupported algorithm {other}")));
        }
    };
    let public_jwk: serde_json::Value =
        serde_json::from_str(&row.public_jwk).map_err(|e| KeyError::Broken(row.kid.clone(), e.to_string()))?;
    let jwk = josekit::jwk::Jwk::from_bytes(public_jwk.to_string().as_bytes()).map_err(broken)?;
    let verifier: Box<dyn JwsVerifier> = match row.alg.as_str() {
        "RS256" => Box::new(RS256.verifier_from_jwk(&jwk).map_err(broken)?),
        _ => Box::new(ES256.verifier_from_jwk(&jwk).map_err(broken)?),
    };
    Ok(LoadedKey { kid: row.kid, alg: row.alg, activates_at: row.activates_at, public_jwk, signer, verifier })
}

/// A new key pair, its private part sealed when a key-encryption secret is configured.
pub fn generate(settings: &KeySettings, now: i64, activates_at: i64) -> Result<KeyRow, KeyError> {
    let kid = format!("{}-{}", time_label(now), &secrets::random_string(6));
    let broken = |e: josekit::JoseError| KeyError::Broken(kid.clone(), e.to_string());
    let (der, mut jwk) = match settings.alg {
        SigningAlg::ES256 => {
            let pair = ES256.generate_key_pair().map_err(broken)?;
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
        SigningAlg::RS256 => {
            let pair = RS256.generate_key_pair(2048).map_err(broken)?;
            (pair.to_der_private_key(), pair.to_jwk_public_key())
        }
    };
    jwk.set_key_id(&kid);
    jwk.set_algorithm(settings.alg.as_str());
    jwk.set_key_use("sig");
    let (private_key, encrypted) = match &settings.encryption_secret {
        Some(secret) => (seal::seal_under_passphrase(SEAL_LABEL, secret.expose().as_bytes(), &der), true),
        None => (der, false),
    };
    Ok(KeyRow {
        kid,
        alg: settings.alg.as_str().to_string(),
        public_jwk: serde_json::Value::from(jwk.as_ref().clone()).to_string(),
        private_key,
        encrypted,
        created_at: now,
        activates_at,
    })
}

fn time_label(now: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(now)
        .map(|t| format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day()))
        .unwrap_or_else(|_| "key".into())
}

/// Adds a key that is published now and signs after `publish_delay`.
pub async fn rotate(db: &Db, settings: &KeySettings, now: i64) -> Result<KeyRow, KeyError> {
    let row = generate(settings, now, now + settings.publish_delay)?;
    store::keys::insert(db, &row).await?;
    Ok(row)
}

/// Every key with its state, for `portcullis keys list`.
pub async fn status(db: &Db, settings: &KeySettings, now: i64) -> Result<Vec<(KeyRow, KeyState)>, KeyError> {
    let rows = store::keys::list(db).await?;
    let states = classify(&rows.iter().map(|r| r.activates_at).collect::<Vec<_>>(), now, settings.retention);
    Ok(rows.into_iter().zip(states).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rotation_timeline() {
        // Key A active since 0; key B rotated in at 100, signs from 700; retention 1000.
        let acts = [0, 700];
        assert_eq!(classify(&acts, 100, 1000), vec![KeyState::Active, KeyState::Pending]);
        assert_eq!(classify(&acts, 700, 1000), vec![KeyState::Retiring { until: 1700 }, KeyState::Active]);
        assert_eq!(classify(&acts, 1700, 1000), vec![KeyState::Expired, KeyState::Active]);
        assert_eq!(classify(&[], 5, 10), Vec::<KeyState>::new());
        assert_eq!(classify(&[100], 5, 10), vec![KeyState::Active], "the only key signs even before its time");
    }

    #[test]
    fn generated_keys_sign_and_publish_public_parts_only() {
        for alg in [SigningAlg::ES256, SigningAlg::RS256] {
            let settings = KeySettings {
                alg,
                encryption_secret: Some(Secret::new("0123456789abcdef0123")),
                publish_delay: 0,
                retention: 10,
                refresh: Duration::from_secs(1),
            };
            let row = generate(&settings, 0, 0).unwrap();
            assert!(row.encrypted);
            let jwk: serde_json::Value = serde_json::from_str(&row.public_jwk).unwrap();
            assert_eq!(jwk["kid"], row.kid.as_str());
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], alg.as_str());
            assert!(jwk.get("d").is_none(), "private part leaked: {jwk}");
            let derived = seal::PassphraseKeys::default();
            let key = decode(row.clone(), &settings, &derived).unwrap();
            assert_eq!(key.kid, row.kid);
            let no_secret = KeySettings { encryption_secret: None, ..settings.clone() };
            assert!(matches!(decode(row.clone(), &no_secret, &derived), Err(KeyError::NeedSecret(_))));
            let wrong = KeySettings { encryption_secret: Some(Secret::new("another-secret-value")), ..settings };
            assert!(matches!(decode(row, &wrong, &derived), Err(KeyError::WrongSecret(_))));
        }
    }

    #[tokio::test]
    async fn remembered_signatures_are_only_those_checked() {
        let db = Db::connect("sqlite::memory:").await.unwrap();
        db.migrate().await.unwrap();
        let settings = KeySettings {
            alg: SigningAlg::ES256,
            encryption_secret: None,
            publish_delay: 0,
            retention: 10,
            refresh: Duration::from_secs(3600),
        };
        let ring = KeyRing::open(db, settings.clone()).await.unwrap();
        let key = ring.signing_key().await.unwrap();
        let mut claims = josekit::jwt::JwtPayload::new();
        claims.set_subject("alice");
        let mut header = josekit::jws::JwsHeader::new();
        header.set_key_id(&key.kid);
        let token = josekit::jwt::encode_with_signer(&claims, &header, key.signer.as_ref()).unwrap();
        for _ in 0..2 {
            let (got, _) = ring.verify(&token).await.expect("our own token verifies, checked or remembered");
            assert_eq!(got["sub"], "alice");
        }
        assert_eq!(ring.current().await.unwrap().verified.lock().unwrap().len(), 1);
        // The same claims under a changed signature, and a token by a key outside the ring, fail.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        assert!(ring.verify(&format!("{head}.{flipped}{}", &sig[1..])).await.is_none());
        let stranger = decode(generate(&settings, 0, 0).unwrap(), &settings, &seal::PassphraseKeys::default()).unwrap();
        header.set_key_id(&key.kid);
        let forged = josekit::jwt::encode_with_signer(&claims, &header, stranger.signer.as_ref()).unwrap();
        assert!(ring.verify(&forged).await.is_none(), "a stranger's signature under our kid");
        assert_eq!(ring.current().await.unwrap().verified.lock().unwrap().len(), 1, "only what verified is kept");
    }
}
