//! Property tests of the pure OAuth parsers (no app, no database): the redirect URI matcher, the
//! resource canonicaliser and the scope set. The fuzz targets in `fuzz/` check the same
//! invariants on arbitrary input; these run on every `cargo test`.

use std::collections::BTreeSet;

use portcullis::oauth::redirect_uri::RedirectUri;
use portcullis::oauth::resource::{ResourceUri, ResourceUriError};
use portcullis::oauth::scope::ScopeSet;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

/// A path (maybe empty) and maybe a query, of characters a redirect URI allows.
fn path_and_query() -> impl Strategy<Value = String> {
    "(/[a-zA-Z0-9._~-]{0,8}){0,3}(\\?[a-z0-9=&]{0,8})?"
}

/// A path of at least one segment, without query.
fn path() -> impl Strategy<Value = String> {
    "(/[a-zA-Z0-9_~-]{1,8}){1,3}/?"
}

/// A DNS name: letter-led labels without hyphens, so no punycode and no numeric last label.
fn domain() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,2}"
}

fn port_suffix() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), any::<u16>().prop_map(|p| format!(":{p}"))]
}

fn registered(s: &str) -> RedirectUri {
    RedirectUri::parse(s).unwrap_or_else(|e| panic!("{s:?} should register: {e}"))
}

/// Flips the ASCII case of the characters whose mask bit is set.
fn mix_case(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().copied().chain(std::iter::repeat(false)))
        .map(|(c, flip)| if flip { c.to_ascii_uppercase() } else { c })
        .collect()
}

// ---- redirect URI matching (RFC 8252 §7.3, OAuth 2.1 §8.4.2) ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn loopback_matches_any_port(host in prop_oneof![Just("127.0.0.1"), Just("localhost"), Just("[::1]")],
                                 p in port_suffix(), path in path_and_query(), q in any::<u16>()) {
        let r = registered(&format!("http://{host}{p}{path}"));
        prop_assert!(r.is_loopback());
        prop_assert!(r.matches(&format!("http://{}:{}{}", host, q, path)), "see the expression above");
        prop_assert!(r.matches(&format!("http://{}{}", host, path)), "see the expression above");
        prop_assert!(r.matches(r.as_str()));
    }

    #[test]
    fn loopback_host_changes_never_match(p in port_suffix(), path in path_and_query(), q in any::<u16>(),
                                         other in prop_oneof![
                                             Just("localhost"), Just("[::1]"), Just("127.0.0.2"), Just("127.1"),
                                             Just("0x7f.0.0.1"), Just("127.0.0.01"), Just("LOCALHOST"),
                                             Just("[0:0:0:0:0:0:0:1]"), Just("2130706433"), Just("example.com"),
                                         ]) {
        let r = registered(&format!("http://127.0.0.1{p}{path}"));
        prop_assert!(!r.matches(&format!("http://{}:{}{}", other, q, path)), "see the expression above");
        prop_assert!(!r.matches(&format!("http://{}{}", other, path)), "see the expression above");
    }

    #[test]
    fn localhost_and_127_0_0_1_never_match_each_other(p in port_suffix(), path in path_and_query(),
                                                      q in port_suffix()) {
        prop_assert!(!registered(&format!("http://localhost{}{}", p, path)).matches(&format!("http://127.0.0.1{}{}", q, path)), "see the expression above");
        prop_assert!(!registered(&format!("http://127.0.0.1{}{}", p, path)).matches(&format!("http://localhost{}{}", q, path)), "see the expression above");
    }

    #[test]
    fn loopback_path_or_query_changes_never_match(host in prop_oneof![Just("127.0.0.1"), Just("localhost"), Just("[::1]")],
                                                  p in port_suffix(), path in path_and_query(),
                                                  other in path_and_query(), q in port_suffix()) {
        prop_assume!(path != other);
        let r = registered(&format!("http://{host}{p}{path}"));
        prop_assert!(!r.matches(&format!("http://{}{}{}", host, q, other)), "see the expression above");
    }

    #[test]
    fn loopback_never_matches_other_schemes_or_decorations(p in port_suffix(), path in path_and_query(),
                                                           q in port_suffix()) {
        let r = registered(&format!("http://127.0.0.1{p}{path}"));
        for requested in [
            format!("https://127.0.0.1{q}{path}"),
            format!("http://127.0.0.1{q}{path}#"),
            format!("http://127.0.0.1{q}{path}#x"),
            format!("http://u@127.0.0.1{q}{path}"),
            format!("http://@127.0.0.1{q}{path}"),
            format!("http://127.0.0.1{q}{path} "),
            format!("http://127.0.0.1:{path}"),
        ] {
            prop_assert!(!r.matches(&requested), "{} matched {:?}", r.as_str(), requested);
        }
    }

    #[test]
    fn https_registrations_match_only_themselves(host in domain(), p in port_suffix(), path in path_and_query(),
                                                 q in any::<u16>(), mask in prop::collection::vec(any::<bool>(), 0..40)) {
        let s = format!("https://{host}{p}{path}");
        let r = registered(&s);
        prop_assert!(!r.is_loopback());
        prop_assert!(r.matches(&s));
        let variants = [
            format!("https://{host}:{q}{path}"),
            format!("https://{host}:443{path}"),
            format!("http://{host}{p}{path}"),
            format!("https://{host}{p}{path}/"),
            format!("https://{host}{p}{path}?x"),
            format!("https://{host}.{p}{path}"),
            format!("{s}#"),
            mix_case(&s, &mask),
        ];
        for requested in variants {
            prop_assert_eq!(r.matches(&requested), requested == s, "{} vs {:?}", s, requested);
        }
    }

    #[test]
    fn https_matches_no_arbitrary_other_string(host in domain(), path in path_and_query(), other in "\\PC{0,40}") {
        let s = format!("https://{host}{path}");
        prop_assume!(other != s);
        prop_assert!(!registered(&s).matches(&other));
    }
}

// ---- resource canonicalisation (RFC 8707) ----

/// A registrable resource: https on any host, or http on a loopback one; optional port and path.
fn resource() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        domain().prop_map(|h| ("https", h)),
        prop_oneof![Just("localhost"), Just("127.0.0.1"), Just("[::1]")].prop_map(|h| ("http", h.to_owned())),
    ];
    (host, port_suffix(), prop_oneof![Just(String::new()), Just("/".to_owned()), path()])
        .prop_map(|((scheme, host), port, path)| format!("{scheme}://{host}{port}{path}"))
}

fn canonical(s: &str) -> String {
    ResourceUri::parse(s).unwrap_or_else(|e| panic!("{s:?} should canonicalise: {e}")).as_str().to_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn resource_canonical_form_is_idempotent(s in resource()) {
        let c = canonical(&s);
        prop_assert_eq!(canonical(&c), c.clone());
        prop_assert_eq!(ResourceUri::parse_requested(&s).map(|r| r.as_str().to_owned()), Ok(c.clone()));
        prop_assert_eq!(ResourceUri::parse_requested(&c).map(|r| r.as_str().to_owned()), Ok(c));
    }

    #[test]
    fn resource_ignores_scheme_and_host_case(s in resource(), mask in prop::collection::vec(any::<bool>(), 0..60)) {
        // Only the part before the path: path case is significant.
        let end = s[s.find("://").unwrap() + 3..].find('/').map_or(s.len(), |i| i + s.find("://").unwrap() + 3);
        let mixed = format!("{}{}", mix_case(&s[..end], &mask), &s[end..]);
        prop_assert_eq!(canonical(&mixed), canonical(&s));
    }

    #[test]
    fn resource_default_port_and_origin_slash_do_not_matter(host in domain(), path in prop_oneof![Just(String::new()), path()],
                                                             lo in prop_oneof![Just("localhost"), Just("127.0.0.1"), Just("[::1]")]) {
        prop_assert_eq!(canonical(&format!("https://{}:443{}", host, path)), canonical(&format!("https://{}{}", host, path)));
        prop_assert_eq!(canonical(&format!("http://{}:80{}", lo, path)), canonical(&format!("http://{}{}", lo, path)));
        prop_assert_eq!(canonical(&format!("https://{}", host)), canonical(&format!("https://{}/", host)));
        prop_assert_eq!(canonical(&format!("https://{}", host)), format!("https://{}", host));
        // A non-default port is kept.
        prop_assert_eq!(canonical(&format!("https://{}:8443{}", host, path)), format!("https://{}:8443{}", host, path));
    }

    #[test]
    fn resource_fragment_is_always_refused(s in resource(), frag in "[a-zA-Z0-9/?=&._~%:@!$'()*+,;-]{0,12}",
                                           query in prop_oneof![Just(String::new()), Just("?a=b".to_owned())]) {
        let with_fragment = format!("{s}{query}#{frag}");
        prop_assert_eq!(ResourceUri::parse(&with_fragment), Err(ResourceUriError::Fragment));
        prop_assert_eq!(ResourceUri::parse_requested(&with_fragment), Err(ResourceUriError::Fragment));
    }

    #[test]
    fn resource_any_string_with_a_hash_is_refused(a in "\\PC{0,30}", b in "\\PC{0,30}") {
        let s = format!("{a}#{b}");
        prop_assert!(ResourceUri::parse(&s).is_err());
        prop_assert!(ResourceUri::parse_requested(&s).is_err());
    }

    #[test]
    fn requested_resource_canonical_form_is_idempotent_on_any_string(s in "(https?://)?\\PC{0,40}") {
        if let Ok(r) = ResourceUri::parse_requested(&s) {
            prop_assert_eq!(ResourceUri::parse_requested(r.as_str()), Ok(r));
        }
        if let Ok(r) = ResourceUri::parse(&s) {
            prop_assert_eq!(ResourceUri::parse(r.as_str()), Ok(r));
        }
    }
}

// ---- scopes (RFC 6749 §3.3) ----

fn scope_token() -> impl Strategy<Value = String> {
    "[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,12}"
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scope_parse_print_round_trips(tokens in prop::collection::vec(scope_token(), 0..8),
                                     seps in prop::collection::vec(1usize..4, 8), lead in 0usize..3, trail in 0usize..3) {
        let mut s = " ".repeat(lead);
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                s.push_str(&" ".repeat(seps[i]));
            }
            s.push_str(t);
        }
        s.push_str(&" ".repeat(trail));
        let set = ScopeSet::parse(&s).unwrap();
        let expected: BTreeSet<&str> = tokens.iter().map(String::as_str).collect();
        prop_assert_eq!(set.iter().collect::<BTreeSet<_>>(), expected.clone());
        let printed = set.to_space_separated();
        prop_assert_eq!(printed.clone(), expected.into_iter().collect::<Vec<_>>().join(" "));
        prop_assert_eq!(ScopeSet::parse(&printed), Ok(set));
    }

    #[test]
    fn scope_any_accepted_string_round_trips(s in "[ -~\\t]{0,60}") {
        if let Ok(set) = ScopeSet::parse(&s) {
            prop_assert_eq!(ScopeSet::parse(&set.to_space_separated()), Ok(set));
        }
    }
}

// ---- reproducers of bugs found by fuzzing (fixed; kept as regression tests) ----

/// Found by `fuzz/` target `resource` (input `http://.%22`): the URL parser percent-decodes the
/// host, so the canonical form carried a raw `"` (or `{`, `}`, `` ` ``, `|`…), which is outside
/// RFC 3986, went into `aud`, and was refused when parsed again.
#[test]
fn resource_percent_encoded_host_character_is_idempotent() {
    for s in ["https://a%22b.example/mcp", "http://.%22"] {
        let first = ResourceUri::parse_requested(s);
        if let Ok(c) = &first {
            assert_eq!(ResourceUri::parse_requested(c.as_str()).as_ref(), Ok(c), "{s:?} -> {c:?}");
        }
    }
    if let Ok(c) = ResourceUri::parse("https://a%22b.example/mcp") {
        assert_eq!(ResourceUri::parse(c.as_str()).as_ref(), Ok(&c));
    }
}

/// Found by reading `cimd::validate_document` for the `cimd_document` target: `"jwks": null` and
/// `"jwks_uri": ""` counted as keys when negotiating, but the metadata treats both as absent, so
/// the client was stored with `private_key_jwt` and no keys (every assertion then failed with "the
/// client's document has no keys" instead of the document being refused up front).
#[test]
fn cimd_private_key_jwt_without_real_keys_is_refused() {
    use portcullis::clients::cimd::validate_document;
    use portcullis::oauth::client_metadata::TokenEndpointAuthMethod;

    const ID: &str = "https://app.example/client.json";
    for keys in [serde_json::json!({ "jwks": null }), serde_json::json!({ "jwks_uri": "" })] {
        let mut doc = serde_json::json!({
            "client_id": ID,
            "redirect_uris": ["http://localhost/cb"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        });
        doc.as_object_mut().unwrap().extend(keys.as_object().unwrap().clone());
        let body = serde_json::to_vec(&doc).unwrap();
        match validate_document(ID, &body) {
            Err(_) => {}
            Ok(d) => {
                let m = &d.metadata;
                assert!(
                    m.token_endpoint_auth_method != TokenEndpointAuthMethod::PrivateKeyJwt
                        || m.jwks.is_some()
                        || m.jwks_uri.is_some(),
                    "{doc} gave private_key_jwt without keys"
                );
            }
        }
    }
}
