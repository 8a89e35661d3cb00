//! Every path in one place. The router and the metadata documents are both built from here, so
//! discovery cannot drift from what is served.

pub const AUTHORIZE: &str = "/authorize";
pub const TOKEN: &str = "/token";
pub const REGISTER: &str = "/register";
pub const REGISTER_CLIENT: &str = "/register/{client_id}";
pub const JWKS: &str = "/jwks.json";
pub const REVOKE: &str = "/revoke";
pub const INTROSPECT: &str = "/introspect";
pub const USERINFO: &str = "/userinfo";
pub const ACCOUNT: &str = "/account";
pub const CLIENT_LOGO: &str = "/client-logo";
pub const ACCOUNT_REVOKE: &str = "/account/revoke";
pub const ACCOUNT_PASSWORD: &str = "/account/password";
pub const LOGIN: &str = "/login";
pub const LOGOUT: &str = "/logout";
/// Company sign-in: start, the provider's redirect back, and its back-channel logout.
pub const UPSTREAM_START: &str = "/login/{provider}";
pub const UPSTREAM_CALLBACK: &str = "/login/{provider}/callback";
pub const UPSTREAM_LOGOUT: &str = "/login/{provider}/backchannel-logout";
pub const CONSENT: &str = "/consent";
/// The admin API (JSON, admin tokens).
pub const ADMIN_API: &str = "/admin/api";
/// The landing page: what this server is, sign in, connected apps, where the docs are.
pub const LANDING: &str = "/";
pub const HEALTHZ: &str = "/healthz";
pub const READYZ: &str = "/readyz";
pub const METRICS: &str = "/metrics";
/// The stylesheet; the favicon sits beside it (the page views derive its URL from this one).
pub const STYLE_CSS: &str = "/static/style.css";
pub const FAVICON_SVG: &str = "/static/favicon.svg";

/// The routes people open in a browser: their errors are pages, every other route answers JSON.
pub const PAGES: &[&str] = &[AUTHORIZE, LOGIN, LOGOUT, CONSENT, ACCOUNT, ACCOUNT_REVOKE, ACCOUNT_PASSWORD, LANDING];

pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_METADATA: &str = "/.well-known/openid-configuration";

/// The issuer's URLs. `prefix` is the issuer's path ("" for an origin issuer), under which every
/// endpoint is served; well-known documents follow RFC 8414 §3 path insertion.
#[derive(Clone, Debug)]
pub struct Routes {
    pub issuer: String,
    pub prefix: String,
}

impl Routes {
    pub fn new(issuer: &str) -> Routes {
        let prefix = url::Url::parse(issuer).map(|u| u.path().trim_end_matches('/').to_string()).unwrap_or_default();
        Routes { issuer: issuer.to_string(), prefix }
    }

    /// Absolute URL of an endpoint path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// Path (with the issuer's prefix) as the browser sees it: form actions, redirects, assets.
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }

    /// The stylesheet's path, for the pages' `<link>`.
    pub fn stylesheet(&self) -> String {
        self.path(STYLE_CSS)
    }

    /// The landing page's path: the issuer itself, with a trailing slash.
    pub fn landing(&self) -> String {
        self.path(LANDING)
    }

    /// Whether a request path (with the issuer's prefix) is one of the [`PAGES`].
    pub fn is_page(&self, path: &str) -> bool {
        let rest = path.strip_prefix(self.prefix.as_str()).unwrap_or(path);
        let rest = if rest.is_empty() { LANDING } else { rest };
        let upstream_page = rest.starts_with("/login/") && !rest.ends_with("/backchannel-logout");
        let console = rest == "/admin" || rest.starts_with("/admin/") && !rest.starts_with("/admin/api");
        PAGES.contains(&rest) || upstream_page || console
    }

    /// A request that only reads what every node serves alike (the discovery documents, the
    /// keys, the probes, the assets): there is nothing to finish if its client leaves.
    pub fn only_reads(&self, method: &axum::http::Method, path: &str) -> bool {
        if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
            return false;
        }
        let rest = path.strip_prefix(self.prefix.as_str()).unwrap_or(path);
        path.starts_with("/.well-known/")
            || rest.starts_with("/.well-known/")
            || [JWKS, HEALTHZ, READYZ, METRICS, STYLE_CSS, FAVICON_SVG].contains(&rest)
    }

    /// Where the login page sends the person to sign in with a provider.
    pub fn upstream_start(&self, provider_id: &str) -> String {
        self.path(&UPSTREAM_START.replace("{provider}", provider_id))
    }

    pub fn register_client_url(&self, client_id: &str) -> String {
        self.url(&format!("{REGISTER}/{client_id}"))
    }

    /// Where each metadata document is served (RFC 8414 insertion and, for OIDC, also appending).
    pub fn oauth_metadata_paths(&self) -> Vec<String> {
        let mut v = vec![format!("{OAUTH_METADATA}{}", self.prefix)];
        if !self.prefix.is_empty() {
            v.push(format!("{}{OAUTH_METADATA}", self.prefix));
        }
        v
    }

    pub fn oidc_metadata_paths(&self) -> Vec<String> {
        let mut v = vec![format!("{OIDC_METADATA}{}", self.prefix)];
        if !self.prefix.is_empty() {
            v.push(format!("{}{OIDC_METADATA}", self.prefix));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_issuer_inserts_well_known() {
        let r = Routes::new("https://auth.example.com/tenant1");
        assert_eq!(r.prefix, "/tenant1");
        assert_eq!(r.url(TOKEN), "https://auth.example.com/tenant1/token");
        assert_eq!(r.oauth_metadata_paths()[0], "/.well-known/oauth-authorization-server/tenant1");
        assert!(r.oidc_metadata_paths().contains(&"/tenant1/.well-known/openid-configuration".to_string()));
        let root = Routes::new("https://auth.example.com");
        assert_eq!(root.prefix, "");
        assert_eq!(root.oauth_metadata_paths(), vec![OAUTH_METADATA.to_string()]);
    }

    #[test]
    fn pages_are_told_from_api_routes() {
        let r = Routes::new("https://auth.example.com/tenant1");
        assert!(r.is_page("/tenant1/authorize"));
        assert!(r.is_page("/tenant1/account/revoke"));
        assert!(!r.is_page("/tenant1/token"));
        assert!(!r.is_page("/tenant1/register/abc"));
        assert_eq!(r.stylesheet(), "/tenant1/static/style.css");
    }

    #[test]
    fn the_favicon_sits_beside_the_stylesheet() {
        assert_eq!(STYLE_CSS.rsplit_once('/').map(|(dir, _)| dir), FAVICON_SVG.rsplit_once('/').map(|(dir, _)| dir));
    }
}
