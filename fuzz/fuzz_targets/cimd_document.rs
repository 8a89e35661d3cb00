//! `cimd::validate_document` never panics on any document, and what it accepts is storable:
//! a secret-less auth method, keys when it negotiated `private_key_jwt`, and metadata that
//! reloads unchanged through `ClientMetadata::from_stored(to_json())`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::clients::cimd::validate_document;
use portcullis::oauth::client_metadata::{ClientMetadata, TokenEndpointAuthMethod};
use serde_json::Value;

/// The client_id every seed document names, so the fuzzer gets past the id check.
const CLIENT_ID: &str = "https://app.example/client.json";

/// Input: a first byte of 0 means the fixed client_id, the rest being the document; otherwise
/// the bytes up to the first NUL after it are the client_id and the rest the document.
fn split(data: &[u8]) -> Option<(String, &[u8])> {
    let (&first, rest) = data.split_first()?;
    if first == 0 {
        return Some((CLIENT_ID.to_owned(), rest));
    }
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let id = String::from_utf8_lossy(&rest[..end]).into_owned();
    Some((id, rest.get(end + 1..).unwrap_or_default()))
}

fuzz_target!(|data: &[u8]| {
    let Some((client_id, body)) = split(data) else { return };
    let Ok(doc) = validate_document(&client_id, body) else { return };
    let m = &doc.metadata;
    assert!(!m.token_endpoint_auth_method.requires_secret(), "a document client got a secret method");
    if m.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt {
        assert!(
            m.jwks.is_some() || m.jwks_uri.is_some(),
            "private_key_jwt negotiated without keys: {}",
            String::from_utf8_lossy(body)
        );
    } else {
        assert!(!doc.also_none);
    }
    let json = Value::Object(m.to_json());
    assert_eq!(ClientMetadata::from_stored(&json).as_ref(), Ok(m), "from_stored(to_json) of {json}");
});
