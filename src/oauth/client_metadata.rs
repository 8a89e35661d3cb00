//! RFC 7591 dynamic client registration: validating the request metadata and
//! echoing what was registered.
//!
//! Real clients send odd but harmless things (Cursor's `web` with a
//! `cursor://` redirect, empty-string URLs, grant types we do not support), so
//! the policy is to accept, filter or default wherever that is safe, refuse
//! only what would be unsafe or meaningless, and always echo the result so the
//! client knows what it got (RFC 7591 §3.2.1).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};

use crate::oauth::redirect_uri::RedirectUri;
use crate::oauth::scope::ScopeSet;

pub const MAX_REDIRECT_URIS: usize = 20;
/// Bounds every string a client can make us store and render.
pub const MAX_STRING_LEN: usize = 2000;
/// `client_name` is shown on the consent page; longer names are for hiding things.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;

const SUPPORTED_AUTH_METHODS: &str = "none, client_secret_basic, client_secret_post";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 §2.2; only for metadata-document clients (keys from their document).
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    /// Whether registration issues a `client_secret`. Claude Desktop treats a
    /// secret returned for a `none` request as an error.
    pub fn requires_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplicationType {
    Web,
    Native,
}

impl ApplicationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Native => "native",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Self::Web),
            "native" => Some(Self::Native),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    /// RFC 6749 §4.4, for machine clients the operator registers; never through registration or
    /// a metadata document (they ask for it "just in case" and it is dropped, not refused).
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// Who wrote the metadata: a client (dynamic registration, a metadata document), or this server
/// itself (the operator's declarations, rows it stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Client,
    Trusted,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClientMetadata {
    /// Never empty when `grant_types` has `AuthorizationCode`; empty otherwise (a machine client).
    pub redirect_uris: Vec<RedirectUri>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Sorted, deduplicated; contains `AuthorizationCode`, `ClientCredentials` or both (the latter
    /// only in metadata the operator declared).
    pub grant_types: Vec<GrantType>,
    /// `["code"]` with the authorization code grant, else empty; kept as strings to echo RFC
    /// 7591's shape.
    pub response_types: Vec<String>,
    /// Echoed, never enforced against the redirect URIs (Cursor sends `web`
    /// with `cursor://`).
    pub application_type: ApplicationType,
    /// Self-asserted: show it as unverified.
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    pub tos_uri: Option<String>,
    pub policy_uri: Option<String>,
    pub contacts: Vec<String>,
    /// Stored normalised and echoed only; NOT a ceiling for later requests,
    /// because clients step up scopes without re-registering.
    pub scope: Option<String>,
    pub software_id: Option<String>,
    pub software_version: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks: Option<Value>,
    /// RFC 9449 §5.2: every token request of this client must carry a DPoP proof.
    pub dpop_bound_access_tokens: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientMetadataError {
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error("{0}")]
    InvalidClientMetadata(String),
}

impl ClientMetadataError {
    /// The RFC 7591 §3.2.2 `error` value.
    pub fn code(&self) -> super::ErrorCode {
        match self {
            Self::InvalidRedirectUri(_) => super::ErrorCode::InvalidRedirectUri,
            Self::InvalidClientMetadata(_) => super::ErrorCode::InvalidClientMetadata,
        }
    }

    /// The `error_description`: says which member is wrong and why, so client
    /// developers can fix their request without reading our source.
    pub fn description(&self) -> String {
        self.to_string()
    }
}

fn invalid(msg: impl Into<String>) -> ClientMetadataError {
    ClientMetadataError::InvalidClientMetadata(msg.into())
}

fn invalid_redirect(msg: impl Into<String>) -> ClientMetadataError {
    ClientMetadataError::InvalidRedirectUri(msg.into())
}

impl ClientMetadata {
    /// Validates a registration request body (already parsed JSON). Unknown
    /// members ignored. Wrong JSON types name the member ("grant_types must be
    /// an array of strings").
    ///
    /// Absent, `null` and (for optional strings) `""` all mean "not sent",
    /// because clients send all three. Also accepts [`Self::to_json`]'s output
    /// unchanged, so stored metadata reloads through the same validation.
    pub fn from_request(body: &Value) -> Result<Self, ClientMetadataError> {
        Self::parse_with(body, Source::Client)
    }

    /// Reloads stored metadata, which may name `private_key_jwt` (negotiated from a metadata
    /// document, or declared by the operator) and the `client_credentials` grant (operator only):
    /// neither is accepted from a client.
    pub fn from_stored(body: &Value) -> Result<Self, ClientMetadataError> {
        Self::parse_with(body, Source::Trusted)
    }

    /// A client the operator declares (CLI or config file): as [`Self::from_stored`].
    pub fn from_operator(body: &Value) -> Result<Self, ClientMetadataError> {
        Self::parse_with(body, Source::Trusted)
    }

    fn parse_with(body: &Value, source: Source) -> Result<Self, ClientMetadataError> {
        let obj = body.as_object().ok_or_else(|| invalid("the registration request body must be a JSON object"))?;

        let token_endpoint_auth_method = match optional_str(obj, "token_endpoint_auth_method")? {
            None => TokenEndpointAuthMethod::ClientSecretBasic,
            Some(m) => TokenEndpointAuthMethod::parse(m)
                .filter(|m| source == Source::Trusted || *m != TokenEndpointAuthMethod::PrivateKeyJwt)
                .ok_or_else(|| {
                    invalid(format!(
                        "unsupported token_endpoint_auth_method {:?}; supported: {SUPPORTED_AUTH_METHODS}",
                        excerpt(m)
                    ))
                })?,
        };

        // RFC 7591 §2 lets us replace unsupported grant types; refusing would
        // break clients that list e.g. client_credentials "just in case"
        // (which only the operator can give a client).
        let grant_types = match string_array(obj, "grant_types")? {
            None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            Some(list) => {
                let mut set: BTreeSet<GrantType> = list
                    .into_iter()
                    .filter_map(GrantType::parse)
                    .filter(|g| source == Source::Trusted || *g != GrantType::ClientCredentials)
                    .collect();
                if !set.contains(&GrantType::ClientCredentials) {
                    set.insert(GrantType::AuthorizationCode);
                }
                set.into_iter().collect()
            }
        };
        let interactive = grant_types.contains(&GrantType::AuthorizationCode);
        if !interactive && grant_types.contains(&GrantType::RefreshToken) {
            return Err(invalid("the refresh_token grant needs the authorization_code grant"));
        }

        // A machine client (client_credentials alone) has no redirect URIs and no response type.
        let (redirect_uris, response_types) = if interactive {
            let uris = parse_redirect_uris(obj)?;
            match string_array(obj, "response_types")? {
                Some(list) if !list.contains(&"code") => {
                    return Err(invalid("response_types must include \"code\", the only supported response type"));
                }
                _ => (uris, vec!["code".to_owned()]),
            }
        } else {
            let listed = string_array(obj, "redirect_uris").map_err(|e| invalid_redirect(e.description()))?;
            if listed.is_some_and(|l| !l.is_empty()) {
                return Err(invalid_redirect("redirect URIs need the authorization_code grant"));
            }
            (Vec::new(), Vec::new())
        };

        let application_type = match optional_str(obj, "application_type")? {
            Some(t) => ApplicationType::parse(t).ok_or_else(|| {
                invalid(format!("unsupported application_type {:?}; expected \"web\" or \"native\"", excerpt(t)))
            })?,
            // TS SDK v2's rule, so v1 clients get what v2 would have sent.
            None if interactive && redirect_uris.iter().all(|r| r.is_loopback() || r.is_private_use()) => {
                ApplicationType::Native
            }
            None => ApplicationType::Web,
        };

        let client_name = optional_text(obj, "client_name")?;
        if client_name.as_ref().is_some_and(|n| n.chars().count() > MAX_CLIENT_NAME_CHARS) {
            return Err(invalid(format!("client_name must be at most {MAX_CLIENT_NAME_CHARS} characters")));
        }

        let scope = match optional_str(obj, "scope")? {
            None => None,
            Some(s) => {
                let set = ScopeSet::parse(s).map_err(|e| invalid(format!("scope is invalid: {e}")))?;
                Some(set.to_space_separated()).filter(|s| !s.is_empty())
            }
        };

        let jwks_uri = optional_url(obj, "jwks_uri", false)?;
        let jwks = match present(obj, "jwks") {
            None => None,
            Some(v) if v.get("keys").is_some_and(Value::is_array) => Some(v.clone()),
            Some(_) => return Err(invalid("jwks must be a JSON object with a \"keys\" array")),
        };
        if jwks.is_some() && jwks_uri.is_some() {
            return Err(invalid("jwks and jwks_uri must not both be present"));
        }

        Ok(Self {
            redirect_uris,
            token_endpoint_auth_method,
            grant_types,
            response_types,
            application_type,
            client_name,
            client_uri: optional_url(obj, "client_uri", true)?,
            logo_uri: optional_url(obj, "logo_uri", true)?,
            tos_uri: optional_url(obj, "tos_uri", true)?,
            policy_uri: optional_url(obj, "policy_uri", true)?,
            contacts: parse_contacts(obj)?,
            scope,
            software_id: optional_text(obj, "software_id")?,
            software_version: optional_text(obj, "software_version")?,
            jwks_uri,
            jwks,
            dpop_bound_access_tokens: match present(obj, "dpop_bound_access_tokens") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("dpop_bound_access_tokens must be a boolean")),
            },
        })
    }

    /// The metadata part of the RFC 7591 §3.2.1 response: every registered
    /// field, defaults included (redirect_uris, grant_types, response_types,
    /// application_type, token_endpoint_auth_method always present, but for a
    /// machine client's empty redirect_uris and response_types); absent
    /// optionals omitted (never "" or null), because the TS SDK's schema fails
    /// on `""` URLs and Python v1 on an empty `redirect_uris`.
    ///
    /// For storage: round-trips through to_json/from_request (from_stored for
    /// what only the operator may declare).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        // Empty only for a machine client, which has neither.
        if !self.redirect_uris.is_empty() {
            m.insert("redirect_uris".into(), string_values(self.redirect_uris.iter().map(RedirectUri::as_str)));
        }
        m.insert("token_endpoint_auth_method".into(), self.token_endpoint_auth_method.as_str().into());
        m.insert("grant_types".into(), string_values(self.grant_types.iter().map(|g| g.as_str())));
        if !self.response_types.is_empty() {
            m.insert("response_types".into(), string_values(self.response_types.iter().map(String::as_str)));
        }
        m.insert("application_type".into(), self.application_type.as_str().into());
        let optionals = [
            ("client_name", &self.client_name),
            ("client_uri", &self.client_uri),
            ("logo_uri", &self.logo_uri),
            ("tos_uri", &self.tos_uri),
            ("policy_uri", &self.policy_uri),
            ("scope", &self.scope),
            ("software_id", &self.software_id),
            ("software_version", &self.software_version),
            ("jwks_uri", &self.jwks_uri),
        ];
        for (name, value) in optionals {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                m.insert(name.into(), v.into());
            }
        }
        if !self.contacts.is_empty() {
            m.insert("contacts".into(), string_values(self.contacts.iter().map(String::as_str)));
        }
        if let Some(jwks) = &self.jwks {
            m.insert("jwks".into(), jwks.clone());
        }
        if self.dpop_bound_access_tokens {
            m.insert("dpop_bound_access_tokens".into(), true.into());
        }
        m
    }
}

fn string_values<'a>(items: impl Iterator<Item = &'a str>) -> Value {
    Value::Array(items.map(|s| Value::String(s.to_owned())).collect())
}

fn parse_redirect_uris(obj: &Map<String, Value>) -> Result<Vec<RedirectUri>, ClientMetadataError> {
    let list = match string_array(obj, "redirect_uris") {
        Ok(Some(list)) => list,
        Ok(None) => return Err(invalid_redirect("redirect_uris is required")),
        Err(e) => return Err(invalid_redirect(e.description())),
    };
    if list.is_empty() {
        return Err(invalid_redirect("redirect_uris must not be empty"));
    }
    if list.len() > MAX_REDIRECT_URIS {
        return Err(invalid_redirect(format!("at most {MAX_REDIRECT_URIS} redirect_uris are allowed")));
    }
    list.into_iter()
        .map(|s| {
            RedirectUri::parse(s).map_err(|e| invalid_redirect(format!("invalid redirect URI {:?}: {e}", excerpt(s))))
        })
        .collect()
}

fn parse_contacts(obj: &Map<String, Value>) -> Result<Vec<String>, ClientMetadataError> {
    let Some(list) = string_array(obj, "contacts")? else {
        return Ok(Vec::new());
    };
    list.into_iter().filter(|c| !c.is_empty()).map(|c| check_text("contacts", c).map(str::to_owned)).collect()
}

/// A member that was actually sent: `null` counts as absent.
fn present<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// `""` counts as absent: clients send empty strings for unset fields.
fn optional_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ClientMetadataError> {
    let Some(v) = present(obj, name) else {
        return Ok(None);
    };
    let s = v.as_str().ok_or_else(|| invalid(format!("{name} must be a string")))?;
    if s.len() > MAX_STRING_LEN {
        return Err(invalid(format!("{name} must be at most {MAX_STRING_LEN} bytes")));
    }
    Ok(Some(s).filter(|s| !s.is_empty()))
}

/// Free text that ends up in pages and logs.
fn optional_text(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ClientMetadataError> {
    optional_str(obj, name)?.map(|s| check_text(name, s).map(str::to_owned)).transpose()
}

fn check_text<'a>(name: &str, s: &'a str) -> Result<&'a str, ClientMetadataError> {
    if s.len() > MAX_STRING_LEN {
        return Err(invalid(format!("{name} must be at most {MAX_STRING_LEN} bytes")));
    }
    // Bidi overrides would let a name like "Claude" be spelled backwards in
    // the source and rendered forwards on the consent page.
    if s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(invalid(format!("{name} must not contain control characters")));
    }
    Ok(s)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn string_array<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<Vec<&'a str>>, ClientMetadataError> {
    let Some(v) = present(obj, name) else {
        return Ok(None);
    };
    v.as_array()
        .and_then(|items| items.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .map(Some)
        .ok_or_else(|| invalid(format!("{name} must be an array of strings")))
}

/// Informational URLs the consent page may link to or fetch: https, or http on
/// a loopback host for local development. The original string is kept.
fn optional_url(
    obj: &Map<String, Value>,
    name: &str,
    allow_loopback_http: bool,
) -> Result<Option<String>, ClientMetadataError> {
    let Some(s) = optional_str(obj, name)? else {
        return Ok(None);
    };
    let requirement = if allow_loopback_http {
        "an absolute https URL (or http on a loopback host)"
    } else {
        "an absolute https URL"
    };
    let bad = || invalid(format!("{name} must be {requirement}"));
    // URL parsers drop tabs and newlines silently; the stored string must be
    // the one that was checked.
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let url = url::Url::parse(s).map_err(|_| bad())?;
    // The parser "repairs" `https:host` and `https:///host`; store only URLs
    // that already say what they mean.
    let prefix_len = url.scheme().len() + 3;
    let spelled_out = s.get(..prefix_len).is_some_and(|p| p.eq_ignore_ascii_case(&format!("{}://", url.scheme())))
        && s.get(prefix_len..).is_some_and(|rest| !rest.starts_with('/'));
    let has_userinfo = !url.username().is_empty() || url.password().is_some();
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => allow_loopback_http && is_loopback(&url),
        _ => false,
    };
    if !spelled_out || has_userinfo || !scheme_ok || url.host().is_none() {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Keeps error messages one readable line even for hostile input.
fn excerpt(s: &str) -> String {
    const MAX: usize = 100;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: Value) -> ClientMetadata {
        ClientMetadata::from_request(&body).unwrap_or_else(|e| panic!("{body} refused: {e}"))
    }

    fn err(body: Value) -> ClientMetadataError {
        match ClientMetadata::from_request(&body) {
            Ok(m) => panic!("{body} accepted: {m:?}"),
            Err(e) => e,
        }
    }

    fn invalid_metadata(body: Value) -> String {
        let e = err(body);
        assert_eq!(e.code(), crate::oauth::ErrorCode::InvalidClientMetadata, "{e}");
        e.description()
    }

    fn invalid_redirect(body: Value) -> String {
        let e = err(body);
        assert_eq!(e.code(), crate::oauth::ErrorCode::InvalidRedirectUri, "{e}");
        e.description()
    }

    fn uris(m: &ClientMetadata) -> Vec<&str> {
        m.redirect_uris.iter().map(RedirectUri::as_str).collect()
    }

    fn base() -> Value {
        json!({"redirect_uris": ["https://app.example/cb"]})
    }

    fn with(member: &str, value: Value) -> Value {
        let mut b = base();
        b[member] = value;
        b
    }

    fn roundtrips(m: &ClientMetadata) {
        let again = ClientMetadata::from_request(&Value::Object(m.to_json())).unwrap();
        assert_eq!(&again, m);
    }

    #[test]
    fn cursor() {
        let m = ok(json!({
            "client_name": "Cursor",
            "redirect_uris": ["cursor://anysphere.cursor-mcp/oauth/callback"],
            "application_type": "web",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"]
        }));
        assert_eq!(uris(&m), ["cursor://anysphere.cursor-mcp/oauth/callback"]);
        // Honoured, not cross-checked against the custom scheme.
        assert_eq!(m.application_type, ApplicationType::Web);
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
        assert!(!m.token_endpoint_auth_method.requires_secret());
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.client_name.as_deref(), Some("Cursor"));
        roundtrips(&m);
    }

    #[test]
    fn cursor_with_all_its_redirects() {
        let m = ok(json!({
            "client_name": "Cursor",
            "redirect_uris": [
                "cursor://anysphere.cursor-mcp/oauth/callback",
                "https://www.cursor.com/agents/mcp/oauth/callback",
                "http://localhost:8787/callback"
            ],
            "application_type": "web",
            "token_endpoint_auth_method": "none"
        }));
        assert_eq!(m.redirect_uris.len(), 3);
    }

    #[test]
    fn vscode() {
        let m = ok(json!({
            "client_name": "Visual Studio Code",
            "redirect_uris": [
                "https://insiders.vscode.dev/redirect",
                "https://vscode.dev/redirect",
                "http://127.0.0.1/",
                "http://127.0.0.1:33418/"
            ],
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        }));
        assert_eq!(
            uris(&m),
            [
                "https://insiders.vscode.dev/redirect",
                "https://vscode.dev/redirect",
                "http://127.0.0.1/",
                "http://127.0.0.1:33418/"
            ]
        );
        // https redirects among them, so the derived default is web.
        assert_eq!(m.application_type, ApplicationType::Web);
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
        roundtrips(&m);
    }

    #[test]
    fn python_sdk() {
        let m = ok(json!({
            "redirect_uris": ["http://localhost:3030/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "application_type": "native",
            "scope": "user offline_access",
            "client_name": "Simple Auth Client"
        }));
        // RFC 7591 default when the member is omitted, which means a secret is issued.
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert!(m.token_endpoint_auth_method.requires_secret());
        assert_eq!(m.application_type, ApplicationType::Native);
        assert_eq!(m.scope.as_deref(), Some("offline_access user"));
        let echoed = m.to_json();
        assert_eq!(echoed["token_endpoint_auth_method"], "client_secret_basic");
        roundtrips(&m);
    }

    #[test]
    fn claude_ai() {
        let m = ok(json!({
            "client_name": "Claude",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_post"
        }));
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretPost);
        assert_eq!(m.to_json()["token_endpoint_auth_method"], "client_secret_post");
        assert_eq!(m.application_type, ApplicationType::Web);
        roundtrips(&m);
    }

    #[test]
    fn ts_sdk_v1_defaults() {
        let m = ok(json!({
            "client_name": "MCP Inspector",
            "redirect_uris": ["http://localhost:6274/oauth/callback"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp:tools"
        }));
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
        assert_eq!(m.response_types, ["code"]);
        // Derived the way TS v2 would: loopback only, so native.
        assert_eq!(m.application_type, ApplicationType::Native);
        let j = m.to_json();
        assert_eq!(j["grant_types"], json!(["authorization_code", "refresh_token"]));
        assert_eq!(j["response_types"], json!(["code"]));
        assert_eq!(j["application_type"], "native");
        roundtrips(&m);
    }

    #[test]
    fn application_type_defaults() {
        let native = ok(json!({"redirect_uris": ["cursor://a/cb", "http://[::1]/cb"]}));
        assert_eq!(native.application_type, ApplicationType::Native);
        let web = ok(json!({"redirect_uris": ["cursor://a/cb", "https://a.example/cb"]}));
        assert_eq!(web.application_type, ApplicationType::Web);
        let blank = ok(with("application_type", json!("")));
        assert_eq!(blank.application_type, ApplicationType::Web);
        let explicit = ok(json!({"redirect_uris": ["https://a.example/cb"], "application_type": "native"}));
        assert_eq!(explicit.application_type, ApplicationType::Native);
    }

    #[test]
    fn unsupported_grant_types_are_filtered() {
        let m = ok(with("grant_types", json!(["implicit", "authorization_code"])));
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(m.to_json()["grant_types"], json!(["authorization_code"]));

        let m = ok(with("grant_types", json!(["password", "client_credentials", "refresh_token", "refresh_token"])));
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
        let m = ok(with("grant_types", json!([])));
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
    }

    #[test]
    fn client_credentials_is_for_the_operator_only() {
        // Asked for in a registration (or a metadata document): dropped, the client still registers.
        let m = ok(with("grant_types", json!(["client_credentials"])));
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode]);
        let msg = invalid_redirect(json!({"grant_types": ["client_credentials"]}));
        assert!(msg.contains("redirect_uris"), "{msg}");

        // Declared by the operator: a machine client, without redirect URIs or response types.
        let machine = json!({
            "client_name": "Billing agent",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}
        });
        let m = ClientMetadata::from_operator(&machine).unwrap();
        assert_eq!(m.grant_types, [GrantType::ClientCredentials]);
        assert!(m.redirect_uris.is_empty() && m.response_types.is_empty());
        let stored = m.to_json();
        assert!(!stored.contains_key("redirect_uris") && !stored.contains_key("response_types"), "{stored:?}");
        assert_eq!(ClientMetadata::from_stored(&Value::Object(stored.clone())).unwrap(), m);
        // ... which a client could not have registered.
        assert!(ClientMetadata::from_request(&Value::Object(stored)).is_err());

        let both = json!({"grant_types": ["authorization_code", "client_credentials"], "redirect_uris": ["https://a.example/cb"]});
        let m = ClientMetadata::from_operator(&both).unwrap();
        assert_eq!(m.grant_types, [GrantType::AuthorizationCode, GrantType::ClientCredentials]);
        assert_eq!(m.response_types, ["code"]);
    }

    #[test]
    fn a_machine_client_has_no_redirects_and_no_refresh() {
        let e = ClientMetadata::from_operator(
            &json!({"grant_types": ["client_credentials"], "redirect_uris": ["https://a.example/cb"]}),
        )
        .unwrap_err();
        assert_eq!(e.code(), crate::oauth::ErrorCode::InvalidRedirectUri);
        assert!(e.description().contains("authorization_code"), "{e}");
        let e = ClientMetadata::from_operator(&json!({"grant_types": ["client_credentials", "refresh_token"]}))
            .unwrap_err();
        assert!(e.description().contains("refresh_token"), "{e}");
    }

    #[test]
    fn response_types_must_include_code() {
        let m = ok(with("response_types", json!(["code", "token"])));
        assert_eq!(m.response_types, ["code"]);
        let msg = invalid_metadata(with("response_types", json!(["token"])));
        assert!(msg.contains("response_types"), "{msg}");
        invalid_metadata(with("response_types", json!([])));
    }

    #[test]
    fn body_must_be_an_object() {
        for body in [json!([]), json!("x"), json!(null), json!(1)] {
            let msg = invalid_metadata(body);
            assert!(msg.contains("JSON object"), "{msg}");
        }
    }

    #[test]
    fn redirect_uris_required_and_well_typed() {
        assert!(invalid_redirect(json!({})).contains("redirect_uris is required"));
        assert!(invalid_redirect(json!({"redirect_uris": null})).contains("required"));
        assert!(invalid_redirect(json!({"redirect_uris": []})).contains("must not be empty"));
        for v in [json!("https://a.example/cb"), json!([1]), json!(["https://a.example/cb", null])] {
            let msg = invalid_redirect(json!({"redirect_uris": v}));
            assert_eq!(msg, "redirect_uris must be an array of strings");
        }
    }

    #[test]
    fn at_most_twenty_redirect_uris() {
        let list = |n: usize| -> Vec<String> { (0..n).map(|i| format!("https://a.example/cb{i}")).collect() };
        ok(json!({"redirect_uris": list(20)}));
        assert!(invalid_redirect(json!({"redirect_uris": list(21)})).contains("at most 20"));
    }

    #[test]
    fn bad_redirect_uri_is_named_with_the_reason() {
        let msg = invalid_redirect(json!({
            "redirect_uris": ["https://ok.example/cb", "http://example.com/cb"]
        }));
        assert!(msg.contains("http://example.com/cb"), "{msg}");
        assert!(msg.contains("loopback"), "{msg}");
        for bad in ["javascript:alert(1)", "https://example.com/cb#x", "https://*.example.com/cb", "/cb", ""] {
            invalid_redirect(json!({"redirect_uris": [bad]}));
        }
        let long = format!("https://a.example/{}", "x".repeat(3000));
        let msg = invalid_redirect(json!({"redirect_uris": [long]}));
        assert!(msg.len() < 300, "{msg}");
    }

    #[test]
    fn auth_method_default_and_refusals() {
        let m = ok(base());
        assert_eq!(m.token_endpoint_auth_method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert_eq!(
            ok(with("token_endpoint_auth_method", json!(null))).token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        for method in ["private_key_jwt", "client_secret_jwt", "tls_client_auth", "bogus", "NONE"] {
            let msg = invalid_metadata(with("token_endpoint_auth_method", json!(method)));
            assert!(msg.contains(method), "{msg}");
            assert!(msg.contains("none, client_secret_basic, client_secret_post"), "{msg}");
        }
        let msg = invalid_metadata(with("token_endpoint_auth_method", json!(["none"])));
        assert_eq!(msg, "token_endpoint_auth_method must be a string");
    }

    #[test]
    fn auth_method_strings_roundtrip() {
        for m in [
            TokenEndpointAuthMethod::None,
            TokenEndpointAuthMethod::ClientSecretBasic,
            TokenEndpointAuthMethod::ClientSecretPost,
        ] {
            assert_eq!(TokenEndpointAuthMethod::parse(m.as_str()), Some(m));
        }
        for g in [GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials] {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        for a in [ApplicationType::Web, ApplicationType::Native] {
            assert_eq!(ApplicationType::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn client_secret_in_request_is_ignored() {
        let m = ok(with("client_secret", json!("chosen-by-client")));
        assert!(!m.to_json().contains_key("client_secret"));
    }

    #[test]
    fn unknown_members_are_ignored() {
        let mut b = base();
        b["token_endpoint_auth_signing_alg"] = json!("RS256");
        b["post_logout_redirect_uris"] = json!(42);
        b["sector_identifier_uri"] = json!({"weird": true});
        let m = ok(b);
        assert!(!m.to_json().contains_key("post_logout_redirect_uris"));
    }

    #[test]
    fn wrong_types_name_the_member() {
        for (member, value, expected) in [
            ("grant_types", json!("authorization_code"), "grant_types must be an array of strings"),
            ("grant_types", json!([1]), "grant_types must be an array of strings"),
            ("response_types", json!("code"), "response_types must be an array of strings"),
            ("contacts", json!("a@b.example"), "contacts must be an array of strings"),
            ("client_name", json!(5), "client_name must be a string"),
            ("scope", json!(["a"]), "scope must be a string"),
            ("application_type", json!(true), "application_type must be a string"),
            ("client_uri", json!({}), "client_uri must be a string"),
            ("software_id", json!(1), "software_id must be a string"),
        ] {
            assert_eq!(invalid_metadata(with(member, value)), expected);
        }
    }

    #[test]
    fn unknown_application_type_is_refused() {
        let msg = invalid_metadata(with("application_type", json!("browser")));
        assert!(msg.contains("application_type") && msg.contains("browser"), "{msg}");
        invalid_metadata(with("application_type", json!("Web")));
    }

    #[test]
    fn client_name_limits() {
        ok(with("client_name", json!("é".repeat(MAX_CLIENT_NAME_CHARS))));
        let msg = invalid_metadata(with("client_name", json!("x".repeat(MAX_CLIENT_NAME_CHARS + 1))));
        assert!(msg.contains("client_name"), "{msg}");
        for name in ["Evil\nApp", "Evil\u{7}", "a\u{1b}[31mred", "\u{202E}edualC"] {
            let msg = invalid_metadata(with("client_name", json!(name)));
            assert!(msg.contains("control characters"), "{msg}");
        }
        assert_eq!(ok(with("client_name", json!(""))).client_name, None);
    }

    #[test]
    fn url_fields() {
        let m = ok(json!({
            "redirect_uris": ["https://a.example/cb"],
            "client_uri": "https://a.example",
            "logo_uri": "http://localhost:3000/logo.png",
            "tos_uri": "https://a.example/tos#section",
            "policy_uri": "https://a.example/privacy"
        }));
        assert_eq!(m.client_uri.as_deref(), Some("https://a.example"));
        assert_eq!(m.logo_uri.as_deref(), Some("http://localhost:3000/logo.png"));
        roundtrips(&m);

        for member in ["client_uri", "logo_uri", "tos_uri", "policy_uri"] {
            for bad in [
                "http://a.example/x",
                "javascript:alert(1)",
                "data:image/png;base64,AAAA",
                "/relative",
                "a.example",
                "https:a.example",
                "https:///a.example",
                "https://u:p@a.example/",
                "https://a.example/\nx",
            ] {
                let msg = invalid_metadata(with(member, json!(bad)));
                assert!(msg.starts_with(member) && msg.contains("https"), "{msg}");
            }
            // Empty strings are what several clients send for "unset".
            let m = ok(with(member, json!("")));
            assert!(!m.to_json().contains_key(member));
        }
    }

    #[test]
    fn jwks_uri_must_be_https() {
        let m = ok(with("jwks_uri", json!("https://a.example/jwks.json")));
        assert_eq!(m.jwks_uri.as_deref(), Some("https://a.example/jwks.json"));
        let msg = invalid_metadata(with("jwks_uri", json!("http://localhost/jwks.json")));
        assert_eq!(msg, "jwks_uri must be an absolute https URL");
        assert_eq!(ok(with("jwks_uri", json!(""))).jwks_uri, None);
    }

    #[test]
    fn jwks_shape_and_exclusivity() {
        let keys = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]});
        let m = ok(with("jwks", keys.clone()));
        assert_eq!(m.jwks.as_ref(), Some(&keys));
        roundtrips(&m);
        for bad in [json!([]), json!({}), json!({"keys": {}}), json!("keys")] {
            let msg = invalid_metadata(with("jwks", bad));
            assert!(msg.contains("jwks"), "{msg}");
        }
        let mut both = with("jwks", keys);
        both["jwks_uri"] = json!("https://a.example/jwks.json");
        assert!(invalid_metadata(both).contains("jwks and jwks_uri"));
    }

    #[test]
    fn scope_is_validated_normalised_and_not_a_ceiling() {
        let m = ok(with("scope", json!(" offline_access  mcp ")));
        assert_eq!(m.scope.as_deref(), Some("mcp offline_access"));
        assert_eq!(ok(with("scope", json!("   "))).scope, None);
        let msg = invalid_metadata(with("scope", json!("a\tb")));
        assert!(msg.starts_with("scope is invalid"), "{msg}");
    }

    #[test]
    fn contacts_and_software_fields() {
        let mut b = base();
        b["contacts"] = json!(["ops@a.example", "", "sec@a.example"]);
        b["software_id"] = json!("4NRB1-0XZABZI9E6-5SM3R");
        b["software_version"] = json!("2.1.0");
        let m = ok(b);
        assert_eq!(m.contacts, ["ops@a.example", "sec@a.example"]);
        assert_eq!(m.software_version.as_deref(), Some("2.1.0"));
        roundtrips(&m);
        invalid_metadata(with("contacts", json!(["a\nb"])));
        invalid_metadata(with("software_version", json!("1\r\n")));
    }

    #[test]
    fn strings_are_capped() {
        let long = "x".repeat(MAX_STRING_LEN + 1);
        for member in ["software_id", "scope", "client_uri", "token_endpoint_auth_method"] {
            let msg = invalid_metadata(with(member, json!(long)));
            assert!(msg.contains("at most 2000 bytes"), "{msg}");
        }
        let msg = invalid_metadata(with("contacts", json!([long])));
        assert!(msg.contains("at most 2000 bytes"), "{msg}");
    }

    #[test]
    fn to_json_has_required_members_and_no_empty_ones() {
        let mut b = base();
        for member in ["client_name", "client_uri", "logo_uri", "scope", "software_id", "jwks_uri"] {
            b[member] = json!("");
        }
        b["policy_uri"] = json!(null);
        b["jwks"] = json!(null);
        b["contacts"] = json!([]);
        let j = ok(b).to_json();
        let mut keys: Vec<&str> = j.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["application_type", "grant_types", "redirect_uris", "response_types", "token_endpoint_auth_method"]
        );
        assert_eq!(j["redirect_uris"], json!(["https://app.example/cb"]));
        assert!(j.values().all(|v| !v.is_null() && v != ""));
    }

    #[test]
    fn redirect_uris_are_echoed_exactly() {
        let m = ok(json!({"redirect_uris": ["http://localhost", "HTTPS://App.Example"]}));
        assert_eq!(m.to_json()["redirect_uris"], json!(["http://localhost", "HTTPS://App.Example"]));
    }

    #[test]
    fn error_codes() {
        let e = ClientMetadataError::InvalidRedirectUri("x".into());
        assert_eq!((e.code(), e.description().as_str()), (crate::oauth::ErrorCode::InvalidRedirectUri, "x"));
        let e = ClientMetadataError::InvalidClientMetadata("y".into());
        assert_eq!((e.code(), e.to_string().as_str()), (crate::oauth::ErrorCode::InvalidClientMetadata, "y"));
    }
}
