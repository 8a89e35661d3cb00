//! The token endpoint's request parsing: `Params::parse` on any body and
//! `clients::auth::credentials` with any Authorization header never panic, and agree with what
//! was sent.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use portcullis::clients::auth::{Authorization as Header, credentials};
use portcullis::oauth::params::Params;

#[derive(Arbitrary, Debug)]
enum Authorization {
    None,
    /// Any bytes as the header value.
    Raw(Vec<u8>),
    /// `Basic base64(id:secret)` with a fuzzed scheme spelling.
    Basic {
        scheme: String,
        id: String,
        secret: String,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    body: String,
    authorization: Authorization,
}

fn unreserved(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fuzz_target!(|input: Input| {
    let Ok(params) = Params::parse(&input.body) else { return };
    // Re-serialising (used after login) is stable.
    let query = params.to_query();
    let reparsed = Params::parse(&query).expect("to_query output parses");
    assert_eq!(reparsed.to_query(), query);

    let mut headers = HeaderMap::new();
    let value = match &input.authorization {
        Authorization::None => None,
        Authorization::Raw(bytes) => HeaderValue::from_bytes(bytes).ok(),
        Authorization::Basic { scheme, id, secret } => {
            HeaderValue::from_str(&format!("{scheme} {}", STANDARD.encode(format!("{id}:{secret}")))).ok()
        }
    };
    if let Some(v) = value {
        headers.insert(header::AUTHORIZATION, v);
    }
    // What the HTTP layer hands over: absent, not visible ASCII, or the value.
    let header = match headers.get(header::AUTHORIZATION) {
        None => Header::Absent,
        Some(v) => v.to_str().map_or(Header::Unreadable, Header::Value),
    };
    let result = credentials(header, &params);

    match (&result, headers.contains_key(header::AUTHORIZATION)) {
        (Ok(c), false) => {
            assert!(!c.via_basic);
            assert_eq!(Some(c.client_id.as_str()), params.get("client_id"));
            assert_eq!(c.secret.as_deref(), params.get("client_secret"));
        }
        (Ok(c), true) => {
            assert!(c.via_basic && c.secret.is_some());
            assert!(params.get("client_secret").is_none(), "two authentication methods accepted");
            assert!(params.get("client_id").is_none_or(|b| c.client_id == b));
        }
        (Err(_), false) => assert!(params.get("client_id").is_none()),
        (Err(_), true) => {}
    }

    // Well-formed Basic credentials of unreserved characters always come through unchanged.
    if let Authorization::Basic { scheme, id, secret } = &input.authorization
        && scheme.eq_ignore_ascii_case("basic")
        && unreserved(id)
        && unreserved(secret)
        && params.get("client_secret").is_none()
        && params.get("client_id").is_none_or(|b| b == id)
    {
        let c = result.expect("valid Basic credentials refused");
        assert_eq!((c.client_id.as_str(), c.secret.as_deref()), (id.as_str(), Some(secret.as_str())));
    }
});
