//! PKCE (RFC 7636), S256 only.
//!
//! MCP requires S256, and accepting `plain` would let an attacker who sees the
//! authorization request (and so the challenge) redeem an intercepted code.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

pub const S256: &str = "S256";

/// BASE64URL of a 32-byte SHA-256 digest, unpadded.
const CHALLENGE_LEN: usize = 43;

/// RFC 7636 §4.1 verifier length bounds.
const VERIFIER_LEN: std::ops::RangeInclusive<usize> = 43..=128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeChallenge(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge is required")]
    Missing,
    #[error("code_challenge_method must be S256; plain (the default when omitted) is not allowed")]
    PlainNotAllowed,
    #[error("unsupported code_challenge_method {0:?}; only S256 is supported")]
    UnsupportedMethod(String),
    #[error("code_challenge must be 43 base64url characters (an S256 hash)")]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")]
    MalformedVerifier,
    /// Not in the first draft of the API, but a wrong verifier is neither a
    /// malformed one nor a parse failure, and the audit log must tell them apart.
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

impl PkceError {
    /// The OAuth error code: challenge problems arise at /authorize
    /// (`invalid_request`), verifier problems at /token (`invalid_grant`, RFC 7636 §4.6).
    pub fn code(&self) -> super::ErrorCode {
        match self {
            Self::MalformedVerifier | Self::Mismatch => super::ErrorCode::InvalidGrant,
            Self::Missing | Self::PlainNotAllowed | Self::UnsupportedMethod(_) | Self::MalformedChallenge => {
                super::ErrorCode::InvalidRequest
            }
        }
    }
}

impl CodeChallenge {
    /// `method` None means the client omitted code_challenge_method: the RFC
    /// default is `plain`, which we refuse (PlainNotAllowed) — MCP requires S256.
    ///
    /// Empty values count as omitted (OAuth 2.1 §3.1).
    pub fn parse(challenge: Option<&str>, method: Option<&str>) -> Result<Self, PkceError> {
        let challenge = challenge.filter(|c| !c.is_empty()).ok_or(PkceError::Missing)?;
        match method.filter(|m| !m.is_empty()) {
            None | Some("plain") => return Err(PkceError::PlainNotAllowed),
            Some(S256) => {}
            Some(other) => return Err(PkceError::UnsupportedMethod(other.to_owned())),
        }
        // Decoding (not just a charset check) also refuses non-canonical final
        // characters, which no SHA-256 output could produce.
        let well_formed =
            challenge.len() == CHALLENGE_LEN && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|bytes| bytes.len() == 32);
        if !well_formed {
            return Err(PkceError::MalformedChallenge);
        }
        Ok(Self(challenge.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison of BASE64URL(SHA256(verifier)) with the
    /// challenge; verifier syntax checked first (43..=128 chars of [A-Za-z0-9-._~]).
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        let well_formed = VERIFIER_LEN.contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed {
            return Err(PkceError::MalformedVerifier);
        }
        let computed = s256(verifier);
        if constant_time_eq(computed.as_bytes(), self.0.as_bytes()) { Ok(()) } else { Err(PkceError::Mismatch) }
    }
}

/// BASE64URL(SHA256(verifier)): the S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh verifier for requests Portcullis itself makes (as a relying party): 256 random bits,
/// 43 base64url characters.
pub fn new_verifier() -> String {
    crate::tokens::secrets::random_token()
}

/// Time depends only on the lengths, which are public (both are always 43).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        // The RFC's verifier is BASE64URL of these 32 octets, and the
        // challenge is BASE64URL(SHA256(ASCII(verifier))).
        let octets: [u8; 32] = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105, 214, 191,
            240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        assert_eq!(URL_SAFE_NO_PAD.encode(octets), RFC_VERIFIER);
        let digest: [u8; 32] = [
            19, 211, 30, 150, 26, 26, 216, 236, 47, 22, 177, 12, 76, 152, 46, 8, 118, 168, 120, 173, 109, 241, 68, 86,
            110, 225, 137, 74, 203, 112, 249, 195,
        ];
        assert_eq!(Sha256::digest(RFC_VERIFIER.as_bytes()).as_slice(), digest);
        assert_eq!(URL_SAFE_NO_PAD.encode(digest), RFC_CHALLENGE);
        assert_eq!(s256(RFC_VERIFIER), RFC_CHALLENGE);

        let c = CodeChallenge::parse(Some(RFC_CHALLENGE), Some("S256")).unwrap();
        assert_eq!(c.as_str(), RFC_CHALLENGE);
        assert_eq!(c.verify(RFC_VERIFIER), Ok(()));
    }

    #[test]
    fn wrong_verifier_is_a_mismatch() {
        let c = CodeChallenge::parse(Some(RFC_CHALLENGE), Some("S256")).unwrap();
        let mut wrong = RFC_VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert_eq!(c.verify(&wrong), Err(PkceError::Mismatch));
        // Sending the challenge itself as the verifier (a plain downgrade) fails.
        assert_eq!(c.verify(RFC_CHALLENGE), Err(PkceError::Mismatch));
        assert_eq!(PkceError::Mismatch.code(), super::super::ErrorCode::InvalidGrant);
    }

    #[test]
    fn missing_challenge() {
        assert_eq!(CodeChallenge::parse(None, Some("S256")), Err(PkceError::Missing));
        assert_eq!(CodeChallenge::parse(Some(""), Some("S256")), Err(PkceError::Missing));
        assert_eq!(CodeChallenge::parse(None, None), Err(PkceError::Missing));
        assert_eq!(PkceError::Missing.code(), super::super::ErrorCode::InvalidRequest);
    }

    #[test]
    fn omitted_or_plain_method_is_refused() {
        for method in [None, Some(""), Some("plain")] {
            assert_eq!(
                CodeChallenge::parse(Some(RFC_CHALLENGE), method),
                Err(PkceError::PlainNotAllowed),
                "{method:?}"
            );
        }
    }

    #[test]
    fn other_methods_are_unsupported_and_case_matters() {
        for m in ["s256", "S512", "SHA256"] {
            assert_eq!(CodeChallenge::parse(Some(RFC_CHALLENGE), Some(m)), Err(PkceError::UnsupportedMethod(m.into())));
        }
    }

    #[test]
    fn malformed_challenges() {
        let pad = format!("{RFC_CHALLENGE}=");
        let std_alphabet = RFC_CHALLENGE.replace('-', "+");
        // A last character with its low two bits set encodes more than 256 bits.
        let non_canonical = format!("{}9", &RFC_CHALLENGE[..42]);
        for c in [
            &RFC_CHALLENGE[..42],
            pad.as_str(),
            std_alphabet.as_str(),
            non_canonical.as_str(),
            &"a".repeat(128),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c\n",
        ] {
            assert_eq!(CodeChallenge::parse(Some(c), Some("S256")), Err(PkceError::MalformedChallenge), "{c:?}");
        }
    }

    #[test]
    fn malformed_verifiers() {
        let c = CodeChallenge::parse(Some(RFC_CHALLENGE), Some("S256")).unwrap();
        for v in [
            "",
            &RFC_VERIFIER[..42],
            &"a".repeat(129),
            &format!("{}+", &RFC_VERIFIER[..42]),
            &format!("{} ", RFC_VERIFIER),
            &format!("{}é", &RFC_VERIFIER[..41]),
        ] {
            assert_eq!(c.verify(v), Err(PkceError::MalformedVerifier), "{v:?}");
        }
    }

    #[test]
    fn verifier_length_bounds_are_inclusive() {
        for len in [43, 128] {
            let v = "~".repeat(len);
            let c = CodeChallenge::parse(Some(&s256(&v)), Some(S256)).unwrap();
            assert_eq!(c.verify(&v), Ok(()));
        }
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
