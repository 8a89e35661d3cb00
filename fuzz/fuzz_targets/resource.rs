//! `ResourceUri::parse` / `parse_requested` never panic; the canonical form is a fixed point,
//! and whatever registration accepts, a request canonicalises to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::oauth::resource::ResourceUri;

fuzz_target!(|s: &str| {
    let registered = ResourceUri::parse(s);
    let requested = ResourceUri::parse_requested(s);

    if let Ok(r) = &registered {
        let again = ResourceUri::parse(r.as_str());
        assert_eq!(again.as_ref(), Ok(r), "registration canonical form of {s:?} is not a fixed point");
        assert_eq!(requested.as_ref(), Ok(r), "{s:?}: a request must canonicalise like the registration");
    }
    if let Ok(q) = &requested {
        let again = ResourceUri::parse_requested(q.as_str());
        assert_eq!(again.as_ref(), Ok(q), "requested canonical form of {s:?} is not a fixed point");
        assert!(!q.as_str().contains(['#', '?']), "{s:?} -> {q:?} keeps a fragment or query");
        assert!(!q.as_str().ends_with('/') || q.as_str().matches('/').count() > 2, "{q:?} keeps the origin's slash");
    }
});
