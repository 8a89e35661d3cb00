//! Consent: what the consent page shows (who is asking, for which MCP server, with which
//! scopes), and the person's answer. Approve records (or widens) the grant and issues the code;
//! Deny answers `access_denied`.

use crate::clients;
use crate::flows::authorize::{issue_code, signed_in_recently_enough};
use crate::flows::describe::{self, Vouched};
use crate::flows::error::PageError;
use crate::flows::session::{PendingAuthorization, SignedIn};
use crate::oauth::authorize as authz;
use crate::oauth::redirect_uri::RedirectUri;
use crate::oauth::scope::ScopeSet;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::AppState;
use crate::store::{self, audit, grants, resources};

/// One scope line of the consent page.
#[derive(Clone, Debug)]
pub struct ScopeShown {
    pub name: String,
    pub description: String,
    /// Not in the grant the client already holds.
    pub is_new: bool,
}

/// What the consent page shows.
#[derive(Clone, Debug)]
pub struct ConsentFacts {
    pub client_id: String,
    /// The app's name as shown: shortened, one line (see [`describe::short_name`]).
    pub client_name: String,
    /// Pre-registered, or identified by its metadata document's host.
    pub client_verified: bool,
    /// What was checked about the app, in one line.
    pub client_identity: String,
    pub vouched: Vouched,
    pub resource_name: String,
    pub resource_uri: String,
    /// The new permissions first (on a step-up), then those the grant already holds.
    pub scopes: Vec<ScopeShown>,
    pub previously_granted: bool,
    /// A logo is stored for the client (served from this server).
    pub has_logo: bool,
    pub return_to: ReturnTo,
    /// The one caution the page shows, if any.
    pub caution: Option<Caution>,
}

/// Where the browser goes after the answer.
#[derive(Clone, Debug)]
pub struct ReturnTo {
    /// The redirect URI's host (for a private-use scheme without one: the scheme).
    pub host: String,
    /// A loopback address or a private-use scheme: an app on the person's own device.
    pub on_device: bool,
}

/// One short caution for the person. `unusual` ones are set apart (amber): shown for almost
/// every client, a warning teaches people to skip warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caution {
    pub text: String,
    pub unusual: bool,
}

/// The facts for a parked request; `grant` is the one the client already holds, if any.
pub async fn facts(
    state: &AppState,
    pending: &PendingAuthorization,
    grant: Option<&grants::Grant>,
) -> Result<ConsentFacts, PageError> {
    let client = clients::find(state, &pending.client_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The app asking for access is no longer registered."))?;
    let resource = resources::by_id(&state.db, pending.resource_id)
        .await?
        .ok_or_else(|| PageError::bad_request("The MCP server is no longer registered."))?;
    let requested = &pending.scope;
    let granted = match grant {
        Some(g) => g.scope.clone(),
        None => ScopeSet::default(),
    };
    let mut scopes: Vec<ScopeShown> = requested
        .union(&granted)
        .iter()
        .map(|name| ScopeShown {
            name: name.to_string(),
            description: describe::scope(&resource, name),
            is_new: !granted.contains(name),
        })
        .collect();
    // New permissions first; the sort is stable, so each group keeps its order.
    scopes.sort_by_key(|s| !s.is_new);
    let vouched = Vouched::of(&client);
    let return_to = return_to(&pending.redirect_uri);
    Ok(ConsentFacts {
        client_id: client.client_id().to_string(),
        client_name: describe::short_name(&client.display_name()),
        client_verified: client.verified(),
        client_identity: vouched.line(),
        caution: caution(&vouched, &return_to),
        vouched,
        resource_name: resource.row.name.clone(),
        resource_uri: resource.row.uri.clone(),
        scopes,
        previously_granted: grant.is_some(),
        has_logo: store::clients::logo(&state.db, client.client_id()).await?.is_some(),
        return_to,
    })
}

fn return_to(redirect_uri: &str) -> ReturnTo {
    match RedirectUri::parse(redirect_uri) {
        Ok(r) if r.is_private_use() => ReturnTo {
            host: redirect_uri.split_once(':').map(|(scheme, _)| format!("{scheme}:")).unwrap_or_default(),
            on_device: true,
        },
        Ok(r) => ReturnTo { on_device: r.is_loopback(), host: r.host().unwrap_or_else(|| redirect_uri.to_string()) },
        Err(_) => ReturnTo { host: redirect_uri.to_string(), on_device: false },
    }
}

/// The one caution for this app and return address. Unusual: a metadata-document app that
/// sends the browser to a host other than its own, or a return address that is a bare network
/// address on the internet. Ordinary (muted): an app on this device (a local process can pose as
/// a known app), and an app that registered itself.
fn caution(vouched: &Vouched, to: &ReturnTo) -> Option<Caution> {
    let ordinary = |text: String| Some(Caution { text, unusual: false });
    let unusual = |text: String| Some(Caution { text, unusual: true });
    let bare_address = to.host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok();
    match vouched {
        _ if to.on_device => ordinary(
            "Continue only if you just started this from an app on this computer; if a link from someone else \
             brought you here, choose Deny."
                .to_string(),
        ),
        _ if bare_address => unusual(format!(
            "This app sends you back to {}, a bare network address rather than a named site. Continue only if you \
             expected that.",
            to.host
        )),
        Vouched::Host(host) if !same_site(host, &to.host) => unusual(format!(
            "This app's web address is {host}, but it sends you back to {}. Continue only if you expected that.",
            to.host
        )),
        Vouched::Nobody => ordinary(format!("Continue only if you just came here from {}.", to.host)),
        _ => None,
    }
}

/// `to` is `host` or one of its subdomains (an app at example.com returning to app.example.com).
fn same_site(host: &str, to: &str) -> bool {
    let (host, to) = (host.to_ascii_lowercase(), to.to_ascii_lowercase());
    to == host || to.ends_with(&format!(".{host}"))
}

/// Where the browser goes after the person answered.
#[derive(Debug)]
pub enum Answered {
    /// Back to the client with this URL: a code, or `access_denied`.
    ToClient(String),
    /// The request wants a newer sign-in (`prompt=login`, `max_age`) than the session's: nothing
    /// was decided; sign in, then the request continues.
    SignInAgain,
}

/// The person's answer (`approve` or `deny`) to a parked request. A form posted for a request
/// whose sign-in requirement was never met (the consent page skipped) decides nothing.
pub async fn decide(
    state: &AppState,
    who: &SignedIn,
    pending: &PendingAuthorization,
    decision: &str,
) -> Result<Answered, PageError> {
    if !signed_in_recently_enough(pending, who) {
        return Ok(Answered::SignInAgain);
    }
    let now = store::now();
    let event = |name| audit::Event {
        event: name,
        actor: Some(&who.username),
        user_id: Some(who.user_id),
        client_id: Some(&pending.client_id),
        details: serde_json::json!({ "scope": pending.scope, "resource_id": pending.resource_id }),
        ..Default::default()
    };
    let url = match decision {
        "approve" => {
            // Step-up widens the grant to the union of what it had and what was approved.
            // Computed inside the store's transaction, from the live grant it read (a stored scope
            // that no longer parses fails the read, as a corrupt row).
            let union = |granted: Option<&ScopeSet>| match granted {
                Some(granted) => pending.scope.union(granted),
                None => pending.scope.clone(),
            };
            let client = clients::find(state, &pending.client_id).await?;
            let fingerprint = client.as_ref().and_then(clients::fingerprint);
            // The page named this redirect's host: errors may go there automatically from now on.
            let redirect =
                client.as_ref().and_then(|c| authz::registered_form(&c.metadata.redirect_uris, &pending.redirect_uri));
            let shown = grants::Shown {
                client_fingerprint: fingerprint.as_deref(),
                redirect_uri: redirect.map(|r| r.as_str()),
            };
            let grant = grants::approve_as_shown(
                &state.db,
                who.user_id,
                &pending.client_id,
                pending.resource_id,
                union,
                shown,
                now,
            )
            .await?;
            audit::record(&state.db, &event("consent_granted"), now).await?;
            issue_code(state, pending, who, grant.id).await?
        }
        "deny" => {
            audit::record(&state.db, &event("consent_denied"), now).await?;
            let e = OAuthError::new(ErrorCode::AccessDenied, "the person denied the request");
            authz::response_url(&pending.redirect_uri, &state.settings.issuer, pending.state.as_deref(), Err(&e))
        }
        _ => return Err(PageError::bad_request("Choose Allow or Deny.")),
    };
    Ok(Answered::ToClient(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(host: &str, on_device: bool) -> ReturnTo {
        ReturnTo { host: host.into(), on_device }
    }

    #[test]
    fn one_caution_and_amber_only_for_the_unusual() {
        let desktop = caution(&Vouched::Nobody, &to("127.0.0.1", true)).unwrap();
        assert!(!desktop.unusual && desktop.text.contains("on this computer"));
        let admin_desktop = caution(&Vouched::Administrator, &to("cursor:", true)).unwrap();
        assert!(!admin_desktop.unusual);
        let hosted = caution(&Vouched::Nobody, &to("chatgpt.com", false)).unwrap();
        assert!(!hosted.unusual && hosted.text.contains("chatgpt.com"));
        assert_eq!(caution(&Vouched::Host("claude.ai".into()), &to("claude.ai", false)), None);
        assert_eq!(caution(&Vouched::Host("example.com".into()), &to("app.example.com", false)), None);
        assert_eq!(caution(&Vouched::Administrator, &to("app.example.com", false)), None);
        let elsewhere = caution(&Vouched::Host("claude.ai".into()), &to("evil.example", false)).unwrap();
        assert!(elsewhere.unusual && elsewhere.text.contains("evil.example"));
        let bare = caution(&Vouched::Administrator, &to("203.0.113.7", false)).unwrap();
        assert!(bare.unusual);
        assert!(!same_site("claude.ai", "notclaude.ai"));
    }

    #[test]
    fn return_addresses() {
        let r = return_to("cursor://anysphere.cursor-mcp/oauth/callback");
        assert_eq!((r.host.as_str(), r.on_device), ("cursor:", true));
        let r = return_to("http://127.0.0.1:5555/cb");
        assert_eq!((r.host.as_str(), r.on_device), ("127.0.0.1", true));
        let r = return_to("https://claude.ai/api/mcp/auth_callback");
        assert_eq!((r.host.as_str(), r.on_device), ("claude.ai", false));
    }
}
