//! A company identity provider as the operator declared it (`[[identity_providers]]`), validated
//! once at start-up into [`Provider`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Secret;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// OpenID Connect: discovery, ID token, userinfo.
    #[default]
    Oidc,
    /// GitHub's OAuth 2 (not OpenID Connect): the person from its REST API.
    Github,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// An assertion signed with Portcullis's own signing key (the provider reads Portcullis's
    /// JWKS), so no secret is shared.
    PrivateKeyJwt,
}

/// One `[[identity_providers]]` entry, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub id: String,
    /// Shown on the login page: "Sign in with {name}".
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    /// OpenID Connect issuer. Entra ID multi-tenant: `https://login.microsoftonline.com/{tenantid}/v2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where to read the provider's metadata, when not at `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    pub client_id: String,
    /// Also from `PORTCULLIS_IDP_<ID>_CLIENT_SECRET` or `client_secret_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub token_endpoint_auth_method: ClientAuth,
    /// Default: `openid email profile` (OIDC); `read:user user:email read:org` (GitHub).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The claim that becomes the username of people created here (default `preferred_username`,
    /// then `email`; GitHub: the login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_claim: Option<String>,
    /// The claim listing the person's groups (`groups` for Okta, Keycloak, Entra ID; none: no groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    /// Only people whose (verified) email is in one of these domains; also routes `login_hint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_email_domains: Vec<String>,
    /// Google Workspace: the `hd` claim must equal this domain (also sent as the `hd` hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_domain: Option<String>,
    /// Entra ID multi-tenant: the tenants (`tid`) accepted; empty: any tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tenants: Vec<String>,
    /// GitHub: only members of one of these organisations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_organizations: Vec<String>,
    /// Create a person at their first sign-in; otherwise they must exist (linked by verified email).
    #[serde(default)]
    pub create_people: bool,
    /// Link a first sign-in to an existing person with the same email, when the provider says the
    /// email is verified.
    #[serde(default)]
    pub link_by_email: bool,
    /// The provider is on a private network or loopback (e.g. an on-premises Keycloak): its
    /// addresses may be private and its URLs plain http.
    #[serde(default)]
    pub allow_private_network: bool,
    /// GitHub Enterprise Server: the web and API base URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_api_url: Option<String>,
}

/// A validated provider.
#[derive(Clone, Debug)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// OIDC: the issuer, possibly with `{tenantid}`.
    pub issuer: String,
    pub discovery_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub username_claim: Option<String>,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: Option<String>,
    pub allowed_email_domains: Vec<String>,
    pub hosted_domain: Option<String>,
    pub allowed_tenants: Vec<String>,
    pub allowed_organizations: Vec<String>,
    pub create_people: bool,
    pub link_by_email: bool,
    pub allow_private_network: bool,
    pub github_url: String,
    pub github_api_url: String,
}

/// The issuer placeholder of Entra ID's multi-tenant endpoints.
pub const TENANT: &str = "{tenantid}";

impl Provider {
    /// Validates one entry. `env_secret` is the value of `PORTCULLIS_IDP_<ID>_CLIENT_SECRET`.
    pub fn from_config(c: &ProviderConfig, env_secret: Option<String>) -> Result<Provider, String> {
        let id = c.id.as_str();
        if id.is_empty()
            || id.len() > 40
            || !id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            return Err(format!("id {id:?}: use 1-40 of a-z 0-9 -"));
        }
        if c.name.trim().is_empty() || c.name.len() > 60 || c.name.chars().any(char::is_control) {
            return Err(format!("{id}: name must be 1-60 printable characters"));
        }
        if c.client_id.is_empty() {
            return Err(format!("{id}: client_id is required"));
        }
        let url_ok = |what: &str, u: &str| -> Result<(), String> {
            let parsed = url::Url::parse(u).map_err(|e| format!("{id}: {what} {u:?}: {e}"))?;
            match parsed.scheme() {
                "https" => Ok(()),
                "http" if c.allow_private_network => Ok(()),
                _ => Err(format!("{id}: {what} must be https (http only with allow_private_network)")),
            }
        };
        let secret = match (&c.client_secret, &c.client_secret_file, env_secret) {
            (_, _, Some(env)) if !env.is_empty() => Some(Secret::new(env)),
            (Some(s), None, _) => Some(s.clone()),
            (None, Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{id}: client_secret_file {}: {e}", path.display()))?;
                Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
            }
            (Some(_), Some(_), _) => return Err(format!("{id}: set client_secret or client_secret_file, not both")),
            (None, None, _) => None,
        };
        if secret.is_none() && c.token_endpoint_auth_method != ClientAuth::PrivateKeyJwt {
            return Err(format!(
                "{id}: a client secret is required (client_secret, client_secret_file or \
                 PORTCULLIS_IDP_{}_CLIENT_SECRET), or token_endpoint_auth_method = \"private_key_jwt\"",
                env_name(id)
            ));
        }
        let lower = |v: &[String]| v.iter().map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()).collect();
        let (issuer, discovery_url, scopes) = match c.kind {
            Kind::Oidc => {
                let issuer = c.issuer.clone().ok_or_else(|| format!("{id}: issuer is required for kind = \"oidc\""))?;
                url_ok("issuer", &issuer.replace(TENANT, "common"))?;
                let discovery = match &c.discovery_url {
                    Some(d) => d.clone(),
                    // Entra ID's multi-tenant metadata lives under `organizations` (or `common`).
                    None => format!(
                        "{}/.well-known/openid-configuration",
                        issuer.replace(TENANT, "organizations").trim_end_matches('/')
                    ),
                };
                url_ok("discovery_url", &discovery)?;
                let mut scopes = if c.scopes.is_empty() {
                    vec!["openid".to_string(), "email".into(), "profile".into()]
                } else {
                    c.scopes.clone()
                };
                if !scopes.iter().any(|s| s == "openid") {
                    scopes.insert(0, "openid".into());
                }
                (issuer, discovery, scopes)
            }
            Kind::Github => {
                if c.issuer.is_some() || c.discovery_url.is_some() {
                    return Err(format!("{id}: GitHub is not OpenID Connect: drop issuer and discovery_url"));
                }
                let scopes = if c.scopes.is_empty() {
                    vec!["read:user".to_string(), "user:email".into(), "read:org".into()]
                } else {
                    c.scopes.clone()
                };
                (String::new(), String::new(), scopes)
            }
        };
        if scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(format!("{id}: each scope is one word"));
        }
        if !c.allowed_tenants.is_empty() && !issuer.contains(TENANT) {
            return Err(format!("{id}: allowed_tenants needs an issuer with {TENANT}"));
        }
        let github_url = c.github_url.clone().unwrap_or_else(|| "https://github.com".into());
        let github_api_url = c.github_api_url.clone().unwrap_or_else(|| "https://api.github.com".into());
        if c.kind == Kind::Github {
            url_ok("github_url", &github_url)?;
            url_ok("github_api_url", &github_api_url)?;
        }
        Ok(Provider {
            id: id.to_string(),
            name: c.name.trim().to_string(),
            kind: c.kind,
            issuer,
            discovery_url,
            client_id: c.client_id.clone(),
            client_secret: secret,
            client_auth: c.token_endpoint_auth_method,
            scopes,
            username_claim: c.username_claim.clone(),
            email_claim: c.email_claim.clone().unwrap_or_else(|| "email".into()),
            name_claim: c.name_claim.clone().unwrap_or_else(|| "name".into()),
            groups_claim: c.groups_claim.clone(),
            allowed_email_domains: lower(&c.allowed_email_domains),
            hosted_domain: c.hosted_domain.as_ref().map(|d| d.trim().to_ascii_lowercase()),
            allowed_tenants: c.allowed_tenants.clone(),
            allowed_organizations: lower(&c.allowed_organizations),
            create_people: c.create_people,
            link_by_email: c.link_by_email,
            allow_private_network: c.allow_private_network,
            github_url: github_url.trim_end_matches('/').to_string(),
            github_api_url: github_api_url.trim_end_matches('/').to_string(),
        })
    }

    /// Whether an email domain routes to this provider (`login_hint`, domain hint).
    pub fn serves_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_email_domains.contains(&domain) || self.hosted_domain.as_deref() == Some(domain.as_str())
    }
}

/// `PORTCULLIS_IDP_<ID>_CLIENT_SECRET`'s `<ID>`: upper case, `-` → `_`.
pub fn env_name(id: &str) -> String {
    id.to_ascii_uppercase().replace('-', "_")
}

/// Validates every entry; ids must be unique.
pub fn validate_all(configs: &[ProviderConfig]) -> Result<Vec<Provider>, String> {
    let mut out: Vec<Provider> = Vec::new();
    for c in configs {
        let env = std::env::var(format!("PORTCULLIS_IDP_{}_CLIENT_SECRET", env_name(&c.id))).ok();
        let p = Provider::from_config(c, env)?;
        if out.iter().any(|o| o.id == p.id) {
            return Err(format!("{}: listed twice", p.id));
        }
        out.push(p);
    }
    Ok(out)
}
