//! The targets Portcullis, as the company's identity provider, issues ID-JAGs for
//! (`[[enterprise_apps]]`): another authorization server (by its issuer), the MCP servers behind
//! it, which of our clients may ask and under which client id they are known there, who may
//! (groups) and what (scopes).

use serde::{Deserialize, Serialize};

use crate::config::Seconds;
use crate::users::groups::Groups;

/// One of our clients, and its client id at the other authorization server.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppClient {
    pub client_id: String,
    /// Default: the same id (a metadata-document URL is the same everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_client_id: Option<String>,
}

/// One `[[enterprise_apps]]` entry, as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseAppConfig {
    /// The other authorization server's issuer: the token exchange's `audience`.
    pub audience: String,
    /// The MCP servers (resource URIs) behind it that ID-JAGs may name.
    pub resources: Vec<String>,
    /// The scopes an ID-JAG may carry (empty: none is granted; list them).
    #[serde(default)]
    pub scopes: Vec<String>,
    pub clients: Vec<AppClient>,
    /// Only people in one of these groups (empty: everyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_groups: Vec<String>,
    /// Put the person's email in the ID-JAG.
    #[serde(default)]
    pub include_email: bool,
    /// The ID-JAG's lifetime (default 5 minutes; at most 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<Seconds>,
}

/// A validated target.
#[derive(Clone, Debug)]
pub struct EnterpriseApp {
    pub audience: String,
    pub resources: Vec<String>,
    pub scopes: Vec<String>,
    pub clients: Vec<(String, String)>,
    pub allowed_groups: Groups,
    pub include_email: bool,
    pub lifetime: i64,
}

impl EnterpriseApp {
    /// The client id `ours` has at the target, if it may ask for this target at all.
    pub fn remote_client_id(&self, ours: &str) -> Option<&str> {
        self.clients.iter().find(|(c, _)| c == ours).map(|(_, r)| r.as_str())
    }
}

pub fn validate_all(configs: &[EnterpriseAppConfig]) -> Result<Vec<EnterpriseApp>, String> {
    let mut out: Vec<EnterpriseApp> = Vec::new();
    for c in configs {
        let a = &c.audience;
        let parsed = url::Url::parse(a).map_err(|e| format!("audience {a:?}: {e}"))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(format!("audience {a:?} must be an http(s) issuer URL"));
        }
        if out.iter().any(|o| &o.audience == a) {
            return Err(format!("{a} is listed twice"));
        }
        if c.resources.is_empty() {
            return Err(format!("{a}: list the MCP servers (resources) its ID-JAGs may name"));
        }
        let mut resources = Vec::new();
        for r in &c.resources {
            let uri = crate::oauth::resource::ResourceUri::parse(r).map_err(|e| format!("{a}: resource {r:?}: {e}"))?;
            resources.push(uri.as_str().to_string());
        }
        if c.clients.is_empty() {
            return Err(format!("{a}: list the clients that may ask for ID-JAGs for it"));
        }
        if c.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(format!("{a}: each scope is one word"));
        }
        let lifetime = c.lifetime.map(|s| s.as_i64()).unwrap_or(300);
        if !(1..=600).contains(&lifetime) {
            return Err(format!("{a}: lifetime must be between 1s and 10m"));
        }
        out.push(EnterpriseApp {
            audience: a.clone(),
            resources,
            scopes: c.scopes.clone(),
            clients: c
                .clients
                .iter()
                .map(|k| (k.client_id.clone(), k.remote_client_id.clone().unwrap_or_else(|| k.client_id.clone())))
                .collect(),
            allowed_groups: Groups::parse(&c.allowed_groups).map_err(|e| format!("{a}: allowed_groups: {e}"))?,
            include_email: c.include_email,
            lifetime,
        });
    }
    Ok(out)
}
