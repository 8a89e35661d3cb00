//! What the operator declares for a machine client (the `client_credentials` grant): its grant
//! types, its keys, and its reach (the MCP servers it may get tokens for, with the scopes at
//! each), checked before anything is written.

use serde_json::Value;

use super::{AdminError, invalid};
use crate::oauth::client_metadata::{ClientMetadata, GrantType, TokenEndpointAuthMethod};
use crate::oauth::resource::ResourceUri;
use crate::oauth::scope::ScopeSet;
use crate::store::machine_clients::Allowance;

/// A client's public keys for `private_key_jwt` (RFC 7523).
#[derive(Clone, Debug, PartialEq)]
pub enum ClientKeys {
    /// A JWK set (`{"keys": [...]}`).
    Jwks(Value),
    /// Where to fetch it (https, through the hardened fetcher).
    JwksUri(String),
}

/// One MCP server a machine client may reach and the scope names it may get there, as written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReachSpec {
    pub uri: String,
    pub scopes: Vec<String>,
}

/// A [`ReachSpec`] parsed: the canonical URI and the scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reach {
    pub uri: ResourceUri,
    pub scopes: ScopeSet,
}

/// The grant types by name; none given: `authorization_code` and `refresh_token`.
pub(super) fn grant_types(names: &[String]) -> Result<Vec<&'static str>, AdminError> {
    if names.is_empty() {
        return Ok(vec![GrantType::AuthorizationCode.as_str(), GrantType::RefreshToken.as_str()]);
    }
    names
        .iter()
        .map(|n| {
            GrantType::parse(n).map(GrantType::as_str).ok_or_else(|| {
                invalid(format!(
                    "unknown grant type {n:?}: use authorization_code, refresh_token or client_credentials"
                ))
            })
        })
        .collect()
}

/// A `jwks` as the config file gives it: a table, or JSON text.
pub(super) fn jwks_value(client_id: &str, v: &Value) -> Result<Value, AdminError> {
    match v {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("client {client_id:?}: jwks is not a JSON document: {e}"))),
        other => Ok(other.clone()),
    }
}

/// The checks only a machine client has, on its validated metadata: it authenticates (a secret
/// or keys), its id cannot be taken for a person's (its tokens name it as `sub`), and it may
/// reach at least one MCP server. A client without the grant has no reach.
pub(super) fn check(client_id: &str, metadata: &ClientMetadata, reach: &[ReachSpec]) -> Result<Vec<Reach>, AdminError> {
    if !metadata.grant_types.contains(&GrantType::ClientCredentials) {
        if !reach.is_empty() {
            return Err(invalid(format!(
                "client {client_id:?}: the MCP servers a client may reach (resources) are for client_credentials clients"
            )));
        }
        return Ok(Vec::new());
    }
    if metadata.token_endpoint_auth_method == TokenEndpointAuthMethod::None {
        return Err(invalid(format!(
            "client {client_id:?}: a client_credentials client must authenticate: give it a secret or public keys \
             (jwks or jwks_uri)"
        )));
    }
    if uuid::Uuid::parse_str(client_id).is_ok() {
        return Err(invalid(format!(
            "client id {client_id:?} has the form of a person's subject (a UUID), and a machine client's tokens \
             name the client as their subject: choose another id"
        )));
    }
    if reach.is_empty() {
        return Err(invalid(format!(
            "client {client_id:?}: a client_credentials client needs at least one MCP server it may reach (resources)"
        )));
    }
    let mut parsed: Vec<Reach> = Vec::with_capacity(reach.len());
    for r in reach {
        let uri = ResourceUri::parse_requested(&r.uri)
            .map_err(|e| invalid(format!("client {client_id:?}: MCP server {:?}: {e}", r.uri)))?;
        if parsed.iter().any(|p| p.uri == uri) {
            return Err(invalid(format!("client {client_id:?}: MCP server {uri} is listed twice")));
        }
        let mut scopes = Vec::with_capacity(r.scopes.len());
        for s in &r.scopes {
            let one = ScopeSet::parse(s).map_err(|e| invalid(format!("client {client_id:?}: scope {s:?}: {e}")))?;
            if one.len() != 1 {
                return Err(invalid(format!("client {client_id:?}: scope {s:?} must be a single name")));
            }
            scopes.push(s.clone());
        }
        parsed.push(Reach { uri, scopes: ScopeSet::from_iter(scopes) });
    }
    Ok(parsed)
}

/// Checks a machine client's reach against the MCP servers' scope catalogues (`catalogue`
/// answers for a canonical URI; `None`: not registered) and returns what to store.
pub(super) fn allowances(
    client_id: &str,
    reach: &[Reach],
    catalogue: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<Allowance>, AdminError> {
    reach
        .iter()
        .map(|r| {
            let uri = r.uri.as_str();
            let known = catalogue(uri).ok_or_else(|| {
                invalid(format!(
                    "client {client_id:?}: MCP server {uri} is not registered (add it first: `portcullis resource add` \
                     or [[resources]])"
                ))
            })?;
            let listing =
                if known.is_empty() { "it has none".to_string() } else { format!("its scopes: {}", known.join(", ")) };
            if let Some(unknown) = r.scopes.iter().find(|s| !known.iter().any(|k| k == s)) {
                return Err(invalid(format!("client {client_id:?}: {unknown:?} is not a scope of {uri} ({listing})")));
            }
            if r.scopes.is_empty() && !known.is_empty() {
                return Err(invalid(format!("client {client_id:?}: name the scopes it may get at {uri} ({listing})")));
            }
            Ok(Allowance { resource_uri: uri.to_string(), scope: r.scopes.clone() })
        })
        .collect()
}

/// The reach the command line describes: each `--resource` gets the `--scope` values its
/// catalogue declares (`catalogue` as for [`allowances`]). Every scope must belong to one of them,
/// and every resource that has scopes must get at least one.
pub fn reach_from_flags(
    resources: &[String],
    scopes: &[String],
    catalogue: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<Vec<ReachSpec>, AdminError> {
    if resources.is_empty() {
        if scopes.is_empty() {
            return Ok(Vec::new());
        }
        return Err(invalid("--scope names scopes of the MCP servers given with --resource: add --resource"));
    }
    let mut out = Vec::with_capacity(resources.len());
    let mut placed = vec![false; scopes.len()];
    for r in resources {
        let uri = ResourceUri::parse_requested(r).map_err(|e| invalid(format!("--resource {r:?}: {e}")))?;
        let known = catalogue(uri.as_str()).ok_or_else(|| {
            invalid(format!("--resource {uri} is not registered (add it first: `portcullis resource add`)"))
        })?;
        let mine: Vec<String> = scopes
            .iter()
            .enumerate()
            .filter(|(_, s)| known.contains(s))
            .map(|(i, s)| {
                placed[i] = true;
                s.clone()
            })
            .collect();
        if mine.is_empty() && !known.is_empty() {
            return Err(invalid(format!(
                "--resource {uri}: give the scopes the client may get there with --scope (its scopes: {})",
                known.join(", ")
            )));
        }
        out.push(ReachSpec { uri: uri.as_str().to_string(), scopes: mine });
    }
    if let Some(i) = placed.iter().position(|p| !p) {
        return Err(invalid(format!("--scope {:?} is not a scope of any --resource given", scopes[i])));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(uri: &str) -> Option<Vec<String>> {
        match uri {
            "https://a.example/mcp" => Some(vec!["read".into(), "write".into()]),
            "https://b.example/mcp" => Some(vec!["read".into(), "admin".into()]),
            "https://bare.example/mcp" => Some(Vec::new()),
            _ => None,
        }
    }

    fn message(r: Result<impl std::fmt::Debug, AdminError>) -> String {
        r.expect_err("refused").to_string()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_go_to_the_resources_that_declare_them() {
        let r = reach_from_flags(
            &strings(&["https://A.example/mcp", "https://b.example/mcp"]),
            &strings(&["write", "admin", "read"]),
            catalogue,
        )
        .unwrap();
        assert_eq!(
            r,
            [
                ReachSpec { uri: "https://a.example/mcp".into(), scopes: strings(&["write", "read"]) },
                ReachSpec { uri: "https://b.example/mcp".into(), scopes: strings(&["admin", "read"]) },
            ]
        );
        let bare = reach_from_flags(&strings(&["https://bare.example/mcp"]), &[], catalogue).unwrap();
        assert_eq!(bare[0].scopes, Vec::<String>::new());
    }

    #[test]
    fn flags_that_do_not_fit_are_named() {
        let m = message(reach_from_flags(&strings(&["https://a.example/mcp"]), &strings(&["admin"]), catalogue));
        assert!(m.contains("--resource https://a.example/mcp") && m.contains("read, write"), "{m}");
        let m =
            message(reach_from_flags(&strings(&["https://a.example/mcp"]), &strings(&["read", "admin"]), catalogue));
        assert!(m.contains("\"admin\""), "{m}");
        let m = message(reach_from_flags(&strings(&["https://c.example/mcp"]), &strings(&["read"]), catalogue));
        assert!(m.contains("not registered"), "{m}");
        let m = message(reach_from_flags(&[], &strings(&["read"]), catalogue));
        assert!(m.contains("--resource"), "{m}");
        let m = message(reach_from_flags(&strings(&["https://a.example/mcp#x"]), &[], catalogue));
        assert!(m.contains("--resource"), "{m}");
    }

    fn parsed(uri: &str, scopes: &str) -> Reach {
        Reach { uri: ResourceUri::parse(uri).unwrap(), scopes: ScopeSet::parse(scopes).unwrap() }
    }

    #[test]
    fn allowances_are_checked_against_the_catalogue() {
        let ok = allowances("m", &[parsed("https://a.example/mcp", "read")], catalogue).unwrap();
        assert_eq!(ok[0].resource_uri, "https://a.example/mcp");
        assert_eq!(ok[0].scope.to_string(), "read");
        let m = message(allowances("m", &[parsed("https://a.example/mcp", "admin")], catalogue));
        assert!(m.contains("\"admin\" is not a scope of https://a.example/mcp"), "{m}");
        let m = message(allowances("m", &[parsed("https://a.example/mcp", "")], catalogue));
        assert!(m.contains("name the scopes"), "{m}");
        let m = message(allowances("m", &[parsed("https://c.example/mcp", "read")], catalogue));
        assert!(m.contains("not registered"), "{m}");
        assert!(allowances("m", &[parsed("https://bare.example/mcp", "")], catalogue).is_ok());
    }

    #[test]
    fn grant_type_names() {
        assert_eq!(grant_types(&[]).unwrap(), ["authorization_code", "refresh_token"]);
        assert_eq!(grant_types(&strings(&["client_credentials"])).unwrap(), ["client_credentials"]);
        let m = message(grant_types(&strings(&["password"])));
        assert!(m.contains("password") && m.contains("client_credentials"), "{m}");
    }
}
