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
//!
//! Parts: [`address`] (which addresses may be fetched, and the pinned resolver), [`freshness`]
//! (how long a response may be cached: `Cache-Control`, `Expires`, HTTP-dates), and here the
//! client itself.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use time::OffsetDateTime;

mod address;
mod freshness;

pub use address::Reach;
pub use address::is_special_use;
use address::{GuardedResolver, check_address};
use freshness::freshness;

/// The `User-Agent` of every outbound fetch.
pub const USER_AGENT: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"));

/// The body cap of [`Fetcher::get_image`], whatever [`FetchConfig::max_bytes`] says.
pub const IMAGE_MAX_BYTES: usize = 64 * 1024;

/// Image media types [`Fetcher::get_image`] accepts. SVG is deliberately absent: it can carry script.
pub const IMAGE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// How the fetcher behaves; built once at start-up.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// TEST ONLY, unsafe for production: also trust the CA certificate(s) in this PEM file.
    pub test_ca_file: Option<PathBuf>,
    /// TEST ONLY, unsafe for production (CIMD forbids it): allow loopback addresses (127.0.0.0/8,
    /// ::1). Every other special-use range stays forbidden.
    pub test_allow_loopback: bool,
    /// For a party the operator named on a private network (an on-premises identity provider):
    /// any address, and plain `http`. Never for URLs that came from clients.
    pub private_network: bool,
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
            private_network: false,
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
    /// The HTTP status: always 200 except for [`Fetcher::call`].
    pub status: u16,
}

/// One call of [`Fetcher::call`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ApiCall<'a> {
    pub url: &'a str,
    /// POST this form (`application/x-www-form-urlencoded`); `None`: GET.
    pub form: Option<&'a [(&'a str, &'a str)]>,
    /// HTTP Basic credentials (RFC 6749 §2.3.1: already form-encoded by the caller).
    pub basic: Option<(&'a str, &'a str)>,
    pub bearer: Option<&'a str>,
}

/// The outbound fetcher. Cheap to clone; build it once at start-up.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    reach: Reach,
    max_bytes: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("reach", &self.inner.reach)
            .field("max_bytes", &self.inner.max_bytes)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Want<'a> {
    Json,
    Image,
    Api(&'a ApiCall<'a>),
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

        let reach = match (config.private_network, config.test_allow_loopback) {
            (true, _) => Reach::Any,
            (false, true) => Reach::PublicAndLoopback,
            (false, false) => Reach::Public,
        };
        let mut builder = reqwest::Client::builder()
            .https_only(!config.private_network)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(0)
            .dns_resolver(GuardedResolver { reach });

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
        Ok(Fetcher { inner: Arc::new(Inner { client, reach, max_bytes: config.max_bytes, timeout: config.timeout }) })
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

    /// A call to an API of a party the operator named (an identity provider's token, userinfo or
    /// REST endpoints): GET, or POST of a form; the JSON answer whatever its status (error
    /// responses carry JSON too), at most `max_bytes`. Redirects are still refused.
    pub async fn call(&self, call: &ApiCall<'_>) -> Result<Fetched, FetchError> {
        self.fetch(call.url, Want::Api(call)).await
    }

    async fn fetch(&self, url: &str, want: Want<'_>) -> Result<Fetched, FetchError> {
        let parsed = match parse_url(url, self.inner.reach == Reach::Any) {
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

    async fn fetch_parsed(&self, url: url::Url, want: Want<'_>) -> Result<Fetched, FetchError> {
        // The resolver never sees IP literals: check them here.
        match url.host() {
            Some(url::Host::Ipv4(ip)) => check_address(IpAddr::V4(ip), self.inner.reach)?,
            Some(url::Host::Ipv6(ip)) => check_address(IpAddr::V6(ip), self.inner.reach)?,
            Some(url::Host::Domain(_)) => {}
            None => return Err(FetchError::InvalidUrl("no host".into())),
        }

        let (accept, cap) = match want {
            Want::Json | Want::Api(_) => ("application/json", self.inner.max_bytes),
            Want::Image => ("image/png, image/jpeg, image/gif, image/webp", IMAGE_MAX_BYTES),
        };
        let mut request = match want {
            Want::Api(ApiCall { form: Some(form), .. }) => {
                let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
                self.inner.client.post(url).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body)
            }
            _ => self.inner.client.get(url),
        };
        if let Want::Api(call) = want {
            if let Some((user, password)) = call.basic {
                request = request.basic_auth(user, Some(password));
            }
            if let Some(token) = call.bearer {
                request = request.bearer_auth(token);
            }
        }
        let mut response = request.header(header::ACCEPT, accept).send().await.map_err(|e| map_send_error(&e))?;

        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status.as_u16()));
        }
        if status != reqwest::StatusCode::OK && !matches!(want, Want::Api(_)) {
            return Err(FetchError::Status(status.as_u16()));
        }

        let content_type = media_type(response.headers());
        let acceptable = match want {
            Want::Json | Want::Api(_) => is_json_media_type(&content_type),
            Want::Image => IMAGE_TYPES.contains(&content_type.as_str()),
        };
        if !acceptable && !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
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

        Ok(Fetched { body, content_type, max_age, status: status.as_u16() })
    }
}

/// Parses and vets a URL: `https` (or `http` when allowed), a host, no userinfo.
fn parse_url(raw: &str, allow_http: bool) -> Result<url::Url, FetchError> {
    let url = url::Url::parse(raw).map_err(|e| FetchError::InvalidUrl(e.to_string()))?;
    if url.scheme() != "https" && !(allow_http && url.scheme() == "http") {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn urls_are_vetted() {
        assert!(parse_url("https://example.com/client.json", false).is_ok());
        assert_eq!(parse_url("http://example.com/", false).unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("file:///etc/passwd", false).unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("ftp://example.com/x", false).unwrap_err(), FetchError::NotHttps);
        assert_eq!(parse_url("HTTPS://example.com/", false).map(|u| u.scheme().to_owned()), Ok("https".to_owned()));
        assert!(matches!(parse_url("https://user@example.com/", false), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(parse_url("https://user:pw@example.com/", false), Err(FetchError::InvalidUrl(_))));
        assert!(matches!(parse_url("not a url", false), Err(FetchError::InvalidUrl(_))));
        assert_eq!(parse_url("https://0x7f.1/", false).unwrap().host(), Some(url::Host::Ipv4(Ipv4Addr::LOCALHOST)));
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
