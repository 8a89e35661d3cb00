//! Arbitrary bytes as a JSON registration body: `ClientMetadata::from_request` never panics, and
//! whatever it accepts reloads unchanged from `to_json` (that is how metadata is stored).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::oauth::client_metadata::ClientMetadata;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else { return };
    let Ok(m) = ClientMetadata::from_request(&body) else { return };
    let json = Value::Object(m.to_json());
    assert_eq!(ClientMetadata::from_request(&json).as_ref(), Ok(&m), "from_request(to_json) of {json}");
    assert_eq!(ClientMetadata::from_stored(&json).as_ref(), Ok(&m), "from_stored(to_json) of {json}");
    assert!(!m.redirect_uris.is_empty());
    assert!(m.response_types == ["code"]);
    assert!(m.grant_types.first().is_some_and(|g| g.as_str() == "authorization_code"));
});
