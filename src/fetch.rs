//! The hardened outbound HTTP fetcher: the only way Portcullis fetches a URL that came from a client
//! (Client ID Metadata Documents, `jwks_uri`, `logo_uri`).
//!
//! Server-side request forgery is the risk, so every fetch:
//!
//! - takes only `https` URLs with a host and no userinfo;
//! - resolves the host once, refuses the fetch if *any* address is special-use ([`is_special_use`]),
//!   and connects only to the addresses it checked (a custom resolver does resolution and check
//!   together, so DNS rebinding between check and connect is impossible; IP-literal hosts, which
//!   never reach the resolver, are checked before the request);
//! - follows no redirects, sends no cookies, uses no proxy, keeps no pooled connections;
//! - caps the body (refusing early on a large `Content-Length`, then counting while streaming) and
//!   bounds the whole exchange (resolution, connect, headers, body) by one total timeout;
//! - accepts only `200` with the expected media type.
//!
//! Bodies are never logged; failures are logged at debug with the host and the reason.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use time::OffsetDateTime;

/// The `User-Agent` of every outbound fetch.
pub const USER_AGENT: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// The body cap of [`Fetcher::get_image`], whatever [`FetchConfig::max_bytes`] says.
pub const IMAGE_MAX_BYTES: usize = 64 * 1024;

/// Image media types [`Fetcher::get_image`] accepts. SVG is deliberately absent: it can carry script.
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// RFC 9111 §1.2.2: delta-seconds beyond 2^31 are taken as 2^31.
const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// How the fetcher behaves; built once at start-up.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// TEST ONLY, unsafe for production: also trust the CA certificate(s) in this PEM file.
    pub test_ca_file: Option<PathBuf>,
    /// TEST ONLY, unsafe for production (CIMD forbids it): allow loopback addresses (127.0.0.0/8,
    /// ::1). Every other special-use range stays forbidden.
    pub test_allow_loopback: bool,
    /// The body cap of [`Fetcher::get_json`], in bytes (CIMD recommends 5 KB).
    pub max_bytes: usize,
    /// The total time allowed for one fetch: resolution, connect, TLS, headers and body.
    pub timeout: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            test_ca_file: None,
            test_allow_loopback: false,
            max_bytes: 5 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a fetch was refused or failed. `Display` is a short sentence; see [`FetchError::public_message`]
/// for text meant for people outside the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("only https URLs are fetched")]
    NotHttps,
    #[error("the URL is not acceptable: {0}")]
    InvalidUrl(String),
    #[error("the host resolves to a forbidden address ({0})")]
    ForbiddenAddress(IpAddr),
    #[error("the host name could not be resolved: {0}")]
    Resolve(String),
    #[error("the host name resolves to no address")]
    NoAddress,
    #[error("the connection failed: {0}")]
    Connect(String),
    #[error("the fetch took too long")]
    Timeout,
    #[error("the server answered with a redirect (HTTP {0}), which is not followed")]
    Redirect(u16),
    #[error("the server answered HTTP {0} instead of 200")]
    Status(u16),
    #[error("the response is larger than allowed")]
    TooLarge,
    #[error("the response has an unacceptable content type ({0:?})")]
    ContentType(String),
    #[error("the response body could not be read: {0}")]
    Body(String),
    #[error("the fetcher is misconfigured: {0}")]
    Config(String),
}

impl FetchError {
    /// A short, stable name for logs, metrics and audit events.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::NotHttps => "not_https",
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::ForbiddenAddress(_) => "forbidden_address",
            FetchError::Resolve(_) => "resolve",
            FetchError::NoAddress => "no_address",
            FetchError::Connect(_) => "connect",
            FetchError::Timeout => "timeout",
            FetchError::Redirect(_) => "redirect",
            FetchError::Status(_) => "status",
            FetchError::TooLarge => "too_large",
            FetchError::ContentType(_) => "content_type",
            FetchError::Body(_) => "body",
            FetchError::Config(_) => "config",
        }
    }

    /// A sentence safe to show to the person or client that supplied the URL: it says what kind
    /// of failure happened without echoing resolver, socket or TLS details (which describe the
    /// server's own network). Log the full `Display` server-side instead.
    pub fn public_message(&self) -> String {
        match self {
            FetchError::NotHttps => "Only https URLs can be fetched.".into(),
            FetchError::InvalidUrl(_) => "The URL is not acceptable.".into(),
            FetchError::ForbiddenAddress(_) => "The URL points to an address that is never fetched.".into(),
            FetchError::Resolve(_) | FetchError::NoAddress => "The URL's host name could not be resolved.".into(),
            FetchError::Connect(_) => "The URL's server could not be reached securely.".into(),
            FetchError::Timeout => "The URL's server took too long to answer.".into(),
            FetchError::Redirect(code) => {
                format!("The URL answered with a redirect (HTTP {code}); redirects are not followed.")
            }
            FetchError::Status(code) => format!("The URL answered HTTP {code} instead of 200."),
            FetchError::TooLarge => "The document at the URL is too large.".into(),
            FetchError::ContentType(_) => "The document at the URL has the wrong content type.".into(),
            FetchError::Body(_) => "The document at the URL could not be read.".into(),
            FetchError::Config(_) => "The server could not fetch the URL.".into(),
        }
    }
}

/// A successful fetch.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// The media type, lower-cased, without parameters (`application/json`, `image/png`).
    pub content_type: String,
    /// Remaining freshness from `Cache-Control: max-age` (s-maxage ignored; `no-store`/`no-cache`
    /// → `Some(0)`) or else `Expires` (relative to `Date` when present; an invalid date →
    /// `Some(0)`), minus `Age`; `None` when the response says nothing. Unbounded: the caller
    /// clamps it to its own limits.
    pub max_age: Option<Duration>,
}

/// The outbound fetcher. Cheap to clone; build it once at start-up.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    allow_loopback: bool,
    max_bytes: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("allow_loopback", &self.inner.allow_loopback)
            .field("max_bytes", &self.inner.max_bytes)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Want {
    Json,
    Image,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        // reqwest built with `rustls-no-provider` panics without a process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();

        if config.max_bytes == 0 {
            return Err(FetchError::Config("max_bytes must be positive".into()));
        }
        if config.timeout.is_zero() {
            return Err(FetchError::Config("timeout must be positive".into()));
        }

        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(0)
            .dns_resolver(GuardedResolver { allow_loopback: config.test_allow_loopback });

        if let Some(path) = &config.test_ca_file {
            tracing::warn!(path = %path.display(), "outbound fetches trust an extra test CA: unsafe for production");
            let pem = std::fs::read(path)
                .map_err(|e| FetchError::Config(format!("cannot read test CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| FetchError::Config(format!("bad test CA file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(FetchError::Config(format!("no certificate in test CA file {}", path.display())));
            }
            builder = builder.tls_certs_merge(certs);
        }
        if config.test_allow_loopback {
            tracing::warn!("outbound fetches may reach loopback addresses: unsafe for production");
        }

        let client = builder.build().map_err(|e| FetchError::Config(error_chain(&e)))?;
        Ok(Fetcher {
            inner: Arc::new(Inner {
                client,
                allow_loopback: config.test_allow_loopback,
                max_bytes: config.max_bytes,
                timeout: config.timeout,
            }),
        })
    }

    /// GET with `Accept: application/json`; only `200` with `application/json` or
    /// `application/<x>+json` (parameters such as charset allowed), at most `max_bytes`.
    pub async fn get_json(&self, url: &str) -> Result<Fetched, FetchError> {
        self.fetch(url, Want::Json).await
    }

    /// GET an image (for `logo_uri`): only `200` with one of [`IMAGE_TYPES`], at most
    /// [`IMAGE_MAX_BYTES`].
    pub async fn get_image(&self, url: &str) -> Result<Fetched, FetchError> {
        self.fetch(url, Want::Image).await
    }

    async fn fetch(&self, url: &str, want: Want) -> Result<Fetched, FetchError> {
        let parsed = match parse_url(url) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(reason = %e, "outbound fetch refused");
                return Err(e);
            }
        };
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let result = tokio::time::timeout(self.inner.timeout, self.fetch_parsed(parsed, want))
            .await
            .unwrap_or(Err(FetchError::Timeout));
        match &result {
            Ok(fetched) => tracing::debug!(
                host,
                bytes = fetched.body.len(),
                content_type = fetched.content_type,
                "outbound fetch succeeded"
            ),
            Err(e) => tracing::debug!(host, kind = e.kind(), reason = %e, "outbound fetch failed"),
        }
        result
    }

    async fn fetch_parsed(&self, url: url::Url, want: Want) -> Result<Fetched, FetchError> {
        // The resolver never sees IP literals: check them here.
        match url.host() {
            Some(url::Host::Ipv4(ip)) => check_address(IpAddr::V4(ip), self.inner.allow_loopback)?,
            Some(url::Host::Ipv6(ip)) => check_address(IpAddr::V6(ip), self.inner.allow_loopback)?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(FetchError::InvalidUrl("no host".into())),
        }

        let (accept, cap) = match want {
            Want::Json => ("application/json", self.inner.max_bytes),
            Want::Image => ("image/png, image/jpeg, image/gif, image/webp", IMAGE_MAX_BYTES),
        };
        let mut response =
            self.inner.client.get(url).header(header::ACCEPT, accept).send().await.map_err(|e| map_send_error(&e))?;

        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK {
            return Err(FetchError::Status(status.as_u16()));
        }

        let content_type = media_type(response.headers());
        let acceptable = match want {
            Want::Json => is_json_media_type(&content_type),
            Want::Image => IMAGE_TYPES.contains(&content_type.as_str()),
        };
        if !acceptable {
            return Err(FetchError::ContentType(content_type));
        }

        if response.content_length().is_some_and(|len| len > cap as u64) {
            return Err(FetchError::TooLarge);
        }

        let max_age = freshness(response.headers(), OffsetDateTime::now_utc());

        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| map_body_error(&e))? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }

        Ok(Fetched { body, content_type, max_age })
    }
}

/// Parses and vets a URL: `https`, a host, no userinfo.
fn parse_url(raw: &str) -> Result<url::Url, FetchError> {
    let url = url::Url::parse(raw).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(FetchError::NotHttps);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::InvalidUrl("userinfo is not allowed".into()));
    }
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(url),
        _ => Err(FetchError::InvalidUrl("no host".into())),
    }
}

fn check_address(ip: IpAddr, allow_loopback: bool) -> Result<(), FetchError> {
    if allow_loopback && ip.is_loopback() {
        return Ok(());
    }
    if is_special_use(ip) {
        return Err(FetchError::ForbiddenAddress(ip));
    }
    Ok(())
}

/// Resolves a name once and returns exactly the addresses it checked, or refuses them all.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // `?` boxes the FetchError itself, so callers can find it again by downcasting.
            let addrs = resolve_checked(&host, allow_loopback).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

async fn resolve_checked(host: &str, allow_loopback: bool) -> Result<Vec<SocketAddr>, FetchError> {
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, 0)).await.map_err(|e| FetchError::Resolve(e.to_string()))?.collect();
    if addrs.is_empty() {
        return Err(FetchError::NoAddress);
    }
    // A name with one forbidden address is hostile: refuse it, don't filter.
    for addr in &addrs {
        check_address(addr.ip(), allow_loopback)?;
    }
    Ok(addrs)
}

/// The resolver's own refusal, if it is somewhere in the error's causes.
fn fetch_error_in(e: &(dyn StdError + 'static)) -> Option<FetchError> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(found) = err.downcast_ref::<FetchError>() {
            return Some(found.clone());
        }
        cause = err.source();
    }
    None
}

/// The causes of a reqwest error, without the URL reqwest puts in the outermost message.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cause = e.source();
    while let Some(err) = cause {
        parts.push(err.to_string());
        cause = err.source();
    }
    if parts.is_empty() {
        let mut top = e.to_string();
        if let Some(url) = e.url() {
            top = top.replace(url.as_str(), "…");
        }
        parts.push(top);
    }
    parts.join(": ")
}

fn map_send_error(e: &reqwest::Error) -> FetchError {
    if let Some(found) = fetch_error_in(e) {
        return found;
    }
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    FetchError::Connect(error_chain(e))
}

fn map_body_error(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    FetchError::Body(error_chain(e))
}

/// The `Content-Type` without parameters, lower-cased; empty when absent or unreadable.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `application/json` or `application/<x>+json` (the input already lower-cased, no parameters).
fn is_json_media_type(media_type: &str) -> bool {
    if media_type == "application/json" {
        return true;
    }
    media_type.strip_prefix("application/").and_then(|sub| sub.strip_suffix("+json")).is_some_and(|prefix| {
        !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    })
}

/// Remaining freshness per RFC 9111 §4.2.1, see [`Fetched::max_age`].
fn freshness(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let lifetime = cache_control_max_age(headers).or_else(|| expires_lifetime(headers, now))?;
    let age = headers.get(header::AGE).and_then(|v| v.to_str().ok()).and_then(parse_delta_seconds).unwrap_or(0);
    Some(Duration::from_secs(lifetime.saturating_sub(age)))
}

/// `Some(0)` for `no-store`/`no-cache` or an invalid `max-age`; the smallest `max-age` otherwise.
fn cache_control_max_age(headers: &HeaderMap) -> Option<u64> {
    let mut max_age: Option<u64> = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return Some(0);
        };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(0);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let seconds = arg.and_then(parse_delta_seconds).unwrap_or(0);
                max_age = Some(max_age.map_or(seconds, |m| m.min(seconds)));
            }
        }
    }
    max_age
}

fn parse_delta_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only overflow can fail, and an overflow is "very large".
    Some(s.parse::<u64>().unwrap_or(MAX_DELTA_SECONDS).min(MAX_DELTA_SECONDS))
}

/// `Expires - Date` (or `- now` without a valid `Date`), in seconds; an invalid `Expires` is in the past.
fn expires_lifetime(headers: &HeaderMap, now: OffsetDateTime) -> Option<u64> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = expires.to_str().ok().and_then(parse_http_date) else {
        return Some(0);
    };
    let date = headers.get(header::DATE).and_then(|v| v.to_str().ok()).and_then(parse_http_date).unwrap_or(now);
    let seconds = (expires - date).whole_seconds();
    Some(u64::try_from(seconds).unwrap_or(0).min(MAX_DELTA_SECONDS))
}

/// An HTTP-date (RFC 9110 §5.6.7): IMF-fixdate, or the obsolete RFC 850 and asctime forms.
fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (day, month, year, clock) = match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [weekday, day, month, year, clock, "GMT"] if weekday.ends_with(',') => {
            (day.parse::<u8>().ok()?, *month, year.parse::<i32>().ok()?, *clock)
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [weekday, dmy, clock, "GMT"] if weekday.ends_with(',') => {
            let mut it = dmy.split('-');
            let (day, month, yy) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || yy.len() != 2 {
                return None;
            }
            let yy = yy.parse::<i32>().ok()?;
            // RFC 9110: a two-digit year more than 50 years in the future is in the past century.
            let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
            (day.parse::<u8>().ok()?, month, year, *clock)
        }
        // Sun Nov  6 08:49:37 1994
        [_weekday, month, day, clock, year] => (day.parse::<u8>().ok()?, *month, year.parse::<i32>().ok()?, *clock),
        _ => return None,
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month_number = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as u8 + 1;
    let month = time::Month::try_from(month_number).ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() {
        return None;
    }
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(date.with_hms(h, m, sec).ok()?.assume_utc())
}

/// Special-use addresses (RFC 6890 and successors) that are never fetched.
///
/// IPv4: 0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16 (link-local, cloud metadata), 172.16/12,
/// 192.0.0/24, 192.0.2/24, 192.88.99/24 (6to4 relay anycast), 192.168/16, 198.18/15, 198.51.100/24,
/// 203.0.113/24, 224/4 (multicast), 240/4 (reserved, with 255.255.255.255).
///
/// IPv6: everything outside global unicast 2000::/3 (so ::, ::1, the IPv4-compatible ::/96, 100::/64,
/// fc00::/7, fe80::/10, fec0::/10, ff00::/8 and the unallocated rest), except two forms that embed an
/// IPv4 address and are judged by it: IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96. Inside
/// 2000::/3: 2001::/23 (IETF protocol assignments: Teredo, benchmarking, ORCHID…), 2001:db8::/32 and
/// 3fff::/20 (documentation). 6to4 2002::/16 is judged by its embedded IPv4 address. The NAT64
/// local-use prefix 64:ff9b:1::/48 and SRv6 5f00::/16 lie outside 2000::/3 and are refused.
pub fn is_special_use(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_special_v4(ip),
        IpAddr::V6(ip) => is_special_v6(ip),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    const NETS: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", including 0.0.0.0
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, including 169.254.169.254
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // TEST-NET-1
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // TEST-NET-2
        ([203, 0, 113, 0], 24),  // TEST-NET-3
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, including broadcast 255.255.255.255
    ];
    NETS.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from(u128::from(ip) as u32)
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    // IPv4-mapped ::ffff:0:0/96 and NAT64 64:ff9b::/96: the IPv4 address inside decides.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return is_special_v4(embedded_v4(ip));
    }
    // Only global unicast is ever fetched.
    if !in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        return true;
    }
    // 6to4: the IPv4 address is in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return is_special_v4(Ipv4Addr::from((u128::from(ip) >> 80) as u32));
    }
    const NETS: &[([u16; 8], u32)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, benchmarking, ORCHID)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
    ];
    NETS.iter().any(|&(net, prefix)| in_v6(ip, net, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_use_addresses_are_refused() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "fec0::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(is_special_use(ip(s)), "{s} must be special-use");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:1.1.1.1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert!(!is_special_use(ip(s)), "{s} must not be special-use");
        }
    }

    #[test]
    fn loopback_switch_exempts_only_loopback() {
        assert!(check_address(ip("127.0.0.1"), true).is_ok());
        assert!(check_address(ip("127.8.9.10"), true).is_ok());
        assert!(check_address(ip("::1"), true).is_ok());
        assert_eq!(check_address(ip("127.0.0.1"), false), Err(FetchError::ForbiddenAddress(ip("127.0.0.1"))));
        for s in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "::ffff:127.0.0.1", "fe80::1"] {
            assert!(check_address(ip(s), true).is_err(), "{s} must stay forbidden");
        }
    }

    #[test]
    fn urls_are_vetted() {
        assert!(parse_url("https://example.com/client.json").is_ok());
        assert_eq!(parse_url("http://example.com/").unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("file:///etc/passwd").unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("ftp://example.com/x").unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("HTTPS://example.com/").map(|u| u.scheme().to_owned()), Ok("https".to_owned()));
        assert!(matches!(parse_url("https://user@example.com/"), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(parse_url("https://user:pw@example.com/"), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(parse_url("not a url"), Err(FetchError::InvalidUrl(_))));
        assert_eq!(parse_url("https://0x7f.1/").unwrap().host(), Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn media_types() {
        for t in ["application/json", "application/jwk-set+json", "application/vnd.example.client+json"] {
            assert!(is_json_media_type(t), "{t}");
        }
        for t in ["text/html", "application/+json", "application/jsonx", "text/json", "application/json5", ""] {
            assert!(!is_json_media_type(t), "{t}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "Application/JSON; charset=UTF-8".parse().unwrap());
        assert_eq!(media_type(&headers), "application/json");
    }

    #[test]
    fn http_dates() {
        let want = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(want));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(want));
        for bad in ["0", "-1", "", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 31 Feb 1994 08:49:37 GMT", "tomorrow"] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn freshness_from_headers() {
        let now = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(freshness(&headers(&[]), now), None);
        assert_eq!(freshness(&headers(&[("cache-control", "public, max-age=600")]), now), secs(600));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=\"60\"")]), now), secs(60));
        assert_eq!(freshness(&headers(&[("cache-control", "s-maxage=900")]), now), None);
        assert_eq!(freshness(&headers(&[("cache-control", "s-maxage=900, max-age=30")]), now), secs(30));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=600, no-cache")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "No-Store")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=abc")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=99999999999999999999999")]), now), secs(1 << 31));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=600"), ("age", "100")]), now), secs(500));
        assert_eq!(freshness(&headers(&[("cache-control", "max-age=60"), ("age", "100")]), now), secs(0));
        // max-age wins over Expires.
        assert_eq!(
            freshness(&headers(&[("cache-control", "max-age=60"), ("expires", "Thu, 01 Jan 2026 01:00:00 GMT")]), now),
            secs(60)
        );
        assert_eq!(freshness(&headers(&[("expires", "Thu, 01 Jan 2026 01:00:00 GMT")]), now), secs(3600));
        assert_eq!(
            freshness(
                &headers(&[("expires", "Mon, 01 Jan 2024 00:10:00 GMT"), ("date", "Mon, 01 Jan 2024 00:00:00 GMT")]),
                now
            ),
            secs(600)
        );
        assert_eq!(freshness(&headers(&[("expires", "Wed, 31 Dec 2025 00:00:00 GMT")]), now), secs(0));
        assert_eq!(freshness(&headers(&[("expires", "0")]), now), secs(0));
    }

    #[test]
    fn new_installs_a_provider_and_rejects_bad_config() {
        assert!(Fetcher::new(FetchConfig::default()).is_ok());
        assert!(Fetcher::new(FetchConfig::default()).is_ok());
        assert!(matches!(
            Fetcher::new(FetchConfig { max_bytes: 0, ..FetchConfig::default() }),
            Err(FetchError::Config(_))
        ));
        let missing = FetchConfig { test_ca_file: Some("/nonexistent/ca.pem".into()), ..FetchConfig::default() };
        assert!(matches!(Fetcher::new(missing), Err(FetchError::Config(_))));
    }
}
