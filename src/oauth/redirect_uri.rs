//! Registered redirect URIs and the redirect_uri matching rule.
//!
//! A `RedirectUri` can only be built by [`RedirectUri::parse`], so every URI in
//! the domain has passed the registration rules (RFC 7591, OAuth 2.1 §2.3.1,
//! RFC 8252). Matching is a plain string comparison except for the loopback
//! any-port rule (RFC 8252 §7.3, OAuth 2.1 §8.4.2), done on the raw strings
//! because URL libraries normalise (`http://localhost` becomes
//! `http://localhost/`) and that would widen what matches.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longer URIs are abuse, not clients; also bounds what we store and render.
pub const MAX_LEN: usize = 2000;

/// The only hosts for which plain `http` is acceptable (RFC 8252 §7.3, §8.3).
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// Schemes that execute code, read local data or are not app callbacks. Cursor,
/// VS Code and other native apps use their own schemes, so an allow-list of
/// private-use schemes is impossible; refusing the known-bad ones is the
/// compromise (see the requirements' "redirect URI schemes" pitfall).
const DENIED_SCHEMES: [&str; 13] = [
    "javascript",
    "data",
    "file",
    "vbscript",
    "about",
    "blob",
    "filesystem",
    "ftp",
    "ws",
    "wss",
    "mailto",
    "tel",
    "sms",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectUri {
    original: String,
    kind: Kind,
    host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Https,
    /// Raw host and everything after the authority, kept for the any-port rule.
    Loopback {
        host: String,
        path_and_query: String,
    },
    PrivateUse,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectUriError {
    #[error("redirect URI is empty")]
    Empty,
    #[error("redirect URI is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("redirect URI contains whitespace or control characters")]
    ControlOrWhitespace,
    #[error("redirect URI contains the character {0:?}, which is not allowed in a URI")]
    InvalidCharacter(char),
    #[error("redirect URI must not contain a fragment ('#')")]
    Fragment,
    #[error("redirect URI must not contain a wildcard ('*')")]
    Wildcard,
    #[error("redirect URI must be an absolute URI with a scheme")]
    NotAbsolute,
    #[error("redirect URI scheme is not syntactically valid")]
    InvalidScheme,
    #[error("redirect URI scheme {0:?} is not allowed")]
    ForbiddenScheme(String),
    #[error("redirect URI must not contain user information ('user@')")]
    Userinfo,
    #[error("https redirect URI must have a host")]
    MissingHost,
    #[error("http redirect URIs are only allowed for loopback hosts (127.0.0.1, [::1], localhost)")]
    InsecureHttp,
    #[error("redirect URI has an invalid port")]
    InvalidPort,
    #[error("redirect URI is malformed: {0}")]
    Malformed(String),
}

impl RedirectUri {
    /// Validates a redirect URI at registration (RFC 7591 / OAuth 2.1 §2.3.1, RFC 8252).
    pub fn parse(s: &str) -> Result<Self, RedirectUriError> {
        check_size_and_controls(s)?;
        let raw = split_raw(s)?;
        // Before the character checks, so `data:text/html,<script>` is refused
        // for its scheme rather than for a `<`.
        let scheme = raw.scheme.to_ascii_lowercase();
        if DENIED_SCHEMES.contains(&scheme.as_str()) {
            return Err(RedirectUriError::ForbiddenScheme(scheme));
        }
        check_uri_characters(s)?;
        // Checked on the raw string: `http://@127.0.0.1/` has an empty userinfo
        // that URL libraries silently drop.
        if raw.authority.is_some_and(|a| a.contains('@')) {
            return Err(RedirectUriError::Userinfo);
        }
        // The URL parser catches what the raw checks do not (bad IPv6 literals,
        // out-of-range ports, forbidden host code points).
        let url = url::Url::parse(s).map_err(|e| RedirectUriError::Malformed(e.to_string()))?;

        match scheme.as_str() {
            "https" => {
                // `https:/cb` is "fixed" to `https://cb/` by the URL parser; insist on a real authority.
                let authority = raw.authority.ok_or(RedirectUriError::MissingHost)?;
                let (host, port) = split_host_port(authority)?;
                if host.is_empty() {
                    return Err(RedirectUriError::MissingHost);
                }
                check_port(port)?;
                Ok(Self { original: s.to_owned(), kind: Kind::Https, host: url.host_str().map(str::to_owned) })
            }
            "http" => {
                let authority = raw.authority.ok_or(RedirectUriError::InsecureHttp)?;
                let (host, port) = split_host_port(authority)?;
                if !LOOPBACK_HOSTS.contains(&host) {
                    return Err(RedirectUriError::InsecureHttp);
                }
                check_port(port)?;
                Ok(Self {
                    original: s.to_owned(),
                    kind: Kind::Loopback { host: host.to_owned(), path_and_query: raw.rest.to_owned() },
                    host: Some(host.to_owned()),
                })
            }
            _ => Ok(Self {
                original: s.to_owned(),
                kind: Kind::PrivateUse,
                host: url.host_str().filter(|h| !h.is_empty()).map(str::to_owned),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// What the consent page shows so the user can tell where the code goes.
    /// `None` for private-use URIs without an authority (`com.example.app:/cb`).
    pub fn host(&self) -> Option<String> {
        self.host.clone()
    }

    pub fn is_loopback(&self) -> bool {
        matches!(self.kind, Kind::Loopback { .. })
    }

    /// A native-app scheme such as `cursor://`; used to default `application_type`.
    pub fn is_private_use(&self) -> bool {
        matches!(self.kind, Kind::PrivateUse)
    }

    /// Does a redirect_uri sent in a request match this registered one?
    ///
    /// Exact string comparison, except that a loopback registration matches any
    /// port because native apps bind an ephemeral one (Claude Code registers
    /// `http://localhost/callback` and sends `http://localhost:58135/callback`).
    pub fn matches(&self, requested: &str) -> bool {
        if requested == self.original {
            return true;
        }
        let Kind::Loopback { host, path_and_query } = &self.kind else {
            return false;
        };
        // Parsing refuses fragments, userinfo and non-loopback http for us.
        match Self::parse(requested) {
            Ok(Self { kind: Kind::Loopback { host: req_host, path_and_query: req_rest }, .. }) => {
                req_host == *host && req_rest == *path_and_query
            }
            _ => false,
        }
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl Serialize for RedirectUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.original)
    }
}

impl<'de> Deserialize<'de> for RedirectUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

struct RawParts<'a> {
    scheme: &'a str,
    authority: Option<&'a str>,
    /// Path and query, exactly as written.
    rest: &'a str,
}

fn check_size_and_controls(s: &str) -> Result<(), RedirectUriError> {
    if s.is_empty() {
        return Err(RedirectUriError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(RedirectUriError::TooLong);
    }
    // URL parsers strip tabs and newlines silently, so the registered string
    // and what the parser saw could differ; refuse instead.
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RedirectUriError::ControlOrWhitespace);
    }
    Ok(())
}

fn check_uri_characters(s: &str) -> Result<(), RedirectUriError> {
    if s.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if s.contains('*') {
        return Err(RedirectUriError::Wildcard);
    }
    // Only RFC 3986 characters: a backslash, for one, is a path separator to
    // browsers but not to us, which is how parser-differential redirects start.
    if let Some(c) = s.chars().find(|&c| !is_uri_char(c)) {
        return Err(RedirectUriError::InvalidCharacter(c));
    }
    let b = s.as_bytes();
    let percent_ok = b
        .iter()
        .enumerate()
        .all(|(i, &c)| c != b'%' || b.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
    if !percent_ok {
        return Err(RedirectUriError::Malformed("'%' must be followed by two hex digits".into()));
    }
    Ok(())
}

/// RFC 3986 unreserved, reserved and `%`.
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

fn split_raw(s: &str) -> Result<RawParts<'_>, RedirectUriError> {
    let (scheme, after) = s.split_once(':').ok_or(RedirectUriError::NotAbsolute)?;
    if scheme.contains(['/', '?', '#']) {
        return Err(RedirectUriError::NotAbsolute);
    }
    if !is_valid_scheme(scheme) {
        return Err(RedirectUriError::InvalidScheme);
    }
    Ok(match after.strip_prefix("//") {
        Some(hier) => {
            let end = hier.find(['/', '?', '#']).unwrap_or(hier.len());
            let (authority, rest) = hier.split_at(end);
            RawParts { scheme, authority: Some(authority), rest }
        }
        None => RawParts { scheme, authority: None, rest: after },
    })
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), RedirectUriError> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or_else(|| RedirectUriError::Malformed("unterminated IPv6 literal".into()))?;
        let (host, after) = authority.split_at(end + 1);
        if after.is_empty() {
            return Ok((host, None));
        }
        let port = after.strip_prefix(':').ok_or(RedirectUriError::InvalidPort)?;
        return Ok((host, Some(port)));
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// An empty port (`http://127.0.0.1:/cb`) is legal RFC 3986 but no client sends one.
fn check_port(port: Option<&str>) -> Result<(), RedirectUriError> {
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => Err(RedirectUriError::InvalidPort),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> RedirectUri {
        RedirectUri::parse(s).unwrap_or_else(|e| panic!("{s} should parse: {e}"))
    }

    fn err(s: &str) -> RedirectUriError {
        match RedirectUri::parse(s) {
            Ok(_) => panic!("{s:?} should be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_https() {
        let r = ok("https://claude.ai/api/mcp/auth_callback");
        assert_eq!(r.as_str(), "https://claude.ai/api/mcp/auth_callback");
        assert_eq!(r.host().as_deref(), Some("claude.ai"));
        assert!(!r.is_loopback());
        assert!(!r.is_private_use());
        ok("https://app.example:8443/cb?tenant=a");
        ok("https://[2001:db8::1]/cb");
    }

    #[test]
    fn as_str_is_never_normalised() {
        assert_eq!(ok("HTTPS://App.Example").as_str(), "HTTPS://App.Example");
        assert_eq!(ok("http://localhost").as_str(), "http://localhost");
    }

    #[test]
    fn accepts_loopback_http() {
        for s in [
            "http://127.0.0.1/callback",
            "http://127.0.0.1:33418/",
            "http://[::1]/cb",
            "http://[::1]:8080/cb",
            "http://localhost/callback",
            "http://localhost:8787/callback",
            "http://localhost",
        ] {
            assert!(ok(s).is_loopback(), "{s}");
        }
        assert_eq!(ok("http://127.0.0.1:1/").host().as_deref(), Some("127.0.0.1"));
        assert_eq!(ok("http://[::1]:1/").host().as_deref(), Some("[::1]"));
    }

    #[test]
    fn refuses_http_on_other_hosts() {
        for s in [
            "http://example.com/cb",
            "http://127.0.0.2/cb",
            "http://localhost.example.com/cb",
            "http://127.0.0.1.nip.io/cb",
            "http:/cb",
            "http:cb",
            // Hosts are compared exactly, as the any-port rule compares them raw.
            "http://LOCALHOST/cb",
        ] {
            assert_eq!(err(s), RedirectUriError::InsecureHttp, "{s}");
        }
    }

    #[test]
    fn accepts_private_use_schemes() {
        let cursor = ok("cursor://anysphere.cursor-mcp/oauth/callback");
        assert!(cursor.is_private_use());
        assert!(!cursor.is_loopback());
        assert_eq!(cursor.host().as_deref(), Some("anysphere.cursor-mcp"));
        ok("vscode://vscode.github-authentication/did-authenticate");
        let reverse_dns = ok("com.example.app:/cb");
        assert_eq!(reverse_dns.host(), None);
        ok("my-app+x.v2://cb");
    }

    #[test]
    fn refuses_denied_schemes_case_insensitively() {
        for (s, scheme) in [
            ("javascript:alert(1)", "javascript"),
            ("JAVASCRIPT:alert(1)", "javascript"),
            ("JavaScript://x/%0aalert(1)", "javascript"),
            ("data:text/html,hello", "data"),
            ("data:text/html,<script>alert(1)</script>", "data"),
            ("file:///etc/passwd", "file"),
            ("vbscript:msgbox", "vbscript"),
            ("about:blank", "about"),
            ("blob:https://a.example/uuid", "blob"),
            ("filesystem:https://a.example/x", "filesystem"),
            ("ftp://a.example/cb", "ftp"),
            ("ws://127.0.0.1/cb", "ws"),
            ("wss://a.example/cb", "wss"),
            ("mailto:a@b.example", "mailto"),
            ("tel:123", "tel"),
            ("sms:123", "sms"),
        ] {
            assert_eq!(err(s), RedirectUriError::ForbiddenScheme(scheme.into()), "{s}");
        }
    }

    #[test]
    fn refuses_fragments() {
        assert_eq!(err("https://example.com/cb#x"), RedirectUriError::Fragment);
        assert_eq!(err("https://example.com/cb#"), RedirectUriError::Fragment);
        assert_eq!(err("cursor://a/cb#x"), RedirectUriError::Fragment);
    }

    #[test]
    fn refuses_wildcards() {
        assert_eq!(err("https://*.example.com/cb"), RedirectUriError::Wildcard);
        assert_eq!(err("https://example.com/*"), RedirectUriError::Wildcard);
        assert_eq!(err("http://127.0.0.1:*/cb"), RedirectUriError::Wildcard);
    }

    #[test]
    fn refuses_userinfo() {
        assert_eq!(err("https://user@example.com/cb"), RedirectUriError::Userinfo);
        assert_eq!(err("https://u:p@example.com/cb"), RedirectUriError::Userinfo);
        assert_eq!(err("http://@127.0.0.1/cb"), RedirectUriError::Userinfo);
        assert_eq!(err("cursor://x@y/cb"), RedirectUriError::Userinfo);
    }

    #[test]
    fn refuses_whitespace_and_control_characters() {
        for s in [
            "https://example.com/cb\r\nSet-Cookie:x",
            "https://example.com/cb\n",
            " https://example.com/cb",
            "https://example.com/c b",
            "https://exa\tmple.com/cb",
            "https://example.com/cb\0",
            "https://example.com/cb\u{85}",
        ] {
            assert_eq!(err(s), RedirectUriError::ControlOrWhitespace, "{s:?}");
        }
    }

    #[test]
    fn refuses_characters_outside_rfc3986() {
        assert_eq!(err("https://good.example\\.evil.example/cb"), RedirectUriError::InvalidCharacter('\\'));
        assert_eq!(err("https://example.com/<script>"), RedirectUriError::InvalidCharacter('<'));
        assert_eq!(err("https://exämple.com/cb"), RedirectUriError::InvalidCharacter('ä'));
    }

    #[test]
    fn refuses_relative_and_schemeless() {
        assert_eq!(err("/cb"), RedirectUriError::NotAbsolute);
        assert_eq!(err("cb"), RedirectUriError::NotAbsolute);
        assert_eq!(err("//example.com/cb"), RedirectUriError::NotAbsolute);
        assert_eq!(err("/a:b"), RedirectUriError::NotAbsolute);
        assert_eq!(err(""), RedirectUriError::Empty);
    }

    #[test]
    fn refuses_invalid_scheme_syntax() {
        assert_eq!(err(":cb"), RedirectUriError::InvalidScheme);
        assert_eq!(err("1app://cb"), RedirectUriError::InvalidScheme);
        assert_eq!(err("my_app://cb"), RedirectUriError::InvalidScheme);
    }

    #[test]
    fn refuses_https_without_host_and_bad_ports() {
        assert_eq!(err("https:///cb"), RedirectUriError::MissingHost);
        assert_eq!(err("https:/cb"), RedirectUriError::MissingHost);
        assert_eq!(err("http://127.0.0.1:/cb"), RedirectUriError::InvalidPort);
        assert!(matches!(err("http://[::1]x/cb"), RedirectUriError::Malformed(_) | RedirectUriError::InvalidPort));
        assert!(matches!(err("http://127.0.0.1:99999/cb"), RedirectUriError::Malformed(_)));
        assert!(matches!(err("https://a.example/%zz"), RedirectUriError::Malformed(_)));
        assert!(matches!(err("https://[::1/cb"), RedirectUriError::Malformed(_)));
    }

    #[test]
    fn refuses_overlong() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_LEN));
        assert_eq!(err(&long), RedirectUriError::TooLong);
        let exact = format!("https://example.com/{}", "a".repeat(MAX_LEN - 20));
        assert_eq!(exact.len(), MAX_LEN);
        ok(&exact);
    }

    #[test]
    fn errors_display_one_line() {
        for e in [err("http://example.com/cb"), err("javascript:alert(1)"), err("https://a/\r\n")] {
            let msg = e.to_string();
            assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
        }
    }

    #[test]
    fn claude_code_loopback_registrations_match_any_port() {
        let localhost = ok("http://localhost/callback");
        let ipv4 = ok("http://127.0.0.1/callback");
        assert!(localhost.matches("http://localhost:58135/callback"));
        assert!(localhost.matches("http://localhost/callback"));
        assert!(ipv4.matches("http://127.0.0.1:58135/callback"));
        assert!(!localhost.matches("http://127.0.0.1:58135/callback"));
    }

    #[test]
    fn vscode_fixed_port_registration_matches_any_port() {
        let r = ok("http://127.0.0.1:33418/");
        assert!(r.matches("http://127.0.0.1:33418/"));
        assert!(r.matches("http://127.0.0.1:40001/"));
        assert!(r.matches("http://127.0.0.1/"));
        assert!(!r.matches("http://127.0.0.1:40001"));
    }

    #[test]
    fn ipv6_loopback_matches_any_port() {
        let r = ok("http://[::1]/cb");
        assert!(r.matches("http://[::1]:5000/cb"));
        assert!(!r.matches("http://127.0.0.1:5000/cb"));
        assert!(!r.matches("http://[0:0:0:0:0:0:0:1]:5000/cb"));
    }

    #[test]
    fn loopback_needs_identical_host_path_query_and_plain_http() {
        let r = ok("http://127.0.0.1/callback");
        for requested in [
            "http://localhost:5/callback",
            "http://127.0.0.1:5/callback/",
            "http://127.0.0.1:5/callback?x=1",
            "http://127.0.0.1:5/Callback",
            "https://127.0.0.1:5/callback",
            "http://127.0.0.1:5/callback#f",
            "http://127.0.0.1:5/callback#",
            "http://user@127.0.0.1:5/callback",
            "http://127.0.0.1:5/callback\n",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:5/%63allback",
            "http://127.0.0.1:5/./callback",
            "",
        ] {
            assert!(!r.matches(requested), "{requested:?}");
        }
        let with_query = ok("http://127.0.0.1/cb?x=1");
        assert!(with_query.matches("http://127.0.0.1:9/cb?x=1"));
        assert!(!with_query.matches("http://127.0.0.1:9/cb?x=2"));
        assert!(!with_query.matches("http://127.0.0.1:9/cb"));
    }

    #[test]
    fn loopback_without_path_is_compared_raw() {
        let r = ok("http://localhost");
        assert!(r.matches("http://localhost:3000"));
        assert!(!r.matches("http://localhost:3000/"));
    }

    #[test]
    fn https_matches_exactly_only() {
        let r = ok("https://app.example/cb");
        assert!(r.matches("https://app.example/cb"));
        assert!(!r.matches("https://app.example:443/cb"));
        assert!(!r.matches("https://APP.example/cb"));
        assert!(!r.matches("https://app.example/cb/"));
        assert!(!r.matches("https://app.example/cb?x=1"));
        assert!(!r.matches("http://app.example/cb"));
        let loopback_https = ok("https://127.0.0.1/cb");
        assert!(!loopback_https.matches("https://127.0.0.1:8443/cb"));
    }

    #[test]
    fn private_use_matches_exactly_only() {
        let r = ok("cursor://anysphere.cursor-mcp/oauth/callback");
        assert!(r.matches("cursor://anysphere.cursor-mcp/oauth/callback"));
        assert!(!r.matches("cursor://anysphere.cursor-mcp:1/oauth/callback"));
        assert!(!r.matches("CURSOR://anysphere.cursor-mcp/oauth/callback"));
        assert!(!r.matches("cursor://anysphere.cursor-mcp/oauth/callback/"));
    }

    #[test]
    fn serde_is_a_plain_string_and_validates() {
        let r = ok("http://127.0.0.1:33418/");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, r#""http://127.0.0.1:33418/""#);
        let back: RedirectUri = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<RedirectUri>(r#""http://example.com/cb""#).is_err());
        assert!(serde_json::from_str::<RedirectUri>("42").is_err());
    }
}
