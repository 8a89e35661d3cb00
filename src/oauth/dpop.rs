//! DPoP proofs (RFC 9449 §4): parsing and every stateless check of a proof JWT, the RFC 7638
//! thumbprint of its key, and server nonces. Pure: the replay check (`jti`, shared by all nodes)
//! and the request's facts come from the caller (`flows::dpop`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Asymmetric algorithms only: never `none`, never HMAC (the "key" would travel in the proof).
pub const SIGNING_ALGS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];
/// How old a proof's `iat` may be, and how far in the future (clock skew).
pub const MAX_AGE: i64 = 300;
pub const MAX_SKEW: i64 = 60;
/// How long a `jti` must be remembered: as long as a proof carrying it could be accepted.
pub const JTI_RETENTION: i64 = MAX_AGE + MAX_SKEW;
/// Proofs are small; anything bigger is not one (and is not worth parsing).
const MAX_PROOF_BYTES: usize = 8 * 1024;
const MAX_JTI_BYTES: usize = 256;
/// RSA keys below 2048 bits are refused (RFC 8017 / NIST guidance).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Members that only a private (or symmetric) JWK has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("the DPoP proof is not a signed JWT")]
    Malformed,
    #[error("the DPoP proof's typ must be dpop+jwt")]
    Type,
    #[error(
        "the DPoP proof's algorithm {0:?} is not accepted (dpop_signing_alg_values_supported lists those that are)"
    )]
    Algorithm(String),
    #[error("the DPoP proof's jwk must be a public EC, RSA (2048 bits or more) or OKP key")]
    Key,
    #[error("the DPoP proof's jwk contains private key material")]
    PrivateKey,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    Signature,
    #[error("the DPoP proof lacks the claim {0}")]
    Missing(&'static str),
    #[error("the DPoP proof's htm {0:?} is not the request's method")]
    Method(String),
    #[error("the DPoP proof's htu {0:?} is not this endpoint's URL")]
    Url(String),
    #[error("the DPoP proof's iat is outside the accepted window ({MAX_AGE}s old to {MAX_SKEW}s ahead)")]
    Time,
    #[error("the DPoP proof's ath is not the hash of the access token")]
    AccessTokenHash,
}

/// What the request says the proof must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// At a resource (`/userinfo`): the access token, whose hash `ath` must be.
    pub access_token: Option<&'a str>,
    pub now: i64,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// RFC 7638 thumbprint of the proof's key: what tokens are bound to (`cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub nonce: Option<String>,
}

/// Verifies a proof JWT against the request (RFC 9449 §4.3, all but the `jti` replay check and
/// the nonce's validity, which need the caller's state).
pub fn verify(proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed);
    }
    let header = decode_part(proof.split('.').next().ok_or(ProofError::Malformed)?)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(ProofError::Type);
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    if !SIGNING_ALGS.contains(&alg) {
        return Err(ProofError::Algorithm(alg.to_string()));
    }
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(ProofError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let jkt = thumbprint(jwk).ok_or(ProofError::Key)?;
    let verifier = crate::federation::keys::verifier(alg, &Value::Object(jwk.clone())).ok_or(ProofError::Key)?;
    let (payload, _) =
        josekit::jwt::decode_with_verifier(proof, verifier.as_ref()).map_err(|_| ProofError::Signature)?;
    let claims = payload.claims_set();
    let text = |name: &'static str| claims.get(name).and_then(Value::as_str).ok_or(ProofError::Missing(name));
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(ProofError::Missing("jti"));
    }
    let htm = text("htm")?;
    if htm != expected.method {
        return Err(ProofError::Method(htm.to_string()));
    }
    let htu = text("htu")?;
    if normalised_url(htu).is_none_or(|u| Some(u) != normalised_url(expected.url)) {
        return Err(ProofError::Url(htu.chars().take(200).collect()));
    }
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(ProofError::Missing("iat"))?;
    if iat < expected.now - MAX_AGE || iat > expected.now + MAX_SKEW {
        return Err(ProofError::Time);
    }
    if let Some(token) = expected.access_token {
        let ath = text("ath")?;
        if ath.as_bytes() != access_token_hash(token).as_bytes() {
            return Err(ProofError::AccessTokenHash);
        }
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).map(str::to_string);
    Ok(Proof { jkt, jti: jti.to_string(), iat, nonce })
}

/// `ath`: base64url of the SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: its required members only, in
/// lexicographic order, without whitespace. `None` for a key type not accepted here, a member
/// missing, or an RSA modulus under 2048 bits.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
    let required: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => {
            let n = URL_SAFE_NO_PAD.decode(member("n")?).ok()?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            &["e", "kty", "n"]
        }
        _ => return None,
    };
    // A BTreeMap serializes its keys in order; the values are JSON strings.
    let mut canonical = std::collections::BTreeMap::new();
    for name in required {
        canonical.insert(*name, member(name)?);
    }
    let json = serde_json::to_string(&canonical).ok()?;
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes())))
}

/// Is `s` shaped like a thumbprint (`dpop_jkt` at `/authorize`): 43 base64url characters.
pub fn is_thumbprint(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `htu` compared without query and fragment, after RFC 3986 §6.2.2–6.2.3 normalisation (case of
/// scheme and host, default port, empty path, percent-encoding case), which the URL parser does.
fn normalised_url(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        return None;
    }
    Some(url[..url::Position::AfterPath].to_string())
}

fn decode_part(part: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed)
}

/// Server nonces (RFC 9449 §8), stateless so that every node issues and accepts the same ones: a
/// time bucket and an HMAC over it under a secret all nodes share (kept in the database). A nonce
/// stays valid for the current and the previous bucket, so it rotates every [`NONCE_PERIOD`] and
/// lives at most twice that.
pub const NONCE_PERIOD: i64 = 300;
const NONCE_LABEL: &[u8] = b"portcullis dpop nonce v1";

#[derive(Clone)]
pub struct NonceKey([u8; 32]);

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

impl NonceKey {
    pub fn new(secret: &[u8]) -> NonceKey {
        NonceKey(hmac_sha256(secret, NONCE_LABEL))
    }

    /// The nonce to hand out at `now`.
    pub fn issue(&self, now: i64) -> String {
        self.for_bucket(now.div_euclid(NONCE_PERIOD))
    }

    /// Whether `nonce` was issued in this period or the previous one.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        use subtle::ConstantTimeEq;
        let bucket = now.div_euclid(NONCE_PERIOD);
        [bucket, bucket - 1].iter().any(|b| bool::from(self.for_bucket(*b).as_bytes().ct_eq(nonce.as_bytes())))
    }

    fn for_bucket(&self, bucket: i64) -> String {
        let mac = hmac_sha256(&self.0, &bucket.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&mac[..24])
    }
}

/// HMAC-SHA-256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jws::{ES256, EdDSA, HS256, JwsHeader, RS256};
    use josekit::jwt::JwtPayload;
    use serde_json::json;

    const URL: &str = "https://as.example/token";
    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected { method: "POST", url: URL, access_token: None, now: NOW }
    }

    struct Key {
        alg: &'static str,
        private: josekit::jwk::Jwk,
        public: Map<String, Value>,
    }

    fn es256() -> Key {
        let pair = ES256.generate_key_pair().unwrap();
        let public = pair.to_jwk_public_key();
        Key { alg: "ES256", private: pair.to_jwk_private_key(), public: public.as_ref().clone() }
    }

    fn sign(key: &Key, header_extra: Map<String, Value>, claims: Value) -> String {
        let mut h = JwsHeader::new();
        h.set_token_type("dpop+jwt");
        h.set_claim("jwk", Some(Value::Object(key.public.clone()))).unwrap();
        for (k, v) in header_extra {
            h.set_claim(&k, Some(v)).unwrap();
        }
        let p = JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap();
        let signer: Box<dyn josekit::jws::JwsSigner> = match key.alg {
            "ES256" => Box::new(ES256.signer_from_jwk(&key.private).unwrap()),
            "RS256" => Box::new(RS256.signer_from_jwk(&key.private).unwrap()),
            "EdDSA" => Box::new(EdDSA.signer_from_jwk(&key.private).unwrap()),
            _ => unreachable!(),
        };
        josekit::jwt::encode_with_signer(&p, &h, signer.as_ref()).unwrap()
    }

    fn claims() -> Value {
        json!({ "jti": "j1", "htm": "POST", "htu": URL, "iat": NOW })
    }

    #[test]
    fn a_good_proof_verifies_for_each_key_type() {
        let rsa = RS256.generate_key_pair(2048).unwrap();
        let ed = EdDSA.generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519).unwrap();
        let keys = [
            es256(),
            Key { alg: "RS256", private: rsa.to_jwk_private_key(), public: rsa.to_jwk_public_key().as_ref().clone() },
            Key { alg: "EdDSA", private: ed.to_jwk_private_key(), public: ed.to_jwk_public_key().as_ref().clone() },
        ];
        for key in keys {
            let proof = verify(&sign(&key, Map::new(), claims()), &expected()).unwrap();
            assert_eq!(proof.jkt, thumbprint(&key.public).unwrap());
            assert_eq!((proof.jti.as_str(), proof.iat, proof.nonce), ("j1", NOW, None));
        }
    }

    #[test]
    fn rfc_7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn each_check_refuses() {
        let key = es256();
        let with = |name: &str, v: Value| {
            let mut c = claims();
            c[name] = v;
            sign(&key, Map::new(), c)
        };
        let check = |proof: String| verify(&proof, &expected()).unwrap_err();
        assert_eq!(check(with("htm", json!("GET"))), ProofError::Method("GET".into()));
        assert!(matches!(check(with("htu", json!("https://as.example/other"))), ProofError::Url(_)));
        assert_eq!(check(with("iat", json!(NOW - MAX_AGE - 1))), ProofError::Time);
        assert_eq!(check(with("iat", json!(NOW + MAX_SKEW + 1))), ProofError::Time);
        assert_eq!(check(with("jti", json!(""))), ProofError::Missing("jti"));
        let mut no_jti = claims();
        no_jti.as_object_mut().unwrap().remove("jti");
        assert_eq!(check(sign(&key, Map::new(), no_jti)), ProofError::Missing("jti"));
        // typ
        let mut typ = Map::new();
        typ.insert("typ".into(), json!("JWT"));
        assert_eq!(check(sign(&key, typ, claims())), ProofError::Type);
        // a private key in the header
        let mut leaky = Map::new();
        leaky.insert("jwk".into(), Value::Object(key.private.as_ref().clone()));
        assert_eq!(check(sign(&key, leaky, claims())), ProofError::PrivateKey);
        // a signature by another key
        let other = es256();
        let mut swapped = Map::new();
        swapped.insert("jwk".into(), Value::Object(other.public.clone()));
        assert_eq!(check(sign(&key, swapped, claims())), ProofError::Signature);
        // ath at a resource
        let at = Expected { access_token: Some("tok"), ..expected() };
        assert_eq!(verify(&sign(&key, Map::new(), claims()), &at).unwrap_err(), ProofError::Missing("ath"));
        assert_eq!(verify(&with("ath", json!("x")), &at).unwrap_err(), ProofError::AccessTokenHash);
        assert!(verify(&with("ath", json!(access_token_hash("tok"))), &at).is_ok());
    }

    #[test]
    fn none_and_hmac_are_refused() {
        let header =
            URL_SAFE_NO_PAD.encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": es256().public}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        assert_eq!(
            verify(&format!("{header}.{body}."), &expected()).unwrap_err(),
            ProofError::Algorithm("none".into())
        );
        let mut h = JwsHeader::new();
        h.set_token_type("dpop+jwt");
        h.set_claim("jwk", Some(json!({"kty": "oct", "k": "c2VjcmV0"}))).unwrap();
        let p = JwtPayload::from_map(claims().as_object().unwrap().clone()).unwrap();
        let hs = josekit::jwt::encode_with_signer(
            &p,
            &h,
            &HS256.signer_from_bytes(b"secret-secret-secret-secret-32b!").unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&hs, &expected()).unwrap_err(), ProofError::Algorithm("HS256".into()));
    }

    #[test]
    fn htu_is_normalised_and_ignores_query_and_fragment() {
        let key = es256();
        for htu in ["https://AS.example:443/token?x=1#f", "HTTPS://as.example/token"] {
            let mut c = claims();
            c["htu"] = json!(htu);
            assert!(verify(&sign(&key, Map::new(), c), &expected()).is_ok(), "{htu}");
        }
        for htu in ["https://as.example:8443/token", "http://as.example/token", "https://as.example/token/", "/token"] {
            let mut c = claims();
            c["htu"] = json!(htu);
            assert!(verify(&sign(&key, Map::new(), c), &expected()).is_err(), "{htu}");
        }
    }

    #[test]
    fn nonces_rotate_and_expire() {
        let k = NonceKey::new(b"secret");
        let n = k.issue(NOW);
        assert!(k.accepts(&n, NOW));
        assert!(k.accepts(&n, NOW + NONCE_PERIOD));
        assert!(!k.accepts(&n, NOW + 2 * NONCE_PERIOD));
        assert!(!NonceKey::new(b"other").accepts(&n, NOW));
        assert!(!k.accepts("", NOW));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
