//! DPoP proofs (RFC 9449) for the `*_dpop` scenarios: one ES256 key per worker, a fresh proof
//! (new `jti`, current `iat`) per request, made before the timed part starts.

use josekit::jwk::Jwk;
use josekit::jws::alg::ecdsa::EcdsaJwsSigner;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;
use serde_json::{Value, json};

use crate::Res;
use crate::flows::random_b64;

pub struct DpopKey {
    signer: EcdsaJwsSigner,
    public: Jwk,
}

impl DpopKey {
    pub fn new() -> Res<DpopKey> {
        let pair = ES256.generate_key_pair().map_err(|e| format!("DPoP key: {e}"))?;
        let signer = ES256.signer_from_jwk(&pair.to_jwk_private_key()).map_err(|e| format!("DPoP key: {e}"))?;
        Ok(DpopKey { signer, public: pair.to_jwk_public_key() })
    }

    /// A proof for `method` on `url` (absolute, as the server's metadata names it).
    pub fn proof(&self, method: &str, url: &str) -> Res<String> {
        let mut header = JwsHeader::new();
        header.set_token_type("dpop+jwt");
        header.set_jwk(self.public.clone());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?;
        let claims = json!({ "jti": random_b64(16), "htm": method, "htu": url, "iat": now.as_secs() });
        let Value::Object(map) = claims else { unreachable!("an object literal") };
        let payload = JwtPayload::from_map(map).map_err(|e| e.to_string())?;
        josekit::jwt::encode_with_signer(&payload, &header, &self.signer).map_err(|e| format!("DPoP proof: {e}"))
    }
}
