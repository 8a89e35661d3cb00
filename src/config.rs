//! One typed configuration: defaults, then the TOML file, then `PORTCULLIS_*` environment variables
//! (and `DATABASE_URL`). Loaded and validated once at start-up; errors name the key and what is expected.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::net::{IpNet, parse_net};
use crate::oauth::resource::ResourceUri;

/// Keys settable through `PORTCULLIS_<KEY>`; the resource and client tables come only from the file.
const ENV_KEYS: &[&str] = &[
    "issuer",
    "password_login",
    "brand_name",
    "brand_logo_url",
    "bind",
    "database_url",
    "database_statement_timeout",
    "database_lock_timeout",
    "database_idle_in_transaction_timeout",
    "data_dir",
    "log_format",
    "log_level",
    "key_encryption_secret",
    "signing_alg",
    "default_resource",
    "access_token_lifetime",
    "refresh_token_lifetime",
    "refresh_token_max_lifetime",
    "refresh_grace_period",
    "dpop_nonce_required",
    "authorization_code_lifetime",
    "session_lifetime",
    "key_publish_delay",
    "key_retention",
    "key_cache_refresh",
    "bootstrap_admin",
    "registration",
    "max_dynamic_clients",
    "registrations_per_ip_per_hour",
    "unused_client_lifetime",
    "idle_client_lifetime",
    "cimd_policy",
    "cimd_allow_hosts",
    "cimd_deny_hosts",
    "cimd_min_cache",
    "cimd_max_cache",
    "cimd_fetches_per_host_per_minute",
    "cimd_fetches_per_address_per_minute",
    "cimd_stale_grace",
    "cimd_failure_cache",
    "cimd_test_ca_file",
    "cimd_test_allow_loopback",
    "trusted_proxies",
    "client_ip_header",
    "ipv6_prefix_length",
    "rate_limit_per_ip",
    "rate_limit_total",
    "rate_limit_per_client",
    "rate_limit_per_refresh_family",
    "login_max_failures",
    "login_lockout",
    "audit_retention",
    "sweep_interval",
    "max_body_bytes",
    "tls_cert_file",
    "tls_key_file",
    "pending_sessions_per_address",
    "metrics_token",
    "header_read_timeout",
    "max_connections",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// A string that never reaches a log or `config check` output.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

/// A duration written as whole seconds (`900`) or with a unit (`"90s"`, `"15m"`, `"12h"`, `"30d"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("expected a duration like 900, \"90s\", \"15m\", \"12h\" or \"30d\", found {s:?}"))?;
        let factor = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => {
                return Err(format!("unknown duration unit {other:?} in {s:?} (use s, m, h or d)"));
            }
        };
        n.checked_mul(factor).map(Seconds).ok_or_else(|| format!("duration {s:?} is too large"))
    }
}

impl From<Seconds> for String {
    fn from(s: Seconds) -> String {
        let n = s.0;
        match n {
            0 => "0s".into(),
            n if n % 86_400 == 0 => format!("{}d", n / 86_400),
            n if n % 3600 == 0 => format!("{}h", n / 3600),
            n if n % 60 == 0 => format!("{}m", n / 60),
            n => format!("{n}s"),
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration like 900, \"90s\", \"15m\", \"12h\" or \"30d\"")
        })? {
            Raw::Int(n) => Ok(Seconds(n)),
            Raw::Str(s) => Seconds::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }
}

/// Who may register clients dynamically (RFC 7591 §3).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationPolicy {
    /// Anyone (MCP clients register without credentials).
    #[default]
    Open,
    /// Nobody: `/register` answers 403.
    Closed,
    /// Holders of an initial access token made with `portcullis client token`.
    Token,
}

/// Which Client ID Metadata Documents are accepted.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CimdPolicy {
    /// Documents from any https host (minus `cimd_deny_hosts`).
    #[default]
    Any,
    /// Only from `cimd_allow_hosts`.
    Allowlist,
    Off,
}

/// Requests per minute for each rate-limited endpoint; 0 turns a limit off.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub authorize: u32,
    pub token: u32,
    pub register: u32,
    pub introspect: u32,
    pub login: u32,
    pub revoke: u32,
}

impl RateLimits {
    fn per_ip() -> Self {
        RateLimits { authorize: 300, token: 600, register: 60, introspect: 6000, login: 30, revoke: 300 }
    }
    fn total() -> Self {
        RateLimits {
            authorize: 30_000,
            token: 60_000,
            register: 3000,
            introspect: 600_000,
            login: 3000,
            revoke: 30_000,
        }
    }
    pub fn off() -> Self {
        RateLimits { authorize: 0, token: 0, register: 0, introspect: 0, login: 0, revoke: 0 }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::per_ip()
    }
}

/// An MCP server declared in the config file, applied idempotently at start-up.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub uri: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime: Option<Seconds>,
    #[serde(default)]
    pub scopes: Vec<ScopeConfig>,
    /// Only people in one of these groups may use this MCP server; empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    pub name: String,
    pub description: String,
    #[serde(default = "yes")]
    pub default: bool,
    /// Only people in one of these groups are offered this scope; empty: everyone allowed in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A pre-registered client declared in the config file (checked by `admin::validate_declarations`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    pub name: String,
    /// Required with the `authorization_code` grant; a machine client has none.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Present for a confidential client (`client_secret_basic` / `client_secret_post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Default `["authorization_code", "refresh_token"]`; `["client_credentials"]` for a machine
    /// client (which needs a secret or keys, and `resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    /// Public keys for `private_key_jwt` (RFC 7523): a JWK set as a table, or as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Or where to fetch them (https, through the hardened fetcher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound_access_tokens: bool,
    /// `client_credentials`: the MCP servers this client may get tokens for, each with its scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ClientResourceConfig>,
}

/// One MCP server a machine client may reach, and the scopes it may get there.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientResourceConfig {
    pub uri: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Public URL of this server, exactly as clients see it (no trailing slash).
    pub issuer: Option<String>,
    pub bind: String,
    pub database_url: Option<Secret>,
    /// Postgres: the longest one statement may run (0: no limit).
    pub database_statement_timeout: Seconds,
    /// Postgres: the longest a statement waits for a lock (0: no limit).
    pub database_lock_timeout: Seconds,
    /// Postgres: a session idle inside a transaction this long is ended by the server, which rolls
    /// back and releases its locks (0: no limit).
    pub database_idle_in_transaction_timeout: Seconds,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
    pub key_encryption_secret: Option<Secret>,
    pub signing_alg: SigningAlg,
    /// Used when an authorization request carries no `resource` and several are registered.
    pub default_resource: Option<String>,
    pub access_token_lifetime: Seconds,
    pub refresh_token_lifetime: Seconds,
    /// No refresh token outlives its family's start by more than this, however often it rotates.
    pub refresh_token_max_lifetime: Seconds,
    pub refresh_grace_period: Seconds,
    /// DPoP proofs at `/token` must carry the server's nonce (RFC 9449 §8). Off: a proof without
    /// one is accepted, one with a stale or unknown nonce is refused; `DPoP-Nonce` is always sent.
    pub dpop_nonce_required: bool,
    pub authorization_code_lifetime: Seconds,
    pub session_lifetime: Seconds,
    /// How long a rotated-in key is published before it signs (JWKS caches must see it first).
    pub key_publish_delay: Seconds,
    /// How long a superseded key stays published (must outlive the tokens it signed).
    pub key_retention: Seconds,
    /// How often each node reloads signing keys from the database.
    pub key_cache_refresh: Seconds,
    /// Create an `admin` user with a random password when the database has no users.
    pub bootstrap_admin: bool,
    pub registration: RegistrationPolicy,
    /// Cap on dynamically registered clients in total.
    pub max_dynamic_clients: u64,
    /// Registrations one IP address may make per hour (0: no limit).
    pub registrations_per_ip_per_hour: u64,
    /// Dynamically registered clients never used are deleted after this long.
    pub unused_client_lifetime: Seconds,
    /// Dynamically registered clients not used for this long are deleted.
    pub idle_client_lifetime: Seconds,
    pub cimd_policy: CimdPolicy,
    pub cimd_allow_hosts: Vec<String>,
    pub cimd_deny_hosts: Vec<String>,
    /// Bounds on how long a fetched document is trusted, whatever its Cache-Control says.
    pub cimd_min_cache: Seconds,
    pub cimd_max_cache: Seconds,
    pub cimd_fetches_per_host_per_minute: u64,
    /// Document fetches one requesting address may cause per minute, per node (0: no limit), so
    /// one address cannot spend a host's whole budget on made-up paths.
    pub cimd_fetches_per_address_per_minute: u64,
    /// How long past its freshness a document that was fetched and valid is still used when a
    /// re-fetch is refused (budget) or fails (0: never).
    pub cimd_stale_grace: Seconds,
    /// How long a failed fetch of a document is answered from memory instead of fetched again.
    pub cimd_failure_cache: Seconds,
    /// UNSAFE, tests only: trust this extra CA when fetching documents.
    pub cimd_test_ca_file: Option<PathBuf>,
    /// UNSAFE, tests only: allow documents on loopback addresses.
    pub cimd_test_allow_loopback: bool,
    /// Proxies (IP addresses or CIDR ranges) whose `client_ip_header` is believed.
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies set with the client's address (`Forwarded` for RFC 7239).
    pub client_ip_header: String,
    /// Per-address limits count an IPv6 client by the network of this many leading bits (one
    /// subscriber usually holds a whole /64); IPv4 addresses count one by one.
    pub ipv6_prefix_length: u8,
    /// Requests per minute one IP address may make to each limited endpoint (0: no limit).
    pub rate_limit_per_ip: RateLimits,
    /// Requests per minute all clients together may make to each limited endpoint, per node.
    pub rate_limit_total: RateLimits,
    /// Served token requests per minute per client, per node (0: no limit). A hosted client calls
    /// for all its people from a few shared addresses, so its served requests count against the
    /// client, not the address (`rate_limit_per_ip.token` counts the failed ones).
    pub rate_limit_per_client: u32,
    /// Refreshes per minute of one refresh-token family (one connection), per node (0: no limit).
    pub rate_limit_per_refresh_family: u32,
    /// Failed logins before an account (or an address) is locked out for a while.
    pub login_max_failures: u32,
    /// The first lockout; each further failure doubles it (up to a day).
    pub login_lockout: Seconds,
    /// Audit events older than this are deleted, in batches, by the background job (0: kept).
    pub audit_retention: Seconds,
    /// How often the background job deletes expired rows (codes, sessions, refresh tokens, ...),
    /// old audit events and stale dynamic clients.
    pub sweep_interval: Seconds,
    /// Largest request body accepted anywhere.
    pub max_body_bytes: usize,
    /// Serve HTTPS directly (PEM files) when there is no TLS-terminating proxy.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Browser sessions holding only a pending authorization request (nobody signed in) one
    /// address may have at once (0: no limit).
    pub pending_sessions_per_address: u32,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<Secret>,
    /// A connection must send a request's complete headers within this long (slow clients).
    pub header_read_timeout: Seconds,
    /// Connections served at once; further ones wait in the kernel's accept queue (0: no limit).
    pub max_connections: u32,
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
    /// Company identity providers people sign in with.
    pub identity_providers: Vec<crate::federation::provider::ProviderConfig>,
    /// Show the username and password form (default: only when no identity provider is configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_login: Option<bool>,
    /// People in one of these groups may use the admin console, besides those with the admin role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_groups: Vec<String>,
    /// A destructive action in the admin console needs a sign-in at most this old.
    pub admin_reauth_after: Seconds,
    /// The organisation's name in the pages' header and title bar (default: "Portcullis").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_name: Option<String>,
    /// The organisation's logo in the pages' header: an https URL, or a path on this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_logo_url: Option<String>,
    /// Enterprise identity providers whose ID-JAGs are accepted at `/token`.
    pub trusted_identity_providers: Vec<crate::federation::trusted::TrustedIssuerConfig>,
    /// The authorization servers Portcullis issues ID-JAGs for, as the company's identity provider.
    pub enterprise_apps: Vec<crate::federation::enterprise::EnterpriseAppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            issuer: None,
            bind: "127.0.0.1:8080".into(),
            database_url: None,
            database_statement_timeout: Seconds(30),
            database_lock_timeout: Seconds(10),
            database_idle_in_transaction_timeout: Seconds(15),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            key_encryption_secret: None,
            signing_alg: SigningAlg::ES256,
            default_resource: None,
            access_token_lifetime: Seconds(900),
            refresh_token_lifetime: Seconds(30 * 86_400),
            refresh_token_max_lifetime: Seconds(90 * 86_400),
            refresh_grace_period: Seconds(60),
            dpop_nonce_required: false,
            authorization_code_lifetime: Seconds(60),
            session_lifetime: Seconds(12 * 3600),
            key_publish_delay: Seconds(600),
            key_retention: Seconds(86_400),
            key_cache_refresh: Seconds(60),
            bootstrap_admin: true,
            registration: RegistrationPolicy::Open,
            max_dynamic_clients: 10_000,
            registrations_per_ip_per_hour: 30,
            unused_client_lifetime: Seconds(86_400),
            idle_client_lifetime: Seconds(90 * 86_400),
            cimd_policy: CimdPolicy::Any,
            cimd_allow_hosts: Vec::new(),
            cimd_deny_hosts: Vec::new(),
            cimd_min_cache: Seconds(300),
            cimd_max_cache: Seconds(86_400),
            cimd_fetches_per_host_per_minute: 30,
            cimd_fetches_per_address_per_minute: 10,
            cimd_stale_grace: Seconds(86_400),
            cimd_failure_cache: Seconds(30),
            cimd_test_ca_file: None,
            cimd_test_allow_loopback: false,
            trusted_proxies: Vec::new(),
            client_ip_header: "X-Forwarded-For".into(),
            ipv6_prefix_length: 64,
            rate_limit_per_ip: RateLimits::per_ip(),
            rate_limit_total: RateLimits::total(),
            rate_limit_per_client: 30_000,
            rate_limit_per_refresh_family: 60,
            login_max_failures: 5,
            login_lockout: Seconds(60),
            audit_retention: Seconds(365 * 86_400),
            sweep_interval: Seconds(300),
            max_body_bytes: 64 * 1024,
            tls_cert_file: None,
            tls_key_file: None,
            pending_sessions_per_address: 100,
            metrics_token: None,
            header_read_timeout: Seconds(10),
            max_connections: 4096,
            resources: Vec::new(),
            clients: Vec::new(),
            identity_providers: Vec::new(),
            password_login: None,
            admin_groups: Vec::new(),
            admin_reauth_after: Seconds(300),
            brand_name: None,
            brand_logo_url: None,
            trusted_identity_providers: Vec::new(),
            enterprise_apps: Vec::new(),
        }
    }
}

/// The validated form the rest of the program uses: every value parsed once, in the type its
/// users need. Durations are [`Seconds`] throughout (`as_i64` for timestamp arithmetic,
/// `as_duration` for timers).
#[derive(Clone, Debug)]
pub struct Settings {
    pub issuer: String,
    pub bind: std::net::SocketAddr,
    /// Cookies are `Secure` with the `__Host-` prefix when the issuer is https.
    pub secure_cookies: bool,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub keys: SigningKeySettings,
    /// Used when an authorization request carries no `resource` and several are registered.
    pub default_resource: Option<ResourceUri>,
    pub lifetimes: Lifetimes,
    /// DPoP proofs at `/token` must carry the server's nonce.
    pub dpop_nonce_required: bool,
    /// Create an `admin` user with a random password when the database has no users.
    pub bootstrap_admin: bool,
    pub registration: RegistrationSettings,
    pub cimd: CimdSettings,
    /// Proxies whose `client_ip_header` is believed.
    pub trusted_proxies: Vec<IpNet>,
    pub client_ip_header: crate::net::ForwardedHeader,
    /// The IPv6 network size per-address limits count by (see [`crate::net::AddressKey`]).
    pub ipv6_prefix_length: u8,
    pub rate_limits: RateLimitSettings,
    pub login: LoginSettings,
    /// How long audit events are kept (`None`: for ever).
    pub audit_retention: Option<Seconds>,
    /// How often the background job runs (`crate::jobs`).
    pub sweep_interval: Seconds,
    /// Largest request body accepted anywhere.
    pub max_body_bytes: usize,
    /// Serve HTTPS directly with these PEM files (set both or neither).
    pub tls: Option<TlsFiles>,
    /// Pending-request-only browser sessions per address (0: no limit).
    pub pending_sessions_per_address: u32,
    /// `/metrics` requires this Bearer token when set.
    pub metrics_token: Option<Secret>,
    pub serve: ServeSettings,
    /// Declared in the file; checked here, turned into records by `admin::validate_declarations`.
    pub resources: Vec<ResourceConfig>,
    pub clients: Vec<ClientConfig>,
    pub identity_providers: Vec<crate::federation::provider::Provider>,
    /// The username and password form is offered.
    pub password_login: bool,
    /// The organisation's name and logo on the pages.
    pub brand: BrandSettings,
    pub trusted_identity_providers: Vec<crate::federation::trusted::TrustedIssuerConfig>,
    pub enterprise_apps: Vec<crate::federation::enterprise::EnterpriseApp>,
    pub admin_groups: Vec<String>,
    pub admin_reauth_after: Seconds,
    /// The configuration as loaded, kept only for `config check`'s output ([`Settings::redacted_toml`]);
    /// nothing reads values from it.
    source: Config,
}

#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// The given URL, or a SQLite file in `data_dir`.
    pub url: Secret,
    /// The session limits the store sets on every Postgres connection.
    pub limits: crate::store::SessionLimits,
}

#[derive(Clone, Debug)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive, used when `RUST_LOG` is not set.
    pub level: String,
}

#[derive(Clone, Debug)]
pub struct SigningKeySettings {
    pub alg: SigningAlg,
    pub encryption_secret: Option<Secret>,
    /// How long a rotated-in key is published before it signs.
    pub publish_delay: Seconds,
    /// How long a superseded key stays published.
    pub retention: Seconds,
    /// How often each node reloads signing keys from the database.
    pub cache_refresh: Seconds,
}

#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub access_token: Seconds,
    pub refresh_token: Seconds,
    /// The absolute limit on a refresh token family, from its code's redemption.
    pub refresh_token_max: Seconds,
    /// How long a rotated refresh token may still be presented (a retry after a lost answer).
    pub refresh_grace_period: Seconds,
    pub authorization_code: Seconds,
    /// A browser session's inactivity timeout.
    pub session: Seconds,
}

/// Dynamic client registration and the clean-up of dynamically registered clients.
#[derive(Clone, Copy, Debug)]
pub struct RegistrationSettings {
    pub policy: RegistrationPolicy,
    pub max_dynamic_clients: u64,
    /// 0: no limit.
    pub per_ip_per_hour: u64,
    pub unused_client_lifetime: Seconds,
    pub idle_client_lifetime: Seconds,
}

/// Client ID Metadata Documents.
#[derive(Clone, Debug)]
pub struct CimdSettings {
    pub policy: CimdPolicy,
    pub allow_hosts: Vec<String>,
    pub deny_hosts: Vec<String>,
    /// Bounds on how long a fetched document is trusted (`min_cache <= max_cache`).
    pub min_cache: Seconds,
    pub max_cache: Seconds,
    pub fetches_per_host_per_minute: u64,
    /// 0: no limit.
    pub fetches_per_address_per_minute: u64,
    /// How long past freshness a known-good document serves when a re-fetch is refused or fails.
    pub stale_grace: Seconds,
    /// How long a failed fetch is remembered (0: not at all).
    pub failure_cache: Seconds,
    /// UNSAFE, tests only.
    pub test_ca_file: Option<PathBuf>,
    /// UNSAFE, tests only.
    pub test_allow_loopback: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct RateLimitSettings {
    pub per_ip: RateLimits,
    pub total: RateLimits,
    /// Served token requests per minute per client (0: no limit).
    pub per_client: u32,
    /// Refreshes per minute per refresh-token family (0: no limit).
    pub per_refresh_family: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct LoginSettings {
    pub max_failures: u32,
    /// The first lockout; each further failure doubles it.
    pub lockout: Seconds,
}

/// Connection handling (see `crate::serve`).
#[derive(Clone, Copy, Debug)]
pub struct ServeSettings {
    pub header_read_timeout: Seconds,
    /// 0: no limit.
    pub max_connections: u32,
}

/// Who the pages say they belong to.
#[derive(Clone, Debug)]
pub struct BrandSettings {
    /// Shown in every page's header and title bar.
    pub name: String,
    /// The logo's URL as pages link it (an absolute https URL, or a path on this server).
    pub logo_url: Option<String>,
    /// The logo's origin when it is not this server's: the pages' CSP must allow images from it.
    pub logo_origin: Option<String>,
}

impl Default for BrandSettings {
    fn default() -> Self {
        BrandSettings { name: "Portcullis".into(), logo_url: None, logo_origin: None }
    }
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// Loads defaults, the file (required when named explicitly) and the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new("portcullis.toml").exists() => {
                figment = figment.merge(Toml::file_exact("portcullis.toml"))
            }
            None => {}
        }
        figment = figment.merge(Env::raw().only(&["DATABASE_URL"])).merge(Env::prefixed("PORTCULLIS_").only(ENV_KEYS));
        figment.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }

    pub fn validate(self) -> Result<Settings, ConfigError> {
        let source = self.clone();
        // Every field named, so a new key cannot be forgotten here.
        let Config {
            issuer,
            bind,
            database_url,
            database_statement_timeout,
            database_lock_timeout,
            database_idle_in_transaction_timeout,
            data_dir,
            log_format,
            log_level,
            key_encryption_secret,
            signing_alg,
            default_resource,
            access_token_lifetime,
            refresh_token_lifetime,
            refresh_token_max_lifetime,
            refresh_grace_period,
            dpop_nonce_required,
            authorization_code_lifetime,
            session_lifetime,
            key_publish_delay,
            key_retention,
            key_cache_refresh,
            bootstrap_admin,
            registration,
            max_dynamic_clients,
            registrations_per_ip_per_hour,
            unused_client_lifetime,
            idle_client_lifetime,
            cimd_policy,
            cimd_allow_hosts,
            cimd_deny_hosts,
            cimd_min_cache,
            cimd_max_cache,
            cimd_fetches_per_host_per_minute,
            cimd_fetches_per_address_per_minute,
            cimd_stale_grace,
            cimd_failure_cache,
            cimd_test_ca_file,
            cimd_test_allow_loopback,
            trusted_proxies,
            client_ip_header,
            ipv6_prefix_length,
            rate_limit_per_ip,
            rate_limit_total,
            rate_limit_per_client,
            rate_limit_per_refresh_family,
            login_max_failures,
            login_lockout,
            audit_retention,
            sweep_interval,
            max_body_bytes,
            tls_cert_file,
            tls_key_file,
            pending_sessions_per_address,
            metrics_token,
            header_read_timeout,
            max_connections,
            resources,
            clients,
            identity_providers,
            password_login,
            admin_groups,
            admin_reauth_after,
            brand_name,
            brand_logo_url,
            trusted_identity_providers,
            enterprise_apps,
        } = self;
        let bind: std::net::SocketAddr = bind
            .parse()
            .map_err(|_| invalid("bind", format!("expected an address like 127.0.0.1:8080, found {bind:?}")))?;
        let issuer = match &issuer {
            Some(issuer) => validate_issuer(issuer)?,
            None if bind.ip().is_loopback() => format!("http://{bind}"),
            None => {
                return Err(invalid(
                    "issuer",
                    "required when binding to a non-loopback address: set the public https URL clients use",
                ));
            }
        };
        let database_url = match database_url {
            Some(url) => {
                let u = url.expose();
                if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                    return Err(invalid("database_url", "expected a sqlite:PATH or postgres://USER@HOST/DB URL"));
                }
                url
            }
            None => Secret::new(format!("sqlite://{}", data_dir.join("portcullis.db").display())),
        };
        let default_resource = default_resource
            .as_deref()
            .map(|r| ResourceUri::parse(r).map_err(|e| invalid("default_resource", e.to_string())))
            .transpose()?;
        for (key, v) in [
            ("access_token_lifetime", access_token_lifetime),
            ("authorization_code_lifetime", authorization_code_lifetime),
            ("session_lifetime", session_lifetime),
            ("refresh_token_lifetime", refresh_token_lifetime),
            ("refresh_token_max_lifetime", refresh_token_max_lifetime),
            ("key_cache_refresh", key_cache_refresh),
            ("sweep_interval", sweep_interval),
        ] {
            if v.0 == 0 {
                return Err(invalid(key, "must be greater than zero"));
            }
        }
        if authorization_code_lifetime.0 > 600 {
            return Err(invalid("authorization_code_lifetime", "must be at most 10m (OAuth 2.1 §4.1.2)"));
        }
        if key_retention.0 < access_token_lifetime.0 {
            return Err(invalid(
                "key_retention",
                "must be at least access_token_lifetime, or tokens outlive the key that verifies them",
            ));
        }
        if let Some(secret) = &key_encryption_secret
            && secret.expose().len() < 16
        {
            return Err(invalid("key_encryption_secret", "must be at least 16 characters"));
        }
        if cimd_min_cache.0 > cimd_max_cache.0 {
            return Err(invalid("cimd_min_cache", "must not exceed cimd_max_cache"));
        }
        if cimd_policy == CimdPolicy::Allowlist && cimd_allow_hosts.is_empty() {
            return Err(invalid("cimd_allow_hosts", "must list hosts when cimd_policy is \"allowlist\""));
        }
        if let Some(path) = &cimd_test_ca_file
            && !path.exists()
        {
            return Err(invalid("cimd_test_ca_file", format!("{} does not exist", path.display())));
        }
        if cimd_test_ca_file.is_some() || cimd_test_allow_loopback {
            tracing::warn!("cimd_test_* settings are for tests only: never use them in production");
        }
        let trusted_proxies = trusted_proxies
            .iter()
            .map(|p| parse_net(p).map_err(|e| invalid("trusted_proxies", e)))
            .collect::<Result<Vec<IpNet>, _>>()?;
        let client_ip_header =
            crate::net::ForwardedHeader::parse(&client_ip_header).map_err(|e| invalid("client_ip_header", e))?;
        if !(32..=128).contains(&ipv6_prefix_length) {
            return Err(invalid(
                "ipv6_prefix_length",
                "must be between 32 and 128 (64 counts one subscriber's network)",
            ));
        }
        let tls = match (tls_cert_file, tls_key_file) {
            (Some(cert), Some(key)) => {
                for (key, path) in [("tls_cert_file", &cert), ("tls_key_file", &key)] {
                    if !path.exists() {
                        return Err(invalid(key, format!("{} does not exist", path.display())));
                    }
                }
                Some(TlsFiles { cert, key })
            }
            (None, None) => None,
            _ => return Err(invalid("tls_cert_file", "set both tls_cert_file and tls_key_file, or neither")),
        };
        if header_read_timeout.0 == 0 {
            return Err(invalid("header_read_timeout", "must be greater than zero"));
        }
        if let Some(token) = &metrics_token
            && token.expose().len() < 16
        {
            return Err(invalid("metrics_token", "must be at least 16 characters"));
        }
        if max_body_bytes < 4096 {
            return Err(invalid("max_body_bytes", "must be at least 4096"));
        }
        for r in &resources {
            ResourceUri::parse(&r.uri).map_err(|e| invalid("resources.uri", format!("{}: {e}", r.uri)))?;
        }
        let identity_providers = crate::federation::provider::validate_all(&identity_providers)
            .map_err(|e| invalid("identity_providers", e))?;
        let password_login = password_login.unwrap_or(identity_providers.is_empty());
        if !password_login && identity_providers.is_empty() {
            return Err(invalid(
                "password_login",
                "cannot be false without an identity provider: nobody could sign in",
            ));
        }
        crate::federation::trusted::validate_all(&trusted_identity_providers)
            .map_err(|e| invalid("trusted_identity_providers", e))?;
        let enterprise_apps =
            crate::federation::enterprise::validate_all(&enterprise_apps).map_err(|e| invalid("enterprise_apps", e))?;
        let brand = validate_brand(&issuer, brand_name.as_deref(), brand_logo_url.as_deref())?;
        let secure_cookies = issuer.starts_with("https://");
        Ok(Settings {
            issuer,
            bind,
            secure_cookies,
            database: DatabaseSettings {
                url: database_url,
                limits: crate::store::SessionLimits {
                    statement_timeout: database_statement_timeout.as_duration(),
                    lock_timeout: database_lock_timeout.as_duration(),
                    idle_in_transaction_timeout: database_idle_in_transaction_timeout.as_duration(),
                },
            },
            log: LogSettings { format: log_format, level: log_level },
            keys: SigningKeySettings {
                alg: signing_alg,
                encryption_secret: key_encryption_secret,
                publish_delay: key_publish_delay,
                retention: key_retention,
                cache_refresh: key_cache_refresh,
            },
            default_resource,
            lifetimes: Lifetimes {
                access_token: access_token_lifetime,
                refresh_token: refresh_token_lifetime,
                refresh_token_max: refresh_token_max_lifetime,
                refresh_grace_period,
                authorization_code: authorization_code_lifetime,
                session: session_lifetime,
            },
            dpop_nonce_required,
            bootstrap_admin,
            registration: RegistrationSettings {
                policy: registration,
                max_dynamic_clients,
                per_ip_per_hour: registrations_per_ip_per_hour,
                unused_client_lifetime,
                idle_client_lifetime,
            },
            cimd: CimdSettings {
                policy: cimd_policy,
                allow_hosts: cimd_allow_hosts,
                deny_hosts: cimd_deny_hosts,
                min_cache: cimd_min_cache,
                max_cache: cimd_max_cache,
                fetches_per_host_per_minute: cimd_fetches_per_host_per_minute,
                fetches_per_address_per_minute: cimd_fetches_per_address_per_minute,
                stale_grace: cimd_stale_grace,
                failure_cache: cimd_failure_cache,
                test_ca_file: cimd_test_ca_file,
                test_allow_loopback: cimd_test_allow_loopback,
            },
            trusted_proxies,
            client_ip_header,
            ipv6_prefix_length,
            rate_limits: RateLimitSettings {
                per_ip: rate_limit_per_ip,
                total: rate_limit_total,
                per_client: rate_limit_per_client,
                per_refresh_family: rate_limit_per_refresh_family,
            },
            login: LoginSettings { max_failures: login_max_failures, lockout: login_lockout },
            audit_retention: (audit_retention.0 > 0).then_some(audit_retention),
            sweep_interval,
            max_body_bytes,
            tls,
            pending_sessions_per_address,
            metrics_token,
            serve: ServeSettings { header_read_timeout, max_connections },
            resources,
            clients,
            identity_providers,
            password_login,
            brand,
            trusted_identity_providers,
            enterprise_apps,
            admin_groups,
            admin_reauth_after,
            source,
        })
    }
}

/// The issuer is compared byte for byte by clients: https (loopback http allowed for development),
/// no query, no fragment, no trailing slash.
fn validate_issuer(issuer: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(issuer)
        .map_err(|e| invalid("issuer", format!("expected an absolute URL like https://auth.example.com: {e}")))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid("issuer", "must use https (plain http is allowed only on a loopback host)"));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("issuer", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("issuer", "must not contain credentials"));
    }
    if issuer.ends_with('/') {
        return Err(invalid(
            "issuer",
            format!("must not end with '/': clients compare it byte for byte, use {:?}", issuer.trim_end_matches('/')),
        ));
    }
    let normal = url.as_str().trim_end_matches('/');
    if normal != issuer {
        return Err(invalid("issuer", format!("must be written in normal form: {normal:?}")));
    }
    Ok(issuer.to_string())
}

/// The organisation's name (plain text, one line) and logo (https, http only on a loopback host
/// like the issuer, or a path on this server). The logo's origin goes into the pages' CSP, so it
/// is reduced to a URL parsed here, never copied as written.
fn validate_brand(issuer: &str, name: Option<&str>, logo: Option<&str>) -> Result<BrandSettings, ConfigError> {
    let mut brand = BrandSettings::default();
    if let Some(name) = name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
            return Err(invalid("brand_name", "must be one line of 1 to 60 characters"));
        }
        brand.name = name.to_string();
    }
    let Some(logo) = logo.map(str::trim) else { return Ok(brand) };
    let bad = || {
        invalid("brand_logo_url", "expected an https URL (http only on a loopback host) or a path such as /logo.png")
    };
    let base = url::Url::parse(issuer).map_err(|_| bad())?;
    if logo.starts_with('/') && !logo.starts_with("//") {
        let url = base.join(logo).map_err(|_| bad())?;
        brand.logo_url = Some(format!("{}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default()));
        return Ok(brand);
    }
    let url = url::Url::parse(logo).map_err(|_| bad())?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad());
    }
    let origin = url.origin().ascii_serialization();
    brand.logo_origin = (origin != base.origin().ascii_serialization()).then_some(origin);
    brand.logo_url = Some(url.to_string());
    Ok(brand)
}

impl Settings {
    /// A warning for a public deployment (an https issuer on a host that is not loopback) whose
    /// private signing keys are stored in clear: anyone with a copy of the database (a backup, a
    /// replica) could sign tokens every MCP server accepts.
    pub fn keys_in_clear_warning(&self) -> Option<String> {
        let host = url::Url::parse(&self.issuer).ok().and_then(|u| u.host().map(|h| h.to_owned()));
        let loopback = match host {
            Some(url::Host::Domain(d)) => {
                d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => true,
        };
        (self.issuer.starts_with("https://") && !loopback && self.keys.encryption_secret.is_none()).then(|| {
            format!(
                "SIGNING KEYS ARE STORED UNENCRYPTED: the issuer {} is public and key_encryption_secret \
                 (PORTCULLIS_KEY_ENCRYPTION_SECRET) is not set, so anyone holding a copy of the database can \
                 sign tokens your MCP servers accept. Set it (16+ characters, kept outside the database); \
                 existing keys are sealed at the next start.",
                self.issuer
            )
        })
    }

    /// The effective configuration as TOML with every secret and database password redacted.
    pub fn redacted_toml(&self) -> String {
        let mut c = self.source.clone();
        c.issuer = Some(self.issuer.clone());
        c.database_url = Some(Secret::new(redact_url(self.database.url.expose())));
        if c.key_encryption_secret.is_some() {
            c.key_encryption_secret = Some(Secret::new("[redacted]"));
        }
        if c.metrics_token.is_some() {
            c.metrics_token = Some(Secret::new("[redacted]"));
        }
        for p in &mut c.identity_providers {
            if p.client_secret.is_some() {
                p.client_secret = Some(Secret::new("[redacted]"));
            }
        }
        for client in &mut c.clients {
            if client.client_secret.is_some() {
                client.client_secret = Some(Secret::new("[redacted]"));
            }
        }
        toml_string(&c)
    }
}

fn toml_string(c: &Config) -> String {
    // The same crate figment reads with, so the output loads back as a config file.
    toml::to_string(c).unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"))
}

/// `postgres://user:secret@host/db` → `postgres://user:[redacted]@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // A URL would percent-encode the brackets; put them in after.
            let _ = u.set_password(Some("REDACTED"));
            u.to_string().replacen(":REDACTED@", ":[redacted]@", 1)
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn public_issuer_without_key_encryption_is_warned_about() {
        let settings = |issuer: &str, secret: Option<&str>| {
            Config {
                issuer: Some(issuer.into()),
                database_url: Some(Secret::new("sqlite::memory:")),
                key_encryption_secret: secret.map(Secret::new),
                ..Config::default()
            }
            .validate()
            .unwrap()
        };
        let warning = settings("https://auth.example.com", None).keys_in_clear_warning().expect("warned");
        assert!(warning.contains("key_encryption_secret") && warning.contains("https://auth.example.com"), "{warning}");
        assert!(settings("https://auth.example.com", Some("0123456789abcdef")).keys_in_clear_warning().is_none());
        assert!(settings("http://127.0.0.1:8080", None).keys_in_clear_warning().is_none(), "development");
        assert!(settings("https://localhost:8443", None).keys_in_clear_warning().is_none(), "development");
    }
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(Seconds::parse("90").unwrap(), Seconds(90));
        assert_eq!(Seconds::parse("15m").unwrap(), Seconds(900));
        assert_eq!(Seconds::parse("12h").unwrap(), Seconds(43_200));
        assert_eq!(Seconds::parse("30d").unwrap(), Seconds(2_592_000));
        assert!(Seconds::parse("ten").is_err());
        assert!(Seconds::parse("5w").is_err());
        assert_eq!(String::from(Seconds(900)), "15m");
    }

    #[test]
    fn issuer_rules() {
        assert!(validate_issuer("https://auth.example.com").is_ok());
        assert!(validate_issuer("https://auth.example.com/tenant1").is_ok());
        assert!(validate_issuer("http://127.0.0.1:8080").is_ok());
        assert!(validate_issuer("http://auth.example.com").is_err());
        assert!(validate_issuer("https://auth.example.com/").is_err());
        assert!(validate_issuer("https://auth.example.com?x=1").is_err());
        assert!(validate_issuer("auth.example.com").is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let c = Config {
            database_url: Some(Secret::new("postgres://u:hunter2@db/portcullis")),
            key_encryption_secret: Some(Secret::new("a-very-long-secret-value")),
            ..Config::default()
        };
        let s = c.validate().unwrap();
        let out = s.redacted_toml();
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("a-very-long-secret-value"), "{out}");
        assert!(format!("{s:?}").find("hunter2").is_none());
    }

    #[test]
    fn trusted_proxies_are_parsed_once_and_refused_by_key() {
        let c = Config { trusted_proxies: vec!["10.0.0.0/8".into(), "192.0.2.7".into()], ..Config::default() };
        let s = c.validate().unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        assert!(s.trusted_proxies[0].contains("10.1.2.3".parse().unwrap()));
        assert!(s.trusted_proxies[1].contains("192.0.2.7".parse().unwrap()));
        let c = Config { trusted_proxies: vec!["10.0.0.0/8".into(), "nope".into()], ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "trusted_proxies", .. })));
    }

    #[test]
    fn ipv6_prefix_length_is_bounded() {
        assert_eq!(Config::default().validate().unwrap().ipv6_prefix_length, 64);
        for bad in [0, 31, 129] {
            let c = Config { ipv6_prefix_length: bad, ..Config::default() };
            assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "ipv6_prefix_length", .. })), "{bad}");
        }
        assert_eq!(Config { ipv6_prefix_length: 128, ..Config::default() }.validate().unwrap().ipv6_prefix_length, 128);
    }

    #[test]
    fn audit_retention_zero_keeps_events() {
        assert_eq!(Config::default().validate().unwrap().audit_retention, Some(Seconds(365 * 86_400)));
        assert_eq!(
            Config { audit_retention: Seconds(0), ..Config::default() }.validate().unwrap().audit_retention,
            None
        );
    }

    #[test]
    fn tls_files_come_in_pairs() {
        let c = Config { tls_cert_file: Some("cert.pem".into()), ..Config::default() };
        assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: "tls_cert_file", .. })));
        assert!(Config::default().validate().unwrap().tls.is_none());
    }

    #[test]
    fn brand_name_and_logo_are_checked_by_key() {
        let s = Config::default().validate().unwrap();
        assert_eq!((s.brand.name.as_str(), s.brand.logo_url.as_deref()), ("Portcullis", None));
        let c = Config {
            brand_name: Some("  Example Corp ".into()),
            brand_logo_url: Some("https://cdn.example.com/logo.png".into()),
            ..Config::default()
        };
        let s = c.validate().unwrap();
        assert_eq!(s.brand.name, "Example Corp");
        assert_eq!(s.brand.logo_url.as_deref(), Some("https://cdn.example.com/logo.png"));
        assert_eq!(s.brand.logo_origin.as_deref(), Some("https://cdn.example.com"));
        let c = Config { brand_logo_url: Some("/static/../logo.png?v=2".into()), ..Config::default() };
        let s = c.validate().unwrap();
        assert_eq!((s.brand.logo_url.as_deref(), s.brand.logo_origin), (Some("/logo.png?v=2"), None));
        for (name, logo, key) in [
            (Some(""), None, "brand_name"),
            (Some("a\nb"), None, "brand_name"),
            (Some(&*"x".repeat(61)), None, "brand_name"),
            (None, Some("http://cdn.example.com/logo.png"), "brand_logo_url"),
            (None, Some("//cdn.example.com/logo.png"), "brand_logo_url"),
            (None, Some("javascript:alert(1)"), "brand_logo_url"),
            (None, Some("https://u:p@cdn.example.com/logo.png"), "brand_logo_url"),
        ] {
            let c = Config {
                brand_name: name.map(str::to_string),
                brand_logo_url: logo.map(str::to_string),
                ..Config::default()
            };
            assert!(matches!(c.validate(), Err(ConfigError::Invalid { key: k, .. }) if k == key), "{name:?} {logo:?}");
        }
    }

    #[test]
    fn defaults_derive_issuer_from_loopback_bind() {
        let s = Config::default().validate().unwrap();
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert!(s.database.url.expose().starts_with("sqlite://"));
    }
}
