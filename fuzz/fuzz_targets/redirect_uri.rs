//! `RedirectUri::parse` and `RedirectUri::matches` never panic, and matching obeys the
//! registration rules: a non-loopback registration matches only its own string; a loopback
//! (`http`) registration matches the same URI with any port, and nothing else.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use portcullis::oauth::redirect_uri::RedirectUri;

/// Prefixes that get the fuzzer past the scheme and host checks quickly.
#[derive(Arbitrary, Debug)]
enum Prefix {
    Raw,
    Ipv4,
    Localhost,
    Ipv6,
    Https,
    PrivateUse,
}

impl Prefix {
    fn as_str(&self) -> &'static str {
        match self {
            Prefix::Raw => "",
            Prefix::Ipv4 => "http://127.0.0.1",
            Prefix::Localhost => "http://localhost",
            Prefix::Ipv6 => "http://[::1]",
            Prefix::Https => "https://",
            Prefix::PrivateUse => "cursor://",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: Prefix,
    registered: String,
    requested_prefix: Prefix,
    requested: String,
    port: u16,
}

/// `scheme://host` + `:port` + rest, with any port the authority had removed; `None` without an authority.
fn with_port(uri: &str, port: Option<u16>) -> Option<String> {
    let (scheme, after) = uri.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host = if authority.starts_with('[') {
        &authority[..authority.find(']').map_or(authority.len(), |i| i + 1)]
    } else {
        authority.split_once(':').map_or(authority, |(h, _)| h)
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{host}{port}{rest}", scheme.to_ascii_lowercase()))
}

fuzz_target!(|input: Input| {
    let registered = format!("{}{}", input.prefix.as_str(), input.registered);
    let requested = format!("{}{}", input.requested_prefix.as_str(), input.requested);
    let _ = RedirectUri::parse(&requested);
    let Ok(r) = RedirectUri::parse(&registered) else { return };
    assert_eq!(r.as_str(), registered, "as_str is the registered string");
    assert!(r.matches(&registered), "a registration matches itself");

    let matched = r.matches(&requested);
    if !r.is_loopback() {
        assert_eq!(matched, requested == registered, "non-loopback {registered:?} vs {requested:?}");
        return;
    }

    // Loopback: every port, and the registered string without a port, match.
    assert!(registered.to_ascii_lowercase().starts_with("http://"), "loopback is plain http: {registered:?}");
    let ported = with_port(&registered, Some(input.port)).unwrap();
    assert!(r.matches(&ported), "{registered:?} must match {ported:?}");
    let portless = with_port(&registered, None).unwrap();
    assert!(r.matches(&portless), "{registered:?} must match {portless:?}");

    // And whatever matched differs from the registration in the port (or scheme case) only.
    if matched {
        let same = with_port(&requested, None).is_some_and(|req| req == portless);
        assert!(same, "{registered:?} matched {requested:?}, which differs in more than the port");
        assert!(RedirectUri::parse(&requested).is_ok_and(|q| q.is_loopback()));
    }
});
