//! RFC 8707 resource indicators: the canonical URI of an MCP server.
//!
//! Clients disagree on how they spell the same resource (the TS SDK sends
//! `https://h/` for `https://h`, Claude Code appends the configured URL's
//! query), so both registered and requested values go through one
//! canonicalisation and are compared as strings. The canonical string is also
//! what goes into `aud`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// Longer values are abuse, not configuration.
pub const MAX_LEN: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ResourceUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceUriError {
    #[error("resource is empty")]
    Empty,
    #[error("resource is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("resource contains the character {0:?}, which is not allowed in a URI")]
    InvalidCharacter(char),
    #[error("resource must be an absolute URI")]
    NotAbsolute,
    #[error("resource must be an http(s) URI, not {0:?}")]
    UnsupportedScheme(String),
    #[error("resource must use https (http is only allowed for 127.0.0.1, [::1] and localhost)")]
    HttpsRequired,
    #[error("resource must have a host")]
    MissingHost,
    #[error("resource must not contain a fragment ('#')")]
    Fragment,
    #[error(
        "resource must not contain a query: MCP clients derive `resource` from the server URL and a query breaks matching"
    )]
    Query,
    #[error("resource must not contain user information ('user@')")]
    Userinfo,
    #[error("resource is malformed: {0}")]
    Malformed(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Registration,
    Requested,
}

impl ResourceUri {
    /// For registering an MCP server (CLI / config): strict.
    pub fn parse(s: &str) -> Result<Self, ResourceUriError> {
        canonicalise(s, Mode::Registration)
    }

    /// For a `resource` parameter sent by a client at /authorize or /token:
    /// canonicalised for comparison with registered ones.
    ///
    /// Drops any query instead of refusing it (Claude Code sends
    /// `?utm_source=...`), and accepts http on any host because such a value
    /// simply matches nothing registered. Every error means `invalid_target`.
    pub fn parse_requested(s: &str) -> Result<Self, ResourceUriError> {
        canonicalise(s, Mode::Requested)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where the MCP server serves its protected-resource metadata (RFC 9728 §3.1: the well-known
    /// segment goes between the host and the path).
    pub fn metadata_url(&self) -> String {
        const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
        match url::Url::parse(&self.0) {
            Ok(u) => {
                let origin = u.origin().ascii_serialization();
                let path = u.path().trim_end_matches('/');
                format!("{origin}{WELL_KNOWN}{path}")
            }
            Err(_) => format!("{}{WELL_KNOWN}", self.0),
        }
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn canonicalise(s: &str, mode: Mode) -> Result<ResourceUri, ResourceUriError> {
    if s.is_empty() {
        return Err(ResourceUriError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(ResourceUriError::TooLong);
    }
    // URL parsers drop tabs and newlines silently; refuse anything outside
    // RFC 3986 so the parser never sees something other than what was sent.
    if let Some(c) = s.chars().find(|&c| !is_uri_char(c)) {
        return Err(ResourceUriError::InvalidCharacter(c));
    }
    if s.contains('#') {
        return Err(ResourceUriError::Fragment);
    }
    if !percent_encoding_ok(s) {
        return Err(ResourceUriError::Malformed("'%' must be followed by two hex digits".into()));
    }

    let (scheme, after) = s.split_once(':').ok_or(ResourceUriError::NotAbsolute)?;
    if scheme.is_empty() || scheme.contains(['/', '?']) {
        return Err(ResourceUriError::NotAbsolute);
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(ResourceUriError::UnsupportedScheme(scheme));
    }
    // The URL parser turns `https:h` and `https:///h` into `https://h/`; a
    // resource indicator has to spell its authority out.
    let hier = after.strip_prefix("//").ok_or(ResourceUriError::MissingHost)?;
    let authority = &hier[..hier.find(['/', '?']).unwrap_or(hier.len())];
    if authority.contains('@') {
        return Err(ResourceUriError::Userinfo);
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(ResourceUriError::MissingHost);
    }
    // A percent-encoded host decodes to characters a host cannot hold (`a%22b` becomes `a"b`),
    // and no MCP server is named that way.
    if authority.contains('%') {
        return Err(ResourceUriError::InvalidCharacter('%'));
    }

    let url = url::Url::parse(s).map_err(|e| ResourceUriError::Malformed(e.to_string()))?;
    let host = url.host_str().ok_or(ResourceUriError::MissingHost)?;
    if url.query().is_some() && mode == Mode::Registration {
        return Err(ResourceUriError::Query);
    }
    if scheme == "http" && mode == Mode::Registration && !is_loopback(&url) {
        return Err(ResourceUriError::HttpsRequired);
    }

    // `url` has already lower-cased the scheme and host and dropped a default port.
    let mut canonical = format!("{}://{host}", url.scheme());
    if let Some(port) = url.port() {
        canonical.push_str(&format!(":{port}"));
    }
    // Only a bare origin loses its slash: `/mcp` and `/mcp/` are different
    // resources. `url` resolves dot segments (RFC 3986 §6.2.2.3) and keeps the rest.
    if url.path() != "/" {
        canonical.push_str(url.path());
    }
    Ok(ResourceUri(canonical))
}

/// Exactly the three loopback spellings MCP and RFC 8252 name, not all of 127/8.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// The URL parser passes a stray `%` through, so two spellings of one
/// resource could otherwise survive canonicalisation.
fn percent_encoding_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .enumerate()
        .all(|(i, &c)| c != b'%' || b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
}

/// RFC 3986 unreserved, reserved and `%`.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_urls_insert_the_well_known_segment_before_the_path() {
        let url = |s: &str| ResourceUri::parse(s).unwrap().metadata_url();
        assert_eq!(
            url("https://mcp.example.com/mcp"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(url("https://mcp.example.com"), "https://mcp.example.com/.well-known/oauth-protected-resource");
        assert_eq!(url("http://127.0.0.1:9000/a/b"), "http://127.0.0.1:9000/.well-known/oauth-protected-resource/a/b");
    }

    fn reg(s: &str) -> Result<String, ResourceUriError> {
        ResourceUri::parse(s).map(|r| r.as_str().to_owned())
    }

    fn req(s: &str) -> Result<String, ResourceUriError> {
        ResourceUri::parse_requested(s).map(|r| r.as_str().to_owned())
    }

    #[test]
    fn canonicalises_case_default_port_and_origin_slash() {
        for s in [
            "HTTPS://MCP.Example.COM:443/",
            "https://mcp.example.com",
            "https://mcp.example.com/",
            "https://mcp.example.com:443",
        ] {
            assert_eq!(reg(s).as_deref(), Ok("https://mcp.example.com"), "{s}");
            assert_eq!(req(s).as_deref(), Ok("https://mcp.example.com"), "{s}");
        }
        assert_eq!(reg("http://localhost:80/").as_deref(), Ok("http://localhost"));
    }

    #[test]
    fn keeps_non_default_port_and_path_exactly() {
        assert_eq!(reg("https://h:8443/mcp").as_deref(), Ok("https://h:8443/mcp"));
        assert_eq!(reg("https://h/mcp").as_deref(), Ok("https://h/mcp"));
        assert_eq!(reg("https://h/mcp/").as_deref(), Ok("https://h/mcp/"));
        assert_eq!(reg("https://H/MCP").as_deref(), Ok("https://h/MCP"));
        assert_eq!(reg("https://h:80/mcp").as_deref(), Ok("https://h:80/mcp"));
        assert_ne!(reg("https://h/mcp"), reg("https://h/mcp/"));
        assert_eq!(req("https://h/a/../mcp").as_deref(), Ok("https://h/mcp"));
        assert_eq!(reg("https://h/MCP%7e").as_deref(), Ok("https://h/MCP%7e"));
    }

    #[test]
    fn registration_allows_http_only_on_loopback() {
        assert_eq!(reg("http://localhost:3000/mcp").as_deref(), Ok("http://localhost:3000/mcp"));
        assert_eq!(reg("http://127.0.0.1:3000/mcp").as_deref(), Ok("http://127.0.0.1:3000/mcp"));
        assert_eq!(reg("http://[::1]/mcp").as_deref(), Ok("http://[::1]/mcp"));
        assert_eq!(reg("http://LOCALHOST/mcp").as_deref(), Ok("http://localhost/mcp"));
        assert_eq!(reg("http://example.com/mcp"), Err(ResourceUriError::HttpsRequired));
        assert_eq!(reg("http://localhost.example.com/mcp"), Err(ResourceUriError::HttpsRequired));
        let msg = ResourceUriError::HttpsRequired.to_string();
        assert!(msg.contains("https"), "{msg}");
    }

    #[test]
    fn requested_http_elsewhere_is_canonicalised_not_refused() {
        assert_eq!(req("HTTP://Example.com:80/mcp").as_deref(), Ok("http://example.com/mcp"));
    }

    #[test]
    fn refuses_relative() {
        for s in ["/mcp", "mcp", "//h/mcp", "mcp.example.com/mcp", "/a:b"] {
            assert_eq!(reg(s), Err(ResourceUriError::NotAbsolute), "{s}");
            assert_eq!(req(s), Err(ResourceUriError::NotAbsolute), "{s}");
        }
        assert_eq!(reg(""), Err(ResourceUriError::Empty));
        assert_eq!(req(""), Err(ResourceUriError::Empty));
    }

    #[test]
    fn refuses_fragments_even_empty() {
        for s in ["https://h/mcp#x", "https://h/mcp#", "https://h/mcp?x=1#y"] {
            assert_eq!(reg(s), Err(ResourceUriError::Fragment), "{s}");
            assert_eq!(req(s), Err(ResourceUriError::Fragment), "{s}");
        }
    }

    #[test]
    fn query_refused_at_registration_dropped_when_requested() {
        assert_eq!(reg("https://h/mcp?x=1"), Err(ResourceUriError::Query));
        assert_eq!(reg("https://h/mcp?"), Err(ResourceUriError::Query));
        assert_eq!(req("https://h/mcp?x=1").as_deref(), Ok("https://h/mcp"));
        assert_eq!(req("https://mcp.sentry.dev/mcp?utm_source=plugin").as_deref(), Ok("https://mcp.sentry.dev/mcp"));
        assert_eq!(req("https://h/?a=b").as_deref(), Ok("https://h"));
        assert_eq!(req("https://h?a=b").as_deref(), Ok("https://h"));
        assert!(ResourceUriError::Query.to_string().contains("query"));
    }

    #[test]
    fn refuses_userinfo() {
        for s in ["https://u@h/mcp", "https://u:p@h/mcp", "https://@h/mcp"] {
            assert_eq!(reg(s), Err(ResourceUriError::Userinfo), "{s}");
            assert_eq!(req(s), Err(ResourceUriError::Userinfo), "{s}");
        }
    }

    #[test]
    fn refuses_other_schemes() {
        for (s, scheme) in [
            ("urn:example:mcp", "urn"),
            ("wss://h/mcp", "wss"),
            ("file:///mcp", "file"),
            ("javascript:alert(1)", "javascript"),
        ] {
            let e = || Err(ResourceUriError::UnsupportedScheme(scheme.into()));
            assert_eq!(reg(s), e(), "{s}");
            assert_eq!(req(s), e(), "{s}");
        }
    }

    #[test]
    fn refuses_missing_host() {
        for s in ["https:///mcp", "https:mcp.example.com", "https://", "https://:443/"] {
            assert_eq!(reg(s), Err(ResourceUriError::MissingHost), "{s}");
            assert_eq!(req(s), Err(ResourceUriError::MissingHost), "{s}");
        }
    }

    #[test]
    fn refuses_whitespace_and_non_uri_characters() {
        for (s, c) in [
            ("https://h/m\ncp", '\n'),
            ("https://h/mcp ", ' '),
            ("\thttps://h/mcp", '\t'),
            ("https://h\\evil/mcp", '\\'),
            ("https://h/mcp\u{7f}", '\u{7f}'),
        ] {
            assert_eq!(reg(s), Err(ResourceUriError::InvalidCharacter(c)), "{s:?}");
            assert_eq!(req(s), Err(ResourceUriError::InvalidCharacter(c)), "{s:?}");
        }
    }

    #[test]
    fn refuses_malformed_and_overlong() {
        assert!(matches!(reg("https://h:99999/mcp"), Err(ResourceUriError::Malformed(_))));
        assert!(matches!(reg("https://[::1/mcp"), Err(ResourceUriError::Malformed(_))));
        for s in ["https://h/%zz", "https://h/mcp%", "https://h/mcp%4"] {
            assert!(matches!(reg(s), Err(ResourceUriError::Malformed(_))), "{s}");
            assert!(matches!(req(s), Err(ResourceUriError::Malformed(_))), "{s}");
        }
        let long = format!("https://h/{}", "a".repeat(MAX_LEN));
        assert_eq!(reg(&long), Err(ResourceUriError::TooLong));
    }

    #[test]
    fn trailing_slash_variant_from_ts_sdk_matches_registration() {
        let registered = ResourceUri::parse("https://mcp.example.com").unwrap();
        let requested = ResourceUri::parse_requested("https://mcp.example.com/").unwrap();
        assert_eq!(registered, requested);
    }

    #[test]
    fn serializes_and_displays_canonical_string() {
        let r = ResourceUri::parse("HTTPS://H:443/").unwrap();
        assert_eq!(r.to_string(), "https://h");
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""https://h""#);
    }
}
