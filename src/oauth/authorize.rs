//! The authorization request (OAuth 2.1 §4.1.1, RFC 8707, RFC 9207): which parts of it decide
//! whether we may redirect at all, and the checks that, once we may, answer through a redirect.

use super::redirect_uri::RedirectUri;
use super::resource::ResourceUri;
use super::scope::{OFFLINE_ACCESS, ScopeSet};
use super::{ErrorCode, OAuthError};

/// Picks the redirect URI a response may go to. Errors here are shown to the person, never sent
/// to a redirect (OAuth 2.1 §4.1.2.1): we cannot trust where it points.
pub fn resolve_redirect_uri(registered: &[RedirectUri], requested: Option<&str>) -> Result<String, OAuthError> {
    if registered.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this app is a machine client (client credentials): it has no redirect URIs and cannot ask people for access",
        ));
    }
    match requested {
        Some(uri) if registered_form(registered, uri).is_some() => Ok(uri.to_string()),
        Some(_) => Err(OAuthError::invalid_request(
            "the redirect_uri is not registered for this client, so we will not send you there",
        )),
        None => match registered {
            [only] => Ok(only.as_str().to_string()),
            _ => Err(OAuthError::invalid_request("redirect_uri is required because this client registered several")),
        },
    }
}

/// The registered redirect URI a requested one matches (a loopback registration matches any
/// port): what approvals of a redirect URI are recorded by.
pub fn registered_form<'a>(registered: &'a [RedirectUri], requested: &str) -> Option<&'a RedirectUri> {
    registered.iter().find(|r| r.matches(requested))
}

/// The resource a request targets: the one `resource` sent, else the configured default, else the
/// only registered resource. `registered` answers whether a canonical URI is a registered resource.
pub fn select_resource(
    requested: &[String],
    default: Option<&ResourceUri>,
    only_registered: Option<&ResourceUri>,
) -> Result<ResourceUri, OAuthError> {
    match requested {
        [] => default.or(only_registered).cloned().ok_or_else(|| {
            OAuthError::invalid_target(
                "send a resource parameter naming the MCP server (RFC 8707); several are registered here",
            )
        }),
        [one] => ResourceUri::parse_requested(one).map_err(|e| {
            OAuthError::invalid_target(format!("resource {one:?} is not a valid resource indicator: {e}"))
        }),
        [first, rest @ ..] => {
            // The same server written several ways is still one resource.
            let first = ResourceUri::parse_requested(first)
                .map_err(|e| OAuthError::invalid_target(format!("resource {first:?}: {e}")))?;
            for r in rest {
                if ResourceUri::parse_requested(r).ok().as_ref() != Some(&first) {
                    return Err(OAuthError::invalid_target("a token is bound to one MCP server: send one resource"));
                }
            }
            Ok(first)
        }
    }
}

/// Scopes every request may carry whatever the MCP server: refresh and OpenID Connect.
pub const BUILT_IN_SCOPES: [&str; 4] = [OFFLINE_ACCESS, "openid", "profile", "email"];

/// The scope to authorize: what was asked, each name known to the resource or built in; nothing
/// asked (or only built-in scopes, e.g. `offline_access`) means the resource's default scopes too.
pub fn resolve_scope(requested: Option<&str>, catalogue: &[&str], defaults: &[&str]) -> Result<ScopeSet, OAuthError> {
    let asked = ScopeSet::parse(requested.unwrap_or(""))
        .map_err(|e| OAuthError::invalid_scope(format!("the scope parameter is malformed: {e}")))?;
    let unknown: Vec<&str> = asked.iter().filter(|s| !BUILT_IN_SCOPES.contains(s) && !catalogue.contains(s)).collect();
    if !unknown.is_empty() {
        return Err(OAuthError::invalid_scope(format!(
            "unknown scope{} for this MCP server: {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(" ")
        )));
    }
    if asked.iter().all(|s| BUILT_IN_SCOPES.contains(&s)) {
        return Ok(asked.union(&ScopeSet::from_iter(defaults.iter().copied())));
    }
    Ok(asked)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// OIDC `prompt`: a space-separated list; `none` stands alone. Unknown values (`select_account`) are
/// ignored: we have one account per session.
pub fn parse_prompt(p: Option<&str>) -> Result<Prompt, OAuthError> {
    let mut out = Prompt::default();
    let Some(p) = p else { return Ok(out) };
    for v in p.split(' ').filter(|v| !v.is_empty()) {
        match v {
            "none" => out.none = true,
            "login" => out.login = true,
            "consent" => out.consent = true,
            _ => {}
        }
    }
    if out.none && (out.login || out.consent) {
        return Err(OAuthError::invalid_request("prompt=none cannot be combined with other values"));
    }
    Ok(out)
}

/// OIDC `max_age` (Core §3.1.2.1): the longest time since the person last signed in, in
/// seconds, a non-negative integer.
pub fn parse_max_age(value: Option<&str>) -> Result<Option<i64>, OAuthError> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<i64>() {
        Ok(n) if n >= 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(OAuthError::invalid_request("max_age must be a number of seconds (0 or more)")),
    }
}

/// The redirect that answers an authorization request, success or error, always with `iss`
/// (RFC 9207) and `state` exactly as received.
pub fn response_url(
    redirect_uri: &str,
    issuer: &str,
    state: Option<&str>,
    result: Result<&str, &OAuthError>,
) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    match result {
        Ok(code) => {
            q.append_pair("code", code);
        }
        Err(e) => {
            q.append_pair("error", e.code.as_str());
            q.append_pair("error_description", &e.description);
        }
    }
    if let Some(state) = state {
        q.append_pair("state", state);
    }
    q.append_pair("iss", issuer);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", q.finish())
}

/// A request object (`request`, `request_uri`: OIDC Core §6, JAR) is refused with its own error
/// rather than ignored: its parameters would otherwise be silently dropped.
pub fn check_no_request_object(request: Option<&str>, request_uri: Option<&str>) -> Result<(), OAuthError> {
    if request.is_some() {
        return Err(OAuthError::new(ErrorCode::RequestNotSupported, "request objects are not supported"));
    }
    if request_uri.is_some() {
        return Err(OAuthError::new(ErrorCode::RequestUriNotSupported, "request_uri is not supported"));
    }
    Ok(())
}

/// `response_type` must be exactly `code` (OAuth 2.1 has no implicit or hybrid flows).
pub fn check_response_type(rt: Option<&str>) -> Result<(), OAuthError> {
    match rt {
        Some("code") => Ok(()),
        Some(other) => Err(OAuthError::new(
            ErrorCode::UnsupportedResponseType,
            format!("response_type {other:?} is not supported; use code"),
        )),
        None => Err(OAuthError::invalid_request("missing parameter response_type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(list: &[&str]) -> Vec<RedirectUri> {
        list.iter().map(|u| RedirectUri::parse(u).unwrap()).collect()
    }

    #[test]
    fn redirect_uri_resolution() {
        let one = uris(&["http://127.0.0.1/callback"]);
        assert_eq!(
            resolve_redirect_uri(&one, Some("http://127.0.0.1:5000/callback")).unwrap(),
            "http://127.0.0.1:5000/callback"
        );
        assert_eq!(resolve_redirect_uri(&one, None).unwrap(), "http://127.0.0.1/callback");
        assert!(resolve_redirect_uri(&one, Some("https://evil.example/cb")).is_err());
        let two = uris(&["https://a.example/cb", "https://b.example/cb"]);
        assert!(resolve_redirect_uri(&two, None).is_err());
        let machine = resolve_redirect_uri(&[], Some("https://evil.example/cb")).unwrap_err();
        assert_eq!(machine.code, ErrorCode::UnauthorizedClient);
    }

    #[test]
    fn resource_selection() {
        let only = ResourceUri::parse("https://mcp.example.com").unwrap();
        assert_eq!(select_resource(&[], None, Some(&only)).unwrap(), only);
        assert_eq!(select_resource(&["https://MCP.example.com/".into()], None, None).unwrap(), only);
        assert_eq!(select_resource(&[], None, None).unwrap_err().code, ErrorCode::InvalidTarget);
        assert!(select_resource(&["https://a.example".into(), "https://b.example".into()], None, None).is_err());
        assert!(select_resource(&["https://a.example".into(), "https://A.example/".into()], None, None).is_ok());
        assert_eq!(select_resource(&["not a uri".into()], None, None).unwrap_err().code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn scope_resolution() {
        let cat = ["mcp:tools", "mcp:admin"];
        let defaults = ["mcp:tools"];
        assert_eq!(resolve_scope(None, &cat, &defaults).unwrap().to_space_separated(), "mcp:tools");
        assert_eq!(
            resolve_scope(Some(" offline_access"), &cat, &defaults).unwrap().to_space_separated(),
            "mcp:tools offline_access"
        );
        assert_eq!(resolve_scope(Some("mcp:admin"), &cat, &defaults).unwrap().to_space_separated(), "mcp:admin");
        assert_eq!(
            resolve_scope(Some("openid profile email"), &cat, &defaults).unwrap().to_space_separated(),
            "email mcp:tools openid profile"
        );
        let e = resolve_scope(Some("mcp:tools nope other"), &cat, &defaults).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("nope other"), "{}", e.description);
    }

    #[test]
    fn prompt_values() {
        assert!(parse_prompt(Some("consent")).unwrap().consent);
        assert!(parse_prompt(Some("login consent")).unwrap().login);
        assert!(parse_prompt(Some("none login")).is_err());
        assert_eq!(parse_prompt(Some("select_account")).unwrap(), Prompt::default());
    }

    #[test]
    fn max_age_values() {
        assert_eq!(parse_max_age(None).unwrap(), None);
        assert_eq!(parse_max_age(Some("0")).unwrap(), Some(0));
        assert_eq!(parse_max_age(Some("3600")).unwrap(), Some(3600));
        for bad in ["", "-1", "+5", "1.5", "ten", "99999999999999999999"] {
            assert_eq!(parse_max_age(Some(bad)).unwrap_err().code, ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn response_urls_carry_state_and_iss() {
        let u = response_url("http://127.0.0.1:9/cb", "https://as.example", Some("a b&c"), Ok("xyz"));
        assert_eq!(u, "http://127.0.0.1:9/cb?code=xyz&state=a+b%26c&iss=https%3A%2F%2Fas.example");
        let e = OAuthError::new(ErrorCode::AccessDenied, "no");
        let u = response_url("https://c.example/cb?x=1", "https://as.example", None, Err(&e));
        assert!(u.starts_with("https://c.example/cb?x=1&error=access_denied&"), "{u}");
    }
}
